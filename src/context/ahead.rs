//! Work started ahead of the call that will use it. A runbook that knows it will soon list the
//! containers or query the database starts that in the background (`compose::ps_ahead`,
//! `pg::connect_ahead`) and goes on with other round trips meanwhile; the call that needs it
//! takes what was started for the same key, once, or does the work itself when nothing was.
//!
//! A read started ahead must not be older than what the call it stands in for would have read:
//! every change this process makes drops the reads ahead ([`Ahead::drop_all`], from
//! `Context::change`), so a listing started before a `compose::up` is never taken after it.

use std::{future::Future, sync::Mutex};

use tokio::{runtime::Handle, task::JoinHandle};

/// Pending work by key; each is taken at most once.
pub(crate) struct Ahead<K, T> {
    pending: Mutex<Vec<(K, JoinHandle<T>)>>,
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
        if let Some(i) = pending.iter().position(|(k, _)| *k == key) {
            pending.swap_remove(i).1.abort();
        }
        pending.push((key, handle));
    }

    /// The work started for `key`, if any: the caller awaits it.
    pub(crate) fn take(&self, key: &K) -> Option<JoinHandle<T>> {
        let mut pending = self.pending.lock().unwrap();
        let i = pending.iter().position(|(k, _)| k == key)?;
        Some(pending.swap_remove(i).1)
    }

    /// Forgets (and stops) everything pending.
    pub(crate) fn drop_all(&self) {
        for (_, handle) in self.pending.lock().unwrap().drain(..) {
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
    }
}
