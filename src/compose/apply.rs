//! Describing and carrying out an `up` [`Plan`]: networks, volumes and pulls first, then every service as a
//! future that waits for what it depends on (started, healthy or completed) and then brings
//! its containers to the plan, so independent services start together and a dependent starts
//! the moment its dependencies are ready.

use std::{cell::RefCell, collections::HashMap};

use bollard::{
    Docker,
    models::{Ipam, IpamConfig, NetworkCreateRequest, VolumeCreateRequest},
};
use futures_util::{FutureExt, future::join_all};

use crate::{
    compose::ComposeError,
    compose::plan::{Action, Plan, Report, ServicePlan},
    docker::containers::{self, Readiness},
    docker::image,
    docker::{Doing, EngineError},
};

impl Plan {
    /// One line per change, for a dry run: `create container demo-api-1`, ….
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        lines.extend(
            self.networks
                .iter()
                .map(|n| format!("create network {}", n.name)),
        );
        lines.extend(
            self.volumes
                .iter()
                .map(|v| format!("create volume {}", v.name)),
        );
        lines.extend(
            self.builds
                .iter()
                .map(|b| format!("build image {} ({})", b.request.tag, b.reason)),
        );
        lines.extend(self.pulls.iter().map(|i| format!("pull image {i}")));
        for service in &self.services {
            for c in &service.containers {
                match &c.action {
                    Action::Keep => {}
                    Action::Start { .. } => lines.push(format!("start container {}", c.name)),
                    Action::Create => lines.push(format!("create container {}", c.name)),
                    Action::Recreate { reason, .. } => {
                        lines.push(format!("recreate container {} ({reason})", c.name))
                    }
                    Action::Restart { reason, .. } => {
                        lines.push(format!("restart container {} ({reason})", c.name))
                    }
                }
            }
            for (_, name) in &service.surplus {
                lines.push(format!(
                    "remove container {name} (scaled to {})",
                    service.containers.len()
                ));
            }
        }
        lines
    }

    /// What applying the plan does, by name.
    pub fn report(&self) -> Report {
        let mut report = Report {
            networks: self.networks.iter().map(|n| n.name.clone()).collect(),
            volumes: self.volumes.iter().map(|v| v.name.clone()).collect(),
            pulled: self.pulls.clone(),
            built: self.builds.iter().map(|b| b.request.tag.clone()).collect(),
            ..Report::default()
        };
        for service in &self.services {
            for c in &service.containers {
                let list = match c.action {
                    Action::Keep => &mut report.unchanged,
                    Action::Start { .. } => &mut report.started,
                    Action::Create => &mut report.created,
                    Action::Recreate { .. } => &mut report.recreated,
                    Action::Restart { .. } => &mut report.restarted,
                };
                list.push(c.name.clone());
            }
            report
                .removed
                .extend(service.surplus.iter().map(|(_, name)| name.clone()));
        }
        report
    }

    /// Does it: networks, volumes and pulls first, then every service as soon as what it
    /// depends on is ready. `progress` hears about pulls.
    pub async fn apply(
        mut self,
        docker: &Docker,
        progress: &dyn Fn(&str),
    ) -> Result<Report, ComposeError> {
        let networks = self.networks.iter().map(|network| async move {
            let request = NetworkCreateRequest {
                name: network.name.clone(),
                driver: Some("bridge".into()),
                labels: Some(network.labels.clone().into_iter().collect()),
                internal: network.internal.then_some(true),
                ipam: network.ipam.as_ref().map(|ipam| Ipam {
                    driver: ipam.driver.clone(),
                    config: Some(
                        ipam.config
                            .iter()
                            .map(|pool| IpamConfig {
                                subnet: pool.subnet.clone(),
                                gateway: pool.gateway.clone(),
                                ip_range: pool.ip_range.clone(),
                                ..Default::default()
                            })
                            .collect(),
                    ),
                    ..Default::default()
                }),
                ..Default::default()
            };
            docker
                .create_network(request)
                .await
                .doing(format!("create network {}", network.name))
                .map(|_| ())
        });
        let volumes = self.volumes.iter().map(|volume| async move {
            let request = VolumeCreateRequest {
                name: Some(volume.name.clone()),
                labels: Some(volume.labels.clone().into_iter().collect()),
                ..Default::default()
            };
            docker
                .create_volume(request)
                .await
                .doing(format!("create volume {}", volume.name))
                .map(|_| ())
        });
        let (networks, volumes) = futures_util::join!(join_all(networks), join_all(volumes));
        networks
            .into_iter()
            .chain(volumes)
            .collect::<Result<Vec<_>, _>>()?;
        tracing::debug!("networks and volumes ready");
        for build in &self.builds {
            image::build(docker, &build.request, progress).await?;
        }
        for reference in &self.pulls {
            image::pull(docker, reference, progress).await?;
        }
        self.follow_pulled_images(docker).await?;
        let report = self.report();
        let names: HashMap<String, Vec<String>> = self
            .services
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
                    s.containers.iter().map(|c| c.name.clone()).collect(),
                )
            })
            .collect();
        let errors = RefCell::new(Vec::new());
        let mut started = HashMap::new();
        for service in &self.services {
            let waits: Vec<_> = service
                .depends_on
                .iter()
                .map(|(dep, readiness)| (dep.clone(), *readiness, started.get(dep).cloned()))
                .collect();
            let (names, errors) = (&names, &errors);
            let future = async move {
                // New containers are created at once: only starting waits for dependencies, so
                // creating them overlaps the start of what they depend on.
                let created = match create_new(docker, service).await {
                    Ok(created) => created,
                    Err(error) => {
                        errors.borrow_mut().push(error.to_string());
                        return false;
                    }
                };
                for (dep, readiness, dep_started) in waits {
                    if let Some(dep_started) = dep_started
                        && !dep_started.await
                    {
                        return false;
                    }
                    // A dependency this run started (or found running) needs no second look.
                    if readiness == Readiness::Running {
                        continue;
                    }
                    for container in &names[&dep] {
                        if let Err(why) = containers::wait_ready(docker, container, readiness).await
                        {
                            errors
                                .borrow_mut()
                                .push(format!("service {} waits for {dep}: {why}", service.name));
                            return false;
                        }
                    }
                }
                match apply_service(docker, service, &created).await {
                    Ok(()) => {
                        tracing::debug!("service {} is up", service.name);
                        true
                    }
                    Err(error) => {
                        errors.borrow_mut().push(error.to_string());
                        false
                    }
                }
            }
            .boxed_local()
            .shared();
            started.insert(service.name.clone(), future);
        }
        join_all(started.into_values()).await;
        let errors = errors.into_inner();
        if !errors.is_empty() {
            return Err(ComposeError::Failed(errors.join("; ")));
        }
        Ok(report)
    }
}

impl Plan {
    /// Containers kept (or started) on an image `pull_policy: always` just pulled anew are
    /// recreated on the new one, as docker compose does.
    async fn follow_pulled_images(&mut self, docker: &Docker) -> Result<(), EngineError> {
        for service in &mut self.services {
            let Some(reference) = &service.pulled_always else {
                continue;
            };
            let Some(pulled) = image::id(docker, reference).await? else {
                continue;
            };
            for container in &mut service.containers {
                let kept = matches!(container.action, Action::Keep | Action::Start { .. });
                if kept && container.image_id.as_deref() != Some(pulled.as_str()) {
                    container.action = Action::Recreate {
                        id: container.id.clone().unwrap_or_default(),
                        reason: "image pulled",
                    };
                    tracing::info!("recreate container {} (image pulled)", container.name);
                }
            }
        }
        Ok(())
    }
}

/// Creates the service's new containers (not started); returns their ids by name.
async fn create_new(
    docker: &Docker,
    service: &ServicePlan,
) -> Result<HashMap<String, String>, EngineError> {
    let creations = service
        .containers
        .iter()
        .filter(|c| matches!(c.action, Action::Create))
        .map(|c| async move {
            let platform = c.platform.as_deref();
            let id =
                containers::create(docker, &c.name, platform, c.body.clone(), &c.more_networks)
                    .await?;
            Ok::<_, EngineError>((c.name.clone(), id))
        });
    join_all(creations).await.into_iter().collect()
}

/// Brings one service's containers to the plan: surplus replicas go, the rest concurrently.
/// New containers were created beforehand (`created`: name to id) and are only started here.
async fn apply_service(
    docker: &Docker,
    service: &ServicePlan,
    created: &HashMap<String, String>,
) -> Result<(), EngineError> {
    let grace = service.grace;
    let surplus = service.surplus.iter().map(|(id, _)| async move {
        containers::stop(docker, id, grace).await?;
        containers::remove(docker, id, false, false).await
    });
    join_all(surplus)
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let changes = service.containers.iter().map(|c| async move {
        match &c.action {
            Action::Keep => Ok(()),
            Action::Start { id } => containers::start(docker, id, &c.name).await,
            Action::Restart { id, .. } => containers::restart(docker, id, &c.name, grace).await,
            Action::Create => containers::start(docker, &created[&c.name], &c.name).await,
            Action::Recreate { id, .. } => {
                containers::stop(docker, id, grace).await?;
                containers::remove(docker, id, false, false).await?;
                let platform = c.platform.as_deref();
                let body = c.body.clone();
                containers::create_and_start(docker, &c.name, platform, body, &c.more_networks)
                    .await
                    .map(|_| ())
            }
        }
    });
    join_all(changes)
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    Ok(())
}
