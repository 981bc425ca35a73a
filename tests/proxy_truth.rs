//! The proxy is the truth: which environment serves production is what the proxy's production
//! slots hold, and `.current-environment` only the record of intent. On a real stack: a run
//! stopped between its switch and its record is flagged by `status` and acted on correctly by
//! the next run; promotes and rollbacks killed (SIGKILL, SIGINT) at random moments under load
//! never leave a disagreement unflagged, a runbook acting on the wrong environment, a torn file
//! or a failed request; and a dead proxy is named as such, at once, and brought back.

use std::time::{Duration, SystemTime};

use std::sync::Arc;

use crate::{
    stack::{assert_serving, turn},
    support::{
        self, Service,
        caddy::{CaddyProcess, file_dial, proxy_config, proxy_route_to, slot_files},
        load::{Group, Load, Method, Plan, Retry},
        stack::Stack,
    },
    test::{Finished, Test},
};

/// The flag `status` (and every run finding a disagreement) starts with.
const FLAG: &str = "THE PROXY AND THE RECORD DISAGREE: ";

/// What the production slot files hold, each trimmed (empty for a missing slot).
fn slots(stack: &Stack) -> Vec<String> {
    std::iter::once("production".to_string())
        .chain((2..=10).map(|n| format!("production.{n}")))
        .map(|name| {
            let path = stack.path().join("deploy/caddy/upstreams").join(name);
            std::fs::read_to_string(path)
                .unwrap_or_default()
                .trim()
                .to_string()
        })
        .collect()
}

/// Whose address `addr` is: "blue", "green", or what it is when neither's.
fn owner(stack: &Stack, addr: &str) -> String {
    let port: u16 = addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("slot holds {addr:?}, not host:port"));
    for (env, first) in [("blue", stack.ports.blue), ("green", stack.ports.green)] {
        if (first..first + 3).contains(&port) {
            return env.to_string();
        }
    }
    panic!("slot holds {addr}, an address of neither blue nor green");
}

/// The environments the production slots send to, sorted, each once.
fn served_by(stack: &Stack) -> Vec<String> {
    let mut envs: Vec<String> = slots(stack)
        .iter()
        .map(|addr| {
            assert!(
                !addr.is_empty(),
                "an empty production slot: {:?}",
                slots(stack)
            );
            owner(stack, addr)
        })
        .collect();
    envs.sort();
    envs.dedup();
    envs
}

fn other(env: &str) -> &'static str {
    if env == "blue" { "green" } else { "blue" }
}

fn version_of(env: &str) -> &'static str {
    if env == "blue" { "v1" } else { "v2" }
}

/// The journal's `disagreement` records.
fn disagreements(stack: &Stack) -> usize {
    stack
        .journal()
        .iter()
        .filter(|e| e["event"] == "record" && e["kind"] == "disagreement")
        .count()
}

/// What a run said, printed results and log lines alike (results may go to stdout or the log).
fn said(run: &Finished) -> String {
    format!("{}\n{}", run.stdout, run.stderr)
}

/// Checks that a run said each of `wanted`.
fn assert_said(run: &Finished, wanted: &[&str]) {
    let all = said(run);
    for text in wanted {
        assert!(all.contains(text), "lacks {text:?}:\n{all}");
    }
}

/// The first line of a run's output.
fn first_line(stderr: &str) -> &str {
    stderr.lines().next().unwrap_or("")
}

/// Prints what `bluegreen::truth` finds.
const TRUTH: &str = r#"//! readonly
import "stack" as stack;
import "bluegreen" as bg;
fn main() {
    let t = bg::truth(stack::config());
    print(`current=${t.current} agree=${t.agree} proxy=${t.proxy} envs=${t.envs}`);
    print(`problem=${t.problem}`);
}
"#;

#[test]
fn the_truth_is_what_the_production_slots_hold_and_each_disagreement_is_named() {
    if !support::require(Service::Caddy) {
        return;
    }
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let slots_dir = dir.path().join("slots");
    std::fs::create_dir_all(&slots_dir).unwrap();
    let files = slot_files(&slots_dir, "production", 10, "127.0.0.1:4200");
    let dials: Vec<String> = files.iter().map(|f| file_dial(f)).collect();
    let caddy = CaddyProcess::start(proxy_config(
        support::free_port(),
        vec![proxy_route_to("production", None, &dials)],
    ));
    std::fs::create_dir_all(dir.path().join("deploy")).unwrap();
    std::fs::write(
        dir.path().join("deploy/.env.blue-green"),
        format!(
            "CADDY_ADMIN={}\nBLUE_PORTS=4100-4109\nGREEN_PORTS=4200-4209\nSTAGING_PORTS=4300\n",
            caddy.admin_url()
        ),
    )
    .unwrap();
    let record = |env: &str| {
        std::fs::write(dir.path().join("deploy/.current-environment"), env).unwrap();
    };
    let truth = || {
        let run = Test::within(Arc::clone(&dir))
            .runbook("truth", TRUTH)
            .run(&["truth"])
            .success();
        format!("{}\n{}", run.stdout, run.stderr)
    };
    let expect = |found: String, wanted: &[&str]| {
        for text in wanted {
            assert!(found.contains(text), "lacks {text:?}:\n{found}");
        }
    };

    // Green's addresses, nothing recorded: green serves, the record is missing.
    expect(
        truth(),
        &[
            "current=green agree=false proxy=true envs=[\"green\"]",
            "no environment is recorded as active",
            "'cutover promote green' records it",
        ],
    );
    // Recorded blue: they disagree, and what the proxy serves wins.
    record("blue\n");
    expect(
        truth(),
        &[
            "current=green agree=false",
            ".current-environment says blue",
            "Acting on what the proxy serves: green",
            "'cutover rollback' sends production to blue",
        ],
    );
    // Recorded green: they agree.
    record("green\n");
    expect(truth(), &["current=green agree=true", "problem=\n"]);
    // Slots split between blue and green: no single environment serves.
    for file in &files[5..] {
        std::fs::write(file, "127.0.0.1:4101").unwrap();
    }
    expect(
        truth(),
        &[
            "current= agree=false",
            "envs=[\"green\", \"blue\"]",
            "a switch was stopped midway (or a canary is moving it: 'cutover lock status' shows a running one). 'cutover promote green' or 'cutover promote blue' sends all of production to one environment",
        ],
    );
    // An address no environment's range holds, and one of staging's: named, never guessed.
    std::fs::write(&files[9], "127.0.0.1:9999").unwrap();
    std::fs::write(&files[8], "127.0.0.1:4300").unwrap();
    expect(
        truth(),
        &[
            "current= agree=false",
            "nothing known (127.0.0.1:9999)",
            "staging",
        ],
    );
    // No proxy to ask: the record is all there is, and that is said.
    drop(caddy);
    expect(
        truth(),
        &[
            "current=green agree= proxy=false",
            "the proxy cannot be asked what production serves",
        ],
    );
}

#[test]
fn a_run_stopped_between_switch_and_record_is_flagged_and_acted_on() {
    let Some(_turn) = turn() else { return };
    let stack = Stack::running("truth");
    stack.cutover(&["promote", "green"]).success();
    // What a promote stopped after its switch and before its record leaves behind.
    std::fs::write(stack.path().join("deploy/.current-environment"), "blue\n").unwrap();
    let status = stack.cutover(&["status"]).success();
    let first = first_line(&status.stdout);
    assert!(
        first.contains(FLAG)
            && first.contains("the proxy serves green")
            && first.contains(".current-environment says blue")
            && first.contains("'cutover promote green' records it"),
        "{}",
        said(&status)
    );
    assert_said(
        &status,
        &["SERVING (not recorded)", "recorded ACTIVE, NOT SERVING"],
    );
    assert_eq!(disagreements(&stack), 1);

    let recorded_at = || {
        std::fs::metadata(stack.path().join("deploy/.current-environment"))
            .unwrap()
            .modified()
            .unwrap()
    };
    let stale = recorded_at();

    // Green, which really serves, dies: the failover sees production down and moves it.
    stack.docker(&["stop", &stack.container("green-api-gateway")]);
    let failover = stack
        .cutover(&["emergency-failover"])
        .stderr_contains(FLAG)
        .stderr_contains("production (green) is down")
        .success();
    assert_said(&failover, &["failed over: production green -> blue (v1)"]);
    assert!(!said(&failover).contains("no failover needed"));
    assert_serving(&stack, "blue", "v1");
    assert_eq!(disagreements(&stack), 2);
    // Blue is active since the failover, not since the stale record that named it.
    assert!(
        recorded_at() > stale,
        "the failover kept the stale record's time"
    );

    // A rollback to green now names what of green is down (its gateway).
    stack
        .cutover(&["rollback", "--yes"])
        .stderr_contains("cannot roll back to green: green-api-gateway#1 is exited (")
        .stderr_contains("Production stays on blue.")
        .stderr_contains("'cutover prepare green v2'")
        .stderr_lacks("it is not running")
        .stderr_contains("This run changed nothing.")
        .status(1);
    assert_serving(&stack, "blue", "v1");

    // Recorded blue, green really serving: the rollback goes from green to blue.
    stack.docker(&["start", &stack.container("green-api-gateway")]);
    stack.cutover(&["validate", "green"]).success();
    stack.cutover(&["promote", "green"]).success();
    std::fs::write(stack.path().join("deploy/.current-environment"), "blue\n").unwrap();
    let rollback = stack
        .cutover(&["rollback", "--yes"])
        .stderr_contains(FLAG)
        .success();
    assert_said(&rollback, &["rolled back: production green -> blue (v1)"]);
    assert_serving(&stack, "blue", "v1");
    let status = stack.cutover(&["status"]).success();
    assert!(!said(&status).contains(FLAG), "{}", said(&status));
    assert!(
        said(&status).contains("ACTIVE since 20"),
        "{}",
        said(&status)
    );

    // A switch stopped midway: one slot already on green. Nothing guesses; the rollback
    // refuses with the commands that repair it, and the first of them does.
    let green = format!("127.0.0.1:{}", stack.ports.green);
    std::fs::write(
        stack.path().join("deploy/caddy/upstreams/production.5"),
        format!("{green}\n"),
    )
    .unwrap();
    let status = stack.cutover(&["status"]).success();
    assert!(
        first_line(&status.stdout)
            .contains("the proxy's production slots hold addresses of blue and green"),
        "{}",
        said(&status)
    );
    stack
        .cutover(&["rollback", "--yes"])
        .stderr_contains("cannot roll back: the proxy's production slots hold addresses of blue and green")
        .stderr_contains("'cutover promote blue' or 'cutover promote green' sends all of production to one environment")
        .stderr_contains("This run changed nothing.")
        .status(1);
    stack.cutover(&["promote", "blue"]).success();
    assert_eq!(served_by(&stack), ["blue"]);
    assert_serving(&stack, "blue", "v1");
    let status = stack.cutover(&["status"]).success();
    assert!(!said(&status).contains(FLAG), "{}", said(&status));
}

fn random_below(seed: &mut u64, bound: u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed % bound.max(1)
}

/// How many promotes and rollbacks the kill test stops: `CUTOVER_KILL_ROUNDS`, default 200.
fn kill_rounds() -> usize {
    std::env::var("CUTOVER_KILL_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200)
}

#[test]
fn promotes_and_rollbacks_killed_at_random_moments_under_load_leave_nothing_unflagged() {
    let Some(_turn) = turn() else { return };
    let stack = Stack::running("kills");
    let load = Load::start(Plan {
        target: format!("127.0.0.1:{}", stack.ports.proxy).parse().unwrap(),
        groups: vec![
            Group::new("browser", Retry::Browser, Method::Get, 2, 40.0),
            Group::new("never-retry GET", Retry::Never, Method::Get, 1, 20.0),
            Group::new("never-retry POST", Retry::Never, Method::Post, 1, 20.0),
        ],
        duration: Duration::from_secs(1800),
        max_requests: 1_000_000,
        request_timeout: Duration::from_secs(10),
    });
    let mut seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    // Kills land anywhere in a run: from its start to a little past its usual end, measured
    // on runs of the same kind left to finish (a promote also waits for health): every fifth
    // round of each kind, beside the `kill_rounds()` stopped ones.
    let mut usual = [Duration::from_millis(300), Duration::from_millis(300)];
    let (mut flagged, mut mixed, mut completed, mut stopped) = (0, 0, 0, 0);
    let rounds = kill_rounds();
    let mut round = 0;
    while stopped < rounds {
        round += 1;
        let measure = round <= 2 || round % 10 < 2;
        let before = served_by(&stack);
        assert_eq!(before.len(), 1, "round {round}: {before:?}");
        let from = before[0].clone();
        let to = other(&from);
        let args: Vec<&str> = if round % 2 == 0 {
            vec!["promote", to]
        } else {
            vec!["rollback", "--yes"]
        };
        let signal = if random_below(&mut seed, 2) == 0 {
            libc::SIGKILL
        } else {
            libc::SIGINT
        };
        let kind = round % 2;
        if !measure {
            stopped += 1;
        }
        let delay = random_below(&mut seed, usual[kind].as_micros() as u64 * 11 / 10);
        let started = std::time::Instant::now();
        let run = stack.cutover(&args).spawn();
        if !measure {
            std::thread::sleep(Duration::from_micros(delay));
            run.signal(signal);
        }
        let output = run.child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        match output.status.code() {
            Some(0) => {
                if measure {
                    usual[kind] = started.elapsed();
                } else {
                    completed += 1;
                }
                // It ran to the end: it moved production from what the proxy served.
                assert_eq!(served_by(&stack), [to], "round {round} {args:?}:\n{stderr}");
                assert_eq!(stack.active(), to, "round {round} {args:?}:\n{stderr}");
            }
            None | Some(130) if !measure => {}
            code => panic!(
                "round {round}: {args:?} (stopped: {}) exited {code:?}:\n{stderr}",
                !measure
            ),
        }

        // No torn file.
        let active =
            std::fs::read_to_string(stack.path().join("deploy/.current-environment")).unwrap();
        assert!(
            active == "blue\n" || active == "green\n",
            "round {round}: .current-environment holds {active:?}"
        );
        if let Ok(state) = std::fs::read_to_string(stack.path().join("deploy/cutover-state.json")) {
            serde_json::from_str::<serde_json::Value>(&state)
                .unwrap_or_else(|e| panic!("round {round}: torn state file {state:?}: {e}"));
        }
        let now = served_by(&stack);
        let recorded = stack.active();
        if now == [recorded.as_str()] {
            continue;
        }

        // They disagree: status says so on its first line, and journals it.
        flagged += 1;
        let journaled = disagreements(&stack);
        let status = stack.cutover(&["status"]).success();
        assert!(
            first_line(&status.stdout).contains(FLAG),
            "round {round}: the proxy serves {now:?}, the record says {recorded}, and status does not flag it:\n{}",
            said(&status)
        );
        assert_eq!(disagreements(&stack), journaled + 1, "round {round}");

        // The next run acts on what the proxy serves, or refuses with the command that
        // repairs it.
        if now.len() == 1 {
            let serving = now[0].as_str();
            let back = other(serving);
            let rollback = stack
                .cutover(&["rollback", "--yes"])
                .stderr_contains(FLAG)
                .success();
            assert_said(
                &rollback,
                &[&format!("rolled back: production {serving} -> {back}")],
            );
            assert_serving(&stack, back, version_of(back));
            assert_eq!(served_by(&stack), [back]);
        } else {
            mixed += 1;
            let repair = format!("'cutover promote {recorded}'");
            stack
                .cutover(&["rollback", "--yes"])
                .stderr_contains(
                    "cannot roll back: the proxy's production slots hold addresses of ",
                )
                .stderr_contains(&repair)
                .status(1);
            stack.cutover(&["promote", &recorded]).success();
            assert_serving(&stack, &recorded, version_of(&recorded));
            assert_eq!(served_by(&stack), [recorded.as_str()]);
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let report = load.stop();
    println!(
        "{rounds} runs stopped at random moments: {completed} finished first, {flagged} left a disagreement ({mixed} with the slots split), every one flagged and acted on\n{}",
        report.describe()
    );
    for group in ["browser", "never-retry GET", "never-retry POST"] {
        assert_eq!(report.group(group).failures(), 0, "{}", report.describe());
    }
    // The kills must have landed inside runs, not only before or after them, and (over
    // enough rounds) some between a switch and its record.
    assert!(completed < rounds, "every run finished before its signal");
    assert!(
        rounds < 100 || flagged > 0,
        "no kill of {rounds} landed between a switch and its record"
    );
}

#[test]
fn a_dead_proxy_is_named_at_once_and_emergency_failover_brings_production_back() {
    let Some(_turn) = turn() else { return };
    let stack = Stack::running("proxy-down");
    let caddy = stack.container("caddy");
    stack.docker(&["kill", &caddy]);
    // Both fail at once (no health wait), saying the proxy is down and how to get it back;
    // neither blames green.
    for args in [vec!["promote", "green"], vec!["rollback", "--yes"]] {
        stack
            .cutover(&args)
            .env("TIMEOUT", "600")
            .stderr_contains("the proxy is down: the proxy's admin API (")
            .stderr_contains("its listener (127.0.0.1:")
            .stderr_contains(&format!("its container {caddy} is exited"))
            .stderr_contains("'cutover emergency-failover' starts it again")
            .stderr_lacks("health::wait")
            .stderr_lacks("green is unhealthy")
            .stderr_contains("This run changed nothing.")
            .status(1);
    }
    let status = stack.cutover(&["status"]).success();
    assert!(
        first_line(&status.stdout).contains("the proxy cannot be asked where production goes"),
        "{}",
        said(&status)
    );
    assert_said(&status, &["recorded ACTIVE since"]);
    // The failover starts the proxy, waits until it is ready, judges both environments
    // (directly too) and ends with production served.
    let failover = stack
        .cutover(&["emergency-failover"])
        .stderr_contains("the proxy is down: ")
        .stderr_contains("the proxy is ready")
        .success();
    assert_said(
        &failover,
        &[
            "production (blue, v1) is healthy: no failover needed (served again: the proxy was restarted)",
        ],
    );
    assert_serving(&stack, "blue", "v1");
    // And the proxy's faults no longer stand in the way.
    let promote = stack.cutover(&["promote", "green"]).success();
    assert_said(&promote, &["production: blue -> green (v2)"]);
    assert_serving(&stack, "green", "v2");
    // Bringing an environment up starts a dead proxy too, and routes through it only once it
    // is ready.
    stack.docker(&["kill", &caddy]);
    stack
        .cutover(&["prepare", "blue", "v1"])
        .stderr_contains("the proxy is ready")
        .stderr_contains("blue is healthy")
        .success();
    assert_serving(&stack, "green", "v2");
}
