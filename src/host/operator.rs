//! The operator's side of a run: `confirm(question)` asks on the terminal, and `is_dry_run()`
//! tells a script whether changes are only being described. Without a terminal and without
//! `--yes`, `confirm` fails at once instead of hanging a CI job on a prompt nobody sees.

use std::{
    io::{BufRead, IsTerminal, Write},
    sync::Arc,
};

use rhai::Module;

use super::{HostResult, fail, function};
use crate::context::Context;

pub fn globals(module: &mut Module, context: &Arc<Context>) {
    function!(module,
        /// True when this run only describes its changes (`--dry-run`, or `:dry on` in the REPL).
        ///
        /// ```rhai
        /// if !is_dry_run() { log::info("changing things for real"); }
        /// ```
        fn is_dry_run[context](call) -> bool {
            Ok(context.is_dry_run())
        }
    );
    function!(module,
        /// Asks `question` on the terminal and returns true for `y`/`yes`. `--yes` answers yes
        /// without asking; a dry run answers yes so the whole plan is shown. Without a terminal
        /// (and without `--yes`) it fails instead of waiting forever.
        ///
        /// ```rhai
        /// if !confirm("Switch production traffic to green?") { throw "cancelled by operator"; }
        /// ```
        fn confirm[context](call, question: &str) -> bool {
            confirm(&context, question)
        }
    );
}

fn confirm(ctx: &Context, question: &str) -> HostResult<bool> {
    if ctx.settings.assume_yes {
        tracing::info!("{question} yes (--yes)");
        return Ok(true);
    }
    if ctx.is_dry_run() {
        tracing::info!("would ask: {question} (dry run: answering yes)");
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(fail(format!(
            "confirm({question:?}) needs an answer but there is no terminal to ask on; \
             pass --yes to answer yes"
        )));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    // Read on a blocking thread so Ctrl-C still stops the run while the prompt waits.
    let answer = ctx.block_on(tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map(|_| line)
    }))?;
    let line = answer.map_err(fail)?.map_err(fail)?;
    Ok(matches!(
        line.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}
