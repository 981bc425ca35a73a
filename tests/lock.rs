//! One change at a time: the run lock, racing runs, waiting, stale-lock takeover after `kill -9`,
//! and the operator's `lock status` / `lock release --force`.

use std::{
    process::Child,
    time::{Duration, Instant},
};

use crate::test::{Ran, Test, wait_until_held};

/// Holds the lock until the test sets the state key `release`.
const HOLD: &str = "//! Holds the lock until released.\nfn main(tag) {\n    while state::get(\"release\", false) != true { sleep(20); }\n}\n";

fn holding() -> Test {
    Test::new()
        .runbook("hold", HOLD)
        .runbook("quick", "fn main() { state::set(\"quick\", true); }")
        .runbook(
            "look",
            "//! readonly\nfn main() { print(`active=${state::active()}`); }",
        )
}

/// Lets every `hold` run finish (the state file is replaced whole, as cutover does).
fn release(test: &Test) {
    let dir = test.path().join("deploy");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(".release.tmp"), r#"{"release": true}"#).unwrap();
    std::fs::rename(dir.join(".release.tmp"), dir.join("cutover-state.json")).unwrap();
}

/// Waits until one of `children` exits; returns its index.
fn first_to_exit(children: &mut [Child]) -> usize {
    let started = Instant::now();
    loop {
        for (i, child) in children.iter_mut().enumerate() {
            if child.try_wait().unwrap().is_some() {
                return i;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no run ended");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn journal(test: &Test) -> Vec<serde_json::Value> {
    test.run(&["history", "--json", "-n", "1000"])
        .success()
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn two_runs_racing_one_fails_naming_the_other() {
    let test = holding();
    let mut runs = vec![test.start(&["hold", "a"]), test.start(&["hold", "b"])];
    let loser = first_to_exit(&mut runs);
    let winner_pid = runs[1 - loser].id();
    let mut runs = runs.into_iter();
    let (first, second) = (runs.next().unwrap(), runs.next().unwrap());
    let (lost, won) = if loser == 0 {
        (first, second)
    } else {
        (second, first)
    };
    let lost = Ran::of(lost).status(1);
    assert!(
        lost.stderr.contains("error: another run holds the lock: ")
            && lost
                .stderr
                .contains(&format!("(pid {winner_pid}) running `hold ")),
        "{}",
        lost.stderr
    );
    release(&test);
    Ran::of(won).success();
}

#[test]
fn a_second_run_waits_for_the_lock_then_runs() {
    let test = holding();
    let holder = test.start(&["hold", "x"]);
    let pid = holder.id();
    wait_until_held(&test);
    let mut waiter = test.start(&["--lock-wait", "30", "quick"]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(waiter.try_wait().unwrap().is_none(), "did not wait");
    release(&test);
    let waited = Ran::of(waiter).success();
    assert!(
        waited.stderr.contains("the lock is held by ")
            && waited
                .stderr
                .contains(&format!("(pid {pid}) running `hold x`"))
            && waited.stderr.contains("waiting up to 30 s for it"),
        "{}",
        waited.stderr
    );
    Ran::of(holder).success();
}

#[test]
fn a_run_gives_up_after_lock_wait_naming_the_holder() {
    let test = holding();
    let holder = test.start(&["hold", "x"]);
    wait_until_held(&test);
    let started = Instant::now();
    let gave_up = test.run(&["--lock-wait", "0.3", "quick"]).status(1);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(
        gave_up
            .stderr
            .contains(&format!("(pid {}) running `hold x`", holder.id()))
            && gave_up
                .stderr
                .contains("gave up after waiting 0.3 s (--lock-wait)"),
        "{}",
        gave_up.stderr
    );
    release(&test);
    Ran::of(holder).success();
    // The refused run changed nothing.
    assert!(
        !std::fs::read_to_string(test.path().join("deploy/cutover-state.json"))
            .unwrap()
            .contains("quick")
    );
}

#[test]
fn a_stale_lock_is_taken_over_after_kill_9_and_journaled() {
    let test = holding();
    let mut holder = test.start(&["hold", "x"]);
    let pid = holder.id();
    wait_until_held(&test);
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    holder.wait().unwrap();
    let status = test.run(&["lock", "status"]).success();
    assert!(
        status
            .stdout
            .starts_with("free; its last holder ended without releasing it")
            && status
                .stdout
                .contains(&format!("(pid {pid}) running `hold x`")),
        "{}",
        status.stdout
    );
    let next = test.run(&["quick"]).success();
    assert!(
        next.stderr.contains("took over the lock from ")
            && next
                .stderr
                .contains(&format!("(pid {pid}) running `hold x`"))
            && next.stderr.contains("its process is gone"),
        "{}",
        next.stderr
    );
    let takeover: Vec<_> = journal(&test)
        .into_iter()
        .filter(|e| e["event"] == "lock")
        .collect();
    assert_eq!(takeover.len(), 1, "{takeover:?}");
    assert_eq!(takeover[0]["runbook"], "quick");
    let message = takeover[0]["message"].as_str().unwrap();
    assert!(message.contains(&format!("(pid {pid})")), "{message}");
    assert_eq!(test.run(&["lock", "status"]).success().stdout, "free\n");
}

#[test]
fn lock_status_and_forced_release() {
    let test = holding();
    assert_eq!(test.run(&["lock", "status"]).success().stdout, "free\n");
    let holder = test.start(&["hold", "stuck"]);
    let pid = holder.id();
    let held = wait_until_held(&test);
    assert!(
        held.contains(&format!("(pid {pid}) running `hold stuck` since ")),
        "{held}"
    );
    let refused = test.run(&["lock", "release"]).status(2);
    assert!(
        refused.stderr.contains("pass --force"),
        "{}",
        refused.stderr
    );
    test.run(&["quick"]).status(1);

    let released = test.run(&["lock", "release", "--force"]).success();
    assert!(
        released.stdout.starts_with("released the lock held by ")
            && released.stdout.contains(&format!("(pid {pid})")),
        "{}",
        released.stdout
    );
    // The next run no longer waits for the stuck holder.
    test.run(&["quick"]).success();
    let forced: Vec<_> = journal(&test)
        .into_iter()
        .filter(|e| e["event"] == "lock")
        .collect();
    assert_eq!(forced.len(), 1, "{forced:?}");
    assert!(
        forced[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("released the lock by force; it was held by ")
    );
    assert_eq!(forced[0]["kind"], "lock");

    // The old holder ending does not disturb the lock that runs take now.
    release(&test);
    Ran::of(holder).success();
    assert_eq!(test.run(&["lock", "status"]).success().stdout, "free\n");
    test.run(&["quick"]).success();
}

#[test]
fn dry_runs_and_readonly_runbooks_take_no_lock() {
    let test = holding();
    let holder = test.start(&["hold", "x"]);
    wait_until_held(&test);
    let dry = test.run(&["--dry-run", "quick"]).success();
    assert!(
        dry.stderr.contains("would state::set quick = true"),
        "{}",
        dry.stderr
    );
    test.run(&["look"]).success();
    release(&test);
    Ran::of(holder).success();
}

#[test]
fn ctrl_c_stops_a_run_waiting_for_the_lock() {
    let test = holding();
    let holder = test.start(&["hold", "x"]);
    wait_until_held(&test);
    let waiter = test.start(&["--lock-wait", "60", "quick"]);
    std::thread::sleep(Duration::from_millis(500));
    unsafe { libc::kill(waiter.id() as i32, libc::SIGINT) };
    let stopped = Ran::of(waiter).status(130);
    assert!(
        stopped
            .stderr
            .contains("error: interrupted (Ctrl-C or SIGTERM) while waiting for the lock"),
        "{}",
        stopped.stderr
    );
    release(&test);
    Ran::of(holder).success();
}

/// Feeds `input` to `cutover repl` in the test's directory.
fn repl(test: &Test, input: &str) -> Ran {
    use std::{io::Write, process::Stdio};
    let mut child = test
        .command()
        .args(["repl"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start cutover repl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    Ran::of(child)
}

#[test]
fn the_repl_reads_beside_a_holder_but_its_changes_need_the_lock() {
    let test = holding();
    let holder = test.start(&["hold", "x"]);
    wait_until_held(&test);
    let refused = repl(
        &test,
        "40 + 2\nstate::set(\"k\", 1)\nprint(\"not reached\")\n",
    )
    .status(1);
    assert!(refused.stdout.contains("42"), "{}", refused.stdout);
    assert!(
        refused
            .stderr
            .contains(&format!("(pid {}) running `hold x`", holder.id())),
        "{}",
        refused.stderr
    );
    assert!(!refused.stdout.contains("not reached"));
    release(&test);
    Ran::of(holder).success();

    repl(&test, "state::set(\"k\", 1)\nstate::get(\"k\")\n").success();
    let change = journal(&test)
        .into_iter()
        .find(|e| e["event"] == "change" && e["message"] == "state::set k = 1")
        .expect("the REPL's change is journaled");
    assert_eq!(change["runbook"], "repl");
    assert_eq!(test.run(&["lock", "status"]).success().stdout, "free\n");
}

/// A REPL `:run` holds the lock from its start, as `cutover run` does: while it waits (here for
/// `release`, as a promote waits for health) a CLI run that would change things is refused.
#[test]
fn a_repl_run_holds_the_lock_from_its_start() {
    use std::{io::Write, process::Stdio};
    let test = holding();
    let mut child = test
        .command()
        .args(["repl"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start cutover repl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b":run hold x\n")
        .unwrap();
    // Stopped (by its pid) if an assertion below fails before it is released.
    let mut repl = crate::support::KillOnDrop(child);
    let held = wait_until_held(&test);
    assert!(
        held.contains(&format!("(pid {}) running `hold x`", repl.0.id())),
        "{held}"
    );
    let refused = test.run(&["quick"]).status(1);
    assert!(
        refused.stderr.contains("another run holds the lock: ")
            && refused.stderr.contains("running `hold x`"),
        "{}",
        refused.stderr
    );
    release(&test);
    assert!(repl.0.wait().unwrap().success());
    assert_eq!(test.run(&["lock", "status"]).success().stdout, "free\n");
}
