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
    compose::service::{
        Attachment, Build, Dependency, Device, FileRef, Healthcheck, Logging, Service, Ulimit,
    },
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
            "container_name" => {
                service.container_name = Some(value.str(&at)?);
                reader.swarm_ignores(entry, path, "a task is named SERVICE.SLOT.ID");
            }
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
                if service
                    .ports
                    .iter()
                    .any(|p| p.published_end.is_some() || p.host_ip.is_some())
                {
                    reader.swarm_ignores(
                        entry,
                        path,
                        "a host address or port range; the first port is published in mode host on every node's address",
                    );
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
            "depends_on" if !run => {
                service.depends_on = depends_on(value, &at, reader)?;
                reader.swarm_ignores(
                    entry,
                    path,
                    "services start in any order, whatever the condition",
                );
            }
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
            "build" if !run => service.build = Some(build(value, &at, reader)?),
            "pull_policy" if !run => service.pull_policy = Some(pull_policy(value, &at)?),
            "platform" => service.platform = Some(value.str(&at)?),
            "ulimits" => service.ulimits = ulimits(value, &at, reader)?,
            "shm_size" => service.shm_size = Some(size(value, &at)?),
            "cap_add" => service.cap_add = value.strings(&at)?,
            "cap_drop" => service.cap_drop = value.strings(&at)?,
            "devices" => {
                for (i, item) in value.seq(&at)?.iter().enumerate() {
                    service
                        .devices
                        .push(device(item, &format!("{at}[{i}]"), reader)?);
                }
            }
            "logging" => service.logging = Some(logging(value, &at, reader)?),
            "init" => service.init = Some(value.bool(&at)?),
            "privileged" => service.privileged = value.bool(&at)?,
            "read_only" => service.read_only = value.bool(&at)?,
            "tty" => service.tty = value.bool(&at)?,
            "stdin_open" => service.stdin_open = value.bool(&at)?,
            "extra_hosts" => service.extra_hosts = extra_hosts(value, &at)?,
            "security_opt" => service.security_opt = value.strings(&at)?,
            "sysctls" => {
                for (name, text) in value.pairs(&at)? {
                    service.sysctls.insert(name, text.unwrap_or_default());
                }
            }
            "secrets" | "configs" if !run => {
                let section = if entry.key == "secrets" {
                    "secrets"
                } else {
                    "configs"
                };
                for (i, item) in value.seq(&at)?.iter().enumerate() {
                    let item_at = format!("{at}[{i}]");
                    service
                        .files
                        .push(file_ref(item, &item_at, section, reader)?);
                }
            }
            "tmpfs" => {
                service.tmpfs = value.strings(&at)?;
                if let Some(bad) = service.tmpfs.iter().find(|t| !t.starts_with('/')) {
                    return Err(
                        value.error(&at, format!("tmpfs {bad:?}: the path must be absolute"))
                    );
                }
            }
            _ => reader.unsupported(entry, path)?,
        }
    }
    // A service that is built may leave its image unnamed: the project names it
    // `<project>-<service>`, as docker compose does.
    service.image = match image {
        Some(image) => image,
        None if service.build.is_some() => String::new(),
        None => {
            let message = match run {
                true => "no `image`: a container needs one",
                false => "no `image` and no `build`: every service needs one or the other",
            };
            return Err(node.error(path, message));
        }
    };
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
            let setting_at = join(&at, &setting.key);
            match setting.key.as_str() {
                "aliases" => attachment.aliases = setting.value.strings(&setting_at)?,
                "ipv4_address" => {
                    attachment.ipv4_address = Some(address(&setting.value, &setting_at, false)?)
                }
                "ipv6_address" => {
                    attachment.ipv6_address = Some(address(&setting.value, &setting_at, true)?)
                }
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
        restart: false,
        required: true,
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
                "restart" => dependency.restart = setting.value.bool(&setting_at)?,
                "required" => dependency.required = setting.value.bool(&setting_at)?,
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
    let mut disable = None;
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
            "start_interval" => check.start_interval = Some(duration(value, &at)?),
            "retries" => {
                let retries = value.int(&at)?;
                check.retries = Some(
                    u32::try_from(retries)
                        .map_err(|_| value.error(&at, format!("invalid retries {retries}")))?,
                );
            }
            "disable" => disable = Some(value.bool(&at)?),
            _ => reader.unsupported(entry, path)?,
        }
    }
    match disable {
        // The image's own healthcheck is turned off, as `test: [NONE]` does.
        Some(true) => {
            if !check.test.is_empty() && check.test != ["NONE"] {
                return Err(node.error(path, "`disable: true` and a `test` contradict each other"));
            }
            check.test = vec!["NONE".into()];
        }
        // No test: the image's own healthcheck is kept, with the timings given here (the
        // engine fills what a check leaves out from the image's).
        _ if check.test.is_empty() && check == Healthcheck::default() => return Ok(None),
        _ => {}
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
                    let resources = &mut service.deploy.resources;
                    let limits = match resource.key.as_str() {
                        "limits" => &mut resources.limits,
                        "reservations" => &mut resources.reservations,
                        _ => {
                            reader.unsupported(resource, &at)?;
                            continue;
                        }
                    };
                    for limit in resource.value.map(&resource_at)? {
                        let limit_at = join(&resource_at, &limit.key);
                        match limit.key.as_str() {
                            "memory" => limits.memory = Some(size(&limit.value, &limit_at)?),
                            "cpus" => limits.cpus = Some(cpus(&limit.value, &limit_at)?),
                            _ => reader.unsupported(limit, &resource_at)?,
                        }
                    }
                }
            }
            "placement" if reader.dialect != Dialect::Run => {
                for setting in entry.value.map(&at)? {
                    let setting_at = join(&at, &setting.key);
                    match setting.key.as_str() {
                        "constraints" => {
                            service.deploy.placement.constraints =
                                setting.value.strings(&setting_at)?
                        }
                        _ => reader.unsupported(setting, &at)?,
                    }
                }
            }
            "update_config" if reader.dialect != Dialect::Run => {
                let update = &mut service.deploy.update_config;
                for setting in entry.value.map(&at)? {
                    let setting_at = join(&at, &setting.key);
                    let value = &setting.value;
                    match setting.key.as_str() {
                        "parallelism" => update.parallelism = Some(value.int(&setting_at)?),
                        "delay" => {
                            update.delay = Some(super::syntax::duration(value, &setting_at)?)
                        }
                        "monitor" => {
                            update.monitor = Some(super::syntax::duration(value, &setting_at)?)
                        }
                        "order" | "failure_action" => {
                            let text = value.str(&setting_at)?;
                            let allowed: &[&str] = if setting.key == "order" {
                                &["start-first", "stop-first"]
                            } else {
                                &["pause", "continue", "rollback"]
                            };
                            if !allowed.contains(&text.as_str()) {
                                return Err(value.error(
                                    &setting_at,
                                    format!("{text:?}: expected {}", allowed.join(" or ")),
                                ));
                            }
                            if setting.key == "order" {
                                update.order = Some(text);
                            } else {
                                update.failure_action = Some(text);
                            }
                        }
                        _ => reader.unsupported(setting, &at)?,
                    }
                }
            }
            _ => reader.unsupported(entry, path)?,
        }
    }
    Ok(())
}

/// `build: DIR` or `build: {context, dockerfile, args, target, labels}`.
fn build(node: &Node, path: &str, reader: &mut Reader) -> Result<Build, SpecError> {
    let mut build = Build::default();
    let mut context = None;
    if let Value::Map(entries) = &node.value {
        for entry in entries {
            let at = join(path, &entry.key);
            let value = &entry.value;
            match entry.key.as_str() {
                "context" => context = Some(value.str(&at)?),
                "dockerfile" => build.dockerfile = Some(value.str(&at)?),
                "args" => {
                    for (name, text) in value.pairs(&at)? {
                        // An argument named without a value takes it from the environment.
                        if let Some(text) = text.or_else(|| (reader.lookup)(&name)) {
                            build.args.insert(name, text);
                        }
                    }
                }
                "target" => build.target = Some(value.str(&at)?),
                "labels" => {
                    for (name, text) in value.pairs(&at)? {
                        build.labels.insert(name, text.unwrap_or_default());
                    }
                }
                _ => reader.unsupported(entry, path)?,
            }
        }
    } else {
        context = Some(node.str(path)?);
    }
    let context = context.unwrap_or_else(|| ".".into());
    if context.contains("://") || context.starts_with("git@") {
        return Err(node.error(
            path,
            format!("build context {context:?}: only a local directory can be built"),
        ));
    }
    build.context = reader.host_path(&context);
    Ok(build)
}

const PULL_POLICIES: [&str; 7] = [
    "always",
    "never",
    "missing",
    "if_not_present",
    "build",
    "daily",
    "weekly",
];

fn pull_policy(node: &Node, path: &str) -> Result<String, SpecError> {
    let policy = node.str(path)?;
    if PULL_POLICIES.contains(&policy.as_str()) || policy.starts_with("every_") {
        return Ok(policy);
    }
    Err(node.error(
        path,
        format!(
            "unknown pull_policy {policy:?} (use {})",
            PULL_POLICIES.join(", ")
        ),
    ))
}

/// `nofile: 1024` or `nofile: {soft: 1024, hard: 2048}`.
fn ulimits(
    node: &Node,
    path: &str,
    reader: &mut Reader,
) -> Result<std::collections::BTreeMap<String, Ulimit>, SpecError> {
    let mut limits = std::collections::BTreeMap::new();
    for entry in node.map(path)? {
        let at = join(path, &entry.key);
        let limit = match &entry.value.value {
            Value::Map(settings) => {
                let (mut soft, mut hard) = (None, None);
                for setting in settings {
                    let setting_at = join(&at, &setting.key);
                    match setting.key.as_str() {
                        "soft" => soft = Some(setting.value.int(&setting_at)?),
                        "hard" => hard = Some(setting.value.int(&setting_at)?),
                        _ => reader.unsupported(setting, &at)?,
                    }
                }
                let (Some(soft), Some(hard)) = (soft, hard) else {
                    return Err(entry.value.error(&at, "a ulimit needs `soft` and `hard`"));
                };
                if soft > hard {
                    return Err(entry.value.error(
                        &at,
                        format!("the soft limit {soft} is above the hard limit {hard}"),
                    ));
                }
                Ulimit { soft, hard }
            }
            _ => {
                let n = entry.value.int(&at)?;
                Ulimit { soft: n, hard: n }
            }
        };
        limits.insert(entry.key.clone(), limit);
    }
    Ok(limits)
}

/// `HOST[:CONTAINER[:PERMISSIONS]]` or `{source, target, permissions}`.
fn device(node: &Node, path: &str, reader: &mut Reader) -> Result<Device, SpecError> {
    let mut device = Device {
        source: String::new(),
        target: String::new(),
        permissions: "rwm".into(),
    };
    if let Value::Map(entries) = &node.value {
        for entry in entries {
            let at = join(path, &entry.key);
            match entry.key.as_str() {
                "source" => device.source = entry.value.str(&at)?,
                "target" => device.target = entry.value.str(&at)?,
                "permissions" => device.permissions = entry.value.str(&at)?,
                _ => reader.unsupported(entry, path)?,
            }
        }
    } else {
        let text = node.str(path)?;
        let parts: Vec<&str> = text.split(':').collect();
        match parts.as_slice() {
            [source] => device.source = source.to_string(),
            [source, target] => {
                (device.source, device.target) = (source.to_string(), target.to_string())
            }
            [source, target, permissions] => {
                device.source = source.to_string();
                device.target = target.to_string();
                device.permissions = permissions.to_string();
            }
            _ => return Err(node.error(path, format!("invalid device {text:?}"))),
        }
    }
    if device.target.is_empty() {
        device.target = device.source.clone();
    }
    if !device.source.starts_with('/') || !device.target.starts_with('/') {
        return Err(node.error(path, "a device is an absolute path: /dev/…"));
    }
    if device.permissions.is_empty() || !device.permissions.chars().all(|c| "rwm".contains(c)) {
        return Err(node.error(
            path,
            format!(
                "device permissions {:?}: use r, w and m",
                device.permissions
            ),
        ));
    }
    Ok(device)
}

fn logging(node: &Node, path: &str, reader: &mut Reader) -> Result<Logging, SpecError> {
    let mut logging = Logging::default();
    for entry in node.map(path)? {
        let at = join(path, &entry.key);
        match entry.key.as_str() {
            "driver" => logging.driver = Some(entry.value.str(&at)?),
            "options" => {
                for (name, text) in entry.value.pairs(&at)? {
                    logging.options.insert(name, text.unwrap_or_default());
                }
            }
            _ => reader.unsupported(entry, path)?,
        }
    }
    Ok(logging)
}

/// `NAME` or `{source, target}`; `uid`, `gid` and `mode` cannot be given to a bind mount and are
/// warned about.
fn file_ref(
    node: &Node,
    path: &str,
    section: &'static str,
    reader: &mut Reader,
) -> Result<FileRef, SpecError> {
    let mut found = FileRef {
        section,
        source: String::new(),
        target: None,
        line: node.line,
        path: path.to_string(),
    };
    match &node.value {
        Value::Map(entries) => {
            for entry in entries {
                let at = join(path, &entry.key);
                match entry.key.as_str() {
                    "source" => found.source = entry.value.str(&at)?,
                    "target" => found.target = Some(entry.value.str(&at)?),
                    _ => reader.unsupported(entry, path)?,
                }
            }
            if found.source.is_empty() {
                return Err(node.error(path, "needs a `source`"));
            }
        }
        _ => found.source = node.str(path)?,
    }
    Ok(found)
}

/// `HOST:ADDRESS`, `HOST=ADDRESS` or a mapping, as `HOST=ADDRESS` lines.
fn extra_hosts(node: &Node, path: &str) -> Result<Vec<String>, SpecError> {
    let pairs: Vec<(String, Option<String>)> = match &node.value {
        Value::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let text = item.str(&format!("{path}[{i}]"))?;
                let split = text.split_once('=').or_else(|| text.split_once(':'));
                Ok(match split {
                    Some((host, address)) => (host.to_string(), Some(address.to_string())),
                    None => (text, None),
                })
            })
            .collect::<Result<_, SpecError>>()?,
        _ => node.pairs(path)?,
    };
    // Sorted, as docker compose keeps them (a host name to its addresses).
    let mut pairs = pairs;
    pairs.sort();
    pairs
        .into_iter()
        .map(|(host, address)| match address {
            Some(address) if !host.is_empty() && !address.is_empty() => {
                Ok(format!("{host}={address}"))
            }
            _ => Err(node.error(path, format!("extra host {host:?}: use HOST:ADDRESS"))),
        })
        .collect()
}

/// A static address on a network.
fn address(node: &Node, path: &str, v6: bool) -> Result<String, SpecError> {
    let text = node.str(path)?;
    let valid = match v6 {
        false => text.parse::<std::net::Ipv4Addr>().is_ok(),
        true => text.parse::<std::net::Ipv6Addr>().is_ok(),
    };
    if !valid {
        return Err(node.error(
            path,
            format!("{text:?} is not an IPv{} address", if v6 { 6 } else { 4 }),
        ));
    }
    Ok(text)
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

    pub(super) fn read(
        text: &str,
        dialect: Dialect,
    ) -> (Result<Service, SpecError>, Vec<SpecError>) {
        let tree = parse(text, "c.yaml").unwrap();
        let mut warnings = Vec::new();
        let lookup = |name: &str| (name == "FROM_ENV").then(|| "yes".to_string());
        let mut reader = Reader {
            dialect,
            base_dir: Path::new("/stack"),
            lookup: &lookup,
            warnings: &mut warnings,
            swarm_ignored: Vec::new(),
        };
        let service = service(&tree, "", &mut reader);
        (service, warnings)
    }

    #[test]
    fn swarm_settings_are_read_and_keys_swarm_ignores_are_noted_with_their_line() {
        let tree = parse(
            "image: demo:1\ncontainer_name: api\nports: [\"127.0.0.1:4100-4109:4000\"]\n\
             deploy:\n  placement: {constraints: [node.role == worker]}\n\
             \x20 update_config: {parallelism: 1, delay: 2s, order: start-first}\n",
            "c.yaml",
        )
        .unwrap();
        let mut warnings = Vec::new();
        let lookup = |_: &str| None;
        let mut reader = Reader {
            dialect: Dialect::ComposeFile,
            base_dir: Path::new("/stack"),
            lookup: &lookup,
            warnings: &mut warnings,
            swarm_ignored: Vec::new(),
        };
        let service = service(&tree, "", &mut reader).unwrap();
        let ignored: Vec<(usize, String)> = reader
            .swarm_ignored
            .iter()
            .map(|w| (w.line, w.path.clone()))
            .collect();
        assert_eq!(
            ignored,
            [(2, "container_name".to_string()), (3, "ports".to_string())]
        );
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            service.deploy.placement.constraints,
            ["node.role == worker"]
        );
        let update = &service.deploy.update_config;
        assert_eq!(
            (update.parallelism, update.delay, update.order.as_deref()),
            (Some(1), Some(2000), Some("start-first"))
        );
        let (bad, _) = read(
            "image: demo:1\ndeploy: {update_config: {order: sideways}}\n",
            Dialect::ComposeFile,
        );
        assert!(
            bad.unwrap_err()
                .to_string()
                .contains("start-first or stop-first")
        );
    }

    #[test]
    fn short_and_long_syntax() {
        let (service, warnings) = read(
            "image: demo:1\ncommand: serve --port \"8 0\"\nenvironment: [A=1, FROM_ENV, MISSING]\n\
             ports: [\"8080:80\", \"127.0.0.1:9000-9001:90-91/udp\", 7000, {target: 5, published: 6}, \"127.0.0.1:4100-4109:4000\"]\n\
             volumes: [data:/data:ro, ./conf:/etc/conf, /anon]\n\
             healthcheck: {test: demo check, interval: 5s, start_interval: 500ms, retries: 3}\n\
             deploy: {replicas: 2, resources: {limits: {memory: 64m, cpus: '0.5'}}}\nipc: host\n",
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
        assert_eq!(
            (check.interval, check.start_interval),
            (Some(5000), Some(500))
        );
        assert_eq!(service.deploy.replicas, Some(2));
        assert_eq!(service.deploy.resources.limits.memory, Some(64 << 20));
        assert_eq!(service.deploy.resources.limits.cpus, Some(0.5));
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].line, 8);
        assert_eq!(warnings[0].path, "ipc");
    }

    #[test]
    fn errors_name_line_and_path() {
        let (service, _) = read(
            "image: x\nports:\n  - 80\n  - \"99999:80\"\n",
            Dialect::ComposeFile,
        );
        let error = service.unwrap_err();
        assert_eq!((error.line, error.path.as_str()), (4, "ports[1]"));
        let (service, _) = read("image: x\nipc: host\n", Dialect::Run);
        assert_eq!(service.unwrap_err().message, "unknown key");
        let (service, _) = read("command: x\n", Dialect::Run);
        assert!(service.unwrap_err().message.contains("image"));
    }
}

#[cfg(test)]
mod compat_tests {
    use super::*;

    /// A compose file's service, read as the first test module reads one.
    fn read(text: &str) -> (Result<Service, SpecError>, Vec<SpecError>) {
        super::tests::read(text, Dialect::ComposeFile)
    }

    #[test]
    fn the_fields_docker_compose_reads_too() {
        let (service, warnings) = read(
            "build: {context: ./app, dockerfile: Dockerfile.prod, args: {A: \"1\", FROM_ENV: null}, target: prod, labels: [team=ops]}\n\
             ulimits: {nofile: {soft: 1024, hard: 2048}, nproc: 512}\nshm_size: 64m\n\
             cap_add: [NET_ADMIN]\ncap_drop: [ALL]\ndevices: [\"/dev/null:/dev/xnull:r\", /dev/zero]\n\
             logging: {driver: json-file, options: {max-size: 10m}}\npull_policy: never\nplatform: linux/amd64\n\
             volumes: [\"./data:/data:z\", \"cache:/cache:ro,Z\"]\n\
             healthcheck: {disable: false}\n\
             depends_on: {db: {condition: service_healthy, restart: true, required: false}}\n\
             networks: {back: {ipv4_address: 10.1.2.3}}\n\
             deploy: {resources: {reservations: {memory: 32m}}}\n",
        );
        let service = service.unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(service.image, "");
        let build = service.build.unwrap();
        assert_eq!(build.context, "/stack/app");
        assert_eq!(build.args["FROM_ENV"], "yes");
        assert_eq!(build.target.as_deref(), Some("prod"));
        assert_eq!(build.labels["team"], "ops");
        assert_eq!(
            service.ulimits["nofile"],
            Ulimit {
                soft: 1024,
                hard: 2048
            }
        );
        assert_eq!(
            service.ulimits["nproc"],
            Ulimit {
                soft: 512,
                hard: 512
            }
        );
        assert_eq!(service.shm_size, Some(64 << 20));
        assert_eq!(service.devices[0].permissions, "r");
        assert_eq!(service.devices[1].target, "/dev/zero");
        assert_eq!(service.logging.unwrap().options["max-size"], "10m");
        assert_eq!(service.volumes[0].selinux.as_deref(), Some("z"));
        assert!(service.volumes[1].read_only);
        assert_eq!(service.volumes[1].selinux.as_deref(), Some("Z"));
        assert_eq!(service.healthcheck, None);
        let db = &service.depends_on["db"];
        assert!(db.restart && !db.required);
        assert_eq!(
            service.networks["back"].ipv4_address.as_deref(),
            Some("10.1.2.3")
        );
        assert_eq!(service.deploy.resources.reservations.memory, Some(32 << 20));

        let (service, _) = read("image: x\nhealthcheck: {disable: true}\n");
        assert_eq!(service.unwrap().healthcheck.unwrap().test, ["NONE"]);
        let (service, _) = read("image: x\nhealthcheck: {disable: true, test: [CMD, x]}\n");
        assert!(service.unwrap_err().message.contains("contradict"));
        let (service, _) = read("image: x\nhealthcheck: {interval: 1s}\n");
        let check = service.unwrap().healthcheck.unwrap();
        assert!(check.test.is_empty() && check.interval == Some(1000));
        let (service, _) = read("command: x\n");
        assert!(service.unwrap_err().message.contains("no `build`"));
        let (service, _) = read("image: x\nvolumes: [\"./a:/a:q\"]\n");
        assert!(
            service
                .unwrap_err()
                .message
                .contains("unknown volume option")
        );
        let (service, _) = read("image: x\nulimits: {nofile: {soft: 9, hard: 1}}\n");
        assert!(
            service
                .unwrap_err()
                .message
                .contains("above the hard limit")
        );
    }
}

#[cfg(test)]
mod key_list_tests {
    use super::*;
    use crate::compose::tree::parse;
    use std::collections::BTreeSet;

    /// The keys `service` reads in a compose file: its match arms, less the `docker::run` ones.
    fn keys_in_the_code() -> BTreeSet<String> {
        let source = include_str!("parse.rs");
        let body = &source[source.find("pub fn service(").unwrap()..];
        let body = &body[..body.find("\n}\n").unwrap()];
        let mut keys = BTreeSet::new();
        for line in body.lines() {
            // `"a" =>`, `"a" if !run =>`, `"a" | "b" if !run =>`; not `"a" if run =>`.
            let line = line.trim();
            let Some((pattern, _)) = line.split_once("=>") else {
                continue;
            };
            let (alternatives, guard) = match pattern.split_once(" if ") {
                Some((alternatives, guard)) => (alternatives, Some(guard.trim())),
                None => (pattern, None),
            };
            if !line.starts_with('"') || !matches!(guard, None | Some("!run")) {
                continue;
            }
            for key in alternatives.split('|') {
                keys.insert(key.trim().trim_matches('"').to_string());
            }
        }
        keys
    }

    /// The keys the README's "Service keys read" paragraph names.
    fn keys_in_the_readme() -> BTreeSet<String> {
        let readme = include_str!("../../../README.md");
        let start = readme.find("**Service keys read:**").unwrap();
        let paragraph = &readme[start..];
        let paragraph = &paragraph[..paragraph.find("In detail").unwrap()];
        paragraph
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn the_readme_lists_the_keys_the_code_reads() {
        let code = keys_in_the_code();
        assert!(code.len() > 25, "{code:?}");
        assert_eq!(keys_in_the_readme(), code);
        // And each is read, not warned about.
        for key in &code {
            let text = match key.as_str() {
                "image" => "image: x\n".to_string(),
                _ => format!("image: x\n{key}: null\n"),
            };
            let tree = parse(&text, "c.yaml").unwrap();
            let mut warnings = Vec::new();
            let lookup = |_: &str| None;
            let mut reader = Reader {
                dialect: Dialect::ComposeFile,
                base_dir: Path::new("/stack"),
                lookup: &lookup,
                warnings: &mut warnings,
                swarm_ignored: Vec::new(),
            };
            let _ = service(&tree, "", &mut reader);
            assert!(warnings.is_empty(), "{key}: {warnings:?}");
        }
    }
}
