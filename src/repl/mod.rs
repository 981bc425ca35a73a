//! `cutover repl`: the incident shell. The same engine, host modules, stdlib and runbooks as
//! `cutover run`, with history kept across runs, Tab completion and signature hints from the
//! engine's metadata, multi-line input, and `:` commands for help, runbooks and dry-run.
//!
//! Ctrl-C stops the running call (a blocked `sleep` or health wait too) and returns to the
//! prompt; at the prompt it only clears the line. An error prints its caret snippet and the
//! session goes on. Piped input (stdin not a terminal) runs the same way line by line, printing
//! results, and exits with the first error's exit code (1, or 2 for a compile or usage error),
//! so a transcript can be replayed as a script.

pub(crate) mod commands;
pub(crate) mod cursor;
pub(crate) mod editor;
pub(crate) mod input;
pub(crate) mod session;

use std::{
    io::{BufRead, IsTerminal},
    path::PathBuf,
    sync::Arc,
};

use rustyline::{CompletionType, Config, Editor, error::ReadlineError, history::FileHistory};

use crate::{
    context::{Context, RunInfo},
    engine::{error::Failure, with_cleanup_errors},
    exit,
    repl::editor::{ReplHelper, Vocabulary},
    repl::input::is_complete,
    repl::session::{Session, display_value},
};

/// Entries kept in the history file.
const HISTORY_SIZE: usize = 10_000;

/// The runbook name REPL inputs are journaled under.
pub const RUNBOOK: &str = "repl";

/// `cutover repl`
pub fn command(context: &Arc<Context>) -> Result<i32, Failure> {
    context.cancel.handle_signals(context.runtime());
    let interactive = std::io::stdin().is_terminal();
    let mut repl = Repl {
        session: Session::new(Arc::clone(context)),
        context: Arc::clone(context),
        entries: Vec::new(),
        interactive,
    };
    if interactive {
        // Ctrl-C stops the running call, never the session.
        context.cancel.set_interactive(true);
        repl.interactive()
    } else {
        // A replayed transcript is one run: `--timeout` bounds all of it.
        if let Some(limit) = context.settings.timeout {
            context.cancel.stop_after(context.runtime(), limit);
        }
        repl.piped()
    }
}

pub(crate) struct Repl {
    pub(crate) session: Session,
    pub(crate) context: Arc<Context>,
    /// The inputs of this session, for `:history`, secrets masked.
    pub(crate) entries: Vec<String>,
    interactive: bool,
}

pub(crate) enum Flow {
    Continue,
    Quit,
}

impl Repl {
    fn interactive(&mut self) -> Result<i32, Failure> {
        let config = Config::builder()
            .max_history_size(HISTORY_SIZE)
            .map_err(terminal_error)?
            .auto_add_history(false)
            .completion_type(CompletionType::List)
            .build();
        let mut editor: Editor<ReplHelper, FileHistory> =
            Editor::with_config(config).map_err(terminal_error)?;
        editor.set_helper(Some(ReplHelper::new(self.context.settings.color)));
        let history = history_path();
        if let Some(path) = &history {
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            // A missing file is a first session.
            let _ = editor.load_history(path);
        }
        errln!(
            "cutover {} — every host function, the stdlib and the runbooks. \
             :help lists them, Tab completes, Ctrl-D quits.",
            env!("CARGO_PKG_VERSION")
        );
        let mut history_warned = false;
        loop {
            if let Some(helper) = editor.helper_mut() {
                helper.vocabulary = self.vocabulary();
            }
            // A Ctrl-C that came between two prompts is forgotten before the next line is read,
            // not once it is read: while the line is typed the terminal is raw (Ctrl-C is a key,
            // not a signal), so any stop seen after Enter is meant for the line, however soon
            // after Enter it came.
            self.context.cancel.reset();
            let input = match editor.readline(&self.prompt()) {
                Ok(input) => input,
                // Ctrl-C at the prompt drops the line being typed, nothing more.
                Err(ReadlineError::Interrupted) => continue,
                Err(ReadlineError::Eof) => break,
                Err(error) => return Err(terminal_error(error)),
            };
            if input.trim().is_empty() {
                continue;
            }
            let flow = self.handle(&input);
            // Saved once it ran, masked with what is known then: a secret the line itself
            // brought in (`let pw = secret::get(…)`) never reaches the history file.
            let entry = self.context.secrets.redact(&input).into_owned();
            let _ = editor.add_history_entry(entry.as_str());
            if let Some(path) = &history
                && let Err(error) = editor.append_history(path)
                && !std::mem::replace(&mut history_warned, true)
            {
                tracing::warn!(
                    "cannot save the REPL history to {}: {error}",
                    path.display()
                );
            }
            match flow {
                Ok(Flow::Continue) => {}
                Ok(Flow::Quit) => break,
                Err(failure) => self.report(&failure),
            }
        }
        Ok(exit::OK)
    }

    /// Runs piped input: each complete input in turn; the first error ends the run.
    fn piped(&mut self) -> Result<i32, Failure> {
        let mut pending = String::new();
        for line in std::io::stdin().lock().lines() {
            let line = line.map_err(|e| Failure::Other(e.into()))?;
            if pending.is_empty() && line.trim().is_empty() {
                continue;
            }
            pending.push_str(&line);
            pending.push('\n');
            if pending.trim_start().starts_with(':') || is_complete(&pending) {
                let input = std::mem::take(&mut pending);
                if let Flow::Quit = self.handle(input.trim_end())? {
                    return Ok(exit::OK);
                }
            }
        }
        if !pending.trim().is_empty() {
            // Unclosed at the end of input: let the compiler say what is missing.
            self.handle(pending.trim_end())?;
        }
        Ok(exit::OK)
    }

    /// One complete input: a `:` command or code.
    fn handle(&mut self, input: &str) -> Result<Flow, Failure> {
        let trimmed = input.trim();
        // Credentials written in the line are known before it is journaled as the run's input.
        self.context.secrets.add_urls_in(trimmed);
        let entry = self.context.secrets.redact(trimmed).into_owned();
        if trimmed.starts_with(':') {
            self.entries.push(entry);
            let flow = self.command(trimmed);
            self.remask_last_entry(trimmed);
            return flow;
        }
        self.entries.push(entry.clone());
        let run = RunInfo {
            runbook: RUNBOOK.to_string(),
            args: vec![entry],
            ..RunInfo::default()
        };
        let value = self.call(run, |session| session.eval(input));
        // Masked again once it ran: the input may have brought in a secret of its own.
        self.remask_last_entry(trimmed);
        self.echo(&value?);
        Ok(Flow::Continue)
    }

    /// Masks the last `:history` entry, `input`, with the secrets known now.
    fn remask_last_entry(&mut self, input: &str) {
        if let Some(last) = self.entries.last_mut() {
            *last = self.context.secrets.redact(input).into_owned();
        }
    }

    /// Runs one call the way `cutover run` runs a runbook: as `run` for the journal and the
    /// readonly guard, under the run lock, with Ctrl-C stopping it and only it.
    pub(crate) fn call<T>(
        &mut self,
        run: RunInfo,
        body: impl FnOnce(&mut Session) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        self.context.set_run_info(run);
        let result = under_run_lock(&self.context, || {
            let result = body(&mut self.session);
            // An input's deferred cleanups run when the input ends (`:run` runs its own first).
            let errors = self.session.engine.run_cleanups();
            with_cleanup_errors(result, errors)
        });
        if self.interactive {
            // A Ctrl-C that stopped this call must not stop the line's next one.
            self.context.cancel.reset();
        }
        result
    }

    pub(crate) fn echo(&self, value: &rhai::Dynamic) {
        if !value.is_unit() {
            outln!("{}", self.context.secrets.redact(&display_value(value)));
        }
    }

    fn report(&self, failure: &Failure) {
        let text = failure.to_string();
        let text = self.context.secrets.redact(&text);
        if text.ends_with('\n') {
            err!("{text}");
        } else {
            errln!("{text}");
        }
    }

    /// `cutover[blue dry]> `: the active environment (from `.current-environment` in the state
    /// directory) and whether changes are only described.
    fn prompt(&self) -> String {
        let environment =
            std::fs::read_to_string(self.context.settings.state_dir.join(".current-environment"))
                .ok()
                .map(|text| text.trim().to_string())
                .filter(|text| !text.is_empty());
        let dry = self.context.is_dry_run().then_some("dry");
        let tags: Vec<&str> = environment.as_deref().into_iter().chain(dry).collect();
        if tags.is_empty() {
            "cutover> ".to_string()
        } else {
            format!("cutover[{}]> ", tags.join(" "))
        }
    }

    fn vocabulary(&self) -> Vocabulary {
        let names = |catalog: &crate::engine::catalog::Catalog| {
            catalog
                .list()
                .map(|scripts| scripts.into_iter().map(|s| s.name).collect())
                .unwrap_or_default()
        };
        Vocabulary {
            functions: self.session.functions(),
            runbooks: names(&self.session.engine.runbooks),
            stdlib: names(&self.session.engine.stdlib),
            variables: self.session.variables(),
        }
    }
}

/// Runs one REPL call under the run lock's rule, "one change at a time": the first change
/// the call makes takes the lock (waiting `--lock-wait`, then failing with the holder's name)
/// and it is held until the call returns, so inputs that only read never wait for a deploy
/// that holds the lock. Changes are journaled under the call's [`RunInfo`] (runbook `repl`, or
/// the runbook's own name for `:run`).
fn under_run_lock<T>(
    context: &Context,
    call: impl FnOnce() -> Result<T, Failure>,
) -> Result<T, Failure> {
    context.set_lock_each_change(true);
    let result = call();
    context.release_change_lock();
    result
}

/// `$XDG_STATE_HOME/cutover/repl-history`, or `~/.local/state/cutover/repl-history`.
fn history_path() -> Option<PathBuf> {
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|home| !home.is_empty())
                .map(|home| PathBuf::from(home).join(".local/state"))
        })?;
    Some(state.join("cutover").join("repl-history"))
}

fn terminal_error(error: ReadlineError) -> Failure {
    Failure::Other(anyhow::anyhow!("the terminal: {error}"))
}
