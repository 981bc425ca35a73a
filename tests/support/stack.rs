//! A real blue-green stack for the runbook tests: the shipped compose file, Caddy config,
//! stdlib and runbooks (embedded in the binary under test), on the images `cutover images`
//! builds, under a project name and ports of its own so it never meets another stack. It is
//! torn down, volumes and all, when dropped.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, OnceLock},
    time::Duration,
};

use crate::{
    support::load::{Group, Load, Method, Plan, Retry},
    test::{BIN, Test},
};

/// The workspace root: images are built from it.
fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Builds the demo stack's images once per test process (`cutover images`; those already
/// there are kept), with a state directory of its own so the workspace's stays untouched.
pub fn images() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| build_images(&["v1", "v2", "v2-errors", "v2-slow"], None));
}

/// Builds the demo service's image as `repo:TAG` for each of `tags` (`cutover images` with
/// `DEMO_IMAGE`), and Caddy's and PostgreSQL's: tests that need the demo as this checkout
/// builds it, under a name no other checkout's test run retags.
pub fn images_named(repo: &str, tags: &[&str]) {
    build_images(tags, Some(repo));
}

/// `cutover images TAGS` (as `DEMO_IMAGE=repo` when given), with a state directory of its own.
fn build_images(tags: &[&str], repo: Option<&str>) {
    let state = tempfile::tempdir().unwrap();
    let mut command = Command::new(BIN);
    command
        .args(["--state-dir"])
        .arg(state.path())
        .args(["-q", "images", &tags.join(",")])
        .current_dir(workspace());
    if let Some(repo) = repo {
        command.env("DEMO_IMAGE", repo);
    }
    let output = command.output().expect("cannot run cutover images");
    assert!(
        output.status.success(),
        "cutover images failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Ports of a stack, all on 127.0.0.1.
#[derive(Debug, Clone)]
pub struct Ports {
    pub proxy: u16,
    pub admin: u16,
    /// First port of each environment's gateway range (3 replicas at most).
    pub blue: u16,
    pub green: u16,
}

pub struct Stack {
    dir: Arc<tempfile::TempDir>,
    pub name: String,
    pub ports: Ports,
}

impl Stack {
    /// A stack directory: the shipped files and demo settings with a name and ports of its
    /// own. Nothing runs yet.
    pub fn new(prefix: &str) -> Stack {
        images();
        Stack::with(prefix, &[])
    }

    /// A stack directory as [`Stack::new`] makes it, with `settings` set besides (replacing the
    /// demo's value of each, or added); its images must have been built.
    pub fn with(prefix: &str, settings: &[(&str, &str)]) -> Stack {
        let dir = tempfile::Builder::new()
            .prefix("cutover-stack-")
            .tempdir()
            .unwrap();
        let root = workspace();
        for file in [
            "deploy/docker-compose.blue-green.yml",
            "deploy/caddy/caddy.json",
        ] {
            let to = dir.path().join(file);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(root.join(file), to).unwrap();
        }
        let name = super::unique_name(prefix);
        let ports = Ports {
            proxy: super::free_port(),
            admin: super::free_port(),
            blue: free_range(3),
            green: free_range(3),
        };
        let template = std::fs::read_to_string(root.join("deploy/demo/demo.env")).unwrap();
        let overrides = [
            ("STACK_NAME", name.clone()),
            ("PROXY_PORT", ports.proxy.to_string()),
            ("BLUE_PROXY_PORT", super::free_port().to_string()),
            ("GREEN_PROXY_PORT", super::free_port().to_string()),
            ("STAGING_PROXY_PORT", super::free_port().to_string()),
            ("CADDY_ADMIN_PORT", ports.admin.to_string()),
            ("CADDY_ADMIN", format!("http://127.0.0.1:{}", ports.admin)),
            ("BLUE_PORTS", format!("{}-{}", ports.blue, ports.blue + 2)),
            (
                "GREEN_PORTS",
                format!("{}-{}", ports.green, ports.green + 2),
            ),
            ("STAGING_PORTS", format!("{0}-{0}", free_range(1))),
            ("TIMEOUT", "60".to_string()),
            // No release phase unless a test asks for one (tests/releases.rs does).
            ("MIGRATE_COMMAND", String::new()),
        ];
        let mut overrides: Vec<(&str, String)> = overrides.into();
        overrides.extend(settings.iter().map(|(k, v)| (*k, v.to_string())));
        let mut text = String::new();
        for line in template.lines() {
            let key = line.split('=').next().unwrap_or("");
            match overrides.iter().rev().find(|(name, _)| *name == key) {
                Some((name, value)) => text.push_str(&format!("{name}={value}\n")),
                None => text.push_str(&format!("{line}\n")),
            }
        }
        for (name, value) in settings {
            if !template.lines().any(|l| l.split('=').next() == Some(*name)) {
                text.push_str(&format!("{name}={value}\n"));
            }
        }
        let settings = text;
        let settings_path = dir.path().join("deploy/.env.blue-green");
        std::fs::write(settings_path, settings).unwrap();
        Stack {
            dir: Arc::new(dir),
            name,
            ports,
        }
    }

    /// A stack with blue on v1 serving production and green on v2 standing by.
    pub fn running(prefix: &str) -> Stack {
        let stack = Stack::new(prefix);
        stack.cutover(&["prepare", "blue", "v1"]).success();
        stack.cutover(&["promote", "blue"]).success();
        stack.cutover(&["prepare", "green", "v2"]).success();
        stack
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Sets `name=value` in the stack's settings file, replacing the line that sets it or
    /// adding one.
    pub fn set(&self, name: &str, value: &str) {
        let path = self.path().join("deploy/.env.blue-green");
        let text = std::fs::read_to_string(&path).unwrap();
        let prefix = format!("{name}=");
        let mut lines: Vec<String> = text
            .lines()
            .filter(|line| !line.starts_with(&prefix))
            .map(str::to_string)
            .collect();
        lines.push(format!("{name}={value}"));
        std::fs::write(path, lines.join("\n") + "\n").unwrap();
    }

    /// `cutover ARGS` in the stack's directory.
    pub fn cutover(&self, args: &[&str]) -> Test {
        Test::within(Arc::clone(&self.dir)).args(args.iter().copied())
    }

    /// What production answers at `/version`, through the proxy.
    pub fn version(&self) -> String {
        get(self.ports.proxy, "/version")
    }

    /// Keep-alive clients on the proxy, about 300 requests a second in all: browser-like GETs,
    /// and GETs and POSTs that never retry, for at most `duration`.
    pub fn load(&self, duration: Duration) -> Load {
        Load::start(Plan {
            target: format!("127.0.0.1:{}", self.ports.proxy).parse().unwrap(),
            groups: vec![
                Group::new("browser", Retry::Browser, Method::Get, 4, 50.0),
                Group::new("never-retry GET", Retry::Never, Method::Get, 2, 25.0),
                Group::new("never-retry POST", Retry::Never, Method::Post, 2, 25.0),
            ],
            duration,
            max_requests: 1_000_000,
            request_timeout: Duration::from_secs(10),
        })
    }

    /// `.current-environment`, trimmed (empty when missing).
    pub fn active(&self) -> String {
        std::fs::read_to_string(self.path().join("deploy/.current-environment"))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// The journal's entries, oldest first.
    pub fn journal(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.path().join("deploy/cutover-journal.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// The stack's container named `service`-`number` (`blue-api-gateway`, 1).
    pub fn container(&self, service: &str) -> String {
        format!("{}-{service}-1", self.name)
    }

    /// Runs `docker ARGS` (test plumbing: cutover itself never uses the CLI).
    pub fn docker(&self, args: &[&str]) -> String {
        let output = Command::new("docker").args(args).output().unwrap();
        assert!(
            output.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs SQL in the stack's database, as postgres, inside its container.
    pub fn psql(&self, sql: &str) -> String {
        self.docker(&[
            "exec",
            &self.container("postgres"),
            "psql",
            "-U",
            "postgres",
            "-d",
            "flappyjournal",
            "-Atc",
            sql,
        ])
        .trim()
        .to_string()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = Command::new(BIN)
            .args(["-q", "teardown", "volumes", "--yes"])
            .current_dir(self.dir.path())
            .env("HOME", self.dir.path())
            .output();
    }
}

/// `GET path` on 127.0.0.1:`port`, the body (empty on any failure).
pub fn get(port: u16, path: &str) -> String {
    get_from(&format!("127.0.0.1:{port}"), "127.0.0.1", path)
}

/// `GET path` on `addr` (`IP:PORT`) with `Host: host`, the body (empty on any failure).
pub fn get_from(addr: &str, host: &str, path: &str) -> String {
    let Ok(addr) = addr.parse::<std::net::SocketAddr>() else {
        return String::new();
    };
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return String::new();
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

/// The first of `count` consecutive free ports.
fn free_range(count: u16) -> u16 {
    loop {
        let first = super::free_port();
        let all_free = (1..count).all(|i| first.checked_add(i).is_some_and(super::claim_port));
        if all_free {
            return first;
        }
    }
}
