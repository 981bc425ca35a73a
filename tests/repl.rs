//! The REPL, driven as an operator drives it: through a pseudo-terminal (keys, Tab, Ctrl-C,
//! Ctrl-D, arrow keys), and as a replayed transcript on a pipe.

use std::time::{Duration, Instant};

use expectrl::{ControlCode, Eof, Expect, Session, session::OsSession};

use crate::test::Test;

/// How long any expected output may take to show up (a cold engine start included).
const PATIENCE: Duration = Duration::from_secs(20);

/// `cutover repl` on a terminal, in `test`'s directory with its HOME.
fn terminal(test: &Test) -> OsSession {
    let mut command = test.command();
    command
        .arg("repl")
        .env("TERM", "xterm")
        .env_remove("XDG_STATE_HOME");
    let mut session = Session::spawn(command).expect("cannot start cutover repl on a pty");
    session.set_expect_timeout(Some(PATIENCE));
    session
}

fn expect(session: &mut OsSession, text: &str) {
    if let Err(error) = session.expect(text) {
        panic!("waiting for {text:?}: {error}");
    }
}

/// Waits until the REPL has taken the line just sent and is running it: rustyline turns
/// bracketed paste off (`ESC [?2004l`) when it hands a line over.
fn running(session: &mut OsSession) {
    expect(session, "\x1b[?2004l");
    std::thread::sleep(Duration::from_millis(200));
}

/// Waits until the REPL reads a new line under `prompt`. rustyline turns bracketed paste on
/// (`ESC [?2004h`) each time it starts reading a line, so seeing it means the previous input
/// is finished; the prompt text alone also appears in every redraw of the line being typed.
fn ready(session: &mut OsSession, prompt: &str) {
    expect(session, "\x1b[?2004h");
    expect(session, prompt);
}

/// Ctrl-D at a fresh prompt (see [`ready`]): the REPL exits with 0.
fn quit(mut session: OsSession) {
    session.send(ControlCode::EndOfTransmission).unwrap();
    expect_eof(&mut session);
    let status = session.get_process().wait().unwrap();
    assert_eq!(
        format!("{status:?}"),
        format!("Exited(Pid({}), 0)", session.get_process().pid())
    );
}

fn expect_eof(session: &mut OsSession) {
    if let Err(error) = session.expect(Eof) {
        panic!("cutover repl did not exit: {error}");
    }
}

#[test]
fn tab_completes_a_module_function() {
    let test = Test::new();
    let mut repl = terminal(&test);
    ready(&mut repl, "cutover> ");
    repl.send("env::fl").unwrap();
    repl.send("\t").unwrap();
    expect(&mut repl, "env::flag");
    // The `(` the user types next is the only one: completion inserts the name alone.
    repl.send("(\"CUTOVER_TEST_UNSET_FLAG\")\r").unwrap();
    expect(&mut repl, "false");
    ready(&mut repl, "cutover> ");
    quit(repl);
}

#[test]
fn tab_completes_option_keys_inside_a_map() {
    let test = Test::new();
    let mut repl = terminal(&test);
    ready(&mut repl, "cutover> ");
    // Inside `#{`, Tab twice lists the keys docker::logs knows.
    repl.send("docker::logs(\"api\", #{").unwrap();
    repl.send("\t\t").unwrap();
    expect(&mut repl, "timestamps");
    repl.send("fo").unwrap();
    repl.send("\t").unwrap();
    // A wrong key is refused naming the keys of the same table. Had Tab left `fo`, the error
    // would name `fo`, which comes first.
    repl.send(": true, tial: 5})\r").unwrap();
    expect(
        &mut repl,
        "docker::logs: unknown option `tial` (known: tail, since, follow, timeout, timestamps, \
         to, append, prefix)",
    );
    ready(&mut repl, "cutover> ");
    quit(repl);
}

#[test]
fn hint_shows_the_signature() {
    let test = Test::new();
    let mut repl = terminal(&test);
    ready(&mut repl, "cutover> ");
    repl.send("env::get").unwrap();
    expect(
        &mut repl,
        "(name: String) -> String | (name: String, default: String) -> String",
    );
    repl.send(ControlCode::EndOfText).unwrap();
    ready(&mut repl, "cutover> ");
    quit(repl);
}

#[test]
fn multi_line_input_and_definitions_persist() {
    let test = Test::new();
    let mut repl = terminal(&test);
    ready(&mut repl, "cutover> ");
    repl.send("fn twice(x) {\r").unwrap();
    repl.send("  x * 2\r").unwrap();
    repl.send("}\r").unwrap();
    repl.send("let base = 20;\r").unwrap();
    repl.send("twice(base + 1)\r").unwrap();
    expect(&mut repl, "42");
    ready(&mut repl, "cutover> ");
    quit(repl);
}

#[test]
fn ctrl_c_stops_a_blocked_call_and_returns_to_the_prompt() {
    let test = Test::new();
    let mut repl = terminal(&test);
    ready(&mut repl, "cutover> ");
    repl.send("sleep(60000)\r").unwrap();
    running(&mut repl);
    let sent = Instant::now();
    repl.send(ControlCode::EndOfText).unwrap();
    expect(&mut repl, "interrupted (Ctrl-C or SIGTERM)");
    ready(&mut repl, "cutover> ");
    let took = sent.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "back at the prompt after {took:?}"
    );

    // Ctrl-C pressed twice while a call is being stopped never ends the session.
    repl.send("sleep(60000)\r").unwrap();
    running(&mut repl);
    repl.send(ControlCode::EndOfText).unwrap();
    repl.send(ControlCode::EndOfText).unwrap();
    expect(&mut repl, "interrupted");
    ready(&mut repl, "cutover> ");
    repl.send("40 + 2\r").unwrap();
    expect(&mut repl, "42");
    ready(&mut repl, "cutover> ");
    quit(repl);
}

#[test]
fn ctrl_c_at_a_confirm_gives_the_terminal_back_to_the_repl() {
    let test = Test::new();
    let mut repl = terminal(&test);
    ready(&mut repl, "cutover> ");
    repl.send("confirm(\"Switch traffic?\")\r").unwrap();
    expect(&mut repl, "Switch traffic? [y/N]");
    repl.send(ControlCode::EndOfText).unwrap();
    expect(&mut repl, "interrupted");
    ready(&mut repl, "cutover> ");
    // The abandoned question must not swallow what is typed next.
    repl.send("1 + 41\r").unwrap();
    expect(&mut repl, "42");
    ready(&mut repl, "cutover> ");
    repl.send("confirm(\"Again?\")\r").unwrap();
    expect(&mut repl, "Again? [y/N]");
    repl.send("y\r").unwrap();
    expect(&mut repl, "true");
    ready(&mut repl, "cutover> ");
    quit(repl);
}

#[test]
fn ctrl_c_at_the_prompt_does_not_quit_and_ctrl_d_does() {
    let test = Test::new();
    let mut repl = terminal(&test);
    ready(&mut repl, "cutover> ");
    repl.send("half typed").unwrap();
    expect(&mut repl, "half typed");
    // Like a shell, Ctrl-C drops the line and whatever was typed after it.
    repl.send(ControlCode::EndOfText).unwrap();
    ready(&mut repl, "cutover> ");
    repl.send(ControlCode::EndOfText).unwrap();
    ready(&mut repl, "cutover> ");
    repl.send("6 * 7\r").unwrap();
    expect(&mut repl, "42");
    ready(&mut repl, "cutover> ");
    quit(repl);
}

#[test]
fn an_error_shows_the_caret_and_the_session_goes_on() {
    let test = Test::new();
    let mut repl = terminal(&test);
    ready(&mut repl, "cutover> ");
    repl.send("let x = 4;\r").unwrap();
    repl.send("x / 0\r").unwrap();
    expect(&mut repl, "<repl>:2:3: Division by zero: 4 / 0");
    expect(&mut repl, "2 | x / 0");
    expect(&mut repl, "^");
    repl.send("x + 38\r").unwrap();
    expect(&mut repl, "42");
    ready(&mut repl, "cutover> ");
    quit(repl);
}

#[test]
fn history_is_kept_across_sessions() {
    let test = Test::new();
    let mut repl = terminal(&test);
    ready(&mut repl, "cutover> ");
    repl.send("let remembered = 31337;\r").unwrap();
    ready(&mut repl, "cutover> ");
    quit(repl);
    let file = test.path().join(".local/state/cutover/repl-history");
    let saved = std::fs::read_to_string(&file).expect("history file written");
    assert!(saved.contains("let remembered = 31337;"), "{saved}");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "history is readable by others");

    let mut repl = terminal(&test);
    ready(&mut repl, "cutover> ");
    repl.send("\x1b[A").unwrap(); // Up: the previous session's last line
    expect(&mut repl, "let remembered = 31337;");
    repl.send("\r").unwrap();
    repl.send("remembered + 1\r").unwrap();
    expect(&mut repl, "31338");
    ready(&mut repl, "cutover> ");
    quit(repl);
}

#[test]
fn prompt_shows_the_active_environment_and_dry_run() {
    let test = Test::new().file("deploy/.current-environment", "blue\n");
    let mut repl = terminal(&test);
    ready(&mut repl, "cutover[blue]> ");
    repl.send(":dry on\r").unwrap();
    ready(&mut repl, "cutover[blue dry]> ");
    std::fs::write(test.path().join("deploy/.current-environment"), "green").unwrap();
    repl.send(":dry off\r").unwrap();
    ready(&mut repl, "cutover[green]> ");
    quit(repl);

    let test = Test::new();
    let mut repl = terminal(&test);
    ready(&mut repl, "cutover> ");
    repl.send(":dry on\r").unwrap();
    ready(&mut repl, "cutover[dry]> ");
    quit(repl);
}

// ---- piped input: a transcript replayed as a script ----

fn piped(input: &str) -> Test {
    Test::new().args(["repl"]).stdin(input)
}

#[test]
fn piped_input_prints_results_and_keeps_state() {
    piped("let x = 40;\nfn add(a, b) {\n  a + b\n}\n\nadd(x, 2)\n\"text\"\n#{ a: 1 }\nimport \"table\" as t;\nt::render([\"A\"], [[\"b\"]])\n")
        .stdout("42\n\"text\"\n#{\"a\": 1}\nA\nb\n")
        .success();
}

#[test]
fn piped_input_stops_at_the_first_error_with_exit_1() {
    piped("print(\"first\");\nthrow \"boom\";\nprint(\"never\");\n")
        .stdout_contains("first")
        .stderr_contains("<repl>:2:1: boom\n  |\n2 | throw \"boom\";\n  | ^\n")
        .stdout_lacks("never")
        .status(1);
}

#[test]
fn piped_compile_and_usage_errors_exit_2() {
    piped("1 + 1\nlet x = ;\n2\n")
        .stdout("2\n")
        .stderr_contains("<repl>:2:9: syntax error")
        .status(2);
    piped(":nonsense\n")
        .stderr_contains("unknown command :nonsense")
        .status(2);
    piped(":run no-such-runbook\n")
        .stderr_contains("no runbook named `no-such-runbook`")
        .status(2);
    piped("fn open() {\n  1\n")
        .stderr_contains("syntax error")
        .status(2);
}

#[test]
fn piped_timeout_bounds_the_whole_transcript() {
    piped("1\nsleep(60000)\n2\n")
        .args(["--timeout", "0.5"])
        .stdout("1\n")
        .stderr_contains("<repl>:2:1: stopped by --timeout")
        .status(124);
}

#[test]
fn piped_quit_ends_early() {
    piped("1\n:quit\nthrow \"not reached\";\n")
        .stdout("1\n")
        .success();
}

#[test]
fn run_a_runbook_in_the_session_with_dry_run() {
    Test::new()
        .runbook(
            "probe",
            "//! Say whether this is a dry run.\nfn main(who) { print(`${who} dry=${is_dry_run()}`); 7 }\n",
        )
        .args(["repl"])
        .stdin(":run probe first\n:dry on\n:run probe \"second one\"\n:run probe --help\n:runbooks\n")
        .stdout_contains("first dry=false\n7\nsecond one dry=true\n7\nusage: cutover probe <who>\n\nSay whether this is a dry run.\n")
        .stdout_contains("[runbooks/probe.rhai]")
        .success();
    Test::new()
        .runbook("probe", "fn main(who) {}\n")
        .args(["repl"])
        .stdin(":run probe\n")
        .stderr_contains("error: probe takes 1 argument, got 0\nusage: cutover probe <who>")
        .status(2);
}

#[test]
fn load_defines_the_functions_of_a_file() {
    let loaded = Test::new()
        .file(
            "helpers.rhai",
            "/// Doubles.\nfn double(x) {\n  x * 2\n}\nfn broken() {\n  1 / 0\n}\n",
        )
        .args(["repl"])
        .stdin(":load helpers.rhai\ndouble(21)\n:help double\nbroken()\n")
        .status(1);
    assert_eq!(
        loaded.stdout,
        "helpers.rhai: 2 functions defined\n42\ndouble(x)\n\nDoubles.\n"
    );
    assert!(
        loaded
            .stderr
            .contains("helpers.rhai:6:5: Division by zero: 1 / 0\n  |\n6 |   1 / 0\n  |     ^\n"),
        "{}",
        loaded.stderr
    );
}

#[test]
fn help_lists_modules_and_shows_one_function() {
    let help = piped(":help\n").success();
    for line in [
        ":run NAME [ARGS]...",
        "env::get(name: String, default: String) -> String",
        "sleep(ms: int)",
        "table::render(headers, rows)",
    ] {
        assert!(help.stdout.contains(line), "lacks {line}:\n{}", help.stdout);
    }
    piped(":help env::get\n")
        .stdout_contains("env::get(name: String) -> String\n\nThe value of variable `name`")
        .stdout_contains("```rhai\nlet tag = env::get(\"GREEN_TAG\");\n```")
        .stdout_contains("env::get(name: String, default: String) -> String")
        .success();
    piped(":help nothing::here\n")
        .stderr_contains("no function, module, command or runbook named `nothing::here`")
        .status(2);
}

#[test]
fn help_explains_rhai_own_functions() {
    piped(":help to_json\n")
        .stdout_contains("to_json is one of Rhai's own functions:\n  to_json(map: map) -> String")
        .stdout_contains("`map.to_json()` the text of a map")
        .success();
    piped(":help split\n")
        .stdout_contains("split(string: String, delimiter: String) -> array")
        .stdout_lacks("i64")
        .success();
}

#[test]
fn stdlib_modules_answer_to_the_aliases_runbooks_import_them_as() {
    // Every shipped runbook says `import "bluegreen" as bg;`: a line copied from one runs here.
    piped("bg::slots() == bluegreen::slots()\nstack::environments()\n")
        .stdout_contains("true\n")
        .stdout_contains("\"staging\"")
        .success();
}

#[test]
fn echoed_values_mask_secrets() {
    piped("env::get(\"POSTGRES_PASSWORD\")\n`pw=${env::get(\"POSTGRES_PASSWORD\")}`\n:history\n")
        .env("POSTGRES_PASSWORD", "s3cret-canary-value")
        .stdout_contains("\"***\"\n\"pw=***\"\n")
        .stdout_lacks("s3cret-canary-value")
        .success();
}

#[test]
fn history_command_lists_the_session() {
    piped("1\nfn f() {\n  2\n}\n:history\n")
        .stdout("1\n   1  1\n   2  fn f() {\n        2\n      }\n   3  :history\n")
        .success();
}

#[test]
fn history_never_keeps_a_secret_the_line_brought_in() {
    let test = Test::new();
    let mut repl = terminal(&test);
    ready(&mut repl, "cutover> ");
    // A password typed in a URL, and a value that becomes a secret as the line runs.
    repl.send("pg::isready(\"postgres://u:canary-repl-url@127.0.0.1:1/db\")\r")
        .unwrap();
    expect(&mut repl, "false");
    ready(&mut repl, "cutover> ");
    repl.send(
        "let pw = \"canary-typed-pw\"; exec::run([\"true\"], #{env: #{DB_PASSWORD: pw}}).code\r",
    )
    .unwrap();
    expect(&mut repl, "0");
    ready(&mut repl, "cutover> ");
    repl.send(":history\r").unwrap();
    expect(&mut repl, "postgres://u:***@127.0.0.1:1/db");
    expect(&mut repl, "let pw = \"***\"");
    ready(&mut repl, "cutover> ");
    quit(repl);
    let history = std::fs::read_to_string(test.path().join(".local/state/cutover/repl-history"))
        .expect("history file written");
    assert!(history.contains("let pw = \"***\""), "{history}");
    assert!(history.contains("postgres://u:***@"), "{history}");
    let journal = std::fs::read_to_string(test.path().join("deploy/cutover-journal.jsonl"))
        .unwrap_or_default();
    for text in [&history, &journal] {
        assert!(!text.contains("canary"), "a secret was kept:\n{text}");
    }
}
