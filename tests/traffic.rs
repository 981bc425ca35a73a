//! Zero downtime, proven under load: an in-process load generator sends more than 1,000
//! requests a second through a real Caddy for more than 20 s while a runbook switches
//! production between blue and green over 50 times, with slow requests (500 ms) in flight at
//! every switch. The routes dial upstream files, as the shipped config does, so a switch
//! reloads nothing: every request ends 2xx, those of browser-like clients and those of clients
//! that never retry, GET and POST alike.
//!
//! Switching by PATCH (a config reload) is measured by `cargo bench --bench switch`, not
//! asserted here: each reload closes idle keep-alive connections (a never-retry client fails
//! on them) and, with Caddy's SO_REUSEPORT listeners, resets a few connections that were still
//! in the old socket's accept queue or handshake, which even a browser's one retry can hit at
//! this request rate.

use std::{path::Path, time::Duration};

use crate::{
    support::{
        self, Service,
        caddy::{CaddyProcess, file_dial, proxy_config, proxy_route},
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
    let load = Load::start(Plan {
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
    });
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
    let summary = run.log_lines("INFO").join("\n");
    eprintln!("{summary}\n{}", report.describe());
    let switches: u32 = summary
        .split_whitespace()
        .skip_while(|w| *w != "switched")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("the runbook reports its switches");
    assert!(switches >= 50, "only {switches} switches");
    assert!(
        report.elapsed >= Duration::from_secs(20),
        "{}",
        report.describe()
    );
    assert!(report.rate() >= 1000.0, "{}", report.describe());
    // Both sides really served, fast and slow.
    for who in [
        "demo-blue",
        "demo-green",
        "demo-blue-slow",
        "demo-green-slow",
    ] {
        let served = report
            .samples(&["browser", "slow"])
            .iter()
            .filter(|s| s.served_by.as_deref() == Some(who))
            .count();
        assert!(served > 0, "{who} served nothing:\n{}", report.describe());
    }
    report
}

#[test]
fn zero_failed_requests_while_switching_under_load() {
    if !support::require(Service::Caddy) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let report = switch_under_load(dir.path());
    for group in ["browser", "slow", "never-retry GET", "never-retry POST"] {
        assert_eq!(report.group(group).failures(), 0, "{}", report.describe());
    }
    // Not even a retry was needed: no connection was closed under a client.
    assert_eq!(report.group("browser").retried, 0, "{}", report.describe());
}
