//! State between runs: `.current-environment` as the old scripts wrote it, other keys in one JSON
//! file, never torn even when the writer is killed; dry runs and readonly runbooks change nothing.

use std::time::{Duration, SystemTime};

use crate::test::Test;

const WRITE: &str = r#"fn main() {
    state::set_active("green");
    state::set("tag", "v1.4.2");
    state::set("count", 3);
    state::set("ok", true);
    state::set("last", #{ from: "blue", ports: [8080, 8081] });
}"#;

const READ: &str = r#"//! readonly
fn main() {
    print(`active=${state::active()} tag=${state::get("tag")} count=${state::get("count") + 1}`);
    print(`ok=${state::get("ok")} from=${state::get("last").from} port=${state::get("last").ports[1]}`);
    print(`missing=${state::get("nope")} default=${state::get("nope", 7)}`);
}"#;

#[test]
fn values_round_trip_between_runs_in_the_old_scripts_format() {
    let test = Test::new().runbook("w", WRITE).runbook("r", READ);
    test.run(&["w"]).success();
    assert_eq!(
        std::fs::read_to_string(test.path().join("deploy/.current-environment")).unwrap(),
        "green\n"
    );
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(test.path().join("deploy/cutover-state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(json["tag"], "v1.4.2");
    assert_eq!(json["last"]["ports"][0], 8080);
    let read = test.run(&["r"]).success();
    assert!(
        read.stdout.contains("active=green tag=v1.4.2 count=4")
            && read.stdout.contains("ok=true from=blue port=8081")
            && read.stdout.contains("missing= default=7"),
        "{}",
        read.stdout
    );
}

#[test]
fn reads_what_the_old_scripts_wrote() {
    Test::new()
        .file("deploy/.current-environment", "blue")
        .runbook("r", "fn main() { print(`active=[${state::active()}]`); }")
        .args(["r"])
        .stdout_contains("active=[blue]")
        .success();
    Test::new()
        .runbook(
            "r",
            "fn main() { print(`active=${state::active() ?? \"none\"}`); }",
        )
        .args(["r"])
        .stdout_contains("active=none")
        .success();
}

#[test]
fn state_dir_from_flag_and_environment() {
    let test = Test::new().runbook("w", "fn main() { state::set_active(\"green\"); }");
    test.run(&["--state-dir", "elsewhere", "w"]).success();
    assert!(test.path().join("elsewhere/.current-environment").exists());
    let test = Test::new()
        .runbook("w", "fn main() { state::set_active(\"green\"); }")
        .env("CUTOVER_STATE_DIR", "from-env");
    test.run(&["w"]).success();
    assert!(test.path().join("from-env/.current-environment").exists());
    assert!(test.path().join("from-env/cutover-journal.jsonl").exists());
    assert!(!test.path().join("deploy").exists());
}

#[test]
fn bad_names_and_corrupt_files_are_clear_errors_that_change_nothing() {
    let test = Test::new()
        .file("deploy/.current-environment", "blue\n")
        .runbook("bad", "fn main(env) { state::set_active(env); }")
        .runbook("key", "fn main() { state::set(\"a/b\", 1); }")
        .runbook("get", "fn main() { state::get(\"x\"); }");
    for args in [
        vec!["bad", "blue; touch pwned"],
        vec!["--dry-run", "bad", "../green"],
    ] {
        let ran = test.run(&args).status(1);
        assert!(
            ran.stderr.contains(&format!(
                "{:?} is not a valid environment name: ",
                args.last().unwrap()
            )),
            "{}",
            ran.stderr
        );
    }
    let ran = test.run(&["key"]).status(1);
    assert!(
        ran.stderr.contains(r#""a/b" is not a valid state key"#),
        "{}",
        ran.stderr
    );
    assert_eq!(
        std::fs::read_to_string(test.path().join("deploy/.current-environment")).unwrap(),
        "blue\n"
    );
    assert!(!test.path().join("deploy/cutover-state.json").exists());
    assert!(!test.path().join("pwned").exists());

    std::fs::write(test.path().join("deploy/cutover-state.json"), "{\"x\": ").unwrap();
    let ran = test.run(&["get"]).status(1);
    assert!(
        ran.stderr
            .contains("deploy/cutover-state.json is not a JSON object of state keys"),
        "{}",
        ran.stderr
    );
}

/// A tiny xorshift generator: random kill moments without a dependency.
fn random_below(seed: &mut u64, bound: u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed % bound
}

#[test]
fn a_writer_killed_at_random_moments_never_leaves_a_torn_file() {
    const FLIP: &str = r#"fn main() {
    let i = 0;
    loop {
        state::set_active(if i % 2 == 0 { "green" } else { "blue" });
        state::set("counter", i);
        i += 1;
    }
}"#;
    let test = Test::new()
        .file("deploy/.current-environment", "blue\n")
        .file("deploy/cutover-state.json", "{\"counter\": -1}\n")
        .runbook("flip", FLIP);
    let active_path = test.path().join("deploy/.current-environment");
    let state_path = test.path().join("deploy/cutover-state.json");
    let journal_path = test.path().join("deploy/cutover-journal.jsonl");
    let mut seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let (mut previous, mut changes) = (None, 0);
    for round in 0..200 {
        // Kill at a random moment after the run started writing (its `start` entry is in the
        // journal), so the kills land among the writes rather than during start-up.
        let journal_size = || std::fs::metadata(&journal_path).map_or(0, |m| m.len());
        let before = journal_size();
        let mut writer = test.start(&["flip"]);
        let started = std::time::Instant::now();
        while journal_size() == before && started.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_micros(random_below(&mut seed, 150_000)));
        unsafe { libc::kill(writer.id() as i32, libc::SIGKILL) };
        writer.wait().unwrap();

        let active = std::fs::read_to_string(&active_path).unwrap();
        assert!(
            active == "blue\n" || active == "green\n",
            "round {round}: .current-environment holds {active:?}"
        );
        let state = std::fs::read_to_string(&state_path).unwrap();
        let json: serde_json::Value = serde_json::from_str(&state)
            .unwrap_or_else(|e| panic!("round {round}: torn state file {state:?}: {e}"));
        assert!(json["counter"].is_i64(), "round {round}: {state}");
        // Every write renames a freshly written file into place: a new mtime means this round
        // wrote.
        let written = std::fs::metadata(&state_path).unwrap().modified().unwrap();
        if Some(written) != previous {
            changes += 1;
            previous = Some(written);
        }
    }
    // The kills must have landed while writing, not only before the first write.
    assert!(
        changes >= 100,
        "only {changes} of 200 rounds wrote the state"
    );
    let leftovers = crate::pg::files_in(&test.path().join("deploy"))
        .iter()
        .filter(|name| name.contains(".tmp-"))
        .count();
    assert!(leftovers <= 2, "{leftovers} abandoned temporary files");
}

const CHANGES: &str = r#"fn main() {
    state::set_active("green");
    state::set("tag", "v2");
    let r = exec::run(["touch", "made-by-exec"]);
    print(`exec code=${r.code}`);
    audit::record("deployment", "deployed v2");
}"#;

#[test]
fn a_dry_run_changes_nothing_and_says_what_it_would_do() {
    let test = Test::new()
        .file("deploy/.current-environment", "blue\n")
        .file("deploy/cutover-state.json", "{\"tag\": \"v1\"}\n")
        .runbook("change", CHANGES);
    let before = |name: &str| {
        let path = test.path().join("deploy").join(name);
        (
            std::fs::read(&path).unwrap(),
            std::fs::metadata(&path).unwrap().modified().unwrap(),
        )
    };
    let (active, state) = (before(".current-environment"), before("cutover-state.json"));
    let dry = test.run(&["--dry-run", "change"]).success();
    for line in [
        "would state::set_active green",
        r#"would state::set tag = "v2""#,
        "would exec::run touch made-by-exec",
        "would audit::record deployment: deployed v2",
    ] {
        assert!(dry.stderr.contains(line), "lacks {line:?}:\n{}", dry.stderr);
    }
    assert_eq!(dry.stdout, "exec code=0\n");
    assert_eq!(before(".current-environment"), active);
    assert_eq!(before("cutover-state.json"), state);
    assert!(!test.path().join("made-by-exec").exists(), "exec ran");
    let names: Vec<String> = std::fs::read_dir(test.path().join("deploy"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "dry run left files: {names:?}");

    // The same runbook for real does all of it, and its log names each change as the dry run
    // did, without the "would".
    let real = test.run(&["change"]).success();
    for line in [
        "INFO  state::set_active green",
        r#"INFO  state::set tag = "v2""#,
        "INFO  exec::run touch made-by-exec",
        "INFO  audit::record deployment: deployed v2",
    ] {
        assert!(
            real.stderr.contains(line),
            "lacks {line:?}:\n{}",
            real.stderr
        );
    }
    assert!(test.path().join("made-by-exec").exists());
    assert_eq!(before(".current-environment").0, b"green\n");
}

#[test]
fn a_readonly_runbook_is_refused_any_change() {
    let test = Test::new()
        .file("deploy/.current-environment", "blue\n")
        .runbook("ro", &format!("//! Only looks.\n//! readonly\n{CHANGES}"));
    let refused = test.run(&["ro"]).status(1);
    assert!(
        refused.stderr.contains(
            "state::set_active green: refused, `ro` is a readonly runbook (its header says `//! readonly`)"
        ),
        "{}",
        refused.stderr
    );
    let exec = Test::new()
        .runbook(
            "ro",
            "//! readonly\nfn main() { exec::run([\"touch\", \"made\"]); }",
        )
        .args(["ro"])
        .stderr_contains("exec::run touch made: refused, `ro` is a readonly runbook")
        .status(1);
    assert!(!exec.path().join("made").exists());
    assert_eq!(
        std::fs::read_to_string(test.path().join("deploy/.current-environment")).unwrap(),
        "blue\n"
    );
    assert!(!test.path().join("deploy/cutover-journal.jsonl").exists());
}
