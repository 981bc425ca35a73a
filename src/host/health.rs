//! `health::*`: the health checks of [`crate::health`] for scripts. Each check returns
//! `#{ok, name, ms, detail}` and never throws for an unhealthy target, so a runbook can report
//! or branch on it; `health::wait` is the one that throws, when time runs out, naming every
//! check that stayed unhealthy with its last detail. A check is given as a map
//! (`#{http: url, status: 200}`, `#{tcp: "db:5432"}`, `#{postgres: url}`, `#{container: name}`,
//! `#{task: id}` of a swarm task, with optional `name` and `timeout`), or as a bare string: an
//! HTTP check of that URL.

use std::{sync::Arc, time::Duration};

use rhai::{Array, Dynamic, EvalAltResult, Map, Module};

use super::{
    HostResult, fail, fail_masked, function,
    options::{Given, OptionKeys, Options},
};
use crate::{
    context::Context,
    context::progress::Progress,
    health::{self, Check, Clients, ContainerProbe, HttpProbe, Listed, Outcome, Probe},
};

const KINDS: [&str; 5] = ["http", "tcp", "postgres", "container", "task"];
/// The options of every kind of check.
const COMMON_KEYS: [&str; 2] = ["timeout", "name"];
/// The options of HTTP checks only.
const HTTP_KEYS: [&str; 6] = ["status", "contains", "body", "json", "resolve", "ca"];
const HTTP: OptionKeys = OptionKeys::new("health::http", &[&COMMON_KEYS, &HTTP_KEYS]);
const TCP: OptionKeys = OptionKeys::new("health::tcp", &[&COMMON_KEYS]);
const POSTGRES: OptionKeys = OptionKeys::new("health::postgres", &[&COMMON_KEYS]);
/// The options of container checks only.
const CONTAINER_KEYS: [&str; 1] = ["listed"];
const CONTAINER: OptionKeys =
    OptionKeys::new("health::container", &[&COMMON_KEYS, &CONTAINER_KEYS]);
const TASK: OptionKeys = OptionKeys::new("health::task", &[&COMMON_KEYS]);
const WAIT: OptionKeys = OptionKeys::new("health::wait", &[&["timeout", "interval"]]);
/// A check of a list: its kind, then the options of its kind.
const CHECK_GROUPS: &[&[&str]] = &[&KINDS, &COMMON_KEYS, &HTTP_KEYS, &CONTAINER_KEYS];
const ALL_CHECKS: OptionKeys =
    OptionKeys::new("health::all", CHECK_GROUPS).given(Given::ItemOf("checks"));
const WAIT_CHECKS: OptionKeys =
    OptionKeys::new("health::wait", CHECK_GROUPS).given(Given::ItemOf("checks"));

/// The option keys of the host functions of this module.
pub(super) const OPTION_KEYS: &[&OptionKeys] = &[
    &HTTP,
    &TCP,
    &POSTGRES,
    &CONTAINER,
    &TASK,
    &WAIT,
    &ALL_CHECKS,
    &WAIT_CHECKS,
];
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
            check_one(&context, "http", url, Map::new())
        }
    );
    function!(&mut module,
        /// GETs `url` and checks the answer: `status` (exact code, default any 2xx), `contains`
        /// (text in the body), `body` (the whole body, whitespace trimmed), `json` (a map of
        /// fields, dotted or as JSON pointers, to the values they must have), `timeout` (ms),
        /// `name` (for reports), `resolve` (an IP address to connect to instead of what the
        /// URL's host resolves to, the host kept for TLS and `Host`: curl's `--resolve`), `ca`
        /// (a root certificate, PEM, to trust besides the system's).
        ///
        /// ```rhai
        /// let r = health::http("http://127.0.0.1:8081/api/health",
        ///     #{status: 200, json: #{status: "ok"}, timeout: 1000, name: "api"});
        /// let public = health::http("https://app.example.com/version",
        ///     #{body: "v2", resolve: "127.0.0.1", ca: caddy::root_certificate()});
        /// ```
        fn http[context](call, url: &str, options: Map) -> Map {
            check_one(&context, "http", url, options)
        }
    );
    function!(&mut module,
        /// Healthy when `addr` (`host:port`) accepts a TCP connection within 3 s.
        ///
        /// ```rhai
        /// let r = health::tcp("127.0.0.1:5432");
        /// ```
        fn tcp[context](call, addr: &str) -> Map {
            check_one(&context, "tcp", addr, Map::new())
        }
    );
    function!(&mut module,
        /// `health::tcp` with options: `timeout` (ms), `name`.
        ///
        /// ```rhai
        /// let r = health::tcp("127.0.0.1:6379", #{timeout: 500, name: "redis"});
        /// ```
        fn tcp[context](call, addr: &str, options: Map) -> Map {
            check_one(&context, "tcp", addr, options)
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
            check_one(&context, "postgres", url, Map::new())
        }
    );
    function!(&mut module,
        /// `health::postgres` with options: `timeout` (ms), `name`.
        ///
        /// ```rhai
        /// let r = health::postgres(env::get("DATABASE_URL"), #{timeout: 2000, name: "db"});
        /// ```
        fn postgres[context](call, url: &str, options: Map) -> Map {
            check_one(&context, "postgres", url, options)
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
            check_one(&context, "container", name, Map::new())
        }
    );
    function!(&mut module,
        /// `health::container` with options: `timeout` (ms), `name`, and `listed`: the
        /// container as the caller has just listed it (an entry of `compose::ps`, or a map with
        /// its `state` and `status`). Listed running healthy, or running without a
        /// healthcheck, it passes without asking the engine again; listed any other way, it is
        /// inspected, so a failing check says what it always says. A runbook that has just
        /// listed its containers, under the run lock, saves a round trip to the engine.
        ///
        /// ```rhai
        /// let r = health::container("db", #{timeout: 1000, name: "database container"});
        /// let project = compose::load("deploy/docker-compose.yml");
        /// for c in compose::ps(project) {
        ///     print(health::container(c.name, #{listed: c}).detail);
        /// }
        /// ```
        fn container[context](call, name: &str, options: Map) -> Map {
            check_one(&context, "container", name, options)
        }
    );
    function!(&mut module,
        /// Healthy when the swarm's manager (`$CUTOVER_SWARM_HOST`, as for `swarm::*`) reports
        /// swarm task `id` (the `id` of `swarm::tasks`) wanted running, running (Swarm says so
        /// only once its container's healthcheck passes) and on a node that is ready. Otherwise
        /// `detail` says its state, Swarm's reason and its node's state: `starting on worker-1,
        /// node ready`, `running on worker-1, node worker-1 is down (heartbeat failure)`,
        /// `pending on no node yet (no suitable node (…))`, `no such task`.
        ///
        /// ```rhai
        /// let project = compose::load("deploy/docker-compose.yml");
        /// for t in swarm::tasks(project) {
        ///     let r = health::task(t.id);
        ///     if !r.ok { log::warn(`${t.name}: ${r.detail}`); }
        /// }
        /// ```
        fn task[context](call, id: &str) -> Map {
            check_one(&context, "task", id, Map::new())
        }
    );
    function!(&mut module,
        /// `health::task` with options: `timeout` (ms), `name`.
        ///
        /// ```rhai
        /// let r = health::task("x5lwdh8bjm3e2m2w0kbl9h3q5", #{timeout: 1000, name: "api#1"});
        /// ```
        fn task[context](call, id: &str, options: Map) -> Map {
            check_one(&context, "task", id, options)
        }
    );
    function!(&mut module,
        /// Runs every check at once and returns their results in the same order, in about the
        /// time of the slowest. A check is a map with one of `http`, `tcp`, `postgres`,
        /// `container`, `task` and optional `name`, `timeout` and HTTP options, or a URL string.
        ///
        /// ```rhai
        /// let results = health::all([
        ///     "http://127.0.0.1:8081/api/health",
        ///     #{http: "http://127.0.0.1:8082/version", body: "green", name: "green version"},
        ///     #{tcp: "127.0.0.1:5432", timeout: 500},
        ///     #{container: "api-gateway-green"},
        ///     #{task: "x5lwdh8bjm3e2m2w0kbl9h3q5", name: "green-api-gateway#1"},
        /// ]);
        /// let failing = results.filter(|r| !r.ok);
        /// ```
        fn all[context](call, checks: Array) -> Array {
            all(&context, checks)
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

/// Runs the check of a kind-specific call: `health::http(url, opts)`.
fn check_one(context: &Context, kind: &str, target: &str, options: Map) -> HostResult<Map> {
    let function = format!("health::{kind}");
    if let Some(other) = KINDS.iter().find(|k| options.contains_key(**k)) {
        return Err(fail(format!(
            "{function}: option `{other}` names a kind of check; use health::all"
        )));
    }
    let check = parse_check(context, function, kind, target.into(), options)?;
    let clients = clients(context, std::slice::from_ref(&check))?;
    let outcome = context.block_on(health::run(&check, &clients))?;
    Ok(to_map(outcome))
}

fn all(context: &Context, checks: Array) -> HostResult<Array> {
    let checks = parse_list(context, "health::all", checks)?;
    let clients = clients(context, &checks)?;
    let outcomes = context.block_on(health::all(&checks, &clients))?;
    Ok(to_array(outcomes))
}

fn wait(context: &Context, checks: Array, options: Map) -> HostResult<Array> {
    let options = Options::new(&WAIT, options)?;
    let timeout = options.millis("timeout")?.unwrap_or(DEFAULT_WAIT);
    let interval = options.millis("interval")?.unwrap_or(DEFAULT_INTERVAL);
    let checks = parse_list(context, "health::wait", checks)?;
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
        Ok(outcomes) => Ok(to_array(outcomes)),
        Err(unhealthy) => Err(fail_masked(context, format!("health::wait: {unhealthy}"))),
    }
}

/// The clients the checks need; the Docker client only when a container check is among them,
/// the swarm manager's only when a task check is.
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
    let wants_swarm = checks.iter().any(|c| matches!(c.probe, Probe::Task(_)));
    let swarm = wants_swarm.then(|| {
        use futures_util::FutureExt;
        let manager = super::swarm::manager(context);
        async move {
            crate::swarm::connect(&manager)
                .await
                .map_err(|e| e.to_string())
        }
        .boxed()
        .shared()
    });
    let wants_http = checks.iter().any(|c| matches!(c.probe, Probe::Http(_)));
    Ok(Clients {
        http: wants_http.then(|| context.http()),
        docker,
        swarm,
        secrets: Some(context.secrets.clone()),
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

fn to_array(outcomes: Vec<Outcome>) -> Array {
    outcomes
        .into_iter()
        .map(|o| Dynamic::from_map(to_map(o)))
        .collect()
}

/// The checks of `health::all` / `health::wait`, each a URL string or a map with one kind key
/// and its options.
fn parse_list(context: &Context, function: &str, checks: Array) -> HostResult<Vec<Check>> {
    checks
        .into_iter()
        .enumerate()
        .map(|(i, value)| {
            let label = format!("{function}: check #{} of the list", i + 1);
            if value.is_string() {
                return parse_check(context, label, "http", value.to_string(), Map::new());
            }
            let type_name = value.type_name();
            let Some(mut map) = value.try_cast::<Map>() else {
                return Err(fail(format!(
                    "{label}: a check is a URL or a map like #{{http: url}}, not {type_name}"
                )));
            };
            let kinds: Vec<&str> = KINDS.into_iter().filter(|k| map.contains_key(*k)).collect();
            let kind = match kinds[..] {
                [kind] => kind,
                [] => {
                    return Err(fail(format!(
                        "{label}: the map names no check; give one of {}",
                        KINDS.join(", ")
                    )));
                }
                _ => {
                    return Err(fail(format!(
                        "{label}: the map names {} checks; give one",
                        kinds.join(" and ")
                    )));
                }
            };
            let target = map.remove(kind).unwrap_or_default();
            let Ok(target) = target.clone().into_string() else {
                return Err(fail(format!(
                    "{label}: `{kind}` must be a string, not {} `{target}`",
                    target.type_name()
                )));
            };
            parse_check(context, label, kind, target, map)
        })
        .collect()
}

/// A check of `kind` on `target` with its options; `label` starts its errors.
fn parse_check(
    context: &Context,
    label: String,
    kind: &str,
    target: String,
    options: Map,
) -> HostResult<Check> {
    if target.trim().is_empty() {
        return Err(fail(format!("{label}: `{kind}` is empty")));
    }
    // Credentials in the target are masked before any error or check name could show them.
    context.secrets.add_url(&target);
    if kind != "http"
        && let Some(key) = HTTP_KEYS.iter().find(|k| options.contains_key(**k))
    {
        return Err(fail(format!(
            "{label}: `{key}` applies to http checks, not {kind}"
        )));
    }
    if kind != "container"
        && let Some(key) = CONTAINER_KEYS.iter().find(|k| options.contains_key(**k))
    {
        return Err(fail(format!(
            "{label}: `{key}` applies to container checks, not {kind}"
        )));
    }
    let known = match kind {
        "http" => &HTTP,
        "tcp" => &TCP,
        "postgres" => &POSTGRES,
        "task" => &TASK,
        _ => &CONTAINER,
    };
    let options = Options::labelled(label, known, options)?;
    let timeout = options
        .millis("timeout")?
        .unwrap_or(health::DEFAULT_TIMEOUT);
    let name = options.string("name")?;
    let (probe, default_name) = match kind {
        "http" => {
            reqwest::Url::parse(&target)
                .map_err(|e| options.error(format!("invalid URL {target:?}: {e}")))?;
            (Probe::Http(http_probe(&options, target.clone())?), target)
        }
        "tcp" => (Probe::Tcp(target.clone()), target),
        "postgres" => {
            let name = postgres_name(context, &target).map_err(|e| options.error(e))?;
            (Probe::Postgres(target), name)
        }
        "task" => {
            // A task id goes into the manager's URL: Swarm's ids are letters and digits.
            if target.is_empty() || !target.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(options.error(format!(
                    "{target:?} is no swarm task id (the `id` of swarm::tasks: letters and digits)"
                )));
            }
            let name = format!("task {target}");
            (Probe::Task(target), name)
        }
        _ => {
            let listed = listed(&options, &target)?;
            let probe = ContainerProbe {
                name: target.clone(),
                listed,
            };
            (Probe::Container(probe), target)
        }
    };
    Ok(Check {
        name: name.unwrap_or(default_name),
        probe,
        timeout,
    })
}

/// A container check's `listed`: the container as the caller has just listed it, a map with its
/// `state` and `status` (an entry of `compose::ps`), whose `name`, if it has one, is the
/// container's.
fn listed(options: &Options, container: &str) -> HostResult<Option<Listed>> {
    let Some(map) = options.map("listed")? else {
        return Ok(None);
    };
    let text = |key: &str| {
        map.get(key)
            .and_then(|v| v.clone().into_string().ok())
            .ok_or_else(|| {
                options.error(format!(
                    "`listed` is the container as compose::ps lists it: a map with `{key}` \
                     (a string)"
                ))
            })
    };
    if let Some(name) = map.get("name").and_then(|v| v.clone().into_string().ok())
        && name != container
    {
        return Err(options.error(format!(
            "`listed` is container {name:?}, not {container:?} that this check is of"
        )));
    }
    Ok(Some(Listed {
        state: text("state")?,
        status: text("status")?,
    }))
}

/// What an HTTP check wants of the answer.
fn http_probe(options: &Options, url: String) -> HostResult<HttpProbe> {
    let status = match options.value("status") {
        None => None,
        Some(value) => Some(
            value
                .as_int()
                .ok()
                .and_then(|s| u16::try_from(s).ok())
                .ok_or_else(|| options.invalid("status", "an HTTP status", value))?,
        ),
    };
    let mut json = Vec::new();
    for (field, want) in options.map("json")?.unwrap_or_default() {
        let want = rhai::serde::from_dynamic::<serde_json::Value>(&want)
            .map_err(|e| options.error(format!("`json.{field}`: {e}")))?;
        json.push((field.to_string(), want));
    }
    let resolve = match options.string("resolve")? {
        None => None,
        Some(ip) => Some(ip.parse().map_err(|_| {
            options.invalid(
                "resolve",
                "an IP address like \"127.0.0.1\"",
                &Dynamic::from(ip),
            )
        })?),
    };
    Ok(HttpProbe {
        url,
        status,
        contains: options.string("contains")?,
        body: options.string("body")?,
        json,
        resolve,
        ca: options.string("ca")?,
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
