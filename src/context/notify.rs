//! Telling people when a release-changing run ends: with `NOTIFY_URL` set (one or more webhook
//! URLs, separated by commas or spaces), a run of kind deployment, promotion, rollback, canary,
//! maintenance or failover (`NOTIFY_KINDS` to choose others) posts who ran what, how it ended and
//! the changes it made, failed and stopped runs included. Dry and readonly runs change nothing
//! and notify nobody.
//!
//! A notification never changes a run: each webhook gets at most two tries of `NOTIFY_TIMEOUT`
//! seconds (default 5), a failure is a warning and a journal entry, and the exit code stays the
//! run's. Webhook URLs carry their own credentials (Slack's do), so each is registered as a
//! secret before anything is logged; the text sent is masked like every other output.

use std::time::Duration;

use serde_json::json;

use super::Context;
use crate::journal::{Event, Outcome};

/// The kinds of run that notify when `NOTIFY_KINDS` names none.
const DEFAULT_KINDS: &str = "deployment,promotion,rollback,canary,maintenance,failover";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

impl Context {
    /// Posts the end of this run to every `NOTIFY_URL`, when its kind is one that notifies.
    pub(crate) fn notify_finish(&self, outcome: Outcome, error: Option<&str>, took: Duration) {
        let urls: Vec<String> = self
            .env_var("NOTIFY_URL")
            .unwrap_or_default()
            .split([',', ' ', '\n'])
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .collect();
        if urls.is_empty() {
            return;
        }
        let run = self.run_info();
        let kind = if run.kind.is_empty() {
            run.runbook.clone()
        } else {
            run.kind.clone()
        };
        let kinds = self
            .env_var("NOTIFY_KINDS")
            .unwrap_or_else(|| DEFAULT_KINDS.to_string());
        if !kinds.split([',', ' ']).any(|k| k.trim() == kind) {
            return;
        }
        for url in &urls {
            self.secrets.add(url);
        }
        let timeout = self.seconds_setting("NOTIFY_TIMEOUT", DEFAULT_TIMEOUT);
        let actor = crate::journal::identity::Actor::me(run.runbook.clone(), run.args.clone());
        let changes = self.changes_made.lock().unwrap().clone();
        let mut text = format!(
            "cutover {kind}: `cutover {}` by {}@{} {} in {:.1} s",
            actor.command(),
            actor.user,
            actor.host,
            outcome.as_str(),
            took.as_secs_f64()
        );
        if let Some(error) = error.and_then(|e| e.lines().next()) {
            text.push_str(&format!(": {error}"));
        }
        match changes.len() {
            0 => text.push_str("; it changed nothing"),
            n => {
                text.push_str(&format!("; {n} change(s):"));
                for change in &changes {
                    text.push_str(&format!("\n• {change}"));
                }
            }
        }
        let mask = |s: &str| self.secrets.redact(s).into_owned();
        let body = json!({
            "text": mask(&text),
            "cutover": {
                "kind": kind,
                "runbook": run.runbook,
                "args": run.args.iter().map(|a| mask(a)).collect::<Vec<_>>(),
                "outcome": outcome.as_str(),
                "user": actor.user,
                "host": actor.host,
                "duration_ms": took.as_millis() as u64,
                "changes": changes.iter().map(|c| mask(c)).collect::<Vec<_>>(),
            },
        });
        let http = self.http();
        let mut sent = 0;
        for url in &urls {
            let mut result = Err(String::new());
            for _ in 0..2 {
                // Not `block_on`: a stopped run still says how it ended.
                result = self
                    .runtime()
                    .block_on(crate::notify::post(&http, url, &body, timeout));
                if result.is_ok() {
                    break;
                }
            }
            match result {
                Ok(()) => sent += 1,
                Err(why) => {
                    let message = mask(&format!("the notification to {url} was not sent: {why}"));
                    tracing::warn!("{message}");
                    let _ = self.journal_append(&self.journal_entry(Event::Record, message));
                }
            }
        }
        if sent > 0 {
            let entry = self.journal_entry(
                Event::Record,
                format!(
                    "notified {sent} webhook(s) that the run {}",
                    outcome.as_str()
                ),
            );
            let _ = self.journal_append(&entry);
        }
    }
}
