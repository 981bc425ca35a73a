//! The harness every integration test is written with: a builder that lays out runbooks, stdlib
//! modules and files in a fresh temporary directory, runs the real `cutover` binary there, and
//! checks its exit code, stdout and stderr, so each test reads like a specification.
//!
//! ```ignore
//! Test::new()
//!     .runbook("hello", "fn main() { print(\"hi\") }")
//!     .args(["hello"])
//!     .stderr_contains("hi")
//!     .success();
//! ```

#![allow(dead_code)] // The harness offers more than the tests of any one module use.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

pub const BIN: &str = env!("CARGO_BIN_EXE_cutover");

/// One run of the binary, described before it happens. A chain that never ends in `success`,
/// `status` or `spawn` checks nothing, so it does not compile quietly.
#[must_use = "a Test checks nothing until it runs: end the chain with .success(), .status(N) or .spawn()"]
pub struct Test {
    dir: Arc<tempfile::TempDir>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    stdin: Option<String>,
    stdout: Vec<Expect>,
    stderr: Vec<Expect>,
}

enum Expect {
    Exact(String),
    Contains(String),
    Lacks(String),
}

impl Expect {
    fn check(&self, stream: &str, text: &str) {
        match self {
            Expect::Exact(want) => assert_eq!(text, want, "{stream} differs"),
            Expect::Contains(want) => {
                assert!(
                    text.contains(want.as_str()),
                    "{stream} lacks {want:?}:\n{text}"
                )
            }
            Expect::Lacks(unwanted) => {
                assert!(
                    !text.contains(unwanted.as_str()),
                    "{stream} has {unwanted:?}:\n{text}"
                )
            }
        }
    }
}

impl Default for Test {
    fn default() -> Self {
        Self::new()
    }
}

impl Test {
    pub fn new() -> Test {
        let dir = tempfile::Builder::new()
            .prefix("cutover-test-")
            .tempdir()
            .unwrap();
        Test::within(Arc::new(dir))
    }

    /// A run in a directory several runs share (a stack the tests of a module act on in turn).
    pub fn within(dir: Arc<tempfile::TempDir>) -> Test {
        Test {
            dir,
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
            stdout: Vec::new(),
            stderr: Vec::new(),
        }
    }

    /// The directory the binary runs in.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `runbooks/NAME.rhai`.
    pub fn runbook(self, name: &str, text: &str) -> Test {
        self.file(&format!("runbooks/{name}.rhai"), text)
    }

    /// Writes `stdlib/NAME.rhai`.
    pub fn stdlib(self, name: &str, text: &str) -> Test {
        self.file(&format!("stdlib/{name}.rhai"), text)
    }

    /// Writes a file relative to the test directory, creating parent directories.
    pub fn file(self, path: &str, text: &str) -> Test {
        let path = self.dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Test {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, name: &str, value: impl Into<String>) -> Test {
        self.env.push((name.to_string(), value.into()));
        self
    }

    pub fn stdin(mut self, text: &str) -> Test {
        self.stdin = Some(text.to_string());
        self
    }

    pub fn stdout(mut self, text: &str) -> Test {
        self.stdout.push(Expect::Exact(text.to_string()));
        self
    }

    pub fn stdout_contains(mut self, text: &str) -> Test {
        self.stdout.push(Expect::Contains(text.to_string()));
        self
    }

    pub fn stderr(mut self, text: &str) -> Test {
        self.stderr.push(Expect::Exact(text.to_string()));
        self
    }

    pub fn stderr_contains(mut self, text: &str) -> Test {
        self.stderr.push(Expect::Contains(text.to_string()));
        self
    }

    pub fn stderr_lacks(mut self, text: &str) -> Test {
        self.stderr.push(Expect::Lacks(text.to_string()));
        self
    }

    pub fn stdout_lacks(mut self, text: &str) -> Test {
        self.stdout.push(Expect::Lacks(text.to_string()));
        self
    }

    /// The command this test runs, for tests that drive the process themselves.
    pub fn command(&self) -> Command {
        let mut command = Command::new(BIN);
        command.args(&self.args).current_dir(self.dir.path());
        for (name, _) in std::env::vars() {
            if name.starts_with("CUTOVER_") && name != "CUTOVER_TEST_REQUIRE" {
                command.env_remove(name);
            }
        }
        command.env("NO_COLOR", "1").env("HOME", self.dir.path());
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// Runs to completion and checks the exit code and every expectation.
    pub fn status(self, code: i32) -> Finished {
        let mut command = self.command();
        command.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("cannot start cutover");
        if let Some(text) = &self.stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        let output = child.wait_with_output().unwrap();
        self.check(output, code)
    }

    pub fn success(self) -> Finished {
        self.status(0)
    }

    fn check(self, output: Output, code: i32) -> Finished {
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(
            output.status.code(),
            Some(code),
            "cutover {:?} exit status\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            self.args
        );
        self.stdout.iter().for_each(|e| e.check("stdout", &stdout));
        self.stderr.iter().for_each(|e| e.check("stderr", &stderr));
        Finished {
            dir: self.dir,
            stdout,
            stderr,
        }
    }

    /// One more run in this test's directory with `args` (after any set with `.args`), for
    /// tests where several runs share state: a second run racing the first, `history` after.
    pub fn run(&self, args: &[&str]) -> Ran {
        let output = self
            .command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("cannot start cutover");
        Ran {
            args: args.iter().map(|a| a.to_string()).collect(),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Starts one more run in this test's directory without waiting (output piped).
    pub fn start(&self, args: &[&str]) -> Child {
        self.command()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start cutover")
    }

    /// Starts the binary without waiting, for tests that signal it or race it.
    pub fn spawn(self) -> Running {
        let mut command = self.command();
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = command.spawn().expect("cannot start cutover");
        Running { test: self, child }
    }
}

/// A finished run: its output, and its directory for checking files it left.
pub struct Finished {
    dir: Arc<tempfile::TempDir>,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Every line of stderr that is a log line of `level` (`INFO`, `WARN`…), message only.
    pub fn log_lines(&self, level: &str) -> Vec<String> {
        self.stderr
            .lines()
            .filter_map(|line| {
                let mut words = line.splitn(3, ' ');
                let (_time, found, message) = (words.next()?, words.next()?, words.next()?);
                (found == level).then(|| message.trim_start().to_string())
            })
            .collect()
    }
}

/// The outcome of [`Test::run`].
#[derive(Debug)]
pub struct Ran {
    pub args: Vec<String>,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// Checks the exit code, showing the output when it differs.
    pub fn status(self, code: i32) -> Ran {
        assert_eq!(
            self.code,
            Some(code),
            "cutover {:?} exit status\n--- stdout\n{}\n--- stderr\n{}",
            self.args,
            self.stdout,
            self.stderr
        );
        self
    }

    pub fn success(self) -> Ran {
        self.status(0)
    }

    /// The output of a child started with [`Test::start`].
    pub fn of(child: Child) -> Ran {
        let output = child.wait_with_output().unwrap();
        Ran {
            args: Vec::new(),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// A run in progress.
pub struct Running {
    test: Test,
    pub child: Child,
}

impl Running {
    pub fn signal(&self, signal: i32) {
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Waits for exit and checks the code; returns how long the process lived after `since`.
    pub fn finish(self, code: i32, since: Instant) -> (Finished, Duration) {
        let output = self.child.wait_with_output().unwrap();
        let lived = since.elapsed();
        (self.test.check(output, code), lived)
    }
}

/// Waits until `lock status` says the lock is held, and returns what it says.
pub fn wait_until_held(test: &Test) -> String {
    let started = Instant::now();
    loop {
        let status = test.run(&["lock", "status"]).success();
        if status.stdout.starts_with("held by") {
            return status.stdout;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never held: {}",
            status.stdout
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
