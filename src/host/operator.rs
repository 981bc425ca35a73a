//! The operator's side of a run: `confirm(question)` asks on the terminal, and `is_dry_run()`
//! tells a script whether changes are only being described. Without a terminal and without
//! `--yes`, `confirm` fails at once instead of hanging a CI job on a prompt nobody sees.

use std::{
    io::{IsTerminal, Write},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
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
    err!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    // Read on a blocking thread so Ctrl-C still stops the run while the prompt waits. When it
    // does, the reader is told to give up rather than left blocked on stdin, where it would
    // swallow the next lines typed at the REPL.
    let abandoned = Arc::new(AtomicBool::new(false));
    let _abandon_on_return = Abandon(Arc::clone(&abandoned));
    let answer = ctx.block_on(tokio::task::spawn_blocking(move || {
        read_line_unless(&abandoned)
    }))?;
    let line = answer.map_err(fail)?.map_err(fail)?;
    Ok(matches!(
        line.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// Sets the flag when dropped: the caller no longer wants the answer.
struct Abandon(Arc<AtomicBool>);

impl Drop for Abandon {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// One line from stdin, read a byte at a time (so nothing past the newline is taken from
/// whoever reads stdin next), checking `abandoned` between waits of at most 100 ms.
fn read_line_unless(abandoned: &AtomicBool) -> std::io::Result<String> {
    let mut line = Vec::new();
    loop {
        let mut wait = libc::pollfd {
            fd: libc::STDIN_FILENO,
            events: libc::POLLIN,
            revents: 0,
        };
        let ready = unsafe { libc::poll(&mut wait, 1, 100) };
        if abandoned.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("no longer waiting for an answer"));
        }
        if ready < 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        if ready == 0 {
            continue;
        }
        let mut byte = 0u8;
        let read = unsafe { libc::read(libc::STDIN_FILENO, (&raw mut byte).cast(), 1) };
        match read {
            0 => break,
            1 if byte == b'\n' => break,
            1 => line.push(byte),
            _ => {
                let error = std::io::Error::last_os_error();
                if error.kind() != std::io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
        }
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}
