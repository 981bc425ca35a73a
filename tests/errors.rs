//! Errors point at the script: `path:line:col: message`, the source line, a caret, and the chain
//! of calls that led there.

use crate::test::Test;

#[test]
fn syntax_error_in_a_runbook() {
    Test::new()
        .runbook("broken", "fn main() {\n    let x = 1\n    let y = 2;\n}\n")
        .args(["broken"])
        .stderr(
            "runbooks/broken.rhai:3:5: syntax error: Expecting ';' to terminate this statement
  |
3 |     let y = 2;
  |     ^
",
        )
        .status(2);
}

#[test]
fn thrown_error_in_a_runbook() {
    Test::new()
        .runbook("fail", "fn main(env) {\n    if env != \"blue\" {\n        throw `unknown environment ${env}`;\n    }\n}\n")
        .args(["fail", "purple"])
        .stderr(
            "runbooks/fail.rhai:3:9: unknown environment purple
  |
3 |         throw `unknown environment ${env}`;
  |         ^
This run changed nothing.\n",
        )
        .status(1);
}

#[test]
fn error_inside_a_stdlib_function_shows_the_chain() {
    Test::new()
        .stdlib(
            "model",
            "fn check(env) {\n    let services = #{ blue: 4 };\n    services[env] / 0\n}\n",
        )
        .runbook(
            "promote",
            "import \"model\" as model;\n\nfn main() {\n    model::check(\"blue\");\n}\n",
        )
        .args(["promote"])
        .stderr(
            "stdlib/model.rhai:3:19: Division by zero: 4 / 0
  |
3 |     services[env] / 0
  |                   ^
  = in `check`, called from runbooks/promote.rhai:4:12
This run changed nothing.\n",
        )
        .status(1);
}

#[test]
fn error_in_a_nested_script_function() {
    Test::new()
        .runbook("nest", "fn inner() {\n  no_such_fn(1);\n}\nfn outer() { inner() }\nfn main() {\n  outer();\n}\n")
        .args(["nest"])
        .stderr(
            "runbooks/nest.rhai:2:3: no function matches the call no_such_fn(int)
  |
2 |   no_such_fn(1);
  |   ^
  = in `inner`, called from runbooks/nest.rhai:4:14
  = in `outer`, called from runbooks/nest.rhai:6:3
This run changed nothing.\n",
        )
        .status(1);
}

#[test]
fn error_raised_by_a_host_function_points_at_the_call() {
    Test::new()
        .runbook("host", "fn main() {\n    let tag = env::get(\"CUTOVER_TEST_UNSET_VARIABLE\");\n}\n")
        .args(["host"])
        .stderr(
            "runbooks/host.rhai:2:20: variable CUTOVER_TEST_UNSET_VARIABLE is not set (looked in the environment); set it or call env::get(\"CUTOVER_TEST_UNSET_VARIABLE\", default)
  |
2 |     let tag = env::get(\"CUTOVER_TEST_UNSET_VARIABLE\");
  |                    ^
This run changed nothing.\n",
        )
        .status(1);
}

#[test]
fn syntax_error_in_a_nested_import_names_the_import_that_reached_it() {
    Test::new()
        .stdlib("good", "fn ok() { 1 }\n")
        .stdlib("other", "import \"bad\" as bad;\nfn f() { 2 }\n")
        .stdlib("bad", "fn f() {\n  1 +\n}\n")
        .runbook(
            "r",
            "import \"good\" as good;\nimport \"other\" as other;\nfn main() { print(\"ran\"); }\n",
        )
        .args(["r"])
        .stderr_contains("stdlib/bad.rhai:3:1: syntax error")
        .stderr_contains("  = imported from stdlib/other.rhai:1:8\n")
        .stdout_lacks("ran")
        .status(1);
}

#[test]
fn syntax_error_in_an_imported_module() {
    Test::new()
        .stdlib("bad", "fn f() {\n  1 +\n}\n")
        .runbook("r", "import \"bad\" as bad;\nfn main() {}\n")
        .args(["r"])
        .stderr_contains("stdlib/bad.rhai:3:1: syntax error")
        .stderr_contains("  = imported from runbooks/r.rhai:1:8\n")
        .status(1);
}

#[test]
fn runaway_recursion_is_stopped() {
    Test::new()
        .runbook(
            "deep",
            "fn down(n) { down(n + 1) }\nfn main() { down(0) }\n",
        )
        .args(["deep"])
        .stderr_contains("Stack overflow")
        .status(1);
}

#[test]
fn runaway_data_is_stopped() {
    Test::new()
        .runbook(
            "big",
            "fn main() {\n  let s = \"x\";\n  loop { s += s; }\n}\n",
        )
        .args(["big"])
        .stderr_contains("Length of string too large")
        .status(1);
}

/// A call no function matches names the overloads there are, in script types, never Rust's.
#[test]
fn a_call_with_the_wrong_arguments_lists_the_overloads() {
    Test::new()
        .runbook("r", "fn main() {\n    docker::restart(42);\n}\n")
        .args(["r"])
        .stderr_contains("runbooks/r.rhai:2:13: no function matches the call docker::restart(int)")
        .stderr_contains("= help: docker::restart is called as: docker::restart(name: String)")
        .stderr_lacks("i64")
        .status(1);
}

#[test]
fn a_misspelt_function_or_runbook_gets_the_nearest_names() {
    Test::new()
        .runbook("r", "fn main() { docker::restrat(\"x\"); }\n")
        .args(["r"])
        .stderr_contains("no function matches the call docker::restrat(String)")
        .stderr_contains("= help: did you mean `docker::restart`")
        .stderr_lacks("ImmutableString")
        .status(1);
    Test::new()
        .args(["promte", "green"])
        .stderr_contains("error: no runbook named `promte`")
        .stderr_contains("did you mean `promote`?")
        .status(2);
}

/// The two Rhai rules a newcomer trips on first: modules are imported by name, and a `fn` does
/// not see the script's top-level variables. `cutover check` says so before anything runs.
#[test]
fn a_missing_import_and_a_global_read_in_a_function_are_explained() {
    Test::new()
        .runbook("a", "fn main() {\n    let cfg = stack::config();\n}\n")
        .runbook("b", "const LIMIT = 3;\nfn main() {\n    print(LIMIT);\n}\n")
        .args(["check", "a", "b"])
        .stderr_contains("runbooks/a.rhai:2:15: syntax error: Undefined module: stack")
        .stderr_contains("= help: add `import \"stack\" as stack;` at the top of the script")
        .stderr_contains("runbooks/b.rhai:3:11: syntax error: Undefined variable: LIMIT")
        .stderr_contains("a `fn` sees only its own parameters and variables (a Rhai rule)")
        .status(2);
    Test::new()
        .runbook(
            "c",
            "import \"stak\" as stack;\nfn main() { docker::restrat(\"x\"); }\n",
        )
        .args(["check", "c"])
        .stderr_contains("runbooks/c.rhai:1:1: no stdlib module or runbook named `stak`")
        .stderr_contains("did you mean `stack`?")
        .stderr_contains("runbooks/c.rhai:2:21: no function docker::restrat")
        .stderr_contains("did you mean `docker::restart`")
        .status(2);
}

/// A call without a module, or of a method, is checked against the functions the script
/// defines and the global ones (the host's and Rhai's), by name and number of arguments: a
/// misspelt name, a missing argument are each named at the call with the nearest name or the
/// overloads; what the script or the engine does define passes, operators and Rhai's `Fn`,
/// `call`, `type_of` included.
#[test]
fn calls_without_a_module_and_methods_are_checked_by_name_and_arity() {
    let runbook = "fn retry(times) { times }\nfn main(rare) {\n    if rare == \"yes\" {\n        retyr(3);\n        retry(3, 4);\n        slep(10);\n        sub_string(\"abc\");\n    }\n    sleep(retry(1));\n    print(sub_string(\"abc\", 1) + parse_json(\"[1]\").len());\n    let twice = |x| retry(x) * 2;\n    print(twice.call(1) + call(twice, 2));\n    print(type_of(Fn(\"retry\")));\n    print(-retry(1) + 2);\n    if !is_dry_run() { throw \"not a dry run\"; }\n}\n";
    Test::new()
        .runbook("r", runbook)
        .args(["check", "r"])
        .stderr_contains("runbooks/r.rhai:4:9: no function retyr: the script defines none, and no host or Rhai function has that name")
        .stderr_contains("did you mean `retry`")
        .stderr_contains("runbooks/r.rhai:5:9: no function retry taking 2 arguments")
        .stderr_contains("retry is called as: retry(times)")
        .stderr_contains("runbooks/r.rhai:6:9: no function slep")
        .stderr_contains("did you mean `sleep`")
        .stderr_contains("runbooks/r.rhai:7:9: no function sub_string taking 1 argument")
        .stderr_contains("sub_string is called as: sub_string(")
        .stderr_contains(": 4 errors")
        .status(2);
    // What runs is what passes: the same calls with a run taking the other branch.
    Test::new()
        .runbook("r", runbook)
        .args(["--dry-run", "r", "no"])
        .stdout("bc1\n6\nFn\n1\n")
        .success();
    // Method calls likewise: `x.f(a)` is a host or Rhai `f(x, a)`, or the script's own `f(a)`
    // with `x` as `this`; a closure kept in a map (`o.greet(…)`) is left to run time.
    let methods = "fn twice() { this * 2 }\nfn main(rare) {\n    let a = [1];\n    if rare == \"yes\" {\n        print(a.lenn());\n        print(\"abc\".contains());\n        print(3.twice(4));\n    }\n    a.push(2);\n    let o = #{greet: |who| `hi ${who}`};\n    print(`${a.len()} ${o.greet(\"x\")} ${3.twice()}`);\n}\n";
    Test::new()
        .runbook("m", methods)
        .args(["check", "m"])
        .stderr_contains("runbooks/m.rhai:5:17: no method .lenn(): the script defines no function lenn")
        .stderr_contains("did you mean `len`")
        .stderr_contains("runbooks/m.rhai:6:21: no method .contains() taking 0 arguments (besides the value before the dot)")
        .stderr_contains("contains is called as: contains(array: array, value: any)")
        .stderr_contains("runbooks/m.rhai:7:17: no method .twice() taking 1 argument")
        .stderr_contains("twice is called as: twice()")
        .stderr_contains(": 3 errors")
        .status(2);
    Test::new()
        .runbook("m", methods)
        .args(["m", "no"])
        .stdout("2 hi x 6\n")
        .success();
}

/// A call through an imported script module is checked against what the module exports: a
/// misspelt name, a wrong number of arguments and a private function are each named at the
/// call, with the module's own overloads or the nearest name. A runbook's rarely taken branch
/// is where such a typo hides until an incident reaches it; `cutover check` finds it first.
#[test]
fn calls_into_an_imported_module_are_checked_by_name_and_arity() {
    let module = "/// Says hello.\nfn greet(who) { `hello ${who}` }\nfn greet(who, how) { `${how} ${who}` }\nprivate fn secret() { 42 }\n";
    let runbook = "import \"greeting\" as g;\nfn main(rare) {\n    if rare {\n        g::gret(\"a\");\n        g::greet(\"a\", \"b\", \"c\");\n        g::secret();\n    }\n    g::greet(\"ok\");\n    g::greet(\"ok\", \"fine\");\n}\n";
    let checked = Test::new()
        .stdlib("greeting", module)
        .runbook("r", runbook)
        .args(["check", "r"])
        .stderr_contains("runbooks/r.rhai:4:12: no function g::gret in module `greeting`")
        .stderr_contains("did you mean `g::greet`")
        .stderr_contains(
            "runbooks/r.rhai:5:12: no function g::greet taking 3 arguments in module `greeting`",
        )
        .stderr_contains("g::greet is called as: g::greet(who); g::greet(who, how)")
        .stderr_contains("runbooks/r.rhai:6:12: no function g::secret in module `greeting`")
        .stderr_contains("`secret` is a `private fn` of `greeting`: only that module calls it")
        .status(2);
    assert!(checked.stderr.contains(" 3 errors\n"), "{}", checked.stderr);
    // What the module exports, called as it is, checks clean.
    Test::new()
        .stdlib("greeting", module)
        .runbook(
            "r",
            "import \"greeting\" as g;\nfn main() { print(g::greet(\"ok\", \"fine\")); }\n",
        )
        .args(["check", "r"])
        .stderr_contains("all compile")
        .success();
}
