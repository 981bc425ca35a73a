//! cutover runs runbooks: Rhai scripts that deploy, promote, roll back, back up and rescue a
//! Docker blue-green stack behind Caddy with PostgreSQL. This crate is the host: the CLI, the
//! script engine, and the primitives (host modules) the scripts call.
//!
//! Start at [`main`]: it parses the command line ([`cli`]), resolves [`config::Settings`],
//! builds the shared [`context::Context`] and hands the command to [`commands`].

/// `print!`, `println!`, `eprint!` and `eprintln!` that never panic: output that cannot be
/// written (`cutover … | head -1`, a closed terminal) is dropped, and the run goes on exactly as
/// it would have — its journal entries, its change list and its exit code unchanged.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}
macro_rules! err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub(crate) mod cancel;
pub(crate) mod cli;
pub(crate) mod commands;
pub mod config;
pub mod context;
pub mod engine;
pub(crate) mod exec;
pub(crate) mod exit;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub(crate) mod health;
pub(crate) mod host;
pub(crate) mod local_time;
pub mod redact;
pub(crate) mod repl;

pub(crate) mod caddy;
pub(crate) mod compose;
pub(crate) mod docker;
pub(crate) mod journal;
pub(crate) mod metrics;
pub(crate) mod notify;
pub(crate) mod pg;
pub(crate) mod swarm;

use std::sync::Arc;

use crate::{config::Settings, context::Context, redact::Redactor};

/// Runs the `cutover` command line and returns the process exit code.
pub fn main() -> i32 {
    let cli = match cli::parse(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return error.exit_code();
        }
    };
    let settings = match Settings::from_args(&cli.global) {
        Ok(settings) => settings,
        Err(message) => {
            errln!("error: {message}");
            return exit::USAGE;
        }
    };
    let secrets = Arc::new(Redactor::default());
    secrets.add_process_environment();
    // A password in a URL given as an argument is masked from the start (the journal records
    // the arguments).
    for arg in std::env::args() {
        secrets.add_urls_in(&arg);
    }
    context::logging::init(&settings, Arc::clone(&secrets));

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            errln!("error: cannot start the async runtime: {error}");
            return exit::FAILED;
        }
    };
    // Host functions build futures (timers, sockets) on the script thread before blocking on
    // them; entering the runtime lets them find its reactor.
    let entered = runtime.enter();
    let context = Arc::new(Context::new(
        settings,
        runtime.handle().clone(),
        Arc::clone(&secrets),
    ));
    let code = match commands::dispatch(cli.command, &context) {
        Ok(code) => code,
        Err(failure) => {
            let text = failure.to_string();
            let text = secrets.redact(&text);
            if text.ends_with('\n') {
                err!("{text}")
            } else {
                errln!("{text}")
            }
            failure.exit_code()
        }
    };
    drop(entered);
    // Blocking threads (a prompt waiting on stdin) must not keep the process alive.
    runtime.shutdown_background();
    code
}
