//! Beyond one host (issue 16): the runbooks drive a Docker Swarm of several machines. Each test
//! builds a real swarm of its own (`support::swarm`: a network namespace and a Docker Engine per
//! node, one manager and two workers) and tears it down when it ends, pass or fail.

use std::{process::Command, time::Duration};

use crate::{
    support::{self, Service, stack::Stack, swarm::Swarm},
    test::Ran,
};

/// The fixture itself: three engines, one swarm, distinct hostnames, and a `dnsrr` service
/// publishing its port in `mode: host` answers on every node's own address from this machine
/// (what the proxy dials); dropped, it leaves no namespace, process, mount or directory.
#[test]
fn a_test_swarm_has_three_nodes_reached_on_their_own_addresses_and_leaves_nothing() {
    if !support::require(Service::Swarm) || !support::require(Service::Docker) {
        return;
    }
    let image = support::docker::demo_image();
    let swarm = Swarm::start(2, &[&image]);
    let names = swarm.docker(0, &["node", "ls", "--format", "{{.Hostname}} {{.Status}}"]);
    let mut lines: Vec<&str> = names.lines().collect();
    lines.sort();
    assert_eq!(lines, ["manager Ready", "worker-1 Ready", "worker-2 Ready"]);
    swarm.docker(
        0,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "probe",
            "--mode",
            "global",
            "--endpoint-mode",
            "dnsrr",
            "--publish",
            "mode=host,target=4000,published=4999",
            "-e",
            "PORT=4000",
            "-e",
            "VERSION=probe-1",
            "--no-resolve-image",
            &image,
        ],
    );
    for node in &swarm.nodes {
        let addr = format!("{}:4999", node.addr);
        support::wait_for(
            Duration::from_secs(60),
            Duration::from_millis(200),
            || {
                format!(
                    "nothing answered on {addr} ({})\n{}",
                    node.name,
                    swarm.describe()
                )
            },
            || (get(&addr, "/version") == "probe-1").then_some(()),
        );
    }
    let netns: Vec<String> = swarm
        .nodes
        .iter()
        .map(|n| n.netns_name().to_string())
        .collect();
    let pids: Vec<u32> = swarm.nodes.iter().filter_map(|n| n.pid()).collect();
    let dir = swarm.path().to_path_buf();
    drop(swarm);
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
            support::swarm::wait_gone(pid, std::time::Duration::from_secs(10)),
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

/// `GET path` on `addr` (`IP:PORT`), the body (empty on any failure).
pub fn get(addr: &str, path: &str) -> String {
    support::stack::get_from(addr, addr, path)
}

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
    /// The nodes `env`'s gateway tasks run on, sorted.
    fn gateway_nodes(&self, env: &str) -> Vec<String> {
        let service = format!("{}_{env}-api-gateway", self.stack.name);
        let out = self.swarm.docker(
            0,
            &[
                "service",
                "ps",
                &service,
                "--filter",
                "desired-state=running",
                "--format",
                "{{.Node}}",
            ],
        );
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

/// Deploy, promote and roll back with the gateway's replicas on every node, load running
/// through every switch: no request fails, whether the client retries like a browser or never;
/// `status` shows each task's node and the nodes table; keys Swarm ignores are warned about
/// with their line.
#[test]
fn deploy_promote_and_rollback_on_a_three_node_swarm_fail_no_request() {
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
    stack
        .cutover(&["promote", "green"])
        .stdout_contains("production: blue -> green (v2)")
        .success();
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
    std::thread::sleep(Duration::from_millis(500));
    let report = load.stop();
    assert_no_failures(&report);

    let status = stack.cutover(&["status"]).success();
    for expected in [
        "NODE",
        "blue-api-gateway#3",
        "ACTIVE since",
        "standby",
        "AVAILABILITY",
        "manager (leader)",
        "worker-2",
    ] {
        assert!(
            status.stdout.contains(expected),
            "no {expected:?} in:\n{}",
            status.stdout
        );
    }
    // Production dials every node the active colour runs on, on the node's own address.
    for node in &s.swarm.nodes {
        assert!(
            status
                .stdout
                .contains(&format!("{}:{}", node.addr, stack.ports.blue)),
            "production does not dial {}:\n{}",
            node.name,
            status.stdout
        );
    }
}

/// A colour whose tasks no node can take (a placement constraint none meets) is refused as
/// unhealthy, with Swarm's reason, and production stays where it was.
#[test]
fn an_unplaceable_colour_is_refused_naming_why_and_traffic_stays() {
    let Some((_turn, s)) = swarm_stack("swarm-place") else {
        return;
    };
    let stack = &s.stack;
    stack.cutover(&["prepare", "blue", "v1"]).success();
    stack.cutover(&["promote", "blue"]).success();
    let compose = stack.path().join("deploy/docker-compose.blue-green.yml");
    let text = std::fs::read_to_string(&compose).unwrap();
    let green = text.find("  green-api-gateway:").unwrap();
    let at = green
        + text[green..]
            .find("    deploy: *api-gateway-limits")
            .unwrap();
    let constrained = format!(
        "{}    deploy:\n      resources: {{ limits: {{ memory: 512M }} }}\n      placement: {{ constraints: [\"node.labels.zone == mars\"] }}{}",
        &text[..at],
        &text[at + "    deploy: *api-gateway-limits".len()..]
    );
    std::fs::write(&compose, constrained).unwrap();
    stack
        .cutover(&["prepare", "green", "v2"])
        .stderr_contains("green is not healthy on the swarm")
        .stderr_contains("cannot be placed")
        .stderr_contains("no suitable node")
        .status(1);
    stack
        .cutover(&["promote", "green"])
        .stderr_contains("no suitable node")
        .status(1);
    assert_eq!(
        (stack.active().as_str(), stack.version().as_str()),
        ("blue", "v1")
    );
}

/// Draining a node: refused, changing nothing, while it holds an environment's only gateway
/// task; with a second replica elsewhere, drained under load: its tasks move to the other
/// nodes, healthy and routed, no request fails (browser-like or never-retry), and no task of
/// the stack is left on it.
#[test]
fn draining_a_node_under_load_moves_its_tasks_and_fails_no_request() {
    let Some((_turn, s)) = swarm_stack("swarm-drain") else {
        return;
    };
    let stack = &s.stack;
    stack.cutover(&["prepare", "blue", "v1"]).success();
    stack.cutover(&["promote", "blue"]).success();
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
    let ever = s
        .swarm
        .docker(0, &["service", "ps", &gateway, "--format", "{{.ID}}"]);
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

/// One worker's engine killed (SIGKILL) while production is served from every node, then the
/// other worker's during a promote to the two nodes left: the promote either completes or
/// stops with production where it was (the proxy and the record agreeing), production keeps
/// answering throughout, and `status` names each lost node (`down (heartbeat failure)`). The
/// failed requests are counted and bounded (the README's figure): a dead engine leaves its
/// containers serving, so the node's gateway keeps answering the proxy.
#[test]
fn worker_engines_killed_while_serving_and_during_a_promote_leave_production_answering() {
    let Some((_turn, mut s)) = swarm_stack("swarm-kill") else {
        return;
    };
    s.stack.cutover(&["prepare", "blue", "v1"]).success();
    s.stack
        .cutover(&["scale", "blue-api-gateway", "3"])
        .success();
    s.stack.cutover(&["promote", "blue"]).success();
    let load = s.stack.load(Duration::from_secs(300));
    std::thread::sleep(Duration::from_millis(500));
    s.swarm.kill_engine("worker-2");
    let status = wait_until_lost(&s.stack, "worker-2");
    assert!(status.contains("worker-2"), "{status}");
    assert_eq!(s.stack.version(), "v1");
    let served = load.now();

    // Green on the two nodes left, and worker-1's engine killed once its promote has begun.
    s.stack.cutover(&["prepare", "green", "v2"]).success();
    s.stack
        .cutover(&["scale", "green-api-gateway", "2"])
        .success();
    assert_eq!(s.gateway_nodes("green"), ["manager", "worker-1"]);
    // A promote waiting for a replica that has no node left gives up sooner.
    s.stack.set("TIMEOUT", "20");
    let mut promote = s.stack.cutover(&["promote", "green"]).start(&[]);
    let stderr = promote.stderr.take().unwrap();
    let (began, first) = std::sync::mpsc::channel();
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
    let began = first.recv_timeout(Duration::from_secs(30));
    s.swarm.kill_engine("worker-1");
    let promoted = Ran::of(promote);
    let stderr = reader.join().unwrap();
    eprintln!(
        "worker-1's engine killed at {:?}; the promote ended with {:?}:\n{}{stderr}",
        began.unwrap_or_default(),
        promoted.code,
        promoted.stdout
    );
    let stack = &s.stack;
    if promoted.code == Some(0) {
        assert!(
            promoted.stdout.contains("production: blue -> green (v2)"),
            "{}",
            promoted.stdout
        );
        assert_eq!(
            (stack.active(), stack.version()),
            ("green".into(), "v2".into())
        );
    } else {
        assert_eq!(promoted.code, Some(1), "{stderr}");
        assert_eq!(
            (stack.active(), stack.version()),
            ("blue".into(), "v1".into())
        );
    }
    let status = wait_until_lost(stack, "worker-1");
    assert!(!status.contains("DISAGREE"), "{status}");
    let report = load.stop();
    eprintln!(
        "worker-2's engine killed while serving, worker-1's during a promote ({} s of serving before it): {}",
        served.as_secs(),
        report.describe()
    );
    for group in ["browser", "never-retry GET", "never-retry POST"] {
        let seen = report.group(group);
        assert!(seen.requests > 50, "{}", report.describe());
        assert!(seen.failures() <= 2, "{}", report.describe());
    }
}
