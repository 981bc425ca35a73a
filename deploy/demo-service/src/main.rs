//! The demo service: a tiny HTTP/1.1 server that stands in for each service of the stack
//! (api-gateway, auth-service, …) in the demo, the tests and the benchmarks. It is built as a
//! static binary and shipped in a `FROM scratch` image, because the machines cutover is tested
//! on have a Docker Engine but no registry to pull images from.
//!
//! Routes: `GET /api/health` (200 with a JSON body, 503 when unhealthy), `GET /version` (the
//! `VERSION` text), `GET /metrics` (Prometheus text: requests by status and version, and a
//! latency histogram); anything else answers 200 with the version, for load tests (GET or POST).
//! Connections are kept alive. On SIGTERM it stops accepting, lets in-flight requests finish
//! (at most `DRAIN_MS`, default 5000) and exits 0.
//!
//! Environment, for fault tests:
//! `PORT` (default 8080; a comma-separated list listens on each), `VERSION`, `SERVICE`,
//! `START_DELAY_MS` (listen only after this long), `UNHEALTHY=1` (health answers 503),
//! `CRASH_AFTER_MS` (exit 1 after this long), `LATENCY_MS` or `EXTRA_LATENCY_MS` (delay every
//! response), `FAIL_RATE` (the fraction, 0 to 1, of application requests answered 500: exactly
//! that share, spread evenly, never the health, version or metrics endpoints). A bad build is a
//! tag: the image bakes `UNHEALTHY`, `FAIL_RATE` and `EXTRA_LATENCY_MS` in from build arguments.
//!
//! `demo-service check URL` fetches URL and exits 0 on a 2xx: the container's healthcheck, since
//! a scratch image has no curl. `demo-service write BYTES [stderr]` writes BYTES bytes of text
//! lines and exits, so tests can stream large `docker::exec` output from an image with no shell;
//! `demo-service env` prints its environment, one `NAME=value` a line. `demo-service load URL
//! RATE SECONDS` sends GET URL about RATE times a second for SECONDS on kept-alive connections
//! and prints how many answers were 2xx: the demo's traffic while a canary judges a build.
//! `demo-service migrate` is the demo's migration tool (see `migrate.rs`).

mod migrate;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

struct Config {
    version: String,
    service: String,
    unhealthy: bool,
    latency: Duration,
    /// Application requests answered 500, as a fraction.
    fail_rate: f64,
    metrics: Metrics,
}

/// Upper bounds (seconds) of the latency histogram's buckets, as Prometheus clients use.
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// What `/metrics` reports: application requests by status code, and their latency.
#[derive(Default)]
struct Metrics {
    /// Application requests so far: the count that decides which ones fail.
    requests: AtomicUsize,
    by_status: std::sync::Mutex<std::collections::BTreeMap<u16, Histogram>>,
}

#[derive(Default, Clone)]
struct Histogram {
    count: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
}

impl Metrics {
    fn observe(&self, status: u16, took: Duration) {
        let seconds = took.as_secs_f64();
        let mut by_status = self.by_status.lock().unwrap();
        let histogram = by_status.entry(status).or_default();
        histogram.count += 1;
        histogram.sum += seconds;
        for (bucket, bound) in histogram.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
    }

    /// The Prometheus text exposition of everything observed.
    fn render(&self, config: &Config) -> String {
        let by_status = self.by_status.lock().unwrap().clone();
        let labels = |status: u16| {
            format!(
                r#"service="{}",version="{}",status="{status}""#,
                config.service, config.version
            )
        };
        let mut out = String::from(
            "# HELP demo_requests_total Application requests answered, by status code.\n\
             # TYPE demo_requests_total counter\n",
        );
        for (status, h) in &by_status {
            out.push_str(&format!(
                "demo_requests_total{{{}}} {}\n",
                labels(*status),
                h.count
            ));
        }
        out.push_str(
            "# HELP demo_request_duration_seconds Time to answer an application request.\n\
             # TYPE demo_request_duration_seconds histogram\n",
        );
        for (status, h) in &by_status {
            let labels = labels(*status);
            for (count, bound) in h.buckets.iter().zip(BUCKETS) {
                out.push_str(&format!(
                    "demo_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {count}\n"
                ));
            }
            out.push_str(&format!(
                "demo_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}\n\
                 demo_request_duration_seconds_sum{{{labels}}} {}\n\
                 demo_request_duration_seconds_count{{{labels}}} {}\n",
                h.count, h.sum, h.count
            ));
        }
        out
    }

    /// Counts one application request; true when it is one of the `rate` share that fails.
    /// Request n fails when ⌊n·rate⌋ grows, so any window of requests fails that share exactly.
    fn next_fails(&self, rate: f64) -> bool {
        let n = self.requests.fetch_add(1, Ordering::SeqCst) as f64 + 1.0;
        rate > 0.0 && (n * rate).floor() > ((n - 1.0) * rate).floor()
    }
}

fn env_ms(name: &str) -> Option<Duration> {
    std::env::var(name)
        .ok()?
        .trim()
        .parse()
        .ok()
        .map(Duration::from_millis)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("check") {
        std::process::exit(check(
            args.get(2)
                .map_or("http://127.0.0.1:8080/api/health", |s| s),
        ));
    }
    match args.get(1).map(String::as_str) {
        Some("write") => std::process::exit(write(&args[2..])),
        Some("migrate") => std::process::exit(migrate::run(&args[2..])),
        Some("load") => std::process::exit(load(&args[2..])),
        Some("env") => {
            for (name, value) in std::env::vars() {
                println!("{name}={value}");
            }
            return;
        }
        _ => {}
    }
    let started = Instant::now();
    let config = Arc::new(Config {
        version: std::env::var("VERSION").unwrap_or_else(|_| "dev".into()),
        service: std::env::var("SERVICE").unwrap_or_else(|_| "demo".into()),
        unhealthy: std::env::var("UNHEALTHY").is_ok_and(|v| v == "1" || v == "true"),
        latency: env_ms("LATENCY_MS")
            .or_else(|| env_ms("EXTRA_LATENCY_MS"))
            .unwrap_or_default(),
        fail_rate: std::env::var("FAIL_RATE")
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|r| (0.0..=1.0).contains(r))
            .unwrap_or(0.0),
        metrics: Metrics::default(),
    });
    let stopping = Arc::new(AtomicBool::new(false));
    let active = Arc::new(AtomicUsize::new(0));
    handle_sigterm(Arc::clone(&stopping), Arc::clone(&active));

    if let Some(after) = env_ms("CRASH_AFTER_MS") {
        thread::spawn(move || {
            thread::sleep(after);
            eprintln!("crashing as asked (CRASH_AFTER_MS)");
            std::process::exit(1);
        });
    }
    if let Some(delay) = env_ms("START_DELAY_MS") {
        thread::sleep(delay);
    }
    let ports = std::env::var("PORT").unwrap_or_else(|_| "8080".into());
    let mut listeners = Vec::new();
    for port in ports.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let listener = TcpListener::bind((
            "0.0.0.0",
            port.parse::<u16>().expect("PORT must be a port number"),
        ))
        .unwrap_or_else(|e| panic!("cannot listen on port {port}: {e}"));
        listeners.push(listener);
    }
    eprintln!(
        "{} {} listening on {ports} after {} ms",
        config.service,
        config.version,
        started.elapsed().as_millis()
    );
    let mut threads = Vec::new();
    for listener in listeners {
        let (config, stopping, active) = (
            Arc::clone(&config),
            Arc::clone(&stopping),
            Arc::clone(&active),
        );
        threads.push(thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let (config, stopping, active) = (
                    Arc::clone(&config),
                    Arc::clone(&stopping),
                    Arc::clone(&active),
                );
                thread::spawn(move || serve(stream, &config, &stopping, &active));
            }
        }));
    }
    for thread in threads {
        let _ = thread.join();
    }
}

/// Serves requests on one kept-alive connection until the client closes it or we stop.
fn serve(stream: TcpStream, config: &Config, stopping: &AtomicBool, active: &AtomicUsize) {
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        match reader.read_line(&mut request_line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        active.fetch_add(1, Ordering::SeqCst);
        let keep_going = answer(&request_line, &mut reader, &mut writer, config, stopping);
        active.fetch_sub(1, Ordering::SeqCst);
        if !keep_going {
            return;
        }
    }
}

/// Reads the rest of one request and writes the response; false when the connection must close.
fn answer(
    request_line: &str,
    reader: &mut BufReader<TcpStream>,
    writer: &mut TcpStream,
    config: &Config,
    stopping: &AtomicBool,
) -> bool {
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let mut content_length = 0usize;
    let mut close = false;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 {
            return false;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => content_length = value.parse().unwrap_or(0),
                "connection" => close = value.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
    }
    let mut body = vec![0u8; content_length];
    if reader.read_exact(&mut body).is_err() {
        return false;
    }
    let started = Instant::now();
    let application = !matches!(path, "/api/health" | "/version" | "/metrics");
    if !config.latency.is_zero() && path != "/metrics" {
        thread::sleep(config.latency);
    }
    let fails = application && config.metrics.next_fails(config.fail_rate);
    let (status, content_type, text) = match (method, path) {
        _ if fails => (
            "500 Internal Server Error",
            "text/plain",
            format!("{} {} failed (FAIL_RATE)\n", config.service, config.version),
        ),
        (_, "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4",
            config.metrics.render(config),
        ),
        (_, "/api/health") if config.unhealthy => (
            "503 Service Unavailable",
            "application/json",
            format!(
                r#"{{"status":"unhealthy","service":"{}","version":"{}"}}"#,
                config.service, config.version
            ),
        ),
        (_, "/api/health") => (
            "200 OK",
            "application/json",
            format!(
                r#"{{"status":"ok","service":"{}","version":"{}"}}"#,
                config.service, config.version
            ),
        ),
        (_, "/version") => ("200 OK", "text/plain", config.version.clone()),
        _ => (
            "200 OK",
            "text/plain",
            format!("{} {}\n", config.service, config.version),
        ),
    };
    if application {
        let code = status
            .split(' ')
            .next()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        config.metrics.observe(code, started.elapsed());
    }
    // Once stopping, finish this request but ask the client to go elsewhere for the next one.
    let close = close || stopping.load(Ordering::SeqCst);
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nx-served-by: {}-{}\r\nconnection: {}\r\n\r\n{text}",
        text.len(),
        config.service,
        config.version,
        if close { "close" } else { "keep-alive" },
    );
    writer.write_all(response.as_bytes()).is_ok() && !close
}

/// Blocks SIGTERM/SIGINT in every thread and waits for them on one: then stops accepting, waits
/// for in-flight requests (at most `DRAIN_MS`) and exits 0. As PID 1 in a container, the default
/// action would be to ignore SIGTERM, making every `docker stop` wait for its timeout.
fn handle_sigterm(stopping: Arc<AtomicBool>, active: Arc<AtomicUsize>) {
    let drain = env_ms("DRAIN_MS").unwrap_or(Duration::from_secs(5));
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        thread::spawn(move || {
            let mut signal = 0;
            libc::sigwait(&set, &mut signal);
            stopping.store(true, Ordering::SeqCst);
            let deadline = Instant::now() + drain;
            while active.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(10));
            }
            std::process::exit(0);
        });
    }
}

/// `demo-service check URL`: a minimal HTTP GET for container healthchecks.
fn check(url: &str) -> i32 {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
    let Ok(mut stream) = TcpStream::connect(authority) else {
        return 1;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(3)));
    let request = format!("GET {path} HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return 1;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let healthy = response
        .split_whitespace()
        .nth(1)
        .is_some_and(|code| code.starts_with('2'));
    if healthy { 0 } else { 1 }
}

/// `demo-service load URL RATE SECONDS`: four kept-alive connections share RATE requests a
/// second to URL (`http://host:port/path`) for SECONDS, then the counts are printed.
fn load(args: &[String]) -> i32 {
    let (Some(url), Some(rate), Some(seconds)) = (
        args.first(),
        args.get(1).and_then(|r| r.parse::<f64>().ok()),
        args.get(2).and_then(|s| s.parse::<u64>().ok()),
    ) else {
        eprintln!("usage: demo-service load URL RATE SECONDS");
        return 2;
    };
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest.to_string(), "/".to_string()), |(a, p)| {
            (a.to_string(), format!("/{p}"))
        });
    let until = Instant::now() + Duration::from_secs(seconds);
    let every = Duration::from_secs_f64(4.0 / rate.max(0.1));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (authority, path) = (authority.clone(), path.clone());
            let (ok, failed) = (Arc::clone(&ok), Arc::clone(&failed));
            thread::spawn(move || {
                let mut connection: Option<BufReader<TcpStream>> = None;
                while Instant::now() < until {
                    let next = Instant::now() + every;
                    let answered = connection
                        .take()
                        .or_else(|| TcpStream::connect(&authority).ok().map(BufReader::new))
                        .and_then(|reader| get_on(reader, &authority, &path));
                    match answered {
                        Some((status, reader)) => {
                            if (200..300).contains(&status) {
                                ok.fetch_add(1, Ordering::SeqCst);
                            } else {
                                failed.fetch_add(1, Ordering::SeqCst);
                            }
                            connection = Some(reader);
                        }
                        None => {
                            failed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    thread::sleep(next.saturating_duration_since(Instant::now()));
                }
            })
        })
        .collect();
    for client in clients {
        let _ = client.join();
    }
    println!(
        "{} requests: {} ok, {} failed",
        ok.load(Ordering::SeqCst) + failed.load(Ordering::SeqCst),
        ok.load(Ordering::SeqCst),
        failed.load(Ordering::SeqCst)
    );
    0
}

/// One GET on a kept-alive connection: the status and the connection, ready for the next.
fn get_on(
    mut reader: BufReader<TcpStream>,
    authority: &str,
    path: &str,
) -> Option<(u16, BufReader<TcpStream>)> {
    let _ = reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!("GET {path} HTTP/1.1\r\nhost: {authority}\r\n\r\n");
    reader.get_mut().write_all(request.as_bytes()).ok()?;
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let status = line.split_whitespace().nth(1)?.parse().ok()?;
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    Some((status, reader))
}

/// `demo-service write BYTES [stderr]`: BYTES bytes of 64-byte text lines on stdout (or stderr).
fn write(args: &[String]) -> i32 {
    let Some(total) = args.first().and_then(|n| n.parse::<u64>().ok()) else {
        eprintln!("usage: demo-service write BYTES [stderr]");
        return 2;
    };
    let line = b"cutover demo-service streaming test line: 0123456789abcdefghijk\n";
    let block: Vec<u8> = line
        .iter()
        .copied()
        .cycle()
        .take(line.len() * 1024)
        .collect();
    let mut out: Box<dyn Write> = if args.get(1).is_some_and(|s| s == "stderr") {
        Box::new(std::io::stderr().lock())
    } else {
        Box::new(std::io::stdout().lock())
    };
    let mut left = total;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        if out.write_all(&block[..n]).is_err() {
            return 1;
        }
        left -= n as u64;
    }
    i32::from(out.flush().is_err())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_rate_fails_exactly_that_share_of_any_run_of_requests() {
        let metrics = Metrics::default();
        let failed: Vec<bool> = (0..100).map(|_| metrics.next_fails(0.2)).collect();
        assert_eq!(failed.iter().filter(|f| **f).count(), 20);
        // Spread evenly: every 5 consecutive requests hold exactly one failure.
        for window in failed.chunks(5) {
            assert_eq!(window.iter().filter(|f| **f).count(), 1);
        }
        let none = Metrics::default();
        assert!((0..50).all(|_| !none.next_fails(0.0)));
        let all = Metrics::default();
        assert!((0..50).all(|_| all.next_fails(1.0)));
    }

    #[test]
    fn metrics_are_prometheus_text_by_status() {
        let config = Config {
            version: "v2".into(),
            service: "api".into(),
            unhealthy: false,
            latency: Duration::ZERO,
            fail_rate: 0.0,
            metrics: Metrics::default(),
        };
        config.metrics.observe(200, Duration::from_millis(20));
        config.metrics.observe(200, Duration::from_millis(700));
        config.metrics.observe(500, Duration::from_millis(1));
        let text = config.metrics.render(&config);
        assert!(text.contains(r#"demo_requests_total{service="api",version="v2",status="200"} 2"#));
        assert!(text.contains(r#"demo_requests_total{service="api",version="v2",status="500"} 1"#));
        assert!(text.contains(
            r#"demo_request_duration_seconds_bucket{service="api",version="v2",status="200",le="0.025"} 1"#
        ));
        assert!(text.contains(
            r#"demo_request_duration_seconds_bucket{service="api",version="v2",status="200",le="+Inf"} 2"#
        ));
        assert!(text.contains(
            r#"demo_request_duration_seconds_count{service="api",version="v2",status="200"} 2"#
        ));
    }
}
