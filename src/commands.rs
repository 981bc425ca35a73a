//! One function per subcommand. Each returns the exit code on success or a [`Failure`] that
//! carries its own; none of them exits the process.

use std::{io::Write, sync::Arc};

use clap::CommandFactory;
use rhai::Scope;

use crate::{
    cli::{Cli, Command, LockAction},
    context::RunRecord,
    context::{Context, RunInfo},
    engine::catalog::Catalog,
    engine::error::Failure,
    engine::runbook::{self, Runbook},
    engine::{ModuleFunctions, ScriptEngine},
    exit,
    journal::lock::{self, Status},
    journal::{Filter, Outcome},
};

pub fn dispatch(command: Option<Command>, context: &Arc<Context>) -> Result<i32, Failure> {
    let Some(command) = command else {
        let _ = Cli::command().print_help();
        return Ok(exit::USAGE);
    };
    if let Some(path) = &context.settings.env_file {
        context
            .load_env_file(path)
            .map_err(|e| Failure::Usage(e.to_string()))?;
    }
    match command {
        Command::Run { name, args } => run(context, &name, &args),
        Command::External(words) => run(context, &words[0], &words[1..]),
        Command::List => list(context),
        Command::Show { name, module } => show(context, &name, module),
        Command::Check { targets } => check(context, &targets),
        Command::Completions { shell } => {
            // Into memory first: clap_complete panics on a write error (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "cutover", &mut script);
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
            Ok(exit::OK)
        }
        Command::History { kind, limit, json } => history(context, kind, limit, json),
        Command::Lock { action } => lock_command(context, action),
        Command::Repl => crate::repl::command(context),
        Command::Docs { definitions } => {
            crate::engine::docs::command(context, definitions.as_deref())
        }
    }
}

/// `cutover run NAME ARGS...`
pub fn run(context: &Arc<Context>, name: &str, args: &[String]) -> Result<i32, Failure> {
    context.warm_up();
    let engine = ScriptEngine::new(Arc::clone(context));
    let script = engine
        .runbooks
        .find(name)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let compiling = std::time::Instant::now();
    let runbook = Runbook::compile(&engine, script)
        .map_err(|d| Failure::Compile(engine.redact(&d.render(&engine.sources))))?;
    tracing::trace!(target: "cutover::calls", "runbook {} compiled in {:.2} ms",
        runbook.script.display, compiling.elapsed().as_secs_f64() * 1e3);
    if matches!(args, [flag] if flag == "--help" || flag == "-h") {
        out!("{}", runbook.help());
        return Ok(exit::OK);
    }
    runbook
        .check_arity(args.len())
        .map_err(|e| Failure::Usage(e.to_string()))?;
    context.set_run_info(RunInfo {
        runbook: runbook.script.name.clone(),
        args: args.to_vec(),
        readonly: runbook.header.readonly,
        kind: runbook.header.kind.clone().unwrap_or_default(),
    });

    context.cancel.handle_signals(context.runtime());
    // A run holding the lock may take this one as a request (a canary takes `promote` and
    // `rollback`): its answer is this run's result.
    match context.ask_lock_holder() {
        Ok(Some((_, answer))) if answer.ok => {
            outln!("{}", context.secrets.redact(&answer.message));
            return Ok(exit::OK);
        }
        Ok(Some((_, answer))) => {
            return Err(Failure::Runtime(format!(
                "error: {}\n",
                context.secrets.redact(&answer.message)
            )));
        }
        Ok(None) => {}
        Err(crate::journal::requests::RequestError::Stopped(reason)) => {
            return Err(Failure::Stopped {
                message: format!(
                    "error: {} while waiting for the lock holder's answer",
                    reason.describe()
                ),
                code: reason.exit_code(),
            });
        }
        Err(error) => return Err(Failure::Other(error.into())),
    }
    let _lock = context.acquire_run_lock().map_err(Failure::of_lock)?;
    let record = RunRecord::start(context).map_err(|e| Failure::Other(e.into()))?;
    if let Some(limit) = context.settings.timeout {
        context.cancel.stop_after(context.runtime(), limit);
    }
    let mut scope = Scope::new();
    let result = runbook.run(&engine, &mut scope, args);
    // Rendered before the cleanups run: their sources and the stop are the run's own.
    let error = result
        .err()
        .map(|error| engine.render(&runbook.script.display, &error));
    let stopped = context.cancel.reason();
    // Deferred cleanups run whatever ended the run, under the lock, before its finish entry.
    let cleanup_errors = engine.run_cleanups();
    let (outcome, failure) = if error.is_none() && cleanup_errors.is_empty() {
        (Outcome::Ok, None)
    } else {
        let mut rendered = error.unwrap_or_default();
        for cleanup_error in &cleanup_errors {
            rendered.push_str(&engine.redact(cleanup_error));
            rendered.push('\n');
        }
        if !context.is_dry_run() && !runbook.header.readonly {
            rendered.push_str(&engine.redact(&context.changes_summary()));
            rendered.push('\n');
        }
        match stopped {
            Some(reason) => (
                Outcome::Stopped(reason),
                Some(Failure::Stopped {
                    message: rendered,
                    code: reason.exit_code(),
                }),
            ),
            None => (Outcome::Failed, Some(Failure::Runtime(rendered))),
        }
    };
    record.finish(outcome, failure.as_ref().map(|f| f.to_string()).as_deref());
    // The process exits once the run has ended: the compiled runbook and the engine's modules
    // are left for the OS to free with the rest (taking them apart cost ~1 ms a run). Nothing
    // in them acts when dropped; the lock is released as before.
    std::mem::forget(runbook);
    std::mem::forget(engine);
    failure.map_or(Ok(exit::OK), Err)
}

/// `cutover history [--kind K] [-n N] [--json]`
fn history(
    context: &Arc<Context>,
    kind: Option<String>,
    limit: usize,
    json: bool,
) -> Result<i32, Failure> {
    let journal = context.journal();
    let filter = Filter {
        kind: kind.clone(),
        last: Some(limit),
    };
    let entries = journal
        .read(&filter)
        .map_err(|e| Failure::Other(e.into()))?;
    if entries.is_empty() {
        let of_kind = kind.map(|k| format!(" of kind {k}")).unwrap_or_default();
        errln!("no entries{of_kind} in {}", journal.path().display());
        return Ok(exit::OK);
    }
    let text = if json {
        entries
            .iter()
            .map(|e| serde_json::to_string(e).map(|line| line + "\n"))
            .collect::<Result<String, _>>()
            .map_err(|e| Failure::Other(e.into()))?
    } else {
        crate::journal::table::table(&entries)
    };
    out!("{}", context.secrets.redact(&text));
    Ok(exit::OK)
}

/// `cutover lock status` and `cutover lock release --force`
fn lock_command(context: &Arc<Context>, action: LockAction) -> Result<i32, Failure> {
    let state_dir = &context.settings.state_dir;
    let text = match action {
        LockAction::Status => {
            match lock::status(state_dir).map_err(|e| Failure::Other(e.into()))? {
                Status::Held(holder) => format!("held by {}", lock::describe(&holder)),
                Status::Free { last: None } => "free".to_string(),
                Status::Free { last: Some(last) } => format!(
                    "free; its last holder ended without releasing it and the next run takes it \
                 over: {}",
                    last.describe()
                ),
            }
        }
        LockAction::Release { force: false } => {
            return Err(Failure::Usage(
                "`cutover lock release` lets another run start while the holder may still be \
                 changing things; pass --force if the holder is stuck or gone \
                 (see `cutover lock status`)"
                    .to_string(),
            ));
        }
        LockAction::Release { force: true } => {
            context.set_run_info(RunInfo {
                runbook: "cutover lock release --force".to_string(),
                kind: "lock".to_string(),
                ..RunInfo::default()
            });
            match context
                .force_release_lock()
                .map_err(|e| Failure::Other(e.into()))?
            {
                Status::Held(holder) => {
                    format!("released the lock held by {}", lock::describe(&holder))
                }
                Status::Free { last: Some(last) } => format!(
                    "the lock was free; cleared its last holder, which had not released it: {}",
                    last.describe()
                ),
                Status::Free { last: None } => "the lock is not held".to_string(),
            }
        }
    };
    outln!("{}", context.secrets.redact(&text));
    Ok(exit::OK)
}

/// `cutover list` (and the REPL's `:runbooks`)
pub fn list(context: &Arc<Context>) -> Result<i32, Failure> {
    let catalog = Catalog::runbooks(context.settings.runbook_dirs.clone());
    let table = runbook::table(&catalog).map_err(|e| Failure::Other(e.into()))?;
    let _ = std::io::stdout().lock().write_all(table.as_bytes());
    Ok(exit::OK)
}

/// `cutover show NAME`
fn show(context: &Arc<Context>, name: &str, stdlib: bool) -> Result<i32, Failure> {
    let catalog = if stdlib {
        Catalog::stdlib(context.settings.stdlib_dirs.clone())
    } else {
        Catalog::runbooks(context.settings.runbook_dirs.clone())
    };
    let script = catalog
        .find(name)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    out!("{}", script.text);
    Ok(exit::OK)
}

/// `cutover check [NAME|PATH]...`: compiles the named runbooks (or all runbooks) and every stdlib
/// module, reporting every error before exiting 2 if there was any.
fn check(context: &Arc<Context>, targets: &[String]) -> Result<i32, Failure> {
    let engine = ScriptEngine::new(Arc::clone(context));
    let mut scripts = Vec::new();
    let mut problems = Vec::new();
    if targets.is_empty() {
        scripts.extend(
            engine
                .runbooks
                .list()
                .map_err(|e| Failure::Other(e.into()))?,
        );
    } else {
        for target in targets {
            match engine.runbooks.find(target) {
                Ok(script) => scripts.push(script),
                Err(error) => problems.push(format!("error: {error}\n")),
            }
        }
    }
    scripts.extend(engine.stdlib.list().map_err(|e| Failure::Other(e.into()))?);
    let mut modules_seen = ModuleFunctions::default();
    for script in &scripts {
        let unknown = match engine.compile(script) {
            Ok(ast) => engine.check_names(script, &ast, &mut modules_seen),
            Err(diagnostic) => vec![diagnostic],
        };
        for diagnostic in unknown {
            problems.push(engine.redact(&diagnostic.render(&engine.sources)));
        }
    }
    if problems.is_empty() {
        errln!("checked {} scripts: all compile", scripts.len());
        return Ok(exit::OK);
    }
    let count = problems.len();
    Err(Failure::Compile(format!(
        "{}checked {} scripts: {count} error{}",
        problems.concat(),
        scripts.len(),
        if count == 1 { "" } else { "s" }
    )))
}
