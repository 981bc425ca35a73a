//! The demo service (deploy/demo-service) for tests: built once per test run as a static binary
//! (the same one the `FROM scratch` image ships), and started as local processes when a test
//! needs upstreams without Docker.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    sync::OnceLock,
    time::Duration,
};

use super::KillOnDrop;

/// The static demo-service binary, built on first use.
pub fn binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
            let target_dir = root.join("target/demo");
            let status = Command::new(env!("CARGO"))
                .args([
                    "build",
                    "--release",
                    "-p",
                    "demo-service",
                    "--target",
                    "x86_64-unknown-linux-gnu",
                ])
                .arg("--target-dir")
                .arg(&target_dir)
                .env("RUSTFLAGS", "-C target-feature=+crt-static")
                .current_dir(&root)
                .status()
                .expect("cannot run cargo to build the demo service");
            assert!(status.success(), "building the demo service failed");
            target_dir.join("x86_64-unknown-linux-gnu/release/demo-service")
        })
        .clone()
}

/// A demo-service process on 127.0.0.1; killed when dropped.
pub struct DemoProcess {
    child: KillOnDrop,
    pub port: u16,
}

impl DemoProcess {
    /// Starts the demo service on `port` with extra environment, and waits until it listens
    /// (unless `START_DELAY_MS` asks it to be slow).
    pub fn start(port: u16, env: &[(&str, &str)]) -> DemoProcess {
        let mut command = Command::new(binary());
        command
            .env_clear()
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.spawn().expect("cannot start the demo service");
        let process = DemoProcess {
            child: KillOnDrop(child),
            port,
        };
        if !env.iter().any(|(name, _)| *name == "START_DELAY_MS") {
            process.wait_listening(Duration::from_secs(5));
        }
        process
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops them all as `docker stop` does: SIGTERM, after which each finishes the requests
    /// it has in flight (at most `DRAIN_MS`) and exits. Returns once every one has.
    pub fn stop_all(processes: Vec<DemoProcess>) {
        for process in &processes {
            let pid = process.child.0.id() as libc::pid_t;
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        for mut process in processes {
            let status = process
                .child
                .0
                .wait()
                .expect("cannot wait for the demo service");
            assert!(
                status.success(),
                "the demo service ended {status} on SIGTERM"
            );
        }
    }

    pub fn wait_listening(&self, limit: Duration) {
        super::wait_listening(self.port, limit, "the demo service");
    }
}
