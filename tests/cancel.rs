//! Ctrl-C, SIGTERM and `--timeout` stop a runbook within a second, wherever it is.

use std::time::{Duration, Instant};

use crate::test::{Finished, Test};

fn stop_with(signal: i32, runbook: &str, expected_message: &str) -> Finished {
    let running = Test::new()
        .stdlib("slow", "fn wait() {\n    sleep(600000);\n}\n")
        .runbook("r", runbook)
        .args(["r"])
        .spawn();
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    running.signal(signal);
    let (finished, lived) = running.finish(130, sent);
    assert!(lived < Duration::from_secs(1), "stopped after {lived:?}");
    assert!(
        finished.stderr.contains(expected_message),
        "{}",
        finished.stderr
    );
    finished
}

#[test]
fn sigint_during_a_long_host_call() {
    stop_with(
        libc::SIGINT,
        "import \"slow\" as slow;\nfn main() {\n  slow::wait();\n}\n",
        "stdlib/slow.rhai:2:5: interrupted (Ctrl-C or SIGTERM)\n  |\n2 |     sleep(600000);\n  |     ^\n  = in `wait`, called from runbooks/r.rhai:3:9\n",
    );
}

#[test]
fn sigint_during_a_tight_loop() {
    stop_with(
        libc::SIGINT,
        "fn main() {\n  loop {}\n}\n",
        "runbooks/r.rhai: interrupted (Ctrl-C or SIGTERM)",
    );
}

#[test]
fn sigterm_stops_like_ctrl_c() {
    stop_with(
        libc::SIGTERM,
        "fn main() { sleep(600000); }",
        "interrupted (Ctrl-C or SIGTERM)",
    );
}

#[test]
fn a_catch_cannot_swallow_the_stop() {
    let finished = stop_with(
        libc::SIGINT,
        "fn main() {\n  try { sleep(600000); } catch { print(\"swallowed\"); }\n  print(\"carried on\");\n}\n",
        "interrupted",
    );
    assert!(
        !finished.stdout.contains("carried on") && !finished.stderr.contains("carried on"),
        "{}{}",
        finished.stdout,
        finished.stderr
    );
}

#[test]
fn timeout_stops_with_124() {
    let started = Instant::now();
    Test::new()
        .runbook("r", "fn main() {\n  sleep(600000);\n}\n")
        .args(["--timeout", "0.5", "r"])
        .stderr("runbooks/r.rhai:2:3: stopped by --timeout\n  |\n2 |   sleep(600000);\n  |   ^\nThis run changed nothing.\n")
        .status(124);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn timeout_must_be_a_number_of_seconds() {
    Test::new()
        .runbook("r", "fn main() {}")
        .args(["--timeout", "-1", "r"])
        .stderr("error: --timeout takes a number of seconds ≥ 0, not -1\n")
        .status(2);
    Test::new()
        .runbook("r", "fn main() {}")
        .args(["--timeout", "nan", "r"])
        .stderr("error: --timeout takes a number of seconds ≥ 0, not NaN\n")
        .status(2);
}

/// A limit too large for any clock is one never reached: the run goes on as without it.
#[test]
fn a_huge_timeout_is_no_limit() {
    for limit in ["1e30", "inf", "1e300"] {
        Test::new()
            .runbook("r", "fn main() { sleep(10); print(\"done\"); }")
            .args(["--timeout", limit, "--lock-wait", limit, "r"])
            .stdout("done\n")
            .success();
    }
}

/// `wait_until` polls a closure until it returns something other than `false` or `()`, and
/// returns that; on its own timeout it throws naming the condition; `--timeout` stops it.
#[test]
fn wait_until_polls_a_condition() {
    Test::new()
        .runbook(
            "r",
            "fn main() {\n    let n = 0;\n    let got = wait_until(|| { n += 1; if n >= 3 { `after ${n} calls` } }, #{interval: 10});\n    print(got);\n    print(wait_until(|| true));\n}\n",
        )
        .args(["r"])
        .stdout("after 3 calls\ntrue\n")
        .success();
    Test::new()
        .runbook(
            "r",
            "fn main() {\n    wait_until(|| false, #{timeout: 100, interval: 20, name: \"green healthy\"});\n}\n",
        )
        .args(["r"])
        .stderr_contains("runbooks/r.rhai:2:5: wait_until: green healthy: still not true after ")
        .stderr_contains(" ms (it returned false)")
        .status(1);
    Test::new()
        .runbook(
            "r",
            "fn main() {\n    wait_until(|| (), #{timeout: 600000});\n}\n",
        )
        .args(["--timeout", "0.5", "r"])
        .stderr_contains("stopped by --timeout")
        .status(124);
    Test::new()
        .runbook("r", "fn main() { wait_until(|| true, #{intreval: 5}); }")
        .args(["r"])
        .stderr_contains("wait_until: unknown option `intreval` (known: timeout, interval, name)")
        .status(1);
}
