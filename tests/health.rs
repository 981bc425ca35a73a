//! `health::*` against real targets: demo-service processes (healthy, unhealthy, slow, late),
//! a throwaway PostgreSQL cluster, Docker containers with and without healthchecks.

use std::time::Duration;

use crate::{
    support::{self, Service, demo::DemoProcess, postgres},
    test::Test,
};

/// Prints `name ok detail` for each result of a list of checks.
const REPORT: &str = r#"
fn report(results) {
    for r in results { print(`${r.name} | ${r.ok} | ${r.detail}`); }
}
"#;

fn runbook(body: &str) -> String {
    format!("{REPORT}\nfn main() {{\n{body}\n}}\n")
}

#[test]
fn http_checks_status_body_and_json() {
    let blue = DemoProcess::start(support::free_port(), &[("VERSION", "blue")]);
    let sick = DemoProcess::start(support::free_port(), &[("UNHEALTHY", "1")]);
    let script = runbook(
        r#"
        let b = "http://BLUE";
        report([
            health::http(`${b}/api/health`),
            health::http(`${b}/api/health`, #{status: 200, json: #{status: "ok", version: "blue"}, name: "json ok"}),
            health::http(`${b}/api/health`, #{json: #{status: "degraded"}, name: "json wrong"}),
            health::http(`${b}/api/health`, #{json: #{"checks.db": "up"}, name: "json missing"}),
            health::http(`${b}/version`, #{body: "blue", name: "body ok"}),
            health::http(`${b}/version`, #{body: "green", name: "body wrong"}),
            health::http(`${b}/version`, #{contains: "lu", name: "contains ok"}),
            health::http(`${b}/api/health`, #{status: 201, name: "status wrong"}),
            health::http("http://SICK/api/health", #{name: "sick"}),
        ]);
        "#,
    )
    .replace("BLUE", &blue.address())
    .replace("SICK", &sick.address());
    Test::new()
        .runbook("h", &script)
        .args(["h"])
        .stdout_contains(&format!(
            "http://{}/api/health | true | HTTP 200\n",
            blue.address()
        ))
        .stdout_contains("json ok | true | HTTP 200\n")
        .stdout_contains(
            r#"json wrong | false | HTTP 200 but JSON status is "ok", expected "degraded""#,
        )
        .stdout_contains("json missing | false | HTTP 200 but the JSON has no checks.db")
        .stdout_contains("body ok | true | HTTP 200\n")
        .stdout_contains(
            r#"body wrong | false | HTTP 200 but the body is "blue", expected "green""#,
        )
        .stdout_contains("contains ok | true | HTTP 200\n")
        .stdout_contains("status wrong | false | HTTP 200 (expected 201)")
        .stdout_contains(r#"sick | false | HTTP 503 (expected 2xx): {"status":"unhealthy""#)
        .success();
}

#[test]
fn unreachable_and_slow_targets_are_unhealthy_not_errors() {
    let slow = DemoProcess::start(support::free_port(), &[("LATENCY_MS", "2000")]);
    let nothing = format!("127.0.0.1:{}", support::free_port());
    let script = runbook(
        r#"
        report([
            health::http("http://SLOW/api/health", #{timeout: 200, name: "slow http"}),
            health::tcp("NOTHING", #{name: "closed port"}),
            health::http("http://NOTHING/", #{name: "refused http"}),
            health::tcp("SLOW", #{name: "slow tcp"}),
        ]);
        print("still running");
        "#,
    )
    .replace("SLOW", &slow.address())
    .replace("NOTHING", &nothing);
    Test::new()
        .runbook("h", &script)
        .args(["h"])
        .stdout_contains("slow http | false | no answer within 200 ms")
        .stdout_contains("closed port | false | cannot connect: Connection refused")
        .stdout_contains("refused http | false | cannot connect: Connection refused")
        .stdout_contains("slow tcp | true | connected to 127.0.0.1:")
        .stdout_contains("still running")
        .success();
}

#[test]
fn all_runs_checks_concurrently_and_keeps_their_order() {
    let services: Vec<DemoProcess> = (0..12)
        .map(|i| {
            DemoProcess::start(
                support::free_port(),
                &[("LATENCY_MS", "100"), ("VERSION", &format!("v{i}"))],
            )
        })
        .collect();
    let checks: Vec<String> = services
        .iter()
        .enumerate()
        .map(|(i, s)| {
            format!(
                r#"#{{http: "http://{}/version", body: "v{i}", name: "svc{i}"}}"#,
                s.address()
            )
        })
        .collect();
    let script = runbook(&format!(
        r#"
        let results = health::all([{}]);
        report(results);
        print(`names: ${{results.map(|r| r.name)}}`);
        print(`all ok: ${{results.all(|r| r.ok)}}, each waited: ${{results.all(|r| r.ms >= 100)}}`);
        "#,
        checks.join(", ")
    ));
    let names: Vec<String> = (0..12).map(|i| format!("\"svc{i}\"")).collect();
    Test::new()
        .runbook("h", &script)
        .args(["h"])
        .stdout_contains(&format!("names: [{}]", names.join(", ")))
        .stdout_contains("all ok: true, each waited: true")
        .success();
}

#[test]
fn wait_returns_once_a_late_service_is_up() {
    let port = support::free_port();
    let late = DemoProcess::start(port, &[("START_DELAY_MS", "700")]);
    let script = runbook(
        r#"
        let results = health::wait(["http://LATE/api/health", #{tcp: "LATE", name: "late tcp"}], #{timeout: 20000, interval: 200});
        report(results);
        "#,
    )
    .replace("LATE", &format!("127.0.0.1:{port}"));
    Test::new()
        .runbook("h", &script)
        .args(["h"])
        .stdout_contains(&format!(
            "http://127.0.0.1:{port}/api/health | true | HTTP 200"
        ))
        .stdout_contains("late tcp | true | connected")
        .success();
    drop(late);
}

#[test]
fn wait_timeout_names_each_unhealthy_check_with_its_last_detail() {
    let healthy = DemoProcess::start(support::free_port(), &[("VERSION", "blue")]);
    let sick = DemoProcess::start(support::free_port(), &[("UNHEALTHY", "1")]);
    let nothing = format!("127.0.0.1:{}", support::free_port());
    let script = runbook(
        r#"
        health::wait([
            #{http: "http://HEALTHY/api/health", name: "api blue"},
            #{http: "http://SICK/api/health", name: "api green"},
            #{tcp: "NOTHING", name: "database"},
        ], #{timeout: 1200, interval: 200});
        print("not reached");
        "#,
    )
    .replace("HEALTHY", &healthy.address())
    .replace("SICK", &sick.address())
    .replace("NOTHING", &nothing);
    Test::new()
        .runbook("h", &script)
        .args(["h"])
        .stderr_contains("health::wait: 2 of 3 checks still unhealthy after")
        .stderr_contains("\n  api green: HTTP 503 (expected 2xx)")
        .stderr_contains("\n  database: cannot connect: Connection refused")
        .stderr_lacks("api blue:")
        .stdout_lacks("not reached")
        .status(1);
}

#[test]
fn wait_shows_what_still_fails_on_a_terminal() {
    use expectrl::{Eof, Expect, Session};
    let healthy = DemoProcess::start(support::free_port(), &[]);
    let nothing = format!("127.0.0.1:{}", support::free_port());
    let test = Test::new().runbook(
        "h",
        &runbook(
            r#"health::wait(["http://HEALTHY/api/health", #{tcp: "NOTHING", name: "db"}], #{timeout: 3000, interval: 200});"#,
        )
        .replace("HEALTHY", &healthy.address())
        .replace("NOTHING", &nothing),
    );
    let mut command = test.command();
    command.arg("h").env("TERM", "xterm");
    let mut session = Session::spawn(command).expect("cannot start cutover on a pty");
    session.set_expect_timeout(Some(Duration::from_secs(20)));
    // The spinner names the one check still failing, and why.
    session
        .expect("waiting for 1 of 2: db (cannot connect: Connection refused")
        .unwrap();
    session
        .expect("health::wait: 1 of 2 checks still unhealthy")
        .unwrap();
    session.expect(Eof).unwrap();
}

#[test]
fn wait_is_stopped_by_the_run_timeout() {
    let nothing = format!("127.0.0.1:{}", support::free_port());
    Test::new()
        .runbook(
            "h",
            &runbook(r#"health::wait([#{tcp: "NOTHING"}], #{timeout: 600000});"#)
                .replace("NOTHING", &nothing),
        )
        .args(["--timeout", "1", "h"])
        .stderr_contains("stopped by --timeout")
        .status(124);
}

#[test]
fn malformed_checks_are_errors_naming_the_check() {
    for (checks, message) in [
        (
            r#"[#{htp: "http://x"}]"#,
            "check #1 of the list: the map names no check",
        ),
        (
            r#"["http://x", #{tcp: "a:1", http: "http://y"}]"#,
            "check #2 of the list: the map names http and tcp checks; give one",
        ),
        (
            r#"[#{http: "http://x", stauts: 200}]"#,
            "health::all: check #1 of the list: unknown option `stauts` (known: timeout, name, status, contains, body, json, resolve, ca)",
        ),
        (
            r#"[#{http: "https://app.example.com/", resolve: "localhost"}]"#,
            "option `resolve` must be an IP address like \"127.0.0.1\"",
        ),
        (
            r#"[#{tcp: "a:1", status: 200}]"#,
            "`status` applies to http checks, not tcp",
        ),
        (
            r#"[42]"#,
            "a check is a URL or a map like #{http: url}, not i64",
        ),
        (r#"["not a url"]"#, "invalid URL \"not a url\""),
        (
            r#"[#{postgres: "postgres://u@h:notaport/db"}]"#,
            "invalid PostgreSQL URL",
        ),
        (
            r#"[#{task: "../nodes"}]"#,
            "\"../nodes\" is no swarm task id (the `id` of swarm::tasks: letters and digits)",
        ),
        (
            r#"[#{task: "x5lwdh8bjm3e", body: "ok"}]"#,
            "`body` applies to http checks, not task",
        ),
    ] {
        Test::new()
            .runbook("h", &runbook(&format!("health::all({checks});")))
            .args(["h"])
            .stderr_contains(message)
            .status(1);
    }
}

/// A task check asks the swarm's manager (`CUTOVER_SWARM_HOST`): one that does not answer makes
/// it unhealthy, naming the manager, and only it: a TCP check beside it passes.
#[test]
fn a_task_check_whose_manager_does_not_answer_is_unhealthy_naming_it() {
    let nobody = support::free_port();
    let demo = DemoProcess::start(support::free_port(), &[]);
    let script = runbook(
        r#"
        report(health::all([#{task: "x5lwdh8bjm3e2m2w0kbl9h3q5", name: "api#1"}, #{tcp: "DEMO"}]));
        report([health::task("x5lwdh8bjm3e2m2w0kbl9h3q5")]);
        "#,
    )
    .replace("DEMO", &demo.address());
    Test::new()
        .runbook("h", &script)
        .args(["h"])
        .env("CUTOVER_SWARM_HOST", format!("tcp://127.0.0.1:{nobody}"))
        .stdout_contains(&format!(
            "api#1 | false | cannot reach the swarm manager at tcp://127.0.0.1:{nobody}: "
        ))
        .stdout_contains(&format!("{} | true | connected to", demo.address()))
        .stdout_contains("task x5lwdh8bjm3e2m2w0kbl9h3q5 | false | cannot reach the swarm manager")
        .success();
}

#[test]
fn postgres_select_one_and_refusals_with_the_password_masked() {
    if !support::require(Service::Postgres) {
        return;
    }
    let cluster = postgres::shared();
    let password = cluster.password.as_str();
    let nothing = support::free_port();
    let script = runbook(
        r#"
        report([
            health::postgres("GOOD"),
            health::postgres("BAD", #{name: "wrong password"}),
            health::postgres("postgres://postgres:x@127.0.0.1:NOTHING/postgres", #{name: "no server"}),
        ]);
        "#,
    )
    .replace("GOOD", &cluster.url("postgres"))
    .replace(
        "BAD",
        &format!("postgres://postgres:not-the-password@127.0.0.1:{}/postgres", cluster.port),
    )
    .replace("NOTHING", &nothing.to_string());
    Test::new()
        .runbook("h", &script)
        .args(["h"])
        .stdout_contains(&format!(
            "postgres://postgres:***@127.0.0.1:{}/postgres | true | SELECT 1 answered",
            cluster.port
        ))
        .stdout_contains("wrong password | false | FATAL: password authentication failed")
        .stdout_contains("no server | false | error connecting to server: Connection refused")
        .stderr_lacks(password)
        .stdout_lacks(password)
        .success();
}

/// Containers of the demo image, removed when dropped.
struct Containers {
    image: String,
    names: Vec<String>,
}

impl Containers {
    fn docker(args: &[&str]) -> String {
        let output = std::process::Command::new("docker")
            .args(args)
            .output()
            .expect("cannot run docker");
        assert!(
            output.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// Builds the demo image, with a fast exec-form healthcheck (a scratch image has no shell
    /// for `--health-cmd`), under a unique tag.
    fn new() -> Containers {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(support::demo::binary(), dir.path().join("demo-service")).unwrap();
        let dockerfile = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/demo-service/image/Dockerfile"
        ))
        .unwrap();
        std::fs::write(
            dir.path().join("Dockerfile"),
            format!(
                "{dockerfile}HEALTHCHECK --interval=300ms --retries=1 \
                 CMD [\"/demo-service\", \"check\", \"http://127.0.0.1:8080/api/health\"]\n"
            ),
        )
        .unwrap();
        let image = format!("{}:test", support::unique_name("cutover-health"));
        let output = std::process::Command::new("docker")
            .args([
                "build",
                "-q",
                "--label",
                "cutover-test=health",
                "-t",
                &image,
            ])
            .arg(dir.path())
            .env("DOCKER_BUILDKIT", "0")
            .output()
            .expect("cannot run docker build");
        assert!(
            output.status.success(),
            "docker build: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Containers {
            image,
            names: Vec::new(),
        }
    }

    fn run(&mut self, prefix: &str, args: &[&str]) -> String {
        let name = support::unique_name(prefix);
        let mut all = vec![
            "run",
            "-d",
            "--name",
            &name,
            "--label",
            "cutover-test=health",
        ];
        all.extend_from_slice(args);
        all.push(&self.image);
        Self::docker(&all);
        self.names.push(name.clone());
        name
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", name])
                .output();
        }
        let _ = std::process::Command::new("docker")
            .args(["rmi", "-f", &self.image])
            .output();
    }
}

#[test]
fn container_running_and_docker_health_status() {
    if !support::require(Service::Docker) {
        return;
    }
    let mut containers = Containers::new();
    let healthy = containers.run("healthy", &[]);
    let sick = containers.run("sick", &["-e", "UNHEALTHY=1"]);
    let plain = containers.run("plain", &["--no-healthcheck"]);
    let crashed = containers.run("crashed", &["-e", "CRASH_AFTER_MS=1"]);
    let missing = support::unique_name("missing");
    let script = runbook(
        r#"
        health::wait([#{container: "HEALTHY"}], #{timeout: 30000, interval: 200});
        sleep(1500);
        report([
            health::container("HEALTHY"),
            health::container("SICK"),
            health::container("PLAIN"),
            health::container("CRASHED"),
            health::container("MISSING"),
        ]);
        // Together, as an environment's containers are judged: one listing answers the healthy
        // ones, and the others say what they say alone.
        let together = [];
        for name in ["HEALTHY", "SICK", "PLAIN", "CRASHED", "MISSING"] { together.push(#{container: name}); }
        for r in health::all(together) { print(`together: ${r.name} | ${r.ok} | ${r.detail}`); }
        // As the caller has just listed them: shown healthy, that is the answer; shown any
        // other way (the sick one listed as still starting), each is inspected.
        let listed = [
            #{container: "HEALTHY", listed: #{name: "HEALTHY", state: "running", status: "Up 2 seconds (healthy)"}},
            #{container: "PLAIN", listed: #{state: "running", status: "Up 2 seconds"}},
            #{container: "SICK", listed: #{state: "running", status: "Up 2 seconds (health: starting)"}},
            #{container: "CRASHED", listed: #{state: "exited", status: "Exited (1) 1 second ago"}},
        ];
        for r in health::all(listed) { print(`listed: ${r.name} | ${r.ok} | ${r.detail}`); }
        for bad in [#{tcp: "127.0.0.1:1", listed: #{state: "running", status: "Up"}},
                    #{container: "HEALTHY", listed: #{name: "PLAIN", state: "running", status: "Up"}},
                    #{container: "HEALTHY", listed: #{state: "running"}}] {
            try { health::all([bad]); } catch (e) { print(`refused: ${e}`); }
        }
        "#,
    )
    .replace("HEALTHY", &healthy)
    .replace("SICK", &sick)
    .replace("PLAIN", &plain)
    .replace("CRASHED", &crashed)
    .replace("MISSING", &missing);
    Test::new()
        .runbook("h", &script)
        .args(["-vv", "h"])
        .stdout_contains(&format!("{healthy} | true | running, healthy"))
        .stdout_contains(&format!("{sick} | false | running, unhealthy"))
        .stdout_contains(&format!("{plain} | true | running (no healthcheck)"))
        .stdout_contains(&format!("{crashed} | false | exited (code 1)"))
        .stdout_contains(&format!("{missing} | false | no such container"))
        .stdout_contains(&format!("together: {healthy} | true | running, healthy"))
        .stdout_contains(&format!("together: {sick} | false | running, unhealthy"))
        .stdout_contains(&format!(
            "together: {plain} | true | running (no healthcheck)"
        ))
        .stdout_contains(&format!("together: {crashed} | false | exited (code 1)"))
        .stdout_contains(&format!("together: {missing} | false | no such container"))
        .stdout_contains(&format!("listed: {healthy} | true | running, healthy"))
        .stdout_contains(&format!("listed: {plain} | true | running (no healthcheck)"))
        .stdout_contains(&format!("listed: {sick} | false | running, unhealthy"))
        .stdout_contains(&format!("listed: {crashed} | false | exited (code 1)"))
        .stderr_contains(&format!(
            "container {healthy}: running, healthy, as the caller listed it"
        ))
        .stdout_contains("refused: health::all: check #1 of the list: `listed` applies to container checks, not tcp")
        .stdout_contains(&format!(
            "`listed` is container \"{plain}\", not \"{healthy}\" that this check is of"
        ))
        .stdout_contains("`listed` is the container as compose::ps lists it: a map with `status`")
        // The healthy two were answered by the listing, not an inspect each.
        .stderr_contains(&format!(
            "container {healthy}: running, healthy, as listed with the round's other containers"
        ))
        .stderr_contains(&format!(
            "container {plain}: running (no healthcheck), as listed with the round's other containers"
        ))
        .success();
}
