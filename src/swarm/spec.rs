//! A compose service as a Swarm service spec: the same image, command, environment,
//! healthcheck, `deploy.replicas`, `deploy.resources`, `deploy.placement` and
//! `deploy.update_config`, on the project's networks as overlay networks, with its published
//! ports in `mode: host` on every node and `endpoint_mode: dnsrr` (no routing mesh, no VIP:
//! neither needs IPVS, and the proxy dials the nodes a task runs on).

use std::collections::HashMap;

use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum,
    EndpointSpec, EndpointSpecModeEnum, Limit, NetworkAttachmentConfig, ResourceObject,
    ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, ServiceSpecUpdateConfig,
    ServiceSpecUpdateConfigFailureActionEnum, ServiceSpecUpdateConfigOrderEnum, TaskSpec,
    TaskSpecContainerSpec, TaskSpecPlacement, TaskSpecResources, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum,
};
use sha2::{Digest, Sha256};

use crate::compose::{
    Project,
    service::{Limits, Service, health_config},
};

/// The label naming a swarm service's project, as `docker stack deploy` sets it.
pub const NAMESPACE_LABEL: &str = "com.docker.stack.namespace";
/// The label naming the compose service a swarm service was made from.
pub const SERVICE_LABEL: &str = "cutover.service";
/// The label holding a hash of the spec cutover wrote, so an unchanged service is left alone.
pub const HASH_LABEL: &str = "cutover.spec-hash";

/// `<project>_<service>`, as `docker stack deploy` names it.
pub fn service_name(project: &str, service: &str) -> String {
    format!("{project}_{service}")
}

/// The overlay network standing for project network `key`: the engine's name for it with
/// `_swarm` added, so it never meets the bridge network compose makes for the shared services
/// when the edge host is a node of the swarm too.
pub fn network_name(project: &Project, key: &str) -> String {
    let base = project
        .networks
        .get(key)
        .map(|n| n.name.clone())
        .unwrap_or_else(|| format!("{}_{key}", project.name));
    format!("{base}_swarm")
}

fn nanos(ms: u64) -> i64 {
    (ms as i64).saturating_mul(1_000_000)
}

fn limits(limits: &Limits) -> (Option<i64>, Option<i64>) {
    (limits.cpus.map(|c| (c * 1e9).round() as i64), limits.memory)
}

/// The swarm service for compose service `key` of `project`.
pub fn service_spec(project: &Project, key: &str, service: &Service) -> ServiceSpec {
    let mut labels: HashMap<String, String> = service.labels.clone().into_iter().collect();
    labels.insert(NAMESPACE_LABEL.into(), project.name.clone());
    labels.insert(SERVICE_LABEL.into(), key.into());
    let env = service
        .environment
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let health = service.healthcheck.as_ref().map(health_config);
    let (cpu_limit, memory_limit) = limits(&service.deploy.resources.limits);
    let (cpu_reserved, memory_reserved) = limits(&service.deploy.resources.reservations);
    let networks: Vec<NetworkAttachmentConfig> = if service.network_mode.is_some() {
        Vec::new()
    } else if service.networks.is_empty() {
        vec![attachment(project, "default", key, &[])]
    } else {
        service
            .networks
            .iter()
            .map(|(net, a)| attachment(project, net, key, &a.aliases))
            .collect()
    };
    let ports = service
        .ports
        .iter()
        .filter_map(|p| {
            Some(EndpointPortConfig {
                target_port: Some(i64::from(p.target)),
                published_port: Some(i64::from(p.published?)),
                protocol: Some(match p.protocol.as_str() {
                    "udp" => EndpointPortConfigProtocolEnum::UDP,
                    "sctp" => EndpointPortConfigProtocolEnum::SCTP,
                    _ => EndpointPortConfigProtocolEnum::TCP,
                }),
                publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
                ..Default::default()
            })
        })
        .collect();
    let update = &service.deploy.update_config;
    let update_config = ServiceSpecUpdateConfig {
        parallelism: update.parallelism,
        delay: update.delay.map(nanos),
        monitor: update.monitor.map(nanos),
        order: update.order.as_deref().map(|o| match o {
            "start-first" => ServiceSpecUpdateConfigOrderEnum::START_FIRST,
            _ => ServiceSpecUpdateConfigOrderEnum::STOP_FIRST,
        }),
        failure_action: update.failure_action.as_deref().map(|f| match f {
            "continue" => ServiceSpecUpdateConfigFailureActionEnum::CONTINUE,
            "rollback" => ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK,
            _ => ServiceSpecUpdateConfigFailureActionEnum::PAUSE,
        }),
        ..Default::default()
    };
    let restart = match service.restart.as_deref() {
        Some("no") => TaskSpecRestartPolicyConditionEnum::NONE,
        Some("on-failure") => TaskSpecRestartPolicyConditionEnum::ON_FAILURE,
        _ => TaskSpecRestartPolicyConditionEnum::ANY,
    };
    let mut spec = ServiceSpec {
        name: Some(service_name(&project.name, key)),
        labels: Some(labels.clone()),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(service.image.clone()),
                labels: Some(labels),
                command: service.entrypoint.clone(),
                args: service.command.clone(),
                hostname: service.hostname.clone(),
                env: Some(env),
                dir: service.working_dir.clone(),
                user: service.user.clone(),
                health_check: health,
                stop_grace_period: service.stop_grace_period.map(nanos),
                init: service.init,
                read_only: service.read_only.then_some(true),
                ..Default::default()
            }),
            resources: Some(TaskSpecResources {
                limits: Some(Limit {
                    nano_cpus: cpu_limit,
                    memory_bytes: memory_limit,
                    ..Default::default()
                }),
                reservations: Some(ResourceObject {
                    nano_cpus: cpu_reserved,
                    memory_bytes: memory_reserved,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(restart),
                ..Default::default()
            }),
            placement: Some(TaskSpecPlacement {
                constraints: Some(service.deploy.placement.constraints.clone()),
                ..Default::default()
            }),
            networks: Some(networks),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated {
                replicas: Some(i64::from(service.deploy.replicas.unwrap_or(1))),
            }),
            ..Default::default()
        }),
        update_config: Some(update_config),
        endpoint_spec: Some(EndpointSpec {
            mode: Some(EndpointSpecModeEnum::DNSRR),
            ports: Some(ports),
        }),
        ..Default::default()
    };
    let hash = spec_hash(&spec);
    if let Some(labels) = spec.labels.as_mut() {
        labels.insert(HASH_LABEL.into(), hash);
    }
    spec
}

/// A short hash of everything in `spec` but its replicas (scaling is not a change of
/// configuration) and the hash label itself.
pub fn spec_hash(spec: &ServiceSpec) -> String {
    let mut spec = spec.clone();
    spec.mode = None;
    if let Some(labels) = spec.labels.as_mut() {
        labels.remove(HASH_LABEL);
    }
    // HashMaps serialize in any order: sort through a BTreeMap-backed value.
    let value = serde_json::to_value(&spec).unwrap_or_default();
    let text = canonical(&value);
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn canonical(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let inner: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{k:?}:{}", canonical(&map[k])))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        serde_json::Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(canonical).collect();
            format!("[{}]", inner.join(","))
        }
        other => other.to_string(),
    }
}

fn attachment(
    project: &Project,
    network: &str,
    service: &str,
    aliases: &[String],
) -> NetworkAttachmentConfig {
    let mut all = vec![service.to_string()];
    all.extend(aliases.iter().cloned());
    NetworkAttachmentConfig {
        target: Some(network_name(project, network)),
        aliases: Some(all),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::service::{Constraints, Port};

    fn project() -> Project {
        Project {
            name: "shop".into(),
            working_dir: "/".into(),
            config_file: String::new(),
            profiles: Vec::new(),
            services: Default::default(),
            networks: Default::default(),
            volumes: Default::default(),
            warnings: Vec::new(),
            swarm_warnings: Vec::new(),
        }
    }

    #[test]
    fn a_compose_service_becomes_a_dnsrr_service_publishing_in_host_mode() {
        let mut service = Service {
            image: "api:v2".into(),
            ..Default::default()
        };
        service.deploy.replicas = Some(3);
        service.deploy.resources.limits.cpus = Some(0.5);
        service.deploy.placement = Constraints {
            constraints: vec!["node.role == worker".into()],
        };
        service.ports.push(Port {
            target: 4000,
            published: Some(4100),
            published_end: Some(4109),
            host_ip: Some("127.0.0.1".into()),
            protocol: "tcp".into(),
        });
        let spec = service_spec(&project(), "api", &service);
        assert_eq!(spec.name.as_deref(), Some("shop_api"));
        let endpoint = spec.endpoint_spec.clone().unwrap();
        assert_eq!(endpoint.mode, Some(EndpointSpecModeEnum::DNSRR));
        let port = &endpoint.ports.unwrap()[0];
        assert_eq!(port.published_port, Some(4100));
        assert_eq!(
            port.publish_mode,
            Some(EndpointPortConfigPublishModeEnum::HOST)
        );
        let task = spec.task_template.clone().unwrap();
        assert_eq!(
            task.resources.unwrap().limits.unwrap().nano_cpus,
            Some(500_000_000)
        );
        assert_eq!(
            task.placement.unwrap().constraints.unwrap(),
            ["node.role == worker"]
        );
        assert_eq!(
            task.networks.unwrap()[0].target.as_deref(),
            Some("shop_default_swarm")
        );
        assert_eq!(
            spec.mode.unwrap().replicated.unwrap().replicas,
            Some(3),
            "deploy.replicas"
        );
    }

    #[test]
    fn the_hash_changes_with_the_image_but_not_with_the_replicas() {
        let mut service = Service {
            image: "api:v1".into(),
            ..Default::default()
        };
        let first = service_spec(&project(), "api", &service);
        service.deploy.replicas = Some(5);
        let scaled = service_spec(&project(), "api", &service);
        service.image = "api:v2".into();
        let changed = service_spec(&project(), "api", &service);
        let hash = |s: &ServiceSpec| s.labels.as_ref().unwrap()[HASH_LABEL].clone();
        assert_eq!(hash(&first), hash(&scaled));
        assert_ne!(hash(&first), hash(&changed));
    }
}
