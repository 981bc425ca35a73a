//! `compose::up`: makes the engine match a project. First a [`Plan`] is made from what exists
//! (reads only, so a dry run shows the real plan): networks and volumes to create, images to
//! pull, and for each container of each service whether it is kept, started, created or
//! recreated — recreated when its configuration hash label or its image differs — and which
//! extra replicas go. Applying it starts the services in dependency order, each one as soon as
//! what it depends on is started, healthy or completed, so independent services start
//! together. Containers carry compose's labels, so `docker compose ps` sees them too.

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use bollard::{
    Docker,
    models::{ContainerCreateBody, ContainerSummaryStateEnum},
};
use futures_util::future::join_all;
use serde::Serialize;

use crate::{
    compose::service::Placement,
    compose::{ComposeError, Project, Resource},
    docker::containers::{self, Readiness},
    docker::image,
    docker::{Doing, EngineError, is_status},
};

pub const PROJECT_LABEL: &str = "com.docker.compose.project";
pub const SERVICE_LABEL: &str = "com.docker.compose.service";
pub const NUMBER_LABEL: &str = "com.docker.compose.container-number";
pub const ONEOFF_LABEL: &str = "com.docker.compose.oneoff";
pub const HASH_LABEL: &str = "com.docker.compose.config-hash";
const WORKING_DIR_LABEL: &str = "com.docker.compose.project.working_dir";
const CONFIG_FILES_LABEL: &str = "com.docker.compose.project.config_files";
const VERSION_LABEL: &str = "com.docker.compose.version";
const NETWORK_LABEL: &str = "com.docker.compose.network";
const VOLUME_LABEL: &str = "com.docker.compose.volume";

/// Options of `compose::up`.
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// Only these services (and what they depend on); every enabled one when empty.
    pub services: Vec<String>,
    /// Active profiles instead of the project's.
    pub profiles: Option<Vec<String>>,
    /// Replicas per service, instead of `deploy.replicas`.
    pub scale: BTreeMap<String, u32>,
}

/// What `up` did (or, in a dry run, would do), by container name.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub created: Vec<String>,
    pub recreated: Vec<String>,
    pub started: Vec<String>,
    pub unchanged: Vec<String>,
    pub removed: Vec<String>,
    pub networks: Vec<String>,
    pub volumes: Vec<String>,
    pub pulled: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) enum Action {
    Keep,
    Start { id: String },
    Create,
    Recreate { id: String, reason: &'static str },
}

#[derive(Debug, Clone)]
pub(crate) struct ContainerPlan {
    pub(crate) name: String,
    pub(crate) action: Action,
    pub(crate) body: ContainerCreateBody,
    pub(crate) more_networks: Vec<(String, Vec<String>)>,
}

#[derive(Debug, Clone)]
pub(crate) struct ServicePlan {
    pub(crate) name: String,
    pub(crate) depends_on: Vec<(String, Readiness)>,
    pub(crate) containers: Vec<ContainerPlan>,
    /// Replicas beyond the wanted count: (id, name).
    pub(crate) surplus: Vec<(String, String)>,
    pub(crate) grace: Option<Duration>,
}

/// Everything `up` will do, decided before anything is done.
#[derive(Debug, Clone)]
pub struct Plan {
    pub(crate) networks: Vec<Resource>,
    pub(crate) volumes: Vec<Resource>,
    pub(crate) pulls: Vec<String>,
    pub(crate) services: Vec<ServicePlan>,
}

/// A container of the project as the engine lists it.
struct Existing {
    id: String,
    name: String,
    number: u32,
    hash: String,
    image_id: String,
    running: bool,
}

/// Decides what `up` must do to make the engine match `project`.
pub async fn plan(
    docker: &Docker,
    project: &Project,
    options: &UpOptions,
) -> Result<Plan, ComposeError> {
    let profiles = options.profiles.as_ref().unwrap_or(&project.profiles);
    let selection = project.selection(&options.services, profiles)?;
    for name in options.scale.keys() {
        if !project.services.contains_key(name) {
            return Err(ComposeError::Invalid(format!(
                "cannot scale {name:?}: project {} has no such service",
                project.name
            )));
        }
    }
    let mut plan = Plan {
        networks: Vec::new(),
        volumes: Vec::new(),
        pulls: Vec::new(),
        services: Vec::new(),
    };
    let mut network_keys: Vec<&String> = Vec::new();
    let mut volume_keys: Vec<&String> = Vec::new();
    let mut references: Vec<&String> = Vec::new();
    for name in &selection {
        let service = &project.services[name];
        network_keys.extend(service.networks.keys());
        volume_keys.extend(
            service
                .volumes
                .iter()
                .filter(|m| m.kind == "volume")
                .filter_map(|m| project.volumes.get_key_value(m.source.as_deref()?))
                .map(|(key, _)| key),
        );
        references.push(&service.image);
    }
    for keys in [&mut network_keys, &mut volume_keys, &mut references] {
        keys.sort();
        keys.dedup();
    }
    // Every read at once: they are independent, and a plan is made on every `up`.
    let networks = join_all(network_keys.iter().map(|key| async move {
        let network = &project.networks[*key];
        network_exists(docker, &network.name)
            .await
            .map(|found| (*key, network, found))
    }));
    let volumes = join_all(volume_keys.iter().map(|key| async move {
        let volume = &project.volumes[*key];
        volume_exists(docker, &volume.name)
            .await
            .map(|found| (*key, volume, found))
    }));
    let image_ids = join_all(references.iter().map(|reference| async move {
        image::id(docker, reference)
            .await
            .map(|id| ((*reference).clone(), id))
    }));
    let (existing, networks, volumes, image_ids) = futures_util::join!(
        existing_containers(docker, &project.name),
        networks,
        volumes,
        image_ids
    );
    let mut existing = existing?;
    for (kind, found, label) in [
        ("network", networks, NETWORK_LABEL),
        ("volume", volumes, VOLUME_LABEL),
    ] {
        for result in found {
            let (key, resource, exists) = result?;
            if exists {
                continue;
            }
            if resource.external {
                return Err(ComposeError::Invalid(format!(
                    "{kind} {} is declared external but does not exist; create it first",
                    resource.name
                )));
            }
            let missing = labelled(resource, &project.name, label, key);
            match kind {
                "network" => plan.networks.push(missing),
                _ => plan.volumes.push(missing),
            }
        }
    }
    let images: BTreeMap<String, Option<String>> =
        image_ids.into_iter().collect::<Result<_, _>>()?;
    plan.pulls.extend(
        images
            .iter()
            .filter(|(_, id)| id.is_none())
            .map(|(r, _)| r.clone()),
    );
    for name in &selection {
        let replicas = options
            .scale
            .get(name)
            .copied()
            .or(project.services[name].deploy.replicas)
            .unwrap_or(1);
        let found = existing.remove(name).unwrap_or_default();
        plan.services
            .push(service_plan(project, name, replicas, found, &images)?);
    }
    Ok(plan)
}

/// The project's containers by service, oneoff ones left out.
async fn existing_containers(
    docker: &Docker,
    project: &str,
) -> Result<HashMap<String, Vec<Existing>>, EngineError> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("{PROJECT_LABEL}={project}")],
    )]);
    let mut by_service: HashMap<String, Vec<Existing>> = HashMap::new();
    for summary in containers::list(docker, &filters).await? {
        let labels = summary.labels.clone().unwrap_or_default();
        if labels.get(ONEOFF_LABEL).is_some_and(|v| v == "True") {
            continue;
        }
        let Some(service) = labels.get(SERVICE_LABEL) else {
            continue;
        };
        by_service
            .entry(service.clone())
            .or_default()
            .push(Existing {
                id: summary.id.clone().unwrap_or_default(),
                name: containers::summary_name(&summary),
                number: labels
                    .get(NUMBER_LABEL)
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0),
                hash: labels.get(HASH_LABEL).cloned().unwrap_or_default(),
                image_id: summary.image_id.clone().unwrap_or_default(),
                running: matches!(
                    summary.state,
                    Some(
                        ContainerSummaryStateEnum::RUNNING | ContainerSummaryStateEnum::RESTARTING
                    )
                ),
            });
    }
    Ok(by_service)
}

fn labelled(resource: &Resource, project: &str, kind_label: &str, key: &str) -> Resource {
    let mut resource = resource.clone();
    resource
        .labels
        .insert(PROJECT_LABEL.to_string(), project.to_string());
    resource
        .labels
        .insert(kind_label.to_string(), key.to_string());
    resource.labels.insert(
        VERSION_LABEL.to_string(),
        env!("CARGO_PKG_VERSION").to_string(),
    );
    resource
}

async fn network_exists(docker: &Docker, name: &str) -> Result<bool, EngineError> {
    match docker.inspect_network(name, None).await {
        Ok(_) => Ok(true),
        Err(error) if is_status(&error, 404) => Ok(false),
        Err(error) => Err(error).doing(format!("inspect network {name}")),
    }
}

async fn volume_exists(docker: &Docker, name: &str) -> Result<bool, EngineError> {
    match docker.inspect_volume(name).await {
        Ok(_) => Ok(true),
        Err(error) if is_status(&error, 404) => Ok(false),
        Err(error) => Err(error).doing(format!("inspect volume {name}")),
    }
}

/// What becomes of each container of service `name` with `replicas` wanted.
fn service_plan(
    project: &Project,
    name: &str,
    replicas: u32,
    mut found: Vec<Existing>,
    images: &BTreeMap<String, Option<String>>,
) -> Result<ServicePlan, ComposeError> {
    let mut service = project.services[name].clone();
    if service.container_name.is_some() && replicas > 1 {
        return Err(ComposeError::Invalid(format!(
            "service {name} has a container_name, so it cannot run {replicas} replicas"
        )));
    }
    // Engine names of the networks and volumes this service uses: part of its identity.
    let mut resolved = BTreeMap::new();
    for key in service.networks.keys() {
        resolved.insert(format!("network:{key}"), project.networks[key].name.clone());
    }
    for mount in &mut service.volumes {
        if let (true, Some(source)) = (mount.kind == "volume", mount.source.as_mut())
            && let Some(volume) = project.volumes.get(source.as_str())
        {
            resolved.insert(format!("volume:{source}"), volume.name.clone());
            *source = volume.name.clone();
        }
    }
    let hash = project.services[name].config_hash(&resolved);
    let image_id = images.get(&service.image).cloned().flatten();
    let networks: Vec<(String, Vec<String>)> = service
        .networks
        .iter()
        .map(|(key, attachment)| {
            let mut aliases = vec![name.to_string()];
            aliases.extend(attachment.aliases.iter().cloned());
            (project.networks[key].name.clone(), aliases)
        })
        .collect();
    found.sort_by_key(|c| c.number);
    let mut containers = Vec::new();
    for number in 1..=replicas {
        let container_name = service
            .container_name
            .clone()
            .unwrap_or_else(|| format!("{}-{name}-{number}", project.name));
        let labels = BTreeMap::from([
            (PROJECT_LABEL.to_string(), project.name.clone()),
            (SERVICE_LABEL.to_string(), name.to_string()),
            (NUMBER_LABEL.to_string(), number.to_string()),
            (ONEOFF_LABEL.to_string(), "False".to_string()),
            (HASH_LABEL.to_string(), hash.clone()),
            (WORKING_DIR_LABEL.to_string(), project.working_dir.clone()),
            (CONFIG_FILES_LABEL.to_string(), project.config_file.clone()),
            (
                VERSION_LABEL.to_string(),
                env!("CARGO_PKG_VERSION").to_string(),
            ),
        ]);
        let placement = Placement {
            labels,
            networks: networks.clone(),
            number,
        };
        let current = found
            .iter()
            .position(|c| c.number == number)
            .map(|i| found.remove(i));
        let action = match current {
            None => Action::Create,
            Some(c) if c.hash != hash => Action::Recreate {
                id: c.id,
                reason: "configuration changed",
            },
            Some(c) if image_id.as_deref() != Some(c.image_id.as_str()) => Action::Recreate {
                id: c.id,
                reason: "image changed",
            },
            Some(c) if !c.running => Action::Start { id: c.id },
            Some(_) => Action::Keep,
        };
        containers.push(ContainerPlan {
            name: container_name,
            action,
            body: service.create_body(&placement),
            more_networks: networks.iter().skip(1).cloned().collect(),
        });
    }
    Ok(ServicePlan {
        name: name.to_string(),
        depends_on: service
            .depends_on
            .iter()
            .map(|(dep, d)| (dep.clone(), Readiness::from_condition(&d.condition)))
            .collect(),
        containers,
        surplus: found.into_iter().rev().map(|c| (c.id, c.name)).collect(),
        grace: service.stop_grace_period.map(Duration::from_millis),
    })
}
