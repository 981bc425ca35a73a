//! `health::*`: the health checks of [`crate::health`] for scripts. Each check returns
//! `#{ok, name, ms, detail}` and never throws for an unhealthy target, so a runbook can report
//! or branch on it; `health::wait` is the one that throws, when time runs out, naming every
//! check that stayed unhealthy with its last detail. A check is given as a map
//! (`#{http: url, status: 200}`, `#{tcp: "db:5432"}`, `#{postgres: url}`, `#{container: name}`,
//! with optional `name` and `timeout`), or as a bare string: an HTTP check of that URL.

use std::{sync::Arc, time::Duration};

use rhai::{Array, Dynamic, EvalAltResult, Map, Module};

use super::{HostResult, fail, function};
use crate::{
    context::Context,
    health::{self, Check, Clients, HttpProbe, Outcome, Probe},
    progress::Progress,
};

const KINDS: [&str; 4] = ["http", "tcp", "postgres", "container"];
const HTTP_KEYS: [&str; 4] = ["status", "contains", "body", "json"];
const DEFAULT_WAIT: Duration = Duration::from_secs(60);
const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

pub fn module(context: &Arc<Context>) -> Module {
    let mut module = Module::new();
    function!(&mut module,
        /// GETs `url`: healthy on any 2xx answer within 3 s. Returns `#{ok, name, ms, detail}`;
        /// an unreachable or failing endpoint gives `ok: false` and the reason in `detail`.
        ///
        /// ```rhai
        /// let r = health::http("http://127.0.0.1:8081/api/health");
        /// if !r.ok { log::warn(`${r.name}: ${r.detail}`); }
        /// ```
        fn http[context](call, url: &str) -> Map {
            check_one(&context, single("http", url.into(), Map::new())?)
        }
    );
    function!(&mut module,
        /// GETs `url` and checks the answer: `status` (exact code, default any 2xx), `contains`
        /// (text in the body), `body` (the whole body, whitespace trimmed), `json` (a map of
        /// fields, dotted or as JSON pointers, to the values they must have), `timeout` (ms),
        /// `name` (for reports).
        ///
        /// ```rhai
        /// let r = health::http("http://127.0.0.1:8081/api/health",
        ///     #{status: 200, json: #{status: "ok"}, timeout: 1000, name: "api"});
        /// ```
        fn http[context](call, url: &str, options: Map) -> Map {
            check_one(&context, single("http", url.into(), options)?)
        }
    );
    function!(&mut module,
        /// Healthy when `addr` (`host:port`) accepts a TCP connection within 3 s.
        ///
        /// ```rhai
        /// let r = health::tcp("127.0.0.1:5432");
        /// ```
        fn tcp[context](call, addr: &str) -> Map {
            check_one(&context, single("tcp", addr.into(), Map::new())?)
        }
    );
    function!(&mut module,
        /// `health::tcp` with options: `timeout` (ms), `name`.
        ///
        /// ```rhai
        /// let r = health::tcp("127.0.0.1:6379", #{timeout: 500, name: "redis"});
        /// ```
        fn tcp[context](call, addr: &str, options: Map) -> Map {
            check_one(&context, single("tcp", addr.into(), options)?)
        }
    );
    function!(&mut module,
        /// Healthy when the PostgreSQL server at `url` accepts a session and answers `SELECT 1`.
        /// The password in the URL is masked everywhere, including the check's name.
        ///
        /// ```rhai
        /// let r = health::postgres("postgres://app:secret@127.0.0.1:5432/app");
        /// ```
        fn postgres[context](call, url: &str) -> Map {
            check_one(&context, single("postgres", url.into(), Map::new())?)
        }
    );
    function!(&mut module,
        /// `health::postgres` with options: `timeout` (ms), `name`.
        ///
        /// ```rhai
        /// let r = health::postgres(env::get("DATABASE_URL"), #{timeout: 2000, name: "db"});
        /// ```
        fn postgres[context](call, url: &str, options: Map) -> Map {
            check_one(&context, single("postgres", url.into(), options)?)
        }
    );
    function!(&mut module,
        /// Healthy when the container is running and, if its image or run defines a
        /// healthcheck, Docker reports it `healthy` (`starting` is not healthy yet).
        ///
        /// ```rhai
        /// let r = health::container("api-gateway-green");
        /// ```
        fn container[context](call, name: &str) -> Map {
            check_one(&context, single("container", name.into(), Map::new())?)
        }
    );
    function!(&mut module,
        /// `health::container` with options: `timeout` (ms), `name`.
        ///
        /// ```rhai
        /// let r = health::container("db", #{timeout: 1000, name: "database container"});
        /// ```
        fn container[context](call, name: &str, options: Map) -> Map {
            check_one(&context, single("container", name.into(), options)?)
        }
    );
    function!(&mut module,
        /// Runs every check at once and returns their results in the same order, in about the
        /// time of the slowest. A check is a map with one of `http`, `tcp`, `postgres`,
        /// `container` and optional `name`, `timeout` and HTTP options, or a URL string.
        ///
        /// ```rhai
        /// let results = health::all([
        ///     "http://127.0.0.1:8081/api/health",
        ///     #{http: "http://127.0.0.1:8082/version", body: "green", name: "green version"},
        ///     #{tcp: "127.0.0.1:5432", timeout: 500},
        ///     #{container: "api-gateway-green"},
        /// ]);
        /// let failing = results.filter(|r| !r.ok);
        /// ```
        fn all[context](call, checks: Array) -> Array {
            let checks = parse_checks(&context, checks)?;
            let clients = clients(&context, &checks)?;
            let outcomes = context.block_on(health::all(&checks, &clients))?;
            Ok(outcomes.into_iter().map(|o| Dynamic::from_map(to_map(o))).collect())
        }
    );
    function!(&mut module,
        /// Waits until every check passes (60 s at most, retrying with backoff up to 1 s
        /// apart), showing on a terminal what still fails and why. Returns the results; throws
        /// on timeout, naming each check that stayed unhealthy with its last detail.
        ///
        /// ```rhai
        /// health::wait(["http://127.0.0.1:8082/api/health", #{tcp: "127.0.0.1:5432"}]);
        /// ```
        fn wait[context](call, checks: Array) -> Array {
            wait(&context, checks, Map::new())
        }
    );
    function!(&mut module,
        /// `health::wait` with options: `timeout` (ms, default 60000) and `interval` (ms, the
        /// longest pause between attempts, default 1000).
        ///
        /// ```rhai
        /// health::wait([#{http: "http://127.0.0.1:8082/api/health", json: #{status: "ok"}}],
        ///     #{timeout: 120000, interval: 2000});
        /// ```
        fn wait[context](call, checks: Array, options: Map) -> Array {
            wait(&context, checks, options)
        }
    );
    module
}

fn check_one(context: &Context, check: Dynamic) -> HostResult<Map> {
    let check = parse_check(context, check, None)?;
    let clients = clients(context, std::slice::from_ref(&check))?;
    let outcome = context.block_on(health::run(&check, &clients))?;
    Ok(to_map(outcome))
}

fn wait(context: &Context, checks: Array, mut options: Map) -> HostResult<Array> {
    let timeout = take_ms(&mut options, "timeout")?.unwrap_or(DEFAULT_WAIT);
    let interval = take_ms(&mut options, "interval")?.unwrap_or(DEFAULT_INTERVAL);
    refuse_unknown(&options, "health::wait options")?;
    let checks = parse_checks(context, checks)?;
    let clients = clients(context, &checks)?;
    let progress = Progress::spinner(context, &format!("waiting for {} checks", checks.len()));
    let total = checks.len();
    let result = context.block_on(health::wait(
        &checks,
        &clients,
        timeout,
        interval.max(Duration::from_millis(1)),
        |failing| {
            let reasons: Vec<String> = failing
                .iter()
                .map(|o| format!("{} ({})", o.name, o.detail))
                .collect();
            tracing::debug!("health::wait: still failing: {}", reasons.join(", "));
            progress.set_message(&format!(
                "waiting for {} of {total}: {}",
                failing.len(),
                reasons.join(", ")
            ));
        },
    ))?;
    drop(progress);
    match result {
        Ok(outcomes) => Ok(outcomes
            .into_iter()
            .map(|o| Dynamic::from_map(to_map(o)))
            .collect()),
        Err(unhealthy) => Err(fail(
            context
                .secrets
                .redact(&format!("health::wait: {unhealthy}")),
        )),
    }
}

/// The clients the checks need; the Docker client only when a container check is among them.
fn clients(context: &Context, checks: &[Check]) -> HostResult<Clients> {
    let wants_docker = checks
        .iter()
        .any(|c| matches!(c.probe, Probe::Container(_)));
    let docker = if wants_docker {
        match context.docker() {
            Ok(docker) => Some(Ok(docker)),
            // A stopped run must end, not turn into an unhealthy check.
            Err(error) if context.cancel.is_stopped() => return Err(error),
            Err(error) => Some(Err(message_of(&error))),
        }
    } else {
        None
    };
    let wants_http = checks.iter().any(|c| matches!(c.probe, Probe::Http(_)));
    Ok(Clients {
        http: wants_http.then(|| context.http()),
        docker,
    })
}

fn message_of(error: &EvalAltResult) -> String {
    match error {
        EvalAltResult::ErrorRuntime(value, _) => value.to_string(),
        other => other.to_string(),
    }
}

fn to_map(outcome: Outcome) -> Map {
    let mut map = Map::new();
    map.insert("ok".into(), outcome.ok.into());
    map.insert("name".into(), outcome.name.into());
    map.insert("ms".into(), (outcome.ms as i64).into());
    map.insert("detail".into(), outcome.detail.into());
    map
}

/// A check map built from a kind-specific call: `health::http(url, opts)`.
fn single(kind: &str, target: Dynamic, mut options: Map) -> HostResult<Dynamic> {
    if let Some(other) = KINDS.iter().find(|k| options.contains_key(**k)) {
        return Err(fail(format!(
            "health::{kind}: option `{other}` names another kind of check; use health::all"
        )));
    }
    options.insert(kind.into(), target);
    Ok(Dynamic::from_map(options))
}

fn parse_checks(context: &Context, checks: Array) -> HostResult<Vec<Check>> {
    checks
        .into_iter()
        .enumerate()
        .map(|(i, check)| parse_check(context, check, Some(i)))
        .collect()
}

/// A check from its script form: a URL string, or a map with one kind key and options.
fn parse_check(context: &Context, value: Dynamic, index: Option<usize>) -> HostResult<Check> {
    let at = |message: String| match index {
        Some(i) => fail(format!("check #{} of the list: {message}", i + 1)),
        None => fail(message),
    };
    let mut map = if value.is_string() {
        let mut map = Map::new();
        map.insert("http".into(), value);
        map
    } else if value.is_map() {
        value.cast::<Map>()
    } else {
        return Err(at(format!(
            "a check is a URL or a map like #{{http: url}}, not {}",
            value.type_name()
        )));
    };
    let kinds: Vec<&str> = KINDS.into_iter().filter(|k| map.contains_key(*k)).collect();
    let kind = match kinds[..] {
        [kind] => kind,
        [] => {
            return Err(at(
                "the map names no check; give one of http, tcp, postgres, container".into(),
            ));
        }
        _ => {
            return Err(at(format!(
                "the map names {} checks; give one",
                kinds.join(" and ")
            )));
        }
    };
    let target = take_string(&mut map, kind).map_err(at)?.unwrap_or_default();
    if target.trim().is_empty() {
        return Err(at(format!("`{kind}` is empty")));
    }
    let timeout = take_ms(&mut map, "timeout")?.unwrap_or(health::DEFAULT_TIMEOUT);
    let name = take_string(&mut map, "name").map_err(at)?;
    let (probe, default_name) = match kind {
        "http" => {
            let probe = HttpProbe {
                status: take_int(&mut map, "status")
                    .map_err(at)?
                    .map(|s| {
                        u16::try_from(s).map_err(|_| at(format!("status {s} is no HTTP status")))
                    })
                    .transpose()?,
                contains: take_string(&mut map, "contains").map_err(at)?,
                body: take_string(&mut map, "body").map_err(at)?,
                json: take_json_fields(&mut map).map_err(at)?,
                url: target.clone(),
            };
            reqwest::Url::parse(&target).map_err(|e| at(format!("invalid URL {target:?}: {e}")))?;
            (Probe::Http(probe), target)
        }
        "tcp" => (Probe::Tcp(target.clone()), target),
        "postgres" => {
            let name = postgres_name(context, &target).map_err(at)?;
            (Probe::Postgres(target), name)
        }
        _ => (Probe::Container(target.clone()), target),
    };
    if kind != "http"
        && let Some(key) = HTTP_KEYS.iter().find(|k| map.contains_key(**k))
    {
        return Err(at(format!("`{key}` applies to http checks, not {kind}")));
    }
    refuse_unknown(&map, "the check").map_err(|e| at(message_of(&e)))?;
    Ok(Check {
        name: name.unwrap_or(default_name),
        probe,
        timeout,
    })
}

/// Registers the URL's password as a secret and returns the URL with it masked.
fn postgres_name(context: &Context, url: &str) -> Result<String, String> {
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| format!("invalid PostgreSQL URL: {e}"))?;
    if let Some(password) = config.get_password() {
        context.secrets.add(&String::from_utf8_lossy(password));
    }
    Ok(match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some(crate::redact::MASK));
            parsed.to_string()
        }
        _ => context.secrets.redact(url).into_owned(),
    })
}

fn take_string(map: &mut Map, key: &str) -> Result<Option<String>, String> {
    match map.remove(key) {
        None => Ok(None),
        Some(value) if value.is_string() => Ok(Some(value.to_string())),
        Some(value) => Err(format!(
            "`{key}` must be a string, not {}",
            value.type_name()
        )),
    }
}

fn take_int(map: &mut Map, key: &str) -> Result<Option<i64>, String> {
    match map.remove(key) {
        None => Ok(None),
        Some(value) => value
            .as_int()
            .map(Some)
            .map_err(|found| format!("`{key}` must be an integer, not {found}")),
    }
}

/// A duration option in milliseconds.
pub fn take_ms(map: &mut Map, key: &str) -> HostResult<Option<Duration>> {
    match take_int(map, key).map_err(fail)? {
        None => Ok(None),
        Some(ms) if ms >= 0 => Ok(Some(Duration::from_millis(ms as u64))),
        Some(ms) => Err(fail(format!("`{key}` is {ms} ms; it must not be negative"))),
    }
}

fn take_json_fields(map: &mut Map) -> Result<Vec<(String, serde_json::Value)>, String> {
    let Some(value) = map.remove("json") else {
        return Ok(Vec::new());
    };
    let Some(fields) = value.read_lock::<Map>() else {
        return Err(format!(
            "`json` must be a map of fields to values, like #{{status: \"ok\"}}, not {}",
            value.type_name()
        ));
    };
    fields
        .iter()
        .map(|(field, want)| {
            rhai::serde::from_dynamic::<serde_json::Value>(want)
                .map(|want| (field.to_string(), want))
                .map_err(|e| format!("`json.{field}`: {e}"))
        })
        .collect()
}

/// Fails naming the first key nobody took, so a typo (`stauts`) is not silently ignored.
pub fn refuse_unknown(map: &Map, what: &str) -> HostResult<()> {
    match map.keys().next() {
        None => Ok(()),
        Some(key) => Err(fail(format!("{what}: unknown option `{key}`"))),
    }
}
