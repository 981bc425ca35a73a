//! `exec::run`: no shell, live prefixed output, bounded results, and nothing left running after a
//! timeout or Ctrl-C — not even a grandchild.

use std::{
    io::{BufRead, BufReader},
    time::{Duration, Instant},
};

use crate::test::Test;

/// True once `pid` has exited (a zombie waiting for its reaper counts as gone).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

fn wait_gone(pid: i32) {
    let started = Instant::now();
    while !gone(pid) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "process {pid} is still running"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read_pid(test_dir: &std::path::Path) -> i32 {
    let text = std::fs::read_to_string(test_dir.join("grandchild.pid")).unwrap();
    text.trim().parse().unwrap()
}

#[test]
fn runs_a_program_logging_its_output_and_returning_it() {
    let run = Test::new()
        .file("sub/.keep", "")
        .runbook(
            "r",
            r#"fn main() {
    let r = exec::run(["sh", "-c", "echo out1; echo err1 >&2; echo out2; exit 3"]);
    print(`code=${r.code} stdout=${r.stdout.split("\n")} stderr=${r.stderr.split("\n")} ms=${r.ms >= 0} truncated=${r.truncated}`);
    let r = exec::run(["sh", "-c", "pwd; echo $GREETING"], #{ cwd: "sub", env: #{ GREETING: "hello" } });
    print(`second=${r.stdout.split("\n")}`);
}"#,
        )
        .args(["r"])
        .success();
    let info = run.log_lines("INFO");
    for line in ["[sh] out1", "[sh:err] err1", "[sh] out2"] {
        assert!(info.contains(&line.to_string()), "lacks {line:?}: {info:?}");
    }
    let printed: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        printed[0],
        r#"code=3 stdout=["out1", "out2", ""] stderr=["err1", ""] ms=true truncated=false"#
    );
    let second = printed.iter().find(|l| l.starts_with("second=")).unwrap();
    assert!(second.ends_with(r#"/sub", "hello", ""]"#), "{second}");
}

#[test]
fn arguments_reach_the_program_literally() {
    let outside = format!("/tmp/cutover-pwned-{}", std::process::id());
    let run = Test::new()
        .runbook(
            "r",
            &format!(
                r#"fn main() {{
    let r = exec::run(["printf", "[%s]\n", "; touch /tmp/cutover-pwned-{pid}", "; touch pwned", "$(touch pwned2)", "`touch pwned3`", "a b", "*", "'"]);
    print(r.stdout);
}}"#,
                pid = std::process::id()
            ),
        )
        .args(["r"])
        .success();
    let expected = format!(
        "[; touch {outside}]\n[; touch pwned]\n[$(touch pwned2)]\n[`touch pwned3`]\n[a b]\n[*]\n[']"
    );
    assert!(run.stdout.contains(&expected), "{}", run.stdout);
    assert!(!std::path::Path::new(&outside).exists());
    for file in ["pwned", "pwned2", "pwned3"] {
        assert!(!run.path().join(file).exists(), "{file} was created");
    }
}

#[test]
fn a_timeout_kills_the_whole_process_group_even_what_ignores_sigterm() {
    // The shell and its background grandchild ignore SIGTERM: only the SIGKILL that follows
    // the grace stops them.
    let started = Instant::now();
    let run = Test::new()
        .runbook(
            "r",
            r#"fn main() {
    exec::run(["sh", "-c", "trap '' TERM; sleep 600 & echo $! > grandchild.pid; wait"], #{ timeout: 500 });
}"#,
        )
        .args(["r"])
        .stderr_contains(
            "exec::run: `sh -c 'trap '\\'''\\'' TERM; sleep 600 & echo $! > grandchild.pid; wait'` timed out after 500 ms; killed it and its process group",
        )
        .status(1);
    assert!(started.elapsed() < Duration::from_secs(10));
    wait_gone(read_pid(&run.path()));
}

#[test]
fn ctrl_c_kills_the_process_group_and_output_streams_live() {
    let test = Test::new().runbook(
        "r",
        r#"fn main() {
    exec::run(["sh", "-c", "echo first; sleep 600 & echo $! > grandchild.pid; wait"]);
}"#,
    );
    let mut child = test.start(&["r"]);
    // The first line is logged while the program still runs: streamed, not collected.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "ended early: {seen}"
        );
        seen.push_str(&line);
        if line.contains("[sh] first") {
            break;
        }
    }
    assert!(child.try_wait().unwrap().is_none());
    let started = Instant::now();
    while !test.path().join("grandchild.pid").exists() {
        assert!(started.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(50));
    let grandchild = read_pid(test.path());
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(130), "{seen}{rest}");
    assert!(
        rest.contains("interrupted (Ctrl-C or SIGTERM); killed `sh -c 'echo first; sleep 600 & echo $! > grandchild.pid; wait'` and its process group"),
        "{rest}"
    );
    wait_gone(grandchild);
}

#[test]
fn output_kept_in_the_result_is_bounded() {
    Test::new()
        .runbook(
            "r",
            r#"fn main() {
    let r = exec::run(["sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' x; echo END"]);
    log::warn(`len=${r.stdout.len()} truncated=${r.truncated} end=${r.stdout.sub_string(r.stdout.len() - 5)}`);
}"#,
        )
        .args(["-q", "r"])
        .stderr_contains("len=1048576 truncated=true end=xEND\n")
        .success();
}

#[test]
fn bad_calls_are_clear_errors() {
    for (call, message) in [
        (
            "exec::run([])",
            "exec::run: nothing to run: the argument list is empty",
        ),
        (
            "exec::run([\"true\"], #{ tiemout: 5 })",
            "exec::run: unknown option `tiemout` (known: timeout, cwd, env)",
        ),
        (
            "exec::run([\"true\"], #{ timeout: -5 })",
            "exec::run: option `timeout` must be a positive number of milliseconds, not i64 `-5`",
        ),
        (
            "exec::run([\"true\", #{}])",
            "exec::run: argument 1 is map, expected a string",
        ),
        (
            "exec::run([\"no-such-program-cutover\"])",
            "exec::run: cannot start `no-such-program-cutover`: No such file or directory",
        ),
    ] {
        Test::new()
            .runbook("r", &format!("fn main() {{ {call}; }}"))
            .args(["r"])
            .stderr_contains(&format!("runbooks/r.rhai:1:19: {message}"))
            .status(1);
    }
}

/// `TEST_COMMAND='npx cypress run --spec "a b"'`: a command line from a setting keeps its quoted
/// words and still never meets a shell.
#[test]
fn a_command_line_is_split_as_a_shell_would_and_run_without_one() {
    let run = Test::new()
        .runbook(
            "r",
            r#"fn main() {
    let argv = exec::split(env::get("TEST_COMMAND"));
    print(`${argv.len()} words`);
    print(exec::run(argv).stdout);
}"#,
        )
        .env(
            "TEST_COMMAND",
            r#"printf "[%s]\n" --spec "a b" 'c $(touch pwned)' d\ e"#,
        )
        .args(["r"])
        .success();
    assert!(run.stdout.contains("6 words"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("[--spec]\n[a b]\n[c $(touch pwned)]\n[d e]"),
        "{}",
        run.stdout
    );
    assert!(!run.path().join("pwned").exists());

    Test::new()
        .runbook("r", r#"fn main() { exec::split("echo 'open"); }"#)
        .args(["r"])
        .stderr_contains("runbooks/r.rhai:1:19: exec::split: unclosed quote")
        .status(1);
}
