//! The value syntaxes of a service's fields that take some parsing: published ports
//! (`127.0.0.1:8080-8081:80-81/udp` or long syntax), exposed ports, volumes (named, bind or
//! anonymous, short or long syntax), durations, sizes and CPU counts. Each reads one node and
//! fails naming its line and path.

use crate::{
    compose::service::reader::Reader,
    compose::service::{Mount, Port},
    compose::tree::{Node, SpecError, Value, join},
    compose::units,
};

fn selinux(node: &Node, path: &str) -> Result<String, SpecError> {
    match node.str(path)?.as_str() {
        label @ ("z" | "Z") => Ok(label.to_string()),
        other => Err(node.error(path, format!("selinux {other:?}: use z or Z"))),
    }
}

pub fn duration(node: &Node, path: &str) -> Result<u64, SpecError> {
    match &node.value {
        Value::Int(ms) if *ms >= 0 => Ok(*ms as u64),
        _ => units::duration_ms(&node.str(path)?).map_err(|e| node.error(path, e)),
    }
}

pub fn size(node: &Node, path: &str) -> Result<i64, SpecError> {
    match &node.value {
        Value::Int(bytes) => Ok(*bytes),
        _ => units::bytes(&node.str(path)?).map_err(|e| node.error(path, e)),
    }
}

pub fn cpus(node: &Node, path: &str) -> Result<f64, SpecError> {
    let cpus = node.float(path)?;
    if cpus <= 0.0 {
        return Err(node.error(path, format!("cpus must be above 0, not {cpus}")));
    }
    Ok(cpus)
}

fn port_number(node: &Node, path: &str, text: &str) -> Result<u16, SpecError> {
    text.parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| node.error(path, format!("{text:?} is not a port number")))
}

/// `START[-END]` as the ports it covers.
fn port_range(node: &Node, path: &str, text: &str) -> Result<Vec<u16>, SpecError> {
    match text.split_once('-') {
        Some((start, end)) => {
            let (start, end) = (
                port_number(node, path, start)?,
                port_number(node, path, end)?,
            );
            if end < start {
                return Err(node.error(path, format!("empty port range {text:?}")));
            }
            Ok((start..=end).collect())
        }
        None => Ok(vec![port_number(node, path, text)?]),
    }
}

/// A published port: `[[HOST_IP:]HOST[-RANGE]:]CONTAINER[-RANGE][/PROTOCOL]`, a bare number,
/// or the long syntax `{target, published, host_ip, protocol}`.
pub fn ports(node: &Node, path: &str) -> Result<Vec<Port>, SpecError> {
    if let Value::Map(entries) = &node.value {
        let mut port = Port {
            target: 0,
            published: None,
            published_end: None,
            host_ip: None,
            protocol: "tcp".into(),
        };
        for entry in entries {
            let at = join(path, &entry.key);
            let value = &entry.value;
            match entry.key.as_str() {
                "target" => port.target = port_number(value, &at, &value.str(&at)?)?,
                "published" if !value.is_null() => {
                    port.published = Some(port_number(value, &at, &value.str(&at)?)?)
                }
                "published" => {}
                // The end of a host port range, as `compose::load` returns a `4100-4109:4000`.
                "published_end" => {
                    port.published_end = Some(port_number(value, &at, &value.str(&at)?)?)
                }
                "host_ip" => port.host_ip = Some(value.str(&at)?),
                "protocol" => port.protocol = value.str(&at)?,
                "mode" | "name" | "app_protocol" => {}
                other => return Err(value.error(&at, format!("unknown port key `{other}`"))),
            }
        }
        if port.target == 0 {
            return Err(node.error(path, "a port needs a `target`"));
        }
        return Ok(vec![port]);
    }
    let text = node.str(path)?;
    let (spec, protocol) = text.split_once('/').unwrap_or((&text, "tcp"));
    let (host_ip, rest) = if let Some(inner) = spec.strip_prefix('[') {
        let (ip, rest) = inner
            .split_once("]:")
            .ok_or_else(|| node.error(path, format!("invalid port {text:?}")))?;
        (Some(ip.to_string()), rest)
    } else if spec.matches(':').count() == 2 {
        let (ip, rest) = spec.split_once(':').unwrap_or_default();
        (Some(ip.to_string()), rest)
    } else {
        (None, spec)
    };
    let (published, target) = match rest.rsplit_once(':') {
        Some((host, target)) => (host, target),
        None => ("", rest),
    };
    let targets = port_range(node, path, target)?;
    let published: Vec<Option<u16>> = if published.is_empty() {
        vec![None; targets.len()]
    } else {
        port_range(node, path, published)?
            .into_iter()
            .map(Some)
            .collect()
    };
    if targets.len() == 1 && published.len() > 1 {
        // Many host ports for one container port: the engine picks a free one of them.
        return Ok(vec![Port {
            target: targets[0],
            published: published[0],
            published_end: published[published.len() - 1],
            host_ip: host_ip.filter(|ip| !ip.is_empty()),
            protocol: protocol.to_string(),
        }]);
    }
    if published.len() != targets.len() {
        return Err(node.error(
            path,
            format!("{text:?}: host and container port ranges differ in size"),
        ));
    }
    Ok(targets
        .into_iter()
        .zip(published)
        .map(|(target, published)| Port {
            target,
            published,
            published_end: None,
            host_ip: host_ip.clone().filter(|ip| !ip.is_empty()),
            protocol: protocol.to_string(),
        })
        .collect())
}

pub fn expose(node: &Node, path: &str) -> Result<Vec<String>, SpecError> {
    let text = node.str(path)?;
    let (ports, protocol) = text.split_once('/').unwrap_or((&text, "tcp"));
    Ok(port_range(node, path, ports)?
        .into_iter()
        .map(|port| format!("{port}/{protocol}"))
        .collect())
}

/// A volume: `SOURCE:TARGET[:MODE]` (a source that starts with `/`, `.` or `~` is a host path),
/// `TARGET` alone (an anonymous volume), or `{type, source, target, read_only}`.
pub fn mount(node: &Node, path: &str, reader: &mut Reader) -> Result<Mount, SpecError> {
    let mut mount = Mount {
        kind: "volume".into(),
        source: None,
        target: String::new(),
        read_only: false,
        selinux: None,
    };
    if let Value::Map(entries) = &node.value {
        for entry in entries {
            let at = join(path, &entry.key);
            match entry.key.as_str() {
                "type" => mount.kind = entry.value.str(&at)?,
                "source" => mount.source = Some(entry.value.str(&at)?),
                "target" => mount.target = entry.value.str(&at)?,
                "read_only" => mount.read_only = entry.value.bool(&at)?,
                // The long syntax's `bind: {selinux: z}`, and a project map's `selinux: z`.
                "selinux" => mount.selinux = Some(selinux(&entry.value, &at)?),
                "bind" => {
                    for setting in entry.value.map(&at)? {
                        let setting_at = join(&at, &setting.key);
                        match setting.key.as_str() {
                            "selinux" => {
                                mount.selinux = Some(selinux(&setting.value, &setting_at)?)
                            }
                            // The engine creates a missing bind source, as compose asks.
                            "create_host_path" => {}
                            _ => reader.unsupported(setting, &at)?,
                        }
                    }
                }
                _ => reader.unsupported(entry, path)?,
            }
        }
    } else {
        let text = node.str(path)?;
        let parts: Vec<&str> = text.split(':').collect();
        let (source, target, mode) = match parts.as_slice() {
            [target] => (None, *target, ""),
            [source, target] => (Some(*source), *target, ""),
            [source, target, mode] => (Some(*source), *target, *mode),
            _ => return Err(node.error(path, format!("invalid volume {text:?}"))),
        };
        mount.target = target.to_string();
        for option in mode.split(',').filter(|m| !m.is_empty()) {
            match option {
                "ro" => mount.read_only = true,
                "rw" => mount.read_only = false,
                "z" | "Z" => mount.selinux = Some(option.to_string()),
                // Propagation and copy options the engine applies by default.
                "rprivate" | "private" | "rshared" | "shared" | "rslave" | "slave" | "nocopy"
                | "cached" | "delegated" | "consistent" => {}
                other => {
                    return Err(node.error(
                        path,
                        format!("unknown volume option {other:?} in {text:?} (use ro, rw, z or Z)"),
                    ));
                }
            }
        }
        if let Some(source) = source {
            if source.starts_with(['/', '.', '~']) {
                mount.kind = "bind".into();
            }
            mount.source = Some(source.to_string());
        }
    }
    match mount.kind.as_str() {
        "bind" => {
            let source = mount
                .source
                .as_deref()
                .ok_or_else(|| node.error(path, "a bind mount needs a `source`"))?;
            mount.source = Some(reader.host_path(source));
        }
        "volume" => {}
        other => {
            return Err(node.error(
                path,
                format!("volume type `{other}` is not supported (use volume or bind)"),
            ));
        }
    }
    if !mount.target.starts_with('/') {
        return Err(node.error(
            path,
            format!("the container path {:?} must be absolute", mount.target),
        ));
    }
    Ok(mount)
}
