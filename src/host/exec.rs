//! `exec::run`: run a program with an argument vector (no shell), output logged live and
//! returned (bounded), the whole process group killed on timeout or cancellation. Running a
//! program is a change: refused in a readonly runbook, described in a dry run, journaled.
//! `exec::split` turns a command line a user wrote (`TEST_COMMAND`) into that vector, quoted the
//! way a shell would read it, without ever running a shell.

use std::{path::PathBuf, sync::Arc};

use rhai::{Array, Dynamic, Map, Module};

use super::{
    HostResult, fail, function,
    options::{OptionKeys, Options},
};
use crate::{
    context::{Context, stopped},
    exec::{self, ExecError, Output, Spec},
};

/// The option keys of the host functions of this module.
pub(super) const OPTION_KEYS: &[&OptionKeys] = &[&RUN];

const RUN: OptionKeys = OptionKeys::new("exec::run", &[&["timeout", "cwd", "env"]]);

pub fn module(context: &Arc<Context>) -> Module {
    let mut module = Module::new();
    function!(&mut module,
        /// Runs `argv[0]` with the rest as its arguments, each passed as is (there is no shell:
        /// `;`, `$(…)` and quotes mean nothing). Output is logged line by line as it comes,
        /// prefixed with the program's name, secrets masked. Returns `#{code, stdout, stderr,
        /// ms, truncated}`; a non-zero exit code is returned, not thrown. The last 1 MiB of each
        /// stream is kept. A dry run logs what would run and returns code 0 with empty output.
        ///
        /// ```rhai
        /// let r = exec::run(["git", "rev-parse", "--short", "HEAD"]);
        /// if r.code != 0 { throw `git failed: ${r.stderr}`; }
        /// ```
        fn run[context](call, argv: Array) -> Map {
            run(&context, argv, Map::new())
        }
    );
    function!(&mut module,
        /// Like `run(argv)` with options: `timeout` (ms; the program and everything it started
        /// is killed when it passes, and the call fails saying so), `cwd` (directory to run in),
        /// `env` (a map of variables added to the inherited environment).
        ///
        /// ```rhai
        /// let r = exec::run(["pg_dump", "-Fc", "-f", "db.dump", "app"],
        ///                   #{ timeout: 600_000, env: #{ PGPASSWORD: secret::get("DB_PASSWORD") } });
        /// ```
        fn run[context](call, argv: Array, options: Map) -> Map {
            run(&context, argv, options)
        }
    );
    function!(&mut module,
        /// Splits `text` into words as a POSIX shell would: `'…'`, `"…"` and `\` quote, nothing
        /// else is special (no variables, globs, pipes or `;`). For handing a command line from
        /// a setting to `exec::run`; an unclosed quote is an error.
        ///
        /// ```rhai
        /// let argv = exec::split(`npx cypress run --spec "cypress/e2e/a b.cy.js"`);
        /// // ["npx", "cypress", "run", "--spec", "cypress/e2e/a b.cy.js"]
        /// exec::run(argv);
        /// ```
        fn split(call, text: &str) -> Array {
            let words = exec::split_words(text).map_err(|e| fail(format!("exec::split: {e}")))?;
            Ok(words.into_iter().map(Dynamic::from).collect())
        }
    );
    module
}

fn run(context: &Context, argv: Array, options: Map) -> HostResult<Map> {
    let spec = spec(context, argv, options)?;
    let mut detail = exec::display(&spec.argv);
    if let Some(cwd) = &spec.cwd {
        detail.push_str(&format!(" (in {})", cwd.display()));
    }
    context.change("exec::run", &detail, dry_output, || {
        if let Some(reason) = context.cancel.reason() {
            return Err(stopped(reason));
        }
        // Not `context.block_on`: on Ctrl-C the call itself must stop the process group and
        // say so, rather than be dropped.
        let output = context
            .runtime()
            .block_on(exec::run(&spec, &context.cancel))
            .map_err(|error| match error {
                ExecError::Stopped { .. } => fail(error),
                other => fail(format!("exec::run: {other}")),
            })?;
        Ok(result(output))
    })
}

fn dry_output() -> Map {
    result(Output {
        code: 0,
        stdout: String::new(),
        stderr: String::new(),
        ms: 0,
        truncated: false,
    })
}

fn result(output: Output) -> Map {
    let mut map = Map::new();
    map.insert("code".into(), Dynamic::from(output.code as i64));
    map.insert("stdout".into(), output.stdout.into());
    map.insert("stderr".into(), output.stderr.into());
    map.insert("ms".into(), Dynamic::from(output.ms as i64));
    map.insert("truncated".into(), output.truncated.into());
    map
}

/// Reads the argument vector and options, rejecting anything ambiguous before anything runs.
fn spec(context: &Context, argv: Array, options: Map) -> HostResult<Spec> {
    let mut spec = Spec {
        secrets: Some(context.secrets.clone()),
        ..Spec::default()
    };
    for (i, word) in argv.into_iter().enumerate() {
        if word.is_string() || word.is_int() || word.is_float() || word.is_bool() {
            spec.argv.push(word.to_string());
        } else {
            return Err(fail(format!(
                "exec::run: argument {i} is {}, expected a string",
                word.type_name()
            )));
        }
    }
    if spec.argv.is_empty() {
        return Err(fail(format!("exec::run: {}", ExecError::Empty)));
    }
    let options = Options::new(&RUN, options)?;
    spec.timeout = options.positive_millis("timeout")?;
    spec.cwd = options.string("cwd")?.map(PathBuf::from);
    for (name, value) in options.map("env")?.unwrap_or_default() {
        let value = value.to_string();
        context.secrets.add_if_secret_name(&name, &value);
        spec.env.push((name.to_string(), value));
    }
    Ok(spec)
}
