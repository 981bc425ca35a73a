//! `metrics::*`: measurements of live traffic for runbooks that judge a release as it serves
//! (`stdlib/canary.rhai`): per-upstream figures from the proxy's access log, and PromQL queries
//! against a Prometheus server. Both only read, so they run in dry runs and readonly runbooks.

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration};

use rhai::{Array, Dynamic, Map, Module};

use super::{
    HostResult,
    convert::to_dynamic,
    fail_masked, function,
    options::{OptionKeys, Options},
};
use crate::{
    context::Context,
    metrics::{access_log, prometheus},
};

/// How long a Prometheus query may take when the options name no timeout.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The option keys of the host functions of this module.
pub(super) const OPTION_KEYS: &[&OptionKeys] = &[&PROXY, &PROMETHEUS];

pub fn module(context: &Arc<Context>) -> Module {
    let mut module = Module::new();
    function!(&mut module,
        /// Figures per upstream from the proxy's JSON access log at `path`, over the whole file:
        /// `#{next, skipped, upstreams}`, where `upstreams` maps each upstream address to
        /// `#{requests, errors, failed, error_rate, p50_ms, p99_ms}` (`errors` are 5xx answers,
        /// `failed` those the upstream never answered, latency as clients saw it through the
        /// proxy). Pass `next` as `from` to read only what came after.
        ///
        /// ```rhai
        /// let seen = metrics::proxy("deploy/caddy/logs/access.log");
        /// for addr in seen.upstreams.keys() { print(`${addr}: ${seen.upstreams[addr].requests}`); }
        /// ```
        fn proxy[context](call, path: &str) -> Map {
            proxy(&context, path, Map::new())
        }
    );
    function!(&mut module,
        /// Like `proxy(path)` with options: `from` (byte offset: a previous result's `next`),
        /// `route` (only requests of that Caddy route id), `groups` (a map of names to arrays of
        /// upstream addresses, figured together: a group's p99 is that of all its requests).
        ///
        /// ```rhai
        /// let log = "deploy/caddy/logs/access.log";
        /// let start = metrics::log_end(log);
        /// sleep(10_000);
        /// let step = metrics::proxy(log, #{from: start, route: "production",
        ///                                  groups: #{blue: ["127.0.0.1:4100"], green: ["127.0.0.1:4200"]}});
        /// print(`green: ${step.upstreams.green.error_rate * 100.0} % errors`);
        /// ```
        fn proxy[context](call, path: &str, options: Map) -> Map {
            proxy(&context, path, options)
        }
    );
    function!(&mut module,
        /// Where the proxy's access log at `path` ends now: pass it as `from` to `proxy` to read
        /// only the requests that come after (0 when the file does not exist yet).
        ///
        /// ```rhai
        /// let start = metrics::log_end("deploy/caddy/logs/access.log");
        /// ```
        fn log_end[context](call, path: &str) -> i64 {
            let end = access_log::end(&PathBuf::from(path))
                .map_err(|e| fail_masked(&context, format!("metrics::log_end: {e}")))?;
            Ok(end as i64)
        }
    );
    function!(&mut module,
        /// Evaluates PromQL `query` now on the Prometheus server at `url`: an array of
        /// `#{labels, value}`, one per sample (a scalar is one sample without labels; `value` is
        /// a float, NaN when Prometheus says so). An unreachable server or a bad query throws.
        ///
        /// ```rhai
        /// let errors = metrics::prometheus("http://127.0.0.1:9090",
        ///     `sum(rate(demo_requests_total{version="v2",status=~"5.."}[1m]))`);
        /// if errors.len() > 0 { print(`v2 errors/s: ${errors[0].value}`); }
        /// ```
        fn prometheus[context](call, url: &str, query: &str) -> Array {
            prometheus(&context, url, query, Map::new())
        }
    );
    function!(&mut module,
        /// Like `prometheus(url, query)` with options: `timeout` (ms, default 10 s).
        ///
        /// ```rhai
        /// let up = metrics::prometheus(env::get("PROMETHEUS_URL"), "up", #{timeout: 2_000});
        /// ```
        fn prometheus[context](call, url: &str, query: &str, options: Map) -> Array {
            prometheus(&context, url, query, options)
        }
    );
    module
}

const PROXY: OptionKeys = OptionKeys::new("metrics::proxy", &[&["from", "route", "groups"]]);

fn proxy(context: &Context, path: &str, options: Map) -> HostResult<Map> {
    let options = Options::new(&PROXY, options)?;
    let mut groups = BTreeMap::new();
    if let Some(map) = options.map("groups")? {
        for (name, addrs) in map {
            let addrs = super::convert::to_tree(&addrs)
                .strings(&format!("groups.{name}"))
                .map_err(|e| options.error(e))?;
            groups.insert(name.to_string(), addrs);
        }
    }
    let query = access_log::Query {
        from: options.count("from")?.unwrap_or(0),
        route: options.string("route")?,
        groups,
    };
    let window = access_log::read(&PathBuf::from(path), &query)
        .map_err(|e| fail_masked(context, format!("metrics::proxy: {e}")))?;
    Ok(to_dynamic(window)?.cast::<Map>())
}

const PROMETHEUS: OptionKeys = OptionKeys::new("metrics::prometheus", &[&["timeout"]]);

fn prometheus(context: &Context, url: &str, query: &str, options: Map) -> HostResult<Array> {
    let options = Options::new(&PROMETHEUS, options)?;
    let timeout = options.positive_millis("timeout")?.unwrap_or(QUERY_TIMEOUT);
    let http = context.http();
    let samples = context
        .block_on(prometheus::query(&http, url, query, timeout))?
        .map_err(|e| fail_masked(context, format!("metrics::prometheus: {e}")))?;
    Ok(samples
        .into_iter()
        .map(|sample| {
            let labels: Map = sample
                .labels
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect();
            let mut map = Map::new();
            map.insert("labels".into(), labels.into());
            map.insert("value".into(), sample.value.into());
            Dynamic::from_map(map)
        })
        .collect())
}
