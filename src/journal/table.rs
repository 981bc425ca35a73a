//! `cutover history`: the journal as a table an operator reads in an incident (what ran, who ran
//! it, what it changed, how it ended), or as JSON lines for tools. It replaces `tail
//! promotion.log`: `cutover history --kind promotion`.

use std::fmt::Write as _;

use crate::journal::Entry;

/// The entries as aligned columns under a header, times in the local time zone.
pub fn table(entries: &[Entry]) -> String {
    let header = [
        "TIME", "WHO", "RUNBOOK", "KIND", "EVENT", "OUTCOME", "TOOK", "MESSAGE",
    ]
    .map(String::from);
    let rows: Vec<[String; 8]> = entries.iter().map(row).collect();
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:width$}  ", width = widths[i]);
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

fn row(entry: &Entry) -> [String; 8] {
    let dash = || "-".to_string();
    let mut message = entry.message.clone();
    if let Some(error) = &entry.error {
        let _ = write!(message, ": {error}");
    }
    if !entry.fields.is_empty() {
        let _ = write!(
            message,
            " {}",
            serde_json::Value::Object(entry.fields.clone())
        );
    }
    [
        local_time(&entry.time),
        format!("{}@{}", entry.actor.user, entry.actor.host),
        entry.actor.runbook.clone(),
        entry.kind.clone(),
        entry.event.as_str().to_string(),
        entry.outcome.clone().unwrap_or_else(dash),
        entry.duration_ms.map(took).unwrap_or_else(dash),
        message,
    ]
}

/// `2026-11-26 05:31:02` in the local time zone, or the stored text if it does not parse.
fn local_time(time: &str) -> String {
    time.parse::<jiff::Timestamp>()
        .map(|t| {
            t.to_zoned_datetime(crate::local_time::zone())
                .strftime("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|_| time.to_string())
}

/// `850ms`, `12.3s`, `4m05s`.
fn took(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        _ => format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_like_a_human_wrote_them() {
        assert_eq!(super::took(850), "850ms");
        assert_eq!(super::took(12_345), "12.3s");
        assert_eq!(super::took(245_000), "4m05s");
    }
}
