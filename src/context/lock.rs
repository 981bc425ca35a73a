//! The Context's side of the run lock ([`crate::journal::lock`]): who this run is, re-entrancy
//! (a process that holds the lock gets another guard at once), the spinner while another run
//! holds it, journaling a takeover or a forced release, and the REPL's lock-each-change mode.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use super::{Context, progress::Progress};
use crate::{
    cancel::StopReason,
    journal::{
        Event,
        identity::Actor,
        lock::{self, Held, Holder, LockError, Status, Waiting},
        requests::{self, Answer, Reply, Request, RequestError},
    },
};

/// The least a request waits to be claimed before it is withdrawn (`--lock-wait` if longer): a
/// holder looks for requests between the things it does, a few times a second.
const CLAIM_WITHIN: Duration = Duration::from_secs(10);

/// The lock, held while any clone of the guard lives; dropping the last one releases it.
#[derive(Clone)]
pub struct LockGuard(#[allow(dead_code)] Arc<Held>);

/// Waiting for the lock from a run: a spinner naming the holder, and sleeps Ctrl-C can stop.
struct RunWaiting<'a> {
    context: &'a Context,
    progress: Option<Progress>,
}

impl Waiting for RunWaiting<'_> {
    fn started(&mut self, holder: &str, wait: Duration) {
        tracing::info!(
            "the lock is held by {holder}; waiting up to {} s for it",
            wait.as_secs_f64()
        );
        self.progress = Some(Progress::spinner(
            self.context,
            &format!("waiting for the lock held by {holder}"),
        ));
    }

    fn pause(&mut self, pause: Duration) -> Result<(), StopReason> {
        self.context
            .block_on(tokio::time::sleep(pause))
            .map_err(|_| {
                self.context
                    .cancel
                    .reason()
                    .unwrap_or(StopReason::Interrupted)
            })
    }
}

impl Context {
    /// The run lock for a whole run that may change things (`cutover run`, and the REPL's
    /// `:run`, from its start, not from its first change). `None` for a dry run or a readonly
    /// runbook: they change nothing (the change gate refuses), so they run beside a holder.
    pub fn acquire_run_lock(&self) -> Result<Option<LockGuard>, LockError> {
        if self.is_dry_run() || self.run_info().readonly {
            return Ok(None);
        }
        self.acquire_lock().map(Some)
    }

    /// Takes the run lock, waiting up to `--lock-wait` for another run to release it.
    pub fn acquire_lock(&self) -> Result<LockGuard, LockError> {
        self.acquire_lock_within(self.settings.lock_wait)
    }

    /// Takes the run lock, waiting up to `wait` (showing who holds it) before failing with the
    /// holder's name. Re-entrant: while this process holds the lock, it returns another guard at
    /// once. Ctrl-C and SIGTERM stop the wait.
    pub fn acquire_lock_within(&self, wait: Duration) -> Result<LockGuard, LockError> {
        let mut current = self.run_lock.lock().unwrap();
        if let Some(held) = current.upgrade() {
            return Ok(LockGuard(held));
        }
        let run = self.run_info();
        let me = Holder::new(Actor::me(run.runbook, run.args).redacted(&self.secrets));
        let mut waiting = RunWaiting {
            context: self,
            progress: None,
        };
        let taken = lock::acquire(&self.settings.state_dir, &me, wait, &mut waiting)?;
        if let Some(takeover) = taken.takeover {
            let _ = self.journal_append(&self.journal_entry(Event::Lock, takeover));
        }
        let held = Arc::new(taken.held);
        *current = Arc::downgrade(&held);
        Ok(LockGuard(held))
    }

    /// When the lock is held by a run that takes requests from this run's runbook (a canary
    /// takes `promote` and `rollback`), leaves it one instead of waiting for the lock, and
    /// waits for its answer, which is journaled. `None` when there is nobody to ask, or the
    /// holder did not claim the request in time (withdrawn): the run then takes the lock as
    /// usual. Dry and readonly runs ask nobody.
    pub fn ask_lock_holder(&self) -> Result<Option<(Holder, Answer)>, RequestError> {
        let run = self.run_info();
        if self.is_dry_run() || run.readonly || self.run_lock.lock().unwrap().upgrade().is_some() {
            return Ok(None);
        }
        let state_dir = &self.settings.state_dir;
        let Ok(Status::Held(Some(holder))) = lock::status(state_dir) else {
            return Ok(None);
        };
        if !holder.accepts.contains(&run.runbook) {
            return Ok(None);
        }
        let me = Actor::me(run.runbook.clone(), run.args.clone()).redacted(&self.secrets);
        tracing::info!(
            "the lock is held by {}, which takes requests from `{}`: asking it",
            holder.describe(),
            run.runbook
        );
        let request: Request =
            requests::leave(state_dir, me, holder.actor.pid, &holder.actor.host)?;
        let claim_within = CLAIM_WITHIN.max(self.settings.lock_wait);
        let mut pause = |pause: Duration| {
            self.block_on(tokio::time::sleep(pause))
                .map_err(|_| self.cancel.reason().unwrap_or(StopReason::Interrupted))
        };
        match requests::wait_answer(state_dir, &request, claim_within, &mut pause)? {
            Reply::Answered(answer) => {
                let mut entry = self.journal_entry(
                    Event::Record,
                    format!(
                        "asked the run holding the lock ({}): {}",
                        holder.describe(),
                        answer.message
                    ),
                );
                entry
                    .fields
                    .insert("answered".into(), serde_json::Value::Bool(answer.ok));
                let _ = self.journal_append(&entry);
                Ok(Some((holder, answer)))
            }
            Reply::NotTaken => {
                tracing::warn!(
                    "{} did not take the request within {} s: withdrawn",
                    holder.describe(),
                    claim_within.as_secs_f64()
                );
                Ok(None)
            }
        }
    }

    /// This run, holding the lock, takes requests from runs of `runbooks` from now on (none:
    /// it stops taking them). False when it holds no lock (a dry run): nobody can ask it.
    pub fn accept_requests(&self, runbooks: Vec<String>) -> std::io::Result<bool> {
        let Some(held) = self.run_lock.lock().unwrap().upgrade() else {
            return Ok(false);
        };
        held.accept(runbooks)?;
        Ok(true)
    }

    /// `cutover lock release --force`: breaks the lock and journals who held it.
    pub fn force_release_lock(&self) -> Result<Status, LockError> {
        let (before, message) = lock::force_release(&self.settings.state_dir)?;
        if let Some(message) = message {
            let _ = self.journal_append(&self.journal_entry(Event::Lock, message));
        }
        Ok(before)
    }

    /// Makes every call through [`Context::change`] take the lock around its work (released
    /// after it), for callers that do not hold it for a whole run: the REPL.
    pub fn set_lock_each_change(&self, on: bool) {
        self.lock_each_change.store(on, Ordering::Relaxed);
    }

    /// With [`Context::set_lock_each_change`] on (the REPL), the lock is taken by the first
    /// change of a call and held until [`Context::release_change_lock`]: the changes of one
    /// call are one unit no other run can interleave with, while calls that only read never
    /// wait for another run's lock.
    pub(crate) fn lock_for_change(&self) -> Result<Option<LockGuard>, LockError> {
        if !self.lock_each_change.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let mut held = self.change_lock.lock().unwrap();
        if held.is_none() {
            *held = Some(self.acquire_lock()?);
        }
        Ok(None)
    }

    /// Releases the lock the changes of the ending call took, if any.
    pub fn release_change_lock(&self) {
        self.change_lock.lock().unwrap().take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::lock::status;

    /// The REPL's mode: a call's first change takes the lock, held until the call ends.
    #[test]
    fn lock_each_change_holds_the_lock_from_the_first_change_to_the_end_of_the_call() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut settings =
            crate::config::Settings::from_args(&crate::config::GlobalArgs::default()).unwrap();
        settings.state_dir = dir.path().to_path_buf();
        let context = Context::new(settings, runtime.handle().clone(), Arc::default());
        let during = || {
            context
                .change(
                    "test::change",
                    "x",
                    || None,
                    || Ok(Some(status(dir.path()).unwrap())),
                )
                .unwrap()
        };
        assert_eq!(during(), Some(Status::Free { last: None }));
        context.set_lock_each_change(true);
        assert!(
            matches!(during(), Some(Status::Held(Some(ref h))) if h.actor.pid == std::process::id()),
            "not held during the change"
        );
        assert!(
            matches!(status(dir.path()).unwrap(), Status::Held(_)),
            "released between two changes of one call"
        );
        assert!(matches!(during(), Some(Status::Held(_))));
        context.release_change_lock();
        assert_eq!(status(dir.path()).unwrap(), Status::Free { last: None });
        // Re-entrant: a guard held around several changes is shared, not deadlocked on.
        let guard = context.acquire_lock().unwrap();
        assert!(matches!(during(), Some(Status::Held(_))));
        context.release_change_lock();
        drop(guard);
        assert_eq!(status(dir.path()).unwrap(), Status::Free { last: None });
    }
}
