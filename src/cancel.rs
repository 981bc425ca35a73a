//! Stopping a run: Ctrl-C, SIGTERM and `--timeout` all set one flag that the script engine checks
//! between operations and that every long host call waits on, so a runbook stops within a second
//! whether it is computing in a `loop {}` or blocked in `sleep(600000)`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::sync::Notify;

/// Why a run was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Interrupted,
    TimedOut,
}

impl StopReason {
    pub fn exit_code(self) -> i32 {
        match self {
            StopReason::Interrupted => crate::exit::INTERRUPTED,
            StopReason::TimedOut => crate::exit::TIMED_OUT,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            StopReason::Interrupted => "interrupted (Ctrl-C or SIGTERM)",
            StopReason::TimedOut => "stopped by --timeout",
        }
    }
}

/// The cancellation flag shared by the engine, every host call and the signal handler.
#[derive(Debug, Default)]
pub struct Cancel {
    /// 0: running; 1: interrupted; 2: timed out.
    state: AtomicU8,
    /// Signals received since the last reset; the second one exits at once.
    signals: AtomicUsize,
    /// Set by the REPL: Ctrl-C only ever stops the running call, never the process.
    interactive: AtomicBool,
    /// Bumped by [`Cancel::resume`]: a [`Cancel::stop_after`] timer set before it never fires.
    generation: AtomicUsize,
    notify: Notify,
}

impl Cancel {
    pub fn stop(&self, reason: StopReason) {
        let code = match reason {
            StopReason::Interrupted => 1,
            StopReason::TimedOut => 2,
        };
        let _ = self
            .state
            .compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn reason(&self) -> Option<StopReason> {
        match self.state.load(Ordering::Relaxed) {
            0 => None,
            1 => Some(StopReason::Interrupted),
            _ => Some(StopReason::TimedOut),
        }
    }

    pub fn is_stopped(&self) -> bool {
        self.state.load(Ordering::Relaxed) != 0
    }

    /// Clears the flag so the next call can run (the REPL, after Ctrl-C stopped one call).
    pub fn reset(&self) {
        self.state.store(0, Ordering::SeqCst);
        self.signals.store(0, Ordering::SeqCst);
    }

    /// Lets code run again after a stop, for the run's deferred cleanups: the flag is cleared
    /// and every pending [`Cancel::stop_after`] timer (`--timeout`, an earlier cleanup's bound)
    /// is disarmed. Signals already received still count, so one more Ctrl-C or SIGTERM exits
    /// at once, as it would have.
    pub fn resume(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.state.store(0, Ordering::SeqCst);
    }

    /// In the REPL a second Ctrl-C while a call is being cancelled must not end the session:
    /// with `interactive` on, SIGINT only stops the running call. SIGTERM keeps its rule (the
    /// second one exits at once), so a REPL can still be ended from outside.
    pub fn set_interactive(&self, on: bool) {
        self.interactive.store(on, Ordering::SeqCst);
    }

    /// Resolves once the run is stopped.
    pub async fn stopped(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_stopped() {
                return;
            }
            notified.await;
        }
    }

    /// Installs the Ctrl-C / SIGTERM handler on `runtime`: the first signal stops the run, a
    /// second one exits the process at once with 130 (except Ctrl-C in [`Cancel::set_interactive`]
    /// mode, which only stops).
    pub fn handle_signals(self: &Arc<Self>, runtime: &tokio::runtime::Handle) {
        let cancel = Arc::clone(self);
        runtime.spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut interrupt), Ok(mut terminate)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            loop {
                let interrupted = tokio::select! {
                    _ = interrupt.recv() => true,
                    _ = terminate.recv() => false,
                };
                if interrupted && cancel.interactive.load(Ordering::SeqCst) {
                    cancel.stop(StopReason::Interrupted);
                    continue;
                }
                if cancel.signals.fetch_add(1, Ordering::SeqCst) >= 1 {
                    eprintln!("interrupted again: exiting now");
                    std::process::exit(crate::exit::INTERRUPTED);
                }
                cancel.stop(StopReason::Interrupted);
            }
        });
    }

    /// Stops the run with [`StopReason::TimedOut`] after `limit`, unless [`Cancel::resume`] is
    /// called first.
    pub fn stop_after(self: &Arc<Self>, runtime: &tokio::runtime::Handle, limit: Duration) {
        let cancel = Arc::clone(self);
        let generation = self.generation.load(Ordering::SeqCst);
        runtime.spawn(async move {
            tokio::time::sleep(limit).await;
            if cancel.generation.load(Ordering::SeqCst) == generation {
                cancel.stop(StopReason::TimedOut);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In the REPL, Ctrl-C pressed again and again while a call is being stopped must never
    /// end the process (if it did, this test binary would exit with 130 and fail the run).
    #[test]
    fn interactive_ctrl_c_only_stops() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let cancel = Arc::new(Cancel::default());
        cancel.set_interactive(true);
        cancel.handle_signals(runtime.handle());
        // Let the handler task register before the signals arrive.
        std::thread::sleep(Duration::from_millis(300));
        for _ in 0..3 {
            unsafe { libc::raise(libc::SIGINT) };
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(cancel.reason(), Some(StopReason::Interrupted));
        cancel.reset();
        assert_eq!(cancel.reason(), None);
    }

    /// After `resume` (a run's cleanups starting), a `--timeout` timer set before never fires,
    /// and one set after does.
    #[test]
    fn resume_disarms_earlier_timers() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let cancel = Arc::new(Cancel::default());
        cancel.stop_after(runtime.handle(), Duration::from_millis(20));
        cancel.resume();
        runtime.block_on(async { tokio::time::sleep(Duration::from_millis(60)).await });
        assert_eq!(cancel.reason(), None);
        cancel.stop_after(runtime.handle(), Duration::from_millis(20));
        runtime.block_on(cancel.stopped());
        assert_eq!(cancel.reason(), Some(StopReason::TimedOut));
    }
}
