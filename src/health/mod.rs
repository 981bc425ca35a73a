//! Health checks: is an HTTP endpoint answering as expected, does a port accept connections,
//! does PostgreSQL answer `SELECT 1`, is a container running and healthy, is a swarm task
//! running and healthy on a ready node (asked of the manager). A check never fails
//! with an error for an unhealthy target: it returns an [`Outcome`] whose `detail` says what was
//! wrong, because "not healthy yet" is the normal state of a target being waited for. Many checks
//! run concurrently ([`all`]), so twelve 100 ms checks take about 100 ms, and [`wait`] retries the
//! failing ones with backoff until they pass or time runs out.

mod tls;

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::{
    FutureExt,
    future::{BoxFuture, Shared, join_all},
};
use serde_json::Value;

/// The timeout of a check that sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);
/// The most of a response body an HTTP check reads (for `contains`, `body` and `json`).
const MAX_BODY: usize = 1 << 20;

/// One check: what to probe, under which name, within how long.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub probe: Probe,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub enum Probe {
    Http(HttpProbe),
    /// `host:port` accepts a TCP connection.
    Tcp(String),
    /// The server at this URL accepts a session and answers `SELECT 1`.
    Postgres(String),
    /// The container is running and, if it has a healthcheck, healthy.
    Container(ContainerProbe),
    /// The swarm task of this id is wanted running, running (its healthcheck passed) and on a
    /// ready node, as the swarm's manager says ([`crate::swarm::task_health`]).
    Task(String),
}

/// A container to check by name, and how the caller has just listed it, if it has.
#[derive(Debug, Clone, Default)]
pub struct ContainerProbe {
    pub name: String,
    /// The container as the caller has just listed it (`compose::ps`): shown running healthy
    /// (or running without a healthcheck) there, it passes without asking the engine again.
    /// Listed any other way, it is inspected as any container check is, so a failing check's
    /// detail is the same.
    pub listed: Option<Listed>,
}

/// A container as an engine listing shows it: its state (`running`) and status line
/// (`Up 3 minutes (healthy)`).
#[derive(Debug, Clone, Default)]
pub struct Listed {
    pub state: String,
    pub status: String,
}

impl Listed {
    /// What a container check says of a container listed running healthy, or running without
    /// a healthcheck, as [`probe_container`] says it; `None` for any other (to be inspected).
    fn said(&self) -> Option<&'static str> {
        if self.state != "running" {
            return None;
        }
        match crate::docker::containers::health_in_status(&self.status) {
            "healthy" => Some(RUNNING_HEALTHY),
            "" => Some(RUNNING_NO_HEALTHCHECK),
            _ => None,
        }
    }
}

/// An HTTP GET and what its answer must be.
#[derive(Debug, Clone, Default)]
pub struct HttpProbe {
    pub url: String,
    /// The status wanted; any 2xx when unset.
    pub status: Option<u16>,
    /// Text the body must contain.
    pub contains: Option<String>,
    /// The whole body, surrounding whitespace aside (e.g. `/version` answering `green`).
    pub body: Option<String>,
    /// Fields of a JSON body and the values they must have; a field is a dotted path
    /// (`checks.db`) or a JSON pointer (`/checks/db`).
    pub json: Vec<(String, Value)>,
    /// Connect to this address instead of what the URL's host resolves to, keeping the host
    /// for TLS and the `Host` header (curl's `--resolve`): a public name checked on this host.
    pub resolve: Option<std::net::IpAddr>,
    /// A root certificate (PEM) to trust besides the system's, e.g. Caddy's internal CA.
    pub ca: Option<String>,
}

/// The HTTP client every check shares, as the host builds it: ring as the TLS crypto provider
/// (reqwest is built without one; installing it twice is harmless), the system's roots read at
/// the first HTTPS handshake ([`tls`]), cutover's user agent, and a connect timeout.
pub fn client_builder() -> reqwest::ClientBuilder {
    let builder = base_builder();
    match tls::config() {
        Ok(config) => builder.use_preconfigured_tls(config),
        // reqwest's own TLS setup then, which says what is wrong when it is built.
        Err(_) => builder,
    }
}

fn base_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .user_agent(concat!("cutover/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
}

/// A client of its own for a check that pins its address or trusts another root.
fn pinned_client(check: &HttpProbe) -> Result<reqwest::Client, String> {
    let mut builder = match &check.ca {
        // reqwest's own TLS setup, the system's roots read now and `ca` beside them.
        Some(pem) => {
            let root = reqwest::Certificate::from_pem(pem.as_bytes())
                .map_err(|e| format!("the root certificate given (`ca`) is not PEM: {e}"))?;
            base_builder().add_root_certificate(root)
        }
        None => base_builder().use_preconfigured_tls(tls::config()?),
    };
    if let Some(ip) = check.resolve {
        let url = reqwest::Url::parse(&check.url).map_err(|e| format!("{}: {e}", check.url))?;
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return Err(format!("{}: no host to resolve", check.url));
        };
        builder = builder.resolve(host, std::net::SocketAddr::new(ip, port));
    }
    builder
        .build()
        .map_err(|e| format!("cannot build its HTTP client: {e}"))
}

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub ok: bool,
    pub name: String,
    pub ms: u64,
    pub detail: String,
}

/// What the probes need: the HTTP client when an HTTP check is among them, the Docker client
/// when a container check is (or why there is none: a TCP check should not wait on an engine
/// that does not answer), and the swarm manager's connection when a task check is.
pub struct Clients {
    pub http: Option<reqwest::Client>,
    pub docker: Option<Result<bollard::Docker, String>>,
    pub swarm: Option<Manager>,
    /// Masked in what a check quotes of an answer before it is cut short, so no secret shows
    /// in part.
    pub secrets: Option<std::sync::Arc<crate::redact::Redactor>>,
}

/// The swarm manager's client, connected by the first task check that needs it and shared by
/// the others: the connection is made within each check's own timeout, beside the other
/// checks, not before them.
pub type Manager = Shared<BoxFuture<'static, Result<bollard::Docker, String>>>;

/// Runs one check. Never fails: an unhealthy target is an outcome with `ok: false`.
pub async fn run(check: &Check, clients: &Clients) -> Outcome {
    run_within(check, clients, None, check.timeout).await
}

async fn run_within(
    check: &Check,
    clients: &Clients,
    listing: Option<&Listing>,
    limit: Duration,
) -> Outcome {
    let started = Instant::now();
    let probing = probe(&check.probe, clients, listing, limit);
    let result = match tokio::time::timeout(limit, probing).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {} ms", limit.as_millis())),
    };
    let (ok, detail) = match result {
        Ok(detail) => (true, detail),
        Err(detail) => (false, detail),
    };
    Outcome {
        ok,
        name: check.name.clone(),
        ms: started.elapsed().as_millis() as u64,
        detail,
    }
}

/// Runs every check at once; the outcomes are in the order of `checks`.
pub async fn all(checks: &[Check], clients: &Clients) -> Vec<Outcome> {
    let listing = listing(checks.iter(), clients);
    join_all(
        checks
            .iter()
            .map(|check| run_within(check, clients, listing.as_ref(), check.timeout)),
    )
    .await
}

/// The engine's containers, listed once for the container checks run together (two or more)
/// that the caller's own listing does not answer, by name: their state and the engine's status
/// line. One list call answers every container
/// that runs healthy (or has no healthcheck), where an inspect each cost a round trip to the
/// engine each; any other is inspected as a lone check is, so what a failing check says (the
/// exit code, the last healthcheck output) is the same. `None` inside when the listing failed:
/// each check then inspects, and reports the engine's error itself.
type Listing = Shared<BoxFuture<'static, Option<Arc<HashMap<String, Listed>>>>>;

fn listing<'a>(checks: impl Iterator<Item = &'a Check>, clients: &Clients) -> Option<Listing> {
    let names: Vec<String> = checks
        .filter_map(|check| match &check.probe {
            Probe::Container(container)
                if container.listed.as_ref().and_then(Listed::said).is_none() =>
            {
                Some(container.name.clone())
            }
            _ => None,
        })
        .collect();
    let Some(Ok(docker)) = &clients.docker else {
        return None;
    };
    if names.len() < 2 {
        return None;
    }
    let docker = docker.clone();
    let listed = async move {
        let patterns = names.iter().map(|name| name_pattern(name)).collect();
        let filters = HashMap::from([("name".to_string(), patterns)]);
        let summaries = crate::docker::containers::list(&docker, &filters)
            .await
            .ok()?;
        let by_name = summaries
            .into_iter()
            .map(|summary| {
                let name = crate::docker::containers::summary_name(&summary);
                let state = summary.state.map(|s| s.to_string()).unwrap_or_default();
                let status = summary.status.unwrap_or_default();
                (name, Listed { state, status })
            })
            .collect();
        Some(Arc::new(by_name))
    };
    Some(listed.boxed().shared())
}

/// Why [`wait`] gave up: the checks that were still failing, with their last outcome.
#[derive(Debug)]
pub struct StillUnhealthy {
    pub waited: Duration,
    pub total: usize,
    pub failing: Vec<Outcome>,
}

impl std::fmt::Display for StillUnhealthy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of {} checks still unhealthy after {} ms:",
            self.failing.len(),
            self.total,
            self.waited.as_millis()
        )?;
        for outcome in &self.failing {
            write!(f, "\n  {}: {}", outcome.name, outcome.detail)?;
        }
        Ok(())
    }
}

/// Runs the checks until every one has passed, re-running only those still failing, with a
/// pause that starts short and doubles up to `interval`. `on_round` sees the outcomes still
/// failing after each round (for progress). Gives up after `timeout`; each attempt's timeout is
/// cut to the time left, so the wait never overruns it by more than a scheduling tick.
pub async fn wait(
    checks: &[Check],
    clients: &Clients,
    timeout: Duration,
    interval: Duration,
    mut on_round: impl FnMut(&[Outcome]),
) -> Result<Vec<Outcome>, StillUnhealthy> {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut passed: Vec<Option<Outcome>> = vec![None; checks.len()];
    // Each failing check's last real result: what an attempt found, not that an attempt cut
    // short by the end of the wait ran out of time.
    let mut last: Vec<Option<Outcome>> = vec![None; checks.len()];
    let mut pause = (interval / 8).max(Duration::from_millis(50)).min(interval);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let pending: Vec<usize> = (0..checks.len()).filter(|&i| passed[i].is_none()).collect();
        let limits: Vec<Duration> = pending
            .iter()
            .map(|&i| checks[i].timeout.min(left).max(Duration::from_millis(1)))
            .collect();
        let listing = listing(pending.iter().map(|&i| &checks[i]), clients);
        let outcomes = join_all(
            pending
                .iter()
                .zip(&limits)
                .map(|(&i, &limit)| run_within(&checks[i], clients, listing.as_ref(), limit)),
        )
        .await;
        let mut failing = Vec::new();
        for ((i, outcome), limit) in pending.into_iter().zip(outcomes).zip(limits) {
            if outcome.ok {
                passed[i] = Some(outcome);
                continue;
            }
            let cut_short =
                limit < checks[i].timeout && u128::from(outcome.ms) >= limit.as_millis();
            let outcome = match &last[i] {
                Some(previous) if cut_short => previous.clone(),
                _ => outcome,
            };
            last[i] = Some(outcome.clone());
            failing.push(outcome);
        }
        if failing.is_empty() {
            return Ok(passed.into_iter().flatten().collect());
        }
        on_round(&failing);
        let now = Instant::now();
        if now >= deadline {
            return Err(StillUnhealthy {
                waited: started.elapsed(),
                total: checks.len(),
                failing,
            });
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(interval);
    }
}

async fn probe(
    probe: &Probe,
    clients: &Clients,
    listing: Option<&Listing>,
    limit: Duration,
) -> Result<String, String> {
    match probe {
        Probe::Http(http) if http.resolve.is_some() || http.ca.is_some() => {
            let client = pinned_client(http)?;
            probe_http(http, &client, limit, clients.secrets.as_deref()).await
        }
        Probe::Http(http) => match &clients.http {
            Some(client) => probe_http(http, client, limit, clients.secrets.as_deref()).await,
            None => Err("no HTTP client".to_string()),
        },
        Probe::Tcp(addr) => probe_tcp(addr).await,
        Probe::Postgres(url) => probe_postgres(url).await,
        Probe::Container(ContainerProbe { name, listed }) => {
            if let Some(said) = listed.as_ref().and_then(Listed::said) {
                tracing::debug!("container {name}: {said}, as the caller listed it");
                return Ok(said.to_string());
            }
            match &clients.docker {
                Some(Ok(docker)) => {
                    if let Some(healthy) = healthy_in_listing(listing, name).await {
                        return Ok(healthy.to_string());
                    }
                    probe_container(docker, name, clients.secrets.as_deref()).await
                }
                Some(Err(why)) => Err(why.clone()),
                None => Err("no Docker client".to_string()),
            }
        }
        Probe::Task(id) => match &clients.swarm {
            // Swarm's messages are quoted: masked as a container's healthcheck output is.
            Some(manager) => match manager.clone().await {
                Ok(manager) => crate::swarm::task_health(&manager, id)
                    .await
                    .map_err(|detail| masked(&detail, clients.secrets.as_deref())),
                Err(why) => Err(why),
            },
            None => Err("no client of the swarm's manager".to_string()),
        },
    }
}

async fn probe_http(
    check: &HttpProbe,
    client: &reqwest::Client,
    limit: Duration,
    secrets: Option<&crate::redact::Redactor>,
) -> Result<String, String> {
    let response = client
        .get(&check.url)
        .timeout(limit)
        .send()
        .await
        .map_err(|e| describe_reqwest(&e, limit))?;
    let status = response.status().as_u16();
    let body = read_body(response, limit).await?;
    let excerpt = || excerpt(&masked(&body, secrets));
    match check.status {
        Some(want) if status != want => {
            return Err(format!("HTTP {status} (expected {want}): {}", excerpt()));
        }
        None if !(200..300).contains(&status) => {
            return Err(format!("HTTP {status} (expected 2xx): {}", excerpt()));
        }
        _ => {}
    }
    if let Some(want) = &check.contains
        && !body.contains(want.as_str())
    {
        return Err(format!(
            "HTTP {status} but the body lacks {want:?}: {}",
            excerpt()
        ));
    }
    if let Some(want) = &check.body
        && body.trim() != want.trim()
    {
        return Err(format!(
            "HTTP {status} but the body is {:?}, expected {want:?}",
            excerpt()
        ));
    }
    if !check.json.is_empty() {
        let json: Value = serde_json::from_str(&body).map_err(|e| {
            format!(
                "HTTP {status} but the body is not JSON ({e}): {}",
                excerpt()
            )
        })?;
        for (field, want) in &check.json {
            match json.pointer(&json_pointer(field)) {
                Some(found) if found == want => {}
                Some(found) => {
                    return Err(format!(
                        "HTTP {status} but JSON {field} is {found}, expected {want}"
                    ));
                }
                None => return Err(format!("HTTP {status} but the JSON has no {field}")),
            }
        }
    }
    Ok(format!("HTTP {status}"))
}

/// `checks.db` → `/checks/db`; a field already written as a pointer is kept.
fn json_pointer(field: &str) -> String {
    if field.starts_with('/') {
        field.to_string()
    } else {
        field
            .split('.')
            .map(|part| format!("/{}", part.replace('~', "~0").replace('/', "~1")))
            .collect()
    }
}

/// Reads at most [`MAX_BODY`] bytes of the body, streaming, so a huge answer is not held whole.
async fn read_body(mut response: reqwest::Response, limit: Duration) -> Result<String, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("reading the body: {}", describe_reqwest(&e, limit)))?
    {
        let room = MAX_BODY - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() == MAX_BODY {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// The start of a body, on one line, for a detail message.
/// `text` with the secrets masked: before an excerpt cuts it, so none is cut in two.
fn masked(text: &str, secrets: Option<&crate::redact::Redactor>) -> String {
    secrets.map_or_else(|| text.to_string(), |s| s.redact(text).into_owned())
}

fn excerpt(body: &str) -> String {
    let line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(120) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None if line.is_empty() => "(empty body)".to_string(),
        None => line,
    }
}

/// A reqwest error as a short cause: "connection refused", not three layers of wrappers.
fn describe_reqwest(error: &reqwest::Error, limit: Duration) -> String {
    if error.is_timeout() {
        return format!("no answer within {} ms", limit.as_millis());
    }
    let root = root_cause(error);
    if error.is_connect() {
        format!("cannot connect: {root}")
    } else if error.is_builder() {
        format!("invalid request: {root}")
    } else {
        root
    }
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

async fn probe_tcp(addr: &str) -> Result<String, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let peer = stream
        .peer_addr()
        .map_or_else(|_| addr.to_string(), |a| a.to_string());
    Ok(format!("connected to {peer}"))
}

async fn probe_postgres(url: &str) -> Result<String, String> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| describe_postgres(&e))?;
    let connection = tokio::spawn(connection);
    let answer = client
        .simple_query("SELECT 1")
        .await
        .map_err(|e| describe_postgres(&e));
    drop(client);
    let _ = connection.await;
    answer.map(|_| "SELECT 1 answered".to_string())
}

fn describe_postgres(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => match std::error::Error::source(error) {
            Some(source) => format!("{error}: {}", root_cause(source)),
            None => error.to_string(),
        },
    }
}

/// The engine's `name` filter for container `name`: the engine matches it as a pattern, against
/// the name with or without its leading `/`, so it is anchored and its dots (the one pattern
/// character a container name may hold) escaped. The lookup in the listing is by exact name.
fn name_pattern(name: &str) -> String {
    format!("^/?{}$", name.replace('.', "\\."))
}

/// What a container check says of one running and healthy, and of one running without a
/// healthcheck: the same whether it was inspected or listed.
const RUNNING_HEALTHY: &str = "running, healthy";
const RUNNING_NO_HEALTHCHECK: &str = "running (no healthcheck)";

/// What a check of container `name` says when the round's listing shows it running healthy or
/// running without a healthcheck (as [`probe_container`] would say it); `None` otherwise.
async fn healthy_in_listing(listing: Option<&Listing>, name: &str) -> Option<&'static str> {
    let listed = listing?.clone().await?;
    let said = listed.get(name)?.said()?;
    tracing::debug!("container {name}: {said}, as listed with the round's other containers");
    Some(said)
}

async fn probe_container(
    docker: &bollard::Docker,
    name: &str,
    secrets: Option<&crate::redact::Redactor>,
) -> Result<String, String> {
    use bollard::models::HealthStatusEnum;
    let inspected = docker
        .inspect_container(name, None)
        .await
        .map_err(|error| match error {
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            } => "no such container".to_string(),
            other => format!("cannot inspect: {other}"),
        })?;
    let state = inspected.state.unwrap_or_default();
    if state.running != Some(true) {
        let status = state
            .status
            .map_or("not running".to_string(), |s| s.to_string());
        return Err(match state.exit_code {
            Some(code) if status == "exited" => format!("exited (code {code})"),
            _ => status,
        });
    }
    let Some(health) = state.health else {
        return Ok(RUNNING_NO_HEALTHCHECK.to_string());
    };
    match health.status {
        Some(HealthStatusEnum::HEALTHY) => Ok(RUNNING_HEALTHY.to_string()),
        None | Some(HealthStatusEnum::NONE) | Some(HealthStatusEnum::EMPTY) => {
            Ok(RUNNING_NO_HEALTHCHECK.to_string())
        }
        Some(status) => {
            let last = health
                .log
                .unwrap_or_default()
                .pop()
                .and_then(|result| result.output)
                .map(|output| format!(": {}", excerpt(&masked(&output, secrets))))
                .filter(|text| text != ": (empty body)")
                .unwrap_or_default();
            Err(format!("running, {status}{last}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_name_is_listed_by_an_anchored_pattern_with_its_dots_escaped() {
        assert_eq!(name_pattern("shop-api-1"), "^/?shop-api-1$");
        assert_eq!(name_pattern("shop.api_1"), "^/?shop\\.api_1$");
    }

    #[test]
    fn json_fields_as_pointers() {
        assert_eq!(json_pointer("status"), "/status");
        assert_eq!(json_pointer("checks.db"), "/checks/db");
        assert_eq!(json_pointer("/checks/0"), "/checks/0");
        assert_eq!(json_pointer("a/b"), "/a~1b");
    }

    /// An HTTP server on loopback answering every request `503 unavailable`, after 200 ms.
    async fn slow_503() -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buffer = [0u8; 1024];
                    let _ = stream.read(&mut buffer).await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 11\r\nconnection: close\r\n\r\nunavailable",
                        )
                        .await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_wait_that_times_out_names_each_checks_last_real_result() {
        let addr = slow_503().await;
        let checks = [Check {
            name: "api".into(),
            probe: Probe::Http(HttpProbe {
                url: format!("http://{addr}/api/health"),
                ..HttpProbe::default()
            }),
            timeout: DEFAULT_TIMEOUT,
        }];
        let clients = Clients {
            http: Some(crate::context::http_client()),
            docker: None,
            swarm: None,
            secrets: None,
        };
        // The last round starts as time runs out, with less time left than the answer takes:
        // its attempt timing out is not what the check found.
        let error = wait(
            &checks,
            &clients,
            Duration::from_millis(500),
            Duration::from_millis(100),
            |_| {},
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("api: HTTP 503 (expected 2xx): unavailable"),
            "{error}"
        );
        assert!(!error.contains("no answer within"), "{error}");
    }

    #[test]
    fn excerpts_are_short_single_lines() {
        assert_eq!(excerpt(""), "(empty body)");
        assert_eq!(excerpt("a\n  b"), "a b");
        assert_eq!(excerpt(&"x".repeat(500)).chars().count(), 121);
    }

    #[test]
    fn excerpts_never_show_part_of_a_secret() {
        let secrets = crate::redact::Redactor::default();
        secrets.add("secret-in-a-health-answer");
        let body = format!("{}secret-in-a-health-answer", "x".repeat(110));
        let shown = excerpt(&masked(&body, Some(&secrets)));
        assert_eq!(shown, format!("{}***", "x".repeat(110)));
        assert!(
            excerpt(&body).contains("secret-in"),
            "the cut would show part of it"
        );
    }
}
