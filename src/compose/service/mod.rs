//! One container's definition in compose's vocabulary: what a compose service says, and what a
//! `docker::run` spec says (the same keys, so a runbook author and a compose file mean the same
//! thing by `ports` or `healthcheck`). Parsed by [`crate::compose::service::parse`], turned into the
//! engine's create request here, and serialized back (long syntax, durations in milliseconds)
//! as the services of the project `compose::load` returns.

pub(crate) mod parse;
pub(crate) mod reader;
pub(crate) mod syntax;

use std::collections::{BTreeMap, HashMap};

use bollard::models::{
    ContainerCreateBody, DeviceMapping, HealthConfig, HostConfig, HostConfigLogConfig,
    Mount as EngineMount, MountType, NetworkingConfig, PortBinding, ResourcesUlimits,
    RestartPolicy, RestartPolicyNameEnum,
};

use crate::docker::containers::Endpoint;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// A container definition. Empty fields are left out when serialized.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Service {
    pub image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    /// `PORT/PROTOCOL`, e.g. `8080/tcp`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expose: Vec<String>,
    /// Network key (as declared in the project, or the engine's name for `docker::run`) to its
    /// settings.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub networks: BTreeMap<String, Attachment>,
    /// `host`, `none` or `bridge`: the engine's network mode instead of project networks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Mount>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub depends_on: BTreeMap<String, Dependency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    #[serde(skip_serializing_if = "Deploy::is_empty")]
    pub deploy: Deploy,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Milliseconds `stop` waits before killing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_grace_period: Option<u64>,
    /// How the image is built when it is missing or its context changed; `image` is then the
    /// tag it gets (`<project>-<service>` unless the file names one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<Build>,
    /// `always`, `never`, `missing` (the default), `build`, …
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<String>,
    /// `os/arch[/variant]` of the image to run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// `nofile` → limits.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub ulimits: BTreeMap<String, Ulimit>,
    /// Bytes of `/dev/shm`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<Device>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
    /// An init process as PID 1, reaping zombies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
    /// The root filesystem mounted read-only.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tty: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stdin_open: bool,
    /// `HOST=ADDRESS` lines added to `/etc/hosts`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub security_opt: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    /// `PATH[:OPTIONS]` tmpfs mounts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tmpfs: Vec<String>,
    /// The `secrets` and `configs` the service names, until the project turns each into a
    /// read-only bind mount of its file (in `volumes`).
    #[serde(skip)]
    pub files: Vec<FileRef>,
}

/// A service's reference to a top-level secret or config.
#[derive(Debug, Clone, PartialEq)]
pub struct FileRef {
    /// `secrets` or `configs`.
    pub section: &'static str,
    pub source: String,
    /// Where it appears in the container; relative to `/run/secrets` for a secret.
    pub target: Option<String>,
    pub line: usize,
    pub path: String,
}

/// A service's `build:`, paths absolute.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Build {
    pub context: String,
    /// Relative to the context; `Dockerfile` when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Ulimit {
    pub soft: i64,
    pub hard: i64,
}

/// A host device in the container: `/dev/fuse:/dev/fuse:rwm`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Device {
    pub source: String,
    pub target: String,
    /// cgroup permissions, `rwm` by default.
    pub permissions: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Logging {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Port {
    pub target: u16,
    /// The host port; `None` lets the engine pick one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published: Option<u16>,
    /// With `published`, a host port range the engine picks a free port from
    /// (`127.0.0.1:4100-4109:4000`), so each replica of a service gets its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published_end: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
    pub protocol: String,
}

impl Port {
    /// The host port replica `number` publishes on. From a range, each replica gets its own
    /// port for good, (`4100-4109`: replica 2 on 4101): were the engine to pick, a restarted
    /// container could come back on another port than the one the proxy sends traffic to.
    /// Replicas beyond the range let the engine pick from it.
    pub fn host_port(&self, number: u32) -> String {
        match (self.published, self.published_end) {
            (Some(first), Some(last)) => {
                let own = u32::from(first) + number.saturating_sub(1);
                if number >= 1 && own <= u32::from(last) {
                    own.to_string()
                } else {
                    format!("{first}-{last}")
                }
            }
            (Some(port), None) => port.to_string(),
            (None, _) => String::new(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Attachment {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// A static address on the network (its `ipam` must have a subnet holding it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6_address: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mount {
    /// `volume` (named or anonymous) or `bind`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The volume key or the absolute host path; `None` for an anonymous volume.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub target: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// SELinux relabelling: `z` (shared) or `Z` (private).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selinux: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dependency {
    /// `service_started`, `service_healthy` or `service_completed_successfully`.
    pub condition: String,
    /// Restart the dependent when `up` recreates this dependency.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub restart: bool,
    /// `false`: a dependency that is not there (not in the file, or not enabled) is skipped.
    #[serde(skip_serializing_if = "is_true")]
    pub required: bool,
}

fn is_true(value: &bool) -> bool {
    *value
}

/// Durations in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Healthcheck {
    /// `["CMD", prog, args…]`, `["CMD-SHELL", line]` or `["NONE"]`; empty keeps the image's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_period: Option<u64>,
    /// How often to check during `start_period` until the first pass (Docker Engine ≥ 25;
    /// older engines ignore it and check every `interval` from the start).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Deploy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    #[serde(skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
    /// Swarm placement constraints (`node.role == worker`); a single host ignores them.
    #[serde(skip_serializing_if = "Constraints::is_empty")]
    pub placement: Constraints,
    /// How Swarm replaces a service's tasks; a single host ignores it.
    #[serde(skip_serializing_if = "UpdateConfig::is_empty")]
    pub update_config: UpdateConfig,
}

/// `deploy.placement`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Constraints {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
}

impl Constraints {
    fn is_empty(&self) -> bool {
        self.constraints.is_empty()
    }
}

/// `deploy.update_config`: durations in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UpdateConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitor: Option<u64>,
    /// `start-first` or `stop-first`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    /// `pause`, `continue` or `rollback`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_action: Option<String>,
}

impl UpdateConfig {
    fn is_empty(&self) -> bool {
        *self == UpdateConfig::default()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Resources {
    #[serde(skip_serializing_if = "Limits::is_empty")]
    pub limits: Limits,
    /// `memory` is the container's soft limit; `cpus` is a swarm setting, kept for reading only
    /// (docker compose ignores it for containers too).
    #[serde(skip_serializing_if = "Limits::is_empty")]
    pub reservations: Limits,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Limits {
    /// Bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
}

impl Deploy {
    fn is_empty(&self) -> bool {
        self.replicas.is_none()
            && self.resources.is_empty()
            && self.placement.is_empty()
            && self.update_config.is_empty()
    }
}

impl Resources {
    fn is_empty(&self) -> bool {
        self.limits.is_empty() && self.reservations.is_empty()
    }
}

impl Limits {
    fn is_empty(&self) -> bool {
        self.memory.is_none() && self.cpus.is_none()
    }
}

/// Where one container of a service goes: its name, the labels added to the service's, and the
/// engine's name of each network key with the aliases it answers to there.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    pub labels: BTreeMap<String, String>,
    /// The networks to join, the first one given at create time.
    pub networks: Vec<Endpoint>,
    /// The replica's number (1 for a lone container): replica N of a service publishing a host
    /// port range gets the range's Nth port.
    pub number: u32,
}

impl Service {
    /// The engine's create request for one container of this service.
    pub fn create_body(&self, placement: &Placement) -> ContainerCreateBody {
        let mut labels: HashMap<String, String> = self.labels.clone().into_iter().collect();
        labels.extend(placement.labels.clone());
        let mut exposed: Vec<String> = self.expose.clone();
        let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        for port in &self.ports {
            let key = format!("{}/{}", port.target, port.protocol);
            if !exposed.contains(&key) {
                exposed.push(key.clone());
            }
            bindings
                .entry(key)
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: port.host_ip.clone(),
                    host_port: Some(port.host_port(placement.number)),
                });
        }
        let limits = &self.deploy.resources.limits;
        // The Mounts API has no SELinux relabel option: those mounts go as `Binds` entries.
        let (relabelled, mounts): (Vec<&Mount>, Vec<&Mount>) =
            self.volumes.iter().partition(|m| m.selinux.is_some());
        let binds: Vec<String> = relabelled.iter().map(|m| bind_entry(m)).collect();
        let host_config = HostConfig {
            port_bindings: (!bindings.is_empty()).then_some(bindings),
            mounts: (!mounts.is_empty()).then(|| mounts.into_iter().map(engine_mount).collect()),
            binds: (!binds.is_empty()).then_some(binds),
            restart_policy: self.restart.as_deref().map(restart_policy),
            memory: limits.memory,
            memory_reservation: self.deploy.resources.reservations.memory,
            nano_cpus: limits.cpus.map(|cpus| (cpus * 1e9).round() as i64),
            network_mode: self
                .network_mode
                .clone()
                .or_else(|| placement.networks.first().map(|e| e.network.clone())),
            ulimits: (!self.ulimits.is_empty()).then(|| {
                self.ulimits
                    .iter()
                    .map(|(name, limit)| ResourcesUlimits {
                        name: Some(name.clone()),
                        soft: Some(limit.soft),
                        hard: Some(limit.hard),
                    })
                    .collect()
            }),
            shm_size: self.shm_size,
            cap_add: (!self.cap_add.is_empty()).then(|| self.cap_add.clone()),
            cap_drop: (!self.cap_drop.is_empty()).then(|| self.cap_drop.clone()),
            devices: (!self.devices.is_empty()).then(|| {
                self.devices
                    .iter()
                    .map(|d| DeviceMapping {
                        path_on_host: Some(d.source.clone()),
                        path_in_container: Some(d.target.clone()),
                        cgroup_permissions: Some(d.permissions.clone()),
                    })
                    .collect()
            }),
            init: self.init,
            privileged: self.privileged.then_some(true),
            readonly_rootfs: self.read_only.then_some(true),
            extra_hosts: (!self.extra_hosts.is_empty()).then(|| {
                self.extra_hosts
                    .iter()
                    .map(|h| h.replacen('=', ":", 1))
                    .collect()
            }),
            security_opt: (!self.security_opt.is_empty()).then(|| self.security_opt.clone()),
            sysctls: (!self.sysctls.is_empty()).then(|| self.sysctls.clone().into_iter().collect()),
            tmpfs: (!self.tmpfs.is_empty()).then(|| {
                self.tmpfs
                    .iter()
                    .map(|t| match t.split_once(':') {
                        Some((path, options)) => (path.to_string(), options.to_string()),
                        None => (t.clone(), String::new()),
                    })
                    .collect()
            }),
            log_config: self.logging.as_ref().map(|l| HostConfigLogConfig {
                typ: l.driver.clone(),
                config: (!l.options.is_empty()).then(|| l.options.clone().into_iter().collect()),
            }),
            ..Default::default()
        };
        let networking_config = placement.networks.first().map(|e| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(e.network.clone(), e.settings())])),
        });
        ContainerCreateBody {
            image: Some(self.image.clone()),
            cmd: self.command.clone(),
            entrypoint: self.entrypoint.clone(),
            env: (!self.environment.is_empty()).then(|| {
                self.environment
                    .iter()
                    .map(|(name, value)| format!("{name}={value}"))
                    .collect()
            }),
            exposed_ports: (!exposed.is_empty()).then_some(exposed),
            labels: Some(labels),
            healthcheck: self.healthcheck.as_ref().map(health_config),
            user: self.user.clone(),
            working_dir: self.working_dir.clone(),
            hostname: self.hostname.clone(),
            tty: self.tty.then_some(true),
            open_stdin: self.stdin_open.then_some(true),
            stop_timeout: self.stop_grace_period.map(|ms| ms.div_ceil(1000) as i64),
            host_config: Some(host_config),
            networking_config,
            ..Default::default()
        }
    }

    /// A digest of everything that shapes this service's containers (not how many there are,
    /// their order of start or their profiles), with the engine's names of its networks and
    /// volumes: equal digests mean an existing container needs no recreating.
    pub fn config_hash(&self, resolved: &BTreeMap<String, String>) -> String {
        let mut shape = self.clone();
        shape.deploy.replicas = None;
        shape.depends_on.clear();
        shape.profiles.clear();
        let text = serde_json::to_string(&(&shape, resolved)).unwrap_or_default();
        Sha256::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

fn engine_mount(mount: &Mount) -> EngineMount {
    EngineMount {
        typ: Some(if mount.kind == "bind" {
            MountType::BIND
        } else {
            MountType::VOLUME
        }),
        source: mount.source.clone(),
        target: Some(mount.target.clone()),
        read_only: mount.read_only.then_some(true),
        ..Default::default()
    }
}

/// `SOURCE:TARGET:ro,z` for the engine's `Binds`.
fn bind_entry(mount: &Mount) -> String {
    let mut options = Vec::new();
    if mount.read_only {
        options.push("ro");
    }
    options.extend(mount.selinux.as_deref());
    format!(
        "{}:{}:{}",
        mount.source.as_deref().unwrap_or_default(),
        mount.target,
        options.join(",")
    )
}

fn restart_policy(text: &str) -> RestartPolicy {
    let (name, retries) = match text.split_once(':') {
        Some((name, n)) => (name, n.parse().ok()),
        None => (text, None),
    };
    let name = match name {
        "always" => RestartPolicyNameEnum::ALWAYS,
        "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
        "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
        _ => RestartPolicyNameEnum::NO,
    };
    RestartPolicy {
        name: Some(name),
        maximum_retry_count: retries,
    }
}

/// The engine's form of a healthcheck, for a container and for a swarm service alike.
pub(crate) fn health_config(check: &Healthcheck) -> HealthConfig {
    let ns = |ms: Option<u64>| ms.map(|ms| (ms as i64).saturating_mul(1_000_000));
    HealthConfig {
        test: (!check.test.is_empty()).then(|| check.test.clone()),
        interval: ns(check.interval),
        timeout: ns(check.timeout),
        start_period: ns(check.start_period),
        start_interval: ns(check.start_interval),
        retries: check.retries.map(i64::from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_replica_keeps_its_own_port_of_a_range() {
        let port = Port {
            target: 4000,
            published: Some(4100),
            published_end: Some(4102),
            host_ip: None,
            protocol: "tcp".into(),
        };
        assert_eq!(port.host_port(1), "4100");
        assert_eq!(port.host_port(3), "4102");
        assert_eq!(port.host_port(4), "4100-4102");
    }

    #[test]
    fn healthcheck_timings_reach_the_engine_in_nanoseconds() {
        let check = Healthcheck {
            test: vec!["CMD".into(), "check".into()],
            interval: Some(5_000),
            start_interval: Some(1_000),
            ..Default::default()
        };
        let config = health_config(&check);
        assert_eq!(config.interval, Some(5_000_000_000));
        assert_eq!(config.start_interval, Some(1_000_000_000));
        assert_eq!((config.timeout, config.start_period), (None, None));
    }

    #[test]
    fn hash_ignores_replicas_and_sees_env() {
        let service = Service {
            image: "demo:1".into(),
            ..Default::default()
        };
        let resolved = BTreeMap::new();
        let mut scaled = service.clone();
        scaled.deploy.replicas = Some(3);
        assert_eq!(
            service.config_hash(&resolved),
            scaled.config_hash(&resolved)
        );
        let mut changed = service.clone();
        changed.environment.insert("VERSION".into(), "2".into());
        assert_ne!(
            service.config_hash(&resolved),
            changed.config_hash(&resolved)
        );
    }
}
