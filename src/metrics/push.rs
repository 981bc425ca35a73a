//! cutover's own runs, for Prometheus: a run is a batch job that ends, so at its end it pushes
//! what it was to a Pushgateway (Prometheus's way for jobs that do not live to be scraped), which
//! keeps the last push of each group for every scrape. Two groups:
//!
//! * `job="cutover", kind=KIND`, replaced by each run of that kind: `cutover_last_run_success`
//!   (1 or 0), `cutover_last_run_duration_seconds`, `cutover_last_run_timestamp_seconds` and
//!   `cutover_last_run_outcome{outcome}` (1 for the outcome it had: ok, failed, interrupted,
//!   timed out). A deployment that failed is `cutover_last_run_success{kind="deployment"} == 0`;
//!   deploys over time are `changes(cutover_last_run_timestamp_seconds[…])`.
//! * `job="cutover_stack"`, replaced by every run: `cutover_active_environment{environment}` (1
//!   for the one `.current-environment` records), `cutover_last_promotion_timestamp_seconds`
//!   (when it was recorded) and `cutover_canary_percent` (the share of production a canary in
//!   progress has, 0 when none) with `cutover_canary_in_progress`.
//!
//! Plain values in, text and one HTTP request out; when to push is the Context's business.

use std::{
    fmt::Write,
    time::{Duration, SystemTime},
};

/// What one run was, and where the stack stood when it ended.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub outcome: String,
    pub success: bool,
    pub duration: Duration,
    pub finished: SystemTime,
    /// The recorded active environment and since when.
    pub active: Option<(String, SystemTime)>,
    /// A canary in progress: its environment and share of production (%).
    pub canary: Option<(String, f64)>,
}

fn seconds(time: SystemTime) -> f64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A label value as the text exposition format writes it.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn gauge(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
}

/// The run's own group: its kind's last outcome, duration and time.
pub fn run_exposition(report: &RunReport) -> String {
    let mut out = String::new();
    gauge(
        &mut out,
        "cutover_last_run_success",
        "1 when the last run of this kind succeeded, 0 when it failed or was stopped.",
    );
    let _ = writeln!(out, "cutover_last_run_success {}", u8::from(report.success));
    gauge(
        &mut out,
        "cutover_last_run_duration_seconds",
        "How long the last run of this kind took.",
    );
    let _ = writeln!(
        out,
        "cutover_last_run_duration_seconds {}",
        report.duration.as_secs_f64()
    );
    gauge(
        &mut out,
        "cutover_last_run_timestamp_seconds",
        "When the last run of this kind ended (Unix time).",
    );
    let _ = writeln!(
        out,
        "cutover_last_run_timestamp_seconds {}",
        seconds(report.finished)
    );
    gauge(
        &mut out,
        "cutover_last_run_outcome",
        "1 for the outcome the last run of this kind had.",
    );
    let _ = writeln!(
        out,
        "cutover_last_run_outcome{{outcome=\"{}\"}} 1",
        label(&report.outcome)
    );
    out
}

/// The stack's group: the recorded active environment, the last promotion, the canary.
pub fn stack_exposition(report: &RunReport) -> String {
    let mut out = String::new();
    if let Some((env, since)) = &report.active {
        gauge(
            &mut out,
            "cutover_active_environment",
            "1 for the environment cutover recorded as serving production.",
        );
        let _ = writeln!(
            out,
            "cutover_active_environment{{environment=\"{}\"}} 1",
            label(env)
        );
        gauge(
            &mut out,
            "cutover_last_promotion_timestamp_seconds",
            "When cutover last recorded the environment serving production (Unix time).",
        );
        let _ = writeln!(
            out,
            "cutover_last_promotion_timestamp_seconds {}",
            seconds(*since)
        );
    }
    gauge(
        &mut out,
        "cutover_canary_in_progress",
        "1 while a canary holds part of production.",
    );
    let _ = writeln!(
        out,
        "cutover_canary_in_progress {}",
        u8::from(report.canary.is_some())
    );
    gauge(
        &mut out,
        "cutover_canary_percent",
        "The share of production a canary in progress has (0 when none).",
    );
    match &report.canary {
        Some((env, percent)) => {
            let _ = writeln!(
                out,
                "cutover_canary_percent{{environment=\"{}\"}} {percent}",
                label(env)
            );
        }
        None => {
            let _ = writeln!(out, "cutover_canary_percent 0");
        }
    }
    out
}

/// The Pushgateway paths of the two groups for `kind`: `(run group, stack group)`.
pub fn group_paths(kind: &str) -> (String, String) {
    let kind = percent_encoding::utf8_percent_encode(kind, percent_encoding::NON_ALPHANUMERIC);
    (
        format!("/metrics/job/cutover/kind/{kind}"),
        "/metrics/job/cutover_stack".to_string(),
    )
}

/// Replaces group `path` on the Pushgateway at `base` with `text` (one PUT), waiting at most
/// `timeout`.
pub async fn push(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    text: String,
    timeout: Duration,
) -> Result<(), String> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let request = http
        .put(url)
        .header("content-type", "text/plain; version=0.0.4")
        .body(text);
    crate::notify::send(request, timeout, "PUSHGATEWAY_TIMEOUT").await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(success: bool) -> RunReport {
        RunReport {
            outcome: if success { "ok" } else { "failed" }.into(),
            success,
            duration: Duration::from_millis(1500),
            finished: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            active: Some((
                "green".into(),
                SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            )),
            canary: None,
        }
    }

    #[test]
    fn a_failed_run_reads_as_zero_success_with_its_outcome() {
        let text = run_exposition(&report(false));
        assert!(text.contains("\ncutover_last_run_success 0\n"), "{text}");
        assert!(text.contains("\ncutover_last_run_duration_seconds 1.5\n"));
        assert!(text.contains("\ncutover_last_run_timestamp_seconds 1800000000\n"));
        assert!(text.contains("\ncutover_last_run_outcome{outcome=\"failed\"} 1\n"));
    }

    #[test]
    fn the_stack_group_names_the_recorded_environment_and_the_canary() {
        let mut r = report(true);
        let text = stack_exposition(&r);
        assert!(text.contains("cutover_active_environment{environment=\"green\"} 1\n"));
        assert!(text.contains("cutover_last_promotion_timestamp_seconds 1700000000\n"));
        assert!(text.contains("cutover_canary_in_progress 0\n"));
        r.canary = Some(("blue".into(), 20.0));
        let text = stack_exposition(&r);
        assert!(text.contains("cutover_canary_percent{environment=\"blue\"} 20\n"));
        assert!(text.contains("cutover_canary_in_progress 1\n"));
    }

    #[test]
    fn kinds_are_escaped_in_the_group_path_and_labels() {
        assert_eq!(
            group_paths("a b/c").0,
            "/metrics/job/cutover/kind/a%20b%2Fc"
        );
        assert_eq!(label("x\"y\\z\n"), "x\\\"y\\\\z\\n");
    }
}
