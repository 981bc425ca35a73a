//! Beyond one host (issue 16): the runbooks drive a Docker Swarm of several machines. Each test
//! builds a real swarm of its own (`support::swarm`: a network namespace and a Docker Engine per
//! node, one manager and two workers) and tears it down when it ends, pass or fail.

use std::{process::Command, time::Duration};

use crate::support::{self, Service, swarm::Swarm};

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
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "engine {pid} still runs"
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

/// `GET path` on `addr`, the body (empty on any failure).
pub fn get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(addr) = addr.parse::<std::net::SocketAddr>() else {
        return String::new();
    };
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return String::new();
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}
