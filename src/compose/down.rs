//! `compose::down` and `compose::ps`: a project's containers are found by their
//! `com.docker.compose.project` label, whoever created them (cutover or docker compose), so
//! `down` also removes replicas and services no longer in the file. Networks and (on request)
//! volumes go when they carry the project's label; external ones never do.

use std::{collections::HashMap, time::Duration};

use bollard::{
    Docker,
    query_parameters::{ListNetworksOptionsBuilder, ListVolumesOptionsBuilder},
};
use futures_util::future::join_all;
use serde::Serialize;

use crate::{
    compose::ComposeError,
    compose::plan::{NUMBER_LABEL, ONEOFF_LABEL, PROJECT_LABEL, SERVICE_LABEL},
    docker::containers,
    docker::{Doing, EngineError},
};

/// What `down` removes, found before anything is removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DownPlan {
    /// Container names.
    pub removed: Vec<String>,
    pub networks: Vec<String>,
    pub volumes: Vec<String>,
}

fn project_filter(project: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        vec![format!("{PROJECT_LABEL}={project}")],
    )])
}

/// Finds what `down` would remove: every container, network and (if `volumes`) volume of
/// `project`.
pub async fn plan(docker: &Docker, project: &str, volumes: bool) -> Result<DownPlan, EngineError> {
    let filters = project_filter(project);
    let mut plan = DownPlan::default();
    for summary in containers::list(docker, &filters).await? {
        plan.removed.push(containers::summary_name(&summary));
    }
    plan.removed.sort();
    let options = ListNetworksOptionsBuilder::default()
        .filters(&filters)
        .build();
    for network in docker
        .list_networks(Some(options))
        .await
        .doing(format!("list networks of {project}"))?
    {
        plan.networks.extend(network.name);
    }
    if volumes {
        let options = ListVolumesOptionsBuilder::default()
            .filters(&filters)
            .build();
        let found = docker
            .list_volumes(Some(options))
            .await
            .doing(format!("list volumes of {project}"))?;
        plan.volumes.extend(
            found
                .volumes
                .unwrap_or_default()
                .into_iter()
                .map(|v| v.name),
        );
    }
    Ok(plan)
}

impl DownPlan {
    pub fn describe(&self) -> Vec<String> {
        let containers = self.removed.iter().map(|c| format!("remove container {c}"));
        let networks = self.networks.iter().map(|n| format!("remove network {n}"));
        let volumes = self.volumes.iter().map(|v| format!("remove volume {v}"));
        containers.chain(networks).chain(volumes).collect()
    }

    /// Stops and removes the containers (together, each given `grace` to stop), then the
    /// networks and volumes.
    pub async fn apply(
        self,
        docker: &Docker,
        grace: Option<Duration>,
    ) -> Result<DownPlan, ComposeError> {
        let removals = self.removed.iter().map(|name| async move {
            containers::stop(docker, name, grace).await?;
            match containers::remove(docker, name, true, true).await {
                Err(error) if error.is_not_found() => Ok(()),
                other => other,
            }
        });
        join_all(removals)
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        let networks = self.networks.iter().map(|name| async move {
            docker
                .remove_network(name)
                .await
                .doing(format!("remove network {name}"))
        });
        join_all(networks)
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        let volumes = self.volumes.iter().map(|name| async move {
            docker
                .remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>)
                .await
                .doing(format!("remove volume {name}"))
        });
        join_all(volumes)
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self)
    }
}

/// One container of a project, as `compose::ps` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub name: String,
    pub service: String,
    pub number: i64,
    /// `running`, `exited`, `created`, …
    pub state: String,
    /// The engine's words, e.g. `Up 3 seconds (healthy)`.
    pub status: String,
    /// `healthy`, `unhealthy`, `starting`, or empty without a healthcheck.
    pub health: String,
    pub id: String,
    pub image: String,
    /// The id of the image it runs (`sha256:…`): what a release records of each service.
    pub image_id: String,
    /// Its ports, published or not.
    pub ports: Vec<containers::Port>,
}

/// The containers of `project`, by service and number.
pub async fn ps(docker: &Docker, project: &str) -> Result<Vec<Status>, EngineError> {
    let mut found = Vec::new();
    for summary in containers::list(docker, &project_filter(project)).await? {
        let labels = summary.labels.clone().unwrap_or_default();
        if labels.get(ONEOFF_LABEL).is_some_and(|v| v == "True") {
            continue;
        }
        let status = summary.status.clone().unwrap_or_default();
        let health = containers::health_in_status(&status).to_string();
        let ports = containers::summary_ports(&summary);
        found.push(Status {
            name: containers::summary_name(&summary),
            service: labels.get(SERVICE_LABEL).cloned().unwrap_or_default(),
            number: labels
                .get(NUMBER_LABEL)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
            state: summary.state.map(|s| s.to_string()).unwrap_or_default(),
            status,
            health,
            id: summary.id.unwrap_or_default(),
            image: summary.image.unwrap_or_default(),
            image_id: summary.image_id.unwrap_or_default(),
            ports,
        });
    }
    found.sort_by(|a, b| (&a.service, a.number).cmp(&(&b.service, b.number)));
    Ok(found)
}
