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

    /// The entries matching `filter`, oldest first. Lines that do not parse are skipped with a
    /// warning naming them. With `filter.last`, the file is read from its end, newest line
    /// first, and only until that many entries matched: a rollback's look at the last releases
    /// costs the same on a journal of a year's runs as on a new one. Without it, the file is
    /// read as a stream from its start, keeping only what will be returned.
    pub fn read(&self, filter: &Filter) -> Result<Vec<Entry>, JournalError> {
        let read_error = |source| JournalError::Read {
            path: self.path.clone(),
            source,
        };
        let file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(read_error(source)),
        };
        match filter.last {
            Some(last) => self.read_newest(file, filter, last).map_err(read_error),
            None => self.read_all(file, filter).map_err(read_error),
        }
    }

    fn read_all(&self, file: File, filter: &Filter) -> io::Result<Vec<Entry>> {
        let mut reader = BufReader::new(file);
        let mut kept = Vec::new();
        let mut raw = Vec::new();
        let mut number = 0;
        loop {
            raw.clear();
            if reader.read_until(b'\n', &mut raw)? == 0 {
                break;
            }
            number += 1;
            let complete = raw.last() == Some(&b'\n');
            if let Some(entry) = self.parse_line(&raw, filter, complete, || number) {
                kept.push(entry);
            }
        }
        Ok(kept)
    }

    /// The last `last` entries matching `filter`, read backwards a block at a time.
    fn read_newest(&self, mut file: File, filter: &Filter, last: usize) -> io::Result<Vec<Entry>> {
        const BLOCK: u64 = 64 * 1024;
        let length = file.metadata()?.len();
        let mut newest = Vec::new();
        // The file from byte `start` up to the start of the oldest line read so far.
        let mut block = Vec::new();
        let mut start = length;
        while newest.len() < last && start > 0 {
            let before = start.saturating_sub(BLOCK);
            let mut read = vec![0; (start - before) as usize];
            file.seek(SeekFrom::Start(before))?;
            file.read_exact(&mut read)?;
            read.extend_from_slice(&block);
            (block, start) = (read, before);
            // Every line that starts in the block, newest first; the first may start in the
            // block before it, unless the file starts here.
            let mut end = block.len();
            while newest.len() < last && end > 0 {
                let from = match block[..end - 1].iter().rposition(|&b| b == b'\n') {
                    Some(newline) => newline + 1,
                    None if start == 0 => 0,
                    None => break,
                };
                let raw = &block[from..end];
                let at = start + from as u64;
                // Only the file's last line can be torn (a crash mid-append).
                let complete = raw.last() == Some(&b'\n') || at + raw.len() as u64 != length;
                if let Some(entry) =
                    self.parse_line(raw, filter, complete, || line_number(&self.path, at))
                {
                    newest.push(entry);
                }
                end = from;
            }
            block.truncate(end);
        }
        newest.reverse();
        Ok(newest)
    }

    /// The entry of one line (`raw`, with its newline if it has one) when it matches `filter`;
    /// a line that does not parse is warned of, at line `number()`.
    fn parse_line(
        &self,
        raw: &[u8],
        filter: &Filter,
        complete: bool,
        number: impl FnOnce() -> usize,
    ) -> Option<Entry> {
        let text = String::from_utf8_lossy(raw);
        let text = text.trim_end();
        if text.trim().is_empty() {
            return None;
        }
        // The kind first, cheaply: an entry of another kind is not built at all.
        if let Some(kind) = &filter.kind
            && serde_json::from_str::<KindOf>(text).is_ok_and(|k| k.kind != *kind)
        {
            return None;
        }
        let entry = match serde_json::from_str::<Entry>(text) {
            Ok(entry) => entry,
            Err(error) => {
                let what = if complete {
                    "a malformed line"
                } else {
                    "a torn last line (a crash while it was written?)"
                };
                tracing::warn!(
                    "{}:{}: skipping {what}: {error}",
                    self.path.display(),
                    number()
                );
                return None;
            }
        };
        filter
            .kind
            .as_ref()
            .is_none_or(|kind| *kind == entry.kind)
            .then_some(entry)
    }
}

/// The 1-based number of the line starting at byte `at` of `path`, for a warning (0 when the
/// file cannot be read again).
fn line_number(path: &Path, at: u64) -> usize {
    let Ok(file) = File::open(path) else {
        return 0;
    };
    let mut prefix = Vec::new();
    if file.take(at).read_to_end(&mut prefix).is_err() {
        return 0;
    }
    prefix.iter().filter(|&&b| b == b'\n').count() + 1
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
    fn the_last_entries_are_read_from_the_end_across_blocks_as_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::new(dir.path(), Arc::default());
        // ~300 KB: several of the backward reader's 64 KiB blocks, lines cut at their edges.
        let padding = "x".repeat(700);
        for i in 0..400 {
            let kind = if i % 3 == 0 { "a" } else { "b" };
            journal
                .append_unsynced(&entry(kind, &format!("{i} {}", &padding[..i % 700])))
                .unwrap();
        }
        // A hand-written blank line and a broken one in the middle, and a torn last line.
        let mut file = OpenOptions::new()
            .append(true)
            .open(journal.path())
            .unwrap();
        file.write_all(b"\nnot json\n").unwrap();
        journal.append(&entry("a", "after")).unwrap();
        file.write_all(br#"{"time":"2026-01-01T00:00"#).unwrap();
        for kind in [None, Some("a"), Some("b")] {
            let all = messages(
                &journal,
                &Filter {
                    kind: kind.map(Into::into),
                    last: None,
                },
            );
            for last in [0, 1, 2, 7, 90, 133, 134, 135, 1000] {
                let newest = messages(
                    &journal,
                    &Filter {
                        kind: kind.map(Into::into),
                        last: Some(last),
                    },
                );
                assert_eq!(
                    newest,
                    all[all.len().saturating_sub(last)..],
                    "{kind:?} last {last}"
                );
            }
        }
        assert_eq!(journal.read(&Filter::default()).unwrap().len(), 401);
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
