//! What a runbook author reaches for beyond the stack's primitives: reading a file and its age in
//! a readonly runbook, a time stamp's age, numbers and text laid out in columns, and calling
//! another runbook's functions.

use crate::test::Test;

#[test]
fn a_readonly_runbook_reads_a_file_its_age_and_a_stamps_age() {
    Test::new()
        .file("deploy/VERSION", "v2.1\n")
        .runbook(
            "report",
            r#"//! A report.
//!
//! readonly
fn main() {
    let version = file::read("deploy/VERSION");
    version.trim();
    let stat = file::stat("deploy/VERSION");
    print(`version=${version} size=${stat.size} fresh=${stat.age_ms < 60_000} dir=${stat.is_dir}`);
    print(`exists=${file::exists("deploy/VERSION")} missing=${file::exists("deploy/NOPE")}`);
    print(`epoch=${time::parse("1970-01-01T00:00:01Z")} age_positive=${time::age("2020-01-01T00:00:00Z") > 0}`);
    print(`offset=${time::parse("2026-11-26T05:31:02.5+01:00") == time::parse("2026-11-26T04:31:02.500Z")}`);
}"#,
        )
        .args(["report"])
        .stdout_contains("version=v2.1 size=5 fresh=true dir=false")
        .stdout_contains("exists=true missing=false")
        .stdout_contains("epoch=1000 age_positive=true")
        .stdout_contains("offset=true")
        .success();
}

#[test]
fn bad_files_and_stamps_are_errors_naming_them() {
    for (call, message) in [
        (
            r#"file::read("deploy/NOPE")"#,
            "file::read deploy/NOPE: No such file or directory",
        ),
        (
            r#"time::age("yesterday")"#,
            "\"yesterday\" is not an RFC 3339 time stamp",
        ),
        (
            r#"fmt::fixed("x", 1)"#,
            "fmt::fixed: string is not a number",
        ),
    ] {
        Test::new()
            .runbook("r", &format!("fn main() {{ {call}; }}"))
            .args(["r"])
            .stderr_contains(message)
            .status(1);
    }
}

#[test]
fn numbers_and_text_line_up_in_columns() {
    Test::new()
        .runbook(
            "table",
            r#"fn main() {
    for row in [["blue", 12.345], ["green", 3.5]] {
        print(fmt::left(row[0], 6) + "|" + fmt::right(fmt::fixed(row[1], 1), 6) + "|");
    }
    print(fmt::fixed(7, 2));
}"#,
        )
        .args(["table"])
        .stdout_contains("blue  |  12.3|\ngreen |   3.5|\n7.00\n")
        .success();
}

/// `import "db-report"` finds a runbook when no stdlib module has that name.
#[test]
fn a_runbook_imports_another_and_calls_its_functions() {
    Test::new()
        .runbook(
            "db-report",
            "fn rows(table) { `${table}: 42 rows` }\nfn main() { print(rows(\"users\")); }\n",
        )
        .runbook(
            "nightly",
            "import \"db-report\" as report;\nfn main() { print(report::rows(\"events\")); }\n",
        )
        .args(["nightly"])
        .stdout_contains("events: 42 rows")
        .success();
}

#[test]
fn modules_run_their_top_level_once_each_in_the_order_imported() {
    Test::new()
        .stdlib("one", "print(\"one loaded\");\nfn f() { 1 }\n")
        .stdlib("two", "import \"one\" as one;\nprint(\"two loaded\");\nfn f() { one::f() + 1 }\n")
        .stdlib("three", "import \"one\" as one;\nprint(\"three loaded\");\nfn f() { 3 }\n")
        .runbook(
            "r",
            "import \"three\" as three;\nimport \"two\" as two;\nimport \"one\" as one;\nfn main() { print(`sum ${one::f() + two::f() + three::f()}`); }\n",
        )
        .args(["r"])
        .stdout("one loaded\nthree loaded\ntwo loaded\nsum 6\n")
        .success();
}
