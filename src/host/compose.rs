//! `compose::*`: a whole environment from a compose file, over the Engine API. `load` reads the
//! file into a project map (what `docker compose config` would show, in cutover's terms:
//! every service as a `docker::run` spec plus `depends_on`, `profiles` and `deploy.replicas`);
//! `up`, `down` and `ps` act on such a map, which a runbook may adjust in between. `up` and
//! `down` are changes: a dry run logs and returns their real plan, and changes nothing.

use std::{path::PathBuf, sync::Arc};

use rhai::{Array, Dynamic, Map, Module};

use super::{
    HostResult,
    convert::to_dynamic,
    fail, fail_masked, function,
    options::{OptionKeys, Options},
    wait,
};
use crate::{
    compose::down,
    compose::plan::{self, UpOptions},
    compose::{self, LoadOptions, Project, parsed::ParseCache},
    context::Context,
    context::progress::Progress,
};

/// The option keys of the host functions of this module.
pub(super) const OPTION_KEYS: &[&OptionKeys] = &[&LOAD, &UP, &DOWN];

pub fn module(context: &Arc<Context>) -> Module {
    let mut module = Module::new();
    function!(&mut module,
        /// Reads a compose file into a project map `#{name, working_dir, config_file, profiles,
        /// services, networks, volumes, warnings}`. `${VAR}`, `${VAR:-default}` and
        /// `${VAR:?error}` are filled from the environment, then the `.env` file beside the
        /// compose file. Relative paths are made absolute, `env_file`s merged into
        /// `environment`, short syntax written long. A malformed file is an error naming the
        /// line; each key cutover does not support is a warning naming its line.
        ///
        /// ```rhai
        /// let project = compose::load("deploy/docker-compose.yml");
        /// print(project.services.keys());
        /// ```
        fn load[context](call, path: &str) -> Map {
            load(&context, path, Map::new())
        }
    );
    function!(&mut module,
        /// `load` with options: `env_file` (instead of `.env`), `profiles` (the active ones;
        /// default `$COMPOSE_PROFILES`), `project_name` (default `$COMPOSE_PROJECT_NAME`, the
        /// file's `name:`, then the directory's name).
        ///
        /// ```rhai
        /// let project = compose::load("deploy/docker-compose.yml",
        ///     #{env_file: "deploy/.env.blue-green", profiles: ["green"]});
        /// ```
        fn load[context](call, path: &str, options: Map) -> Map {
            load(&context, path, options)
        }
    );
    function!(&mut module,
        /// Brings the project up: creates its networks and volumes, builds images whose
        /// `build` context changed (or that are missing), pulls missing images, and starts
        /// every service its profiles enable, each as soon as what it `depends_on` is
        /// started, healthy or completed (independent services start together). A container
        /// whose configuration and image are unchanged is left alone; a changed one is
        /// recreated. Returns `#{created, recreated, started, restarted, unchanged, removed,
        /// networks, volumes, pulled, built}` (names).
        ///
        /// ```rhai
        /// let done = compose::up(compose::load("deploy/docker-compose.yml"));
        /// log::info(`${done.created.len()} created, ${done.unchanged.len()} unchanged`);
        /// ```
        fn up[context](call, project: Map) -> Map {
            up(&context, project, Map::new())
        }
    );
    function!(&mut module,
        /// `up` with options: `services` (only these, and what they depend on, whatever their
        /// profiles), `profiles` (instead of the project's), `scale` (`#{api: 3}`: replicas per
        /// service, surplus ones removed).
        ///
        /// ```rhai
        /// let project = compose::load("deploy/docker-compose.yml");
        /// compose::up(project, #{services: ["api"], scale: #{api: 3}});
        /// ```
        fn up[context](call, project: Map, options: Map) -> Map {
            up(&context, project, options)
        }
    );
    function!(&mut module,
        /// Stops and removes every container of the project (by its label, so replicas and
        /// services no longer in the file go too) and its networks. Returns
        /// `#{removed, networks, volumes}`.
        ///
        /// ```rhai
        /// compose::down(compose::load("deploy/docker-compose.yml"));
        /// ```
        fn down[context](call, project: Map) -> Map {
            down(&context, project, Map::new())
        }
    );
    function!(&mut module,
        /// `down` with options: `volumes: true` also removes the project's named volumes;
        /// `timeout` (ms, default 10 000) is how long each container may take to stop.
        ///
        /// ```rhai
        /// compose::down(compose::load("deploy/docker-compose.yml"), #{volumes: true, timeout: 5_000});
        /// ```
        fn down[context](call, project: Map, options: Map) -> Map {
            down(&context, project, options)
        }
    );
    function!(&mut module,
        /// The project's containers, by service and replica number: maps `#{name, service,
        /// number, state, status, health, id, image, image_id, ports}` (`image_id`: the
        /// `sha256:…` id of the image it runs), each of `ports` a map
        /// `#{host_ip, host_port, container_port, protocol}` (`host_port` is `()` when the port
        /// is not published).
        ///
        /// ```rhai
        /// for c in compose::ps(compose::load("deploy/docker-compose.yml")) {
        ///     print(`${c.name} ${c.state} ${c.health}`);
        /// }
        /// ```
        fn ps[context](call, project: Map) -> Array {
            let name = project_name(&project)?;
            let found = match context.take_ps(&name)? {
                Some(listed) => listed.map_err(fail)?,
                None => wait(&context, down::ps(&context.docker()?, &name))?,
            };
            found.into_iter().map(to_dynamic).collect()
        }
    );
    function!(&mut module,
        /// Starts listing the project's containers in the background, for the next
        /// `compose::ps` of the project, which then takes that listing instead of asking the
        /// engine itself: a runbook starts it before other round trips (the proxy's checks)
        /// and lists at no cost where it needs the containers. Any change made in between
        /// (a container started, a switch) drops it, so `compose::ps` never answers with
        /// containers as they were before a change, and so does a second's wait (the
        /// containers are then listed again); an engine error is `compose::ps`'s to say.
        ///
        /// ```rhai
        /// let project = compose::load("deploy/docker-compose.yml");
        /// compose::ps_ahead(project);
        /// let proxy_up = health::all(["http://127.0.0.1:2019/config/"]);
        /// let containers = compose::ps(project);
        /// ```
        fn ps_ahead[context](call, project: Map) -> () {
            context.ps_ahead(project_name(&project)?)
        }
    );
    module
}

const LOAD: OptionKeys = OptionKeys::new(
    "compose::load",
    &[&["env_file", "profiles", "project_name"]],
);

fn load(context: &Context, path: &str, options: Map) -> HostResult<Map> {
    let options = Options::new(&LOAD, options)?;
    let env_file = options.string("env_file")?.map(PathBuf::from);
    let env_file_vars = match &env_file {
        Some(path) => Some(context.read_env_file(path).map_err(fail)?),
        None => None,
    };
    let load_options = LoadOptions {
        env_file,
        env_file_vars,
        profiles: options.strings("profiles")?,
        project_name: options.string("project_name")?,
        fallback: context.env_files.lock().unwrap().vars.clone(),
        redactor: Some(context.secrets.clone()),
        // Kept beside the journal; a dry run or a readonly runbook writes no file.
        parse_cache: Some(ParseCache {
            dir: context.settings.state_dir.join("cache"),
            store: !context.is_dry_run() && !context.run_info().readonly,
        }),
    };
    let project = compose::load(std::path::Path::new(path), &load_options)
        .map_err(|e| fail_masked(context, e))?;
    for warning in &project.warnings {
        tracing::warn!("{warning}");
    }
    Ok(to_dynamic(&project)?.cast::<Map>())
}

fn project_name(project: &Map) -> HostResult<String> {
    match project.get("name") {
        Some(name) if name.is_string() => Ok(name.to_string()),
        _ => Err(fail(
            "expected a project map (as compose::load returns) with a `name`",
        )),
    }
}

const UP: OptionKeys = OptionKeys::new("compose::up", &[&["services", "profiles", "scale"]]);

fn up(context: &Context, project: Map, options: Map) -> HostResult<Map> {
    let options = Options::new(&UP, options)?;
    let mut scale = std::collections::BTreeMap::new();
    for (service, count) in options.map("scale")?.unwrap_or_default() {
        let count = count
            .as_int()
            .ok()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| {
                options.error(format!(
                    "the scale of {service} must be a count, not {} `{count}`",
                    count.type_name()
                ))
            })?;
        scale.insert(service.to_string(), count);
    }
    let up_options = UpOptions {
        services: options.strings("services")?.unwrap_or_default(),
        profiles: options.strings("profiles")?,
        scale,
    };
    let project =
        Project::from_node(&super::convert::to_tree(&Dynamic::from_map(project))).map_err(fail)?;
    let docker = context.docker()?;
    let plan = wait(context, plan::plan(&docker, &project, &up_options))?;
    let steps = plan.describe();
    carry_out(
        context,
        "compose::up",
        &project.name,
        &steps,
        || plan.report(),
        || {
            let progress = Progress::spinner(context, &format!("bringing {} up", project.name));
            let report_progress = |message: &str| progress.set_message(message);
            wait(context, plan.clone().apply(&docker, &report_progress))
        },
    )
}

const DOWN: OptionKeys = OptionKeys::new("compose::down", &[&["volumes", "timeout"]]);

fn down(context: &Context, project: Map, options: Map) -> HostResult<Map> {
    let options = Options::new(&DOWN, options)?;
    let volumes = options.bool("volumes")?.unwrap_or(false);
    let grace = options.millis("timeout")?;
    let name = project_name(&project)?;
    let docker = context.docker()?;
    let plan = wait(context, down::plan(&docker, &name, volumes))?;
    let steps = plan.describe();
    carry_out(
        context,
        "compose::down",
        &name,
        &steps,
        || plan.clone(),
        || wait(context, plan.clone().apply(&docker, grace)),
    )
}

/// Carries out a plan of `steps` on project `name` through the change gate, logging each step
/// (as `would …` in a dry run, which returns `dry()`); returns what was done as a map.
fn carry_out<T: serde::Serialize>(
    context: &Context,
    action: &str,
    name: &str,
    steps: &[String],
    dry: impl FnOnce() -> T,
    apply: impl FnOnce() -> HostResult<T>,
) -> HostResult<Map> {
    let detail = format!("project {name} ({} changes)", steps.len());
    let done = context.change(
        action,
        &detail,
        || {
            steps.iter().for_each(|step| tracing::info!("would {step}"));
            dry()
        },
        || {
            steps.iter().for_each(|step| tracing::info!("{step}"));
            apply()
        },
    )?;
    Ok(to_dynamic(done)?.cast::<Map>())
}
