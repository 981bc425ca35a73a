//! What every benchmark measures with: one command's wall time, and the median of several.

#![allow(dead_code)] // Each benchmark uses the part it needs.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// Runs `command` to its end (output discarded, stderr kept for the failure message) and
/// returns its wall time; panics if it fails, since a failed run measures nothing.
pub fn timed(command: &mut Command) -> Duration {
    command.stdout(Stdio::null()).stderr(Stdio::piped());
    let started = Instant::now();
    let output = command.output().expect("cannot run");
    let took = started.elapsed();
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    took
}

/// The median of `times`.
pub fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// `command` with `program` in its place: the same arguments, environment and directory. For
/// timing another build of cutover (`BASE=PATH`) round by round beside this one.
pub fn with_program(command: &Command, program: &std::ffi::OsStr) -> Command {
    let mut other = Command::new(program);
    other.args(command.get_args());
    if let Some(dir) = command.get_current_dir() {
        other.current_dir(dir);
    }
    for (name, value) in command.get_envs() {
        match value {
            Some(value) => other.env(name, value),
            None => other.env_remove(name),
        };
    }
    other.stdin(Stdio::null());
    other
}
