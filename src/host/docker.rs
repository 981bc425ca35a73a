//! `docker::*`: containers over the Docker Engine API (never the `docker` CLI), on the one
//! client of the run. Calls that change something (run, start, stop, restart, remove, exec,
//! pull, build, network) go through the change gate: refused in a readonly runbook, described
//! in a dry run. `exec` and `logs` stream their output to a file or the log as it arrives.
//! Images are never pulled behind a script's back: `docker::run` and `compose::up` use what is
//! here (compose pulls what is missing, as docker compose does).

use std::{collections::HashMap, path::PathBuf, sync::Arc};

use rhai::{Array, Dynamic, Map, Module};

use bollard::models::NetworkCreateRequest;

use super::{
    HostResult,
    convert::to_dynamic,
    fail, fail_masked, function,
    options::{OptionKeys, Options},
    wait,
};
use crate::{
    compose::service::Placement,
    compose::service::parse,
    compose::service::reader::{Dialect, Reader},
    context::{Context, progress::Progress},
    docker::Doing,
    docker::containers::{self, Endpoint},
    docker::image::{self, BuildRequest},
    docker::io::{ExecRequest, LogSource, LogsRequest, LogsResult},
};

/// The option keys of the host functions of this module.
pub(super) const OPTION_KEYS: &[&OptionKeys] = &[&STOP, &REMOVE, &EXEC, &LOGS, &BUILD, &NETWORK];

pub fn module(context: &Arc<Context>) -> Module {
    let mut module = Module::new();
    function!(&mut module,
        /// Every container, running or not (as `docker ps -a`), as maps
        /// `#{id, name, image, state, status, labels, created, ports}`; `created` is seconds
        /// since the epoch, each of `ports` a map `#{host_ip, host_port, container_port,
        /// protocol}` (`host_port` is `()` when the port is not published).
        ///
        /// ```rhai
        /// for c in docker::ps() { print(`${c.name}: ${c.status}`); }
        /// ```
        fn ps[context](call) -> Array {
            ps(&context, Map::new())
        }
    );
    function!(&mut module,
        /// The containers matching Docker's `filters` (`label`, `name`, `status`, `ancestor`,
        /// `network`…; each a string or an array of strings).
        ///
        /// ```rhai
        /// let running = docker::ps(#{label: "com.docker.compose.project=stack", status: "running"});
        /// ```
        fn ps[context](call, filters: Map) -> Array {
            ps(&context, filters)
        }
    );
    function!(&mut module,
        /// Everything the engine knows about a container, shaped as `docker inspect` prints it
        /// (`State.Status`, `State.Health.Status`, `Config.Labels`, `HostConfig.Memory`…).
        /// Fails if there is no such container.
        ///
        /// ```rhai
        /// let info = docker::inspect("api-green");
        /// if info.State.Status != "running" { throw "api-green is down"; }
        /// ```
        fn inspect[context](call, name: &str) -> Dynamic {
            let docker = context.docker()?;
            to_dynamic(wait(&context, containers::inspect(&docker, name))?)
        }
    );
    function!(&mut module,
        /// Creates and starts a container; returns its id. The spec uses compose's service keys,
        /// so it reads like a compose file: `image` (required), `name`, `command` and
        /// `entrypoint` (arrays, or strings split like a shell would, without one), `env` (or
        /// `environment`: a map or `["K=V"]`), `env_file`, `ports` (`["8080:80",
        /// "127.0.0.1:9000:9000/udp"]` or `#{target, published, host_ip}` maps), `expose`,
        /// `network` (one name) or `networks` (names, or a map to `#{aliases}`), `aliases`,
        /// `volumes` (`["data:/var/lib/data", "./conf:/etc/conf:ro"]`), `labels`,
        /// `healthcheck` (`#{test: ["CMD", …], interval, timeout, start_period, retries}`,
        /// durations in ms or like `"2s"`), `restart` (`no`, `always`, `unless-stopped`,
        /// `on-failure[:N]`), `memory` (bytes or `"256m"`), `cpus` (`0.5`), `user`,
        /// `working_dir`, `hostname`, `stop_grace_period`. An unknown key is an error. The image
        /// must be here already: `docker::pull` or `docker::build` it first.
        ///
        /// ```rhai
        /// docker::run(#{
        ///     name: "api-green", image: "app:v2", env: #{VERSION: "v2"},
        ///     ports: ["127.0.0.1:8082:8080"], network: "stack", aliases: ["api"],
        ///     healthcheck: #{test: ["CMD", "/app", "check"], interval: 1_000, retries: 3},
        ///     memory: "256m", cpus: 0.5, restart: "unless-stopped", labels: #{env: "green"},
        /// });
        /// ```
        fn run[context](call, spec: Map) -> String {
            run(&context, spec)
        }
    );
    function!(&mut module,
        /// Starts a stopped container. Starting a running one does nothing.
        ///
        /// ```rhai
        /// docker::start("api-blue");
        /// ```
        fn start[context](call, name: &str) -> () {
            let docker = context.docker()?;
            context.change("docker::start", name, || (), || {
                wait(&context, containers::start(&docker, name, name))
            })
        }
    );
    function!(&mut module,
        /// Stops a container: SIGTERM, then SIGKILL after 10 s. Stopping a stopped container
        /// does nothing.
        ///
        /// ```rhai
        /// docker::stop("api-blue");
        /// ```
        fn stop[context](call, name: &str) -> () {
            stop(&context, name, Map::new())
        }
    );
    function!(&mut module,
        /// Stops a container, waiting `timeout` ms (default 10 000) before it is killed.
        ///
        /// ```rhai
        /// docker::stop("api-blue", #{timeout: 30_000});
        /// ```
        fn stop[context](call, name: &str, options: Map) -> () {
            stop(&context, name, options)
        }
    );
    function!(&mut module,
        /// Restarts a container (stops it, waiting up to 10 s, and starts it again).
        ///
        /// ```rhai
        /// docker::restart("api");
        /// ```
        fn restart[context](call, name: &str) -> () {
            let docker = context.docker()?;
            context.change("docker::restart", name, || (), || {
                wait(&context, async {
                    crate::docker::Doing::doing(
                        docker.restart_container(name, None).await,
                        format!("restart container {name}"),
                    )
                })
            })
        }
    );
    function!(&mut module,
        /// Removes a stopped container. Fails if it runs or does not exist.
        ///
        /// ```rhai
        /// docker::remove("api-old");
        /// ```
        fn remove[context](call, name: &str) -> () {
            remove(&context, name, Map::new())
        }
    );
    function!(&mut module,
        /// Removes a container. `force: true` kills it first if it runs and is content when
        /// there is no such container; `volumes: true` also removes its anonymous volumes.
        ///
        /// ```rhai
        /// docker::remove("api-old", #{force: true});
        /// ```
        fn remove[context](call, name: &str, options: Map) -> () {
            remove(&context, name, options)
        }
    );
    function!(&mut module,
        /// Runs a command (an array: program then arguments, no shell) in a running container
        /// and returns `#{code, stdout, stderr}`. Output is streamed; the result keeps the first
        /// 1 MiB of each stream.
        ///
        /// ```rhai
        /// let r = docker::exec("db", ["pg_isready", "-U", "app"]);
        /// if r.code != 0 { throw r.stderr; }
        /// ```
        fn exec[context](call, name: &str, command: Array) -> Map {
            exec(&context, name, command, Map::new())
        }
    );
    function!(&mut module,
        /// `exec` with options: `stdout_to` (a file that receives stdout as it arrives, of any
        /// size; written as a whole, mode 0600, only if the command exits 0; the result's
        /// `bytes` counts it), `env` (a map or `["K=V"]`), `user`, `working_dir`.
        ///
        /// ```rhai
        /// let r = docker::exec("db", ["pg_dump", "-U", "app", "app"], #{stdout_to: "backups/app.sql"});
        /// log::info(`dumped ${r.bytes} bytes`);
        /// ```
        fn exec[context](call, name: &str, command: Array, options: Map) -> Map {
            exec(&context, name, command, options)
        }
    );
    function!(&mut module,
        /// A container's logs (stdout and stderr as written); the last 1 MiB is returned.
        ///
        /// ```rhai
        /// print(docker::logs("api-green"));
        /// ```
        fn logs[context](call, name: &str) -> Dynamic {
            logs(&context, name, Map::new())
        }
    );
    function!(&mut module,
        /// Logs with options: `tail` (lines from the end), `since` (ms since the epoch, as
        /// `time::now()` gives), `timestamps`, `to` (a file that receives every byte; returns
        /// the byte count; nothing is written before the first byte arrives, and the file is
        /// replaced whole, mode 0600, only once all is read; writing it is a change, refused
        /// in a readonly runbook and only said in a dry run), `append` (add to the end of `to`
        /// instead of replacing it), `prefix` (start each line written to `to` with `NAME | `),
        /// `follow` (keep reading until the container stops,
        /// or `timeout` ms pass; without `to` each line goes to the run's log as
        /// `NAME | line`; returns the byte count).
        ///
        /// ```rhai
        /// let recent = docker::logs("api", #{tail: 50, since: time::now() - 600_000});
        /// docker::logs("api", #{to: "logs/api.log"});
        /// docker::logs("api", #{follow: true, timeout: 30_000});
        /// ```
        fn logs[context](call, name: &str, options: Map) -> Dynamic {
            logs(&context, name, options)
        }
    );
    function!(&mut module,
        /// Resource use of a running container: `#{cpu_percent, memory_used, memory_limit,
        /// memory_percent, pids}` (bytes), CPU measured between two samples 250 ms apart.
        ///
        /// ```rhai
        /// let s = docker::stats("api");
        /// if s.memory_percent > 90.0 { log::warn(`api uses ${s.memory_used} bytes`); }
        /// ```
        fn stats[context](call, name: &str) -> Map {
            let docker = context.docker()?;
            let mut all = context.block_on(usage_of(&docker, vec![name.to_string()]))??;
            Ok(all.remove(name).map(|u| u.cast::<Map>()).unwrap_or_default())
        }
    );
    function!(&mut module,
        /// The resource use of several running containers, measured together (in the 250 ms
        /// one takes): a map from each name to its `stats`.
        ///
        /// ```rhai
        /// let all = docker::stats(["api-blue", "auth-blue"]);
        /// print(all["api-blue"].cpu_percent);
        /// ```
        fn stats[context](call, names: Array) -> Map {
            let names: Vec<String> = names.into_iter().map(|n| n.to_string()).collect();
            let docker = context.docker()?;
            context.block_on(usage_of(&docker, names))?
        }
    );
    register_images(&mut module, context);
    module
}

fn ps(context: &Context, filters: Map) -> HostResult<Array> {
    let mut engine_filters: HashMap<String, Vec<String>> = HashMap::new();
    for (key, value) in filters {
        let values = super::convert::to_tree(&value)
            .strings(&key)
            .map_err(|e| fail(format!("docker::ps: filter {e}")))?;
        engine_filters.insert(key.to_string(), values);
    }
    let docker = context.docker()?;
    let found = wait(context, containers::list(&docker, &engine_filters))?;
    found
        .iter()
        .map(|summary| {
            let ports = containers::summary_ports(summary);
            to_dynamic(serde_json::json!({
                "id": summary.id,
                "name": containers::summary_name(summary),
                "image": summary.image,
                "state": summary.state.map(|s| s.to_string()),
                "status": summary.status,
                "labels": summary.labels.clone().unwrap_or_default(),
                "created": summary.created,
                "ports": ports,
            }))
        })
        .collect()
}

fn run(context: &Context, spec: Map) -> HostResult<String> {
    let cwd = std::env::current_dir().unwrap_or_default();
    let lookup = |name: &str| context.env_var(name);
    let mut warnings = Vec::new();
    let mut reader = Reader {
        dialect: Dialect::Run,
        base_dir: &cwd,
        lookup: &lookup,
        warnings: &mut warnings,
        swarm_ignored: Vec::new(),
    };
    let node = super::convert::to_tree(&Dynamic::from_map(spec));
    let service = parse::service(&node, "", &mut reader)
        .map_err(|e| fail_masked(context, e.in_source("docker::run")))?;
    // Secret-named variables given to the container are masked from here on, like exec's.
    for (variable, value) in &service.environment {
        context.secrets.add_if_secret_name(variable, value);
    }
    let name = service.container_name.clone().unwrap_or_default();
    let placement = Placement {
        labels: Default::default(),
        networks: service
            .networks
            .iter()
            .map(|(network, a)| Endpoint {
                network: network.clone(),
                aliases: a.aliases.clone(),
                ipv4_address: a.ipv4_address.clone(),
                ipv6_address: a.ipv6_address.clone(),
            })
            .collect(),
        number: 1,
    };
    let body = service.create_body(&placement);
    let detail = format!("{} {}", service.image, name).trim_end().to_string();
    let docker = context.docker()?;
    context.change(
        "docker::run",
        &detail,
        || format!("dry-run-{name}"),
        || {
            let more: Vec<_> = placement.networks.iter().skip(1).cloned().collect();
            wait(
                context,
                containers::create_and_start(
                    &docker,
                    &name,
                    service.platform.as_deref(),
                    body.clone(),
                    &more,
                ),
            )
        },
    )
}

const STOP: OptionKeys = OptionKeys::new("docker::stop", &[&["timeout"]]);

fn stop(context: &Context, name: &str, options: Map) -> HostResult<()> {
    let options = Options::new(&STOP, options)?;
    let timeout = options.millis("timeout")?;
    let docker = context.docker()?;
    context.change(
        "docker::stop",
        name,
        || (),
        || wait(context, containers::stop(&docker, name, timeout)),
    )
}

const REMOVE: OptionKeys = OptionKeys::new("docker::remove", &[&["force", "volumes"]]);

fn remove(context: &Context, name: &str, options: Map) -> HostResult<()> {
    let options = Options::new(&REMOVE, options)?;
    let force = options.bool("force")?.unwrap_or(false);
    let volumes = options.bool("volumes")?.unwrap_or(false);
    let docker = context.docker()?;
    context.change(
        "docker::remove",
        name,
        || (),
        || {
            wait(context, async {
                match containers::remove(&docker, name, force, volumes).await {
                    Err(error) if force && error.is_not_found() => Ok(()),
                    other => other,
                }
            })
        },
    )
}

const EXEC: OptionKeys = OptionKeys::new(
    "docker::exec",
    &[&["stdout_to", "env", "user", "working_dir"]],
);

fn exec(context: &Context, name: &str, command: Array, options: Map) -> HostResult<Map> {
    let options = Options::new(&EXEC, options)?;
    let command = command
        .iter()
        .map(|word| match word.is_string() {
            true => Ok(word.to_string()),
            false => Err(fail(format!(
                "docker::exec: the command is an array of strings; `{word}` is a {}",
                word.type_name()
            ))),
        })
        .collect::<HostResult<Vec<String>>>()?;
    if command.is_empty() {
        return Err(fail("docker::exec: the command is empty"));
    }
    let request = ExecRequest {
        container: name.to_string(),
        command,
        env: options
            .pairs("env")?
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| {
                context.secrets.add_if_secret_name(&k, &v);
                format!("{k}={v}")
            })
            .collect(),
        user: options.string("user")?,
        working_dir: options.string("working_dir")?,
        stdout_to: options.string("stdout_to")?.map(PathBuf::from),
    };
    let docker = context.docker()?;
    let detail = format!("{name} {:?}", request.command);
    let result = context.change(
        "docker::exec",
        &detail,
        || None,
        || wait(context, crate::docker::io::exec(&docker, &request)).map(Some),
    )?;
    let mut map = Map::new();
    let (code, stdout, stderr, bytes) = match result {
        Some(r) => (r.code, r.stdout, r.stderr, r.stdout_bytes),
        None => (0, String::new(), String::new(), 0),
    };
    map.insert("code".into(), code.into());
    map.insert("stdout".into(), stdout.into());
    map.insert("stderr".into(), stderr.into());
    map.insert("bytes".into(), (bytes as i64).into());
    Ok(map)
}

const LOGS: OptionKeys = OptionKeys::new("docker::logs", &LOGS_KEYS);

/// The options of `docker::logs`, which `swarm::logs` takes too.
pub(super) const LOGS_KEYS: [&[&str]; 1] = [&[
    "tail",
    "since",
    "follow",
    "timeout",
    "timestamps",
    "to",
    "append",
    "prefix",
]];

fn logs(context: &Context, name: &str, options: Map) -> HostResult<Dynamic> {
    let docker = context.docker()?;
    read_logs(
        context,
        &docker,
        &LOGS,
        name,
        (LogSource::Container, Vec::new()),
        options,
    )
}

/// The logs of container `name` (or swarm service, by `source`) on `docker`, with the options
/// of `docker::logs` (`keys` names the function for its errors): the text, or the bytes
/// written or followed. `source` also gives the ids the engine's messages may name, with their
/// names (`LogsRequest::names`).
pub(super) fn read_logs(
    context: &Context,
    docker: &bollard::Docker,
    keys: &'static OptionKeys,
    name: &str,
    (source, names): (LogSource, Vec<(String, String)>),
    options: Map,
) -> HostResult<Dynamic> {
    let options = Options::new(keys, options)?;
    let request = LogsRequest {
        container: name.to_string(),
        source,
        names,
        tail: options.count("tail")?,
        since: options.count("since")?.map(|ms| (ms / 1000) as i64),
        follow: options.bool("follow")?.unwrap_or(false),
        follow_for: options.millis("timeout")?,
        timestamps: options.bool("timestamps")?.unwrap_or(false),
        to: options.string("to")?.map(PathBuf::from),
        append: options.bool("append")?.unwrap_or(false),
        prefix: options.bool("prefix")?.unwrap_or(false),
        secrets: Some(context.secrets.clone()),
    };
    let read = || -> HostResult<Dynamic> {
        Ok(
            match wait(context, crate::docker::io::logs(docker, &request))? {
                LogsResult::Text(text) => text.into(),
                LogsResult::Streamed(bytes) => (bytes as i64).into(),
            },
        )
    };
    match &request.to {
        // Writing a file is a change: refused in a readonly runbook, only said in a dry run.
        Some(path) => {
            let detail = format!(
                "{name} {} {}",
                if request.append { ">>" } else { ">" },
                path.display()
            );
            context.change(keys.function, &detail, || Dynamic::from(0_i64), read)
        }
        None => read(),
    }
}

/// `docker::stats` of containers that must all be running: a map from each name to its usage.
async fn usage_of(docker: &bollard::Docker, names: Vec<String>) -> HostResult<Map> {
    let infos =
        futures_util::future::join_all(names.iter().map(|n| containers::inspect(docker, n))).await;
    let mut inspected = Vec::with_capacity(names.len());
    for (name, info) in names.iter().zip(infos) {
        let info = info.map_err(fail)?;
        if !info.state.as_ref().and_then(|s| s.running).unwrap_or(false) {
            return Err(fail(format!(
                "docker::stats: container {name} is not running"
            )));
        }
        inspected.push(info);
    }
    let measured = containers::usage_of_all(docker, &inspected, containers::CPU_WINDOW).await;
    let mut all = Map::new();
    for (name, usage) in names.into_iter().zip(measured) {
        all.insert(name.into(), to_dynamic(usage.map_err(fail)?)?);
    }
    Ok(all)
}

/// The image and network half of `docker::*`: `image_exists`, `pull` and `build` with progress
/// on the terminal, and `network` to make sure a network exists. Images are never pulled behind
/// a script's back: `docker::run` and `compose::up` use what is here (compose pulls what is
/// missing, as docker compose does).
fn register_images(module: &mut Module, context: &Arc<Context>) {
    function!(module,
        /// True when image `reference` (`name:tag`, `name@digest` or an id) is in the engine's
        /// store.
        ///
        /// ```rhai
        /// if !docker::image_exists("app:v2") { docker::pull("registry.local/app:v2"); }
        /// ```
        fn image_exists[context](call, reference: &str) -> bool {
            let docker = context.docker()?;
            wait(&context, image::exists(&docker, reference))
        }
    );
    function!(module,
        /// The id of image `reference` (`name:tag`, `name@digest` or an id) in the engine's
        /// store, `sha256:…`, or `()` when it is not here: what tells a tag rebuilt since (the
        /// same `name:tag`, another id) from the build a release ran.
        ///
        /// ```rhai
        /// let now = docker::image_id("app:v1");
        /// if now != () && now != recorded { log::warn(`app:v1 is another build now (${now})`); }
        /// ```
        fn image_id[context](call, reference: &str) -> Dynamic {
            let docker = context.docker()?;
            let id = wait(&context, image::id(&docker, reference))?;
            Ok(id.map_or(Dynamic::UNIT, Dynamic::from))
        }
    );
    function!(module,
        /// Pulls an image from its registry, showing progress; returns its id. A reference
        /// without a tag means `:latest`.
        ///
        /// ```rhai
        /// let id = docker::pull("127.0.0.1:5000/app:v2");
        /// ```
        fn pull[context](call, reference: &str) -> String {
            let docker = context.docker()?;
            context.change("docker::pull", reference, String::new, || {
                let progress = Progress::spinner(&context, &format!("pulling {reference}"));
                wait(&context, image::pull(&docker, reference, &|m| progress.set_message(m)))
            })
        }
    );
    function!(module,
        /// Builds an image from directory `context_dir` (its `Dockerfile`, the directory less
        /// what its `.dockerignore` leaves out streamed to the engine as the build context)
        /// and tags it `tag`, showing each step; returns the image id. A failing step is named
        /// in the error. An image `tag` already built from the same context (files, Dockerfile,
        /// arguments, labels) is kept as it is, with its id and its other tags, and no build
        /// runs: its label `cutover.build.context` holds a digest of what it was built from.
        ///
        /// ```rhai
        /// docker::build("deploy/demo-service/image", "cutover-demo:dev");
        /// ```
        fn build[context](call, context_dir: &str, tag: &str) -> String {
            build(&context, context_dir, tag, Map::new())
        }
    );
    function!(module,
        /// `build` with options: `dockerfile` (relative to the directory), `target` (the
        /// Dockerfile stage), `args` (build arguments) and `labels` (maps), `files` (a map from
        /// a name in the context to a file or directory elsewhere, added to the context: a
        /// binary built outside the directory, a tree of the host's own files for an image built
        /// without a registry), `rebuild: true` to build even when the image is up to date.
        ///
        /// ```rhai
        /// docker::build("app", "app:v2", #{dockerfile: "Dockerfile.prod", args: #{VERSION: "v2"}});
        /// docker::build("deploy/demo-service/image", "cutover-demo:dev",
        ///     #{files: #{"demo-service": "target/demo/x86_64-unknown-linux-gnu/release/demo-service"}});
        /// ```
        fn build[context](call, context_dir: &str, tag: &str, options: Map) -> String {
            build(&context, context_dir, tag, options)
        }
    );
    function!(module,
        /// Makes sure a bridge network `name` exists, creating it if needed; returns its id.
        ///
        /// ```rhai
        /// docker::network("stack");
        /// ```
        fn network[context](call, name: &str) -> String {
            network(&context, name, Map::new())
        }
    );
    function!(module,
        /// `network` with options: `labels` (a map) for a network it creates, `internal`
        /// (no route to the outside).
        ///
        /// ```rhai
        /// docker::network("stack", #{labels: #{app: "shop"}});
        /// ```
        fn network[context](call, name: &str, options: Map) -> String {
            network(&context, name, options)
        }
    );
}

fn pairs_map(pairs: Option<Vec<(String, String)>>) -> HashMap<String, String> {
    pairs.unwrap_or_default().into_iter().collect()
}

const BUILD: OptionKeys = OptionKeys::new(
    "docker::build",
    &[&["dockerfile", "target", "args", "labels", "files", "rebuild"]],
);

fn build(context: &Context, dir: &str, tag: &str, options: Map) -> HostResult<String> {
    let options = Options::new(&BUILD, options)?;
    let rebuild = options.bool("rebuild")?.unwrap_or(false);
    let request = BuildRequest {
        dir: PathBuf::from(dir),
        tag: tag.to_string(),
        dockerfile: options.string("dockerfile")?,
        target: options.string("target")?,
        args: pairs_map(options.pairs("args")?),
        labels: pairs_map(options.pairs("labels")?),
        files: options
            .pairs("files")?
            .unwrap_or_default()
            .into_iter()
            .map(|(name, path)| (name, PathBuf::from(path)))
            .collect(),
    };
    if !request.dir.is_dir() {
        return Err(fail(format!("docker::build: {dir} is not a directory")));
    }
    let docker = context.docker()?;
    let short = |id: &str| {
        id.trim_start_matches("sha256:")
            .get(..12)
            .unwrap_or(id)
            .to_string()
    };
    let request = match wait(context, image::freshness(&docker, &request))? {
        image::Freshness::Current { id, .. } if !rebuild => {
            tracing::info!(
                "{tag} is up to date ({}): its build context is unchanged",
                short(&id)
            );
            return Ok(id);
        }
        image::Freshness::Current { request, .. } => request,
        image::Freshness::Stale { request, reason } => {
            tracing::debug!("building {tag}: {reason}");
            request
        }
    };
    context.change(
        "docker::build",
        &format!("{dir} as {tag}"),
        String::new,
        || {
            let progress = Progress::spinner(context, &format!("building {tag}"));
            let id = wait(
                context,
                image::build(&docker, &request, &|m| progress.set_message(m)),
            )?;
            tracing::info!("built {tag} ({})", short(&id));
            Ok(id)
        },
    )
}

const NETWORK: OptionKeys = OptionKeys::new("docker::network", &[&["labels", "internal"]]);

fn network(context: &Context, name: &str, options: Map) -> HostResult<String> {
    let options = Options::new(&NETWORK, options)?;
    let labels = pairs_map(options.pairs("labels")?);
    let internal = options.bool("internal")?.unwrap_or(false);
    let docker = context.docker()?;
    let existing = wait(context, async {
        match docker.inspect_network(name, None).await {
            Ok(network) => Ok(network.id),
            Err(error) if crate::docker::is_status(&error, 404) => Ok(None),
            Err(error) => Err(error).doing(format!("inspect network {name}")),
        }
    })?;
    if let Some(id) = existing {
        return Ok(id);
    }
    context.change(
        "docker::network",
        &format!("create {name}"),
        String::new,
        || {
            let request = NetworkCreateRequest {
                name: name.to_string(),
                driver: Some("bridge".into()),
                internal: Some(internal),
                labels: Some(labels.clone()),
                ..Default::default()
            };
            wait(context, async {
                docker
                    .create_network(request)
                    .await
                    .doing(format!("create network {name}"))
                    .map(|created| created.id)
            })
        },
    )
}
