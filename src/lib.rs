//! cutover runs runbooks: Rhai scripts that deploy, promote, roll back, back up and rescue a
//! Docker blue-green stack behind Caddy with PostgreSQL. This crate is the host: the CLI, the
//! script engine, and the primitives (host modules) the scripts call.
//!
//! Start at [`main`]: it parses the command line ([`cli`]), resolves [`config::Settings`],
//! builds the shared [`context::Context`] and hands the command to [`commands`].

pub(crate) mod cancel;
pub(crate) mod cli;
pub(crate) mod commands;
pub mod config;
pub mod context;
pub mod engine;
pub(crate) mod exec;
pub(crate) mod exit;
pub(crate) mod health;
pub(crate) mod host;
pub mod redact;
pub(crate) mod repl;

pub(crate) mod caddy;
pub(crate) mod compose;
pub(crate) mod docker;
pub(crate) mod journal;
pub(crate) mod metrics;
pub(crate) mod notify;
pub(crate) mod pg;

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
            eprintln!("error: {message}");
            return exit::USAGE;
        }
    };
    let secrets = Arc::new(Redactor::default());
    secrets.add_process_environment();
    context::logging::init(&settings, Arc::clone(&secrets));

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
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
                eprint!("{text}")
            } else {
                eprintln!("{text}")
            }
            failure.exit_code()
        }
    };
    drop(entered);
    // Blocking threads (a prompt waiting on stdin) must not keep the process alive.
    runtime.shutdown_background();
    code
}
