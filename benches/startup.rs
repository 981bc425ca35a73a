//! Start-up cost: median wall time of `cutover run` on a no-op runbook, next to `bash -c true`
//! in the same run. Target (README, Benchmarks): ≤ 20 ms median.
//!
//! `cargo bench --bench startup`

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

const RUNS: usize = 60;

fn median_of(mut command: impl FnMut() -> Command) -> Duration {
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let mut command = command();
            command.stdout(Stdio::null()).stderr(Stdio::null());
            let started = Instant::now();
            let status = command.status().expect("cannot run");
            let took = started.elapsed();
            assert!(status.success(), "{command:?} failed");
            took
        })
        .collect();
    times.sort();
    times[RUNS / 2]
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("runbooks")).unwrap();
    std::fs::write(
        dir.path().join("runbooks/noop.rhai"),
        "//! Does nothing.\nfn main() {}\n",
    )
    .unwrap();
    let cutover = env!("CARGO_BIN_EXE_cutover");
    let noop = median_of(|| {
        let mut command = Command::new(cutover);
        command.args(["run", "noop"]).current_dir(dir.path());
        command
    });
    let bash = median_of(|| {
        let mut command = Command::new("bash");
        command.args(["-c", "true"]);
        command
    });
    println!("startup: median of {RUNS} runs");
    println!(
        "  cutover run noop   {:>8.2} ms   (target ≤ 20 ms)",
        noop.as_secs_f64() * 1e3
    );
    println!("  bash -c true       {:>8.2} ms", bash.as_secs_f64() * 1e3);
    println!(
        "  ratio              {:>8.2}×",
        noop.as_secs_f64() / bash.as_secs_f64()
    );
}
