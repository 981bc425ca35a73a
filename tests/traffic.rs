//! Zero downtime, proven under load: an in-process load generator sends more than 1,000
//! requests a second through a real Caddy for more than 20 s while production moves over 50
//! times, with slow requests (500 ms) in flight at every move. The routes dial upstream files,
//! as the shipped config does, so nothing reloads: every request ends 2xx, those of
//! browser-like clients and those of clients that never retry, GET and POST alike. Two ways:
//! blue↔green switches of one-file routes, and routes of ten slot files scaled 1 → 3 → 1
//! replicas (the surplus stopped after the switch, as `cutover scale` does) and switched
//! blue↔green while scaled.
//!
//! Switching by PATCH (a config reload) is measured by `cargo bench --bench switch`, not
//! asserted here: each reload closes idle keep-alive connections (a never-retry client fails
//! on them) and, with Caddy's SO_REUSEPORT listeners, resets a few connections that were still
//! in the old socket's accept queue or handshake, which even a browser's one retry can hit at
//! this request rate.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use crate::{
    support::{
        self, Service,
        caddy::{CaddyProcess, file_dial, proxy_config, proxy_route, proxy_route_to, slot_files},
        demo::DemoProcess,
        load::{Group, Load, Method, Plan, Report, Retry},
    },
    test::Test,
};

/// Switches both routes back and forth, at least 50 times and for at least 20 s.
const FLIP: &str = r#"
fn main(blue, green, blue_slow, green_slow) {
    let started = time::now();
    let switches = 0;
    while switches < 50 || time::now() - started < 20500 {
        let to = if switches % 2 == 0 { [green, green_slow] } else { [blue, blue_slow] };
        caddy::switch("production", [to[0]]);
        caddy::switch("slow", [to[1]]);
        switches += 1;
        sleep(300);
    }
    print(`switched ${switches} times in ${time::now() - started} ms`);
}
"#;

struct Upstreams {
    blue: DemoProcess,
    green: DemoProcess,
    blue_slow: DemoProcess,
    green_slow: DemoProcess,
}

impl Upstreams {
    fn start() -> Upstreams {
        let start = |version: &str, latency: &str| {
            DemoProcess::start(
                support::free_port(),
                &[("VERSION", version), ("LATENCY_MS", latency)],
            )
        };
        Upstreams {
            blue: start("blue", "0"),
            green: start("green", "0"),
            blue_slow: start("blue-slow", "500"),
            green_slow: start("green-slow", "500"),
        }
    }
}

/// Runs the flip runbook under load against routes that dial upstream files in `dir`; returns
/// what the load generator saw.
fn switch_under_load(dir: &Path) -> Report {
    let up = Upstreams::start();
    let dial = |name: &str, target: &DemoProcess| {
        let file = dir.join(name);
        std::fs::write(&file, target.address()).unwrap();
        file_dial(&file)
    };
    let port = support::free_port();
    let caddy = CaddyProcess::start(proxy_config(
        port,
        vec![
            proxy_route("slow", Some("/slow"), &dial("slow", &up.blue_slow)),
            proxy_route("production", None, &dial("production", &up.blue)),
        ],
    ));
    let load = load_on(port);
    std::thread::sleep(Duration::from_millis(300));
    let run = Test::new()
        .env("CADDY_ADMIN", caddy.admin_url())
        .runbook("flip", FLIP)
        .args([
            "flip",
            &up.blue.address(),
            &up.green.address(),
            &up.blue_slow.address(),
            &up.green_slow.address(),
        ])
        .success();
    std::thread::sleep(Duration::from_millis(300));
    let report = load.stop();
    let summary = run.stdout.trim().to_string();
    eprintln!("{summary}\n{}", report.describe());
    let switches: u32 = summary
        .split_whitespace()
        .skip_while(|w| *w != "switched")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("the runbook reports its switches");
    check_load(&report, switches);
    // Both sides really served, fast and slow.
    assert_served(
        &report,
        &[
            "demo-blue",
            "demo-green",
            "demo-blue-slow",
            "demo-green-slow",
        ],
    );
    report
}

/// Keep-alive clients through the proxy on `port`: browser-like GETs, slow GETs (`/slow`), and
/// GETs and POSTs that never retry, over 1,000 requests a second.
fn load_on(port: u16) -> Load {
    Load::start(Plan {
        target: format!("127.0.0.1:{port}").parse().unwrap(),
        groups: vec![
            Group::new("browser", Retry::Browser, Method::Get, 8, 150.0),
            Group::new("slow", Retry::Browser, Method::Get, 8, 2.0).path("/slow"),
            Group::new("never-retry GET", Retry::Never, Method::Get, 4, 25.0),
            Group::new("never-retry POST", Retry::Never, Method::Post, 4, 25.0),
        ],
        duration: Duration::from_secs(90),
        max_requests: 150_000,
        request_timeout: Duration::from_secs(10),
    })
}

/// The load was the one promised: at least 50 moves in at least 20 s at 1,000 requests a second.
fn check_load(report: &Report, switches: u32) {
    assert!(switches >= 50, "only {switches} switches");
    assert!(
        report.elapsed >= Duration::from_secs(20),
        "{}",
        report.describe()
    );
    assert!(report.rate() >= 1000.0, "{}", report.describe());
}

/// Each of `who` (an `x-served-by`) answered requests of the browser or slow clients.
fn assert_served(report: &Report, who: &[&str]) {
    let samples = report.samples(&["browser", "slow"]);
    for who in who {
        let served = samples
            .iter()
            .filter(|s| s.served_by.as_deref() == Some(*who))
            .count();
        assert!(served > 0, "{who} served nothing:\n{}", report.describe());
    }
}

/// Not one request failed, and none needed a retry: no connection was closed under a client.
fn assert_zero_failures(report: &Report) {
    for group in ["browser", "slow", "never-retry GET", "never-retry POST"] {
        assert_eq!(report.group(group).failures(), 0, "{}", report.describe());
    }
    assert_eq!(report.group("browser").retried, 0, "{}", report.describe());
}

#[test]
fn zero_failed_requests_while_switching_under_load() {
    if !support::require(Service::Caddy) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let report = switch_under_load(dir.path());
    assert_zero_failures(&report);
}

/// Moves both slotted routes to the fast and slow replicas given (comma-separated addresses).
const ROUTE: &str = r#"
fn main(fast, slow) {
    caddy::switch("production", fast.split(","));
    caddy::switch("slow", slow.split(","));
}
"#;

/// The replicas of one side (blue or green), fast and slow: replica 1 always runs, 2 and 3 come
/// and go as the side is scaled.
struct Side {
    name: &'static str,
    first: [DemoProcess; 2],
    surplus: Vec<[DemoProcess; 2]>,
}

impl Side {
    fn start(name: &'static str) -> Side {
        Side {
            name,
            first: Side::replica(name, 1),
            surplus: Vec::new(),
        }
    }

    /// Replica `n`, fast and slow (`demo-blue-2`, `demo-blue-slow-2`); listening when it
    /// returns, which is all its health is.
    fn replica(name: &str, n: usize) -> [DemoProcess; 2] {
        let start = |version: String, latency: &str| {
            DemoProcess::start(
                support::free_port(),
                &[("VERSION", &version), ("LATENCY_MS", latency)],
            )
        };
        [
            start(format!("{name}-{n}"), "0"),
            start(format!("{name}-slow-{n}"), "500"),
        ]
    }

    fn scale_up(&mut self) {
        self.surplus = (2..=3).map(|n| Side::replica(self.name, n)).collect();
    }

    /// Stops replicas 2 and 3; each finishes the (slow) requests it has in flight first.
    fn scale_down(&mut self) {
        DemoProcess::stop_all(self.surplus.drain(..).flatten().collect());
    }

    /// The `ROUTE` arguments sending both routes to every running replica.
    fn route_args(&self) -> [String; 2] {
        let replicas: Vec<&[DemoProcess; 2]> =
            std::iter::once(&self.first).chain(&self.surplus).collect();
        [0, 1].map(|kind| {
            let addresses: Vec<String> = replicas.iter().map(|r| r[kind].address()).collect();
            addresses.join(",")
        })
    }
}

#[test]
fn zero_failed_requests_while_scaling_slotted_routes_under_load() {
    if !support::require(Service::Caddy) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut sides = [Side::start("blue"), Side::start("green")];
    let route = |id: &str, prefix: Option<&str>, first: &DemoProcess| {
        let files = slot_files(dir.path(), id, 10, &first.address());
        let dials: Vec<String> = files.iter().map(|f| file_dial(f)).collect();
        proxy_route_to(id, prefix, &dials)
    };
    let port = support::free_port();
    let caddy = CaddyProcess::start(proxy_config(
        port,
        vec![
            route("slow", Some("/slow"), &sides[0].first[1]),
            route("production", None, &sides[0].first[0]),
        ],
    ));
    let config = caddy.config();
    let test = Test::new()
        .env("CADDY_ADMIN", caddy.admin_url())
        .runbook("route", ROUTE);
    let switch_to = |side: &Side, switches: &mut u32| {
        let [fast, slow] = side.route_args();
        test.run(&["route", &fast, &slow]).success();
        *switches += 1;
        std::thread::sleep(Duration::from_millis(250));
    };
    let load = load_on(port);
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let (mut switches, mut serving) = (0, 0);
    while switches < 50 || started.elapsed() < Duration::from_millis(20_500) {
        let [a, b] = &mut sides;
        let (side, other) = if serving == 0 { (a, b) } else { (b, a) };
        // Scale up: the new replicas are healthy before the proxy sends them anything.
        side.scale_up();
        switch_to(side, &mut switches);
        // Scale down: out of the proxy first, then stopped.
        let surplus = std::mem::take(&mut side.surplus);
        switch_to(side, &mut switches);
        side.surplus = surplus;
        side.scale_down();
        // Scaled to 3 again, then blue-green to the other side's one replica.
        side.scale_up();
        switch_to(side, &mut switches);
        switch_to(other, &mut switches);
        side.scale_down();
        serving = 1 - serving;
    }
    std::thread::sleep(Duration::from_millis(300));
    let report = load.stop();
    eprintln!("{switches} switches\n{}", report.describe());
    check_load(&report, switches);
    let mut everyone = Vec::new();
    for side in ["blue", "green"] {
        for n in 1..=3 {
            everyone.push(format!("demo-{side}-{n}"));
            everyone.push(format!("demo-{side}-slow-{n}"));
        }
    }
    assert_served(
        &report,
        &everyone.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_zero_failures(&report);
    assert_eq!(caddy.config(), config, "a switch by slots reloads nothing");
}
