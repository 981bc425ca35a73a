//! What to tell someone who never read the Rust when a script does not work: the errors a
//! newcomer to Rhai meets first, each with the one line that gets them going again.
//!
//! * A call no function matches names the overloads there are, as `cutover docs` writes them,
//!   and never Rust's type names (`&str | ImmutableString | String` is a `String` to a script).
//! * A misspelt function, runbook or module gets the nearest names ("did you mean").
//! * A module used without `import` says how to import it; a top-level `const` or `let` read
//!   inside a `fn` says that functions do not see the script's globals (a Rhai rule).
//!
//! Everything here works on plain strings: the engine hands in what it knows (the functions it
//! registered, the stdlib modules, the script's text).

/// The names among `candidates` nearest to `name` by edit distance, closest first: at most
/// three, and only those close enough to be a slip of the keyboard.
pub fn nearest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let limit = (name.chars().count() / 3).max(2);
    let mut scored: Vec<(usize, &str)> = candidates
        .into_iter()
        .filter(|c| *c != name)
        .map(|c| (distance(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(3).map(|(_, c)| c).collect()
}

/// "did you mean `a` or `b`?", or nothing.
pub fn did_you_mean(names: &[&str]) -> Option<String> {
    match names {
        [] => None,
        [one] => Some(format!("did you mean `{one}`?")),
        [rest @ .., last] => {
            let rest: Vec<String> = rest.iter().map(|n| format!("`{n}`")).collect();
            Some(format!("did you mean {} or `{last}`?", rest.join(", ")))
        }
    }
}

/// Levenshtein distance, by characters.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

/// Rhai's name of a Rust type in an error (`&str | ImmutableString | String` is `String`).
pub fn script_type(rust: &str) -> String {
    let rust = rust.trim();
    if rust.contains("ImmutableString") || matches!(rust, "&str" | "String" | "string") {
        return "String".into();
    }
    let name = rust.rsplit("::").next().unwrap_or(rust);
    match name {
        "i64" | "INT" => "int",
        "f64" | "FLOAT" => "float",
        "bool" => "bool",
        "char" => "char",
        "()" => "()",
        "Map" => "map",
        "Array" => "array",
        "Blob" => "blob",
        "FnPtr" => "function",
        "Dynamic" => "any",
        other => other,
    }
    .to_string()
}

/// What Rhai's "Function not found: NAME (T1, T2)" becomes: `NAME(t1, t2)` in script types,
/// and the name alone.
pub fn call_shape(signature: &str) -> (String, String) {
    let (name, args) = signature.split_once(" (").unwrap_or((signature, ")"));
    let args = args.strip_suffix(')').unwrap_or(args);
    let types: Vec<String> = if args.trim().is_empty() {
        Vec::new()
    } else {
        args.split(", ").map(script_type).collect()
    };
    (
        name.trim().to_string(),
        format!("{}({})", name.trim(), types.join(", ")),
    )
}

/// The help for a call nothing matched: the overloads of that name (`signatures`, as the docs
/// write them), or the nearest names among `paths`.
pub fn for_missing_function(name: &str, signatures: &[String], paths: &[String]) -> Option<String> {
    if !signatures.is_empty() {
        return Some(format!("{name} is called as: {}", signatures.join("; ")));
    }
    did_you_mean(&nearest(name, paths.iter().map(String::as_str)))
}

/// The help for `module::` used without an import: how to import it, or the nearest stdlib name.
pub fn for_missing_module(module: &str, stdlib: &[String]) -> String {
    if stdlib.iter().any(|m| m == module) {
        return format!(
            "add `import \"{module}\" as {module};` at the top of the script (every module a \
             script uses is imported by name)"
        );
    }
    let known = stdlib.join(", ");
    match did_you_mean(&nearest(module, stdlib.iter().map(String::as_str))) {
        Some(guess) => format!("{guess} (stdlib modules: {known})"),
        None => format!("no stdlib module is named `{module}` (stdlib modules: {known})"),
    }
}

/// The help for an undefined variable: when the script declares it at its top level, the Rhai
/// rule that functions do not see the script's globals.
pub fn for_missing_variable(name: &str, script: &str) -> Option<String> {
    let declared = script.lines().any(|line| {
        let line = line.trim_start();
        ["const ", "let "].iter().any(|keyword| {
            line.strip_prefix(keyword).is_some_and(|rest| {
                rest.trim_start()
                    .strip_prefix(name)
                    .is_some_and(|after| after.trim_start().starts_with('='))
            })
        })
    });
    declared.then(|| {
        format!(
            "`{name}` is declared at the script's top level, and a `fn` sees only its own \
             parameters and variables (a Rhai rule): pass it in as an argument, or make it a \
             function: `fn {}() {{ … }}`",
            name.to_lowercase()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_names_are_suggested_and_far_ones_are_not() {
        let runbooks = ["promote", "prepare", "rollback", "status"];
        assert_eq!(nearest("promte", runbooks), ["promote"]);
        assert_eq!(nearest("rolback", runbooks), ["rollback"]);
        assert!(nearest("teardown", runbooks).is_empty());
        assert_eq!(
            did_you_mean(&["a", "b", "c"]).unwrap(),
            "did you mean `a`, `b` or `c`?"
        );
    }

    #[test]
    fn rust_types_become_script_types() {
        assert_eq!(
            call_shape("docker::restart_all (&str | ImmutableString | String)"),
            (
                "docker::restart_all".to_string(),
                "docker::restart_all(String)".to_string()
            )
        );
        assert_eq!(
            call_shape("docker::restart (i64)").1,
            "docker::restart(int)"
        );
        assert_eq!(call_shape("time::now ()").1, "time::now()");
        assert_eq!(script_type("rhai::Map"), "map");
    }

    #[test]
    fn a_global_read_in_a_function_is_explained() {
        let script = "const LIMIT = 3;\nfn main() { print(LIMIT); }\n";
        assert!(
            for_missing_variable("LIMIT", script)
                .unwrap()
                .contains("a `fn` sees only its own parameters")
        );
        assert!(for_missing_variable("OTHER", script).is_none());
        let stdlib = ["bluegreen".to_string(), "stack".to_string()];
        assert!(
            for_missing_module("stack", &stdlib).starts_with("add `import \"stack\" as stack;`")
        );
        assert!(for_missing_module("stak", &stdlib).starts_with("did you mean `stack`?"));
    }
}
