//! The audit journal: start, change and finish entries written by the host, the runbook's own
//! `audit::record` entries, `cutover history` with its filters, and a torn last line.

use std::io::Write;

use crate::test::Test;

const PROMOTE: &str = r#"//! Promote an environment.
//! kind: promotion
fn main(env) {
    state::set_active(env);
    audit::record("promotion", `promoted ${env}`, #{ tag: "v1.4.2" });
}"#;

const BACKUP: &str = r#"//! kind: backup
fn main() { state::set("last_backup", "db.dump"); }"#;

const FAIL: &str = r#"//! kind: rollback
fn main() {
    state::set("x", 1);
    throw "standby unhealthy";
}"#;

fn journal(test: &Test) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(test.path().join("deploy/cutover-journal.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn ops() -> Test {
    Test::new()
        .runbook("promote", PROMOTE)
        .runbook("backup", BACKUP)
        .runbook("fail", FAIL)
        .runbook("plain", "fn main() { state::set(\"y\", 2); }")
}

#[test]
fn every_run_and_every_change_is_journaled() {
    let test = ops();
    test.run(&["promote", "green"]).success();
    test.run(&["fail"]).status(1);
    test.run(&["plain"]).success();
    let entries = journal(&test);
    let events: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap(),
                e["event"].as_str().unwrap(),
                e["message"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("promotion", "start", "cutover run promote green"),
            ("promotion", "change", "state::set_active green"),
            ("promotion", "record", "promoted green"),
            ("promotion", "finish", "promote ok"),
            ("rollback", "start", "cutover run fail"),
            ("rollback", "change", "state::set x = 1"),
            ("rollback", "finish", "fail failed"),
            ("plain", "start", "cutover run plain"),
            ("plain", "change", "state::set y = 2"),
            ("plain", "finish", "plain ok"),
        ]
    );
    let first = &entries[0];
    assert_eq!(first["runbook"], "promote");
    assert_eq!(first["args"], serde_json::json!(["green"]));
    assert!(first["user"].as_str().is_some_and(|u| !u.is_empty()));
    assert!(first["host"].as_str().is_some_and(|h| !h.is_empty()));
    assert!(first["pid"].as_u64().is_some());
    assert!(
        first["time"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .is_ok()
    );
    assert_eq!(entries[1]["outcome"], "ok");
    assert!(entries[1]["duration_ms"].is_u64());
    assert_eq!(entries[2]["fields"]["tag"], "v1.4.2");
    assert_eq!(entries[3]["outcome"], "ok");
    assert!(entries[3]["duration_ms"].is_u64());
    assert_eq!(entries[6]["outcome"], "failed");
    assert_eq!(
        entries[6]["error"],
        "runbooks/fail.rhai:4:5: standby unhealthy"
    );
}

#[test]
fn stopped_runs_say_how_they_ended() {
    let test = Test::new().runbook("slow", "fn main() { state::set(\"a\", 1); sleep(600000); }");
    test.run(&["--timeout", "0.3", "slow"]).status(124);
    let mut running = test.start(&["slow"]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    unsafe { libc::kill(running.id() as i32, libc::SIGINT) };
    assert_eq!(running.wait().unwrap().code(), Some(130));
    let finishes: Vec<(String, u64)> = journal(&test)
        .iter()
        .filter(|e| e["event"] == "finish")
        .map(|e| {
            (
                e["outcome"].as_str().unwrap().to_string(),
                e["duration_ms"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(finishes.len(), 2);
    assert_eq!(finishes[0].0, "timed out");
    assert!(finishes[0].1 >= 300, "{finishes:?}");
    assert_eq!(finishes[1].0, "interrupted");
}

#[test]
fn a_failed_change_is_journaled_as_failed() {
    let test = Test::new().runbook(
        "r",
        "fn main() { try { exec::run([\"/nonexistent/program\"]); } catch (e) { print(e); } }",
    );
    test.run(&["r"]).success();
    let change = journal(&test)
        .into_iter()
        .find(|e| e["event"] == "change")
        .unwrap();
    assert_eq!(change["message"], "exec::run /nonexistent/program");
    assert_eq!(change["outcome"], "failed");
    assert!(
        change["error"]
            .as_str()
            .unwrap()
            .contains("cannot start `/nonexistent/program`"),
        "{change}"
    );
}

#[test]
fn history_is_a_table_filtered_by_kind_and_count() {
    let test = ops();
    let empty = test.run(&["history"]).success();
    assert!(
        empty.stdout.is_empty()
            && empty
                .stderr
                .contains("no entries in deploy/cutover-journal.jsonl"),
        "{empty:?}"
    );
    test.run(&["promote", "green"]).success();
    test.run(&["backup"]).success();
    test.run(&["promote", "blue"]).success();

    let table = test.run(&["history"]).success().stdout;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        [
            "TIME", "WHO", "RUNBOOK", "KIND", "EVENT", "OUTCOME", "TOOK", "MESSAGE"
        ]
    );
    let columns: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(
        columns[3..8],
        ["promote", "promotion", "change", "ok", columns[7]],
        "{table}"
    );
    assert!(columns[7].ends_with("ms"), "{table}");
    assert_eq!(columns[8..], ["state::set_active", "green"], "{table}");
    assert_eq!(lines.len(), 1 + 4 + 3 + 4, "{table}");
    assert!(table.contains("cutover run promote blue"), "{table}");

    let promotions = test
        .run(&["history", "--kind", "promotion"])
        .success()
        .stdout;
    assert_eq!(promotions.lines().count(), 1 + 8, "{promotions}");
    assert!(!promotions.contains("backup"), "{promotions}");
    assert!(
        promotions.contains("promoted green {\"tag\":\"v1.4.2\"}"),
        "{promotions}"
    );

    let last = test
        .run(&["history", "--kind", "promotion", "-n", "2"])
        .success()
        .stdout;
    let rows: Vec<&str> = last.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{last}");
    assert!(
        rows[0].contains("record") && rows[0].contains("promoted blue"),
        "{last}"
    );
    assert!(
        rows[1].contains("finish") && rows[1].contains("promote ok"),
        "{last}"
    );

    let json = test
        .run(&["history", "--json", "--kind", "backup"])
        .success()
        .stdout;
    let entries: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 3);
    assert!(entries.iter().all(|e| e["kind"] == "backup"));

    let none = test.run(&["history", "--kind", "nothing"]).success();
    assert!(none.stdout.is_empty());
    assert!(
        none.stderr.contains("no entries of kind nothing"),
        "{}",
        none.stderr
    );
}

#[test]
fn a_torn_last_line_is_skipped_and_hides_nothing() {
    let test = ops();
    test.run(&["promote", "green"]).success();
    let path = test.path().join("deploy/cutover-journal.jsonl");
    // A crash in the middle of an append.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(br#"{"time":"2026-11-26T04:31:02.120Z","user":"ro"#)
        .unwrap();
    let history = test.run(&["history", "--json"]).success();
    assert_eq!(history.stdout.lines().count(), 4, "{}", history.stdout);
    assert!(
        history
            .stderr
            .contains("cutover-journal.jsonl:5: skipping a torn last line"),
        "{}",
        history.stderr
    );
    // The next run's entries start on a line of their own and are all readable.
    test.run(&["promote", "blue"]).success();
    let history = test.run(&["history", "--json", "-n", "100"]).success();
    let messages: Vec<String> = history
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["message"].to_string())
        .collect();
    assert_eq!(messages.len(), 8, "{messages:?}");
    assert_eq!(messages[7], "\"promote ok\"");
    assert!(
        history
            .stderr
            .contains("cutover-journal.jsonl:5: skipping a malformed line"),
        "{}",
        history.stderr
    );
}

#[test]
fn runbooks_read_the_journal_with_audit_history() {
    let test = ops().runbook(
        "last",
        r#"//! readonly
fn main() {
    let all = audit::history();
    let promotions = audit::history("promotion", 1);
    print(`all=${all.len()} last=${promotions[0].message} by=${promotions[0].runbook}`);
    print(`records=${audit::history("", 100).filter(|e| e.event == "record").len()}`);
}"#,
    );
    test.run(&["promote", "green"]).success();
    test.run(&["promote", "blue"]).success();
    let ran = test.run(&["last"]).success();
    assert!(
        ran.stdout.contains("all=8 last=promote ok by=promote") && ran.stdout.contains("records=2"),
        "{}",
        ran.stdout
    );
    // A readonly run records nothing of its own.
    assert_eq!(journal(&test).len(), 8);
}

#[test]
fn audit_record_rejects_a_kind_that_is_not_a_word() {
    Test::new()
        .runbook("r", "fn main() { audit::record(\"two words\", \"x\"); }")
        .args(["r"])
        .stderr_contains("audit::record: kind \"two words\" must be one word")
        .status(1);
}
