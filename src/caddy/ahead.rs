//! A switch's slot files, written ahead of the switch.
//!
//! Replacing a slot file durably is a temporary file written and fsynced, then a rename: on a
//! disk where an fsync waits for the device, a switch's ten fsyncs are what it waits for most.
//! The contents are known before the switch, as soon as a runbook knows where production goes
//! (the standby's gateway addresses), while it still checks the standby's health and reads
//! the schema. So a runbook can start writing them then (`caddy::switch_ahead`), and the
//! switch, once its own checks pass, only renames what was written for it.
//!
//! Nothing changes until the switch: the staged contents are temporary files beside the slots,
//! which Caddy never reads. The switch takes them only for slots it would write with the same
//! address (it plans from the route and the slots as they are then, as always), and writes any
//! others itself; what it does not take is removed. Staged contents the run never takes (the
//! standby turned out unhealthy, a refusal) are removed when the run ends (the engine's end of
//! run, with the deferred cleanups: the process exits without dropping the engine), or when
//! another staging replaces them.

use std::{sync::Mutex, thread::JoinHandle};

use crate::caddy::upstream::{SlotWrite, StagedSlots, stage_slots};

/// The slot contents being staged for the next switch of a route, one set at a time.
#[derive(Default)]
pub struct SwitchAhead {
    pending: Mutex<Option<(String, JoinHandle<Option<StagedSlots>>)>>,
}

impl SwitchAhead {
    /// Starts writing `writes` beside their slot files on a thread of its own, for the next
    /// switch of route `route_id`, in place of any set staged before (removed). A failure is
    /// not reported: the switch then writes the slots itself and says what went wrong.
    pub fn start(&self, route_id: &str, writes: Vec<SlotWrite>) {
        let staging = std::thread::Builder::new()
            .name("slots-ahead".into())
            .spawn(move || stage_slots(writes).ok());
        let Ok(staging) = staging else {
            return;
        };
        let replaced = self
            .pending
            .lock()
            .unwrap()
            .replace((route_id.to_string(), staging));
        if let Some((_, replaced)) = replaced {
            drop(replaced.join());
        }
    }

    /// The contents staged for route `route_id`, once written (this waits for them), if any.
    pub fn take(&self, route_id: &str) -> Option<StagedSlots> {
        let (_, pending) = self
            .pending
            .lock()
            .unwrap()
            .take_if(|(route, _)| route == route_id)?;
        pending.join().ok().flatten()
    }

    /// Removes what was staged and not taken, once written (this waits for it).
    pub fn discard(&self) {
        let pending = self.pending.lock().unwrap().take();
        if let Some((_, pending)) = pending {
            drop(pending.join());
        }
    }
}

impl Drop for SwitchAhead {
    /// What no switch took is removed.
    fn drop(&mut self) {
        self.discard();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writes(dir: &std::path::Path, addr: &str) -> Vec<SlotWrite> {
        (1..=3)
            .map(|n| SlotWrite {
                path: dir.join(format!("production.{n}")),
                addr: addr.to_string(),
            })
            .collect()
    }

    fn names(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn staged_slots_are_taken_once_and_removed_when_not_taken() {
        let dir = tempfile::tempdir().unwrap();
        let ahead = SwitchAhead::default();
        ahead.start("production", writes(dir.path(), "127.0.0.1:4100"));
        assert!(ahead.take("staging").is_none(), "another route's");
        let staged = ahead.take("production").expect("staged");
        assert!(ahead.take("production").is_none(), "taken twice");
        // Staged beside the slots, which do not exist yet.
        assert_eq!(names(dir.path()).len(), 3);
        assert!(names(dir.path()).iter().all(|n| n.contains(".tmp-")));
        let some = &writes(dir.path(), "127.0.0.1:4100")[1..];
        assert!(staged.covers(some));
        assert!(!staged.covers(&writes(dir.path(), "127.0.0.1:4200")));
        staged.install(some).unwrap();
        assert_eq!(names(dir.path()), ["production.2", "production.3"]);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("production.2")).unwrap(),
            "127.0.0.1:4100\n"
        );
        // A second staging replaces the first; what is never taken is gone with the store.
        ahead.start("production", writes(dir.path(), "127.0.0.1:4200"));
        ahead.start("production", writes(dir.path(), "127.0.0.1:4300"));
        drop(ahead);
        assert_eq!(names(dir.path()), ["production.2", "production.3"]);
    }
}
