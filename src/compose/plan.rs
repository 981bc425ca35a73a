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
    compose::service::{Build, Placement},
    compose::{ComposeError, Project, Resource},
    docker::containers::{self, Endpoint, Readiness},
    docker::image::{self, BuildRequest},
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
    pub built: Vec<String>,
    pub restarted: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) enum Action {
    Keep,
    Start {
        id: String,
    },
    Create,
    Recreate {
        id: String,
        reason: &'static str,
    },
    /// Running and unchanged, but restarted: a dependency with `restart: true` was recreated.
    Restart {
        id: String,
        reason: String,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct ContainerPlan {
    pub(crate) name: String,
    pub(crate) action: Action,
    pub(crate) body: ContainerCreateBody,
    pub(crate) platform: Option<String>,
    pub(crate) more_networks: Vec<Endpoint>,
    /// The existing container's id and image id, if there is one.
    pub(crate) id: Option<String>,
    pub(crate) image_id: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct ServicePlan {
    pub(crate) name: String,
    pub(crate) depends_on: Vec<(String, Readiness)>,
    pub(crate) containers: Vec<ContainerPlan>,
    /// Replicas beyond the wanted count: (id, name).
    pub(crate) surplus: Vec<(String, String)>,
    pub(crate) grace: Option<Duration>,
    /// The image, pulled on every `up` (`pull_policy: always`): containers kept or started
    /// are recreated when the pull brings another image.
    pub(crate) pulled_always: Option<String>,
}

/// Everything `up` will do, decided before anything is done.
#[derive(Debug, Clone)]
pub struct Plan {
    pub(crate) networks: Vec<Resource>,
    pub(crate) volumes: Vec<Resource>,
    pub(crate) pulls: Vec<String>,
    pub(crate) builds: Vec<ImageBuild>,
    pub(crate) services: Vec<ServicePlan>,
}

/// An image a service builds, and why now.
#[derive(Debug, Clone)]
pub(crate) struct ImageBuild {
    pub(crate) request: BuildRequest,
    pub(crate) reason: &'static str,
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
        builds: Vec::new(),
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
        if service.build.is_none() {
            references.push(&service.image);
        }
    }
    let builds = join_all(selection.iter().filter_map(|name| {
        let service = &project.services[name];
        let build = service.build.as_ref()?;
        Some(async move { needed_build(docker, &service.image, build).await })
    }));
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
    let (existing, networks, volumes, image_ids, builds) = futures_util::join!(
        existing_containers(docker, &project.name),
        networks,
        volumes,
        image_ids,
        builds
    );
    let mut images: BTreeMap<String, Option<String>> = BTreeMap::new();
    for result in builds {
        let (id, build) = result?;
        if let Some(build) = build {
            images.insert(build.request.tag.clone(), None);
            plan.builds.push(build);
        } else {
            images.insert(id.0, id.1);
        }
    }
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
    let pulled: BTreeMap<String, Option<String>> =
        image_ids.into_iter().collect::<Result<_, _>>()?;
    for (reference, id) in &pulled {
        let policies: Vec<&str> = selection
            .iter()
            .map(|name| &project.services[name])
            .filter(|s| &s.image == reference)
            .filter_map(|s| s.pull_policy.as_deref())
            .collect();
        if id.is_none() && policies.contains(&"never") {
            return Err(ComposeError::Invalid(format!(
                "image {reference} is not here and its pull_policy is never"
            )));
        }
        if id.is_none() || policies.contains(&"always") {
            plan.pulls.push(reference.clone());
        }
    }
    images.extend(pulled);
    let rebuilt: Vec<String> = plan.builds.iter().map(|b| b.request.tag.clone()).collect();
    for name in &selection {
        let replicas = options
            .scale
            .get(name)
            .copied()
            .or(project.services[name].deploy.replicas)
            .unwrap_or(1);
        let found = existing.remove(name).unwrap_or_default();
        let rebuilt = rebuilt.contains(&project.services[name].image);
        plan.services.push(service_plan(
            project, name, &selection, replicas, found, &images, rebuilt,
        )?);
    }
    restart_dependents(project, &mut plan.services);
    Ok(plan)
}

/// Whether service image `tag` must be built from `build`: it is missing, or it was built from
/// another context (its [`image::CONTEXT_LABEL`]). Returns the image's id, or the build.
async fn needed_build(
    docker: &Docker,
    tag: &str,
    build: &Build,
) -> Result<((String, Option<String>), Option<ImageBuild>), ComposeError> {
    let request = BuildRequest {
        dir: build.context.clone().into(),
        tag: tag.to_string(),
        dockerfile: build.dockerfile.clone(),
        args: build.args.clone().into_iter().collect(),
        labels: build.labels.clone().into_iter().collect(),
        files: Vec::new(),
        target: build.target.clone(),
    };
    if !request.dir.is_dir() {
        return Err(ComposeError::Invalid(format!(
            "image {tag}: the build context {} is not a directory",
            request.dir.display()
        )));
    }
    match image::freshness(docker, &request).await? {
        image::Freshness::Current { id, .. } => Ok(((tag.to_string(), Some(id)), None)),
        image::Freshness::Stale { request, reason } => Ok((
            (tag.to_string(), None),
            Some(ImageBuild { request, reason }),
        )),
    }
}

/// Containers kept running whose dependency (`depends_on: {X: {restart: true}}`) is recreated
/// are restarted, as docker compose does.
fn restart_dependents(project: &Project, services: &mut [ServicePlan]) {
    let recreated: Vec<String> = services
        .iter()
        .filter(|s| {
            s.containers
                .iter()
                .any(|c| matches!(c.action, Action::Recreate { .. }))
        })
        .map(|s| s.name.clone())
        .collect();
    for plan in services.iter_mut() {
        let service = &project.services[&plan.name];
        let Some((dependency, _)) = service
            .depends_on
            .iter()
            .find(|(dep, d)| d.restart && recreated.contains(dep))
        else {
            continue;
        };
        for container in &mut plan.containers {
            if let Action::Keep = container.action {
                let id = container.id.clone().unwrap_or_default();
                container.action = Action::Restart {
                    id,
                    reason: format!("{dependency} is recreated"),
                };
            }
        }
    }
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
    selection: &[String],
    replicas: u32,
    mut found: Vec<Existing>,
    images: &BTreeMap<String, Option<String>>,
    rebuilt: bool,
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
    let networks: Vec<Endpoint> = service
        .networks
        .iter()
        .map(|(key, attachment)| {
            let mut aliases = vec![name.to_string()];
            aliases.extend(attachment.aliases.iter().cloned());
            Endpoint {
                network: project.networks[key].name.clone(),
                aliases,
                ipv4_address: attachment.ipv4_address.clone(),
                ipv6_address: attachment.ipv6_address.clone(),
            }
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
        let id = current.as_ref().map(|c| c.id.clone());
        let current_image = current.as_ref().map(|c| c.image_id.clone());
        let action = match current {
            None => Action::Create,
            Some(c) if rebuilt => Action::Recreate {
                id: c.id,
                reason: "image rebuilt",
            },
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
            platform: service.platform.clone(),
            more_networks: networks.iter().skip(1).cloned().collect(),
            id,
            image_id: current_image,
        });
    }
    Ok(ServicePlan {
        name: name.to_string(),
        depends_on: service
            .depends_on
            .iter()
            .filter(|(dep, _)| selection.contains(dep))
            .map(|(dep, d)| (dep.clone(), Readiness::from_condition(&d.condition)))
            .collect(),
        containers,
        surplus: found.into_iter().rev().map(|c| (c.id, c.name)).collect(),
        grace: service.stop_grace_period.map(Duration::from_millis),
        pulled_always: (service.pull_policy.as_deref() == Some("always")
            && service.build.is_none())
        .then(|| service.image.clone()),
    })
}
