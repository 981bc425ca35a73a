//! Per-upstream figures from Caddy's JSON access log: requests, 5xx answers, failed connections
//! and latency percentiles, computed from the raw records of a window of the file.
//!
//! A window is a byte range: a reader remembers where it stopped ([`Window::next`]) and starts
//! there the next time, so each judgement reads only the requests since the last one, however
//! large the file grows. Only whole lines are read (Caddy may be writing the last one); a file
//! shorter than the offset was rotated, and is read from its start. A line that is not an access
//! record of the asked route is skipped (and counted, when it is not JSON at all).
//!
//! Upstream addresses can be grouped (`blue` = its replicas' addresses): a group's percentiles
//! are those of all its requests together, which the figures of its members cannot give.

use std::{
    collections::BTreeMap,
    fs::File,
    io::{BufRead, BufReader, Seek, SeekFrom},
    path::Path,
};

use serde::{Deserialize, Serialize};

use super::MetricsError;

/// What to read.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Byte offset to start at (a previous window's `next`; 0 for the whole file).
    pub from: u64,
    /// Only requests of this route (the `route` field the config appends), if given.
    pub route: Option<String>,
    /// Names for sets of upstream addresses; requests of an address in no group are figured
    /// under the address itself.
    pub groups: BTreeMap<String, Vec<String>>,
}

/// The figures of one upstream (or group) over a window.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    pub requests: u64,
    /// Answered 5xx to the client (by the upstream, or by the proxy when the upstream failed).
    pub errors: u64,
    /// Of those, the requests the upstream never answered (connection refused, reset, timeout).
    pub failed: u64,
    /// `errors / requests`, 0 when there were none.
    pub error_rate: f64,
    /// Latency percentiles as the client saw it through the proxy, in milliseconds.
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// One window of the log.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Window {
    /// Where the next window starts.
    pub next: u64,
    /// Figures by group name, or by upstream address for addresses in no group.
    pub upstreams: BTreeMap<String, Figures>,
    /// Lines that were not JSON.
    pub skipped: u64,
}

/// The fields of a Caddy access record that are read here.
#[derive(Deserialize)]
struct Record {
    #[serde(default)]
    logger: String,
    #[serde(default)]
    route: Option<String>,
    #[serde(default)]
    upstream: Option<String>,
    /// `null` when the upstream never answered.
    #[serde(default)]
    upstream_status: Option<u16>,
    status: u16,
    /// Seconds.
    duration: f64,
}

/// Reads the window of `path` that `query` describes. A missing file is an empty window (the
/// proxy writes it on its first request).
pub fn read(path: &Path, query: &Query) -> Result<Window, MetricsError> {
    let error = |source| MetricsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Window::default()),
        Err(e) => return Err(error(e)),
    };
    let length = file.metadata().map_err(error)?.len();
    let from = if query.from > length { 0 } else { query.from };
    file.seek(SeekFrom::Start(from)).map_err(error)?;
    let group_of: BTreeMap<&str, &str> = query
        .groups
        .iter()
        .flat_map(|(group, addrs)| addrs.iter().map(move |a| (a.as_str(), group.as_str())))
        .collect();

    let mut window = Window {
        next: from,
        ..Window::default()
    };
    let mut latencies: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line).map_err(error)?;
        if read == 0 || line.last() != Some(&b'\n') {
            break; // the end, or a line still being written: the next window reads it
        }
        window.next += read as u64;
        let Ok(record) = serde_json::from_slice::<Record>(&line) else {
            window.skipped += 1;
            continue;
        };
        if !record.logger.starts_with("http.log.access")
            || query
                .route
                .as_deref()
                .is_some_and(|route| record.route.as_deref() != Some(route))
        {
            continue;
        }
        let Some(upstream) = record.upstream.filter(|u| !u.is_empty()) else {
            continue; // answered before any upstream was chosen
        };
        let key = group_of
            .get(upstream.as_str())
            .map_or(upstream.clone(), |group| group.to_string());
        let figures = window.upstreams.entry(key.clone()).or_default();
        figures.requests += 1;
        if record.status >= 500 {
            figures.errors += 1;
            if record.upstream_status.is_none() {
                figures.failed += 1;
            }
        }
        latencies
            .entry(key)
            .or_default()
            .push(record.duration * 1000.0);
    }
    for (key, mut ms) in latencies {
        ms.sort_by(f64::total_cmp);
        let figures = window.upstreams.get_mut(&key).expect("counted above");
        figures.error_rate = figures.errors as f64 / figures.requests as f64;
        figures.p50_ms = percentile(&ms, 50.0);
        figures.p99_ms = percentile(&ms, 99.0);
    }
    Ok(window)
}

/// Where a window that starts now begins: the end of the last whole line of `path` (0 when the
/// file does not exist yet).
pub fn end(path: &Path) -> Result<u64, MetricsError> {
    let error = |source| MetricsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(error(e)),
    };
    let length = file.metadata().map_err(error)?.len();
    // Back from the end to the last newline: a line being written belongs to the next window.
    let mut at = length;
    let mut byte = [0u8];
    while at > 0 {
        file.seek(SeekFrom::Start(at - 1)).map_err(error)?;
        std::io::Read::read_exact(&mut file, &mut byte).map_err(error)?;
        if byte[0] == b'\n' {
            break;
        }
        at -= 1;
    }
    Ok(at)
}

/// The nearest-rank percentile `p` of `sorted` (ascending, not empty).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn record(route: &str, upstream: &str, status: u16, upstream_status: &str, ms: f64) -> String {
        format!(
            r#"{{"level":"info","ts":1.0,"logger":"http.log.access.requests","msg":"handled request","status":{status},"duration":{},"route":"{route}","upstream":"{upstream}","upstream_status":{upstream_status}}}"#,
            ms / 1000.0
        ) + "\n"
    }

    fn log(lines: &[String]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        for line in lines {
            file.write_all(line.as_bytes()).unwrap();
        }
        file
    }

    #[test]
    fn figures_by_upstream_and_by_group() {
        let mut lines = Vec::new();
        for i in 0..100 {
            lines.push(record(
                "production",
                "127.0.0.1:4100",
                200,
                "200",
                i as f64 + 1.0,
            ));
        }
        lines.push(record("production", "127.0.0.1:4200", 500, "500", 5.0));
        lines.push(record("production", "127.0.0.1:4200", 502, "null", 1.0));
        lines.push(record("production", "127.0.0.1:4201", 200, "200", 9.0));
        lines.push(record("production", "127.0.0.1:4201", 200, "200", 3.0));
        lines.push(record("blue", "127.0.0.1:4100", 500, "500", 1.0));
        let file = log(&lines);
        let query = Query {
            route: Some("production".into()),
            groups: BTreeMap::from([(
                "green".to_string(),
                vec!["127.0.0.1:4200".to_string(), "127.0.0.1:4201".to_string()],
            )]),
            ..Query::default()
        };
        let window = read(file.path(), &query).unwrap();
        let blue = &window.upstreams["127.0.0.1:4100"];
        assert_eq!((blue.requests, blue.errors, blue.failed), (100, 0, 0));
        assert_eq!((blue.p50_ms, blue.p99_ms), (50.0, 99.0));
        let green = &window.upstreams["green"];
        assert_eq!((green.requests, green.errors, green.failed), (4, 2, 1));
        assert_eq!(green.error_rate, 0.5);
        assert_eq!((green.p50_ms, green.p99_ms), (3.0, 9.0));
        assert_eq!(
            window.upstreams.len(),
            2,
            "the blue route's request is not production's"
        );
        assert_eq!(window.next, std::fs::metadata(file.path()).unwrap().len());
    }

    #[test]
    fn windows_follow_on_and_a_line_being_written_waits_for_the_next() {
        let mut file = log(&[record("production", "a:1", 200, "200", 1.0)]);
        let first = read(file.path(), &Query::default()).unwrap();
        assert_eq!(first.upstreams["a:1"].requests, 1);
        let whole = record("production", "a:1", 503, "503", 2.0);
        let (done, rest) = whole.split_at(40);
        write!(
            file,
            "{}{done}",
            record("production", "a:1", 200, "200", 1.0)
        )
        .unwrap();
        let from = Query {
            from: first.next,
            ..Query::default()
        };
        let second = read(file.path(), &from).unwrap();
        assert_eq!(second.upstreams["a:1"].requests, 1, "only the whole line");
        writeln!(file, "{rest}not json").unwrap();
        let third = read(
            file.path(),
            &Query {
                from: second.next,
                ..Query::default()
            },
        )
        .unwrap();
        assert_eq!(third.upstreams["a:1"].errors, 1);
        assert_eq!(third.skipped, 1);
    }

    #[test]
    fn the_end_is_after_the_last_whole_line() {
        let mut file = log(&[record("production", "a:1", 200, "200", 1.0)]);
        let whole = std::fs::metadata(file.path()).unwrap().len();
        assert_eq!(end(file.path()).unwrap(), whole);
        write!(file, "{{\"half").unwrap();
        assert_eq!(end(file.path()).unwrap(), whole);
        assert_eq!(end(Path::new("/nonexistent/access.log")).unwrap(), 0);
    }

    #[test]
    fn a_rotated_or_missing_log_reads_from_the_start_or_as_empty() {
        let file = log(&[record("production", "a:1", 200, "200", 1.0)]);
        let rotated = Query {
            from: 1 << 40,
            ..Query::default()
        };
        assert_eq!(
            read(file.path(), &rotated).unwrap().upstreams["a:1"].requests,
            1
        );
        let missing = read(Path::new("/nonexistent/access.log"), &Query::default()).unwrap();
        assert!(missing.upstreams.is_empty());
    }
}
