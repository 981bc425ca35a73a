//! The runbooks end to end on a real stack (Docker, Caddy and PostgreSQL in containers, images
//! built here): the whole lifecycle with load running through every switch, and the faults an
//! operator meets — an image that never gets healthy, an unhealthy standby, a second run, Ctrl-C
//! mid-deploy — and dry runs that change nothing. Stacks are heavy for two cores, so these
//! tests take turns.

use std::{
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use crate::{
    support::{
        self, Service,
        load::{Group, Load, Method, Plan, Retry},
        stack::Stack,
    },
    test::{Finished, wait_until_held},
};

static SERIAL: Mutex<()> = Mutex::new(());

/// The services a stack needs, or `None` (the test returns) when one is missing; then the
/// turn of this test among the stack tests.
pub(crate) fn turn() -> Option<MutexGuard<'static, ()>> {
    if !support::require_all(&[Service::Docker, Service::Caddy, Service::Postgres]) {
        return None;
    }
    Some(
        SERIAL
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()),
    )
}

/// Keep-alive clients on the proxy: browser-like GETs, and GETs and POSTs that never retry.
pub(crate) fn load_on(stack: &Stack) -> Load {
    Load::start(Plan {
        target: format!("127.0.0.1:{}", stack.ports.proxy).parse().unwrap(),
        groups: vec![
            Group::new("browser", Retry::Browser, Method::Get, 4, 60.0),
            Group::new("never-retry GET", Retry::Never, Method::Get, 2, 20.0),
            Group::new("never-retry POST", Retry::Never, Method::Post, 2, 20.0),
        ],
        duration: Duration::from_secs(300),
        max_requests: 200_000,
        request_timeout: Duration::from_secs(10),
    })
}

/// `.current-environment` names `env`, and production answers its build `version`.
pub(crate) fn assert_serving(stack: &Stack, env: &str, version: &str) {
    assert_eq!(
        (stack.active().as_str(), stack.version().as_str()),
        (env, version)
    );
}

fn finished_runs(stack: &Stack, runbook: &str) -> Vec<String> {
    stack
        .journal()
        .into_iter()
        .filter(|e| e["runbook"] == runbook && e["event"] == "finish")
        .map(|e| e["outcome"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn lifecycle_deploy_validate_promote_rollback_backup_restore_failover() {
    let Some(_turn) = turn() else { return };
    let stack = Stack::new("lifecycle");
    stack.cutover(&["prepare", "blue", "v1"]).success();
    stack
        .cutover(&["promote", "blue"])
        .stdout_contains("production: none -> blue (v1)")
        .success();
    assert_serving(&stack, "blue", "v1");

    let load = load_on(&stack);
    std::thread::sleep(Duration::from_millis(500));
    stack.cutover(&["prepare", "green", "v2"]).success();
    let settings = std::fs::read_to_string(stack.path().join("deploy/.env.blue-green")).unwrap();
    assert!(settings.contains("\nGREEN_TAG=v2\n"), "{settings}");
    stack
        .cutover(&["validate", "green"])
        .stdout_contains("green through the proxy")
        .stderr_contains("green is healthy")
        .success();
    stack
        .cutover(&["promote", "green"])
        .stdout_contains("production: blue -> green (v2)")
        .success();
    assert_serving(&stack, "green", "v2");
    stack
        .cutover(&["rollback", "--yes"])
        .stdout_contains("rolled back: production green -> blue (v1)")
        .success();
    assert_serving(&stack, "blue", "v1");
    std::thread::sleep(Duration::from_millis(500));
    let report = load.stop();
    for group in ["browser", "never-retry GET", "never-retry POST"] {
        let seen = report.group(group);
        assert!(seen.requests > 100, "{}", report.describe());
        assert_eq!(seen.failures(), 0, "{}", report.describe());
    }
    assert_eq!(finished_runs(&stack, "promote"), ["ok", "ok"]);
    assert_eq!(finished_runs(&stack, "rollback"), ["ok"]);
    let switches: Vec<String> = stack
        .journal()
        .iter()
        .filter(|e| {
            e["event"] == "change"
                && e["message"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("caddy::switch production")
        })
        .map(|e| e["kind"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(switches, ["promotion", "promotion", "rollback"]);
    stack
        .cutover(&["status"])
        .stdout_contains("ACTIVE since")
        .stdout_contains("standby")
        // The name the next command takes (`docker::logs(NAME)`), not only `service#N`.
        .stdout_contains(&stack.container("green-api-gateway"))
        .stderr_lacks("ACTIVE since")
        .success();
    // The table is the result, not a log line: `-q` keeps it.
    stack
        .cutover(&["-q", "status"])
        .stdout_contains("ACTIVE since")
        .success();

    // Backup, damage, restore: the data comes back, production serves again.
    stack.psql(
        "CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes VALUES (1, 'kept')",
    );
    let backup = stack.cutover(&["backup"]).success();
    let path = backup_path(&backup);
    let mode = std::fs::metadata(stack.path().join(&path)).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    stack.psql("UPDATE notes SET body = 'corrupted'; INSERT INTO notes VALUES (2, 'junk')");
    // A missing, broken or hostile file fails before any app container is stopped.
    let apps = stack.docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.compose.project={}", stack.name),
    ]);
    let started = || {
        let mut args = vec!["inspect", "-f", "{{.Name}} {{.State.StartedAt}}"];
        args.extend(apps.split_whitespace());
        stack.docker(&args)
    };
    let before = started();
    std::fs::write(
        stack.path().join("hostile.sql"),
        "\\connect postgres\nDELETE FROM notes;\n",
    )
    .unwrap();
    for (file, why) in [
        ("/nonexistent.dump", "cannot read /nonexistent.dump"),
        ("hostile.sql", "psql command `\\connect` refused"),
    ] {
        stack
            .cutover(&["restore-db", file, "--yes"])
            .stderr_contains(why)
            .status(1);
    }
    assert_eq!(started(), before, "an app container was stopped");
    stack
        .cutover(&["restore-db", &path, "--yes"])
        .stdout_contains("restored flappyjournal")
        .success();
    assert_eq!(
        stack.psql("SELECT string_agg(id || ':' || body, ',') FROM notes"),
        "1:kept"
    );
    assert_eq!(stack.version(), "v1");

    // The active environment dies: the failover moves production to the standby.
    stack.docker(&["stop", &stack.container("blue-api-gateway")]);
    stack
        .cutover(&["emergency-failover"])
        .stdout_contains("failed over: production blue -> green (v2)")
        .success();
    assert_serving(&stack, "green", "v2");
    stack
        .cutover(&["emergency-failover"])
        .stdout_contains("production (green, v2) is healthy: no failover needed")
        .success();
}

fn backup_path(run: &Finished) -> String {
    let line = run
        .stdout
        .lines()
        .find(|l| l.contains("backed up flappyjournal: "))
        .unwrap_or_else(|| panic!("no backup line:\n{}", run.stdout));
    let after = line.split("backed up flappyjournal: ").nth(1).unwrap();
    after.split(" (").next().unwrap().to_string()
}

#[test]
fn a_build_that_never_gets_healthy_stops_before_promotion() {
    let Some(_turn) = turn() else { return };
    let stack = Stack::running("unhealthy");
    let workspace = env!("CARGO_MANIFEST_DIR");
    let build = format!(
        r#"fn main() {{
            docker::build("{workspace}/deploy/demo-service/image", "cutover-demo:broken",
                #{{args: #{{UNHEALTHY: "1"}},
                   files: #{{"demo-service": "{workspace}/target/demo/x86_64-unknown-linux-gnu/release/demo-service"}}}});
        }}"#
    );
    stack
        .cutover(&["run", "build-broken.rhai"])
        .file("build-broken.rhai", &build)
        .success();
    let started = Instant::now();
    stack
        .cutover(&["deploy", "blue-only"])
        .env("GREEN_TAG", "broken")
        .env("TIMEOUT", "5")
        .stderr_contains("health::wait: ")
        .stderr_contains("green-api-gateway#1: running, ")
        .stderr_lacks("no answer within 1 ms")
        .stderr_contains("This run made")
        .stderr_lacks("caddy::switch production")
        .status(1);
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_serving(&stack, "blue", "v1");
    assert_eq!(finished_runs(&stack, "deploy"), ["failed"]);
}

#[test]
fn rollback_refuses_an_unhealthy_standby_unless_forced_and_says_what_it_did() {
    let Some(_turn) = turn() else { return };
    let stack = Stack::running("rollback");
    stack.docker(&["stop", &stack.container("green-auth-service")]);
    stack
        .cutover(&["rollback", "--yes"])
        .stderr_contains(
            "refusing to roll back: the standby green is unhealthy (green-auth-service#1: ",
        )
        .stderr_contains("Production stays on blue.")
        .stderr_contains("This run changed nothing.")
        .status(1);
    assert_serving(&stack, "blue", "v1");
    stack
        .cutover(&["rollback"])
        .env("FORCE_ROLLBACK", "true")
        .stderr_contains("FORCE_ROLLBACK=true: switching production to green although it is unhealthy: green-auth-service#1")
        .stdout_contains("rolled back: production blue -> green (v2)")
        .success();
    assert_serving(&stack, "green", "v2");
}

#[test]
fn a_second_run_during_a_deploy_fails_naming_the_holder() {
    let Some(_turn) = turn() else { return };
    let stack = Stack::running("lock");
    let deploy = stack.cutover(&["deploy", "staging-only"]).spawn();
    let holder = wait_until_held(&stack.cutover(&[]));
    assert!(holder.contains("running `deploy staging-only`"), "{holder}");
    stack
        .cutover(&["rollback", "--yes"])
        .stderr_contains("another run holds the lock")
        .stderr_contains("running `deploy staging-only`")
        .status(1);
    deploy.finish(0, Instant::now());
    assert_serving(&stack, "blue", "v1");
}

#[test]
fn ctrl_c_mid_deploy_leaves_traffic_on_a_healthy_environment_and_says_what_changed() {
    let Some(_turn) = turn() else { return };
    let stack = Stack::running("interrupt");
    let deploy = stack.cutover(&["deploy"]).env("STAGING_TAG", "v2").spawn();
    wait_until_held(&stack.cutover(&[]));
    std::thread::sleep(Duration::from_millis(1500));
    deploy.signal(libc::SIGINT);
    let sent = Instant::now();
    let (stopped, lived) = deploy.finish(130, sent);
    assert!(lived < Duration::from_secs(2), "stopped after {lived:?}");
    assert!(
        stopped.stderr.contains("interrupted (Ctrl-C or SIGTERM)"),
        "{}",
        stopped.stderr
    );
    assert!(
        stopped.stderr.contains("This run made"),
        "{}",
        stopped.stderr
    );
    // Wherever it stopped, production is served by the environment recorded as active, healthy.
    let active = stack.active();
    let tag = if active == "blue" { "v1" } else { "v2" };
    assert_eq!(
        stack.version(),
        tag,
        "production does not serve {active}'s build"
    );
    stack.cutover(&["validate", &active]).success();
}

/// Prints where the production and blue routes send traffic (`caddy::upstreams`).
const UPSTREAMS: &str = r#"//! Prints the routes' upstreams.
//!
//! readonly
import "stack" as stack;
fn main() {
    stack::config();
    for route in ["production", "blue"] { print(`${route} -> ${caddy::upstreams(route)}`); }
}
"#;

/// The addresses `caddy::upstreams(route)` lists, in slot order.
fn upstreams(stack: &Stack, route: &str) -> Vec<String> {
    let run = stack
        .cutover(&["run", "upstreams.rhai"])
        .file("upstreams.rhai", UPSTREAMS)
        .success();
    let prefix = format!("{route} -> ");
    let line = run
        .stdout
        .lines()
        .find_map(|l| l.split_once(&prefix).map(|(_, list)| list.to_string()))
        .unwrap_or_else(|| panic!("no upstreams of {route}:\n{}", run.stdout));
    line.split('"')
        .filter(|part| part.contains(':'))
        .map(str::to_string)
        .collect()
}

/// The running replicas of `service`.
fn replicas(stack: &Stack, service: &str) -> usize {
    stack
        .docker(&[
            "ps",
            "--filter",
            &format!("label=com.docker.compose.project={}", stack.name),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
            "--format",
            "{{.Names}}",
        ])
        .lines()
        .count()
}

#[test]
fn scaling_the_gateway_to_3_and_back_under_load_drops_nothing() {
    let Some(_turn) = turn() else { return };
    let stack = Stack::running("scale");
    let config = support::stack::get(stack.ports.admin, "/config/");
    let load = load_on(&stack);
    std::thread::sleep(Duration::from_millis(500));
    stack
        .cutover(&["scale", "api-gateway", "3"])
        .stdout_contains("blue-api-gateway: 3 replicas")
        .success();
    assert_eq!(replicas(&stack, "blue-api-gateway"), 3);
    // Production and blue's own route both spread over the three replicas' ports.
    let mut expected: Vec<String> = (0..3)
        .map(|i| format!("127.0.0.1:{}", stack.ports.blue + i))
        .collect();
    for route in ["production", "blue"] {
        let mut listed = upstreams(&stack, route);
        listed.sort();
        expected.sort();
        assert_eq!(listed, expected, "{route}");
    }
    let slots: Vec<String> = std::iter::once("production".to_string())
        .chain((2..=10).map(|n| format!("production.{n}")))
        .map(|name| {
            let path = stack.path().join("deploy/caddy/upstreams").join(name);
            std::fs::read_to_string(path).unwrap().trim().to_string()
        })
        .collect();
    for address in &expected {
        assert!(
            slots.contains(address),
            "{address} is in no slot: {slots:?}"
        );
    }
    std::thread::sleep(Duration::from_secs(1));
    stack
        .cutover(&["scale", "api-gateway", "1"])
        .stdout_contains("blue-api-gateway: 1 replicas")
        .success();
    assert_eq!(replicas(&stack, "blue-api-gateway"), 1);
    assert_eq!(upstreams(&stack, "production").len(), 1);
    std::thread::sleep(Duration::from_millis(500));
    let report = load.stop();
    for group in ["browser", "never-retry GET", "never-retry POST"] {
        let seen = report.group(group);
        assert!(seen.requests > 100, "{}", report.describe());
        assert_eq!(seen.failures(), 0, "{}", report.describe());
    }
    // Caddy's config never changed: the replicas came and went by the slot files alone.
    assert_eq!(support::stack::get(stack.ports.admin, "/config/"), config);
    assert_eq!(stack.version(), "v1");
}

/// Everything a runbook could change: containers, the proxy's routes, state and settings files.
fn snapshot(stack: &Stack) -> String {
    let containers = stack.docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=com.docker.compose.project={}", stack.name),
        "--format",
        "{{.Names}} {{.ID}} {{.State}}",
    ]);
    let mut lines: Vec<&str> = containers.lines().collect();
    lines.sort();
    let mut text = lines.join("\n");
    text.push_str(&support::stack::get(stack.ports.admin, "/config/"));
    for file in [
        "deploy/.current-environment",
        "deploy/cutover-state.json",
        "deploy/.env.blue-green",
        "deploy/cutover-journal.jsonl",
    ] {
        text.push_str(&std::fs::read_to_string(stack.path().join(file)).unwrap_or_default());
    }
    for route in ["production", "blue", "green", "staging"] {
        for slot in 1..=10 {
            let name = match slot {
                1 => route.to_string(),
                n => format!("{route}.{n}"),
            };
            let path = stack.path().join("deploy/caddy/upstreams").join(name);
            text.push_str(&std::fs::read_to_string(path).unwrap_or_default());
        }
    }
    let backups = std::fs::read_dir(stack.path().join("deploy/backups"))
        .map(|d| d.count())
        .unwrap_or(0);
    text.push_str(&format!("backups: {backups}"));
    text
}

#[test]
fn dry_runs_show_the_plan_and_change_nothing() {
    let Some(_turn) = turn() else { return };
    let stack = Stack::running("dry");
    let backup = backup_path(&stack.cutover(&["backup"]).success());
    let before = snapshot(&stack);
    // Each runbook's plan as a dry run shows it (a healthy production needs no failover).
    for (args, plan) in [
        (vec!["deploy"], "would caddy::switch production"),
        (vec!["deploy", "staging-only"], "would compose::up"),
        (vec!["prepare", "green", "v3"], "would env::save"),
        (vec!["promote", "green"], "would caddy::switch production"),
        (vec!["rollback"], "would caddy::switch production"),
        (vec!["emergency-failover"], "no failover needed"),
        (vec!["backup"], "would pg::dump"),
        (vec!["restore-db", &backup], "would pg::restore"),
        (vec!["archive-logs"], "would append the logs"),
        (vec!["scale", "api-gateway", "2"], "would compose::up"),
        (vec!["teardown", "volumes"], "would compose::down"),
    ] {
        let mut dry = args.clone();
        dry.push("--dry-run");
        let run = stack.cutover(&dry).success();
        // The plan is in the log (`would …`) or, for a verdict, in what the runbook printed.
        let shown = format!("{}{}", run.stdout, run.stderr);
        assert!(
            shown.contains(plan),
            "{args:?} did not show {plan:?}:\n{shown}"
        );
        assert_eq!(snapshot(&stack), before, "{args:?} changed something");
    }
    stack
        .cutover(&["prepare", "green", "v3", "--dry-run"])
        .stderr_contains("would recreate container")
        .success();
}

/// A deploy stopped while its tests run through production (a stop `try`/`catch` cannot
/// catch): its deferred cleanup sends production back to the environment it came from, and the
/// journal records the cleanup like any change.
#[test]
fn a_deploy_stopped_during_its_production_tests_sends_production_back() {
    use std::io::{BufRead, BufReader, Read};
    let Some(_turn) = turn() else { return };
    let stack = Stack::running("deferred");
    let mut command = stack
        .cutover(&["deploy", "blue-only"])
        .env("TEST_COMMAND", "sleep 600")
        .command();
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // Stopped (by its pid) if an assertion fails before it ends.
    let mut deploy = support::KillOnDrop(command.spawn().unwrap());
    let mut stderr = BufReader::new(deploy.0.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("running the test suite: sleep 600") {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "ended early:\n{seen}"
        );
        seen.push_str(&line);
    }
    assert!(seen.contains("step 4: tests through production"), "{seen}");
    assert_eq!(stack.active(), "green");
    unsafe { libc::kill(deploy.0.id() as i32, libc::SIGINT) };
    stderr.read_to_string(&mut seen).unwrap();
    let status = deploy.0.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{seen}");
    assert!(
        seen.contains(
            "running cleanup `production back to blue unless the tests through production pass`"
        ) && seen.contains("sending production back to blue"),
        "{seen}"
    );
    assert_serving(&stack, "blue", "v1");
    let cleanup = stack
        .journal()
        .into_iter()
        .rfind(|e| e["event"] == "change")
        .unwrap();
    assert!(
        cleanup["message"]
            .as_str()
            .unwrap()
            .starts_with("cleanup `production back to blue"),
        "{cleanup}"
    );
    assert_eq!(cleanup["outcome"], "ok");
    assert_eq!(finished_runs(&stack, "deploy"), ["interrupted"]);
}
