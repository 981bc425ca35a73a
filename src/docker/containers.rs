//! Container operations shared by `docker::*` and `compose::*`: create-and-start with extra
//! networks, stop (idempotent), remove, waiting for a container to be running, healthy or done,
//! and resource usage computed as `docker stats` shows it. All async on one bollard client.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use bollard::{
    Docker,
    models::{
        ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum,
        ContainerStatsResponse, ContainerSummary, EndpointIpamConfig, EndpointSettings,
        HealthStatusEnum, NetworkConnectRequest,
    },
    query_parameters::{
        CreateContainerOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder,
        RemoveContainerOptionsBuilder, RestartContainerOptionsBuilder, StatsOptionsBuilder,
        StopContainerOptionsBuilder,
    },
};
use futures_util::StreamExt;
use serde::Serialize;

use crate::docker::{
    Doing, EngineError,
    cgroup::{self, Cgroup, Counters},
    is_status,
};

/// How often a wait looks at the container again.
const POLL: Duration = Duration::from_millis(100);

/// Containers matching `filters` (Docker's: `label`, `name`, `status`…), stopped ones too.
pub async fn list(
    docker: &Docker,
    filters: &HashMap<String, Vec<String>>,
) -> Result<Vec<ContainerSummary>, EngineError> {
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(filters)
        .build();
    docker
        .list_containers(Some(options))
        .await
        .doing("list containers")
}

/// One port of a container, as `docker::ps` and `compose::ps` hand it to scripts:
/// `#{host_ip, host_port, container_port, protocol}`. `host_port` is `None` (`()` in a script)
/// for a port the container exposes but does not publish; `protocol` is `tcp` unless the engine
/// says otherwise.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Port {
    pub host_ip: String,
    pub host_port: Option<u16>,
    pub container_port: u16,
    pub protocol: String,
}

/// The ports of a listed container, sorted, each once.
pub fn summary_ports(summary: &ContainerSummary) -> Vec<Port> {
    let mut ports: Vec<Port> = summary
        .ports
        .iter()
        .flatten()
        .map(|p| Port {
            host_ip: p.ip.clone().unwrap_or_default(),
            host_port: p.public_port,
            container_port: p.private_port,
            protocol: p
                .typ
                .map(|t| t.to_string())
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| "tcp".to_string()),
        })
        .collect();
    ports.sort_by(|a, b| {
        (a.container_port, &a.protocol, &a.host_ip, a.host_port).cmp(&(
            b.container_port,
            &b.protocol,
            &b.host_ip,
            b.host_port,
        ))
    });
    ports.dedup();
    ports
}

/// A container's name without the engine's leading `/`.
pub fn summary_name(summary: &ContainerSummary) -> String {
    summary
        .names
        .as_ref()
        .and_then(|names| names.first())
        .map(|n| n.trim_start_matches('/').to_string())
        .unwrap_or_default()
}

/// The health the engine's status line shows (`Up 3 minutes (healthy)`): `healthy`,
/// `unhealthy` or `starting`, or empty for a container without a healthcheck (or not running).
/// The engine writes the health there whenever the container has a healthcheck, so a listing
/// of containers tells each one's health without an inspect each.
pub fn health_in_status(status: &str) -> &'static str {
    [
        ("(unhealthy)", "unhealthy"),
        ("(healthy)", "healthy"),
        ("(health: starting)", "starting"),
    ]
    .into_iter()
    .find(|(shown, _)| status.contains(shown))
    .map_or("", |(_, health)| health)
}

pub async fn inspect(docker: &Docker, name: &str) -> Result<ContainerInspectResponse, EngineError> {
    docker
        .inspect_container(name, None)
        .await
        .doing(format!("inspect container {name}"))
}

/// A container's place on one network: the engine's network name, the names it answers to
/// there, and a static address if it has one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Endpoint {
    pub network: String,
    pub aliases: Vec<String>,
    pub ipv4_address: Option<String>,
    pub ipv6_address: Option<String>,
}

impl Endpoint {
    pub fn settings(&self) -> EndpointSettings {
        let static_address = self.ipv4_address.is_some() || self.ipv6_address.is_some();
        EndpointSettings {
            aliases: (!self.aliases.is_empty()).then(|| self.aliases.clone()),
            ipam_config: static_address.then(|| EndpointIpamConfig {
                ipv4_address: self.ipv4_address.clone(),
                ipv6_address: self.ipv6_address.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// Creates container `name` (the engine picks a name when it is empty) for `platform` (the
/// engine's own when `None`) and connects it to `more_networks` (the engine takes one network
/// at create time). Returns its id.
pub async fn create(
    docker: &Docker,
    name: &str,
    platform: Option<&str>,
    body: ContainerCreateBody,
    more_networks: &[Endpoint],
) -> Result<String, EngineError> {
    let mut options = CreateContainerOptionsBuilder::default();
    if !name.is_empty() {
        options = options.name(name);
    }
    if let Some(platform) = platform {
        options = options.platform(platform);
    }
    let options = (!name.is_empty() || platform.is_some()).then(|| options.build());
    let created = docker
        .create_container(options, body)
        .await
        .doing(format!("create container {name}"))?;
    for endpoint in more_networks {
        let request = NetworkConnectRequest {
            container: created.id.clone(),
            endpoint_config: Some(endpoint.settings()),
        };
        docker
            .connect_network(&endpoint.network, request)
            .await
            .doing(format!("connect {name} to network {}", endpoint.network))?;
    }
    Ok(created.id)
}

/// Starts container `id`; `name` is for the error.
pub async fn start(docker: &Docker, id: &str, name: &str) -> Result<(), EngineError> {
    match docker.start_container(id, None).await {
        Err(error) if is_status(&error, 304) => Ok(()),
        other => other.doing(format!("start container {name}")),
    }
}

/// Restarts container `id` (`name` is for the error), giving it `grace` to stop.
pub async fn restart(
    docker: &Docker,
    id: &str,
    name: &str,
    grace: Option<Duration>,
) -> Result<(), EngineError> {
    let mut options = RestartContainerOptionsBuilder::default();
    if let Some(grace) = grace {
        options = options.t(grace.as_secs_f64().ceil() as i32);
    }
    docker
        .restart_container(id, Some(options.build()))
        .await
        .doing(format!("restart container {name}"))
}

/// [`create`], then [`start`]. Returns the id.
pub async fn create_and_start(
    docker: &Docker,
    name: &str,
    platform: Option<&str>,
    body: ContainerCreateBody,
    more_networks: &[Endpoint],
) -> Result<String, EngineError> {
    let id = create(docker, name, platform, body, more_networks).await?;
    start(docker, &id, name).await?;
    Ok(id)
}

/// Stops `name`, waiting up to `grace` before the engine kills it. A stopped container is fine.
pub async fn stop(docker: &Docker, name: &str, grace: Option<Duration>) -> Result<(), EngineError> {
    let mut options = StopContainerOptionsBuilder::default();
    if let Some(grace) = grace {
        options = options.t(grace.as_secs_f64().ceil() as i32);
    }
    match docker.stop_container(name, Some(options.build())).await {
        Err(error) if is_status(&error, 304) => Ok(()),
        other => other.doing(format!("stop container {name}")),
    }
}

/// Removes `name`; `force` kills it first if it runs, `volumes` removes its anonymous volumes.
pub async fn remove(
    docker: &Docker,
    name: &str,
    force: bool,
    volumes: bool,
) -> Result<(), EngineError> {
    let options = RemoveContainerOptionsBuilder::default()
        .force(force)
        .v(volumes)
        .build();
    docker
        .remove_container(name, Some(options))
        .await
        .doing(format!("remove container {name}"))
}

/// What a dependent waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    Running,
    Healthy,
    Completed,
}

impl Readiness {
    /// From a compose `depends_on` condition.
    pub fn from_condition(condition: &str) -> Readiness {
        match condition {
            "service_healthy" => Readiness::Healthy,
            "service_completed_successfully" => Readiness::Completed,
            _ => Readiness::Running,
        }
    }
}

/// Waits until container `name` is ready in the sense asked, or fails saying why it never will
/// be: it exited, crashed, or its healthcheck reports it unhealthy.
pub async fn wait_ready(docker: &Docker, name: &str, wanted: Readiness) -> Result<(), String> {
    loop {
        let info = inspect(docker, name).await.map_err(|e| e.to_string())?;
        let state = info.state.unwrap_or_default();
        let status = state.status.unwrap_or(ContainerStateStatusEnum::EMPTY);
        let exited = matches!(
            status,
            ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD
        );
        let code = state.exit_code.unwrap_or(0);
        if exited && !(wanted == Readiness::Completed && code == 0) {
            let logs = last_log_lines(docker, name, 5).await;
            return Err(format!(
                "container {name} exited with code {code}{}",
                if logs.is_empty() {
                    String::new()
                } else {
                    format!("; its last output:\n{logs}")
                }
            ));
        }
        match wanted {
            Readiness::Running if status == ContainerStateStatusEnum::RUNNING => return Ok(()),
            Readiness::Completed if exited => return Ok(()),
            Readiness::Healthy => {
                let health = state.health.unwrap_or_default();
                match health.status {
                    Some(HealthStatusEnum::HEALTHY) => return Ok(()),
                    Some(HealthStatusEnum::UNHEALTHY) => {
                        let output = health
                            .log
                            .and_then(|log| log.last().and_then(|r| r.output.clone()))
                            .unwrap_or_default();
                        return Err(format!(
                            "container {name} is unhealthy (last check: {:?})",
                            output.trim()
                        ));
                    }
                    None | Some(HealthStatusEnum::NONE | HealthStatusEnum::EMPTY) => {
                        return Err(format!("container {name} has no healthcheck"));
                    }
                    Some(HealthStatusEnum::STARTING) => {}
                }
            }
            _ => {}
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The last `lines` lines a container wrote, for error messages; empty if they cannot be read.
pub async fn last_log_lines(docker: &Docker, name: &str, lines: usize) -> String {
    let options = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .tail(&lines.to_string())
        .build();
    let mut stream = docker.logs(name, Some(options));
    let mut text = String::new();
    while let Some(Ok(chunk)) = stream.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
    }
    text.trim_end().to_string()
}

/// Resource usage as `docker stats` computes it.
#[derive(Debug, Clone, Serialize)]
pub struct Usage {
    pub cpu_percent: f64,
    /// Bytes in use, page cache that could be reclaimed left out.
    pub memory_used: u64,
    /// The container's memory limit, or the host's memory when it has none.
    pub memory_limit: u64,
    pub memory_percent: f64,
    pub pids: u64,
}

/// How long CPU use is measured over: two readings of every container, this far apart.
pub const CPU_WINDOW: Duration = Duration::from_millis(250);

/// The usage of each of `containers` (as inspected), measured together: a reading of every
/// container at once, a pause of `window`, and a second one. CPU is the share used between the
/// two; memory and pids are the second's. A container whose cgroup this machine can read is
/// read there ([`cgroup`](super::cgroup): at once); the others are asked of the engine, whose
/// one-shot samples wait for its once-a-second collector (its own two-sample stats, as `docker
/// stats` uses them, spend a second or two on every call).
pub async fn usage_of_all(
    docker: &Docker,
    containers: &[ContainerInspectResponse],
    window: Duration,
) -> Vec<Result<Usage, EngineError>> {
    let located: Vec<(String, Option<Cgroup>)> = containers
        .iter()
        .map(|c| {
            let id = c.id.clone().unwrap_or_default();
            let pid = c.state.as_ref().and_then(|s| s.pid).unwrap_or(0);
            let cgroup = Cgroup::of(pid, &id);
            (id, cgroup)
        })
        .collect();
    let read_all = || {
        futures_util::future::join_all(
            located
                .iter()
                .map(|(id, cgroup)| reading(docker, id, cgroup.as_ref())),
        )
    };
    let first = read_all().await;
    tokio::time::sleep(window).await;
    let second = read_all().await;
    first
        .into_iter()
        .zip(second)
        .map(|(before, after)| Ok(between(before?, after?)))
        .collect()
}

/// One reading of a container's counters: from its cgroup, or a one-shot engine sample.
enum Reading {
    Cgroup(Counters, Instant),
    Engine(Box<ContainerStatsResponse>),
}

async fn reading(
    docker: &Docker,
    id: &str,
    cgroup: Option<&Cgroup>,
) -> Result<Reading, EngineError> {
    if let Some(counters) = cgroup.and_then(|c| c.read().ok()) {
        return Ok(Reading::Cgroup(counters, Instant::now()));
    }
    Ok(Reading::Engine(Box::new(sample(docker, id).await?)))
}

/// The usage between two readings of one container. A container that stopped being readable
/// in its cgroup between them (it stopped) gets no CPU figure, the rest from the later one.
fn between(before: Reading, after: Reading) -> Usage {
    match (before, after) {
        (Reading::Cgroup(a, at), Reading::Cgroup(b, bt)) => {
            let elapsed = bt.duration_since(at).as_nanos() as u64;
            usage_from_counters(&b, cgroup::cpu_percent(&a, &b, elapsed))
        }
        (Reading::Engine(a), Reading::Engine(mut b)) => {
            b.precpu_stats = a.cpu_stats;
            compute_usage(&b)
        }
        (_, Reading::Engine(b)) => compute_usage(&b),
        (_, Reading::Cgroup(b, _)) => usage_from_counters(&b, 0.0),
    }
}

fn usage_from_counters(c: &Counters, cpu_percent: f64) -> Usage {
    Usage {
        cpu_percent: (cpu_percent * 100.0).round() / 100.0,
        memory_used: c.memory_used,
        memory_limit: c.memory_limit,
        memory_percent: memory_percent(c.memory_used, c.memory_limit),
        pids: c.pids,
    }
}

fn memory_percent(used: u64, limit: u64) -> f64 {
    if limit > 0 {
        (used as f64 / limit as f64 * 10000.0).round() / 100.0
    } else {
        0.0
    }
}

/// One one-shot stats sample of `name` (no CPU baseline: the engine does not wait for one).
async fn sample(docker: &Docker, name: &str) -> Result<ContainerStatsResponse, EngineError> {
    let options = StatsOptionsBuilder::default()
        .stream(false)
        .one_shot(true)
        .build();
    let mut stream = docker.stats(name, Some(options));
    Ok(match stream.next().await {
        Some(sample) => sample.doing(format!("stats of {name}"))?,
        None => ContainerStatsResponse::default(),
    })
}

fn compute_usage(sample: &ContainerStatsResponse) -> Usage {
    let cpu = sample.cpu_stats.clone().unwrap_or_default();
    let pre = sample.precpu_stats.clone().unwrap_or_default();
    let total = |s: &bollard::models::ContainerCpuStats| {
        s.cpu_usage
            .as_ref()
            .and_then(|u| u.total_usage)
            .unwrap_or(0)
    };
    let cpu_delta = total(&cpu).saturating_sub(total(&pre)) as f64;
    let system_delta = cpu
        .system_cpu_usage
        .unwrap_or(0)
        .saturating_sub(pre.system_cpu_usage.unwrap_or(0)) as f64;
    let online = cpu.online_cpus.map(f64::from).unwrap_or_else(|| {
        cpu.cpu_usage
            .as_ref()
            .and_then(|u| u.percpu_usage.as_ref())
            .map_or(1.0, |p| p.len() as f64)
    });
    let cpu_percent = if system_delta > 0.0 && cpu_delta > 0.0 {
        cpu_delta / system_delta * online * 100.0
    } else {
        0.0
    };
    let memory = sample.memory_stats.clone().unwrap_or_default();
    let usage = memory.usage.unwrap_or(0);
    let stats = memory.stats.unwrap_or_default();
    let inactive = stats
        .get("total_inactive_file")
        .or_else(|| stats.get("inactive_file"))
        .copied()
        .filter(|v| *v < usage)
        .unwrap_or(0);
    let memory_used = usage - inactive;
    let memory_limit = memory.limit.unwrap_or(0);
    Usage {
        cpu_percent: (cpu_percent * 100.0).round() / 100.0,
        memory_used,
        memory_limit,
        memory_percent: memory_percent(memory_used, memory_limit),
        pids: sample
            .pids_stats
            .as_ref()
            .and_then(|p| p.current)
            .unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::health_in_status;

    #[test]
    fn the_status_line_tells_the_health_of_a_container_with_a_healthcheck() {
        assert_eq!(health_in_status("Up 3 minutes (healthy)"), "healthy");
        assert_eq!(health_in_status("Up 8 seconds (unhealthy)"), "unhealthy");
        assert_eq!(
            health_in_status("Up 1 second (health: starting)"),
            "starting"
        );
        // No healthcheck, paused, or not running: no health to tell.
        assert_eq!(health_in_status("Up 2 hours"), "");
        assert_eq!(health_in_status("Up 2 hours (Paused)"), "");
        assert_eq!(health_in_status("Exited (1) 5 seconds ago"), "");
    }
}
