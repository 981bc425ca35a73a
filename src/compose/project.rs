//! Reading a project map back (as `compose::load` returned it and a script perhaps adjusted
//! it) and the checks every project passes: references resolve, dependencies form no cycle.
//! Also the order services start in, and which services an `up` starts.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use crate::{
    compose::service::parse,
    compose::service::reader::{Dialect, Reader},
    compose::tree::{Node, SpecError, join},
    compose::{ComposeError, Project, project_name, read_resource},
};

impl Project {
    /// Reads a project map as `compose::load` returned it, perhaps adjusted by a script.
    pub fn from_node(node: &Node) -> Result<Project, ComposeError> {
        let text = |key: &str| -> Result<String, SpecError> {
            node.get(key)
                .ok_or_else(|| {
                    SpecError::new(0, key, "missing: pass the map compose::load returned")
                })?
                .str(key)
        };
        let name = project_name(&text("name")?).map_err(ComposeError::Invalid)?;
        let working_dir = text("working_dir")?;
        let config_file = text("config_file").unwrap_or_default();
        let profiles = match node.get("profiles") {
            Some(list) if !list.is_null() => list.strings("profiles")?,
            _ => Vec::new(),
        };
        let lookup = |name: &str| std::env::var(name).ok();
        let mut warnings = Vec::new();
        let mut reader = Reader {
            dialect: Dialect::Project,
            base_dir: Path::new(&working_dir),
            lookup: &lookup,
            warnings: &mut warnings,
            swarm_ignored: Vec::new(),
        };
        let mut services = BTreeMap::new();
        let mut swarm_warnings = Vec::new();
        let mut networks = BTreeMap::new();
        let mut volumes = BTreeMap::new();
        for entry in node.map("")? {
            let at = entry.key.as_str();
            match at {
                "name" | "working_dir" | "config_file" | "profiles" | "warnings" => {}
                "swarm_warnings" => {
                    swarm_warnings = entry.value.strings(at)?;
                }
                "services" => {
                    for service in entry.value.map(at)? {
                        let path = join(at, &service.key);
                        let parsed = parse::service(&service.value, &path, &mut reader)?;
                        services.insert(service.key.clone(), parsed);
                    }
                }
                "networks" | "volumes" => {
                    let found = if at == "networks" {
                        &mut networks
                    } else {
                        &mut volumes
                    };
                    for item in entry.value.map(at)? {
                        let path = join(at, &item.key);
                        let resource =
                            read_resource(&item.value, &path, at == "networks", &mut reader)?;
                        if resource.name.is_empty() {
                            return Err(item.value.error(&path, "needs a `name`").into());
                        }
                        found.insert(item.key.clone(), resource);
                    }
                }
                _ => return Err(SpecError::new(0, at, "unknown key").into()),
            }
        }
        let project = Project {
            name,
            working_dir,
            config_file,
            profiles,
            services,
            networks,
            volumes,
            warnings: Vec::new(),
            swarm_warnings,
        };
        project.check()?;
        Ok(project)
    }

    /// Every reference points at something declared, names are unique, and dependencies form
    /// no cycle.
    pub(crate) fn check(&self) -> Result<(), ComposeError> {
        let invalid = |message: String| Err(ComposeError::Invalid(message));
        for (name, service) in &self.services {
            for network in service.networks.keys() {
                if !self.networks.contains_key(network) {
                    return invalid(format!(
                        "service {name} uses network {network:?}, which the top-level `networks:` does not declare"
                    ));
                }
            }
            for mount in &service.volumes {
                let named = mount.kind == "volume" && mount.source.is_some();
                let source = mount.source.as_deref().unwrap_or_default();
                if named && !self.volumes.contains_key(source) {
                    return invalid(format!(
                        "service {name} uses volume {source:?}, which the top-level `volumes:` does not declare"
                    ));
                }
            }
            for (dependency, how) in &service.depends_on {
                if how.required && !self.services.contains_key(dependency) {
                    return invalid(format!(
                        "service {name} depends on {dependency:?}, which is not a service of this file"
                    ));
                }
            }
            if service.container_name.is_some() && service.deploy.replicas.unwrap_or(1) > 1 {
                return invalid(format!(
                    "service {name} has a container_name, so it cannot have more than one replica"
                ));
            }
        }
        self.start_order(&self.services.keys().cloned().collect(), &BTreeSet::new())
            .map(|_| ())
    }

    /// `names` ordered so every service comes after the ones it depends on, except optional
    /// dependencies (`required: false`) in `off`.
    pub fn start_order(
        &self,
        names: &BTreeSet<String>,
        off: &BTreeSet<String>,
    ) -> Result<Vec<String>, ComposeError> {
        fn visit(
            project: &Project,
            name: &str,
            off: &BTreeSet<String>,
            trail: &mut Vec<String>,
            order: &mut Vec<String>,
        ) -> Result<(), ComposeError> {
            if order.iter().any(|n| n == name) {
                return Ok(());
            }
            if let Some(at) = trail.iter().position(|n| n == name) {
                let cycle = [&trail[at..], &[name.to_string()]].concat().join(" → ");
                return Err(ComposeError::Invalid(format!(
                    "services depend on each other in a cycle: {cycle}"
                )));
            }
            trail.push(name.to_string());
            if let Some(service) = project.services.get(name) {
                // A dependency that is not `required` and not in the file is no dependency.
                for (dependency, how) in &service.depends_on {
                    let skipped = !how.required && off.contains(dependency);
                    if project.services.contains_key(dependency) && !skipped {
                        visit(project, dependency, off, trail, order)?;
                    }
                }
            }
            trail.pop();
            order.push(name.to_string());
            Ok(())
        }
        let mut order = Vec::new();
        for name in names {
            visit(self, name, off, &mut Vec::new(), &mut order)?;
        }
        Ok(order)
    }

    /// The services `up` starts: `targets` (or every service its profiles enable) and every
    /// service they depend on, in start order.
    pub fn selection(
        &self,
        targets: &[String],
        profiles: &[String],
    ) -> Result<Vec<String>, ComposeError> {
        for target in targets {
            if !self.services.contains_key(target) {
                return Err(ComposeError::Invalid(format!(
                    "no service {target:?} in project {} (it has {})",
                    self.name,
                    self.services.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
        }
        let enabled = |s: &crate::compose::Service| {
            s.profiles.is_empty() || s.profiles.iter().any(|p| profiles.contains(p))
        };
        let off: BTreeSet<String> = self
            .services
            .iter()
            .filter(|(_, s)| !enabled(s))
            .map(|(name, _)| name.clone())
            .collect();
        let chosen: BTreeSet<String> = if targets.is_empty() {
            self.services
                .keys()
                .filter(|name| !off.contains(*name))
                .cloned()
                .collect()
        } else {
            targets.iter().cloned().collect()
        };
        self.start_order(&chosen, &off)
    }
}
