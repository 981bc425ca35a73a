//! Configuration from the environment and `.env` files, with docker compose's rules, and
//! `confirm` on and off a terminal.

use crate::test::Test;

const SHOW: &str = r#"fn main(name) { print(`${name}=[${env::get(name, "<unset>")}]`) }"#;

const DOTENV: &str = r#"# the stack's settings
BLUE_TAG=v1.0.0
GREEN_TAG="v${MAJOR:-2}.0.0" # quoted, interpolated
STAGING_TAG='${not interpolated}'
export TIMEOUT = 300
NOTE=plain text # comment
"#;

#[test]
fn env_file_values_with_compose_semantics() {
    for (name, value) in [
        ("BLUE_TAG", "v1.0.0"),
        ("GREEN_TAG", "v2.0.0"),
        ("STAGING_TAG", "${not interpolated}"),
        ("TIMEOUT", "300"),
        ("NOTE", "plain text"),
        ("MISSING", "<unset>"),
    ] {
        Test::new()
            .file("stack.env", DOTENV)
            .runbook("getvar", SHOW)
            .args(["--env-file", "stack.env", "getvar", name])
            .stdout_contains(&format!("{name}=[{value}]\n"))
            .success();
    }
}

#[test]
fn process_environment_wins_over_the_file() {
    Test::new()
        .file("stack.env", DOTENV)
        .runbook("getvar", SHOW)
        .env("BLUE_TAG", "v9-from-shell")
        .env("MAJOR", "7")
        .args(["--env-file", "stack.env", "getvar", "BLUE_TAG"])
        .stdout_contains("BLUE_TAG=[v9-from-shell]")
        .success();
    Test::new()
        .file("stack.env", DOTENV)
        .runbook("getvar", SHOW)
        .env("MAJOR", "7")
        .env("CUTOVER_ENV_FILE", "stack.env")
        .args(["getvar", "GREEN_TAG"])
        .stdout_contains("GREEN_TAG=[v7.0.0]")
        .success();
}

#[test]
fn env_load_from_a_runbook() {
    Test::new()
        .file("deploy/.env.blue-green", DOTENV)
        .runbook("r", r#"fn main() { let vars = env::load("deploy/.env.blue-green"); print(`${vars.len()} ${env::get("NOTE")}`) }"#)
        .args(["r"])
        .stdout_contains("5 plain text")
        .success();
}

#[test]
fn malformed_env_file_names_the_line_and_runs_nothing() {
    Test::new()
        .file("bad.env", "A=1\nB=\"unterminated\nC=3\n")
        .runbook("r", r#"fn main() { print("ran") }"#)
        .args(["--env-file", "bad.env", "r"])
        .stderr("error: bad.env:2: unterminated \"quoted value\n")
        .status(2);
    Test::new()
        .file("bad.env", "A=1\n\nthis is not a pair\n")
        .runbook("r", r#"fn main() { env::load("bad.env"); }"#)
        .args(["r"])
        .stderr_contains("runbooks/r.rhai:1:18: bad.env:3: expected `=` after `this`")
        .status(1);
}

#[test]
fn required_variable_error() {
    Test::new()
        .file("req.env", "DB_URL=${DB_HOST:?set DB_HOST to the database host}\n")
        .runbook("r", "fn main() {}")
        .args(["--env-file", "req.env", "r"])
        .stderr("error: req.env:1: required variable DB_HOST is missing a value: set DB_HOST to the database host\n")
        .status(2);
}

#[test]
fn flags_read_true_one_yes() {
    for (value, expected) in [
        ("true", "true"),
        ("1", "true"),
        ("yes", "true"),
        ("YES", "true"),
        ("false", "false"),
        ("0", "false"),
        ("", "false"),
    ] {
        Test::new()
            .runbook(
                "r",
                r#"fn main() { print(`flag=${env::flag("FORCE_ROLLBACK")}`) }"#,
            )
            .env("FORCE_ROLLBACK", value)
            .args(["r"])
            .stdout_contains(&format!("flag={expected}"))
            .success();
    }
}

const ASK: &str = r#"fn main() { print(`answer=${confirm("Switch traffic to green?")}`) }"#;

#[test]
fn confirm_without_a_terminal_fails_instead_of_hanging() {
    Test::new()
        .runbook("ask", ASK)
        .args(["ask"])
        .stderr_contains("confirm(\"Switch traffic to green?\") needs an answer but there is no terminal to ask on; pass --yes to answer yes")
        .stdout_lacks("answer=")
        .status(1);
}

#[test]
fn confirm_with_yes() {
    Test::new()
        .runbook("ask", ASK)
        .args(["ask", "--yes"])
        .stdout_contains("answer=true")
        .success();
    Test::new()
        .runbook("ask", ASK)
        .args(["-y", "ask"])
        .stdout_contains("answer=true")
        .success();
}

#[test]
fn env_save_rewrites_in_place_and_reads_back() {
    let saved = Test::new()
        .file(
            "deploy/.env.blue-green",
            "# tags\nBLUE_TAG=v1.0.0\nGREEN_TAG=v1.0.0 # green\n",
        )
        .runbook(
            "tag",
            r#"fn main(tag) {
                env::load("deploy/.env.blue-green");
                env::save("deploy/.env.blue-green", #{GREEN_TAG: tag, NOTE: "two words"});
                print(`now ${env::get("GREEN_TAG")}`);
            }"#,
        )
        .args(["tag", "v2.0.1"])
        .stdout_contains("now v2.0.1")
        .success();
    assert_eq!(
        std::fs::read_to_string(saved.path().join("deploy/.env.blue-green")).unwrap(),
        "# tags\nBLUE_TAG=v1.0.0\nGREEN_TAG=v2.0.1\nNOTE='two words'\n"
    );
}

#[test]
fn env_save_changes_nothing_in_a_dry_run_and_refuses_bad_names() {
    let text = "GREEN_TAG=v1\n";
    let dry = Test::new()
        .file("stack.env", text)
        .runbook(
            "tag",
            r#"fn main() { env::save("stack.env", #{GREEN_TAG: "v2"}); }"#,
        )
        .args(["--dry-run", "tag"])
        .stderr_contains("would env::save stack.env GREEN_TAG")
        .success();
    assert_eq!(
        std::fs::read_to_string(dry.path().join("stack.env")).unwrap(),
        text
    );
    let bad = Test::new()
        .file("stack.env", text)
        .runbook(
            "tag",
            r#"fn main() { env::save("stack.env", #{"A=B": "v2"}); }"#,
        )
        .args(["tag"])
        .stderr_contains(r#"env::save: "A=B" is not a variable name"#)
        .status(1);
    assert_eq!(
        std::fs::read_to_string(bad.path().join("stack.env")).unwrap(),
        text
    );
}

#[test]
fn runaway_interpolation_is_a_clear_error_that_runs_nothing() {
    // 27 lines, each doubling the last, would reach 128 MiB; 50,000 nested defaults would
    // overflow the stack.
    let mut doubling = String::from("V1=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n");
    for n in 2..=40 {
        doubling.push_str(&format!("V{n}=${{V{}}}${{V{}}}\n", n - 1, n - 1));
    }
    let nested = format!(
        "A=1\nDEEP={}x{}\n",
        "${X:-".repeat(50_000),
        "}".repeat(50_000)
    );
    for (file, message) in [
        (
            doubling.as_str(),
            "error: big.env:17: the value grows beyond 1 MiB once its variables are replaced\n",
        ),
        (
            nested.as_str(),
            "error: big.env:2: `${…}` nested more than 32 deep\n",
        ),
    ] {
        let test = Test::new()
            .file("big.env", file)
            .runbook("r", r#"fn main() { state::set("ran", true); }"#)
            .args(["--env-file", "big.env", "r"])
            .stderr(message)
            .status(2);
        assert!(
            !test.path().join("deploy").exists(),
            "it ran, or left a lock or state behind"
        );
    }
}

/// A settings file that is there but malformed says what is wrong on which line, not that the
/// settings are missing; a missing one says how to make it.
#[test]
fn the_stack_settings_name_their_bad_line_or_say_they_are_missing() {
    Test::new()
        .file("deploy/.env.blue-green", "BLUE_TAG=v1\nGREEN_TAG=\"v2\n")
        .args(["status"])
        .stderr_contains("deploy/.env.blue-green:2: unterminated \"quoted value")
        .stderr_lacks("settings are missing")
        .status(1);
    Test::new()
        .args(["status"])
        .stderr_contains("deploy/.env.blue-green: the stack's settings are missing. Copy deploy/.env.blue-green.example")
        .status(1);
}
