//! Requests to the run that holds the lock. A long run (a canary) may say, in the lock file,
//! that it takes requests from runs of some runbooks (`accepts`: `promote`, `rollback`). A
//! second run of one of those, finding the lock so held, does not wait for it: it leaves a
//! request in `STATE_DIR/cutover-requests/` and waits for the holder's answer. The holder looks
//! for requests between the things it does, decides what they mean (this module knows nothing
//! of canaries), and answers.
//!
//! Each request is a file `ID.request` (who asks, which runbook with which arguments, for which
//! holder), written atomically, mode 0600. The holder claims it by renaming it to `ID.taken`
//! and answers in `ID.answer`; a requester that gives up withdraws it by renaming it to
//! `ID.withdrawn`. Exactly one of the two renames succeeds, so a request is never both acted on
//! and reported as ignored. The requester removes the files once it has its answer; requests
//! of processes that are gone are removed by the holder that finds them.

use std::{
    io,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use super::identity::{Actor, identity, process_exists};
use crate::cancel::StopReason;

/// The folder of requests inside the state directory.
pub const DIR_NAME: &str = "cutover-requests";

/// How often a requester looks for its answer.
const POLL: Duration = Duration::from_millis(50);

/// A request from a second run to the holder of the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Letters, digits and `-`: the files' names.
    pub id: String,
    /// Who asks, with the runbook and arguments they ran.
    #[serde(flatten)]
    pub from: Actor,
    /// RFC 3339 UTC: when it was left.
    pub time: String,
    /// The holder it is for (a request outlives no holder).
    pub to_pid: u32,
    pub to_host: String,
}

/// What the holder answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// True when the holder did what was asked; false when it declined.
    pub ok: bool,
    pub message: String,
}

/// How a request ended for the requester.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Answered(Answer),
    /// Nobody claimed it in time (or the holder ended first): it was withdrawn.
    NotTaken,
}

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("request file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{} while waiting for an answer", .0.describe())]
    Stopped(StopReason),
    #[error("{0:?} is no request id (letters, digits and '-')")]
    BadId(String),
}

fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join(DIR_NAME)
}

fn file(state_dir: &Path, id: &str, suffix: &str) -> PathBuf {
    dir(state_dir).join(format!("{id}.{suffix}"))
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> RequestError + '_ {
    move |source| RequestError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn check_id(id: &str) -> Result<(), RequestError> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(RequestError::BadId(id.to_string()));
    }
    Ok(())
}

/// Leaves a request from `from` for the holder `to_pid` on `to_host`.
pub fn leave(
    state_dir: &Path,
    from: Actor,
    to_pid: u32,
    to_host: &str,
) -> Result<Request, RequestError> {
    use std::os::unix::fs::DirBuilderExt;
    let folder = dir(state_dir);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&folder)
        .map_err(io_error(&folder))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let request = Request {
        id: format!("{nanos}-{}", from.pid),
        from,
        time: super::now(),
        to_pid,
        to_host: to_host.to_string(),
    };
    let path = file(state_dir, &request.id, "request");
    let text = serde_json::to_string(&request).map_err(|e| RequestError::Io {
        path: path.clone(),
        source: e.into(),
    })?;
    super::atomic::write(&path, text.as_bytes(), 0o600).map_err(io_error(&path))?;
    Ok(request)
}

/// Waits for the answer to `request`: up to `claim_within` for the holder to claim it (then it
/// is withdrawn), and once claimed for as long as the holder lives. `pause` sleeps between
/// looks, or says why the wait must stop (the request is then withdrawn if still unclaimed).
pub fn wait_answer(
    state_dir: &Path,
    request: &Request,
    claim_within: Duration,
    pause: &mut dyn FnMut(Duration) -> Result<(), StopReason>,
) -> Result<Reply, RequestError> {
    let started = Instant::now();
    let answer_path = file(state_dir, &request.id, "answer");
    let taken_path = file(state_dir, &request.id, "taken");
    let cleanup = || {
        let _ = std::fs::remove_file(&answer_path);
        let _ = std::fs::remove_file(&taken_path);
    };
    loop {
        match std::fs::read_to_string(&answer_path) {
            Ok(text) => {
                cleanup();
                let answer = serde_json::from_str(&text).map_err(|e| RequestError::Io {
                    path: answer_path.clone(),
                    source: e.into(),
                })?;
                return Ok(Reply::Answered(answer));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&answer_path)(e)),
        }
        let claimed = taken_path.exists();
        let holder_gone =
            request.to_host == identity().host && !process_exists(request.to_pid as i32);
        if claimed && holder_gone {
            // Claimed, then the holder ended without answering (killed): whatever it did,
            // `cutover status` shows.
            cleanup();
            return Ok(Reply::NotTaken);
        }
        if !claimed && (started.elapsed() >= claim_within || holder_gone) {
            if withdraw(state_dir, &request.id)? {
                return Ok(Reply::NotTaken);
            }
            // Claimed in the meantime: its answer is coming.
            continue;
        }
        if let Err(reason) = pause(POLL) {
            if !claimed {
                let _ = withdraw(state_dir, &request.id);
            }
            return Err(RequestError::Stopped(reason));
        }
    }
}

/// Withdraws an unclaimed request: true when it was still unclaimed (and is now gone).
fn withdraw(state_dir: &Path, id: &str) -> Result<bool, RequestError> {
    let from = file(state_dir, id, "request");
    let to = file(state_dir, id, "withdrawn");
    match std::fs::rename(&from, &to) {
        Ok(()) => {
            let _ = std::fs::remove_file(&to);
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error(&from)(e)),
    }
}

/// The unclaimed requests for this process, oldest first. Requests whose requester is gone
/// are removed on the way.
pub fn pending(state_dir: &Path) -> Result<Vec<Request>, RequestError> {
    let folder = dir(state_dir);
    let entries = match std::fs::read_dir(&folder) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(&folder)(e)),
    };
    let me = identity();
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "request") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Ok(request) = serde_json::from_str::<Request>(&text) else {
            continue;
        };
        if request.from.host == me.host && !process_exists(request.from.pid as i32) {
            let _ = std::fs::remove_file(&path);
            continue;
        }
        if request.to_pid == me.pid && request.to_host == me.host {
            found.push(request);
        }
    }
    found.sort_by(|a, b| a.time.cmp(&b.time).then_with(|| a.id.cmp(&b.id)));
    Ok(found)
}

/// Claims request `id`: true when it was still there to claim (false: withdrawn, or already
/// claimed).
pub fn take(state_dir: &Path, id: &str) -> Result<bool, RequestError> {
    check_id(id)?;
    let from = file(state_dir, id, "request");
    match std::fs::rename(&from, file(state_dir, id, "taken")) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error(&from)(e)),
    }
}

/// Answers request `id` (claiming it first if it is not yet): false when the requester had
/// withdrawn it and waits no more.
pub fn answer(state_dir: &Path, id: &str, answer: &Answer) -> Result<bool, RequestError> {
    check_id(id)?;
    if !take(state_dir, id)? && !file(state_dir, id, "taken").exists() {
        return Ok(false);
    }
    let path = file(state_dir, id, "answer");
    let text = serde_json::to_string(answer).map_err(|e| RequestError::Io {
        path: path.clone(),
        source: e.into(),
    })?;
    super::atomic::write(&path, text.as_bytes(), 0o600).map_err(io_error(&path))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me(runbook: &str) -> Actor {
        Actor::me(runbook.to_string(), vec![])
    }

    #[test]
    fn a_claimed_request_gets_its_answer_and_an_unclaimed_one_is_withdrawn() {
        let dir = tempfile::tempdir().unwrap();
        let pid = std::process::id();
        let host = identity().host.clone();
        // Answered: the holder (this process) finds it, answers, and the requester reads it.
        let request = leave(dir.path(), me("rollback"), pid, &host).unwrap();
        let found = pending(dir.path()).unwrap();
        assert_eq!(found, vec![request.clone()]);
        let said = Answer {
            ok: true,
            message: "aborted".to_string(),
        };
        assert!(answer(dir.path(), &request.id, &said).unwrap());
        assert!(pending(dir.path()).unwrap().is_empty());
        let reply = wait_answer(
            dir.path(),
            &request,
            Duration::from_secs(5),
            &mut |_| Ok(()),
        )
        .unwrap();
        assert_eq!(reply, Reply::Answered(said.clone()));
        assert_eq!(
            std::fs::read_dir(dir.path().join(DIR_NAME))
                .unwrap()
                .count(),
            0
        );

        // Unclaimed: withdrawn after the wait, and an answer after that reaches nobody.
        let request = leave(dir.path(), me("promote"), pid, &host).unwrap();
        let reply = wait_answer(dir.path(), &request, Duration::ZERO, &mut |_| Ok(())).unwrap();
        assert_eq!(reply, Reply::NotTaken);
        assert!(!answer(dir.path(), &request.id, &said).unwrap());
        assert!(pending(dir.path()).unwrap().is_empty());

        // A request for another holder is not this one's.
        leave(dir.path(), me("promote"), pid + 1, &host).unwrap();
        assert!(pending(dir.path()).unwrap().is_empty());
        assert!(matches!(
            take(dir.path(), "../x"),
            Err(RequestError::BadId(_))
        ));
    }
}
