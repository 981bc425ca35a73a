//! `defer(closure)`: cleanup that runs when a run ends for any reason — success, an error,
//! `--timeout`, Ctrl-C — bounded in time and journaled like a change. The canary by hand that a
//! stop used to leave on a 70/30 split ends with production back on the baseline.

use crate::{
    caddy::{Routing, Stack},
    support::{self, Service},
    test::Test,
};

fn journal(test: &Test) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(test.path().join("deploy/cutover-journal.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The `message` of each journal entry of `event`.
fn messages(test: &Test, event: &str) -> Vec<String> {
    journal(test)
        .iter()
        .filter(|e| e["event"] == event)
        .map(|e| e["message"].as_str().unwrap_or("").to_string())
        .collect()
}

const IN_ORDER: &str = r#"import "undo" as undo;
fn main() {
    let done = false;
    defer(|| print(`first deferred runs last, done=${done}, ${undo::say("by import")}`));
    defer(|| state::set("cleaned", true), #{name: "mark cleaned"});
    undo::arm("from the module");
    done = true;
    print("main ends");
}"#;

/// A closure deferred inside a stdlib module calls that module's own functions.
const UNDO: &str = r#"fn say(what) { `undo ${what}` }
fn arm(what) { defer(|| print(say(what))); }"#;

#[test]
fn cleanups_run_last_deferred_first_when_the_run_ends_and_are_journaled() {
    let test = Test::new()
        .runbook("r", IN_ORDER)
        .stdlib("undo", UNDO)
        .args(["r"]);
    let ran = test
        .stdout("main ends\nundo from the module\nfirst deferred runs last, done=true, undo by import\n")
        .stderr_contains("running cleanup `mark cleaned` (deferred at runbooks/r.rhai:5:5)")
        .success();
    let state = std::fs::read_to_string(ran.path().join("deploy/cutover-state.json")).unwrap();
    assert!(state.contains("\"cleaned\": true"), "{state}");
    let changes: Vec<String> = {
        let text =
            std::fs::read_to_string(ran.path().join("deploy/cutover-journal.jsonl")).unwrap();
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|e| e["event"] == "change")
            .map(|e| format!("{} {}", e["message"].as_str().unwrap(), e["outcome"]))
            .collect()
    };
    assert_eq!(
        changes,
        [
            "cleanup deferred at stdlib/undo.rhai:2:16 \"ok\"",
            "state::set cleaned = true \"ok\"",
            "cleanup `mark cleaned` (deferred at runbooks/r.rhai:5:5) \"ok\"",
            "cleanup deferred at runbooks/r.rhai:4:5 \"ok\"",
        ]
    );
}

#[test]
fn a_run_stopped_by_timeout_still_runs_its_cleanup_and_exits_124() {
    let test = Test::new().runbook(
        "r",
        "fn main() {\n    defer(|| state::set(\"cleaned\", \"yes\"));\n    sleep(600000);\n}\n",
    );
    let ran = test.run(&["--timeout", "0.5", "r"]).status(124);
    assert!(
        ran.stderr.contains(
            "stopped by --timeout: running cleanup deferred at runbooks/r.rhai:2:5 (up to 30000 ms)"
        ) && ran.stderr.contains("runbooks/r.rhai:3:5: stopped by --timeout")
            && ran.stderr.contains(
                "This run made 2 change(s) before it ended:\n  - state::set cleaned = \"yes\"\n  - cleanup deferred at runbooks/r.rhai:2:5\n"
            ),
        "{}",
        ran.stderr
    );
    let state = std::fs::read_to_string(test.path().join("deploy/cutover-state.json")).unwrap();
    assert!(state.contains("\"cleaned\": \"yes\""), "{state}");
    let finish = journal(&test).pop().unwrap();
    assert_eq!(finish["outcome"], "timed out");
}

#[test]
fn a_failing_or_overlong_cleanup_fails_the_run_naming_it() {
    let test = Test::new()
        .runbook(
            "broken",
            "fn main() {\n    defer(|| { throw \"cannot undo\"; });\n    defer(|| print(\"the others still run\"));\n    print(\"main ok\");\n}\n",
        )
        .runbook(
            "slow",
            "fn main() {\n    defer(|| sleep(600000), #{name: \"slow undo\", timeout: 300});\n    throw \"main failed\";\n}\n",
        )
        .runbook("typo", "fn main() { defer(|| 1, #{tiemout: 5}); }")
        .runbook(
            "nest",
            "fn main() { defer(|| { print(\"outer\"); defer(|| print(\"inner\")); }); }",
        )
        .runbook("args", "fn main() { defer(|x| x); }");
    let broken = test.run(&["broken"]).status(1);
    assert_eq!(broken.stdout, "main ok\nthe others still run\n");
    assert!(
        broken.stderr.contains(
            "cleanup deferred at runbooks/broken.rhai:2:5 failed: runbooks/broken.rhai:2:16: cannot undo\n  |\n2 |     defer(|| { throw \"cannot undo\"; });\n  |                ^"
        ),
        "{}",
        broken.stderr
    );
    let slow = test.run(&["slow"]).status(1);
    assert!(
        slow.stderr.contains("runbooks/slow.rhai:3:5: main failed")
            && slow.stderr.contains(
                "cleanup `slow undo` (deferred at runbooks/slow.rhai:2:5) failed: did not finish within 300 ms"
            ),
        "{}",
        slow.stderr
    );
    let outcomes: Vec<String> = journal(&test)
        .iter()
        .filter(|e| e["event"] == "change")
        .map(|e| e["outcome"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(outcomes, ["ok", "failed", "failed"]);
    assert!(test.run(&["typo"]).status(1).stderr.contains(
        "runbooks/typo.rhai:1:13: defer: unknown option `tiemout` (known: name, timeout)"
    ));
    let nest = test.run(&["nest"]).success();
    assert_eq!(nest.stdout, "outer\n");
    assert!(
        nest.stderr
            .contains("1 cleanup(s) deferred by a cleanup not run: defer before the run ends"),
        "{}",
        nest.stderr
    );
    assert!(
        test.run(&["args"])
            .status(1)
            .stderr
            .contains("is not a function of this script taking no arguments")
    );
}

/// A dry run runs the cleanup too, so its plan shows what it would undo; nothing is journaled.
#[test]
fn a_dry_run_shows_what_its_cleanup_would_do() {
    let test = Test::new().runbook(
        "r",
        "fn main() { defer(|| state::set_active(\"blue\")); state::set_active(\"green\"); }",
    );
    let ran = test.run(&["--dry-run", "r"]).success();
    assert!(
        ran.stderr.contains("would state::set_active green")
            && ran
                .stderr
                .contains("running cleanup deferred at runbooks/r.rhai:1:13")
            && ran.stderr.contains("would state::set_active blue"),
        "{}",
        ran.stderr
    );
    assert!(!test.path().join("deploy/cutover-journal.jsonl").exists());
}

/// In the REPL an input's cleanups run when that input ends.
#[test]
fn a_repl_input_runs_its_cleanups_when_it_ends() {
    Test::new()
        .args(["repl"])
        .stdin("defer(|| print(\"undone\")); print(\"first input\");\nprint(\"second input\");\n")
        .stdout("first input\nundone\nsecond input\n")
        .success();
}

/// The canary by hand of issue 17: traffic split 70/30, the run stopped by `--timeout` in the
/// middle; the deferred cleanup puts production back on the baseline, and the journal says so.
#[test]
fn a_canary_by_hand_stopped_by_timeout_puts_production_back() {
    if !support::require(Service::Caddy) {
        return;
    }
    let stack = Stack::start(Routing::Slots);
    let (blue, green) = (stack.blue.address(), stack.green.address());
    let canary = r#"
fn main(baseline, canary) {
    defer(|| caddy::switch("production", [baseline]), #{name: "production back to the baseline"});
    let split = #{};
    split[baseline] = 70;
    split[canary] = 30;
    caddy::weights("production", split);
    print(`canary at 30%: ${caddy::upstreams("production")}`);
    sleep(600000);
}"#;
    let test = stack.test().runbook("canary", canary);
    let ran = test
        .run(&["--timeout", "2", "canary", &blue, &green])
        .status(124);
    assert!(ran.stdout.contains("canary at 30%"), "{}", ran.stdout);
    assert!(
        ran.stderr
            .contains("running cleanup `production back to the baseline`"),
        "{}",
        ran.stderr
    );
    assert!(
        stack.slots().iter().all(|a| *a == blue),
        "{:?}",
        stack.slots()
    );
    for _ in 0..20 {
        assert_eq!(stack.version(), "blue");
    }
    let changes = messages(&test, "change");
    assert!(
        changes[0].starts_with("caddy::weights production"),
        "{changes:?}"
    );
    assert!(
        changes[1].starts_with("caddy::switch production"),
        "{changes:?}"
    );
    assert!(
        changes[2].starts_with("cleanup `production back to the baseline`"),
        "{changes:?}"
    );
}

const DISMISSED: &str = r#"
fn main(outcome) {
    let undo = defer(|| state::set("undone", true), #{name: "undo the step"});
    print(`armed ${undo}`);
    state::set("step", outcome);
    if outcome == "fails" { throw "the step failed"; }
    print(`dismissed: ${dismiss(undo)}, again: ${dismiss(undo)}`);
}"#;

/// A cleanup dismissed once the normal path has done its job neither runs nor is journaled
/// (it changed nothing); the same run failing before the dismissal still runs it.
#[test]
fn a_dismissed_cleanup_does_not_run_and_one_left_armed_still_does() {
    let test = Test::new().runbook("r", DISMISSED);
    let changes = |test: &Test| -> Vec<String> {
        journal(test)
            .iter()
            .filter(|e| e["event"] == "change")
            .map(|e| format!("{} {}", e["message"].as_str().unwrap(), e["outcome"]))
            .collect()
    };
    let done = test.run(&["r", "works"]).success();
    assert_eq!(
        done.stdout,
        "armed `undo the step` (deferred at runbooks/r.rhai:3:16)\ndismissed: true, again: false\n"
    );
    assert!(!done.stderr.contains("running cleanup"), "{}", done.stderr);
    assert_eq!(changes(&test), ["state::set step = \"works\" \"ok\""]);
    let state = std::fs::read_to_string(test.path().join("deploy/cutover-state.json")).unwrap();
    assert!(!state.contains("undone"), "{state}");

    let failed = test.run(&["r", "fails"]).status(1);
    assert!(
        failed
            .stderr
            .contains("running cleanup `undo the step` (deferred at runbooks/r.rhai:3:16)"),
        "{}",
        failed.stderr
    );
    assert_eq!(
        changes(&test)[1..],
        [
            "state::set step = \"fails\" \"ok\"",
            "state::set undone = true \"ok\"",
            "cleanup `undo the step` (deferred at runbooks/r.rhai:3:16) \"ok\"",
        ]
    );
}
