//! Arguments, usage, help and exit codes of the command line.

use crate::test::Test;

const TWO_MAINS: &str = "//! Promote an environment.\n//! Moves traffic.\nfn main(env) { print(`env ${env}`) }\nfn main(env, tag) { print(`env ${env} tag ${tag}`) }\n";

#[test]
fn arguments_reach_main_as_strings() {
    Test::new()
        .runbook("p", TWO_MAINS)
        .args(["p", "green"])
        .stdout_contains("env green\n")
        .success();
    Test::new()
        .runbook("p", TWO_MAINS)
        .args(["run", "p", "green", "v2"])
        .stdout_contains("env green tag v2\n")
        .success();
}

#[test]
fn wrong_argument_count_prints_usage_and_exits_2() {
    Test::new()
        .runbook("p", TWO_MAINS)
        .args(["p"])
        .stderr("error: p takes 1 or 2 arguments, got 0\nusage: cutover p <env> [tag]\n")
        .status(2);
    Test::new()
        .runbook("none", "fn main() {}")
        .args(["none", "extra"])
        .stderr("error: none takes 0 arguments, got 1\nusage: cutover none\n")
        .status(2);
}

#[test]
fn runbook_help_shows_usage_and_header() {
    for args in [
        vec!["p", "--help"],
        vec!["run", "p", "--help"],
        vec!["run", "p", "-h"],
    ] {
        Test::new()
            .runbook("p", TWO_MAINS)
            .args(args)
            .stdout("usage: cutover p <env> [tag]\n\nPromote an environment.\nMoves traffic.\n")
            .success();
    }
}

#[test]
fn global_flags_after_the_runbook_arguments() {
    Test::new()
        .runbook("d", "fn main(x) { print(`${x} dry=${is_dry_run()}`) }")
        .args(["d", "a", "--dry-run"])
        .stdout_contains("a dry=true")
        .success();
    Test::new()
        .runbook("d", "fn main(x) { print(`${x} dry=${is_dry_run()}`) }")
        .args(["run", "d", "--", "--dry-run"])
        .stdout_contains("--dry-run dry=false")
        .success();
}

#[test]
fn help_lists_every_subcommand_and_exit_codes() {
    let help = Test::new().args(["--help"]).success();
    for word in [
        "run",
        "list",
        "show",
        "check",
        "repl",
        "history",
        "docs",
        "completions",
        "--dry-run",
        "--timeout",
        "--lock-wait",
        "--log-format",
        "124",
        "130",
    ] {
        assert!(help.stdout.contains(word), "--help lacks {word}");
    }
}

#[test]
fn check_reports_every_error_and_exits_2() {
    let checked = Test::new()
        .runbook("good", "fn main() {}")
        .runbook("bad1", "fn main() {\n  let x = ;\n}\n")
        .runbook("bad2", "fn main() {\n  undefined_var + 1\n}\n")
        .args(["check"])
        .status(2);
    assert!(
        checked
            .stderr
            .contains("runbooks/bad1.rhai:2:11: syntax error"),
        "{}",
        checked.stderr
    );
    assert!(
        checked
            .stderr
            .contains("runbooks/bad2.rhai:2:3: syntax error: Undefined variable: undefined_var"),
        "{}",
        checked.stderr
    );
    assert!(checked.stderr.contains(" 2 errors\n"), "{}", checked.stderr);
    Test::new()
        .runbook("good", "fn main() {}")
        .args(["check", "good"])
        .stderr_contains("all compile")
        .success();
}

#[test]
fn check_covers_the_shipped_runbooks_and_stdlib() {
    Test::new()
        .args(["check"])
        .stderr_contains("all compile")
        .success();
}

#[test]
fn completions_are_generated() {
    Test::new()
        .args(["completions", "bash"])
        .stdout_contains("_cutover()")
        .success();
}
