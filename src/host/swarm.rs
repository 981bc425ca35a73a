//! `swarm::*`: a Docker Swarm through its manager's Engine API (`$CUTOVER_SWARM_HOST`, or the
//! engine `DOCKER_HOST` names). `up` makes swarm services `<project>_<service>` of a project
//! map (as `compose::load` returns it), `tasks` says where each runs, `wait` waits until each
//! has its replicas running, `drain` empties a node. Calls that change the swarm honour
//! `--dry-run`.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use rhai::{Array, Dynamic, Map, Module};

use super::{
    HostResult,
    convert::to_dynamic,
    fail, function,
    options::{OptionKeys, Options},
    wait,
};
use crate::{compose::Project, context::Context, swarm};

/// Where the manager is: `$CUTOVER_SWARM_HOST`, or the engine `DOCKER_HOST` names.
pub(super) fn manager(context: &Context) -> String {
    context
        .env_var("CUTOVER_SWARM_HOST")
        .filter(|h| !h.is_empty())
        .unwrap_or_else(crate::docker::engine_address)
}

fn connect(context: &Context) -> HostResult<bollard::Docker> {
    wait(context, swarm::connect(&manager(context)))
}

fn project_of(project: Map) -> HostResult<Project> {
    Project::from_node(&super::convert::to_tree(&Dynamic::from_map(project))).map_err(fail)
}

fn array<T: serde::Serialize>(items: Vec<T>) -> HostResult<Array> {
    items.into_iter().map(to_dynamic).collect()
}

/// The option keys of the host functions of this module.
pub(super) const OPTION_KEYS: &[&OptionKeys] = &[&UP, &WAIT, &DOWN, &LOGS];

const LOGS: OptionKeys = OptionKeys::new("swarm::logs", &super::docker::LOGS_KEYS);

const WAIT: OptionKeys = OptionKeys::new("swarm::wait", &[&["services", "timeout"]]);

pub fn module(context: &Arc<Context>) -> Module {
    let mut module = Module::new();
    function!(&mut module,
        /// The swarm's nodes, by name: maps `#{id, name, addr, role, availability, state,
        /// leader, message}` (`role`: manager or worker; `availability`: active, pause or
        /// drain; `state`: ready, down, …; `message`: why a node is down).
        ///
        /// ```rhai
        /// for n in swarm::nodes() { print(`${n.name} ${n.state} ${n.availability}`); }
        /// ```
        fn nodes[context](call) -> Array {
            let docker = connect(&context)?;
            array(wait(&context, swarm::nodes(&docker))?)
        }
    );
    function!(&mut module,
        /// The project's swarm services: maps `#{name, service, image, replicas, update}`
        /// (`service`: the compose service; `update`: the state of Swarm's last rolling update).
        ///
        /// ```rhai
        /// for s in swarm::services(compose::load("deploy/docker-compose.yml")) { print(`${s.name} ${s.replicas}`); }
        /// ```
        fn services[context](call, project: Map) -> Array {
            let name = project_name(&project)?;
            let docker = connect(&context)?;
            array(wait(&context, swarm::services(&docker, &name))?)
        }
    );
    function!(&mut module,
        /// The tasks Swarm wants running for the project's services, as `compose::ps` lists
        /// containers: maps `#{id, name, service, number, node, addr, node_state, state,
        /// desired, health, status, message, error, image, ports}`. `number` is the task's slot, `node` and `addr` the
        /// node it runs on, `state` Swarm's (a task is `running` once its healthcheck passes),
        /// each of `ports` `#{host_ip, host_port, container_port, protocol}` with the node's
        /// address as `host_ip`.
        ///
        /// ```rhai
        /// for t in swarm::tasks(compose::load("deploy/docker-compose.yml")) { print(`${t.name} on ${t.node}: ${t.state}`); }
        /// ```
        fn tasks[context](call, project: Map) -> Array {
            let name = project_name(&project)?;
            let docker = connect(&context)?;
            let tasks = wait(&context, swarm::tasks(&docker, &name))?;
            tasks.into_iter().map(task_map).collect()
        }
    );
    function!(&mut module,
        /// Creates or updates the swarm services `<project>_<service>` of every service of the
        /// project (its networks become overlay networks), warning about each key of the file
        /// Swarm ignores, with its line. An unchanged service is left alone. Returns
        /// `#{created, updated, unchanged, networks}`.
        ///
        /// ```rhai
        /// swarm::up(compose::load("deploy/docker-compose.yml"));
        /// ```
        fn up[context](call, project: Map) -> Map {
            up(&context, project, Map::new())
        }
    );
    function!(&mut module,
        /// `up` with options: `services` (only these compose services), `replicas`
        /// (`#{api: 3}`, instead of `deploy.replicas`).
        ///
        /// ```rhai
        /// let project = compose::load("deploy/docker-compose.yml");
        /// swarm::up(project, #{services: ["api"], replicas: #{api: 3}});
        /// ```
        fn up[context](call, project: Map, options: Map) -> Map {
            up(&context, project, options)
        }
    );
    function!(&mut module,
        /// Waits until each of `services` (compose service names of the project; all when
        /// empty) has its desired replicas running, at most `timeout` ms (default 60 000), and
        /// returns the tasks. Throws naming each service that did not, and why (a task that
        /// cannot be placed on any node fails at once with Swarm's reason).
        ///
        /// ```rhai
        /// let project = compose::load("deploy/docker-compose.yml");
        /// swarm::wait(project, #{services: ["api"], timeout: 30_000});
        /// ```
        fn wait[context](call, project: Map, options: Map) -> Array {
            let options = Options::new(&WAIT, options)?;
            let services = options.strings("services")?.unwrap_or_default();
            let timeout = options.millis("timeout")?.unwrap_or(Duration::from_secs(60));
            let name = project_name(&project)?;
            let docker = connect(&context)?;
            let tasks = wait(&context, swarm::converge(&docker, &name, &services, timeout))?;
            tasks.into_iter().map(task_map).collect()
        }
    );
    function!(&mut module,
        /// Removes every swarm service of the project, and its overlay networks. Returns
        /// `#{updated, networks}` (`updated`: the services removed).
        ///
        /// ```rhai
        /// swarm::down(compose::load("deploy/docker-compose.yml"));
        /// ```
        fn down[context](call, project: Map) -> Map {
            down(&context, project, Map::new())
        }
    );
    function!(&mut module,
        /// `down` with options: `services` (only these compose services; the networks stay).
        ///
        /// ```rhai
        /// swarm::down(compose::load("deploy/docker-compose.yml"), #{services: ["api"]});
        /// ```
        fn down[context](call, project: Map, options: Map) -> Map {
            down(&context, project, options)
        }
    );
    function!(&mut module,
        /// Sets the replicas of the project's compose service `service` (its swarm service
        /// `<project>_<service>`); Swarm places the new tasks or stops the surplus ones and
        /// leaves the others running. The service is written as `up` writes it, from the
        /// project (a change of the file since it was brought up goes with it, as compose
        /// scales).
        ///
        /// ```rhai
        /// swarm::scale(compose::load("deploy/docker-compose.yml"), "api", 3);
        /// ```
        fn scale[context](call, project: Map, service: &str, replicas: i64) -> () {
            let replicas = u32::try_from(replicas)
                .map_err(|_| fail(format!("swarm::scale: {replicas} is not a count of replicas")))?;
            let project = project_of(project)?;
            let swarm_name = swarm::spec::service_name(&project.name, service);
            let docker = connect(&context)?;
            context.change(
                "swarm::scale",
                &format!("{swarm_name} to {replicas}"),
                || tracing::info!("would scale {swarm_name} to {replicas}"),
                || {
                    wait(&context, swarm::scale(&docker, &project, service, replicas))?;
                    tracing::info!("{swarm_name}: {replicas} replicas");
                    Ok(())
                },
            )
        }
    );
    function!(&mut module,
        /// The logs of the project's compose service `service` (its swarm service
        /// `<project>_<service>`): every task's, wherever it runs, gathered by the manager
        /// (stdout and stderr as written; nodes the manager cannot reach are warned about, by
        /// name, and the rest is read). The options of `docker::logs`:
        /// `tail`, `since` (ms since the epoch), `timestamps`, `to` (a file; returns the byte
        /// count; writing it is a change), `append`, `prefix` (each line written to `to`
        /// starts with `<project>_<service> | `), `follow`, `timeout`.
        ///
        /// ```rhai
        /// let project = compose::load("deploy/docker-compose.yml");
        /// print(swarm::logs(project, "api", #{tail: 50}));
        /// swarm::logs(project, "api", #{to: "logs/api.log", append: true, prefix: true});
        /// ```
        fn logs[context](call, project: Map, service: &str, options: Map) -> Dynamic {
            let name = swarm::spec::service_name(&project_name(&project)?, service);
            let docker = connect(&context)?;
            // A node the manager cannot reach is said by name, not by id.
            let names = wait(&context, swarm::nodes(&docker))?
                .into_iter()
                .map(|n| (n.id, n.name))
                .collect();
            super::docker::read_logs(&context, &docker, &LOGS, &name,
                (crate::docker::io::LogSource::Service, names), options)
        }
    );
    function!(&mut module,
        /// Drains node `node` (its name or id): Swarm stops its tasks and starts them on the
        /// other nodes. Returns the node as `nodes` lists it.
        ///
        /// ```rhai
        /// swarm::drain("worker-1");
        /// ```
        fn drain[context](call, node: &str) -> Map {
            availability(&context, node, "drain")
        }
    );
    function!(&mut module,
        /// Makes node `node` take tasks again (availability `active`), after a `drain`.
        ///
        /// ```rhai
        /// swarm::activate("worker-1");
        /// ```
        fn activate[context](call, node: &str) -> Map {
            availability(&context, node, "active")
        }
    );
    function!(&mut module,
        /// Makes the manager's engine (`$CUTOVER_SWARM_HOST`) the first manager of a new swarm,
        /// advertised on `addr`. Returns its node id.
        ///
        /// ```rhai
        /// swarm::init("10.0.0.11");
        /// ```
        fn init[context](call, addr: &str) -> String {
            let docker = connect(&context)?;
            context.change(
                "swarm::init",
                addr,
                || format!("would initialise a swarm on {addr}"),
                || wait(&context, swarm::init(&docker, addr)),
            )
        }
    );
    function!(&mut module,
        /// The token a node joins the swarm with, as a `worker` or a `manager` (a secret: it is
        /// masked in every log and message).
        ///
        /// ```rhai
        /// let token = swarm::join_token("worker");
        /// ```
        fn join_token[context](call, role: &str) -> String {
            let docker = connect(&context)?;
            let token = wait(&context, swarm::join_token(&docker, role))?;
            context.secrets.add(&token);
            Ok(token)
        }
    );
    function!(&mut module,
        /// Makes the engine at `engine` (`unix://…` or `tcp://…`), advertised on `addr`, join
        /// the swarm managed at `manager` (`ADDR[:2377]`) with `token`.
        ///
        /// ```rhai
        /// swarm::join("tcp://10.0.0.12:2375", "10.0.0.12", "10.0.0.11", swarm::join_token("worker"));
        /// ```
        fn join[context](call, engine: &str, addr: &str, manager: &str, token: &str) -> () {
            context.secrets.add(token);
            let docker = wait(&context, swarm::connect(engine))?;
            context.change(
                "swarm::join",
                &format!("{engine} ({addr}) to {manager}"),
                || tracing::info!("would join {engine} to the swarm at {manager}"),
                || wait(&context, swarm::join(&docker, addr, manager, token)),
            )
        }
    );
    module
}

fn project_name(project: &Map) -> HostResult<String> {
    match project.get("name") {
        Some(name) if name.is_string() => Ok(name.to_string()),
        _ => Err(fail(
            "expected a project map (as compose::load returns) with a `name`",
        )),
    }
}

/// A task as a map shaped like a container of `compose::ps` (`name`, `health` added).
fn task_map(task: swarm::TaskInfo) -> HostResult<Dynamic> {
    let name = format!("{}.{}", task.swarm_service, task.number);
    let health = match task.state.as_str() {
        "running" => "healthy",
        "starting" => "starting",
        _ => "unhealthy",
    };
    let mut map = to_dynamic(&task)?.cast::<Map>();
    let task = &task;
    map.insert("name".into(), name.into());
    map.insert("health".into(), health.into());
    map.insert("status".into(), task.message.clone().into());
    Ok(map.into())
}

const UP: OptionKeys = OptionKeys::new("swarm::up", &[&["services", "replicas"]]);

fn up(context: &Context, project: Map, options: Map) -> HostResult<Map> {
    let options = Options::new(&UP, options)?;
    let mut replicas = BTreeMap::new();
    for (service, count) in options.map("replicas")?.unwrap_or_default() {
        let count = count
            .as_int()
            .ok()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| options.error(format!("the replicas of {service} must be a count")))?;
        replicas.insert(service.to_string(), count);
    }
    let project = project_of(project)?;
    let services = options
        .strings("services")?
        .unwrap_or_else(|| project.services.keys().cloned().collect());
    for warning in &project.swarm_warnings {
        let service = warning
            .split(": services.")
            .nth(1)
            .and_then(|rest| rest.split(['.', ':']).next());
        if service.is_none_or(|s| services.iter().any(|name| name == s)) {
            tracing::warn!("{warning}");
        }
    }
    let docker = connect(context)?;
    let detail = format!("{} of project {}", services.join(", "), project.name);
    let done = context.change(
        "swarm::up",
        &detail,
        || {
            tracing::info!("would create or update swarm services {detail}");
            swarm::UpReport::default()
        },
        || {
            let report = wait(context, swarm::up(&docker, &project, &services, &replicas))?;
            for name in &report.created {
                tracing::info!("created swarm service {name}");
            }
            for name in &report.updated {
                tracing::info!("updated swarm service {name}");
            }
            Ok(report)
        },
    )?;
    Ok(to_dynamic(done)?.cast::<Map>())
}

const DOWN: OptionKeys = OptionKeys::new("swarm::down", &[&["services"]]);

fn down(context: &Context, project: Map, options: Map) -> HostResult<Map> {
    let options = Options::new(&DOWN, options)?;
    let name = project_name(&project)?;
    let only: Option<Vec<String>> = options.strings("services")?.map(|s| {
        s.iter()
            .map(|s| swarm::spec::service_name(&name, s))
            .collect()
    });
    let docker = connect(context)?;
    let done = context.change(
        "swarm::down",
        &format!("project {name}"),
        || {
            tracing::info!("would remove the swarm services of {name}");
            swarm::UpReport::default()
        },
        || wait(context, swarm::down(&docker, &name, only.as_deref())),
    )?;
    Ok(to_dynamic(done)?.cast::<Map>())
}

fn availability(context: &Context, node: &str, availability: &str) -> HostResult<Map> {
    let docker = connect(context)?;
    let done = context.change(
        &format!(
            "swarm::{}",
            if availability == "drain" {
                "drain"
            } else {
                "activate"
            }
        ),
        node,
        || None,
        || {
            let node_info = wait(
                context,
                swarm::set_availability(&docker, node, availability),
            )?;
            tracing::info!("node {}: {availability}", node_info.name);
            Ok(Some(node_info))
        },
    )?;
    match done {
        Some(info) => Ok(to_dynamic(info)?.cast::<Map>()),
        None => {
            tracing::info!("would set node {node} to {availability}");
            Ok(Map::new())
        }
    }
}
