//! Where runbooks and stdlib modules are found, and which copy wins.

use crate::test::Test;

const WHO: &str = "fn main() { print(`ran ${WHERE}`) }";

fn who(place: &str) -> String {
    WHO.replace("${WHERE}", place)
}

#[test]
fn flag_dir_beats_env_dir_beats_local_beats_embedded() {
    Test::new()
        .runbook("doctor", &who("local"))
        .file("flag/doctor.rhai", &who("flag"))
        .file("envdir/doctor.rhai", &who("envdir"))
        .args(["--runbooks", "flag", "doctor"])
        .env("CUTOVER_RUNBOOKS", "envdir")
        .stdout_contains("ran flag")
        .success();
    Test::new()
        .runbook("doctor", &who("local"))
        .file("envdir/doctor.rhai", &who("envdir"))
        .args(["doctor"])
        .env("CUTOVER_RUNBOOKS", "envdir")
        .stdout_contains("ran envdir")
        .success();
    Test::new()
        .runbook("doctor", &who("local"))
        .args(["doctor"])
        .stdout_contains("ran local")
        .success();
    Test::new()
        .args(["doctor"])
        .stdout_contains("CHECK")
        .success();
}

#[test]
fn list_shows_summaries_and_origins() {
    let listed = Test::new()
        .runbook("doctor", "//! My own doctor.\nfn main() {}")
        .runbook(
            "zeta",
            "//! Does zeta things.\n//! More help.\nfn main() {}",
        )
        .runbook("bare", "fn main() {}")
        .args(["list"])
        .success();
    // Columns are aligned: a row's words, split on runs of spaces, are name, summary, origin.
    let rows: Vec<Vec<String>> = listed
        .stdout
        .lines()
        .map(|line| {
            line.split("  ")
                .map(str::trim)
                .filter(|w| !w.is_empty())
                .map(String::from)
                .collect()
        })
        .collect();
    let row = |name: &str| {
        rows.iter()
            .find(|r| r[0] == name)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(
        row("bare"),
        ["bare", "(no summary)", "[runbooks/bare.rhai]"]
    );
    assert_eq!(
        row("doctor"),
        ["doctor", "My own doctor.", "[runbooks/doctor.rhai]"]
    );
    assert_eq!(
        row("zeta"),
        ["zeta", "Does zeta things.", "[runbooks/zeta.rhai]"]
    );
    assert_eq!(row("promote")[2], "[embedded]");
    let widths: Vec<usize> = listed
        .stdout
        .lines()
        .map(|l| l.chars().position(|c| c == '[').unwrap())
        .collect();
    assert!(
        widths.windows(2).all(|w| w[0] == w[1]),
        "origins not aligned:\n{}",
        listed.stdout
    );
}

#[test]
fn list_marks_embedded_runbooks() {
    Test::new()
        .args(["list"])
        .stdout_contains("doctor")
        .stdout_contains("[embedded]")
        .success();
}

#[test]
fn show_prints_embedded_and_disk_source() {
    let shown = Test::new().args(["show", "doctor"]).success();
    assert!(
        shown.stdout.starts_with("//! Check that this machine"),
        "{}",
        shown.stdout
    );
    Test::new()
        .runbook("mine", "fn main() { 42 }\n")
        .args(["show", "mine"])
        .stdout("fn main() { 42 }\n")
        .success();
    Test::new()
        .args(["show", "--module", "table"])
        .stdout_contains("fn render(headers, rows)")
        .success();
}

#[test]
fn unknown_runbook_names_the_search_path() {
    Test::new()
        .args(["--runbooks", "mine", "nosuch"])
        .stderr(
            "error: no runbook named `nosuch` (searched mine, runbooks, the embedded runbooks)\n",
        )
        .status(2);
}

#[test]
fn runbook_by_path() {
    Test::new()
        .file("elsewhere/x.rhai", &who("path"))
        .args(["run", "elsewhere/x.rhai"])
        .stdout_contains("ran path")
        .success();
}

#[test]
fn stdlib_from_disk_overrides_embedded() {
    let runbook = r#"import "table" as t; fn main() { print(t::render(["A"], [["b"]])) }"#;
    Test::new()
        .runbook("r", runbook)
        .args(["r"])
        .stdout_contains("A\n")
        .success();
    Test::new()
        .runbook("r", runbook)
        .stdlib("table", r#"fn render(h, r) { "my table" }"#)
        .args(["r"])
        .stdout_contains("my table")
        .success();
    Test::new()
        .runbook("r", runbook)
        .file("lib2/table.rhai", r#"fn render(h, r) { "flag table" }"#)
        .stdlib("table", r#"fn render(h, r) { "my table" }"#)
        .args(["--stdlib", "lib2", "r"])
        .stdout_contains("flag table")
        .success();
}

#[test]
fn stdlib_modules_import_each_other() {
    Test::new()
        .stdlib("inner", "fn value() { 41 }")
        .stdlib(
            "outer",
            "import \"inner\" as inner;\nfn value() { inner::value() + 1 }",
        )
        .runbook(
            "r",
            "import \"outer\" as o; fn main() { print(`value ${o::value()}`) }",
        )
        .args(["r"])
        .stdout_contains("value 42")
        .success();
}

#[test]
fn a_runbook_is_a_name_or_a_rhai_path_and_nothing_else_is_read() {
    for args in [
        vec!["run", "../../etc/passwd"],
        vec!["../../etc/passwd"],
        vec!["show", "/etc/passwd"],
        vec!["check", "deploy/stack.env"],
        vec!["check", "./deploy/stack.env"],
    ] {
        let name = args.last().unwrap().to_string();
        Test::new()
            .file(
                "deploy/stack.env",
                "POSTGRES_PASSWORD=hunter2-in-a-settings-file\n",
            )
            .args(args)
            .stderr_contains(&format!(
                "`{name}` is not a runbook: give a runbook's name (`cutover list` shows the \
                 runbooks) or the path of a .rhai file"
            ))
            .stderr_lacks("hunter2")
            .stderr_lacks("root")
            .stdout_lacks("root")
            .status(2);
    }
    // A .rhai path is read as is.
    Test::new()
        .file(
            "elsewhere/hello.rhai",
            "fn main() { print(\"hello from a path\") }",
        )
        .args(["run", "elsewhere/hello.rhai"])
        .stdout_contains("hello from a path")
        .success();
}

#[test]
fn an_unknown_stdlib_module_lists_the_modules_there_are() {
    Test::new()
        .args(["show", "--module", "nonexist"])
        .stderr_contains("error: no stdlib module named `nonexist`")
        .stderr_contains(
            "the stdlib modules are bluegreen, canary, images, proxy, release, smoke, stack, status_view, table, traffic",
        )
        .status(2);
    Test::new()
        .args(["show", "--module", "tabel"])
        .stderr_contains("did you mean `table`?")
        .status(2);
}
