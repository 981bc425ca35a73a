//! Compose files as docker compose v2 reads them: every stack of `tests/compose-corpus` loaded by
//! `compose::load` and by `docker compose config --format json`, compared field by field; each
//! behaviour of issue 18 against a file written for it (builds with `.dockerignore` rebuilt only
//! when their context changed, ulimits, shm size, capabilities, devices, log options, internal
//! networks with static addresses, SELinux relabels, healthchecks disabled both ways, anchors
//! and a billion laughs, `COMPOSE_*` from `.env`), checked on the containers with `docker
//! inspect`.

use std::{collections::BTreeMap, path::Path};

use serde_json::{Map, Value, json};

use crate::{
    support::{
        self, Service,
        docker::{Cleanup, demo_image, docker, inspect},
    },
    test::Test,
};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/compose-corpus");

/// Prints the project `compose::load` reads from the file given (with an env file, if given),
/// as one JSON line.
const LOAD_JSON: &str = r#"
fn main(path) { print(`JSON:${compose::load(path).to_json()}`) }
fn main(path, env_file) { print(`JSON:${compose::load(path, #{env_file: env_file}).to_json()}`) }
"#;

/// cutover's reading of `file`, as JSON.
fn cutover_reads(file: &Path, env_file: Option<&Path>) -> Value {
    let mut args = vec!["load".to_string(), file.display().to_string()];
    args.extend(env_file.map(|f| f.display().to_string()));
    let finished = Test::new()
        .runbook("load", LOAD_JSON)
        .args(args)
        .stderr_lacks("WARN")
        .success();
    let line = finished
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("JSON:").map(str::to_string))
        .expect("no JSON line");
    serde_json::from_str(&line).unwrap()
}

/// docker compose v2's reading of `file`, as JSON.
fn compose_reads(file: &Path, env_file: Option<&Path>) -> Value {
    let mut command = std::process::Command::new(support::compose_v2().unwrap());
    if let Some(env_file) = env_file {
        command.arg("--env-file").arg(env_file);
    }
    let output = command
        .args(["-f", file.to_str().unwrap(), "config", "--format", "json"])
        .current_dir(file.parent().unwrap())
        .env_remove("COMPOSE_PROJECT_NAME")
        .env_remove("COMPOSE_PROFILES")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "docker compose config {}: {}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    unescape(serde_json::from_slice(&output.stdout).unwrap())
}

/// `config` writes `$` as `$$` so its output reads back the same; the values are single `$`.
fn unescape(value: Value) -> Value {
    match value {
        Value::String(s) => Value::String(s.replace("$$", "$")),
        Value::Array(items) => Value::Array(items.into_iter().map(unescape).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, unescape(v))).collect())
        }
        other => other,
    }
}

/// A Go duration (`1m30s`, `500ms`, `2h0m0s`) in milliseconds.
fn go_duration(text: &str) -> u64 {
    let mut total = 0.0;
    let mut number = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(next) = chars.peek().filter(|n| n.is_ascii_alphabetic()) {
            unit.push(*next);
            chars.next();
        }
        let n: f64 = number.parse().unwrap();
        number.clear();
        total += n * match unit.as_str() {
            "h" => 3_600_000.0,
            "m" => 60_000.0,
            "s" => 1000.0,
            "ms" => 1.0,
            "us" | "µs" => 0.001,
            other => panic!("unit {other} in {text}"),
        };
    }
    total.round() as u64
}

fn int(value: &Value) -> Value {
    match value {
        Value::String(s) => json!(s.parse::<i64>().unwrap()),
        other => other.clone(),
    }
}

fn float(value: &Value) -> Value {
    match value {
        Value::String(s) => json!(s.parse::<f64>().unwrap()),
        Value::Number(n) => json!(n.as_f64().unwrap()),
        other => other.clone(),
    }
}

fn ms(value: &Value) -> Value {
    json!(go_duration(value.as_str().unwrap()))
}

/// Takes `key` from `from`, if present and not null, into `to` through `convert`.
fn carry(
    from: &Map<String, Value>,
    to: &mut Map<String, Value>,
    key: &str,
    convert: fn(&Value) -> Value,
) {
    if let Some(value) = from.get(key).filter(|v| !v.is_null()) {
        to.insert(key.to_string(), convert(value));
    }
}

fn same(value: &Value) -> Value {
    value.clone()
}

/// A map without its null values; absent when empty.
fn without_nulls(value: &Value) -> Value {
    let map: Map<String, Value> = value
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Value::Object(map)
}

/// Every service field both sides read, in one shape: what compose's JSON says, and what
/// cutover's says. A compose field this does not know fails the test, so nothing goes
/// uncompared.
fn compose_service(project: &str, key: &str, s: &Map<String, Value>, root: &Value) -> Value {
    let mut out = Map::new();
    for field in s.keys() {
        assert!(
            COMPARED.contains(&field.as_str()) || IGNORED.contains(&field.as_str()),
            "service {key}: compose field `{field}` is not compared"
        );
    }
    match s.get("image") {
        Some(image) => out.insert("image".into(), image.clone()),
        None => out.insert("image".into(), json!(format!("{project}-{key}"))),
    };
    for k in [
        "command",
        "entrypoint",
        "restart",
        "user",
        "working_dir",
        "hostname",
        "container_name",
        "network_mode",
        "pull_policy",
        "platform",
        "cap_add",
        "cap_drop",
        "profiles",
        "labels",
        "init",
        "privileged",
        "read_only",
        "tty",
        "stdin_open",
        "extra_hosts",
        "security_opt",
        "sysctls",
        "tmpfs",
    ] {
        carry(s, &mut out, k, same);
    }
    carry(s, &mut out, "environment", without_nulls);
    carry(s, &mut out, "shm_size", int);
    carry(s, &mut out, "stop_grace_period", ms);
    if let Some(ports) = s.get("ports") {
        let ports: Vec<Value> = ports
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                json!({
                    "target": p["target"],
                    "published": p.get("published").cloned().unwrap_or(Value::Null),
                    "host_ip": p.get("host_ip").cloned().unwrap_or(json!("")),
                    "protocol": p.get("protocol").cloned().unwrap_or(json!("tcp")),
                })
            })
            .collect();
        out.insert("ports".into(), json!(ports));
    }
    if let Some(expose) = s.get("expose") {
        let expose: Vec<Value> = expose
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|e| {
                // A range is the ports it covers: compose opens each when it creates the
                // container.
                let e = e.as_str().unwrap();
                let (ports, protocol) = e.split_once('/').unwrap_or((e, "tcp"));
                let (first, last) = ports.split_once('-').unwrap_or((ports, ports));
                let (first, last): (u16, u16) = (first.parse().unwrap(), last.parse().unwrap());
                (first..=last).map(move |p| json!(format!("{p}/{protocol}")))
            })
            .collect();
        out.insert("expose".into(), json!(expose));
    }
    if let Some(volumes) = s.get("volumes") {
        let volumes: Vec<Value> = volumes
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                json!({
                    "type": v["type"],
                    "source": v.get("source").cloned().unwrap_or(Value::Null),
                    "target": v["target"],
                    "read_only": v.get("read_only").cloned().unwrap_or(json!(false)),
                    "selinux": v.pointer("/bind/selinux").cloned().unwrap_or(Value::Null),
                })
            })
            .collect();
        out.insert("volumes".into(), json!(volumes));
    }
    // Secrets and configs from files are bind-mounted read-only, as compose does without swarm.
    for (section, base) in [("secrets", "/run/secrets/"), ("configs", "/")] {
        for reference in s
            .get(section)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let source = reference["source"].as_str().unwrap();
            let target = match reference.get("target").and_then(Value::as_str) {
                Some(t) if t.starts_with('/') => t.to_string(),
                Some(t) => format!("{base}{t}"),
                None => format!("{base}{source}"),
            };
            let file = &root[section][source]["file"];
            let volumes = out.entry("volumes").or_insert_with(|| json!([]));
            volumes.as_array_mut().unwrap().push(json!({
                "type": "bind", "source": file, "target": target, "read_only": true,
                "selinux": Value::Null,
            }));
        }
    }
    if let Some(networks) = s.get("networks") {
        let mut found = Map::new();
        for (name, attachment) in networks.as_object().unwrap() {
            let mut a = Map::new();
            if !attachment.is_null() {
                let attachment = attachment.as_object().unwrap();
                carry(attachment, &mut a, "aliases", same);
                carry(attachment, &mut a, "ipv4_address", same);
                carry(attachment, &mut a, "ipv6_address", same);
            }
            found.insert(name.clone(), Value::Object(a));
        }
        out.insert("networks".into(), Value::Object(found));
    }
    if let Some(deps) = s.get("depends_on") {
        let mut found = Map::new();
        for (name, d) in deps.as_object().unwrap() {
            found.insert(
                name.clone(),
                json!({
                    "condition": d["condition"],
                    "restart": d.get("restart").cloned().unwrap_or(json!(false)),
                    "required": d.get("required").cloned().unwrap_or(json!(true)),
                }),
            );
        }
        out.insert("depends_on".into(), Value::Object(found));
    }
    if let Some(check) = s.get("healthcheck").and_then(Value::as_object) {
        let mut c = Map::new();
        if check.get("disable") == Some(&json!(true)) {
            c.insert("test".into(), json!(["NONE"]));
        } else {
            carry(check, &mut c, "test", same);
        }
        for k in ["interval", "timeout", "start_period", "start_interval"] {
            carry(check, &mut c, k, ms);
        }
        carry(check, &mut c, "retries", same);
        if !c.is_empty() {
            out.insert("healthcheck".into(), Value::Object(c));
        }
    }
    let mut deploy = Map::new();
    if let Some(d) = s.get("deploy").and_then(Value::as_object) {
        carry(d, &mut deploy, "replicas", same);
    }
    let mut resources = Map::new();
    for (kind, service_level) in [("limits", true), ("reservations", false)] {
        let mut r = Map::new();
        if let Some(given) = s
            .get("deploy")
            .and_then(|d| d.pointer(&format!("/resources/{kind}")))
            .and_then(Value::as_object)
        {
            carry(given, &mut r, "memory", int);
            carry(given, &mut r, "cpus", float);
        }
        // `cpus` and `mem_limit` are the same limits, where deploy leaves them out.
        if service_level {
            if !r.contains_key("cpus") {
                carry(s, &mut r, "cpus", float);
            }
            if let (false, Some(memory)) = (r.contains_key("memory"), s.get("mem_limit")) {
                r.insert("memory".into(), int(memory));
            }
        }
        if !r.is_empty() {
            resources.insert(kind.into(), Value::Object(r));
        }
    }
    if !resources.is_empty() {
        deploy.insert("resources".into(), Value::Object(resources));
    }
    if !deploy.is_empty() {
        out.insert("deploy".into(), Value::Object(deploy));
    }
    if let Some(devices) = s.get("devices") {
        out.insert("devices".into(), devices.clone());
    }
    if let Some(ulimits) = s.get("ulimits").and_then(Value::as_object) {
        let limits: Map<String, Value> = ulimits
            .iter()
            .map(|(name, l)| {
                // `core: 0` comes out as `core: {}`: compose creates it with 0 and 0.
                let limit = |k: &str| l.get(k).cloned().unwrap_or(json!(0));
                let l = match l {
                    Value::Number(_) => json!({"soft": l, "hard": l}),
                    _ => json!({"soft": limit("soft"), "hard": limit("hard")}),
                };
                (name.clone(), l)
            })
            .collect();
        out.insert("ulimits".into(), Value::Object(limits));
    }
    if let Some(logging) = s.get("logging").and_then(Value::as_object) {
        let mut l = Map::new();
        carry(logging, &mut l, "driver", same);
        carry(logging, &mut l, "options", same);
        out.insert("logging".into(), Value::Object(l));
    }
    if let Some(build) = s.get("build").and_then(Value::as_object) {
        let mut b = Map::new();
        for k in ["context", "dockerfile", "target", "labels"] {
            carry(build, &mut b, k, same);
        }
        carry(build, &mut b, "args", without_nulls);
        out.insert("build".into(), Value::Object(b));
    }
    Value::Object(out)
}

/// The compose fields compared, and those that are the same thing told another way (`cpus`
/// and `mem_limit` are compared as the limits they are).
const COMPARED: &[&str] = &[
    "image",
    "command",
    "entrypoint",
    "restart",
    "user",
    "working_dir",
    "hostname",
    "container_name",
    "network_mode",
    "pull_policy",
    "platform",
    "cap_add",
    "cap_drop",
    "profiles",
    "labels",
    "environment",
    "shm_size",
    "stop_grace_period",
    "ports",
    "expose",
    "volumes",
    "networks",
    "depends_on",
    "healthcheck",
    "deploy",
    "devices",
    "ulimits",
    "logging",
    "build",
    "cpus",
    "mem_limit",
    "init",
    "privileged",
    "read_only",
    "tty",
    "stdin_open",
    "extra_hosts",
    "security_opt",
    "sysctls",
    "tmpfs",
];

/// What `config` adds that says nothing of the service more (`env_file` is merged into
/// `environment` on both sides, `secrets` and `configs` are compared as the mounts they are).
const IGNORED: &[&str] = &["env_file", "secrets", "configs"];

/// cutover's service in the same shape.
fn cutover_service(s: &Map<String, Value>) -> Value {
    let mut out = s.clone();
    out.remove("deploy");
    if let Some(ports) = s.get("ports") {
        let ports: Vec<Value> = ports
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let published = match (p.get("published"), p.get("published_end")) {
                    (Some(a), Some(b)) => json!(format!("{a}-{b}")),
                    (Some(a), None) => json!(a.to_string()),
                    _ => Value::Null,
                };
                json!({
                    "target": p["target"],
                    "published": published,
                    "host_ip": p.get("host_ip").cloned().unwrap_or(json!("")),
                    "protocol": p["protocol"],
                })
            })
            .collect();
        out.insert("ports".into(), json!(ports));
    }
    if let Some(volumes) = s.get("volumes") {
        let volumes: Vec<Value> = volumes
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                json!({
                    "type": v["type"],
                    "source": v.get("source").cloned().unwrap_or(Value::Null),
                    "target": v["target"],
                    "read_only": v.get("read_only").cloned().unwrap_or(json!(false)),
                    "selinux": v.get("selinux").cloned().unwrap_or(Value::Null),
                })
            })
            .collect();
        out.insert("volumes".into(), json!(volumes));
    }
    if let Some(deps) = s.get("depends_on").and_then(Value::as_object) {
        let mut found = Map::new();
        for (name, d) in deps {
            found.insert(
                name.clone(),
                json!({
                    "condition": d["condition"],
                    "restart": d.get("restart").cloned().unwrap_or(json!(false)),
                    "required": d.get("required").cloned().unwrap_or(json!(true)),
                }),
            );
        }
        out.insert("depends_on".into(), Value::Object(found));
    }
    if let Some(deploy) = s.get("deploy").and_then(Value::as_object) {
        let mut d = deploy.clone();
        if let Some(resources) = deploy.get("resources").and_then(Value::as_object) {
            let mut r = Map::new();
            for (kind, limits) in resources {
                let mut l = Map::new();
                carry(limits.as_object().unwrap(), &mut l, "memory", int);
                carry(limits.as_object().unwrap(), &mut l, "cpus", float);
                r.insert(kind.clone(), Value::Object(l));
            }
            d.insert("resources".into(), Value::Object(r));
        }
        out.insert("deploy".into(), Value::Object(d));
    }
    if let Some(build) = out.get_mut("build").and_then(Value::as_object_mut) {
        build
            .entry("dockerfile")
            .or_insert_with(|| json!("Dockerfile"));
    }
    Value::Object(out)
}

fn resource(r: &Value, network: bool) -> Value {
    let mut out = Map::new();
    let r = r.as_object().unwrap();
    carry(r, &mut out, "name", same);
    out.insert(
        "external".into(),
        r.get("external").cloned().unwrap_or(json!(false)),
    );
    if let Some(labels) = r
        .get("labels")
        .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
    {
        out.insert("labels".into(), labels.clone());
    }
    if network {
        out.insert(
            "internal".into(),
            r.get("internal").cloned().unwrap_or(json!(false)),
        );
        // `config` writes an empty `ipam: {}` for every network.
        if let Some(ipam) = r
            .get("ipam")
            .filter(|i| i.as_object().is_some_and(|m| !m.is_empty()))
        {
            out.insert("ipam".into(), ipam.clone());
        }
    }
    Value::Object(out)
}

/// Every difference between `want` (compose) and `got` (cutover), as `path: want ≠ got`.
fn differences(path: &str, want: &Value, got: &Value, found: &mut Vec<String>) {
    match (want, got) {
        (Value::Object(a), Value::Object(b)) => {
            for key in a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))) {
                let (x, y) = (
                    a.get(key).unwrap_or(&Value::Null),
                    b.get(key).unwrap_or(&Value::Null),
                );
                differences(&format!("{path}.{key}"), x, y, found);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                differences(&format!("{path}[{i}]"), x, y, found);
            }
        }
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => {}
        _ if want == got => {}
        _ => found.push(format!("{path}: compose {want} ≠ cutover {got}")),
    }
}

/// One corpus file compared: returns the number of values compared and the mismatches.
fn compare(file: &Path, env_file: Option<&Path>) -> (usize, Vec<String>) {
    let compose = compose_reads(file, env_file);
    let cutover = cutover_reads(file, env_file);
    let project = compose["name"].as_str().unwrap();
    let mut mismatches = Vec::new();
    differences("name", &compose["name"], &cutover["name"], &mut mismatches);
    let compose_services = compose["services"].as_object().unwrap();
    let cutover_services = cutover["services"].as_object().unwrap();
    let active: Vec<&str> = cutover["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    let mut compared = 0;
    for (key, service) in cutover_services {
        let Some(theirs) = compose_services.get(key) else {
            // compose leaves out the services no active profile enables; cutover keeps them in
            // the project, and `up` leaves them alone for the same reason.
            let profiles = service.get("profiles").and_then(Value::as_array);
            let off =
                profiles.is_some_and(|p| p.iter().all(|p| !active.contains(&p.as_str().unwrap())));
            if !off {
                mismatches.push(format!("services.{key}: compose has no such service"));
            }
            continue;
        };
        let want = compose_service(project, key, theirs.as_object().unwrap(), &compose);
        let mut got = cutover_service(service.as_object().unwrap());
        // compose writes `networks` only where the service joins some.
        if !theirs.as_object().unwrap().contains_key("networks") {
            got.as_object_mut().unwrap().remove("networks");
        }
        compared += leaves(&want);
        differences(&format!("services.{key}"), &want, &got, &mut mismatches);
    }
    for key in compose_services.keys() {
        if !cutover_services.contains_key(key) {
            mismatches.push(format!("services.{key}: cutover has no such service"));
        }
    }
    for (section, network) in [("networks", true), ("volumes", false)] {
        let empty = json!({});
        let theirs = compose.get(section).unwrap_or(&empty).as_object().unwrap();
        let ours = cutover[section].as_object().unwrap();
        for (key, r) in theirs {
            let want = resource(r, network);
            let got = ours
                .get(key)
                .map(|r| resource(r, network))
                .unwrap_or(Value::Null);
            compared += leaves(&want);
            differences(&format!("{section}.{key}"), &want, &got, &mut mismatches);
        }
        for key in ours.keys().filter(|k| !theirs.contains_key(*k)) {
            mismatches.push(format!("{section}.{key}: compose has no such {section}"));
        }
    }
    (compared, mismatches)
}

fn leaves(value: &Value) -> usize {
    match value {
        Value::Object(map) => map.values().map(leaves).sum(),
        Value::Array(items) => items.iter().map(leaves).sum(),
        _ => 1,
    }
}

#[test]
fn reads_the_corpus_as_docker_compose_v2_does() {
    if !support::require(Service::ComposeV2) {
        return;
    }
    let mut files: Vec<_> = std::fs::read_dir(CORPUS)
        .unwrap()
        .map(|e| e.unwrap().path().join("compose.yaml"))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(files.len() >= 8, "the corpus has {} files", files.len());
    let mut report = BTreeMap::new();
    let mut all = Vec::new();
    for file in &files {
        let (compared, mismatches) = compare(file, None);
        let name = file
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_string();
        report.insert(name.clone(), compared);
        all.extend(mismatches.into_iter().map(|m| format!("{name}: {m}")));
    }
    // And the stack this repository deploys, with its example settings. Secrets are given
    // values too short to be masked in cutover's output, so both sides print them alike.
    let settings = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/.env.blue-green.example"
    ))
    .unwrap();
    let example: String = example
        .lines()
        .map(|line| match line.split_once('=') {
            Some((name, _))
                if ["PASSWORD", "SECRET", "TOKEN", "KEY"]
                    .iter()
                    .any(|s| name.contains(s)) =>
            {
                format!("{name}=pw\n")
            }
            _ => format!("{line}\n"),
        })
        .collect();
    // Every environment's services, not only the shared ones.
    let example = format!("{example}COMPOSE_PROFILES=blue,green,staging,monitoring\n");
    let env_file = settings.path().join("stack.env");
    std::fs::write(&env_file, example).unwrap();
    let stack = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/docker-compose.blue-green.yml");
    let (compared, mismatches) = compare(&stack, Some(&env_file));
    report.insert("deploy/docker-compose.blue-green.yml".into(), compared);
    all.extend(mismatches.into_iter().map(|m| format!("deploy: {m}")));
    eprintln!("values compared per stack: {report:?}");
    assert!(
        all.is_empty(),
        "{} mismatches:\n{}",
        all.len(),
        all.join("\n")
    );
}

/// A stack with every newly supported field: `app` is built from `./app` (a multi-stage
/// Dockerfile, a `.dockerignore`), `worker` restarts when `app` is recreated; both are on an
/// internal network with a fixed subnet and addresses.
const FIELDS: &str = r#"x-logging: &logging
  driver: json-file
  options: {max-size: 1m, max-file: "2"}
services:
  app:
    build:
      context: ./app
      target: prod
      args: {BASE: "${IMAGE}"}
      labels: {team: ops}
    environment: {SERVICE: app}
    ulimits:
      nofile: {soft: 1024, hard: 2048}
      nproc: 512
    shm_size: 64m
    cap_add: [NET_ADMIN]
    cap_drop: [MKNOD]
    devices: ["/dev/null:/dev/xnull:rw"]
    logging: *logging
    healthcheck: {disable: false, interval: 30s, start_interval: 1s}
    volumes: ["./data:/data:z"]
    deploy: {resources: {reservations: {memory: 32m}}}
    platform: linux/amd64
    networks:
      back: {ipv4_address: "${SUBNET}.10"}
  worker:
    image: ${IMAGE}
    pull_policy: never
    environment: {SERVICE: worker}
    healthcheck: {disable: true}
    init: true
    read_only: true
    tty: true
    tmpfs: ["/run:size=1m"]
    sysctls: {net.ipv4.ip_unprivileged_port_start: "0"}
    extra_hosts: ["db.local:10.9.9.9"]
    security_opt: ["no-new-privileges:true"]
    depends_on:
      app: {condition: service_started, restart: true}
    secrets: [token]
    configs: [{source: settings, target: /etc/worker.conf}]
    networks:
      back: {ipv4_address: "${SUBNET}.11"}
secrets:
  token: {file: ./token.txt}
configs:
  settings: {file: ./worker.conf}
networks:
  back:
    internal: true
    ipam:
      config: [{subnet: "${SUBNET}.0/24", gateway: "${SUBNET}.1"}]
"#;

const DOCKERFILE: &str = r#"ARG BASE
FROM ${BASE} AS base
LABEL stage=base
COPY . /ctx/
HEALTHCHECK --interval=1s CMD ["/demo-service", "check", "http://127.0.0.1:8080/api/health"]
FROM base AS prod
LABEL stage=prod
FROM base AS debug
LABEL stage=debug
"#;

const UP_REPORT: &str = r#"fn main(project, path) {
    let r = compose::up(compose::load(path, #{project_name: project}));
    for key in ["built", "created", "recreated", "restarted", "unchanged", "pulled"] {
        let names = r[key];
        names.sort();
        print(`${key}=${names}`);
    }
}"#;

/// `true` when `docker cp` finds `path` in container `name`.
fn has_file(name: &str, path: &str) -> bool {
    std::process::Command::new("docker")
        .args(["cp", &format!("{name}:{path}"), "-"])
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn up_starts_services_with_the_fields_compose_reads() {
    if !support::require(Service::Docker) {
        return;
    }
    let mut cleanup = Cleanup::new("fields");
    let project = cleanup.project("fields");
    let image = format!("{project}-app");
    cleanup.image(&image);
    let subnet = format!("10.231.{}", std::process::id() % 250);
    let stack = tempfile::tempdir().unwrap();
    let dir = stack.path();
    for (path, text) in [
        ("compose.yaml", FIELDS),
        ("app/Dockerfile", DOCKERFILE),
        (
            "app/.dockerignore",
            "# not for the image\nsecret.txt\nnotes/\n",
        ),
        ("app/kept.txt", "kept\n"),
        ("app/secret.txt", "secret\n"),
        ("app/notes/todo.txt", "todo\n"),
        ("data/x", "x\n"),
        ("token.txt", "t0ken\n"),
        ("worker.conf", "mode = batch\n"),
    ] {
        std::fs::create_dir_all(dir.join(path).parent().unwrap()).unwrap();
        std::fs::write(dir.join(path), text).unwrap();
    }
    let compose_file = dir.join("compose.yaml").display().to_string();
    let up = || {
        Test::new()
            .runbook("up", UP_REPORT)
            .env("IMAGE", demo_image())
            .env("SUBNET", &subnet)
            .args(["up", &project, &compose_file])
            .success()
            .stdout
    };
    let printed = up();
    assert!(
        printed.contains(&format!("built=[\"{image}\"]")),
        "{printed}"
    );
    assert!(printed.contains("pulled=[]"), "{printed}");
    let app = format!("{project}-app-1");
    let worker = format!("{project}-worker-1");

    // The image: named as compose names it, built from the target stage with the labels given,
    // from a context without what .dockerignore leaves out.
    assert_eq!(inspect(&app, "{{.Config.Image}}"), image);
    assert_eq!(
        docker(&[
            "image",
            "inspect",
            "-f",
            "{{index .Config.Labels \"stage\"}} {{index .Config.Labels \"team\"}}",
            &image
        ]),
        "prod ops"
    );
    assert!(has_file(&app, "/ctx/kept.txt"));
    assert!(!has_file(&app, "/ctx/secret.txt"));
    assert!(!has_file(&app, "/ctx/notes/todo.txt"));

    // What the engine was asked for.
    let ulimits = inspect(
        &app,
        "{{range .HostConfig.Ulimits}}{{.Name}}={{.Soft}}:{{.Hard}} {{end}}",
    );
    assert_eq!(ulimits.trim(), "nofile=1024:2048 nproc=512:512");
    assert_eq!(inspect(&app, "{{.HostConfig.ShmSize}}"), "67108864");
    assert_eq!(
        inspect(
            &app,
            "{{json .HostConfig.CapAdd}} {{json .HostConfig.CapDrop}}"
        ),
        r#"["NET_ADMIN"] ["MKNOD"]"#
    );
    assert_eq!(
        inspect(
            &app,
            "{{.HostConfig.LogConfig.Type}} {{index .HostConfig.LogConfig.Config \"max-size\"}} {{index .HostConfig.LogConfig.Config \"max-file\"}}"
        ),
        "json-file 1m 2"
    );
    assert_eq!(
        inspect(
            &app,
            "{{range .HostConfig.Devices}}{{.PathOnHost}}:{{.PathInContainer}}:{{.CgroupPermissions}}{{end}}"
        ),
        "/dev/null:/dev/xnull:rw"
    );
    assert_eq!(
        inspect(&app, "{{json .HostConfig.Binds}}"),
        format!("[\"{}:/data:z\"]", dir.join("data").display())
    );
    assert_eq!(
        inspect(&app, "{{.HostConfig.MemoryReservation}}"),
        "33554432"
    );
    // disable: false keeps the image's own healthcheck (with the timings given); disable: true
    // turns it off.
    assert!(inspect(&app, "{{json .Config.Healthcheck.Test}}").contains("check"));
    let start_interval = if support::docker::keeps_start_interval() {
        "1s"
    } else {
        "0s"
    };
    assert_eq!(
        inspect(
            &app,
            "{{.Config.Healthcheck.Interval}} {{.Config.Healthcheck.StartInterval}}"
        ),
        format!("30s {start_interval}")
    );
    assert_eq!(
        inspect(&worker, "{{json .Config.Healthcheck.Test}}"),
        r#"["NONE"]"#
    );

    assert_eq!(
        inspect(
            &worker,
            "{{.HostConfig.Init}} {{.HostConfig.ReadonlyRootfs}} {{.Config.Tty}}"
        ),
        "true true true"
    );
    assert_eq!(
        inspect(
            &worker,
            "{{json .HostConfig.Tmpfs}} {{json .HostConfig.Sysctls}}"
        ),
        r#"{"/run":"size=1m"} {"net.ipv4.ip_unprivileged_port_start":"0"}"#
    );
    assert_eq!(
        inspect(
            &worker,
            "{{json .HostConfig.ExtraHosts}} {{json .HostConfig.SecurityOpt}}"
        ),
        r#"["db.local:10.9.9.9"] ["no-new-privileges:true"]"#
    );

    // The secret and the config, mounted read-only from their files.
    let mounts = inspect(
        &worker,
        "{{range .Mounts}}{{.Source}}:{{.Destination}}:{{.RW}} {{end}}",
    );
    for (file, target) in [
        ("token.txt", "/run/secrets/token"),
        ("worker.conf", "/etc/worker.conf"),
    ] {
        let mount = format!("{}:{target}:false", dir.join(file).display());
        assert!(mounts.contains(&mount), "{mount} not in {mounts}");
    }

    // The internal network with its subnet, and each container at its address.
    let network = format!("{project}_back");
    assert_eq!(
        docker(&[
            "network",
            "inspect",
            "-f",
            "{{.Internal}} {{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}}",
            &network
        ]),
        format!("true {subnet}.0/24 {subnet}.1")
    );
    let address = |c: &str| {
        inspect(
            c,
            &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"),
        )
    };
    assert_eq!(address(&app), format!("{subnet}.10"));
    assert_eq!(address(&worker), format!("{subnet}.11"));

    // Nothing changed: nothing built, nothing touched.
    let printed = up();
    assert!(printed.contains("built=[]"), "{printed}");
    assert!(
        printed.contains(&format!("unchanged=[\"{app}\", \"{worker}\"]")),
        "{printed}"
    );

    // A file .dockerignore leaves out changes nothing either.
    std::fs::write(dir.join("app/secret.txt"), "another secret\n").unwrap();
    let printed = up();
    assert!(printed.contains("built=[]"), "{printed}");

    // A file of the context changes: the image is rebuilt, app recreated, and worker, which
    // asked for it (`restart: true`), restarted.
    let old_image = inspect(&app, "{{.Image}}");
    cleanup.image(&old_image);
    let worker_started = inspect(&worker, "{{.State.StartedAt}}");
    std::fs::write(dir.join("app/kept.txt"), "changed\n").unwrap();
    let printed = up();
    assert!(
        printed.contains(&format!("built=[\"{image}\"]")),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("recreated=[\"{app}\"]")),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("restarted=[\"{worker}\"]")),
        "{printed}"
    );
    assert_ne!(inspect(&app, "{{.Image}}"), old_image);
    assert_ne!(inspect(&worker, "{{.State.StartedAt}}"), worker_started);
}

const LOAD_NAME: &str = r#"fn main() {
    let p = compose::load("compose.yaml");
    print(`name=${p.name} profiles=${p.profiles}`);
    for s in p.services.keys() { print(`service ${s}`) }
}"#;

#[test]
fn the_dot_env_names_the_project_and_its_profiles() {
    let compose =
        "services:\n  api:\n    image: x\n  debug:\n    image: x\n    profiles: [debug]\n";
    let env = "COMPOSE_PROJECT_NAME=from_dotenv\nCOMPOSE_PROFILES=debug,ops\n";
    Test::new()
        .file("compose.yaml", compose)
        .file(".env", env)
        .runbook("load", LOAD_NAME)
        .args(["load"])
        .stdout_contains(r#"name=from_dotenv profiles=["debug", "ops"]"#)
        .success();
    // The process environment wins over the file, as with docker compose.
    Test::new()
        .file("compose.yaml", compose)
        .file(".env", env)
        .runbook("load", LOAD_NAME)
        .env("COMPOSE_PROJECT_NAME", "from_process")
        .env("COMPOSE_PROFILES", "")
        .args(["load"])
        .stdout_contains("name=from_process profiles=[]")
        .success();
}

#[test]
fn heavy_anchors_load_and_a_billion_laughs_is_an_error() {
    // 10 anchors, 150 aliases: what a big real stack does with `<<:`.
    let mut compose = String::new();
    for i in 0..10 {
        compose.push_str(&format!("x-a{i}: &a{i}\n  LABEL_{i}: \"{i}\"\n"));
    }
    let aliases: Vec<String> = (0..10).map(|i| format!("*a{i}")).collect();
    compose.push_str("services:\n");
    for s in 0..15 {
        compose.push_str(&format!(
            "  s{s}:\n    image: x\n    labels:\n      <<: [{}]\n",
            aliases.join(", ")
        ));
    }
    Test::new()
        .file("compose.yaml", &compose)
        .runbook("load", LOAD_NAME)
        .args(["load"])
        .stdout_contains("service s14")
        .success();

    let mut laughs = String::from(
        "services:\n  api:\n    image: x\nx-0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
    );
    for i in 1..10 {
        let p = i - 1;
        laughs.push_str(&format!(
            "x-{i}: &l{i} [*l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}]\n"
        ));
    }
    Test::new()
        .file("compose.yaml", &laughs)
        .runbook("load", LOAD_NAME)
        .args(["load"])
        .stderr_contains("compose.yaml:")
        .stderr_contains("expands to more than cutover reads")
        .stdout_lacks("name=")
        .status(1);
}

#[test]
fn pull_policy_never_refuses_and_a_dry_run_only_says_what_it_would_build() {
    if !support::require(Service::Docker) {
        return;
    }
    let mut cleanup = Cleanup::new("never");
    let project = cleanup.project("never");
    let missing = format!("cutover-missing-{project}:none");
    Test::new()
        .file(
            "compose.yaml",
            &format!("services:\n  app:\n    image: {missing}\n    pull_policy: never\n"),
        )
        .runbook("up", UP_REPORT)
        .args(["up", &project, "compose.yaml"])
        .stderr_contains(&format!(
            "image {missing} is not here and its pull_policy is never"
        ))
        .status(1);

    let image = format!("{project}-app");
    cleanup.image(&image);
    Test::new()
        .file("compose.yaml", "services:\n  app:\n    build: ./app\n")
        .file("app/Dockerfile", "FROM scratch\nCOPY . /\n")
        .runbook("up", UP_REPORT)
        .args(["--dry-run", "up", &project, "compose.yaml"])
        .stderr_contains(&format!("would build image {image} (image missing)"))
        .stdout_contains(&format!("built=[\"{image}\"]"))
        .success();
    let listed = docker(&["images", "-q", &image]);
    assert_eq!(listed, "", "a dry run built {image}");
}

#[test]
fn malformed_new_fields_are_errors_naming_the_line() {
    for (compose, error) in [
        (
            "services:\n  api:\n    build: https://example.com/app.git\n",
            "compose.yaml:3: services.api.build: build context \"https://example.com/app.git\": only a local directory can be built",
        ),
        (
            "services:\n  api:\n    image: x\n    healthcheck:\n      disable: true\n      test: [CMD, x]\n",
            "compose.yaml:5: services.api.healthcheck: `disable: true` and a `test` contradict each other",
        ),
        (
            "services:\n  api:\n    image: x\n    ulimits:\n      nofile: {soft: 10}\n",
            "compose.yaml:5: services.api.ulimits.nofile: a ulimit needs `soft` and `hard`",
        ),
        (
            "services:\n  api:\n    image: x\n    networks:\n      back: {ipv4_address: 10.0.0.999}\nnetworks:\n  back: {}\n",
            "compose.yaml:5: services.api.networks.back.ipv4_address: \"10.0.0.999\" is not an IPv4 address",
        ),
        (
            "services:\n  api:\n    image: x\nnetworks:\n  back:\n    ipam:\n      config:\n        - subnet: 10.0.0.0\n",
            "compose.yaml:8: networks.back.ipam.config[0].subnet: \"10.0.0.0\" is not a subnet (ADDRESS/BITS)",
        ),
        (
            "services:\n  api:\n    image: x\n    volumes: [\"./a:/a:zz\"]\n",
            "compose.yaml:4: services.api.volumes[0]: unknown volume option \"zz\"",
        ),
        (
            "services:\n  api:\n    image: x\n    pull_policy: sometimes\n",
            "compose.yaml:4: services.api.pull_policy: unknown pull_policy \"sometimes\"",
        ),
        (
            "services:\n  api:\n    image: x\n    tmpfs: [run]\n",
            "compose.yaml:4: services.api.tmpfs: tmpfs \"run\": the path must be absolute",
        ),
        (
            "services:\n  api:\n    image: x\n    extra_hosts: [db.local]\n",
            "compose.yaml:4: services.api.extra_hosts: extra host \"db.local\": use HOST:ADDRESS",
        ),
        (
            "services:\n  api:\n    command: serve\n",
            "compose.yaml:3: services.api: no `image` and no `build`: every service needs one or the other",
        ),
    ] {
        Test::new()
            .file("compose.yaml", compose)
            .runbook("load", LOAD_NAME)
            .args(["load"])
            .stderr_contains(error)
            .stdout_lacks("name=")
            .status(1);
    }
}

#[test]
fn pull_policy_always_pulls_on_every_up_and_follows_the_new_image() {
    if !support::require(Service::Docker) || !support::require(Service::Registry) {
        return;
    }
    let mut cleanup = Cleanup::new("always");
    let project = cleanup.project("always");
    let registry = support::docker::Registry::start();
    let port = registry.port;
    let dir = tempfile::tempdir().unwrap();
    let reference = format!("127.0.0.1:{port}/cutover-demo:{}", cleanup.id);
    cleanup.image(&reference);
    docker(&["tag", &demo_image(), &reference]);
    docker(&["push", &reference]);
    let compose = format!(
        "services:\n  app:\n    image: {reference}\n    pull_policy: always\n    environment: {{SERVICE: app}}\n"
    );
    let up = || {
        Test::new()
            .file("compose.yaml", &compose)
            .runbook("up", UP_REPORT)
            .args(["up", &project, "compose.yaml"])
            .success()
    };
    let printed = up().stdout;
    assert!(
        printed.contains(&format!("pulled=[\"{reference}\"]")),
        "{printed}"
    );
    let app = format!("{project}-app-1");
    let first = inspect(&app, "{{.Image}}");

    // The same image in the registry: pulled again, the container kept.
    let printed = up().stdout;
    assert!(
        printed.contains(&format!("pulled=[\"{reference}\"]")),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("unchanged=[\"{app}\"]")),
        "{printed}"
    );

    // A new image under the tag: the pull brings it, and the container moves to it.
    let build = dir.path().join("v2");
    std::fs::create_dir_all(&build).unwrap();
    std::fs::write(
        build.join("Dockerfile"),
        format!("FROM {}\nLABEL release=v2\n", demo_image()),
    )
    .unwrap();
    let newer = format!("{reference}-v2");
    cleanup.image(&newer);
    docker(&["build", "-q", "-t", &newer, build.to_str().unwrap()]);
    let newer_id = inspect(&newer, "{{.Id}}");
    // Its tags go with the cleanup's; the image itself, pushed, keeps a digest until removed.
    cleanup.image(&newer_id);
    docker(&["tag", &newer, &reference]);
    docker(&["push", &reference]);
    docker(&["tag", &first, &reference]);
    let last = up();
    let printed = last.stdout.clone();
    assert!(
        printed.contains(&format!("recreated=[\"{app}\"]")),
        "{printed}"
    );
    assert!(last.stderr.contains("(image pulled)"), "{}", last.stderr);
    assert_eq!(inspect(&app, "{{.Image}}"), newer_id);
    drop(registry);
}

#[test]
fn secrets_given_otherwise_than_by_file_are_warned_about_naming_the_line() {
    let compose = "services:\n  api:\n    image: x\n    secrets:\n      - source: key\n        mode: 0400\n      - token\nsecrets:\n  key: {file: ./key.txt}\n  token:\n    environment: TOKEN\n";
    Test::new()
        .file("compose.yaml", compose)
        .runbook("load", LOAD_NAME)
        .args(["load"])
        .stderr_contains(
            "WARN  compose.yaml:6: services.api.secrets[0].mode: not supported by cutover, ignored",
        )
        .stderr_contains(
            "WARN  compose.yaml:11: secrets.token.environment: not supported by cutover, ignored",
        )
        .stdout_contains("service api")
        .success();
    Test::new()
        .file("compose.yaml", "services:\n  api:\n    image: x\n    secrets: [nope]\n")
        .runbook("load", LOAD_NAME)
        .args(["load"])
        .stderr_contains("compose.yaml:4: services.api.secrets[0]: \"nope\" is not declared in the top-level `secrets:`")
        .status(1);
}
