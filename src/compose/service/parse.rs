//! Reads a [`Service`] from a tree: a compose file's service (short and long syntax alike), a
//! `docker::run` spec, or a service of a project map handed back to `compose::up`. Each value
//! is checked where it is read, so an error names its line and path
//! (`compose.yaml:14: services.api.ports[1]: …`). A key cutover does not support is a warning
//! in a compose file (compose files carry keys for other tools) and an error in a Rhai map
//! (where it is most likely a typo).

use std::path::Path;

use crate::{
    compose::dotenv::EnvFile,
    compose::service::reader::{Dialect, Reader},
    compose::service::syntax::{cpus, duration, expose, mount, ports, size},
    compose::service::{Attachment, Dependency, Healthcheck, Service},
    compose::tree::{Node, SpecError, Value, join},
};

/// Reads one service at `path` (`services.api`, or empty for a run spec).
pub fn service(node: &Node, path: &str, reader: &mut Reader) -> Result<Service, SpecError> {
    let mut service = Service::default();
    let mut image = None;
    let mut env_files: Vec<(String, Option<String>)> = Vec::new();
    let mut environment: Vec<(String, Option<String>)> = Vec::new();
    let mut aliases = Vec::new();
    let run = reader.dialect == Dialect::Run;
    for entry in node.map(path)? {
        let at = join(path, &entry.key);
        let value = &entry.value;
        match entry.key.as_str() {
            "image" => image = Some(value.str(&at)?),
            "container_name" => service.container_name = Some(value.str(&at)?),
            "name" if run => service.container_name = Some(value.str(&at)?),
            "command" => service.command = command(value, &at)?,
            "entrypoint" => service.entrypoint = command(value, &at)?,
            "environment" => environment.extend(value.pairs(&at)?),
            "env" if run => environment.extend(value.pairs(&at)?),
            "env_file" => {
                for file in env_file_paths(value, &at)? {
                    let vars = EnvFile::load(Path::new(&reader.host_path(&file)))
                        .map_err(|e| value.error(&at, e.to_string()))?;
                    env_files.extend(vars.vars.into_iter().map(|(k, v)| (k, Some(v))));
                }
            }
            "ports" => {
                for (i, item) in value.seq(&at)?.iter().enumerate() {
                    service.ports.extend(ports(item, &format!("{at}[{i}]"))?);
                }
            }
            "expose" => {
                for (i, item) in value.seq(&at)?.iter().enumerate() {
                    service.expose.extend(expose(item, &format!("{at}[{i}]"))?);
                }
            }
            "networks" => service.networks = networks(value, &at, reader)?,
            "network_mode" => service.network_mode = Some(network_mode(value, &at)?),
            "network" if run => {
                service
                    .networks
                    .insert(value.str(&at)?, Attachment::default());
            }
            "aliases" if run => aliases = value.strings(&at)?,
            "volumes" => {
                for (i, item) in value.seq(&at)?.iter().enumerate() {
                    service
                        .volumes
                        .push(mount(item, &format!("{at}[{i}]"), reader)?);
                }
            }
            "depends_on" if !run => service.depends_on = depends_on(value, &at, reader)?,
            "healthcheck" => service.healthcheck = healthcheck(value, &at, reader)?,
            "labels" => {
                for (name, text) in value.pairs(&at)? {
                    service.labels.insert(name, text.unwrap_or_default());
                }
            }
            "restart" => service.restart = Some(restart(value, &at)?),
            "profiles" if !run => service.profiles = value.strings(&at)?,
            "deploy" => deploy(value, &at, &mut service, reader)?,
            "cpus" => service.deploy.resources.limits.cpus = Some(cpus(value, &at)?),
            "mem_limit" => service.deploy.resources.limits.memory = Some(size(value, &at)?),
            "memory" if run => service.deploy.resources.limits.memory = Some(size(value, &at)?),
            "user" => service.user = Some(value.str(&at)?),
            "working_dir" => service.working_dir = Some(value.str(&at)?),
            "hostname" => service.hostname = Some(value.str(&at)?),
            "stop_grace_period" => service.stop_grace_period = Some(duration(value, &at)?),
            _ => reader.unsupported(entry, path)?,
        }
    }
    service.image = image.ok_or_else(|| node.error(path, "no `image`: every service needs one"))?;
    if service.network_mode.is_some() && !service.networks.is_empty() {
        return Err(node.error(
            path,
            "`network_mode` and `networks` cannot be used together",
        ));
    }
    for (name, value) in env_files.into_iter().chain(environment) {
        match value.or_else(|| (reader.lookup)(&name)) {
            Some(value) => service.environment.insert(name, value),
            None => service.environment.remove(&name),
        };
    }
    if !aliases.is_empty() {
        for attachment in service.networks.values_mut() {
            attachment.aliases.extend(aliases.iter().cloned());
        }
    }
    Ok(service)
}

fn command(node: &Node, path: &str) -> Result<Option<Vec<String>>, SpecError> {
    match &node.value {
        Value::Null => Ok(None),
        Value::Seq(_) => Ok(Some(node.strings(path)?)),
        _ => crate::exec::split_words(&node.str(path)?)
            .map(Some)
            .map_err(|e| node.error(path, e)),
    }
}

fn env_file_paths(node: &Node, path: &str) -> Result<Vec<String>, SpecError> {
    match &node.value {
        Value::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let at = format!("{path}[{i}]");
                match item.get("path") {
                    Some(file) => file.str(&join(&at, "path")),
                    None => item.str(&at),
                }
            })
            .collect(),
        _ => Ok(vec![node.str(path)?]),
    }
}

fn networks(
    node: &Node,
    path: &str,
    reader: &mut Reader,
) -> Result<std::collections::BTreeMap<String, Attachment>, SpecError> {
    let mut attached = std::collections::BTreeMap::new();
    if let Value::Seq(items) = &node.value {
        for (i, item) in items.iter().enumerate() {
            attached.insert(item.str(&format!("{path}[{i}]"))?, Attachment::default());
        }
        return Ok(attached);
    }
    for entry in node.map(path)? {
        let at = join(path, &entry.key);
        let mut attachment = Attachment::default();
        for setting in entry.value.map(&at)? {
            match setting.key.as_str() {
                "aliases" => attachment.aliases = setting.value.strings(&join(&at, "aliases"))?,
                _ => reader.unsupported(setting, &at)?,
            }
        }
        attached.insert(entry.key.clone(), attachment);
    }
    Ok(attached)
}

const CONDITIONS: [&str; 3] = [
    "service_started",
    "service_healthy",
    "service_completed_successfully",
];

fn depends_on(
    node: &Node,
    path: &str,
    reader: &mut Reader,
) -> Result<std::collections::BTreeMap<String, Dependency>, SpecError> {
    let mut deps = std::collections::BTreeMap::new();
    let started = || Dependency {
        condition: CONDITIONS[0].into(),
    };
    if let Value::Seq(items) = &node.value {
        for (i, item) in items.iter().enumerate() {
            deps.insert(item.str(&format!("{path}[{i}]"))?, started());
        }
        return Ok(deps);
    }
    for entry in node.map(path)? {
        let at = join(path, &entry.key);
        let mut dependency = started();
        for setting in entry.value.map(&at)? {
            let setting_at = join(&at, &setting.key);
            match setting.key.as_str() {
                "condition" => {
                    let condition = setting.value.str(&setting_at)?;
                    if !CONDITIONS.contains(&condition.as_str()) {
                        return Err(setting.value.error(
                            &setting_at,
                            format!(
                                "unknown condition {condition:?} (use {})",
                                CONDITIONS.join(", ")
                            ),
                        ));
                    }
                    dependency.condition = condition;
                }
                _ => reader.unsupported(setting, &at)?,
            }
        }
        deps.insert(entry.key.clone(), dependency);
    }
    Ok(deps)
}

fn healthcheck(
    node: &Node,
    path: &str,
    reader: &mut Reader,
) -> Result<Option<Healthcheck>, SpecError> {
    let mut check = Healthcheck::default();
    for entry in node.map(path)? {
        let at = join(path, &entry.key);
        let value = &entry.value;
        match entry.key.as_str() {
            "test" => {
                check.test = match &value.value {
                    Value::Seq(_) => value.strings(&at)?,
                    _ => vec!["CMD-SHELL".into(), value.str(&at)?],
                };
                let kind = check.test.first().map(String::as_str);
                if !matches!(kind, Some("CMD" | "CMD-SHELL" | "NONE")) {
                    return Err(value.error(&at, "a test list starts with CMD, CMD-SHELL or NONE"));
                }
            }
            "interval" => check.interval = Some(duration(value, &at)?),
            "timeout" => check.timeout = Some(duration(value, &at)?),
            "start_period" => check.start_period = Some(duration(value, &at)?),
            "retries" => {
                let retries = value.int(&at)?;
                check.retries = Some(
                    u32::try_from(retries)
                        .map_err(|_| value.error(&at, format!("invalid retries {retries}")))?,
                );
            }
            "disable" => {
                if value.bool(&at)? {
                    check.test = vec!["NONE".into()];
                }
            }
            _ => reader.unsupported(entry, path)?,
        }
    }
    if check.test.is_empty() {
        return Err(node.error(path, "a healthcheck needs a `test`"));
    }
    Ok(Some(check))
}

fn restart(node: &Node, path: &str) -> Result<String, SpecError> {
    let text = node.str(path)?;
    let valid = match text.split_once(':') {
        Some(("on-failure", n)) => n.parse::<u32>().is_ok(),
        Some(_) => false,
        None => matches!(
            text.as_str(),
            "no" | "always" | "unless-stopped" | "on-failure"
        ),
    };
    if !valid {
        return Err(node.error(
            path,
            format!(
                "invalid restart policy {text:?} (use no, always, unless-stopped, on-failure[:N])"
            ),
        ));
    }
    Ok(text)
}

fn deploy(
    node: &Node,
    path: &str,
    service: &mut Service,
    reader: &mut Reader,
) -> Result<(), SpecError> {
    for entry in node.map(path)? {
        let at = join(path, &entry.key);
        match entry.key.as_str() {
            "replicas" if reader.dialect != Dialect::Run => {
                let replicas = entry.value.int(&at)?;
                service.deploy.replicas = Some(u32::try_from(replicas).map_err(|_| {
                    entry
                        .value
                        .error(&at, format!("invalid replicas {replicas}"))
                })?);
            }
            "resources" => {
                for resource in entry.value.map(&at)? {
                    let resource_at = join(&at, &resource.key);
                    if resource.key != "limits" {
                        reader.unsupported(resource, &at)?;
                        continue;
                    }
                    for limit in resource.value.map(&resource_at)? {
                        let limit_at = join(&resource_at, &limit.key);
                        let limits = &mut service.deploy.resources.limits;
                        match limit.key.as_str() {
                            "memory" => limits.memory = Some(size(&limit.value, &limit_at)?),
                            "cpus" => limits.cpus = Some(cpus(&limit.value, &limit_at)?),
                            _ => reader.unsupported(limit, &resource_at)?,
                        }
                    }
                }
            }
            _ => reader.unsupported(entry, path)?,
        }
    }
    Ok(())
}

/// `network_mode`: the engine's own modes. Joining another container's namespace
/// (`service:…`, `container:…`) is not supported.
fn network_mode(value: &Node, at: &str) -> Result<String, SpecError> {
    let mode = value.str(at)?;
    match mode.as_str() {
        "host" | "none" | "bridge" => Ok(mode),
        other => Err(value.error(
            at,
            format!("network_mode {other:?} is not supported (host, none or bridge)"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::tree::parse;

    fn read(text: &str, dialect: Dialect) -> (Result<Service, SpecError>, Vec<SpecError>) {
        let tree = parse(text, "c.yaml").unwrap();
        let mut warnings = Vec::new();
        let lookup = |name: &str| (name == "FROM_ENV").then(|| "yes".to_string());
        let mut reader = Reader {
            dialect,
            base_dir: Path::new("/stack"),
            lookup: &lookup,
            warnings: &mut warnings,
        };
        let service = service(&tree, "", &mut reader);
        (service, warnings)
    }

    #[test]
    fn short_and_long_syntax() {
        let (service, warnings) = read(
            "image: demo:1\ncommand: serve --port \"8 0\"\nenvironment: [A=1, FROM_ENV, MISSING]\n\
             ports: [\"8080:80\", \"127.0.0.1:9000-9001:90-91/udp\", 7000, {target: 5, published: 6}, \"127.0.0.1:4100-4109:4000\"]\n\
             volumes: [data:/data:ro, ./conf:/etc/conf, /anon]\n\
             healthcheck: {test: demo check, interval: 1s, retries: 3}\n\
             deploy: {replicas: 2, resources: {limits: {memory: 64m, cpus: '0.5'}}}\nulimits: {}\n",
            Dialect::ComposeFile,
        );
        let service = service.unwrap();
        assert_eq!(service.command.unwrap(), ["serve", "--port", "8 0"]);
        assert_eq!(service.environment.len(), 2);
        assert_eq!(service.environment["FROM_ENV"], "yes");
        assert_eq!(service.ports.len(), 6);
        assert_eq!(service.ports[2].host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(
            (service.ports[2].published, service.ports[2].target),
            (Some(9001), 91)
        );
        assert_eq!(service.ports[4].published, Some(6));
        // A host range for one container port: the engine picks one port of it per replica.
        assert_eq!(
            (
                service.ports[5].published,
                service.ports[5].published_end,
                service.ports[5].target
            ),
            (Some(4100), Some(4109), 4000)
        );
        assert_eq!(service.volumes[0].kind, "volume");
        assert!(service.volumes[0].read_only);
        assert_eq!(service.volumes[1].source.as_deref(), Some("/stack/conf"));
        assert_eq!(service.volumes[2].source, None);
        let check = service.healthcheck.unwrap();
        assert_eq!(check.test, ["CMD-SHELL", "demo check"]);
        assert_eq!(check.interval, Some(1000));
        assert_eq!(service.deploy.replicas, Some(2));
        assert_eq!(service.deploy.resources.limits.memory, Some(64 << 20));
        assert_eq!(service.deploy.resources.limits.cpus, Some(0.5));
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].line, 8);
        assert_eq!(warnings[0].path, "ulimits");
    }

    #[test]
    fn errors_name_line_and_path() {
        let (service, _) = read(
            "image: x\nports:\n  - 80\n  - \"99999:80\"\n",
            Dialect::ComposeFile,
        );
        let error = service.unwrap_err();
        assert_eq!((error.line, error.path.as_str()), (4, "ports[1]"));
        let (service, _) = read("image: x\nulimits: {}\n", Dialect::Run);
        assert_eq!(service.unwrap_err().message, "unknown key");
        let (service, _) = read("command: x\n", Dialect::Run);
        assert!(service.unwrap_err().message.contains("image"));
    }
}
