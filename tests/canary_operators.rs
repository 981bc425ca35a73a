//! A canary and the other operators on a real stack, with load running: the canary holds the
//! lock, yet `cutover promote` from a second terminal continues it from a `pause` step, `cutover
//! rollback` aborts it mid-step (traffic back on the baseline at once, the canary exits 1 saying
//! who asked), a `promote` outside a pause is declined, and `cutover status` shows the canary in
//! progress (split, step, figures, who runs it) without calling its split a disagreement.

use std::{
    io::{BufRead, BufReader, Read},
    process::{ChildStderr, Stdio},
    time::{Duration, Instant},
};

use crate::support::{self, KillOnDrop, Service, stack::Stack};

/// What production serves on `n` requests in a row, counted by version.
fn versions(stack: &Stack, n: usize) -> std::collections::BTreeMap<String, usize> {
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..n {
        *seen.entry(stack.version()).or_default() += 1;
    }
    seen
}

/// A canary of `args` in the background, its stderr read as it goes.
fn start_canary(
    stack: &Stack,
    args: &[&str],
    steps: &str,
    interval: &str,
) -> (KillOnDrop, BufReader<ChildStderr>) {
    let mut all = vec!["canary"];
    all.extend_from_slice(args);
    let mut command = stack
        .cutover(&all)
        .env("CANARY_STEPS", steps)
        .env("CANARY_INTERVAL", interval)
        .env("CANARY_MIN_REQUESTS", "20")
        // These tests are about the operator's controls, not the gates (tests/canary.rs has
        // those): on a CI machine running other stacks at once, one request held up 300 ms
        // moves the p99 of a hundred, so the latency gate is set out of noise's reach.
        .env("CANARY_MAX_P99_MS", "5000")
        .command();
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Stopped (by its pid) if an assertion fails before it ends.
    let mut run = KillOnDrop(command.spawn().unwrap());
    let stderr = BufReader::new(run.0.stderr.take().unwrap());
    (run, stderr)
}

/// A run's stderr with its warnings and errors repeated at the end, where a log cut to its
/// tail (as CI's is) still shows why the run ended as it did.
fn warnings_last(seen: &str) -> String {
    let why: Vec<&str> = seen
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    format!("{seen}\n--- its warnings and errors:\n{}", why.join("\n"))
}

/// Reads `stderr` until a line holds `text`; returns everything read.
fn read_until(stderr: &mut BufReader<ChildStderr>, seen: &mut String, text: &str) {
    while !seen.contains(text) {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "ended before {text:?}:\n{seen}"
        );
        seen.push_str(&line);
    }
}

#[test]
fn promote_continues_a_paused_canary_and_rollback_aborts_one_from_another_terminal() {
    if !support::require_all(&[Service::Docker, Service::Caddy, Service::Postgres]) {
        return;
    }
    let stack = Stack::running("canary-ops");

    // A pause after the first step: the canary holds 10 % until told to go on.
    let load = stack.load(Duration::from_secs(240));
    std::thread::sleep(Duration::from_millis(500));
    let (mut run, mut stderr) = start_canary(&stack, &["green"], "10,pause,50,100", "2");
    let mut seen = String::new();
    read_until(
        &mut stderr,
        &mut seen,
        "canary paused at 10 % of production on green",
    );
    assert!(
        seen.contains("'cutover promote' continues, 'cutover rollback' aborts"),
        "{seen}"
    );
    let paused = versions(&stack, 40);
    assert!(
        paused.contains_key("v1") && paused.contains_key("v2"),
        "{paused:?}"
    );

    // status, beside the running canary: its split is no disagreement.
    let status = stack.cutover(&["status"]).success();
    assert!(
        status.stdout.contains(
            "canary in progress: 10 % of production on green (v2) against blue (v1), step 2 of 4"
        ),
        "{}",
        status.stdout
    );
    assert!(status.stdout.contains(", run by "), "{}", status.stdout);
    assert!(
        status.stdout.contains("last figures: canary 5xx 0.0 % ("),
        "{}",
        status.stdout
    );
    assert!(
        status
            .stdout
            .contains("PAUSED: 'cutover promote' continues the canary"),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains("CANARY 10 % (step 2 of 4, paused)"),
        "{}",
        status.stdout
    );
    assert!(status.stdout.contains("ACTIVE since "), "{}", status.stdout);
    assert!(!status.stdout.contains("DISAGREE"), "{}", status.stdout);
    assert!(!status.stderr.contains("DISAGREE"), "{}", status.stderr);
    // The same for scripts.
    let json = stack.cutover(&["status", "--json"]).success();
    let report: serde_json::Value = serde_json::from_str(json.stdout.trim()).unwrap();
    assert_eq!(report["production"]["serving"], "blue", "{report:#}");
    assert_eq!(report["production"]["agree"], true, "{report:#}");
    assert_eq!(report["canary"]["env"], "green", "{report:#}");
    assert_eq!(report["canary"]["percent"], 10, "{report:#}");
    assert_eq!(report["canary"]["paused"], true, "{report:#}");
    let gateway = report["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["env"] == "green" && r["service"] == "green-api-gateway#1")
        .unwrap_or_else(|| panic!("{report:#}"));
    assert!(gateway["cpu_percent"].is_number(), "{gateway}");
    assert!(gateway["memory_bytes"].as_u64().unwrap() > 0, "{gateway}");
    assert_eq!(gateway["traffic"], "CANARY 10 % (step 2 of 4, paused)");

    // Still paused a while later: the pause waits for an operator, not for a clock.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        run.0.try_wait().unwrap().is_none(),
        "the pause ended by itself:\n{seen}"
    );

    // `cutover promote` from a second process: the canary takes it, and goes on.
    let asked = Instant::now();
    let promote = stack.cutover(&["promote"]).success();
    assert!(
        promote
            .stdout
            .contains("the canary of green continues from its pause at 10 % (step 2)"),
        "{}\n{}",
        promote.stdout,
        promote.stderr
    );
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    read_until(
        &mut stderr,
        &mut seen,
        "canary continues from the pause at 10 %: 'cutover promote' by ",
    );
    read_until(
        &mut stderr,
        &mut seen,
        "canary step 3/4: 50 % of production on green",
    );
    stderr.read_to_string(&mut seen).unwrap();
    assert_eq!(
        run.0.wait().unwrap().code(),
        Some(0),
        "{}",
        warnings_last(&seen)
    );
    let mut stdout = String::new();
    run.0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert!(
        stdout.contains("production: blue -> green (v2) after a canary"),
        "{stdout}"
    );
    let report = load.stop();
    for group in ["browser", "never-retry GET", "never-retry POST"] {
        assert_eq!(report.group(group).failures(), 0, "{}", report.describe());
    }
    assert_eq!(stack.active(), "green");
    assert_eq!(versions(&stack, 10), [("v2".to_string(), 10)].into());
    let journal = stack.journal();
    assert!(
        journal.iter().any(|e| e["kind"] == "promotion"
            && e["event"] == "record"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("asked the run holding the lock (")
                    && m.ends_with("continues from its pause at 10 % (step 2)"))),
        "{journal:#?}"
    );

    // Now blue (v1) is the standby. A canary of it, in a long step: a `promote` is declined
    // (nothing to continue), a `rollback` from a second process aborts it at once.
    let load = stack.load(Duration::from_secs(240));
    std::thread::sleep(Duration::from_millis(500));
    let (mut run, mut stderr) = start_canary(&stack, &["blue"], "10,50,100", "600");
    let mut seen = String::new();
    read_until(
        &mut stderr,
        &mut seen,
        "canary step 1/3: 10 % of production on blue",
    );
    let status = stack.cutover(&["status"]).success();
    assert!(
        status.stdout.contains(
            "canary in progress: 10 % of production on blue (v1) against green (v2), step 1 of 3"
        ) && status.stdout.contains("last figures: no step judged yet")
            && !status.stdout.contains("PAUSED"),
        "{}",
        status.stdout
    );
    stack
        .cutover(&["promote", "blue"])
        .stderr_contains("the canary of blue is judging step 1 (10 %) and goes on by itself")
        .status(1);
    let asked = Instant::now();
    let rollback = stack.cutover(&["rollback", "--yes"]).success();
    let took = asked.elapsed();
    assert!(
        rollback
            .stdout
            .contains("canary aborted at 10 %: 'cutover rollback' by ")
            && rollback
                .stdout
                .contains("traffic back on green; blue is still running for inspection"),
        "{}\n{}",
        rollback.stdout,
        rollback.stderr
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    // Back at once: the next requests all go to the baseline.
    assert_eq!(versions(&stack, 20), [("v2".to_string(), 20)].into());
    stderr.read_to_string(&mut seen).unwrap();
    assert_eq!(
        run.0.wait().unwrap().code(),
        Some(1),
        "{}",
        warnings_last(&seen)
    );
    let aborted: Vec<&str> = seen
        .lines()
        .filter(|l| l.contains("canary aborted at 10 %"))
        .collect();
    assert!(
        aborted.iter().any(|l| l.contains("ERROR")
            && l.contains("'cutover rollback' by ")
            && l.ends_with("traffic back on green")),
        "{seen}"
    );
    let report = load.stop();
    // A good build aborted by an operator: no request fails on the way.
    for group in ["browser", "never-retry GET", "never-retry POST"] {
        assert_eq!(report.group(group).failures(), 0, "{}", report.describe());
    }
    assert_eq!(stack.active(), "green");
    let status = stack.cutover(&["status"]).success();
    // No canary left in the report (the containers' names hold the stack's, `canary-ops-…`).
    assert!(
        !status.stdout.contains("canary in progress") && !status.stdout.contains("CANARY"),
        "{}",
        status.stdout
    );
    assert!(!status.stdout.contains("DISAGREE"), "{}", status.stdout);
    // A record that disagrees with the proxy is said loudly, first, in both forms.
    std::fs::write(stack.path().join("deploy/.current-environment"), "blue\n").unwrap();
    let status = stack.cutover(&["status"]).success();
    assert!(
        status
            .stdout
            .starts_with("WARNING: THE PROXY AND THE RECORD DISAGREE: the proxy serves green"),
        "{}",
        status.stdout
    );
    let json = stack.cutover(&["status", "--json"]).success();
    let report: serde_json::Value = serde_json::from_str(json.stdout.trim()).unwrap();
    assert_eq!(report["production"]["agree"], false, "{report:#}");
    assert_eq!(report["production"]["serving"], "green", "{report:#}");
    assert_eq!(report["production"]["recorded"], "blue", "{report:#}");
    assert!(
        json.stderr.contains("THE PROXY AND THE RECORD DISAGREE"),
        "{}",
        json.stderr
    );
    // The request files are gone once answered.
    let requests = stack.path().join("deploy/cutover-requests");
    assert_eq!(
        std::fs::read_dir(&requests).map(|d| d.count()).unwrap_or(0),
        0,
        "left in {}",
        requests.display()
    );
}
