//! Docker for tests: the demo image, built once per test run through cutover's own
//! `docker::build` (a runbook run by the harness, so every run exercises the build path), and a
//! guard that removes what a test created — containers, networks and volumes found by the
//! test's label or compose project — when the test ends, pass or fail. Assertions may read the
//! engine through the `docker` CLI; cutover itself never uses it.

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::Command,
    sync::OnceLock,
    time::Duration,
};

use sha2::{Digest, Sha256};

use crate::{support::demo, test::Test};

/// The label every container, network and volume a test creates carries: `cutover.test=ID`.
pub const TEST_LABEL: &str = "cutover.test";

/// The demo service image, `cutover-demo:test-HASH` (HASH of the binary, so runs with
/// different binaries never share a tag), built on first use.
pub fn demo_image() -> String {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            let binary = demo::binary();
            let digest =
                Sha256::digest(std::fs::read(&binary).expect("cannot read the demo binary"));
            let hash: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
            let tag = format!("cutover-demo:test-{hash}");
            Test::new()
                .file(
                    "image/Dockerfile",
                    include_str!("../../deploy/demo-service/image/Dockerfile"),
                )
                .runbook(
                    "build",
                    r#"fn main(dir, tag, binary) { docker::build(dir, tag, #{files: #{"demo-service": binary}}) }"#,
                )
                .args(["build", "image", &tag, binary.to_str().unwrap()])
                .success();
            tag
        })
        .clone()
}

/// Runs the docker CLI (test side only) and returns its trimmed stdout; panics on failure.
pub fn docker(args: &[&str]) -> String {
    let output = Command::new("docker")
        .args(args)
        .output()
        .expect("cannot run the docker CLI");
    assert!(
        output.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// `docker inspect -f FORMAT NAME`.
pub fn inspect(name: &str, format: &str) -> String {
    docker(&["inspect", "-f", format, name])
}

/// Whether the engine keeps a healthcheck's `start_interval` (API 1.44, Docker Engine 25, on):
/// an older one drops it from what it stores.
pub fn keeps_start_interval() -> bool {
    let version = docker(&["version", "--format", "{{.Server.APIVersion}}"]);
    let (major, minor) = version.split_once('.').expect("an API version like 1.41");
    (major.parse::<u32>().unwrap(), minor.parse::<u32>().unwrap()) >= (1, 44)
}

/// Removes, on drop, everything labelled with this test's id or belonging to its compose
/// projects, and the images it names.
pub struct Cleanup {
    pub id: String,
    projects: Vec<String>,
    images: Vec<String>,
}

impl Cleanup {
    pub fn new(prefix: &str) -> Cleanup {
        Cleanup {
            id: crate::support::unique_name(prefix),
            projects: Vec::new(),
            images: Vec::new(),
        }
    }

    /// `cutover.test=ID`, for labels and filters.
    pub fn label(&self) -> String {
        format!("{TEST_LABEL}={}", self.id)
    }

    /// A compose project name unique to this test, removed at the end.
    pub fn project(&mut self, prefix: &str) -> String {
        let name = crate::support::unique_name(prefix);
        self.projects.push(name.clone());
        name
    }

    /// An image tag to remove at the end.
    pub fn image(&mut self, reference: &str) {
        self.images.push(reference.to_string());
    }

    fn filters(&self) -> Vec<String> {
        let mut filters = vec![format!("label={}", self.label())];
        filters.extend(
            self.projects
                .iter()
                .map(|p| format!("label=com.docker.compose.project={p}")),
        );
        filters
    }
}

/// The ids the docker CLI lists for `what` (`ps -a`, `network ls`, `volume ls`) under `filter`.
fn listed(what: &[&str], filter: &str) -> Vec<String> {
    let mut args = what.to_vec();
    args.extend(["-q", "--filter", filter]);
    let output = Command::new("docker").args(&args).output();
    output
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

impl Cleanup {
    /// Removes everything created so far (a benchmark does between runs); dropping does too.
    pub fn remove(&self) {
        for filter in self.filters() {
            let run = |args: &[&str], ids: Vec<String>| {
                if !ids.is_empty() {
                    let _ = Command::new("docker").args(args).args(&ids).output();
                }
            };
            run(&["rm", "-f", "-v"], listed(&["ps", "-a"], &filter));
            run(&["network", "rm"], listed(&["network", "ls"], &filter));
            run(&["volume", "rm", "-f"], listed(&["volume", "ls"], &filter));
        }
        for image in &self.images {
            let _ = Command::new("docker").args(["rmi", "-f", image]).output();
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The body of `GET path` on 127.0.0.1:port, retried until the service answers.
pub fn http_get(port: u16, path: &str) -> String {
    let get = || -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        let mut response = String::new();
        stream.write_all(request.as_bytes()).ok()?;
        stream.read_to_string(&mut response).ok()?;
        let (_, body) = response.split_once("\r\n\r\n")?;
        Some(body.to_string())
    };
    super::wait_for(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || format!("nothing answers on port {port}"),
        get,
    )
}

/// A Docker registry of this test's own (Debian's `docker-registry`) on a free port of
/// 127.0.0.1, storing in a temporary directory; stopped when dropped.
pub struct Registry {
    pub port: u16,
    _process: super::KillOnDrop,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        let port = super::free_port();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let process = super::KillOnDrop(
            Command::new("/usr/bin/docker-registry")
                .arg("serve")
                .arg(&config)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        super::wait_listening(port, Duration::from_secs(10), "the registry");
        Registry {
            port,
            _process: process,
            _dir: dir,
        }
    }
}
