//! The REPL's `:` commands: `:help`, `:runbooks`, `:run`, `:load`, `:dry`, `:history`,
//! `:quit`. Each runs against the session and the shared context like an input does, through
//! [`Repl::call`] when it runs script code.

use std::path::Path;

use crate::{
    context::RunInfo,
    context::RunRecord,
    engine::catalog::Catalog,
    engine::docs::{self, FunctionDoc},
    engine::error::Failure,
    engine::runbook,
    journal::Outcome,
    repl::editor::COMMANDS,
    repl::{Flow, RUNBOOK, Repl},
};

impl Repl {
    /// Runs one `:` command line.
    pub(crate) fn command(&mut self, line: &str) -> Result<Flow, Failure> {
        let (name, rest) = line
            .split_once(char::is_whitespace)
            .map_or((line, ""), |(name, rest)| (name, rest.trim()));
        match name {
            ":help" | ":h" | ":?" => self.help(rest)?,
            ":runbooks" => {
                let catalog = Catalog::runbooks(self.context.settings.runbook_dirs.clone());
                let table = runbook::table(&catalog).map_err(|e| Failure::Other(e.into()))?;
                out!("{table}");
            }
            ":run" => self.run_runbook(rest)?,
            ":load" => {
                if rest.is_empty() {
                    return Err(Failure::Usage("usage: :load FILE".to_string()));
                }
                let run = RunInfo {
                    runbook: RUNBOOK.to_string(),
                    args: vec![line.to_string()],
                    ..RunInfo::default()
                };
                let count = self.call(run, |session| session.load(Path::new(rest)))?;
                outln!("{rest}: {count} functions defined");
            }
            ":dry" => match rest {
                "on" | "off" => self.context.set_dry_run(rest == "on"),
                "" => outln!(
                    "dry run is {}",
                    if self.context.is_dry_run() {
                        "on"
                    } else {
                        "off"
                    }
                ),
                other => {
                    return Err(Failure::Usage(format!(
                        ":dry takes `on` or `off`, not `{other}`"
                    )));
                }
            },
            ":history" => {
                for (number, entry) in self.entries.iter().enumerate() {
                    let mut lines = entry.lines();
                    outln!("{:>4}  {}", number + 1, lines.next().unwrap_or(""));
                    for line in lines {
                        outln!("      {line}");
                    }
                }
            }
            ":quit" | ":q" | ":exit" => return Ok(Flow::Quit),
            other => {
                return Err(Failure::Usage(format!(
                    "unknown command {other}; :help lists the commands"
                )));
            }
        }
        Ok(Flow::Continue)
    }

    /// `:run NAME ARGS...`: the runbook runs in this session's context (dry-run, environment,
    /// loaded `.env` files) and is recorded under its own name.
    fn run_runbook(&mut self, rest: &str) -> Result<(), Failure> {
        let words = crate::exec::split_words(rest).map_err(Failure::Usage)?;
        let Some((name, args)) = words.split_first() else {
            return Err(Failure::Usage(
                "usage: :run NAME [ARGS]... (:runbooks lists them)".to_string(),
            ));
        };
        let runbook = self.session.runbook(name)?;
        if matches!(args, [flag] if flag == "--help" || flag == "-h") {
            out!("{}", runbook.help());
            return Ok(());
        }
        runbook
            .check_arity(args.len())
            .map_err(|e| Failure::Usage(e.to_string()))?;
        let run = RunInfo {
            runbook: runbook.script.name.clone(),
            args: args.to_vec(),
            readonly: runbook.header.readonly,
            kind: runbook.header.kind.clone().unwrap_or_default(),
        };
        // Journaled as a run of its own, start to finish, and under the run lock from its start
        // (not from its first change), as `cutover run` would: a CLI promote cannot slip in
        // while this one waits for health.
        let context = std::sync::Arc::clone(&self.context);
        let value = self.call(run, |session| {
            let _lock = context.acquire_run_lock().map_err(Failure::of_lock)?;
            let record = RunRecord::start(&context).map_err(|e| Failure::Other(e.into()))?;
            let result = session.run(&runbook, args);
            // Its deferred cleanups run before its finish entry, as in `cutover run`.
            let errors = session.engine.run_cleanups();
            let result = crate::engine::with_cleanup_errors(result, errors);
            let outcome = match (&result, context.cancel.reason()) {
                (Ok(_), _) => Outcome::Ok,
                (Err(_), Some(reason)) => Outcome::Stopped(reason),
                (Err(_), None) => Outcome::Failed,
            };
            let error = result.as_ref().err().map(|f| f.to_string());
            record.finish(outcome, error.as_deref());
            result
        })?;
        self.echo(&value);
        Ok(())
    }

    /// `:help` lists the commands and every function; `:help NAME` shows one function (every
    /// overload: signature, doc, example), a module, a command or a runbook.
    fn help(&self, name: &str) -> Result<(), Failure> {
        let functions = self.session.functions();
        if name.is_empty() {
            out!("{}", overview(&functions));
            return Ok(());
        }
        let overloads: Vec<&FunctionDoc> = functions.iter().filter(|f| f.path() == name).collect();
        if !overloads.is_empty() {
            let described: Vec<String> = overloads.iter().map(|f| f.describe()).collect();
            out!("{}", described.join("\n"));
            return Ok(());
        }
        let in_module: Vec<&FunctionDoc> = functions
            .iter()
            .filter(|f| f.module.as_deref() == Some(name))
            .collect();
        if !in_module.is_empty() {
            out!("{}", docs::listing(&in_module));
            return Ok(());
        }
        let command = format!(":{}", name.trim_start_matches(':'));
        if let Some((command, args, what)) = COMMANDS.iter().find(|(c, ..)| *c == command) {
            outln!("{command} {args}\n\n{what}");
            return Ok(());
        }
        if let Ok(runbook) = self.session.runbook(name) {
            out!("{}", runbook.help());
            return Ok(());
        }
        if let Some(help) = docs::builtin_help(&self.session.engine.rhai, name) {
            out!("{help}");
            return Ok(());
        }
        Err(Failure::Usage(format!(
            "no function, module, command or runbook named `{name}`; :help lists them"
        )))
    }
}

/// `:help` without a name: the commands, then every function by module.
fn overview(functions: &[FunctionDoc]) -> String {
    let mut out = String::from("Commands:\n");
    for (command, args, what) in COMMANDS {
        out.push_str(&format!("  {:<22}  {what}\n", format!("{command} {args}")));
    }
    out.push_str(
        "\nKeys: Tab completes, → accepts a hint, Ctrl-C stops the running call or clears the \
         line, Ctrl-R searches the history, Ctrl-D quits.\n",
    );
    let globals: Vec<&FunctionDoc> = functions.iter().filter(|f| f.module.is_none()).collect();
    out.push_str("\nFunctions (:help NAME shows one):\n");
    out.push_str(&docs::listing(&globals));
    let mut modules: Vec<&str> = functions
        .iter()
        .filter_map(|f| f.module.as_deref())
        .collect();
    modules.sort_unstable();
    modules.dedup();
    for module in modules {
        let members: Vec<&FunctionDoc> = functions
            .iter()
            .filter(|f| f.module.as_deref() == Some(module))
            .collect();
        out.push_str(&format!("\n{module}:\n"));
        out.push_str(&docs::listing(&members));
    }
    out
}
