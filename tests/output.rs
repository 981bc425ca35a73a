//! Log output: levels, JSON lines, colors and masking.

use crate::test::Test;

const LEVELS: &str = r#"fn main() { log::debug("d-line"); log::info("i-line"); log::warn("w-line"); log::error("e-line"); }"#;

#[test]
fn levels_follow_verbose_and_quiet() {
    let normal = Test::new().runbook("r", LEVELS).args(["r"]).success();
    assert_eq!(normal.log_lines("INFO"), vec!["i-line"]);
    assert_eq!(normal.log_lines("WARN"), vec!["w-line"]);
    assert_eq!(normal.log_lines("ERROR"), vec!["e-line"]);
    assert!(normal.log_lines("DEBUG").is_empty());
    let verbose = Test::new().runbook("r", LEVELS).args(["-v", "r"]).success();
    assert_eq!(verbose.log_lines("DEBUG"), vec!["d-line"]);
    Test::new()
        .runbook("r", LEVELS)
        .args(["-q", "r"])
        .stderr_lacks("i-line")
        .stderr_contains("w-line")
        .success();
    Test::new()
        .runbook("r", LEVELS)
        .args(["-qq", "r"])
        .stderr_lacks("w-line")
        .stderr_contains("e-line")
        .success();
}

/// A runbook's output is what it prints: on stdout, whatever `-q`, `-qq` or `--log-format json`
/// say, so `cutover report > file` and `cutover -q report` both get it; its logs stay on stderr.
#[test]
fn print_is_the_runbook_output_on_stdout() {
    let report = r#"fn main() { log::info("working"); print("| a | b |"); print(#{n: 1}); log::warn("careful"); }"#;
    for quiet in [
        vec![],
        vec!["-q"],
        vec!["-qq"],
        vec!["--log-format", "json"],
    ] {
        let mut args = quiet.clone();
        args.push("report");
        let run = Test::new()
            .runbook("report", report)
            .args(args)
            .stdout("| a | b |\n#{\"n\": 1}\n")
            .stderr_lacks("| a | b |")
            .success();
        if quiet.is_empty() {
            assert_eq!(run.log_lines("INFO"), vec!["working"]);
            assert_eq!(run.log_lines("WARN"), vec!["careful"]);
        }
    }
}

/// `-v` any number of times is as verbose as it gets: 128 of them (once wrapped round to
/// "errors only") still show INFO and DEBUG lines.
#[test]
fn verbose_any_number_of_times_never_silences_info() {
    let many = format!("-{}", "v".repeat(128));
    let run = Test::new()
        .runbook("r", LEVELS)
        .args([many.as_str(), "r"])
        .success();
    assert_eq!(run.log_lines("INFO"), vec!["i-line"]);
    assert_eq!(run.log_lines("DEBUG"), vec!["d-line"]);
    let run = Test::new()
        .runbook("r", LEVELS)
        .args([format!("-{}", "q".repeat(200)).as_str(), "r"])
        .success();
    assert!(run.log_lines("INFO").is_empty() && run.log_lines("WARN").is_empty());
    assert_eq!(run.log_lines("ERROR"), vec!["e-line"]);
}

#[test]
fn json_lines() {
    let run = Test::new()
        .runbook("r", LEVELS)
        .args(["--log-format", "json", "r"])
        .success();
    let lines: Vec<serde_json::Value> = run
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).expect(l))
        .collect();
    let messages: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| (l["level"].as_str().unwrap(), l["message"].as_str().unwrap()))
        .collect();
    assert_eq!(
        messages,
        vec![("INFO", "i-line"), ("WARN", "w-line"), ("ERROR", "e-line")]
    );
}

#[test]
fn no_color_codes_when_not_a_terminal() {
    Test::new()
        .runbook("r", LEVELS)
        .args(["r"])
        .stderr_lacks("\x1b[")
        .success();
}

#[test]
fn secret_looking_variables_are_masked_in_logs_and_errors() {
    Test::new()
        .runbook("leak", r#"fn main() { let p = env::get("POSTGRES_PASSWORD"); print(`password is ${p}`); throw `failed with ${p}`; }"#)
        .env("POSTGRES_PASSWORD", "s3cret-canary-value")
        .args(["leak"])
        .stdout("password is ***\n")
        .stderr_contains("failed with ***")
        .stderr_lacks("s3cret-canary-value")
        .status(1);
    Test::new()
        .file("x.env", "JWT_SECRET=jwt-canary-value\n")
        .runbook("leak", r#"fn main() { print(env::get("JWT_SECRET")); }"#)
        .args(["--env-file", "x.env", "--log-format", "json", "leak"])
        .stdout("***\n")
        .stderr_lacks("jwt-canary-value")
        .success();
}

#[test]
fn dry_run_is_visible_to_scripts() {
    let r = r#"fn main() { print(`dry=${is_dry_run()}`) }"#;
    Test::new()
        .runbook("r", r)
        .args(["r"])
        .stdout("dry=false\n")
        .success();
    Test::new()
        .runbook("r", r)
        .args(["--dry-run", "r"])
        .stdout("dry=true\n")
        .success();
}

#[test]
fn time_functions() {
    Test::new()
        .runbook("t", r#"fn main() { let a = time::now(); sleep(50); let b = time::now(); print(`slept=${b - a >= 50} stamp=${time::stamp().len()} day=${time::stamp("%Y").len()}`) }"#)
        .args(["t"])
        .stdout("slept=true stamp=20 day=4\n")
        .success();
}
