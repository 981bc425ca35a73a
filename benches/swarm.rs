//! Promote and rollback on a 3-node swarm (issue 16), against Swarm's own rolling update of the
//! same service in the same run, each under load with its failed requests counted.
//!
//! cutover: blue and green each run their gateway on 2 of the 3 nodes; `cutover promote green`
//! and `cutover rollback --yes` move production between them (process start to traffic moved
//! and verified through the proxy). Swarm: `docker service update --image` of blue's gateway
//! (the same service, image and healthcheck) to v2 and back (image and `VERSION`), `--update-order start-first`,
//! `--update-monitor 1s` (Swarm's default is 5 s per task; 1 s, the healthcheck's interval,
//! is the fairest to it), timed from the command's start until the proxy answers the new build
//! 10 times in a row (the ratio's figure), and until the command ends. The proxy dials every node's address on that port (host-mode publishing:
//! the routing mesh needs IPVS, and a start-first task lands on the node its port is free on),
//! retrying a node that refuses, as an edge proxy in front of a host-mode service would.
//! Targets (README, Benchmarks): ≤ 0.5× Swarm's time, 0 failed requests.
//!
//! `cargo bench --bench swarm` (needs root, Docker, `dockerd`, `ip`, `nsenter`, Caddy and
//! PostgreSQL as the stack tests do)

mod common;
#[path = "../tests/support/mod.rs"]
mod support;
// The support modules reach the test harness as `crate::test`.
#[path = "../tests/test.rs"]
mod test;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{median, timed};
use support::{load::Report, stack::Stack, swarm::Swarm};

/// Rounds of each: cutover's take under a second, Swarm's most of a minute.
const OUR_ROUNDS: usize = 21;
const SWARM_ROUNDS: usize = 3;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Until production answers `version` 10 times in a row (what `cutover promote` verifies).
fn until_served(stack: &Stack, version: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut in_a_row = 0;
    while in_a_row < 10 {
        assert!(
            Instant::now() < deadline,
            "production never served {version}"
        );
        if stack.version() == version {
            in_a_row += 1;
        } else {
            in_a_row = 0;
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Points production's slot files at `addresses` (cycled over the slots), each file written
/// whole and renamed, as cutover writes them.
fn route_production(stack: &Stack, addresses: &[String]) {
    let dir = stack.path().join("deploy/caddy/upstreams");
    for slot in 1..=10 {
        let name = if slot == 1 {
            "production".to_string()
        } else {
            format!("production.{slot}")
        };
        let temp = dir.join(format!(".{name}.bench"));
        std::fs::write(
            &temp,
            format!("{}\n", addresses[(slot - 1) % addresses.len()]),
        )
        .unwrap();
        std::fs::rename(temp, dir.join(name)).unwrap();
    }
}

fn failures(report: &Report) -> String {
    ["browser", "never-retry GET", "never-retry POST"]
        .iter()
        .map(|g| format!("{g} {}", report.group(g).failures()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn main() {
    support::stack::images();
    // Declared first, dropped last: the stack is torn down while its swarm still runs.
    let swarm = Swarm::start(2, &["cutover-demo:v1", "cutover-demo:v2"]);
    let stack = Stack::new("bench-swarm");
    swarm.drive(&stack);
    let run = |args: &[&str]| {
        stack.cutover(args).success();
    };
    run(&["prepare", "blue", "v1"]);
    run(&["scale", "blue-api-gateway", "2"]);
    run(&["promote", "blue"]);
    run(&["prepare", "green", "v2"]);
    run(&["scale", "green-api-gateway", "2"]);
    let cutover = |args: &[&str]| {
        let mut command = stack.cutover(args).command();
        command.stdin(Stdio::null());
        command
    };

    let load = stack.load(Duration::from_secs(600));
    std::thread::sleep(Duration::from_millis(500));
    let (mut promote, mut rollback) = (vec![], vec![]);
    for _ in 0..OUR_ROUNDS {
        promote.push(timed(&mut cutover(&["promote", "green"])));
        rollback.push(timed(&mut cutover(&["rollback", "--yes"])));
    }
    std::thread::sleep(Duration::from_millis(500));
    let ours = load.stop();

    // Swarm's way: blue's gateway updated in place, production dialing every node.
    let service = format!("{}_blue-api-gateway", stack.name);
    let every_node: Vec<String> = swarm
        .nodes
        .iter()
        .map(|n| format!("{}:{}", n.addr, stack.ports.blue))
        .collect();
    route_production(&stack, &every_node);
    until_served(&stack, "v1", Duration::from_secs(10));
    let manager = swarm.manager().host();
    // Two times for each update: until the proxy serves only the new build (traffic moved,
    // what cutover's figure is), and until the command ends (Swarm's update done and checked).
    let update = |image: &str, version: &str| {
        let started = Instant::now();
        let mut child = Command::new("docker")
            .args(["-H", &manager, "service", "update", "--detach=false", "-q"])
            .args(["--no-resolve-image", "--image", image])
            // What the build reports: the compose file sets it from the environment's tag.
            .args(["--env-add", &format!("VERSION={version}")])
            .args(["--update-order", "start-first", "--update-monitor", "1s"])
            .arg(&service)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot run the docker CLI");
        let stderr = child.stderr.take().unwrap();
        let waiter = std::thread::spawn(move || {
            let status = child.wait().unwrap();
            (status, started.elapsed())
        });
        until_served(&stack, version, Duration::from_secs(180));
        let served = started.elapsed();
        let (status, done) = waiter.join().unwrap();
        assert!(status.success(), "docker service update: {}", {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut { stderr }, &mut text).unwrap();
            text
        });
        (served, done)
    };
    let load = stack.load(Duration::from_secs(600));
    std::thread::sleep(Duration::from_millis(500));
    let (mut forward, mut back) = (vec![], vec![]);
    for _ in 0..SWARM_ROUNDS {
        forward.push(update("cutover-demo:v2", "v2"));
        back.push(update("cutover-demo:v1", "v1"));
    }
    std::thread::sleep(Duration::from_millis(500));
    let theirs = load.stop();

    let (promote, rollback) = (median(promote), median(rollback));
    let served = |times: &[(Duration, Duration)]| median(times.iter().map(|t| t.0).collect());
    let done = |times: &[(Duration, Duration)]| median(times.iter().map(|t| t.1).collect());
    println!(
        "promote / rollback on a 3-node swarm (gateway on 2 nodes), under load; medians of \
         {OUR_ROUNDS} (cutover) and {SWARM_ROUNDS} (Swarm)"
    );
    println!(
        "  cutover promote green                    {:>8.1} ms",
        ms(promote)
    );
    println!(
        "  docker service update --image v2: served {:>8.1} ms, command done {:.1} ms",
        ms(served(&forward)),
        ms(done(&forward))
    );
    println!(
        "  ratio to served                          {:>8.3}×   (target ≤ 0.5×)",
        promote.as_secs_f64() / served(&forward).as_secs_f64()
    );
    println!(
        "  cutover rollback --yes                   {:>8.1} ms",
        ms(rollback)
    );
    println!(
        "  docker service update back to v1: served {:>8.1} ms, command done {:.1} ms",
        ms(served(&back)),
        ms(done(&back))
    );
    println!(
        "  ratio to served                          {:>8.3}×   (target ≤ 0.5×)",
        rollback.as_secs_f64() / served(&back).as_secs_f64()
    );
    println!(
        "  failed requests, cutover ({} switches, {} requests): {}   (target 0)",
        2 * OUR_ROUNDS,
        ours.requests(),
        failures(&ours)
    );
    println!(
        "  failed requests, Swarm ({} updates, {} requests): {}",
        2 * SWARM_ROUNDS,
        theirs.requests(),
        failures(&theirs)
    );
}
