//! `caddy::*`: traffic control through Caddy's admin API ([`crate::caddy`]) for scripts.
//!
//! Reads are remembered ([`crate::caddy::reads`]): when a run has read the config
//! (`caddy::config`) or a route (`caddy::upstreams`), a later edit of the same thing is refused if
//! Caddy's copy changed in between, so a runbook that decided on what it read never overwrites an
//! edit it did not see.
//! `switch` and `weights` check every address (and, unless told not to, that it accepts
//! connections) before Caddy sees it, since Caddy takes any dial string and would then answer
//! 502 to everyone.

use std::{path::PathBuf, sync::Arc, time::Duration};

use rhai::{Array, Dynamic, Map, Module};
use serde_json::Value;

use super::{
    HostResult, fail, fail_masked, function,
    options::{OptionKeys, Options},
};
use crate::{
    caddy::address,
    caddy::plan::{self, Mode, SwitchPlan},
    caddy::reads::{Reads, Seen, route_path},
    caddy::upstream::{ProxyRoute, StagedSlots},
    caddy::{Admin, CaddyError, DEFAULT_ADMIN},
    context::Context,
};

/// How long a target gets to accept the connection that proves it is there.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The option keys of the host functions of this module.
pub(super) const OPTION_KEYS: &[&OptionKeys] = &[&SWITCH, &SWITCH_AHEAD, &WEIGHTS];

pub fn module(context: &Arc<Context>) -> Module {
    let mut module = Module::new();
    let reads = &Arc::new(Reads::default());
    function!(&mut module,
        /// Caddy's whole running config as a map (`()` when it runs none). A later
        /// `caddy::load` in this run is refused if the config changed in between.
        ///
        /// ```rhai
        /// let config = caddy::config();
        /// print(config.apps.http.servers.keys());
        /// ```
        fn config[context, reads](call) -> Dynamic {
            let admin = admin(&context)?;
            let read = run(&context, admin.config())?;
            reads.remember(admin.address(), "/config/", Seen { etag: read.etag, held: None });
            rhai::serde::to_dynamic(read.value)
        }
    );
    function!(&mut module,
        /// Replaces Caddy's config with `config` (a map of Caddy JSON) in one step. A config
        /// Caddy cannot run is an error carrying Caddy's message, and the running config stays.
        /// Refused if the config changed since this run's `caddy::config()`.
        ///
        /// ```rhai
        /// let config = caddy::config();
        /// config.apps.http.grace_period = "30s";
        /// caddy::load(config);
        /// ```
        fn load[context, reads](call, config: Map) -> () {
            let value = rhai::serde::from_dynamic::<Value>(&Dynamic::from_map(config))?;
            load(&context, &reads, value, "JSON config")
        }
    );
    function!(&mut module,
        /// Replaces Caddy's config with a Caddyfile (adapted by Caddy itself) or JSON text.
        /// Adapter warnings are logged; errors name the line.
        ///
        /// ```rhai
        /// caddy::load(":8080 {\n\treverse_proxy 127.0.0.1:8081\n}\n");
        /// ```
        fn load[context, reads](call, text: &str) -> () {
            let admin = admin(&context)?;
            let (value, what) = match serde_json::from_str::<Value>(text) {
                Ok(value) if value.is_object() => (value, "JSON config"),
                _ => {
                    let (value, warnings) = run(&context, admin.adapt(text))?;
                    for warning in warnings {
                        tracing::warn!("Caddyfile: {warning}");
                    }
                    (value, "Caddyfile")
                }
            };
            load(&context, &reads, value, what)
        }
    );
    function!(&mut module,
        /// Adapts a Caddyfile to Caddy JSON with the running Caddy's own adapter (its admin
        /// API's `/adapt`), changing nothing: `#{config, warnings}`. A Caddyfile that Caddy
        /// cannot adapt is an error carrying Caddy's message, so it also tells whether the
        /// running Caddy has a module: a directive naming one it lacks fails with `module not
        /// registered`. Allowed in readonly runbooks.
        ///
        /// ```rhai
        /// try {
        ///     caddy::adapt(":1 {\n\ttls {\n\t\tdns cloudflare probe\n\t}\n}\n");
        /// } catch (error) {
        ///     log::warn(`this Caddy has no Cloudflare DNS module: ${error}`);
        /// }
        /// ```
        fn adapt[context](call, caddyfile: &str) -> Map {
            let (config, warnings) = run(&context, admin(&context)?.adapt(caddyfile))?;
            let mut map = Map::new();
            map.insert("config".into(), rhai::serde::to_dynamic(config)?);
            map.insert(
                "warnings".into(),
                warnings.into_iter().map(Dynamic::from).collect::<Array>().into(),
            );
            Ok(map)
        }
    );
    function!(&mut module,
        /// The root certificate (PEM) of the CA Caddy's `tls internal` issues from (its admin
        /// API's `/pki/ca/local`): what a client must trust to reach a site Caddy certifies
        /// itself, e.g. as `health::http`'s `ca`.
        ///
        /// ```rhai
        /// let root = caddy::root_certificate();
        /// let r = health::http("https://app.example.com/version",
        ///     #{resolve: "127.0.0.1", ca: root, body: "v2"});
        /// ```
        fn root_certificate[context](call) -> String {
            run(&context, admin(&context)?.root_certificate("local"))
        }
    );
    function!(&mut module,
        /// The addresses route `route_id` (an `@id` in Caddy's config) sends traffic to now,
        /// each once; for a route that dials files (slots), the addresses they hold, in slot
        /// order. A later `caddy::switch` or `caddy::weights` of this route is refused if it
        /// changed in between.
        ///
        /// ```rhai
        /// let live = caddy::upstreams("production");   // ["127.0.0.1:4100", "127.0.0.1:4101"]
        /// ```
        fn upstreams[context, reads](call, route_id: &str) -> Array {
            let admin = admin(&context)?;
            let route = run(&context, admin.route(route_id))?;
            let targets = route.targets().map_err(|e| fail_masked(&context, e))?;
            let held = route.held().map_err(|e| fail_masked(&context, e))?;
            reads.remember(admin.address(), &route_path(route_id), Seen {
                etag: Some(route.etag.clone()),
                held: Some(held),
            });
            Ok(targets.into_iter().map(Dynamic::from).collect())
        }
    );
    function!(&mut module,
        /// Sends all of route `route_id`'s traffic to `addrs` (`host:port` each), once each
        /// address is valid and accepts a connection. A route that dials files (`{file.PATH}`
        /// upstreams: its slots) is switched by replacing them, slot i getting `addrs[i % n]`:
        /// no config reload, so no keep-alive connection is closed; more addresses than slots
        /// is an error. Otherwise one atomic If-Match PATCH of its handler. Returns
        /// `#{route, from, to, mode}`.
        ///
        /// ```rhai
        /// let moved = caddy::switch("production", ["127.0.0.1:8082"]);
        /// log::info(`production: ${moved.from} -> ${moved.to} (${moved.mode})`);
        /// caddy::switch("production", ["127.0.0.1:4100", "127.0.0.1:4101", "127.0.0.1:4102"]);
        /// ```
        fn switch[context, reads](call, route_id: &str, addrs: Array) -> Map {
            switch(&context, &reads, route_id, addrs, Map::new())
        }
    );
    function!(&mut module,
        /// `caddy::switch` with options: `mode` (`"auto"` default: by the slot files when the
        /// route dials some; `"file"`: by slot files, those of `file` if given, making the
        /// route dial them (one PATCH, only if it dials others); `"patch"`: literal addresses
        /// by PATCH, a reload), `file` (a path or a list of paths: the slots, for mode file),
        /// `per_slot` (true: `addrs` gives each slot of `file` its address, in slot order, one
        /// for every slot, an address as often as it should get traffic: a canary step's split,
        /// exact under round-robin), `check` (false: skip the connection check, e.g. when Caddy
        /// reaches targets cutover cannot), `check_timeout` (ms).
        ///
        /// ```rhai
        /// caddy::switch("production", ["api-green:8080"],
        ///     #{mode: "file", file: "deploy/caddy/upstreams/production", check: false});
        /// // 1 slot of 4 to the canary: 25 % of the requests.
        /// caddy::switch("production", ["127.0.0.1:4200", "127.0.0.1:4100", "127.0.0.1:4100", "127.0.0.1:4100"],
        ///     #{file: ["up/p", "up/p.2", "up/p.3", "up/p.4"], per_slot: true});
        /// ```
        fn switch[context, reads](call, route_id: &str, addrs: Array, options: Map) -> Map {
            switch(&context, &reads, route_id, addrs, options)
        }
    );
    function!(&mut module,
        /// Starts writing, in the background, the slot files that `caddy::switch(route_id,
        /// addrs, options)` with the same arguments will write (its options must name them:
        /// `file`), so that the switch, once its own checks pass, only renames them into place:
        /// the disk's share of a switch, spent while the runbook still checks the target.
        /// Changes nothing: the contents wait in temporary files beside the slots, which Caddy
        /// never reads; the switch takes those of the slots it writes with the same address,
        /// and what no switch of the run takes is removed when it ends (in the REPL, each input
        /// is a run). Problems are the switch's to report. A dry run or a readonly runbook
        /// stages nothing.
        ///
        /// ```rhai
        /// let slots = ["deploy/caddy/upstreams/production", "deploy/caddy/upstreams/production.2"];
        /// caddy::switch_ahead("production", ["127.0.0.1:4100"], #{file: slots});
        /// // ... the standby's health checks ...
        /// caddy::switch("production", ["127.0.0.1:4100"], #{file: slots});
        /// ```
        fn switch_ahead[context](call, route_id: &str, addrs: Array, options: Map) -> () {
            switch_ahead(&context, route_id, addrs, options)
        }
    );
    function!(&mut module,
        /// Splits route `route_id`'s traffic by weight (a canary): `#{addr: weight}`, integers,
        /// 0 for none. Needs Caddy ≥ 2.7 (`weighted_round_robin`); an older Caddy is a clear
        /// error. Always a config change (reload). A route that dials slot files keeps them
        /// all: the first slot holding an address carries its weight, the others 0, and an
        /// address no slot holds is added beside them; the `caddy::switch` that ends the canary
        /// returns the route to its slots. Returns `#{route, from, to, mode}`.
        ///
        /// ```rhai
        /// caddy::weights("production", #{"127.0.0.1:8081": 90, "127.0.0.1:8082": 10});
        /// ```
        fn weights[context, reads](call, route_id: &str, weights: Map) -> Map {
            set_weights(&context, &reads, route_id, weights, Map::new())
        }
    );
    function!(&mut module,
        /// `caddy::weights` with options: `check` (false: skip the connection check),
        /// `check_timeout` (ms).
        ///
        /// ```rhai
        /// caddy::weights("production", #{"api-blue:8080": 50, "api-green:8080": 50}, #{check: false});
        /// ```
        fn weights[context, reads](call, route_id: &str, weights: Map, options: Map) -> Map {
            set_weights(&context, &reads, route_id, weights, options)
        }
    );
    module
}

/// The admin API named by `CADDY_ADMIN` (environment or `.env`), or the default.
fn admin(context: &Context) -> HostResult<Admin> {
    let address = context
        .env_var("CADDY_ADMIN")
        .filter(|a| !a.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_ADMIN.to_string());
    Admin::new(&address, context.http()).map_err(|e| fail_masked(context, e))
}

/// Runs an admin call, turning its error into a script error.
fn run<T>(
    context: &Context,
    call: impl std::future::Future<Output = Result<T, CaddyError>>,
) -> HostResult<T> {
    context.block_on(call)?.map_err(|e| fail_masked(context, e))
}

fn load(context: &Context, reads: &Reads, config: Value, what: &str) -> HostResult<()> {
    let admin = admin(context)?;
    let seen = reads.take(admin.address(), "/config/");
    warn_if_admin_moves(&admin, &config);
    let detail = format!("{what} ({})", describe_config(&config));
    let result = context.change(
        "caddy::load",
        &detail,
        || (),
        || {
            run(
                context,
                admin.load(&config, seen.as_ref().and_then(|s| s.etag.as_deref())),
            )
        },
    );
    if result.is_ok() {
        reads.forget_all(admin.address());
    }
    result
}

/// A config whose `admin` section names another address moves the admin API (Caddy's default
/// is localhost:2019): later calls must follow it through `CADDY_ADMIN`.
fn warn_if_admin_moves(admin: &Admin, config: &Value) {
    let section = &config["admin"];
    let listen = section["listen"].as_str().unwrap_or("localhost:2019");
    let port = |address: &str| address.rsplit(':').next().map(str::to_string);
    if section["disabled"] == true {
        tracing::warn!(
            "the new config disables Caddy's admin API: cutover cannot change it afterwards"
        );
    } else if listen.starts_with("unix") || port(listen) != port(admin.address()) {
        tracing::warn!(
            "the new config serves Caddy's admin API on {listen}, not {}: set CADDY_ADMIN to follow it",
            admin.address()
        );
    }
}

/// "servers: main", for the journal.
fn describe_config(config: &Value) -> String {
    let servers: Vec<&str> = config["apps"]["http"]["servers"]
        .as_object()
        .map(|s| s.keys().map(String::as_str).collect())
        .unwrap_or_default();
    format!(
        "servers: {}",
        if servers.is_empty() {
            "none".to_string()
        } else {
            servers.join(", ")
        }
    )
}

/// Whether and how long to check that targets accept connections (`check`, `check_timeout`).
struct Checked {
    check: bool,
    timeout: Duration,
}

/// The options every traffic change takes.
const CHECK_KEYS: [&str; 2] = ["check", "check_timeout"];
const SWITCH: OptionKeys = OptionKeys::new(
    "caddy::switch",
    &[&["mode", "file", "per_slot"], &CHECK_KEYS],
);
const SWITCH_AHEAD: OptionKeys = OptionKeys::new(
    "caddy::switch_ahead",
    &[&["mode", "file", "per_slot"], &CHECK_KEYS],
);
const WEIGHTS: OptionKeys = OptionKeys::new("caddy::weights", &[&CHECK_KEYS]);

fn read_check(options: &Options) -> HostResult<Checked> {
    Ok(Checked {
        check: options.bool("check")?.unwrap_or(true),
        timeout: options.millis("check_timeout")?.unwrap_or(CHECK_TIMEOUT),
    })
}

/// Route `route_id` as Caddy holds it now, once every address in `addrs` is valid and, with
/// `checked.check`, accepts a connection. Both are reads before a change, so the connections
/// and the admin API's answer are awaited together; a target that is down is the error first.
fn route_to_change(
    context: &Context,
    admin: &Admin,
    route_id: &str,
    addrs: &[String],
    checked: &Checked,
) -> HostResult<ProxyRoute> {
    for addr in addrs {
        address::validate(addr).map_err(|e| fail_masked(context, e))?;
    }
    let accepting = async {
        if checked.check {
            address::check_accepting(addrs, checked.timeout).await
        } else {
            Ok(())
        }
    };
    let (accepting, route) =
        context.block_on(async { tokio::join!(accepting, admin.route(route_id)) })?;
    accepting.and(route).map_err(|e| fail_masked(context, e))
}

/// What `caddy::switch` (or `caddy::switch_ahead`, by `keys`) is asked: the addresses (one per
/// slot, in slot order, with `per_slot`), how, and the connection check.
struct SwitchRequest {
    to: Vec<String>,
    mode: Mode,
    checked: Checked,
}

fn switch_request(keys: &OptionKeys, addrs: Array, options: Map) -> HostResult<SwitchRequest> {
    let name = keys.function;
    let options = Options::new(keys, options)?;
    let per_slot = options.bool("per_slot")?.unwrap_or(false);
    let mut to = Vec::new();
    for addr in addrs {
        let text = addr.into_string().map_err(|found| {
            fail(format!(
                "{name}: addresses are strings like \"127.0.0.1:8080\", not {found}"
            ))
        })?;
        if to.contains(&text) && !per_slot {
            return Err(fail(format!(
                "{name}: {text} is listed twice (give #{{per_slot: true}} to list each \
                 slot's address)"
            )));
        }
        to.push(text);
    }
    if to.is_empty() {
        return Err(fail(format!("{name}: no address to switch to")));
    }
    let files = options.strings("file")?;
    if let Some(files) = &files {
        if files.is_empty() {
            return Err(options.error("`file` lists no file"));
        }
        if let Some(twice) = files
            .iter()
            .enumerate()
            .find_map(|(i, f)| files[..i].contains(f).then_some(f))
        {
            return Err(options.error(format!(
                "`file` lists {twice} twice: each slot is its own file"
            )));
        }
    }
    if per_slot {
        let slots = files.as_ref().map_or(0, Vec::len);
        if slots == 0 || to.len() != slots {
            return Err(options.error(format!(
                "`per_slot` gives each slot of `file` its address: {} address(es) for {slots} \
                 slot file(s)",
                to.len()
            )));
        }
    }
    let files: Option<Vec<PathBuf>> = files.map(|f| f.into_iter().map(PathBuf::from).collect());
    let mode = match options.string("mode")?.as_deref() {
        None | Some("auto") if files.is_none() => Mode::Auto,
        None | Some("auto") | Some("file") => Mode::File(files),
        Some("patch") if files.is_none() => Mode::Patch,
        Some(other) => {
            return Err(options.error(format!(
                "mode {other:?} is not one of \"auto\", \"file\", \"patch\" \
                 (and `file` goes with mode file)"
            )));
        }
    };
    let checked = read_check(&options)?;
    Ok(SwitchRequest { to, mode, checked })
}

fn switch(
    context: &Context,
    reads: &Reads,
    route_id: &str,
    addrs: Array,
    options: Map,
) -> HostResult<Map> {
    let SwitchRequest { to, mode, checked } = switch_request(&SWITCH, addrs, options)?;
    let mut distinct = to.clone();
    distinct.sort();
    distinct.dedup();
    let admin = admin(context)?;
    let route = route_to_change(context, &admin, route_id, &distinct, &checked)?;
    reads
        .verify(admin.address(), &route)
        .map_err(|e| fail_masked(context, e))?;
    let plan = plan::plan_switch(route, to, mode).map_err(|e| fail_masked(context, e))?;
    apply(
        context,
        &admin,
        "caddy::switch",
        plan,
        context.take_staged_switch(route_id),
    )
}

/// Stages the slot contents `caddy::switch(route_id, addrs, options)` would write, when its
/// options name the slot files (without them, the slots are known only from the route). Not a
/// change (nothing Caddy reads is touched), but a dry run or a readonly runbook writes no file
/// at all, so those stage nothing.
fn switch_ahead(context: &Context, route_id: &str, addrs: Array, options: Map) -> HostResult<()> {
    let request = switch_request(&SWITCH_AHEAD, addrs, options)?;
    let Mode::File(Some(slots)) = &request.mode else {
        return Ok(());
    };
    let valid =
        request.to.len() <= slots.len() && request.to.iter().all(|a| address::validate(a).is_ok());
    if valid && !context.is_dry_run() && !context.run_info().readonly {
        context.stage_switch(route_id, plan::slot_assignment(slots, &request.to));
    }
    Ok(())
}

fn set_weights(
    context: &Context,
    reads: &Reads,
    route_id: &str,
    weights: Map,
    options: Map,
) -> HostResult<Map> {
    let options = Options::new(&WEIGHTS, options)?;
    let mut split = Vec::new();
    for (addr, weight) in weights {
        let weight = weight
            .as_int()
            .ok()
            .and_then(|w| u64::try_from(w).ok())
            .ok_or_else(|| {
                fail(format!(
                    "caddy::weights: the weight of {addr} must be an integer ≥ 0"
                ))
            })?;
        split.push((addr.to_string(), weight));
    }
    if split.is_empty() {
        return Err(fail("caddy::weights: no address to send traffic to"));
    }
    let checked = read_check(&options)?;
    let live: Vec<String> = split
        .iter()
        .filter(|(_, w)| *w > 0)
        .map(|(a, _)| a.clone())
        .collect();
    for (addr, _) in &split {
        address::validate(addr).map_err(|e| fail_masked(context, e))?;
    }
    let admin = admin(context)?;
    let route = route_to_change(context, &admin, route_id, &live, &checked)?;
    run(context, admin.check_weights_supported())?;
    reads
        .verify(admin.address(), &route)
        .map_err(|e| fail_masked(context, e))?;
    let plan = plan::plan_weights(route, split).map_err(|e| fail_masked(context, e))?;
    apply(context, &admin, "caddy::weights", plan, None)
}

/// Carries out a plan through the change gate (dry run, readonly, journal).
/// Slot writes `staged` ahead (`caddy::switch_ahead`) are renamed into place, not written again.
fn apply(
    context: &Context,
    admin: &Admin,
    action: &str,
    plan: SwitchPlan,
    staged: Option<StagedSlots>,
) -> HostResult<Map> {
    let mut summary = Map::new();
    summary.insert("route".into(), plan.route.id.clone().into());
    summary.insert("from".into(), strings(&plan.from));
    summary.insert("to".into(), strings(&plan.to));
    summary.insert("mode".into(), plan.mode.into());
    let detail = format!(
        "{}: {} -> {} ({})",
        plan.route.id,
        plan.from.join(", "),
        plan.to.join(", "),
        plan.mode
    );
    context.change(
        action,
        &detail,
        || summary.clone(),
        // `change` says it as it is made: once.
        || {
            run(context, admin.apply(&plan, staged))?;
            Ok(summary.clone())
        },
    )
}

fn strings(items: &[String]) -> Dynamic {
    Dynamic::from_array(items.iter().cloned().map(Dynamic::from).collect())
}
