//! Work started ahead of the call that will use it. A runbook that knows it will soon list the
//! containers or query the database starts that in the background (`compose::ps_ahead`,
//! `pg::connect_ahead`) and goes on with other round trips meanwhile; the call that needs it
//! takes what was started for the same key, once, or does the work itself when nothing was.
//!
//! A read started ahead stands in for a read made a moment later, so it must not be much older:
//! every change this process makes drops the reads ahead ([`Ahead::drop_all`], from
//! `Context::change`), so a listing started before a `compose::up` is never taken after it; and
//! a read is taken only while it is fresh ([`Ahead::take_within`]: a runbook takes it within
//! milliseconds, while a REPL session or a run that failed in between may come back to it
//! much later, when other runs or the engine itself have moved on). A connection opened ahead
//! (`pg::connect_ahead`) is not a read: changes leave it, and it is taken at any age.

use std::{
    future::Future,
    sync::Mutex,
    time::{Duration, Instant},
};

use tokio::{runtime::Handle, task::JoinHandle};

/// Pending work by key, with when it started; each is taken at most once.
pub(crate) struct Ahead<K, T> {
    pending: Mutex<Vec<(K, Instant, JoinHandle<T>)>>,
}

impl<K, T> Default for Ahead<K, T> {
    fn default() -> Self {
        Ahead {
            pending: Mutex::default(),
        }
    }
}

impl<K: PartialEq, T: Send + 'static> Ahead<K, T> {
    /// Starts `work` for `key` on `runtime`, in place of any still pending for it.
    pub(crate) fn start(
        &self,
        runtime: &Handle,
        key: K,
        work: impl Future<Output = T> + Send + 'static,
    ) {
        let handle = runtime.spawn(work);
        let mut pending = self.pending.lock().unwrap();
        if let Some(i) = pending.iter().position(|(k, _, _)| *k == key) {
            pending.swap_remove(i).2.abort();
        }
        pending.push((key, Instant::now(), handle));
    }

    /// The work started for `key`, if any, whatever its age: the caller awaits it.
    pub(crate) fn take(&self, key: &K) -> Option<JoinHandle<T>> {
        self.take_within(key, Duration::MAX)
    }

    /// The work started for `key` if it started at most `age` ago; older work is dropped (the
    /// caller does it again).
    pub(crate) fn take_within(&self, key: &K, age: Duration) -> Option<JoinHandle<T>> {
        let mut pending = self.pending.lock().unwrap();
        let i = pending.iter().position(|(k, _, _)| k == key)?;
        let (_, started, handle) = pending.swap_remove(i);
        if started.elapsed() > age {
            handle.abort();
            return None;
        }
        Some(handle)
    }

    /// Forgets (and stops) everything pending.
    pub(crate) fn drop_all(&self) {
        for (_, _, handle) in self.pending.lock().unwrap().drain(..) {
            handle.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Ahead;

    #[test]
    fn work_is_taken_once_by_its_key_and_dropped_by_drop_all() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let ahead: Ahead<&str, u32> = Ahead::default();
        ahead.start(runtime.handle(), "a", async { 1 });
        ahead.start(runtime.handle(), "b", async { 2 });
        // A second start for a key replaces the first.
        ahead.start(runtime.handle(), "a", async { 3 });
        assert!(ahead.take(&"c").is_none());
        let a = ahead.take(&"a").unwrap();
        assert_eq!(runtime.block_on(a).unwrap(), 3);
        assert!(ahead.take(&"a").is_none());
        ahead.drop_all();
        assert!(ahead.take(&"b").is_none());
        // Work older than asked for is not taken, and is gone.
        ahead.start(runtime.handle(), "d", async { 4 });
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(
            ahead
                .take_within(&"d", std::time::Duration::from_millis(5))
                .is_none()
        );
        assert!(ahead.take(&"d").is_none());
    }
}
