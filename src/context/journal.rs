//! The Context's side of the audit journal: entries about the run in progress (who, which
//! runbook, which kind of operation), and the `start`/`finish` pair of each `cutover run`. The
//! journal itself ([`crate::journal`]) only knows files and entries.

use std::{sync::Arc, time::Instant};

use serde_json::Map;

use super::Context;
use crate::journal::{Entry, Event, Journal, JournalError, Outcome, identity::Actor, now};

impl Context {
    /// The journal of this process's state directory.
    pub fn journal(&self) -> Journal {
        Journal::new(&self.settings.state_dir, Arc::clone(&self.secrets))
    }

    /// An entry about the current run, stamped now.
    pub fn journal_entry(&self, event: Event, message: impl Into<String>) -> Entry {
        let run = self.run_info();
        Entry {
            time: now(),
            kind: if run.kind.is_empty() {
                run.runbook.clone()
            } else {
                run.kind
            },
            actor: Actor::me(run.runbook, run.args),
            event,
            message: message.into(),
            outcome: None,
            duration_ms: None,
            error: None,
            fields: Map::new(),
        }
    }

    /// Appends `entry` and fsyncs it; a journal that cannot be written is reported, never
    /// silently dropped.
    pub fn journal_append(&self, entry: &Entry) -> Result<(), JournalError> {
        self.journal().append(entry).inspect_err(|error| {
            tracing::error!("{error}: the audit trail misses: {}", entry.message);
        })
    }
}

/// The `start` and `finish` entries of one `cutover run`. Dry runs and readonly runs change
/// nothing and leave no trace in the journal.
pub struct RunRecord<'a> {
    context: &'a Context,
    started: Instant,
    journaled: bool,
}

impl<'a> RunRecord<'a> {
    /// Writes the `start` entry. A journal that cannot be written stops the run before it
    /// changes anything: a change nobody can audit is not made.
    pub fn start(context: &'a Context) -> Result<RunRecord<'a>, JournalError> {
        let journaled = !context.is_dry_run() && !context.run_info().readonly;
        if journaled {
            let mut entry = context.journal_entry(Event::Start, "");
            entry.message = format!("cutover run {}", entry.actor.command());
            context.journal().append_unsynced(&entry)?;
        }
        Ok(RunRecord {
            context,
            started: Instant::now(),
            journaled,
        })
    }

    /// Writes the `finish` entry; `error` is the first line of the failure, if any.
    pub fn finish(self, outcome: Outcome, error: Option<&str>) {
        if !self.journaled {
            return;
        }
        let mut entry = self.context.journal_entry(
            Event::Finish,
            format!("{} {}", self.context.run_info().runbook, outcome.as_str()),
        );
        entry.outcome = Some(outcome.as_str().to_string());
        entry.duration_ms = Some(self.started.elapsed().as_millis() as u64);
        entry.error = error.map(|e| e.lines().next().unwrap_or_default().to_string());
        let _ = self.context.journal_append(&entry);
        self.context
            .notify_finish(outcome, error, self.started.elapsed());
        self.context.report_finish(outcome, self.started.elapsed());
    }
}
