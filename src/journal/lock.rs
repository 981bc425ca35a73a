//! The run lock: one change at a time. Every `cutover run` that may change things holds it for
//! its whole run (readonly and dry runs do not), and the REPL takes it around each changing call.
//!
//! The lock is an open-file-description lock (`F_OFD_SETLK`) on `STATE_DIR/cutover.lock`. The
//! kernel grants it to one process at a time, atomically, and drops it when the holder exits
//! however it exits, so two runs racing can never both win and a `kill -9` never leaves the lock
//! stuck. The file's content names the holder (user, host, pid, runbook, since) for the error a
//! second run prints and for `cutover lock status`; a holder truncates it on release. So a run
//! that gets the lock and still finds a name in the file knows the previous holder died without
//! releasing: it says so and journals the takeover. `F_OFD_GETLK` lets `lock status` look without
//! taking the lock, so looking never makes a real run fail.
//!
//! `cutover lock release --force` unlinks the file; a new run then locks a fresh file, and the
//! old holder keeps a lock on an inode nobody else can reach. Acquiring checks that the file it
//! locked is still the one at the path, so a release racing an acquire cannot hand out two locks.

use std::{
    fs::{File, OpenOptions},
    io::{self, Read},
    os::{
        fd::AsRawFd,
        unix::fs::{FileExt, MetadataExt},
    },
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use super::identity::{Actor, identity, process_exists};
use crate::cancel::StopReason;

/// The lock file's name inside the state directory.
pub const FILE_NAME: &str = "cutover.lock";

/// How often a waiting run tries again.
const POLL: Duration = Duration::from_millis(100);

/// Who holds (or last held) the lock, as its file records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    #[serde(flatten)]
    pub actor: Actor,
    /// RFC 3339 UTC: when it took the lock.
    pub since: String,
    /// The runbooks whose runs it takes requests from while it holds the lock (see
    /// [`super::requests`]): a second run of one of them leaves a request instead of waiting.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accepts: Vec<String>,
}

impl Holder {
    /// `actor`, holding the lock from now on.
    pub fn new(actor: Actor) -> Holder {
        Holder {
            actor,
            since: super::now(),
            accepts: Vec::new(),
        }
    }

    /// `alice@web1 (pid 4242) running `promote green` since 2026-11-26T04:31:02.120Z (12 s ago)`
    pub fn describe(&self) -> String {
        let age = self
            .since
            .parse::<jiff::Timestamp>()
            .ok()
            .map(|since| {
                let seconds = jiff::Timestamp::now().as_second() - since.as_second();
                format!(" ({} s ago)", seconds.max(0))
            })
            .unwrap_or_default();
        format!(
            "{}@{} (pid {}) running `{}` since {}{age}",
            self.actor.user,
            self.actor.host,
            self.actor.pid,
            self.actor.command(),
            self.since
        )
    }

    /// True when the holder ran on this host and its process no longer exists.
    pub fn is_gone(&self) -> bool {
        self.actor.host == identity().host && !process_exists(self.actor.pid as i32)
    }
}

/// Names `holder`, or says the lock file names nobody.
pub fn describe(holder: &Option<Holder>) -> String {
    holder
        .as_ref()
        .map(Holder::describe)
        .unwrap_or_else(|| "an unknown holder (the lock file names nobody)".to_string())
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another run holds the lock: {holder}; {}",
        match waited {
            Some(waited) => format!("gave up after waiting {} s (--lock-wait)", waited.as_secs_f64()),
            None => "try again when it is done, or pass --lock-wait SECS to wait for it".to_string(),
        }
    )]
    Held {
        holder: String,
        waited: Option<Duration>,
    },
    #[error("{} while waiting for the lock", .0.describe())]
    Stopped(StopReason),
    #[error("lock file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// A lock this process holds. Its file keeps the lock; closing it releases.
pub struct Held {
    file: File,
    /// What the file says of this holder.
    holder: std::sync::Mutex<Holder>,
}

impl Held {
    /// Says in the lock file that this holder takes requests from runs of `runbooks` (none:
    /// it takes none).
    pub fn accept(&self, runbooks: Vec<String>) -> io::Result<()> {
        let mut holder = self.holder.lock().unwrap();
        holder.accepts = runbooks;
        write_holder(&self.file, &holder)
    }
}

/// Replaces the lock file's content with `holder`. Not fsynced: the kernel holds the lock; the
/// name is for people, and a machine that crashes takes every holder with it.
fn write_holder(file: &File, holder: &Holder) -> io::Result<()> {
    let text = serde_json::to_string(holder)? + "\n";
    // Written whole first, then cut: a reader never sees an empty file while the lock is held.
    file.write_all_at(text.as_bytes(), 0)?;
    file.set_len(text.len() as u64)
}

impl Drop for Held {
    fn drop(&mut self) {
        // An empty file tells the next holder the lock was released, not abandoned.
        let _ = self.file.set_len(0);
    }
}

/// What `lock status` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Nobody holds the lock. `last` names a holder that ended without releasing it.
    Free {
        last: Option<Holder>,
    },
    Held(Option<Holder>),
}

pub fn lock_path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE_NAME)
}

/// A lock just taken.
pub struct Taken {
    pub held: Held,
    /// Said (and worth journaling) when the file still named a holder that never released it.
    pub takeover: Option<String>,
}

/// What a run waiting for the lock needs from its caller.
pub trait Waiting {
    /// Told once, when the lock turns out to be held: `holder` names who holds it.
    fn started(&mut self, holder: &str, wait: Duration);
    /// Sleeps for `pause` before the next try, or says why the wait must stop.
    fn pause(&mut self, pause: Duration) -> Result<(), StopReason>;
}

/// Takes the lock of `state_dir` for `me`, trying again for up to `wait` while another run
/// holds it, then failing with the holder's name.
pub fn acquire(
    state_dir: &Path,
    me: &Holder,
    wait: Duration,
    waiting: &mut dyn Waiting,
) -> Result<Taken, LockError> {
    let path = lock_path(state_dir);
    let io_error = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(state_dir).map_err(io_error)?;
    let started = Instant::now();
    let mut told = false;
    loop {
        if let Some(file) = try_lock(&path).map_err(io_error)? {
            return take(me, file).map_err(io_error);
        }
        let holder = describe(&read_holder(&path));
        let waited = started.elapsed();
        if waited >= wait {
            return Err(LockError::Held {
                holder,
                waited: (!wait.is_zero()).then_some(wait),
            });
        }
        if !told {
            waiting.started(&holder, wait);
            told = true;
        }
        waiting
            .pause(POLL.min(wait - waited))
            .map_err(LockError::Stopped)?;
    }
}

/// Opens the lock file and tries to lock it once. `None` when someone else holds it.
fn try_lock(path: &Path) -> io::Result<Option<File>> {
    loop {
        let file = super::atomic::open_private(
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false),
            path,
        )?;
        if !set_lock(&file)? {
            return Ok(None);
        }
        // `lock release --force` may have unlinked the file between open and lock: then this
        // lock guards an inode nobody else can find. Try again on the file at the path.
        let ours = file.metadata()?;
        match std::fs::metadata(path) {
            Ok(now) if now.ino() == ours.ino() && now.dev() == ours.dev() => {
                return Ok(Some(file));
            }
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Records `me` as the holder; says so if the file still names another.
fn take(me: &Holder, mut file: File) -> io::Result<Taken> {
    let mut previous = String::new();
    file.read_to_string(&mut previous)?;
    write_holder(&file, me)?;
    let mut takeover = None;
    if !previous.trim().is_empty() {
        let previous: Option<Holder> = serde_json::from_str(previous.trim()).ok();
        let why = match &previous {
            Some(p) if p.actor.host != me.actor.host => {
                "it ran on another host and did not release it"
            }
            Some(p) if p.is_gone() => "its process is gone",
            _ => "it ended without releasing it",
        };
        let message = format!("took over the lock from {}: {why}", describe(&previous));
        tracing::warn!("{message}");
        takeover = Some(message);
    }
    Ok(Taken {
        held: Held {
            file,
            holder: std::sync::Mutex::new(me.clone()),
        },
        takeover,
    })
}

/// The holder named in the lock file. A holder may be writing it at this instant, so a few
/// reads are tried before giving up.
fn read_holder(path: &Path) -> Option<Holder> {
    for _ in 0..5 {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(holder) = serde_json::from_str(text.trim())
        {
            return Some(holder);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// Whether the lock is held, and by whom, without taking it.
pub fn status(state_dir: &Path) -> Result<Status, LockError> {
    let path = lock_path(state_dir);
    let io_error = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Status::Free { last: None }),
        Err(e) => return Err(io_error(e)),
    };
    if is_locked(&file).map_err(io_error)? {
        return Ok(Status::Held(read_holder(&path)));
    }
    let mut text = String::new();
    let mut file = file;
    file.read_to_string(&mut text).map_err(io_error)?;
    Ok(Status::Free {
        last: serde_json::from_str(text.trim()).ok(),
    })
}

/// Breaks the lock: removes the lock file so the next run takes a fresh one. Returns who held
/// it, and what to journal about it (nothing when there was nothing to break). The holder, if it
/// still runs, is not stopped; it no longer excludes anyone.
pub fn force_release(state_dir: &Path) -> Result<(Status, Option<String>), LockError> {
    let path = lock_path(state_dir);
    let before = status(state_dir)?;
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(LockError::Io { path, source }),
    }
    let message = match &before {
        Status::Held(holder) => format!(
            "released the lock by force; it was held by {}",
            describe(holder)
        ),
        Status::Free { last: Some(last) } => format!(
            "cleared the lock file; its last holder ended without releasing it: {}",
            last.describe()
        ),
        Status::Free { last: None } => return Ok((before, None)),
    };
    tracing::warn!("{message}");
    Ok((before, Some(message)))
}

fn lock_record() -> libc::flock {
    // SAFETY: `flock` is a plain C struct; all-zero is a valid value (and `l_pid` must be 0 for
    // OFD locks).
    let mut record: libc::flock = unsafe { std::mem::zeroed() };
    record.l_type = libc::F_WRLCK as libc::c_short;
    record.l_whence = libc::SEEK_SET as libc::c_short;
    record
}

/// Tries to take the whole-file write lock; false when another open file holds it.
fn set_lock(file: &File) -> io::Result<bool> {
    let mut record = lock_record();
    // SAFETY: a valid descriptor and a valid `flock` record.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &mut record) } == 0 {
        return Ok(true);
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EAGAIN | libc::EACCES) => Ok(false),
        _ => Err(error),
    }
}

/// True when some open file holds the lock.
fn is_locked(file: &File) -> io::Result<bool> {
    let mut record = lock_record();
    // SAFETY: a valid descriptor and a valid `flock` record.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut record) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(record.l_type != libc::F_UNLCK as libc::c_short)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_open_file_cannot_lock_and_sees_it_locked() {
        let dir = tempfile::tempdir().unwrap();
        let path = lock_path(dir.path());
        let first = try_lock(&path).unwrap().expect("free lock");
        assert!(try_lock(&path).unwrap().is_none());
        let looker = File::open(&path).unwrap();
        assert!(is_locked(&looker).unwrap());
        drop(first);
        assert!(!is_locked(&looker).unwrap());
        assert!(try_lock(&path).unwrap().is_some());
    }
}
