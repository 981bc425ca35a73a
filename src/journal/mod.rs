//! The audit journal: one JSON object a line in `STATE_DIR/cutover-journal.jsonl`, appended and
//! fsynced, so "who changed what, when, and did it work" survives a crash and can be read with
//! `cutover history`, `audit::history` or `jq`. Every `cutover run` writes `start` and `finish`,
//! every change a run makes a `change`, `audit::record` a `record`, and the run lock
//! a `lock` entry when it is taken over or broken.
//!
//! Entries are masked with the secret registry before they are written. Each is appended in one
//! write and, except `start`, fsynced before the call returns. A `start` entry is left to the
//! next fsync (a change, a record, the finish), which makes it durable with that entry: if the
//! machine dies before the run changed anything, there is nothing to audit, and every run saves
//! an fsync (several ms). A crash mid-append can leave a torn last line: readers skip it with a
//! warning, and the next append starts on a fresh line so the torn one never swallows it.

pub(crate) mod atomic;
pub(crate) mod identity;
pub(crate) mod lock;
pub(crate) mod requests;
pub(crate) mod state;
pub(crate) mod table;

use std::{
    collections::VecDeque,
    fs::{File, OpenOptions},
    io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    sync::Arc,
};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{cancel::StopReason, journal::identity::Actor, redact::Redactor};

/// The journal's file name inside the state directory.
pub const FILE_NAME: &str = "cutover-journal.jsonl";

/// What happened, in the `event` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    /// A `cutover run` began (after taking the lock).
    Start,
    /// A run changed (or failed to change) the world.
    Change,
    /// A runbook wrote an entry with `audit::record`.
    Record,
    /// The run lock was taken over from a holder that is gone, or broken by force.
    Lock,
    /// A `cutover run` ended; `outcome` and `duration_ms` say how.
    Finish,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Start => "start",
            Event::Change => "change",
            Event::Record => "record",
            Event::Lock => "lock",
            Event::Finish => "finish",
        }
    }
}

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// RFC 3339 UTC with milliseconds.
    pub time: String,
    #[serde(flatten)]
    pub actor: Actor,
    /// What sort of operation this belongs to (`promotion`, `rollback`, …): the runbook header's
    /// `//! kind: …`, else the runbook's name; `audit::record` names its own.
    pub kind: String,
    pub event: Event,
    pub message: String,
    /// `ok`, `failed`, `interrupted` or `timed out`, on `change` and `finish` entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Why a change or a run failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Extra data given to `audit::record`.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub fields: Map<String, Value>,
}

impl Entry {
    /// A copy with every registered secret masked, in every string it holds.
    fn redacted(&self, secrets: &Redactor) -> Entry {
        let mask = |text: &str| secrets.redact(text).into_owned();
        let mut entry = self.clone();
        entry.actor = entry.actor.redacted(secrets);
        entry.kind = mask(&entry.kind);
        entry.message = mask(&entry.message);
        entry.error = entry.error.as_deref().map(mask);
        let mut fields = Value::Object(std::mem::take(&mut entry.fields));
        redact_value(&mut fields, secrets);
        if let Value::Object(fields) = fields {
            entry.fields = fields;
        }
        entry
    }
}

fn redact_value(value: &mut Value, secrets: &Redactor) {
    match value {
        Value::String(text) => *text = secrets.redact(text).into_owned(),
        Value::Array(items) => items.iter_mut().for_each(|v| redact_value(v, secrets)),
        Value::Object(map) => {
            let entries = std::mem::take(map);
            for (key, mut v) in entries {
                redact_value(&mut v, secrets);
                map.insert(secrets.redact(&key).into_owned(), v);
            }
        }
        _ => {}
    }
}

/// The current time as the journal writes it.
pub fn now() -> String {
    format!("{:.3}", jiff::Timestamp::now())
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot write the journal {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot read the journal {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
}

/// The journal file of one state directory.
#[derive(Debug, Clone)]
pub struct Journal {
    path: PathBuf,
    secrets: Arc<Redactor>,
}

/// Which entries [`Journal::read`] returns.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only entries of this kind.
    pub kind: Option<String>,
    /// Only the last this many (after filtering); `None` for all.
    pub last: Option<usize>,
}

impl Journal {
    pub fn new(state_dir: &Path, secrets: Arc<Redactor>) -> Journal {
        Journal {
            path: state_dir.join(FILE_NAME),
            secrets,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `entry` (secrets masked) as one line and fsyncs it.
    pub fn append(&self, entry: &Entry) -> Result<(), JournalError> {
        self.write(entry, true)
    }

    /// Appends `entry` without waiting for the disk: the next [`Journal::append`] makes it
    /// durable. For `start` entries.
    pub fn append_unsynced(&self, entry: &Entry) -> Result<(), JournalError> {
        self.write(entry, false)
    }

    fn write(&self, entry: &Entry, sync: bool) -> Result<(), JournalError> {
        let error = |source| JournalError::Write {
            path: self.path.clone(),
            source,
        };
        let mut line =
            serde_json::to_string(&entry.redacted(&self.secrets)).map_err(|e| error(e.into()))?;
        line.push('\n');
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(error)?;
        }
        let mut file = atomic::open_private(
            OpenOptions::new().append(true).read(true).create(true),
            &self.path,
        )
        .map_err(error)?;
        let length = file.metadata().map_err(error)?.len();
        // A crash mid-append leaves a line without its newline: start on a fresh line so the
        // torn one cannot swallow this entry.
        if length > 0 && last_byte(&mut file, length).map_err(error)? != b'\n' {
            line.insert(0, '\n');
        }
        // One write of the whole line: O_APPEND keeps concurrent writers' lines apart.
        file.write_all(line.as_bytes()).map_err(error)?;
        if sync {
            file.sync_data().map_err(error)?;
        }
        // A new file's name must be durable too, once.
        if length == 0 {
            sync_dir(&self.path).map_err(error)?;
        }
        Ok(())
    }

    /// The entries matching `filter`, oldest first. Reads the file as a stream, keeping only
    /// what will be returned. Lines that do not parse are skipped with a warning naming them.
    pub fn read(&self, filter: &Filter) -> Result<Vec<Entry>, JournalError> {
        let file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(JournalError::Read {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let mut reader = BufReader::new(file);
        let mut kept = VecDeque::new();
        let mut raw = Vec::new();
        let mut number = 0;
        loop {
            raw.clear();
            let read = reader
                .read_until(b'\n', &mut raw)
                .map_err(|source| JournalError::Read {
                    path: self.path.clone(),
                    source,
                })?;
            if read == 0 {
                break;
            }
            number += 1;
            let complete = raw.last() == Some(&b'\n');
            let text = String::from_utf8_lossy(&raw);
            if text.trim().is_empty() {
                continue;
            }
            // The kind first, cheaply: an entry of another kind is not built at all.
            if let Some(kind) = &filter.kind
                && serde_json::from_str::<KindOf>(text.trim_end()).is_ok_and(|k| k.kind != *kind)
            {
                continue;
            }
            let entry = match serde_json::from_str::<Entry>(text.trim_end()) {
                Ok(entry) => entry,
                Err(error) => {
                    let what = if complete {
                        "a malformed line"
                    } else {
                        "a torn last line (a crash while it was written?)"
                    };
                    tracing::warn!("{}:{number}: skipping {what}: {error}", self.path.display());
                    continue;
                }
            };
            if filter.kind.as_ref().is_some_and(|kind| *kind != entry.kind) {
                continue;
            }
            kept.push_back(entry);
            if filter.last.is_some_and(|last| kept.len() > last) {
                kept.pop_front();
            }
        }
        Ok(kept.into())
    }
}

/// A line's kind alone. Building a whole [`Entry`] costs far more (its actor is flattened, so
/// serde buffers every field first): a read of one kind, as a rollback's look for the release it
/// goes back to, parsed the whole journal that way and grew slower with every run journaled.
#[derive(Deserialize)]
struct KindOf<'a> {
    #[serde(borrow)]
    kind: std::borrow::Cow<'a, str>,
}

fn last_byte(file: &mut File, length: u64) -> io::Result<u8> {
    let mut byte = [0u8];
    file.seek(SeekFrom::Start(length - 1))?;
    file.read_exact(&mut byte)?;
    Ok(byte[0])
}

/// Makes a newly created file's directory entry durable.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => File::open(".")?.sync_all(),
    }
}

/// How a run ended, as the `finish` entry says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Failed,
    Stopped(StopReason),
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Stopped(StopReason::Interrupted) => "interrupted",
            Outcome::Stopped(StopReason::TimedOut) => "timed out",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: &str, message: &str) -> Entry {
        Entry {
            time: now(),
            actor: Actor {
                user: "u".into(),
                host: "h".into(),
                pid: 1,
                runbook: "r".into(),
                args: vec![],
            },
            kind: kind.into(),
            event: Event::Record,
            message: message.into(),
            outcome: None,
            duration_ms: None,
            error: None,
            fields: Map::new(),
        }
    }

    /// The messages of the entries `filter` reads, oldest first.
    fn messages(journal: &Journal, filter: &Filter) -> Vec<String> {
        journal
            .read(filter)
            .unwrap()
            .into_iter()
            .map(|e| e.message)
            .collect()
    }

    #[test]
    fn torn_last_line_is_skipped_and_the_next_append_survives() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::new(dir.path(), Arc::default());
        journal.append(&entry("a", "one")).unwrap();
        let mut file = OpenOptions::new()
            .append(true)
            .open(journal.path())
            .unwrap();
        file.write_all(br#"{"time":"2026-01-01T00:00"#).unwrap();
        let read = journal.read(&Filter::default()).unwrap();
        assert_eq!(read.len(), 1);
        journal.append(&entry("b", "two")).unwrap();
        let messages = messages(&journal, &Filter::default());
        assert_eq!(messages, ["one", "two"]);
    }

    #[test]
    fn filter_by_kind_and_last() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::new(dir.path(), Arc::default());
        for (kind, message) in [("a", "1"), ("b", "2"), ("a", "3"), ("a", "4")] {
            journal.append(&entry(kind, message)).unwrap();
        }
        let filter = Filter {
            kind: Some("a".into()),
            last: Some(2),
        };
        let messages = messages(&journal, &filter);
        assert_eq!(messages, ["3", "4"]);
    }

    #[test]
    fn filter_by_kind_reads_lines_written_by_hand_and_warns_of_broken_ones() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::new(dir.path(), Arc::default());
        journal.append(&entry("a", "1")).unwrap();
        let mut file = OpenOptions::new()
            .append(true)
            .open(journal.path())
            .unwrap();
        // Spaces and an escaped kind ("a"), as a hand or another tool may write them; a line
        // of kind "a" whose event is not one; a line that is no JSON.
        file.write_all(
            br#"{ "time": "2026-01-01T00:00:00.000Z", "user": "u", "host": "h", "pid": 2, "runbook": "r", "args": [], "kind": "a", "event": "record", "message": "2" }
{"time":"2026-01-01T00:00:00.000Z","user":"u","host":"h","pid":2,"runbook":"r","args":[],"kind":"a","event":"no such event","message":"x"}
not json
"#,
        )
        .unwrap();
        journal.append(&entry("b", "3")).unwrap();
        journal.append(&entry("a", "4")).unwrap();
        let filter = Filter {
            kind: Some("a".into()),
            last: None,
        };
        let messages = messages(&journal, &filter);
        assert_eq!(messages, ["1", "2", "4"]);
    }

    #[test]
    fn secrets_are_masked_everywhere_in_an_entry() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = Arc::new(Redactor::default());
        secrets.add("hunter22");
        let journal = Journal::new(dir.path(), Arc::clone(&secrets));
        let mut e = entry("k", "pw hunter22");
        e.actor.args = vec!["hunter22".into()];
        e.fields
            .insert("hunter22".into(), Value::from(vec!["x hunter22"]));
        journal.append(&e).unwrap();
        let text = std::fs::read_to_string(journal.path()).unwrap();
        assert!(!text.contains("hunter22"), "{text}");
    }
}
