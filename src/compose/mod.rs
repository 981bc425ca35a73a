//! The compose model: a project (name, services, networks, volumes) read from a compose file
//! with docker compose's rules — `${VAR}` interpolation from the environment and the `.env`
//! file (the process environment wins), `env_file`, profiles (`COMPOSE_PROFILES`), project
//! names (`COMPOSE_PROJECT_NAME`, `name:`, the directory) — checked as a whole (networks,
//! volumes and dependencies exist, no dependency cycle). A malformed file is an error naming
//! the line; a key cutover does not support is a warning naming the line.
//!
//! `compose::load` hands the project to scripts as a map ([`Project`] serialized), and
//! `compose::up` reads such a map back with [`Project::from_node`], so a runbook may inspect or
//! adjust a project between the two. Bringing it up is [`crate::compose::plan`].

pub(crate) mod apply;
pub(crate) mod dotenv;
pub(crate) mod down;
pub(crate) mod interpolate;
pub(crate) mod parsed;
pub(crate) mod plan;
pub(crate) mod project;
pub(crate) mod service;
pub(crate) mod tree;
pub(crate) mod units;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::Serialize;

use crate::{
    compose::dotenv::{DotenvError, EnvFile},
    compose::interpolate::interpolate,
    compose::service::Service,
    compose::service::parse,
    compose::service::reader::{Dialect, Reader},
    compose::tree::{Node, SpecError, Value, join},
};

#[derive(Debug, Clone, Serialize)]
pub struct Project {
    pub name: String,
    /// Where relative paths start: the compose file's directory.
    pub working_dir: String,
    pub config_file: String,
    /// The active profiles: services with none of them (and not needed by one that runs) are
    /// left alone.
    pub profiles: Vec<String>,
    pub services: BTreeMap<String, Service>,
    pub networks: BTreeMap<String, Resource>,
    pub volumes: BTreeMap<String, Resource>,
    /// Keys that were ignored, as `file:line: path: …`.
    pub warnings: Vec<String>,
    /// Keys Docker Swarm ignores (`container_name`, `depends_on`, host port ranges), as
    /// `file:line: path: …`: warned about when the project is brought up on a swarm.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub swarm_warnings: Vec<String>,
}

/// A network or a volume: the engine's name for it, and whether it is someone else's.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Resource {
    pub name: String,
    pub external: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// A network without a route out: containers on it reach only each other.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub internal: bool,
    /// A network's address pools.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipam: Option<Ipam>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Ipam {
    /// `default` when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<IpamPool>,
}

/// One address pool of a network.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct IpamPool {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    EnvFile(#[from] DotenvError),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Engine(#[from] crate::docker::EngineError),
    #[error(transparent)]
    Image(#[from] crate::docker::image::ImageError),
    /// Services that could not be brought up, each with why.
    #[error("{0}")]
    Failed(String),
}

/// Options of `compose::load`.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Variables for interpolation; default `.env` beside the compose file, if present.
    pub env_file: Option<PathBuf>,
    /// The env file's variables when the caller has read it already (with a dry run's pending
    /// `env::save`s, which the file on disk lacks).
    pub env_file_vars: Option<EnvFile>,
    /// Active profiles; default `$COMPOSE_PROFILES`.
    pub profiles: Option<Vec<String>>,
    /// Default `$COMPOSE_PROJECT_NAME`, the file's `name:`, then its directory's name.
    pub project_name: Option<String>,
    /// Variables looked up last, after the environment and the env file (cutover's
    /// `--env-file` and `env::load` ones).
    pub fallback: Vec<(String, String)>,
    /// Where the values of secret-looking variables read here go, for masking: those of the
    /// env file, and every service's `environment` (`env_file:` ones included).
    pub redactor: Option<std::sync::Arc<crate::redact::Redactor>>,
    /// Where the file's tree, as an earlier run parsed it, may be found (and kept); `None`
    /// parses it every time.
    pub parse_cache: Option<parsed::ParseCache>,
}

/// Reads and checks the compose file at `path`.
pub fn load(path: &Path, options: &LoadOptions) -> Result<Project, ComposeError> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ComposeError::Read {
        path: source.clone(),
        source: e,
    })?;
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = absolute.parent().unwrap_or(Path::new("/")).to_path_buf();
    let env_file = match (&options.env_file, &options.env_file_vars) {
        (Some(_), Some(vars)) => vars.clone(),
        (Some(file), None) => EnvFile::load(file)?,
        (None, _) if dir.join(".env").is_file() => EnvFile::load(&dir.join(".env"))?,
        (None, _) => EnvFile::default(),
    };
    // Registered before anything could show them (an error, a warning, the project).
    let register = |name: &str, value: &str| {
        if let Some(redactor) = &options.redactor {
            redactor.add_if_secret_name(name, value);
        }
    };
    for (name, value) in &env_file.vars {
        register(name, value);
    }
    let lookup = |name: &str| {
        std::env::var(name)
            .ok()
            .or_else(|| env_file.get(name).map(str::to_string))
            .or_else(|| {
                let mut fallback = options.fallback.iter().rev();
                fallback.find(|(n, _)| n == name).map(|(_, v)| v.clone())
            })
    };
    let mut tree = match &options.parse_cache {
        Some(cache) => cache.parse(&absolute, &text, &source)?,
        None => tree::parse(&text, &source)?,
    };
    tree.map_strings("", &mut |text, path, line| {
        interpolate(text, &lookup).map_err(|e| SpecError::new(line, path, e.to_string()))
    })
    .map_err(|e| e.in_source(&source))?;

    let mut warnings = Vec::new();
    let mut declared_name = None;
    let mut sections: BTreeMap<&str, &Node> = BTreeMap::new();
    let top = tree.map("").map_err(|e| e.in_source(&source))?;
    for entry in top {
        match entry.key.as_str() {
            "services" | "networks" | "volumes" | "secrets" | "configs" => {
                sections.insert(entry.key.as_str(), &entry.value);
            }
            "name" => {
                declared_name = Some(entry.value.str("name").map_err(|e| e.in_source(&source))?)
            }
            "version" => {}
            key if key.starts_with("x-") => {}
            _ => warnings.push(SpecError::new(
                entry.line,
                &entry.key,
                "not supported by cutover, ignored",
            )),
        }
    }
    // COMPOSE_PROJECT_NAME and COMPOSE_PROFILES come from the environment, then the `.env`
    // file, as docker compose reads them.
    let setting = |name: &str| {
        std::env::var(name)
            .ok()
            .or_else(|| env_file.get(name).map(str::to_string))
    };
    let name = options
        .project_name
        .clone()
        .or_else(|| setting("COMPOSE_PROJECT_NAME"))
        .filter(|n| !n.is_empty())
        .or(declared_name)
        .unwrap_or_else(|| {
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
    let name = project_name(&name).map_err(ComposeError::Invalid)?;
    let profiles = options.profiles.clone().unwrap_or_else(|| {
        setting("COMPOSE_PROFILES")
            .unwrap_or_default()
            .split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect()
    });
    let mut reader = Reader {
        dialect: Dialect::ComposeFile,
        base_dir: &dir,
        lookup: &lookup,
        warnings: &mut warnings,
        swarm_ignored: Vec::new(),
    };
    let result = read_sections(&name, &sections, &mut reader);
    let swarm_ignored = std::mem::take(&mut reader.swarm_ignored);
    let (services, networks, volumes) = result.map_err(|e| e.in_source(&source))?;
    for service in services.values() {
        for (name, value) in &service.environment {
            register(name, value);
        }
    }
    let project = Project {
        name,
        working_dir: dir.display().to_string(),
        config_file: absolute.display().to_string(),
        profiles,
        services,
        networks,
        volumes,
        warnings: warnings
            .into_iter()
            .map(|w| w.in_source(&source).to_string())
            .collect(),
        swarm_warnings: swarm_ignored
            .into_iter()
            .map(|w| w.in_source(&source).to_string())
            .collect(),
    };
    project.check()?;
    Ok(project)
}

type Sections = (
    BTreeMap<String, Service>,
    BTreeMap<String, Resource>,
    BTreeMap<String, Resource>,
);

/// The `services`, `networks` and `volumes` of a compose file.
fn read_sections(
    project: &str,
    sections: &BTreeMap<&str, &Node>,
    reader: &mut Reader,
) -> Result<Sections, SpecError> {
    let empty = Node::null();
    let section = |key: &str| sections.get(key).copied().unwrap_or(&empty);
    let mut services = BTreeMap::new();
    for entry in section("services").map("services")? {
        let path = join("services", &entry.key);
        let mut service = parse::service(&entry.value, &path, reader)?;
        if service.image.is_empty() {
            // Built and unnamed: docker compose's name for it.
            service.image = format!("{project}-{}", entry.key);
        }
        if service.networks.is_empty() && service.network_mode.is_none() {
            service
                .networks
                .insert("default".into(), Default::default());
        }
        services.insert(entry.key.clone(), service);
    }
    let files = [
        (
            "secrets",
            file_sources(section("secrets"), "secrets", reader)?,
        ),
        (
            "configs",
            file_sources(section("configs"), "configs", reader)?,
        ),
    ];
    for service in services.values_mut() {
        for reference in std::mem::take(&mut service.files) {
            let sources = &files
                .iter()
                .find(|(s, _)| *s == reference.section)
                .unwrap()
                .1;
            let file = match sources.get(&reference.source) {
                None => {
                    return Err(SpecError::new(
                        reference.line,
                        &reference.path,
                        format!(
                            "{:?} is not declared in the top-level `{}:`",
                            reference.source, reference.section
                        ),
                    ));
                }
                // Declared, but not by a file: warned about where it is declared.
                Some(None) => continue,
                Some(Some(file)) => file.clone(),
            };
            let target = reference
                .target
                .clone()
                .unwrap_or_else(|| reference.source.clone());
            let target = match (reference.section, target.starts_with('/')) {
                (_, true) => target,
                ("secrets", false) => format!("/run/secrets/{target}"),
                (_, false) => format!("/{target}"),
            };
            service.volumes.push(crate::compose::service::Mount {
                kind: "bind".into(),
                source: Some(file),
                target,
                read_only: true,
                selinux: None,
            });
        }
    }
    if services.is_empty() {
        return Err(SpecError::new(1, "services", "the file defines no service"));
    }
    let mut networks = resources(project, section("networks"), "networks", reader)?;
    let uses_default = services
        .values()
        .any(|s| s.networks.contains_key("default"));
    if uses_default && !networks.contains_key("default") {
        networks.insert("default".into(), resource(project, "default", false));
    }
    let volumes = resources(project, section("volumes"), "volumes", reader)?;
    Ok((services, networks, volumes))
}

/// The top-level `secrets:` or `configs:`: each name to its file, made absolute; `None` for one
/// given another way (`environment`, `content`, `external`), which is warned about.
fn file_sources(
    node: &Node,
    path: &str,
    reader: &mut Reader,
) -> Result<BTreeMap<String, Option<String>>, SpecError> {
    let mut found = BTreeMap::new();
    for entry in node.map(path)? {
        let at = join(path, &entry.key);
        let mut file = None;
        for setting in entry.value.map(&at)? {
            match setting.key.as_str() {
                "file" => {
                    let text = setting.value.str(&join(&at, "file"))?;
                    file = Some(reader.host_path(&text));
                }
                "name" | "labels" => {}
                _ => reader.unsupported(setting, &at)?,
            }
        }
        found.insert(entry.key.clone(), file);
    }
    Ok(found)
}

fn resource(project: &str, key: &str, external: bool) -> Resource {
    Resource {
        name: if external {
            key.to_string()
        } else {
            format!("{project}_{key}")
        },
        external,
        ..Default::default()
    }
}

/// The top-level `networks:` or `volumes:`.
fn resources(
    project: &str,
    node: &Node,
    path: &str,
    reader: &mut Reader,
) -> Result<BTreeMap<String, Resource>, SpecError> {
    let mut found = BTreeMap::new();
    for entry in node.map(path)? {
        let at = join(path, &entry.key);
        let read = read_resource(&entry.value, &at, path == "networks", reader)?;
        let mut resource = resource(project, &entry.key, read.external);
        if !read.name.is_empty() {
            resource.name = read.name;
        }
        resource.labels = read.labels;
        resource.internal = read.internal;
        resource.ipam = read.ipam;
        found.insert(entry.key.clone(), resource);
    }
    Ok(found)
}

/// The settings of one network (`network` true) or volume; `name` is empty when not given.
pub(crate) fn read_resource(
    node: &Node,
    at: &str,
    network: bool,
    reader: &mut Reader,
) -> Result<Resource, SpecError> {
    let mut found = Resource::default();
    for setting in node.map(at)? {
        let setting_at = join(at, &setting.key);
        let value = &setting.value;
        match setting.key.as_str() {
            "name" => found.name = value.str(&setting_at)?,
            "external" => {
                found.external = match &value.value {
                    // The old `external: {name: …}`.
                    Value::Map(_) => {
                        if let Some(name) = value.get("name") {
                            found.name = name.str(&join(&setting_at, "name"))?;
                        }
                        true
                    }
                    _ => value.bool(&setting_at)?,
                }
            }
            "labels" => {
                for (k, v) in value.pairs(&setting_at)? {
                    found.labels.insert(k, v.unwrap_or_default());
                }
            }
            "driver" if matches!(&value.value, Value::Str(d) if d == "bridge" || d == "local") => {}
            "internal" if network => found.internal = value.bool(&setting_at)?,
            "ipam" if network => found.ipam = Some(ipam(value, &setting_at, reader)?),
            _ => reader.unsupported(setting, at)?,
        }
    }
    Ok(found)
}

fn ipam(node: &Node, at: &str, reader: &mut Reader) -> Result<Ipam, SpecError> {
    let mut ipam = Ipam::default();
    for setting in node.map(at)? {
        let setting_at = join(at, &setting.key);
        match setting.key.as_str() {
            "driver" => ipam.driver = Some(setting.value.str(&setting_at)?),
            "config" => {
                for (i, item) in setting.value.seq(&setting_at)?.iter().enumerate() {
                    let item_at = format!("{setting_at}[{i}]");
                    let mut pool = IpamPool::default();
                    for field in item.map(&item_at)? {
                        let field_at = join(&item_at, &field.key);
                        let text = || field.value.str(&field_at);
                        match field.key.as_str() {
                            "subnet" => pool.subnet = Some(cidr(&field.value, &field_at)?),
                            "gateway" => pool.gateway = Some(text()?),
                            "ip_range" => pool.ip_range = Some(cidr(&field.value, &field_at)?),
                            _ => reader.unsupported(field, &item_at)?,
                        }
                    }
                    ipam.config.push(pool);
                }
            }
            _ => reader.unsupported(setting, at)?,
        }
    }
    Ok(ipam)
}

/// `ADDRESS/BITS`.
fn cidr(node: &Node, at: &str) -> Result<String, SpecError> {
    let text = node.str(at)?;
    let valid = text.split_once('/').is_some_and(|(address, bits)| {
        let bits = bits.parse::<u8>().ok();
        match address.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(_)) => bits.is_some_and(|b| b <= 32),
            Ok(std::net::IpAddr::V6(_)) => bits.is_some_and(|b| b <= 128),
            Err(_) => false,
        }
    });
    if !valid {
        return Err(node.error(at, format!("{text:?} is not a subnet (ADDRESS/BITS)")));
    }
    Ok(text)
}

/// A project name as compose accepts it: lowercase letters, digits, `-` and `_`.
pub(crate) fn project_name(name: &str) -> Result<String, String> {
    let name = name.to_ascii_lowercase();
    let cleaned: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    let cleaned = cleaned.trim_start_matches(['-', '_']).to_string();
    if cleaned.is_empty() {
        return Err(format!(
            "cannot make a project name from {name:?}; pass #{{project_name: \"…\"}}"
        ));
    }
    Ok(cleaned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str, env: &str) -> Result<Project, ComposeError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("compose.yaml"), text).unwrap();
        std::fs::write(dir.path().join(".env"), env).unwrap();
        load(
            &dir.path().join("compose.yaml"),
            &LoadOptions {
                project_name: Some("Demo.Stack".into()),
                ..Default::default()
            },
        )
    }

    #[test]
    fn interpolation_profiles_and_defaults() {
        let project = load_text(
            "services:\n  api:\n    image: demo:${TAG:-v1}\n    depends_on: [db]\n  db:\n    image: db:${DB_TAG}\n  debug:\n    image: x\n    profiles: [debug]\nvolumes:\n  data:\n",
            "DB_TAG=15\n",
        )
        .unwrap();
        assert_eq!(project.name, "demostack");
        assert_eq!(project.services["api"].image, "demo:v1");
        assert_eq!(project.services["db"].image, "db:15");
        assert_eq!(project.networks["default"].name, "demostack_default");
        assert_eq!(project.volumes["data"].name, "demostack_data");
        assert_eq!(project.selection(&[], &[]).unwrap(), ["db", "api"]);
        assert_eq!(
            project.selection(&[], &["debug".into()]).unwrap(),
            ["db", "api", "debug"]
        );
        assert_eq!(
            project.selection(&["api".into()], &[]).unwrap(),
            ["db", "api"]
        );
    }

    #[test]
    fn errors() {
        let error = load_text("services:\n  api:\n    image: ${TAG:?set TAG}\n", "").unwrap_err();
        assert!(
            error.to_string().ends_with(
                "compose.yaml:3: services.api.image: required variable TAG is missing a value: set TAG"
            ),
            "{error}"
        );
        let error = load_text(
            "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on: [a]\n",
            "",
        )
        .unwrap_err();
        assert!(error.to_string().contains("cycle: a → b → a"), "{error}");
        let error =
            load_text("services:\n  a:\n    image: x\n    networks: [back]\n", "").unwrap_err();
        assert!(error.to_string().contains("\"back\""), "{error}");
    }
}
