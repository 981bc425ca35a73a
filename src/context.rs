//! What every host function can reach: the tokio runtime (through a handle, since scripts run on
//! a plain thread and host calls `block_on` it), the cancellation flag, the dry-run switch, the
//! secret registry and the settings. One `Context` per process, shared by `Arc`.

use std::{
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use rhai::{EvalAltResult, Position};

use crate::{
    cancel::{Cancel, StopReason},
    config::Settings,
    dotenv::EnvFile,
    redact::Redactor,
};

pub struct Context {
    pub settings: Settings,
    runtime: tokio::runtime::Handle,
    pub cancel: Arc<Cancel>,
    dry_run: AtomicBool,
    pub secrets: Arc<Redactor>,
    /// Variables loaded from `--env-file` and `env::load`, below the process environment.
    pub env_files: Mutex<EnvFile>,
}

impl Context {
    pub fn new(
        settings: Settings,
        runtime: tokio::runtime::Handle,
        secrets: Arc<Redactor>,
    ) -> Context {
        Context {
            dry_run: AtomicBool::new(settings.dry_run),
            settings,
            runtime,
            cancel: Arc::new(Cancel::default()),
            secrets,
            env_files: Mutex::new(EnvFile::default()),
        }
    }

    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// True when calls that change the world must only say what they would do.
    pub fn is_dry_run(&self) -> bool {
        self.dry_run.load(Ordering::Relaxed)
    }

    pub fn set_dry_run(&self, on: bool) {
        self.dry_run.store(on, Ordering::Relaxed);
    }

    /// Runs `future` to completion from the script thread, or gives up as soon as the run is
    /// stopped (Ctrl-C, SIGTERM, `--timeout`), returning the error that ends the script.
    pub fn block_on<F: Future>(&self, future: F) -> Result<F::Output, Box<EvalAltResult>> {
        if let Some(reason) = self.cancel.reason() {
            return Err(stopped(reason));
        }
        self.runtime.block_on(async {
            tokio::select! {
                biased;
                _ = self.cancel.stopped() => Err(stopped(self.cancel.reason().unwrap_or(StopReason::Interrupted))),
                output = future => Ok(output),
            }
        })
    }
}

/// The error a host call returns when the run is stopped. It is an ordinary runtime error, so
/// Rhai records the call chain and the message points at the blocked call. A `catch` cannot
/// swallow the stop: the engine checks the flag again before the next operation and ends the
/// script with `ErrorTerminated`, and every later host call fails at once.
pub fn stopped(reason: StopReason) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(
        reason.describe().into(),
        Position::NONE,
    ))
}
