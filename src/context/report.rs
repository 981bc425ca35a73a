//! Reporting a run to Prometheus: with `PUSHGATEWAY_URL` set (settings file or environment), the
//! end of every journaled run (neither dry nor readonly) is pushed to that Pushgateway as
//! [`crate::metrics::push`] describes: the run's kind, outcome and duration, and where the stack
//! stands (active environment, last promotion, canary). Like a notification, a push never
//! changes a run: it is bounded by `PUSHGATEWAY_TIMEOUT` seconds (default 5), a failure is a
//! warning and a journal entry, and the exit code stays the run's. The URL is masked like a
//! secret (it may carry credentials).

use std::time::{Duration, SystemTime};

use super::Context;
use crate::{
    journal::{Event, Outcome},
    metrics::push::{self, RunReport},
};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

impl Context {
    /// Pushes the end of this run to `PUSHGATEWAY_URL`, when set.
    pub(crate) fn report_finish(&self, outcome: Outcome, took: Duration) {
        let Some(base) = self
            .env_var("PUSHGATEWAY_URL")
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty())
        else {
            return;
        };
        self.secrets.add(&base);
        let run = self.run_info();
        let kind = if run.kind.is_empty() {
            run.runbook.clone()
        } else {
            run.kind.clone()
        };
        let state = self.state();
        let canary = state.get("canary").ok().flatten().and_then(|c| {
            Some((
                c.get("env")?.as_str()?.to_string(),
                c.get("percent")?.as_f64()?,
            ))
        });
        let report = RunReport {
            outcome: outcome.as_str().to_string(),
            success: matches!(outcome, Outcome::Ok),
            duration: took,
            finished: SystemTime::now(),
            active: state
                .active_record()
                .ok()
                .flatten()
                .map(|a| (a.env, a.since)),
            canary,
        };
        let timeout = self.seconds_setting("PUSHGATEWAY_TIMEOUT", DEFAULT_TIMEOUT);
        let (run_group, stack_group) = push::group_paths(&kind);
        let http = self.http();
        for (group, text) in [
            (run_group, push::run_exposition(&report)),
            (stack_group, push::stack_exposition(&report)),
        ] {
            // Not `block_on`: a stopped run still reports how it ended.
            let result = self
                .runtime()
                .block_on(push::push(&http, &base, &group, text, timeout));
            if let Err(why) = result {
                let message = self
                    .secrets
                    .redact(&format!(
                        "the run's metrics were not pushed to {base}{group}: {why}"
                    ))
                    .into_owned();
                tracing::warn!("{message}");
                let _ = self.journal_append(&self.journal_entry(Event::Record, message));
            }
        }
    }
}
