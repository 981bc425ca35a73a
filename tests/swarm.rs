//! Beyond one host (issue 16): the runbooks drive a Docker Swarm of several machines. Each test
//! builds a real swarm of its own (`support::swarm`: a network namespace and a Docker Engine per
//! node, one manager and two workers) and tears it down when it ends, pass or fail. A swarm
//! takes a while to build and the swarms are made one at a time, so each test walks a user
//! through several runbooks on one swarm rather than one runbook a swarm.

use std::{process::Command, time::Duration};

use crate::{
    support::{self, Service, stack::Stack, swarm::Swarm},
    test::Ran,
};

/// A demo stack whose environments run on a swarm of its own (one manager, two workers):
/// `CUTOVER_ORCHESTRATOR=swarm`, the manager as `CUTOVER_SWARM_HOST`; the proxy and the
/// database stay on this machine. The stack is torn down before the swarm (field order).
struct SwarmStack {
    stack: Stack,
    swarm: Swarm,
}

/// The swarm stack, or `None` when a service it needs is missing; with the stack tests' turn.
fn swarm_stack(prefix: &str) -> Option<(std::sync::MutexGuard<'static, ()>, SwarmStack)> {
    if !support::require(Service::Swarm) {
        return None;
    }
    let turn = crate::stack::turn()?;
    support::stack::images();
    let swarm = Swarm::start(2, &["cutover-demo:v1", "cutover-demo:v2"]);
    let stack = Stack::new(prefix);
    swarm.drive(&stack);
    Some((turn, SwarmStack { stack, swarm }))
}

impl SwarmStack {
    /// `docker service ps` of `env`'s gateway service on the manager, each task as `format`,
    /// one a line: every task it ever had (a replaced one stays, shut down) unless `filters`
    /// (`--filter` values) say otherwise.
    fn gateway_ps(&self, env: &str, filters: &[&str], format: &str) -> String {
        let service = format!("{}_{env}-api-gateway", self.stack.name);
        let mut args = vec!["service", "ps", &service, "--format", format];
        for filter in filters {
            args.extend(["--filter", filter]);
        }
        self.swarm.docker(0, &args)
    }

    /// The nodes `env`'s gateway tasks run on, sorted.
    fn gateway_nodes(&self, env: &str) -> Vec<String> {
        let out = self.gateway_ps(env, &["desired-state=running"], "{{.Node}}");
        let mut nodes: Vec<String> = out.lines().map(str::to_string).collect();
        nodes.sort();
        nodes
    }

    /// Node `name`'s availability as Swarm says it: `active`, `pause` or `drain`.
    fn node_availability(&self, name: &str) -> String {
        self.swarm.docker(
            0,
            &[
                "node",
                "inspect",
                name,
                "--format",
                "{{.Spec.Availability}}",
            ],
        )
    }
}

fn assert_no_failures(report: &crate::support::load::Report) {
    for group in ["browser", "never-retry GET", "never-retry POST"] {
        let seen = report.group(group);
        assert!(seen.requests > 50, "{}", report.describe());
        assert_eq!(seen.failures(), 0, "{}", report.describe());
    }
}

/// Each environment's one look at its health (`bluegreen::health`), a check a line:
/// `ENV NAME | OK | DETAIL`.
const HEALTH: &str = r#"//! Prints each environment's health checks.
//!
//! readonly
import "stack" as stack;
import "bluegreen" as bg;
fn main() {
    let cfg = stack::config();
    let project = stack::project(cfg);
    for env in ["blue", "green"] {
        for r in bg::health(cfg, project, env).results { print(`${env} ${r.name} | ${r.ok} | ${r.detail}`); }
    }
}
"#;

/// The lines of `HEALTH` as the stack's environments are now.
fn health_lines(stack: &Stack) -> String {
    stack
        .cutover(&["run", "health.rhai"])
        .file("health.rhai", HEALTH)
        .success()
        .stdout
}

/// `health::task(id)` of the swarm task `id`, as `NAME | OK | DETAIL` (the stack's settings,
/// which `stack::config()` reads, name the manager).
fn task_health(stack: &Stack, id: &str) -> String {
    let script = format!(
        "//! One task's health.\n//!\n//! readonly\nimport \"stack\" as stack;\nfn main() {{\n    stack::config();\n    let r = health::task(\"{id}\");\n    print(`${{r.name}} | ${{r.ok}} | ${{r.detail}}`);\n}}\n"
    );
    stack
        .cutover(&["run", "task.rhai"])
        .file("task.rhai", &script)
        .success()
        .stdout
        .trim()
        .to_string()
}

/// Deploy, promote, roll back and then a canary with the gateway's replicas on every node, load
/// running through every switch: no request fails, whether the client retries like a browser or
/// never; each switch is said once. `status` shows each task's node and the nodes table, and
/// `status --json` has the same rows as on one host, with each task's node. Then the runbooks
/// of the database and the logs: `backup` and `restore-db` bring the data back with production
/// serving throughout, and `archive-logs` archives the swarm services' logs (through the
/// manager) beside this host's containers'. Keys Swarm ignores are warned about with their line.
/// Last, a canary of a build that fails a fifth of its requests, on the standby's three nodes:
/// each task judged healthy by its task check, then the canary aborted at its first step by the
/// error gate, production back on its baseline, the journal saying why, and no more requests
/// failed under load than the one-host test allows.
#[test]
fn deploy_promote_rollback_and_a_canary_on_a_three_node_swarm_fail_no_request() {
    let Some((_turn, s)) = swarm_stack("swarm-life") else {
        return;
    };
    let stack = &s.stack;
    stack
        .cutover(&["prepare", "blue", "v1"])
        .stderr_contains("created swarm service")
        .stderr_contains("docker-compose.blue-green.yml:")
        .stderr_contains("depends_on: Swarm ignores it")
        .success();
    stack
        .cutover(&["scale", "blue-api-gateway", "3"])
        .stdout_contains("blue-api-gateway: 3 replicas")
        .success();
    assert_eq!(s.gateway_nodes("blue"), ["manager", "worker-1", "worker-2"]);
    stack
        .cutover(&["promote", "blue"])
        .stdout_contains("production: none -> blue (v1)")
        .success();
    assert_eq!(stack.version(), "v1");

    let load = stack.load(Duration::from_secs(300));
    std::thread::sleep(Duration::from_millis(500));
    stack.cutover(&["prepare", "green", "v2"]).success();
    stack
        .cutover(&["scale", "green-api-gateway", "3"])
        .success();
    assert_eq!(
        s.gateway_nodes("green"),
        ["manager", "worker-1", "worker-2"]
    );
    let promoted = stack
        .cutover(&["promote", "green"])
        .stdout_contains("production: blue -> green (v2)")
        .success();
    assert_eq!(
        promoted.stderr.matches("caddy::switch production").count(),
        1,
        "{}",
        promoted.stderr
    );
    assert_eq!(
        (stack.active().as_str(), stack.version().as_str()),
        ("green", "v2")
    );
    stack
        .cutover(&["rollback", "--yes"])
        .stdout_contains("rolled back: production green -> blue (v1)")
        .success();
    assert_eq!(
        (stack.active().as_str(), stack.version().as_str()),
        ("blue", "v1")
    );
    // A canary of green across the three nodes: short steps, judged from the proxy's log.
    stack
        .cutover(&["canary", "green"])
        .env("CANARY_INTERVAL", "2")
        .env("CANARY_MIN_REQUESTS", "20")
        .env("CANARY_STEPS", "10,50,100")
        // A swarm of three engines on two cores: one request held up moves a small step's
        // p99, so the latency gate is set out of noise's reach (tests/canary.rs tests it).
        .env("CANARY_MAX_P99_MS", "5000")
        .stderr_contains("canary step 1/3: 10 % of production on green")
        .stderr_contains("step 1 (10 %) passed")
        .stderr_contains("canary step 3/3: 100 % of production on green")
        .stdout_contains("production: blue -> green (v2) after a canary")
        .success();
    assert_eq!(
        (stack.active().as_str(), stack.version().as_str()),
        ("green", "v2")
    );
    std::thread::sleep(Duration::from_millis(500));
    let report = load.stop();
    eprintln!(
        "promote, rollback and a canary under load: {}",
        report.describe()
    );
    assert_no_failures(&report);

    let status = stack.cutover(&["status"]).success();
    for expected in [
        "NODE",
        "green-api-gateway#3",
        "ACTIVE since",
        "standby",
        "AVAILABILITY",
        "manager (leader)",
        "worker-2",
        "this host",
    ] {
        assert!(
            status.stdout.contains(expected),
            "no {expected:?} in:\n{}",
            status.stdout
        );
    }
    assert_eq!(
        status.stdout.matches("AVAILABILITY").count(),
        1,
        "{}",
        status.stdout
    );
    // Production dials every node the active colour runs on, on the node's own address.
    for node in &s.swarm.nodes {
        assert!(
            status
                .stdout
                .contains(&format!("{}:{}", node.addr, stack.ports.green)),
            "production does not dial {}:\n{}",
            node.name,
            status.stdout
        );
    }
    // For scripts: the rows of one host's `status --json`, each task with its node.
    let json = stack.cutover(&["status", "--json"]).success();
    let report: serde_json::Value = serde_json::from_str(json.stdout.trim()).unwrap();
    assert_eq!(report["production"]["serving"], "green", "{report:#}");
    let rows = report["containers"].as_array().unwrap();
    let gateways: Vec<&serde_json::Value> = rows
        .iter()
        .filter(|r| {
            r["env"] == "green"
                && r["service"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("green-api-gateway#"))
        })
        .collect();
    assert_eq!(gateways.len(), 3, "{report:#}");
    let mut nodes: Vec<&str> = gateways
        .iter()
        .map(|r| r["node"].as_str().unwrap())
        .collect();
    nodes.sort();
    assert_eq!(nodes, ["manager", "worker-1", "worker-2"], "{report:#}");
    for row in &gateways {
        for key in ["name", "tag", "state", "health", "traffic", "node_state"] {
            assert!(row.get(key).is_some(), "no {key} in {row:#}");
        }
        assert_eq!(row["state"], "running", "{row:#}");
        assert!(
            row["traffic"].as_str().unwrap().starts_with("ACTIVE since"),
            "{row:#}"
        );
    }
    assert!(
        rows.iter()
            .any(|r| r["env"] == "shared" && r["service"] == "postgres"),
        "{report:#}"
    );
    assert_eq!(
        report["nodes"].as_array().map(Vec::len),
        Some(3),
        "{report:#}"
    );

    // The database stays on this host: backed up, damaged, restored, with production served
    // throughout (the environments' tasks keep running on the swarm).
    stack.psql(
        "CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes VALUES (1, 'kept')",
    );
    let backup = stack.cutover(&["backup"]).success();
    let line = backup
        .stdout
        .lines()
        .find(|l| l.contains("backed up flappyjournal: "))
        .unwrap_or_else(|| panic!("no backup line:\n{}", backup.stdout));
    let path = line
        .split("backed up flappyjournal: ")
        .nth(1)
        .and_then(|rest| rest.split(" (").next())
        .unwrap()
        .to_string();
    stack.psql("UPDATE notes SET body = 'corrupted'; INSERT INTO notes VALUES (2, 'junk')");
    let ever = s.gateway_ps("green", &[], "{{.ID}}");
    let load = stack.load(Duration::from_secs(120));
    std::thread::sleep(Duration::from_millis(500));
    stack
        .cutover(&["restore-db", &path, "--yes"])
        .stderr_contains("they keep running, and their database sessions end for the swap")
        .stdout_contains("restored flappyjournal")
        .success();
    std::thread::sleep(Duration::from_millis(500));
    let report = load.stop();
    eprintln!("restore-db under load: {}", report.describe());
    assert_no_failures(&report);
    assert_eq!(
        stack.psql("SELECT string_agg(id || ':' || body, ',') FROM notes"),
        "1:kept"
    );
    assert_eq!(stack.version(), "v2");
    let after = s.gateway_ps("green", &[], "{{.ID}}");
    assert_eq!(after, ever, "a task of production was replaced");

    // The logs: every swarm service's, through the manager, and this host's containers'.
    let archived = stack
        .cutover(&["archive-logs"])
        .stdout_contains("swarm services into deploy/logs/archive-")
        .success();
    let (file, text) = archive_named(stack, &archived.stdout);
    for (service, version) in [("green-api-gateway", "v2"), ("blue-auth-service", "v1")] {
        let wanted = format!("{}_{service} | ", stack.name);
        let line = text
            .lines()
            .find(|l| l.starts_with(&wanted) && l.contains(&format!("{version} listening on")));
        assert!(line.is_some(), "no line of {service} in {file}:\n{text}");
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with(&stack.container("postgres"))),
        "no line of postgres in {file}:\n{text}"
    );

    // Every task of both colours judged by its own task check: running on a ready node.
    let health = health_lines(stack);
    for n in 1..=3 {
        for env in ["blue", "green"] {
            let wanted = format!("{env} {env}-api-gateway#{n} | true | running on ");
            assert!(health.contains(&wanted), "no {wanted:?} in:\n{health}");
        }
    }
    assert!(!health.contains("| false |"), "{health}");

    // A canary of a build that answers 20 % of its requests with 500, on blue's three nodes:
    // aborted at its first step, production back on green, under load.
    s.swarm.load_image("cutover-demo:v2-errors");
    let load = stack.load(Duration::from_secs(300));
    std::thread::sleep(Duration::from_millis(500));
    let started = load.now();
    stack
        .cutover(&["canary", "blue", "v2-errors"])
        .env("CANARY_INTERVAL", "2")
        .env("CANARY_MIN_REQUESTS", "20")
        .env("CANARY_STEPS", "10,50,100")
        .env("CANARY_MAX_P99_MS", "5000")
        .stderr_contains("blue is healthy:")
        .stderr_contains("canary step 1/3: 10 % of production on blue")
        .stderr_contains("canary aborted at 10 %: 5xx ")
        .stderr_contains("baseline 5xx 0.0 % (0 of ")
        .stderr_contains("traffic back on green")
        .stderr_lacks("running cleanup")
        .status(1);
    let elapsed = load.now() - started;
    std::thread::sleep(Duration::from_millis(500));
    let report = load.stop();
    eprintln!(
        "a canary of v2-errors aborted under load ({elapsed:?}): {}",
        report.describe()
    );
    assert_eq!(
        (stack.active().as_str(), stack.version().as_str()),
        ("green", "v2")
    );
    for _ in 0..20 {
        assert_eq!(stack.version(), "v2");
    }
    let canary = stack
        .journal()
        .into_iter()
        .filter(|e| e["kind"] == "canary" && e["event"] == "record")
        .map(|e| e["message"].as_str().unwrap_or("").to_string())
        .next_back();
    assert!(
        canary
            .as_deref()
            .is_some_and(|m| m.starts_with("canary aborted at 10 %: 5xx ")),
        "{canary:?}"
    );
    // The one-host test's bound: no more failed requests than the canary's share (10 %) of one
    // interval's requests (2 s), plus the second the switch back may take.
    let failed = report.failures();
    let bound = (0.10 * report.rate() * 3.0).ceil() as u64;
    assert!(
        failed > 0 && failed <= bound,
        "{failed} failed, bound {bound}:\n{}",
        report.describe()
    );
}

/// The swarm's nodes, then an incident's runbooks on them, each as a user meets it:
/// - `swarm nodes` lists the three machines by hostname, the manager leading;
/// - a colour whose tasks no node can take (a placement constraint none meets) is refused as
///   unhealthy, with Swarm's reason, and production stays where it was;
/// - draining a node is refused, changing nothing, while it holds an environment's only
///   gateway task; with a second replica elsewhere, drained under load: its tasks move to the
///   other nodes, healthy and routed, no request fails (browser-like or never-retry), and no
///   task of the stack is left on it;
/// - `emergency-failover` finds production healthy and leaves it, then, once production's
///   gateway service has no task left, moves production to the standby on the swarm.
///
/// Dropped, the swarm leaves no namespace, engine, mount or directory behind.
#[test]
fn a_swarm_incident_placement_drain_and_failover_leave_production_served() {
    let Some((turn, s)) = swarm_stack("swarm-nodes") else {
        return;
    };
    let stack = &s.stack;
    let listed = stack.cutover(&["swarm", "nodes"]).success();
    let mut rows: Vec<String> = listed
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        ["manager manager", "worker-1 worker", "worker-2 worker"],
        "{}",
        listed.stdout
    );
    assert!(
        listed.stdout.contains("manager (leader)"),
        "{}",
        listed.stdout
    );
    stack.cutover(&["prepare", "blue", "v1"]).success();
    stack.cutover(&["promote", "blue"]).success();

    // Green pinned to a zone no node is in: refused by prepare and promote, blue serving on.
    let compose = stack.path().join("deploy/docker-compose.blue-green.yml");
    let shipped = std::fs::read_to_string(&compose).unwrap();
    let green = shipped.find("  green-api-gateway:").unwrap();
    let at = green
        + shipped[green..]
            .find("    deploy: *api-gateway-limits")
            .unwrap();
    let constrained = format!(
        "{}    deploy:\n      resources: {{ limits: {{ memory: 512M }} }}\n      placement: {{ constraints: [\"node.labels.zone == mars\"] }}{}",
        &shipped[..at],
        &shipped[at + "    deploy: *api-gateway-limits".len()..]
    );
    std::fs::write(&compose, constrained).unwrap();
    stack
        .cutover(&["prepare", "green", "v2"])
        .stderr_contains("green is not healthy on the swarm")
        .stderr_contains("cannot be placed")
        .stderr_contains("no suitable node")
        .status(1);
    // The refusal names the pending task by its own check, and so does a look at green's
    // health, beside blue's tasks, running on ready nodes.
    stack
        .cutover(&["promote", "green"])
        .stderr_contains("no suitable node")
        .stderr_contains(
            "Its tasks: green-api-gateway#1: pending on no node yet (no suitable node (scheduling constraints not satisfied",
        )
        .status(1);
    assert_eq!(
        (stack.active().as_str(), stack.version().as_str()),
        ("blue", "v1")
    );
    let health = health_lines(stack);
    for wanted in [
        "green green-api-gateway#1 | false | pending on no node yet (no suitable node",
        "blue blue-api-gateway#1 | true | running on ",
    ] {
        assert!(health.contains(wanted), "no {wanted:?} in:\n{health}");
    }
    assert!(
        !health
            .lines()
            .any(|l| l.starts_with("blue ") && l.contains("| false |")),
        "{health}"
    );
    std::fs::write(&compose, &shipped).unwrap();

    let nodes = s.gateway_nodes("blue");
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    stack
        .cutover(&["swarm", "drain", &nodes[0]])
        .stderr_contains(&format!(
            "draining {} would leave blue with no gateway task",
            nodes[0]
        ))
        .stderr_contains("Nothing was changed")
        .status(1);
    stack
        .cutover(&["swarm", "drain", "no-such-node"])
        .stderr_contains(
            "no node no-such-node in the swarm: its nodes are manager, worker-1, worker-2",
        )
        .status(1);
    assert_eq!(s.node_availability(&nodes[0]), "active");
    assert_eq!(s.gateway_nodes("blue"), nodes);

    // Scaled and drained under load: the new replica joins the routes once healthy, the first
    // keeps running (scaling replaces no task), and the drained node's tasks move.
    let load = stack.load(Duration::from_secs(300));
    std::thread::sleep(Duration::from_millis(500));
    stack.cutover(&["scale", "blue-api-gateway", "2"]).success();
    let before = s.gateway_nodes("blue");
    assert_eq!(before.len(), 2, "{before:?}");
    assert!(before.contains(&nodes[0]), "{before:?}");
    let gateway = format!("{}_blue-api-gateway", stack.name);
    let ever = s.gateway_ps("blue", &[], "{{.ID}}");
    assert_eq!(ever.lines().count(), 2, "a task was replaced:\n{ever}");
    let drained = before.iter().find(|n| **n != nodes[0]).unwrap().clone();
    stack
        .cutover(&["swarm", "drain", &drained])
        .stdout_contains(&format!("node {drained} is drained"))
        .success();
    std::thread::sleep(Duration::from_millis(500));
    let report = load.stop();
    eprintln!("scaled and drained under load: {}", report.describe());
    assert_no_failures(&report);
    assert_eq!(s.node_availability(&drained), "drain");
    let after = s.gateway_nodes("blue");
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(!after.contains(&drained), "{after:?}");
    let left = s.swarm.docker(
        0,
        &[
            "node",
            "ps",
            &drained,
            "--filter",
            "desired-state=running",
            "--format",
            "{{.Name}}",
        ],
    );
    assert_eq!(left, "", "tasks left on {drained}");
    assert_eq!(stack.version(), "v1");
    stack
        .cutover(&["swarm", "nodes"])
        .stdout_contains("drain")
        .stdout_contains("blue-api-gateway#1")
        .success();

    // Emergency failover: nothing to do while production is healthy; once production's
    // gateway has no task left (scaled to 0 behind cutover's back), production goes to the
    // standby, green, on the two nodes left.
    stack.cutover(&["prepare", "green", "v2"]).success();
    stack
        .cutover(&["emergency-failover"])
        .stdout_contains("production (blue, v1) is healthy: no failover needed")
        .success();
    s.swarm
        .docker(0, &["service", "scale", "-d", &format!("{gateway}=0")]);
    support::wait_for(
        Duration::from_secs(60),
        Duration::from_millis(250),
        || "production still answers with blue's gateway scaled to 0".to_string(),
        || (stack.version() != "v1").then_some(()),
    );
    stack
        .cutover(&["emergency-failover"])
        .stderr_contains("production (blue) is down")
        .stdout_contains("failed over: production blue -> green (v2)")
        .success();
    assert_eq!(
        (stack.active().as_str(), stack.version().as_str()),
        ("green", "v2")
    );
    assert!(!s.gateway_nodes("green").contains(&drained));

    // Torn down (the stack first, then the swarm), nothing of the swarm is left.
    let SwarmStack { stack, swarm } = s;
    drop(stack);
    let netns: Vec<String> = swarm
        .nodes
        .iter()
        .map(|n| n.netns_name().to_string())
        .collect();
    let pids: Vec<u32> = swarm.nodes.iter().filter_map(|n| n.pid()).collect();
    let dir = swarm.path().to_path_buf();
    drop(swarm);
    drop(turn);
    let listed = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    for name in &netns {
        assert!(
            !listed.contains(name.as_str()),
            "{name} is still there:\n{listed}"
        );
    }
    for pid in pids {
        assert!(
            support::swarm::wait_gone(pid, Duration::from_secs(10)),
            "engine {pid} still runs: {}",
            std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default()
        );
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(dir.to_str().unwrap()),
        "mounts left under {}",
        dir.display()
    );
    assert!(!dir.exists(), "{} is still there", dir.display());
}

/// Waits until `cutover status` shows node `name` down with Swarm's reason in its row of the
/// nodes table, and returns what the status printed (stdout, then stderr).
fn wait_until_lost(stack: &Stack, name: &str) -> String {
    support::wait_for(
        Duration::from_secs(60),
        Duration::from_millis(500),
        || format!("the manager never saw {name} go down"),
        || {
            let ran = stack.cutover(&["status"]).run(&[]);
            let row = ran
                .stdout
                .lines()
                .find(|l| l.starts_with(name) && l.contains("down (heartbeat failure)"));
            (ran.code == Some(0) && row.is_some()).then(|| format!("{}{}", ran.stdout, ran.stderr))
        },
    )
}

/// The archive `archive-logs` says it wrote (`… into FILE`): its path and its text.
fn archive_named(stack: &Stack, stdout: &str) -> (String, String) {
    let file = stdout
        .split(" into ")
        .nth(1)
        .map(str::trim)
        .unwrap_or_else(|| panic!("{stdout}"))
        .to_string();
    let text = std::fs::read_to_string(stack.path().join(&file)).unwrap();
    (file, text)
}

/// The line of `cutover status` that says where production traffic goes.
fn production_line(stack: &Stack) -> String {
    let status = stack.cutover(&["status"]).success();
    status
        .stdout
        .lines()
        .find(|l| l.starts_with("production traffic"))
        .unwrap_or_else(|| panic!("{}", status.stdout))
        .to_string()
}

/// Machines lost, as a user meets them, load running throughout:
/// - a worker's engine killed (SIGKILL) while production is served from every node: production
///   keeps answering (a dead engine leaves its containers serving), `status` names the node
///   `down (heartbeat failure)` and warns that production still dials it, and
///   `emergency-failover` points production at its colour's tasks on the nodes left;
/// - a promote once Swarm has marked that node down: it says so, waits for Swarm to run the
///   standby's lost replica on a node left, and routes to the tasks on ready nodes only;
/// - the other worker's engine killed once a promote has begun: the promote either completes or
///   stops with production where it was (the proxy and the record agreeing);
/// - a promote with both workers down, the standby's replica having no node left to run on: it
///   waits out `TIMEOUT`, then stops naming the lost nodes, production untouched; and
///   `archive-logs` archives what the manager reaches, naming the nodes it cannot, and ends.
///
/// The failed requests across all of it are counted and bounded (the README's figure).
#[test]
fn lost_machines_before_and_during_promotes_leave_production_answering() {
    let Some((_turn, mut s)) = swarm_stack("swarm-kill") else {
        return;
    };
    s.stack.cutover(&["prepare", "blue", "v1"]).success();
    s.stack
        .cutover(&["scale", "blue-api-gateway", "3"])
        .success();
    s.stack.cutover(&["promote", "blue"]).success();
    s.stack.cutover(&["prepare", "green", "v2"]).success();
    s.stack
        .cutover(&["scale", "green-api-gateway", "2"])
        .success();
    let green = s.gateway_nodes("green");
    assert_eq!(green.len(), 2, "{green:?}");
    // The worker whose engine goes first runs one of green's two gateway tasks.
    let first = green
        .iter()
        .rev()
        .find(|n| n.starts_with("worker-"))
        .unwrap()
        .clone();
    let second = if first == "worker-1" {
        "worker-2"
    } else {
        "worker-1"
    }
    .to_string();
    let lost_addr = s.swarm.node(&first).addr.clone();
    // Green's task there, by its task check: healthy now, not once its node is lost.
    let service = format!("{}_green-api-gateway", s.stack.name);
    let filter = format!("node={first}");
    let task = s.swarm.docker(
        0,
        &[
            "service",
            "ps",
            &service,
            "--no-trunc",
            "--filter",
            "desired-state=running",
            "--filter",
            &filter,
            "--format",
            "{{.ID}}",
        ],
    );
    assert_eq!(task.lines().count(), 1, "{task}");
    let seen = task_health(&s.stack, &task);
    assert_eq!(
        seen,
        format!("task {task} | true | running on {first}, node ready")
    );
    let load = s.stack.load(Duration::from_secs(400));
    std::thread::sleep(Duration::from_millis(500));
    s.swarm.kill_engine(&first);
    let status = wait_until_lost(&s.stack, &first);
    let seen = task_health(&s.stack, &task);
    assert!(
        seen.starts_with(&format!("task {task} | false | "))
            && seen.contains(&format!(
                " on {first}, node {first} is down (heartbeat failure)"
            )),
        "{seen}"
    );
    assert!(
        status.contains(&format!(
            "WARNING: production dials node {first}, which is down ({lost_addr}:{}",
            s.stack.ports.blue
        )),
        "{status}"
    );
    assert_eq!(s.stack.version(), "v1");
    let served = load.now();
    // The incident's runbook: production keeps its colour, on its tasks on the nodes left.
    s.stack
        .cutover(&["emergency-failover"])
        .stdout_contains(&format!(
            "production (blue, v1) dialled node {first}, which is down: pointed production at blue's tasks on the nodes left"
        ))
        .success();
    assert_eq!(
        (s.stack.active().as_str(), s.stack.version().as_str()),
        ("blue", "v1")
    );
    let line = production_line(&s.stack);
    assert!(!line.contains(&format!("{lost_addr}:")), "{line}");

    // Swarm has marked it down: the promote names it, waits for green's lost replica to run on
    // a node left, and routes to green's tasks on ready nodes.
    let promoted = s
        .stack
        .cutover(&["promote", "green"])
        .stderr_contains(&format!("node {first} is down (heartbeat failure)"))
        .stdout_contains("production: blue -> green (v2)")
        .success();
    eprintln!("promoted with {first} down:\n{}", promoted.stderr);
    assert_eq!(
        (s.stack.active().as_str(), s.stack.version().as_str()),
        ("green", "v2")
    );
    let now = s.gateway_nodes("green");
    assert_eq!(now.len(), 2, "{now:?}");
    assert!(!now.contains(&first), "{now:?}");
    let line = production_line(&s.stack);
    assert!(!line.contains(&format!("{lost_addr}:")), "{line}");
    for node in &now {
        let addr = &s.swarm.node(node).addr;
        assert!(
            line.contains(&format!("{addr}:{}", s.stack.ports.green)),
            "{line}"
        );
    }

    // Blue back to two replicas (its third has no node left to run on), then the other
    // worker's engine killed once a promote of blue has begun.
    s.stack
        .cutover(&["scale", "blue-api-gateway", "2"])
        .success();
    s.stack.set("TIMEOUT", "15");
    let mut promote = s.stack.cutover(&["promote", "blue"]).start(&[]);
    let stderr = promote.stderr.take().unwrap();
    let (began, first_line) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut text = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if text.is_empty() {
                let _ = began.send(line.clone());
            }
            text += &line;
            text.push('\n');
        }
        text
    });
    let began = first_line.recv_timeout(Duration::from_secs(30));
    s.swarm.kill_engine(&second);
    let promoted = Ran::of(promote);
    let stderr = reader.join().unwrap();
    eprintln!(
        "{second}'s engine killed at {:?}; the promote ended with {:?}:\n{}{stderr}",
        began.unwrap_or_default(),
        promoted.code,
        promoted.stdout
    );
    let stack = &s.stack;
    let (serving, standby) = if promoted.code == Some(0) {
        assert!(
            promoted.stdout.contains("production: green -> blue (v1)"),
            "{}",
            promoted.stdout
        );
        assert_eq!(
            (stack.active(), stack.version()),
            ("blue".into(), "v1".into())
        );
        ("blue", "green")
    } else {
        assert_eq!(promoted.code, Some(1), "{stderr}");
        assert_eq!(
            (stack.active(), stack.version()),
            ("green".into(), "v2".into())
        );
        ("green", "blue")
    };
    let status = wait_until_lost(stack, &second);
    assert!(!status.contains("DISAGREE"), "{status}");

    // Both workers down: the standby's replica there has nowhere to go (the manager runs its
    // other one, one gateway task a node), so the promote waits out TIMEOUT and stops.
    let version = stack.version();
    let refused = stack
        .cutover(&["promote", standby])
        .stderr_contains(&format!(
            "{standby} is not healthy on the swarm: not converged within 15 s"
        ))
        .stderr_contains(&format!("node {first} is down (heartbeat failure)"))
        .stderr_contains(&format!("node {second} is down (heartbeat failure)"))
        .stderr_lacks("caddy::switch production")
        .status(1);
    // The replica with no node left, named by its task check.
    let pending = ": pending on no node yet (no suitable node";
    assert!(
        refused.stderr.lines().any(|l| {
            l.split("Its tasks: ").nth(1).is_some_and(|tasks| {
                tasks.split("; ").any(|t| {
                    t.starts_with(&format!("{standby}-api-gateway#")) && t.contains(pending)
                })
            })
        }),
        "{}",
        refused.stderr
    );
    assert_eq!(
        (stack.active().as_str(), stack.version()),
        (serving, version)
    );

    // The logs with both workers down: archived from what the manager reaches (its own tasks'),
    // the nodes it cannot reach named in a warning (not written as lines of the archive), and
    // the run ends (`--timeout` only turns a hang into a failure).
    let archived = stack
        .cutover(&["--timeout", "120", "archive-logs"])
        .stdout_contains("swarm services into deploy/logs/archive-")
        .stderr_contains("some logs could not be retrieved")
        .stderr_contains(&format!("node {second} is not available"))
        .success();
    let (file, text) = archive_named(stack, &archived.stdout);
    assert!(!text.contains("Error grabbing logs"), "{file}:\n{text}");
    let wanted = format!("{}_blue-api-gateway | ", stack.name);
    assert!(
        text.lines()
            .any(|l| l.starts_with(&wanted) && l.contains("v1 listening on")),
        "no line of blue-api-gateway in {file}"
    );
    let report = load.stop();
    eprintln!(
        "{first}'s engine killed while serving ({} s of serving before it), {second}'s during a promote: {}",
        served.as_secs(),
        report.describe()
    );
    for group in ["browser", "never-retry GET", "never-retry POST"] {
        let seen = report.group(group);
        assert!(seen.requests > 50, "{}", report.describe());
        assert!(seen.failures() <= 2, "{}", report.describe());
    }
}
