//! An HTTP/1.1 load generator for the zero-downtime tests and the switch benchmark: in-process,
//! loopback only, bounded in time and count, and exact about what failed.
//!
//! Each client keeps one connection alive and paces its requests. Every request that does not
//! end in a 2xx is counted, by status or by what went wrong with the connection. The one case
//! that depends on the client is a connection the server closed while idle, just as the client
//! reused it: no byte of a response came back. Browsers and standard HTTP clients retry an
//! idempotent request once on a new connection then (RFC 9110 §9.2.2), so [`Retry::Browser`]
//! does the same and counts the retry; [`Retry::Never`] counts it as a failure, which is what a
//! client that never retries, or any POST, would see.
//!
//! Written on tokio's `TcpStream` rather than an HTTP client library, because those retry (or
//! not) on their own and hide exactly the event measured here.

#![allow(dead_code)] // The tests and the bench use different parts.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Retry an idempotent request once on a new connection when a reused connection was
    /// closed before any byte of the response, as browsers do.
    Browser,
    /// Never retry.
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

/// A group of clients that behave alike.
#[derive(Debug, Clone)]
pub struct Group {
    pub label: &'static str,
    pub retry: Retry,
    pub method: Method,
    pub path: String,
    pub clients: usize,
    /// Requests per second of each client; a client whose responses are slower sends its next
    /// request as soon as the previous one ends.
    pub rate: f64,
}

impl Group {
    pub fn new(
        label: &'static str,
        retry: Retry,
        method: Method,
        clients: usize,
        rate: f64,
    ) -> Group {
        Group {
            label,
            retry,
            method,
            path: "/".to_string(),
            clients,
            rate,
        }
    }

    pub fn path(mut self, path: &str) -> Group {
        self.path = path.to_string();
        self
    }
}

/// What to run: where, which groups, for how long at most, how many requests at most.
#[derive(Debug, Clone)]
pub struct Plan {
    pub target: SocketAddr,
    pub groups: Vec<Group>,
    pub duration: Duration,
    pub max_requests: u64,
    pub request_timeout: Duration,
}

/// One finished request: when it was sent (since the load started), who served it (the demo
/// service's `x-served-by`), and whether it ended 2xx.
#[derive(Debug, Clone)]
pub struct Sample {
    pub sent: Duration,
    pub served_by: Option<Arc<str>>,
    pub ok: bool,
}

/// What one group saw.
#[derive(Debug, Clone, Default)]
pub struct GroupReport {
    pub label: &'static str,
    pub requests: u64,
    pub ok: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub errors: BTreeMap<&'static str, u64>,
    /// Requests retried on a new connection (browser mode), and how many of those then ended 2xx.
    pub retried: u64,
    pub retried_ok: u64,
    pub samples: Vec<Sample>,
}

impl GroupReport {
    /// Requests that did not end 2xx: every non-2xx status and every connection error.
    pub fn failures(&self) -> u64 {
        self.requests - self.ok
    }

    pub fn describe(&self) -> String {
        let mut text = format!(
            "{}: {} requests, {} failed",
            self.label,
            self.requests,
            self.failures()
        );
        for (status, n) in &self.statuses {
            text.push_str(&format!(", {n}× HTTP {status}"));
        }
        for (error, n) in &self.errors {
            text.push_str(&format!(", {n}× {error}"));
        }
        if self.retried > 0 {
            text.push_str(&format!(
                "; {} retried once on a new connection, {} of them then ok",
                self.retried, self.retried_ok
            ));
        }
        text
    }
}

#[derive(Debug, Clone)]
pub struct Report {
    pub groups: Vec<GroupReport>,
    pub elapsed: Duration,
}

impl Report {
    pub fn requests(&self) -> u64 {
        self.groups.iter().map(|g| g.requests).sum()
    }

    /// The failed requests of every group.
    pub fn failures(&self) -> u64 {
        self.groups.iter().map(|g| g.failures()).sum()
    }

    pub fn rate(&self) -> f64 {
        self.requests() as f64 / self.elapsed.as_secs_f64()
    }

    pub fn group(&self, label: &str) -> &GroupReport {
        self.groups
            .iter()
            .find(|g| g.label == label)
            .unwrap_or_else(|| panic!("no load group {label}"))
    }

    pub fn describe(&self) -> String {
        let mut text = format!(
            "{} requests in {:.1} s ({:.0}/s)",
            self.requests(),
            self.elapsed.as_secs_f64(),
            self.rate()
        );
        for group in &self.groups {
            text.push_str("\n  ");
            text.push_str(&group.describe());
        }
        text
    }

    /// The samples of the groups named, in the order they were sent.
    pub fn samples(&self, labels: &[&str]) -> Vec<Sample> {
        let mut samples: Vec<Sample> = self
            .groups
            .iter()
            .filter(|g| labels.contains(&g.label))
            .flat_map(|g| g.samples.iter().cloned())
            .collect();
        samples.sort_by_key(|s| s.sent);
        samples
    }
}

/// How long after `issued` every request sent was served by `target`: the send time of the
/// first request after the last one served by anything else, counted from `issued`. Only
/// requests sent before `until` count. `None` when none in the window reached the target.
pub fn switch_latency(
    samples: &[Sample],
    issued: Duration,
    until: Duration,
    target: &str,
) -> Option<Duration> {
    let window: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.ok && s.sent >= issued && s.sent < until)
        .collect();
    let served = |s: &Sample| s.served_by.as_deref() == Some(target);
    let after_last_other = window.iter().rposition(|s| !served(s)).map_or(0, |i| i + 1);
    window
        .get(after_last_other)
        .filter(|s| served(s))
        .map(|s| s.sent - issued)
}

/// A load in progress, on its own thread and runtime.
pub struct Load {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Report>,
    pub started: Instant,
}

impl Load {
    pub fn start(plan: Plan) -> Load {
        assert!(
            plan.target.ip().is_loopback(),
            "load is only ever sent to loopback, not {}",
            plan.target
        );
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(run(plan, stop, started))
            })
        };
        Load {
            stop,
            thread,
            started,
        }
    }

    /// Time since the load started, on the clock the samples use.
    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits until the duration or the request budget ends the load.
    pub fn finish(self) -> Report {
        self.thread.join().expect("the load generator panicked")
    }

    /// Stops the clients (requests in flight finish) and returns what they saw.
    pub fn stop(self) -> Report {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("the load generator panicked")
    }
}

async fn run(plan: Plan, stop: Arc<AtomicBool>, started: Instant) -> Report {
    let deadline = started + plan.duration;
    let budget = Arc::new(AtomicU64::new(plan.max_requests));
    let mut handles = Vec::new();
    for group in &plan.groups {
        let mut clients = Vec::new();
        for index in 0..group.clients {
            let client = Client {
                target: plan.target,
                group: group.clone(),
                timeout: plan.request_timeout,
                stop: Arc::clone(&stop),
                budget: Arc::clone(&budget),
                started,
                deadline,
                offset: Duration::from_secs_f64(index as f64 / group.rate / group.clients as f64),
            };
            clients.push(tokio::spawn(client.run()));
        }
        handles.push((group.label, clients));
    }
    let mut groups = Vec::new();
    for (label, clients) in handles {
        let mut report = GroupReport {
            label,
            ..GroupReport::default()
        };
        for client in clients {
            let part = client.await.expect("a load client panicked");
            report.requests += part.requests;
            report.ok += part.ok;
            report.retried += part.retried;
            report.retried_ok += part.retried_ok;
            for (k, v) in part.statuses {
                *report.statuses.entry(k).or_default() += v;
            }
            for (k, v) in part.errors {
                *report.errors.entry(k).or_default() += v;
            }
            report.samples.extend(part.samples);
        }
        report.samples.sort_by_key(|s| s.sent);
        groups.push(report);
    }
    Report {
        groups,
        elapsed: started.elapsed(),
    }
}

struct Client {
    target: SocketAddr,
    group: Group,
    timeout: Duration,
    stop: Arc<AtomicBool>,
    budget: Arc<AtomicU64>,
    started: Instant,
    deadline: Instant,
    offset: Duration,
}

/// How an exchange on a connection failed.
enum Broken {
    /// No connection could be opened.
    Connect,
    /// The connection ended (EOF or reset) before any byte of the response.
    NoResponse,
    /// It ended, or sent garbage, after part of the response.
    MidResponse,
    Timeout,
}

struct Answer {
    status: u16,
    served_by: Option<String>,
    close: bool,
}

type Connection = BufReader<TcpStream>;

impl Client {
    async fn run(self) -> GroupReport {
        let mut report = GroupReport::default();
        let mut served_by: BTreeMap<String, Arc<str>> = BTreeMap::new();
        let request = self.request_bytes();
        let mut ticks = tokio::time::interval_at(
            tokio::time::Instant::from_std(self.started + self.offset),
            Duration::from_secs_f64(1.0 / self.group.rate),
        );
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut connection: Option<Connection> = None;
        loop {
            ticks.tick().await;
            if self.stop.load(Ordering::SeqCst) || Instant::now() >= self.deadline {
                break;
            }
            if self
                .budget
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_err()
            {
                break;
            }
            let sent = self.started.elapsed();
            report.requests += 1;
            let outcome = self.send(&mut connection, &request, &mut report).await;
            let sample = match outcome {
                Ok(answer) => {
                    let ok = (200..300).contains(&answer.status);
                    if ok {
                        report.ok += 1;
                    } else {
                        *report.statuses.entry(answer.status).or_default() += 1;
                    }
                    let who = answer.served_by.map(|name| {
                        Arc::clone(
                            served_by
                                .entry(name.clone())
                                .or_insert_with(|| Arc::from(name.as_str())),
                        )
                    });
                    Sample {
                        sent,
                        served_by: who,
                        ok,
                    }
                }
                Err(error) => {
                    *report.errors.entry(error).or_default() += 1;
                    Sample {
                        sent,
                        served_by: None,
                        ok: false,
                    }
                }
            };
            report.samples.push(sample);
        }
        report
    }

    /// One request, with the browser's single retry when it applies.
    async fn send(
        &self,
        connection: &mut Option<Connection>,
        request: &[u8],
        report: &mut GroupReport,
    ) -> Result<Answer, &'static str> {
        let reused = connection.is_some();
        let first = self.exchange_on(connection, request).await;
        let idempotent = self.group.method == Method::Get;
        match first {
            Err(Broken::NoResponse)
                if reused && idempotent && self.group.retry == Retry::Browser =>
            {
                report.retried += 1;
                let second = self.exchange_on(connection, request).await;
                if second
                    .as_ref()
                    .is_ok_and(|a| (200..300).contains(&a.status))
                {
                    report.retried_ok += 1;
                }
                second.map_err(|e| describe(e, false))
            }
            Err(error) => Err(describe(error, reused)),
            Ok(answer) => Ok(answer),
        }
    }

    /// Sends on the kept connection, or a new one; keeps the connection if it may be reused.
    async fn exchange_on(
        &self,
        connection: &mut Option<Connection>,
        request: &[u8],
    ) -> Result<Answer, Broken> {
        let mut stream = match connection.take() {
            Some(stream) => stream,
            None => {
                match tokio::time::timeout(self.timeout, TcpStream::connect(self.target)).await {
                    Ok(Ok(stream)) => {
                        let _ = stream.set_nodelay(true);
                        BufReader::new(stream)
                    }
                    Ok(Err(_)) => return Err(Broken::Connect),
                    Err(_) => return Err(Broken::Timeout),
                }
            }
        };
        let answer = match tokio::time::timeout(self.timeout, exchange(&mut stream, request)).await
        {
            Ok(result) => result?,
            Err(_) => return Err(Broken::Timeout),
        };
        if !answer.close {
            *connection = Some(stream);
        }
        Ok(answer)
    }

    fn request_bytes(&self) -> Vec<u8> {
        let host = self.target;
        let path = &self.group.path;
        match self.group.method {
            Method::Get => {
                format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nuser-agent: cutover-load\r\n\r\n")
                    .into_bytes()
            }
            Method::Post => {
                let body = "{\"order\":42,\"items\":[\"tea\",\"cake\"]}";
                format!(
                    "POST {path} HTTP/1.1\r\nhost: {host}\r\nuser-agent: cutover-load\r\n\
                     content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            }
        }
    }
}

fn describe(error: Broken, reused: bool) -> &'static str {
    match (error, reused) {
        (Broken::NoResponse, true) => "reused connection closed before any response byte",
        (Broken::Connect, _) => "connection refused",
        (Broken::NoResponse, false) => "new connection closed before any response byte",
        (Broken::MidResponse, _) => "connection broken mid-response",
        (Broken::Timeout, _) => "timed out",
    }
}

/// Writes the request and reads one response. A failure before the first response byte is
/// [`Broken::NoResponse`], whether the write failed (reset) or the read hit EOF or a reset.
async fn exchange(stream: &mut Connection, request: &[u8]) -> Result<Answer, Broken> {
    if stream.get_mut().write_all(request).await.is_err() {
        return Err(Broken::NoResponse);
    }
    let mut status_line = String::new();
    match stream.read_line(&mut status_line).await {
        Ok(0) | Err(_) if status_line.is_empty() => return Err(Broken::NoResponse),
        Ok(_) if status_line.ends_with('\n') => {}
        _ => return Err(Broken::MidResponse),
    }
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or(Broken::MidResponse)?;
    let (mut length, mut chunked, mut close, mut served_by) = (None, false, false, None);
    loop {
        let mut line = String::new();
        match stream.read_line(&mut line).await {
            Ok(n) if n > 0 && line.ends_with('\n') => {}
            _ => return Err(Broken::MidResponse),
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(Broken::MidResponse);
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse::<usize>().ok(),
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "connection" => close = value.eq_ignore_ascii_case("close"),
            "x-served-by" => served_by = Some(value.to_string()),
            _ => {}
        }
    }
    if chunked {
        read_chunked(stream).await?;
    } else if let Some(length) = length {
        let mut body = vec![0; length];
        stream
            .read_exact(&mut body)
            .await
            .map_err(|_| Broken::MidResponse)?;
    } else if !(status == 204 || status == 304 || (100..200).contains(&status)) {
        // No length: the body runs to the end of the connection.
        let mut rest = Vec::new();
        stream
            .read_to_end(&mut rest)
            .await
            .map_err(|_| Broken::MidResponse)?;
        close = true;
    }
    Ok(Answer {
        status,
        served_by,
        close,
    })
}

async fn read_chunked(stream: &mut Connection) -> Result<(), Broken> {
    loop {
        let mut size = String::new();
        if stream.read_line(&mut size).await.unwrap_or(0) == 0 {
            return Err(Broken::MidResponse);
        }
        let size = size.trim().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size, 16).map_err(|_| Broken::MidResponse)?;
        let mut chunk = vec![0; size + 2];
        stream
            .read_exact(&mut chunk)
            .await
            .map_err(|_| Broken::MidResponse)?;
        if size == 0 {
            return Ok(());
        }
    }
}
