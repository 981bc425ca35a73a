//! Docker Swarm, for stacks that outgrow one host (`CUTOVER_ORCHESTRATOR=swarm`). Swarm is the
//! distributed engine; cutover only asks it, through the manager's Engine API, for what the
//! blue-green runbooks need: services made from the same compose file ([`spec`]), their tasks
//! and the nodes those run on, replicas, and a node's availability (drain).
//!
//! Each compose service becomes the swarm service `<project>_<service>`, labelled with its
//! project as `docker stack deploy` labels it, so `down` and `tasks` find them by that label.
//! An unchanged service is left alone (a hash of its spec is one of its labels); a changed one
//! is updated, and Swarm replaces its tasks as its `deploy.update_config` says.
//!
//! This kernel-independent subset needs no IPVS: services use `endpoint_mode: dnsrr` and
//! publish their ports in `mode: host`, so a task answers on its node's own address — the
//! addresses [`tasks`] reports, which the proxy dials.
//!
//! An environment is healthy on a swarm when [`converge`] finds every service with its desired
//! replicas running (Swarm reports a task `running` only once its healthcheck passes), wherever
//! they are, and [`task_health`] finds each task wanted running, running and on a ready node. A
//! task that cannot be placed (a constraint no node meets) fails `converge` at once, naming
//! Swarm's reason, instead of waiting out the timeout.

pub(crate) mod spec;

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant},
};

use bollard::{
    Docker,
    models::{
        NetworkCreateRequest, NodeSpecAvailabilityEnum, ServiceSpec, SwarmInitRequest,
        SwarmJoinRequest,
    },
    query_parameters::{
        ListNetworksOptionsBuilder, ListServicesOptionsBuilder, ListTasksOptionsBuilder,
        UpdateNodeOptionsBuilder, UpdateServiceOptionsBuilder,
    },
};
use serde::Serialize;

use crate::{
    compose::Project,
    docker::{Doing, EngineError},
    swarm::spec::{HASH_LABEL, NAMESPACE_LABEL, SERVICE_LABEL},
};

#[derive(Debug, thiserror::Error)]
pub enum SwarmError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("cannot reach the swarm manager at {host}: {why}")]
    Connect { host: String, why: String },
    #[error("{0}")]
    Invalid(String),
    /// Services that did not converge, each with why.
    #[error("{0}")]
    NotConverged(String),
}

/// One node of the swarm, as the manager sees it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeInfo {
    pub id: String,
    /// Its hostname.
    pub name: String,
    pub addr: String,
    /// `manager` or `worker`.
    pub role: String,
    /// `active`, `pause` or `drain`.
    pub availability: String,
    /// `ready`, `down`, `unknown` or `disconnected`.
    pub state: String,
    pub leader: bool,
    /// Swarm's message about its state ("heartbeat failure" for a lost node).
    pub message: String,
}

/// One task of a project's service that Swarm wants running.
#[derive(Debug, Clone, Serialize)]
pub struct TaskInfo {
    pub id: String,
    /// The swarm service: `<project>_<service>`.
    pub swarm_service: String,
    /// The compose service it was made from.
    pub service: String,
    /// Its slot (replica number).
    pub number: i64,
    /// The node's hostname, and its address (where host-mode ports answer).
    pub node: String,
    pub addr: String,
    /// The node's state (`ready`, `down`, …): a task on a lost node may still say `running`.
    pub node_state: String,
    /// Swarm's state of the task: `pending`, `starting`, `running`, `failed`, …
    pub state: String,
    pub desired: String,
    pub message: String,
    pub error: String,
    pub image: String,
    /// `#{host_ip, host_port, container_port, protocol}`, host_ip being the node's address.
    pub ports: Vec<TaskPort>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskPort {
    pub host_ip: String,
    pub host_port: Option<i64>,
    pub container_port: i64,
    pub protocol: String,
}

/// One swarm service of a project.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceInfo {
    pub name: String,
    pub service: String,
    pub image: String,
    pub replicas: i64,
    /// Swarm's rolling update, when one ran: `updating`, `completed`, `paused`, …
    pub update: String,
}

/// What `up` did, by swarm service name.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UpReport {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: Vec<String>,
    pub networks: Vec<String>,
}

/// Connects to the manager at `host` (`unix://…` or `tcp://…`).
pub async fn connect(host: &str) -> Result<Docker, SwarmError> {
    let fail = |why: String| SwarmError::Connect {
        host: host.to_string(),
        why,
    };
    use crate::docker::DockerConnectError::{Address, TimedOut, Unreachable};
    crate::docker::connect_to(host, Duration::from_secs(5))
        .await
        .map_err(|error| match error {
            Address { source, .. } | Unreachable { source, .. } => {
                fail(crate::docker::describe(&source))
            }
            TimedOut { within, .. } => fail(format!("no answer within {} s", within.as_secs())),
        })
}

fn label_filter(label: String) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_string(), vec![label])])
}

fn lower<T: std::fmt::Display>(value: Option<T>) -> String {
    value
        .map(|v| v.to_string().to_lowercase())
        .unwrap_or_default()
}

/// Every node, by name.
pub async fn nodes(docker: &Docker) -> Result<Vec<NodeInfo>, SwarmError> {
    let mut found: Vec<NodeInfo> = docker
        .list_nodes(None)
        .await
        .doing("list the swarm's nodes")?
        .into_iter()
        .map(|node| {
            let spec = node.spec.unwrap_or_default();
            let status = node.status.unwrap_or_default();
            NodeInfo {
                id: node.id.unwrap_or_default(),
                name: node
                    .description
                    .and_then(|d| d.hostname)
                    .unwrap_or_default(),
                addr: status.addr.unwrap_or_default(),
                role: lower(spec.role),
                availability: lower(spec.availability),
                state: lower(status.state),
                leader: node.manager_status.and_then(|m| m.leader).unwrap_or(false),
                message: status.message.unwrap_or_default(),
            }
        })
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// The project's services, by name.
pub async fn services(docker: &Docker, project: &str) -> Result<Vec<ServiceInfo>, SwarmError> {
    let options = ListServicesOptionsBuilder::default()
        .filters(&label_filter(format!("{NAMESPACE_LABEL}={project}")))
        .build();
    let mut found: Vec<ServiceInfo> = docker
        .list_services(Some(options))
        .await
        .doing(format!("list the services of {project}"))?
        .into_iter()
        .map(|s| {
            let spec = s.spec.unwrap_or_default();
            ServiceInfo {
                name: spec.name.clone().unwrap_or_default(),
                service: spec
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(SERVICE_LABEL).cloned())
                    .unwrap_or_default(),
                image: image_of(&spec),
                replicas: replicas_of(&spec),
                update: lower(s.update_status.and_then(|u| u.state)),
            }
        })
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

fn image_of(spec: &ServiceSpec) -> String {
    let image = spec
        .task_template
        .as_ref()
        .and_then(|t| t.container_spec.as_ref())
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    // A resolved image carries its digest: `api:v2@sha256:…` is shown as `api:v2`.
    image.split('@').next().unwrap_or_default().to_string()
}

fn replicas_of(spec: &ServiceSpec) -> i64 {
    spec.mode
        .as_ref()
        .and_then(|m| m.replicated.as_ref())
        .and_then(|r| r.replicas)
        .unwrap_or(0)
}

/// The tasks Swarm wants running for the project's services, by service and slot, each with
/// the node it is on.
pub async fn tasks(docker: &Docker, project: &str) -> Result<Vec<TaskInfo>, SwarmError> {
    let nodes: HashMap<String, NodeInfo> = nodes(docker)
        .await?
        .into_iter()
        .map(|n| (n.id.clone(), n))
        .collect();
    let services: HashMap<String, (String, String)> = {
        let options = ListServicesOptionsBuilder::default()
            .filters(&label_filter(format!("{NAMESPACE_LABEL}={project}")))
            .build();
        docker
            .list_services(Some(options))
            .await
            .doing(format!("list the services of {project}"))?
            .into_iter()
            .map(|s| {
                let spec = s.spec.unwrap_or_default();
                let key = spec
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(SERVICE_LABEL).cloned())
                    .unwrap_or_default();
                (
                    s.id.unwrap_or_default(),
                    (spec.name.unwrap_or_default(), key),
                )
            })
            .collect()
    };
    let options = ListTasksOptionsBuilder::default()
        .filters(&HashMap::from([(
            "desired-state".to_string(),
            vec!["running".to_string()],
        )]))
        .build();
    let mut found = Vec::new();
    for task in docker
        .list_tasks(Some(options))
        .await
        .doing(format!("list the tasks of {project}"))?
    {
        let Some((swarm_service, service)) = task
            .service_id
            .as_ref()
            .and_then(|id| services.get(id))
            .cloned()
        else {
            continue;
        };
        let node = task.node_id.as_ref().and_then(|id| nodes.get(id));
        let addr = node.map(|n| n.addr.clone()).unwrap_or_default();
        let status = task.status.clone().unwrap_or_default();
        let spec = task.spec.clone().unwrap_or_default();
        let image = spec
            .container_spec
            .and_then(|c| c.image)
            .unwrap_or_default()
            .split('@')
            .next()
            .unwrap_or_default()
            .to_string();
        let ports = status
            .port_status
            .and_then(|p| p.ports)
            .unwrap_or_default()
            .into_iter()
            .map(|p| TaskPort {
                host_ip: addr.clone(),
                host_port: p.published_port,
                container_port: p.target_port.unwrap_or_default(),
                protocol: lower(p.protocol),
            })
            .collect();
        found.push(TaskInfo {
            id: task.id.clone().unwrap_or_default(),
            swarm_service,
            service,
            number: task.slot.unwrap_or_default(),
            node: node.map(|n| n.name.clone()).unwrap_or_default(),
            addr,
            node_state: node.map(|n| n.state.clone()).unwrap_or_default(),
            state: lower(status.state),
            desired: lower(task.desired_state),
            message: status.message.unwrap_or_default(),
            error: status.err.unwrap_or_default(),
            image,
            ports,
        });
    }
    found.sort_by(|a, b| (&a.service, a.number).cmp(&(&b.service, b.number)));
    Ok(found)
}

/// A task and its node as the manager reports them: what [`task_health`] judges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct TaskReport {
    /// Swarm's state of the task (`pending`, `starting`, `running`, `failed`, …) and the one
    /// it wants (`running`, or `shutdown` for a task being replaced or removed).
    state: String,
    desired: String,
    message: String,
    error: String,
    /// The node it is assigned to, empty until Swarm places it.
    node_id: String,
    /// That node, `None` when the manager no longer knows it.
    node: Option<NodeReport>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct NodeReport {
    name: String,
    state: String,
    message: String,
}

/// Whether task `id` is healthy, as the manager sees it: Swarm wants it running, it is running
/// (which Swarm reports only once its container's healthcheck passes) and its node is ready.
/// `Ok` with where it runs, or `Err` with what is wrong (`no such task` for one that is gone).
pub async fn task_health(docker: &Docker, id: &str) -> Result<String, String> {
    let not_found = |error: &bollard::errors::Error| {
        matches!(
            error,
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                ..
            }
        )
    };
    let task = match docker.inspect_task(id).await {
        Ok(task) => task,
        Err(error) if not_found(&error) => return Err("no such task".to_string()),
        Err(error) => {
            return Err(format!(
                "cannot ask the manager: {}",
                crate::docker::describe(&error)
            ));
        }
    };
    let status = task.status.unwrap_or_default();
    let node_id = task.node_id.unwrap_or_default();
    let node = if node_id.is_empty() {
        None
    } else {
        match docker.inspect_node(&node_id).await {
            Ok(node) => {
                let status = node.status.unwrap_or_default();
                Some(NodeReport {
                    name: node
                        .description
                        .and_then(|d| d.hostname)
                        .unwrap_or_else(|| node_id.clone()),
                    state: lower(status.state),
                    message: status.message.unwrap_or_default(),
                })
            }
            Err(error) if not_found(&error) => None,
            Err(error) => {
                return Err(format!(
                    "cannot ask the manager about its node {node_id}: {}",
                    crate::docker::describe(&error)
                ));
            }
        }
    };
    judge_task(&TaskReport {
        state: lower(status.state),
        desired: lower(task.desired_state),
        message: status.message.unwrap_or_default(),
        error: status.err.unwrap_or_default(),
        node_id,
        node,
    })
}

/// The judgement of [`task_health`]: `running on worker-1, node ready`, or what keeps the task
/// from it — `starting on worker-1, node ready`, `pending on no node yet (no suitable node
/// (…))`, `running on worker-1, node worker-1 is down (heartbeat failure); Swarm wants it
/// shutdown`.
fn judge_task(task: &TaskReport) -> Result<String, String> {
    // Swarm's error says most; its message only when it adds to the state ("started" of a
    // running task, "starting" of a starting one, say nothing).
    let why = if !task.error.is_empty() {
        task.error.as_str()
    } else if task.state != "running" && task.message != task.state {
        task.message.as_str()
    } else {
        ""
    };
    let why = if why.is_empty() {
        String::new()
    } else {
        format!(" ({why})")
    };
    let ready = task.node.as_ref().is_some_and(|n| n.state == "ready");
    let mut detail = match &task.node {
        _ if task.node_id.is_empty() => format!("{} on no node yet{why}", task.state),
        None => format!(
            "{} on a node no longer in the swarm ({}){why}",
            task.state, task.node_id
        ),
        Some(node) if ready => format!("{} on {}{why}, node ready", task.state, node.name),
        Some(node) => {
            let message = if node.message.is_empty() {
                String::new()
            } else {
                format!(" ({})", node.message)
            };
            format!(
                "{} on {}{why}, node {} is {}{message}",
                task.state, node.name, node.name, node.state
            )
        }
    };
    let wanted = task.desired == "running";
    if !wanted {
        detail.push_str(&format!("; Swarm wants it {}", task.desired));
    }
    if wanted && task.state == "running" && ready {
        Ok(detail)
    } else {
        Err(detail)
    }
}

/// Creates or updates the swarm services for `services` of `project` (and the overlay networks
/// they are on). A service whose spec is unchanged is left alone; `replicas` (by compose
/// service) overrides `deploy.replicas`.
pub async fn up(
    docker: &Docker,
    project: &Project,
    services: &[String],
    replicas: &BTreeMap<String, u32>,
) -> Result<UpReport, SwarmError> {
    let mut report = UpReport::default();
    for name in services {
        if !project.services.contains_key(name) {
            return Err(SwarmError::Invalid(format!(
                "no service {name} in project {}",
                project.name
            )));
        }
    }
    let existing = existing_services(docker, &project.name).await?;
    let networks = existing_networks(docker).await?;
    for name in services {
        let service = &project.services[name];
        let mut spec = spec::service_spec(project, name, service);
        if let Some(count) = replicas.get(name) {
            set_replicas(&mut spec, i64::from(*count));
        }
        for attachment in spec
            .task_template
            .as_ref()
            .and_then(|t| t.networks.clone())
            .unwrap_or_default()
        {
            let network = attachment.target.unwrap_or_default();
            if !networks.contains(&network) && !report.networks.contains(&network) {
                create_network(docker, &project.name, &network).await?;
                report.networks.push(network);
            }
        }
        let swarm_name = spec.name.clone().unwrap_or_default();
        match existing.get(&swarm_name) {
            None => {
                docker
                    .create_service(spec, None)
                    .await
                    .doing(format!("create service {swarm_name}"))?;
                report.created.push(swarm_name);
            }
            Some((version, current)) => {
                let same_hash = current.labels.as_ref().and_then(|l| l.get(HASH_LABEL))
                    == spec.labels.as_ref().and_then(|l| l.get(HASH_LABEL));
                if !replicas.contains_key(name) && service.deploy.replicas.is_none() {
                    // Replicas set by `scale` stay as they are when the file names none.
                    set_replicas(&mut spec, replicas_of(current));
                }
                if same_hash && replicas_of(current) == replicas_of(&spec) {
                    report.unchanged.push(swarm_name);
                    continue;
                }
                update_service(docker, &swarm_name, *version, spec).await?;
                report.updated.push(swarm_name);
            }
        }
    }
    Ok(report)
}

fn set_replicas(spec: &mut ServiceSpec, count: i64) {
    if let Some(replicated) = spec.mode.as_mut().and_then(|m| m.replicated.as_mut()) {
        replicated.replicas = Some(count);
    }
}

async fn existing_services(
    docker: &Docker,
    project: &str,
) -> Result<HashMap<String, (i32, ServiceSpec)>, SwarmError> {
    let options = ListServicesOptionsBuilder::default()
        .filters(&label_filter(format!("{NAMESPACE_LABEL}={project}")))
        .build();
    Ok(docker
        .list_services(Some(options))
        .await
        .doing(format!("list the services of {project}"))?
        .into_iter()
        .filter_map(|s| {
            let spec = s.spec?;
            let version = s.version.and_then(|v| v.index).unwrap_or_default() as i32;
            Some((spec.name.clone()?, (version, spec)))
        })
        .collect())
}

async fn existing_networks(docker: &Docker) -> Result<Vec<String>, SwarmError> {
    let options = ListNetworksOptionsBuilder::default().build();
    Ok(docker
        .list_networks(Some(options))
        .await
        .doing("list networks")?
        .into_iter()
        .filter_map(|n| n.name)
        .collect())
}

async fn create_network(docker: &Docker, project: &str, name: &str) -> Result<(), SwarmError> {
    let request = NetworkCreateRequest {
        name: name.to_string(),
        driver: Some("overlay".into()),
        attachable: Some(true),
        labels: Some(HashMap::from([(
            NAMESPACE_LABEL.to_string(),
            project.to_string(),
        )])),
        ..Default::default()
    };
    docker
        .create_network(request)
        .await
        .doing(format!("create overlay network {name}"))?;
    Ok(())
}

async fn update_service(
    docker: &Docker,
    name: &str,
    version: i32,
    spec: ServiceSpec,
) -> Result<(), SwarmError> {
    let options = UpdateServiceOptionsBuilder::default()
        .version(version)
        .build();
    docker
        .update_service(name, spec, options, None)
        .await
        .doing(format!("update service {name}"))?;
    Ok(())
}

/// Sets the replicas of compose service `service` of `project` (its swarm service
/// `<project>_<service>`), leaving its tasks as they are: the spec written is the one [`up`]
/// makes from the project with `replicas` instead of `deploy.replicas`, as compose scales from
/// the file. Never the engine's spec read back and written again: bollard reads a service's
/// healthcheck under `HealthCheck` where the engine writes `Healthcheck`, so a spec read back
/// has lost its healthcheck, and writing it back makes Swarm replace every task of the service
/// (one replica with `stop-first`: an outage) and run the new ones unchecked.
pub async fn scale(
    docker: &Docker,
    project: &Project,
    service: &str,
    replicas: u32,
) -> Result<UpReport, SwarmError> {
    let replicas = BTreeMap::from([(service.to_string(), replicas)]);
    up(docker, project, &[service.to_string()], &replicas).await
}

/// Removes `names` (swarm services) of `project`, or all of them, and (when all go) its
/// overlay networks. Returns what was removed.
pub async fn down(
    docker: &Docker,
    project: &str,
    names: Option<&[String]>,
) -> Result<UpReport, SwarmError> {
    let mut report = UpReport::default();
    for (name, _) in existing_services(docker, project).await? {
        if names.is_none_or(|only| only.contains(&name)) {
            docker
                .delete_service(&name)
                .await
                .doing(format!("remove service {name}"))?;
            report.updated.push(name);
        }
    }
    if names.is_none() {
        let options = ListNetworksOptionsBuilder::default()
            .filters(&label_filter(format!("{NAMESPACE_LABEL}={project}")))
            .build();
        for network in docker
            .list_networks(Some(options))
            .await
            .doing(format!("list the networks of {project}"))?
        {
            let Some(name) = network.name else { continue };
            // Tasks leave their networks a moment after their service goes.
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                match docker.remove_network(&name).await {
                    Ok(()) => break,
                    Err(_) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                    Err(e) => Err::<(), _>(e).doing(format!("remove network {name}"))?,
                }
            }
            report.networks.push(name);
        }
    }
    report.updated.sort();
    Ok(report)
}

/// Sets node `name`'s availability: `active`, `pause` or `drain`.
pub async fn set_availability(
    docker: &Docker,
    name: &str,
    availability: &str,
) -> Result<NodeInfo, SwarmError> {
    let wanted = match availability {
        "active" => NodeSpecAvailabilityEnum::ACTIVE,
        "pause" => NodeSpecAvailabilityEnum::PAUSE,
        "drain" => NodeSpecAvailabilityEnum::DRAIN,
        other => {
            return Err(SwarmError::Invalid(format!(
                "availability {other:?}: expected active, pause or drain"
            )));
        }
    };
    let all = nodes(docker).await?;
    let Some(found) = all.iter().find(|n| n.name == name || n.id == name) else {
        let names: Vec<&str> = all.iter().map(|n| n.name.as_str()).collect();
        return Err(SwarmError::Invalid(format!(
            "no node {name} in the swarm: its nodes are {}",
            names.join(", ")
        )));
    };
    let node = docker
        .inspect_node(&found.id)
        .await
        .doing(format!("inspect node {name}"))?;
    let version = node.version.and_then(|v| v.index).unwrap_or_default() as i64;
    let mut spec = node.spec.unwrap_or_default();
    spec.availability = Some(wanted);
    let options = UpdateNodeOptionsBuilder::default().version(version).build();
    docker
        .update_node(&found.id, spec, options)
        .await
        .doing(format!("set node {name} to {availability}"))?;
    let mut updated = found.clone();
    updated.availability = availability.to_string();
    Ok(updated)
}

/// Makes this engine a swarm's first manager, advertised on `addr`. Returns the node id.
pub async fn init(docker: &Docker, addr: &str) -> Result<String, SwarmError> {
    let request = SwarmInitRequest {
        advertise_addr: Some(addr.to_string()),
        listen_addr: Some(format!("{addr}:2377")),
        ..Default::default()
    };
    Ok(docker
        .init_swarm(request)
        .await
        .doing(format!("initialise a swarm advertised on {addr}"))?)
}

/// The token a node joins with as a `worker` or a `manager`.
pub async fn join_token(docker: &Docker, role: &str) -> Result<String, SwarmError> {
    let swarm = docker.inspect_swarm().await.doing("inspect the swarm")?;
    let tokens = swarm.join_tokens.unwrap_or_default();
    match role {
        "worker" => Ok(tokens.worker.unwrap_or_default()),
        "manager" => Ok(tokens.manager.unwrap_or_default()),
        other => Err(SwarmError::Invalid(format!(
            "role {other:?}: expected worker or manager"
        ))),
    }
}

/// Makes this engine (advertised on `addr`) join the swarm managed at `manager` with `token`.
pub async fn join(
    docker: &Docker,
    addr: &str,
    manager: &str,
    token: &str,
) -> Result<(), SwarmError> {
    let manager = if manager.contains(':') {
        manager.to_string()
    } else {
        format!("{manager}:2377")
    };
    let request = SwarmJoinRequest {
        advertise_addr: Some(addr.to_string()),
        listen_addr: Some(format!("{addr}:2377")),
        remote_addrs: Some(vec![manager.clone()]),
        join_token: Some(token.to_string()),
        ..Default::default()
    };
    docker
        .join_swarm(request)
        .await
        .doing(format!("join the swarm managed at {manager}"))?;
    Ok(())
}

/// What keeps a service from having its replicas running, or `None` when it has them.
fn unconverged(service: &ServiceInfo, tasks: &[TaskInfo]) -> Option<String> {
    let own: Vec<&TaskInfo> = tasks
        .iter()
        .filter(|t| t.swarm_service == service.name)
        .collect();
    let running = own
        .iter()
        .filter(|t| t.state == "running" && t.image == service.image)
        .count() as i64;
    if running >= service.replicas && service.update != "updating" {
        return None;
    }
    let mut why: Vec<String> = own
        .iter()
        .filter(|t| t.state != "running" || t.image != service.image)
        .map(|t| {
            let detail = if t.error.is_empty() {
                &t.message
            } else {
                &t.error
            };
            let on = if t.node.is_empty() {
                String::new()
            } else {
                format!(" on {}", t.node)
            };
            format!("task {} {}{on} ({detail})", t.number, t.state)
        })
        .collect();
    why.sort();
    Some(format!(
        "{}: {running} of {} replicas running{}{}",
        service.service,
        service.replicas,
        if why.is_empty() { "" } else { ": " },
        why.join("; ")
    ))
}

/// Waits until each of `names` (compose services of `project`; all when empty) has its desired
/// replicas running, at most `timeout`. A task whose placement constraints no node meets fails
/// it at once (a node short of a free port or memory may free it, so that waits); otherwise the error names each service that did not converge and why.
pub async fn converge(
    docker: &Docker,
    project: &str,
    names: &[String],
    timeout: Duration,
) -> Result<Vec<TaskInfo>, SwarmError> {
    let deadline = Instant::now() + timeout;
    // Swarm needs a moment to try placing a task before it says it cannot.
    let mut unplaceable_since: Option<Instant> = None;
    loop {
        let services: Vec<ServiceInfo> = services(docker, project)
            .await?
            .into_iter()
            .filter(|s| names.is_empty() || names.contains(&s.service))
            .collect();
        for name in names {
            if !services.iter().any(|s| &s.service == name) {
                return Err(SwarmError::NotConverged(format!(
                    "{name} has no swarm service in {project}"
                )));
            }
        }
        let tasks = tasks(docker, project).await?;
        let problems: Vec<String> = services
            .iter()
            .filter_map(|s| unconverged(s, &tasks))
            .collect();
        if problems.is_empty() {
            return Ok(tasks);
        }
        let unplaceable = tasks.iter().any(|t| {
            t.state == "pending"
                && services.iter().any(|s| s.name == t.swarm_service)
                && (t.error.contains("constraints not satisfied")
                    || t.message.contains("constraints not satisfied"))
        });
        if unplaceable {
            let since = *unplaceable_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= Duration::from_secs(2) {
                return Err(SwarmError::NotConverged(format!(
                    "cannot be placed on any node of the swarm: {}",
                    problems.join("; ")
                )));
            }
        } else {
            unplaceable_since = None;
        }
        if Instant::now() >= deadline {
            return Err(SwarmError::NotConverged(format!(
                "not converged within {} s: {}",
                timeout.as_secs(),
                problems.join("; ")
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(state: &str, desired: &str, node: Option<(&str, &str, &str)>) -> TaskReport {
        TaskReport {
            state: state.into(),
            desired: desired.into(),
            message: match state {
                "running" => "started".into(),
                "pending" => "pending task scheduling".into(),
                other => other.into(),
            },
            error: String::new(),
            node_id: node.map_or(String::new(), |_| "n0d3".into()),
            node: node.map(|(name, state, message)| NodeReport {
                name: name.into(),
                state: state.into(),
                message: message.into(),
            }),
        }
    }

    #[test]
    fn a_running_task_on_a_ready_node_is_healthy() {
        let ready = Some(("worker-1", "ready", ""));
        assert_eq!(
            judge_task(&task("running", "running", ready)),
            Ok("running on worker-1, node ready".into())
        );
    }

    #[test]
    fn a_task_not_running_yet_says_its_state_and_node() {
        let ready = Some(("worker-1", "ready", ""));
        assert_eq!(
            judge_task(&task("starting", "running", ready)),
            Err("starting on worker-1, node ready".into())
        );
        let mut preparing = task("preparing", "running", ready);
        preparing.message = "pulling image".into();
        assert_eq!(
            judge_task(&preparing),
            Err("preparing on worker-1 (pulling image), node ready".into())
        );
        let mut failed = task("failed", "running", ready);
        failed.error = "task: non-zero exit (1)".into();
        assert_eq!(
            judge_task(&failed),
            Err("failed on worker-1 (task: non-zero exit (1)), node ready".into())
        );
    }

    #[test]
    fn a_task_no_node_can_take_says_swarms_reason() {
        let mut pending = task("pending", "running", None);
        assert_eq!(
            judge_task(&pending),
            Err("pending on no node yet (pending task scheduling)".into())
        );
        pending.error = "no suitable node (scheduling constraints not satisfied on 3 nodes)".into();
        assert_eq!(
            judge_task(&pending),
            Err("pending on no node yet (no suitable node (scheduling constraints not satisfied on 3 nodes))".into())
        );
    }

    #[test]
    fn a_running_task_on_a_lost_node_is_not_healthy() {
        let down = Some(("worker-1", "down", "heartbeat failure"));
        assert_eq!(
            judge_task(&task("running", "running", down)),
            Err("running on worker-1, node worker-1 is down (heartbeat failure)".into())
        );
        // Swarm replaces the tasks of a lost node: the old one still says what it last reported.
        assert_eq!(
            judge_task(&task("running", "shutdown", down)),
            Err(
                "running on worker-1, node worker-1 is down (heartbeat failure); Swarm wants it shutdown"
                    .into()
            )
        );
        let mut gone = task("running", "running", None);
        gone.node_id = "n0d3".into();
        assert_eq!(
            judge_task(&gone),
            Err("running on a node no longer in the swarm (n0d3)".into())
        );
    }

    #[test]
    fn a_running_task_swarm_is_replacing_is_not_healthy() {
        let ready = Some(("manager", "ready", ""));
        assert_eq!(
            judge_task(&task("running", "shutdown", ready)),
            Err("running on manager, node ready; Swarm wants it shutdown".into())
        );
    }
}
