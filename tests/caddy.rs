//! `caddy::*` against a real Caddy 2.11 and demo-service upstreams: switching (by PATCH and by
//! upstream file), canary weights, loading a Caddyfile, the shipped config and the stdlib helper
//! that confirms a switch through the proxy. What goes wrong (rejected configs, concurrent
//! edits, an unreachable admin API, bad addresses and options, dry runs) is in
//! `caddy_failures`.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::PathBuf,
    time::Duration,
};

use serde_json::{Value, json};

use crate::{
    support::{
        self, Service,
        caddy::{CaddyProcess, file_dial, get_body, proxy_config, proxy_route_to, slot_files},
        demo::DemoProcess,
        load::{Group, Load, Method, Plan, Retry},
    },
    test::Test,
};

/// Blue and green demo services behind a Caddy whose `production` route points at blue, by a
/// literal address, by an upstream file, or by ten slot files as the shipped config has.
pub struct Stack {
    pub blue: DemoProcess,
    pub green: DemoProcess,
    pub caddy: CaddyProcess,
    pub proxy: String,
    /// The upstream files the route dials (its slots), none for a literal route.
    pub files: Vec<PathBuf>,
    _dir: tempfile::TempDir,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Routing {
    Literal,
    File,
    Slots,
}

/// The slots of a route in the shipped config.
pub const SLOTS: usize = 10;

impl Stack {
    pub fn start(routing: Routing) -> Stack {
        let blue = DemoProcess::start(support::free_port(), &[("VERSION", "blue")]);
        let green = DemoProcess::start(support::free_port(), &[("VERSION", "green")]);
        let dir = tempfile::tempdir().unwrap();
        let count = match routing {
            Routing::Literal => 0,
            Routing::File => 1,
            Routing::Slots => SLOTS,
        };
        let files = slot_files(dir.path(), "production", count, &blue.address());
        let dials = match routing {
            Routing::Literal => vec![blue.address()],
            _ => files.iter().map(|f| file_dial(f)).collect(),
        };
        let port = support::free_port();
        let caddy = CaddyProcess::start(proxy_config(
            port,
            vec![proxy_route_to("production", None, &dials)],
        ));
        let stack = Stack {
            blue,
            green,
            caddy,
            proxy: format!("127.0.0.1:{port}"),
            files,
            _dir: dir,
        };
        assert_eq!(stack.version(), "blue");
        stack
    }

    /// The address each slot file holds, in slot order.
    pub fn slots(&self) -> Vec<String> {
        self.files
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap().trim().to_string())
            .collect()
    }

    /// A test whose runbooks talk to this Caddy.
    pub fn test(&self) -> Test {
        Test::new().env("CADDY_ADMIN", self.caddy.admin_url())
    }

    /// What the proxy answers on `/version` now.
    pub fn version(&self) -> String {
        get_body(&self.proxy, "/version")
    }
}

/// A runbook that switches production to its argument, printing the upstreams before and after.
pub const SWITCH: &str = r#"
fn main(target) {
    print(`before: ${caddy::upstreams("production")}`);
    let moved = caddy::switch("production", [target]);
    print(`moved: ${moved.from} -> ${moved.to} by ${moved.mode}`);
    print(`after: ${caddy::upstreams("production")}`);
}
"#;

#[test]
fn switch_moves_production_traffic() {
    if !support::require(Service::Caddy) {
        return;
    }
    for (routing, mode) in [
        (Routing::Literal, "patch"),
        (Routing::File, "file"),
        (Routing::Slots, "file"),
    ] {
        let stack = Stack::start(routing);
        let (blue, green) = (stack.blue.address(), stack.green.address());
        stack
            .test()
            .runbook("switch", SWITCH)
            .args(["switch", &green])
            .stdout_contains(&format!("before: [\"{blue}\"]"))
            .stdout_contains(&format!("moved: [\"{blue}\"] -> [\"{green}\"] by {mode}"))
            .stdout_contains(&format!("after: [\"{green}\"]"))
            .success();
        assert_eq!(stack.version(), "green", "{routing:?}");
        assert!(stack.slots().iter().all(|a| *a == green), "{routing:?}");
    }
}

/// GET /version on a kept-alive connection; `None` if the server closed it.
fn get_on(stream: &mut TcpStream) -> Option<String> {
    stream
        .write_all(b"GET /version HTTP/1.1\r\nhost: proxy\r\n\r\n")
        .ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line.trim().is_empty() {
            break;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn file_switch_keeps_connections_and_config() {
    if !support::require(Service::Caddy) {
        return;
    }
    for routing in [Routing::File, Routing::Slots] {
        let stack = Stack::start(routing);
        let config = stack.caddy.config();
        let mut client = TcpStream::connect(&stack.proxy).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(get_on(&mut client).as_deref(), Some("blue"));
        stack
            .test()
            .runbook("switch", SWITCH)
            .args(["switch", &stack.green.address()])
            .success();
        // The idle keep-alive connection survived the switch and now reaches green: no reload.
        assert_eq!(get_on(&mut client).as_deref(), Some("green"), "{routing:?}");
        assert_eq!(stack.caddy.config(), config, "{routing:?}");
    }
}

/// Sends `n` GETs through the proxy and counts who served them (`x-served-by`).
fn served_by(proxy: &str, n: u64) -> BTreeMap<String, u64> {
    let report = Load::start(Plan {
        target: proxy.parse().unwrap(),
        groups: vec![Group::new("split", Retry::Browser, Method::Get, 4, 400.0)],
        duration: Duration::from_secs(60),
        max_requests: n,
        request_timeout: Duration::from_secs(5),
    })
    .finish();
    let group = report.group("split");
    assert_eq!(group.failures(), 0, "{}", report.describe());
    assert_eq!(group.requests, n, "{}", report.describe());
    let mut counts = BTreeMap::new();
    for sample in &group.samples {
        let who = sample.served_by.as_deref().unwrap_or("nobody");
        *counts.entry(who.to_string()).or_default() += 1;
    }
    counts
}

#[test]
fn weights_split_traffic_90_10_then_a_switch_ends_the_canary() {
    if !support::require(Service::Caddy) {
        return;
    }
    for routing in [Routing::Literal, Routing::File, Routing::Slots] {
        let stack = Stack::start(routing);
        let (blue, green) = (stack.blue.address(), stack.green.address());
        let script = r#"
            fn main(blue, green) {
                let w = #{};
                w[blue] = 90;
                w[green] = 10;
                let split = caddy::weights("production", w);
                print(`split: ${split.to} by ${split.mode}`);
            }
        "#;
        stack
            .test()
            .runbook("canary", script)
            .args(["canary", &blue, &green])
            .stdout_contains("by patch")
            .success();
        let counts = served_by(&stack.proxy, 2000);
        let to_green = counts.get("demo-green").copied().unwrap_or(0);
        assert_eq!(
            counts.get("demo-blue").copied().unwrap_or(0) + to_green,
            2000,
            "{counts:?}"
        );
        let share = to_green as f64 / 2000.0;
        assert!(
            (0.05..=0.15).contains(&share),
            "{routing:?}: green got {to_green} of 2000 ({share:.3}), expected 10% ± 5"
        );
        // Ending the canary on green leaves no weighted policy, and the upstreams the route
        // had: a literal route the one address, a route that dialed files all of them again.
        stack
            .test()
            .runbook("switch", SWITCH)
            .args(["switch", &green])
            .success();
        assert_eq!(stack.version(), "green");
        let handler =
            &stack.caddy.config()["apps"]["http"]["servers"]["main"]["routes"][0]["handle"][0];
        let expected: Vec<Value> = match routing {
            Routing::Literal => vec![json!({"dial": green})],
            _ => stack
                .files
                .iter()
                .map(|f| json!({"dial": file_dial(f)}))
                .collect(),
        };
        assert_eq!(handler["upstreams"], Value::Array(expected), "{routing:?}");
        assert!(handler.get("load_balancing").is_none(), "{handler}");
        assert!(stack.slots().iter().all(|a| *a == green), "{routing:?}");
    }
}

/// Switches production to the comma-separated addresses, printing how and where it goes.
const SPREAD: &str = r#"
fn main(list) { spread(list, #{}); }
fn main(list, check) { spread(list, #{check: check == "check"}); }
fn spread(list, options) {
    let moved = caddy::switch("production", list.split(","), options);
    print(`moved by ${moved.mode}`);
    print(`upstreams: ${caddy::upstreams("production")}`);
}
"#;

/// How Rhai prints a list of strings.
fn rhai_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

#[test]
fn a_slotted_route_spreads_its_addresses_over_its_slots() {
    if !support::require(Service::Caddy) {
        return;
    }
    let stack = Stack::start(Routing::Slots);
    let config = stack.caddy.config();
    let replicas: Vec<DemoProcess> = (1..=3)
        .map(|n| DemoProcess::start(support::free_port(), &[("VERSION", &format!("r{n}"))]))
        .collect();
    let addrs: Vec<String> = replicas.iter().map(DemoProcess::address).collect();
    for n in [2, 3, 1] {
        let to = &addrs[..n];
        stack
            .test()
            .runbook("spread", SPREAD)
            .args(["spread", &to.join(",")])
            .stdout_contains("moved by file")
            .stdout_contains(&format!("upstreams: {}", rhai_list(to)))
            .success();
        // Slot i holds address i mod n: every slot holds one, switching back to one fills all.
        let expected: Vec<String> = (0..SLOTS).map(|i| to[i % n].clone()).collect();
        assert_eq!(stack.slots(), expected);
        // Each address takes its share (10 slots over 3: 4, 3, 3), nothing else answers.
        let counts = served_by(&stack.proxy, 400);
        let wanted: Vec<String> = (1..=n).map(|k| format!("demo-r{k}")).collect();
        assert_eq!(
            counts.keys().cloned().collect::<Vec<_>>(),
            wanted,
            "{n} addresses: {counts:?}"
        );
        for (who, count) in &counts {
            assert!(
                *count >= 400 / (2 * n as u64),
                "{who} served {count} of 400 with {n} addresses: {counts:?}"
            );
        }
    }
    // No reload at any point: Caddy's config is the one it started with.
    assert_eq!(stack.caddy.config(), config);

    // More addresses than slots is an error naming the count, and changes nothing.
    let eleven: Vec<String> = (0..=SLOTS)
        .map(|k| format!("127.0.0.1:{}", 40000 + k))
        .collect();
    stack
        .test()
        .runbook("spread", SPREAD)
        .args(["spread", &eleven.join(","), "no-check"])
        .stderr_contains(
            "route \"production\": it has 10 upstream slots (files it dials), so it can send \
             traffic to at most 10 addresses, not 11",
        )
        .status(1);
    assert!(stack.slots().iter().all(|a| *a == addrs[0]));
    assert_eq!(stack.caddy.config(), config);
    assert_eq!(stack.version(), "r1");
}

/// Stages a switch of production's slots to `to`, then throws or switches to `then`.
const AHEAD: &str = r#"
fn main(to, files, then) {
    let slots = files.split(",");
    caddy::switch_ahead("production", [to], #{file: slots});
    if then == "throw" { throw "refused after staging"; }
    let moved = caddy::switch("production", [then], #{file: slots});
    print(`moved: ${moved.from} -> ${moved.to}`);
}
"#;

#[test]
fn a_switch_staged_ahead_is_renamed_into_place_and_what_no_switch_takes_is_removed() {
    if !support::require(Service::Caddy) {
        return;
    }
    let stack = Stack::start(Routing::Slots);
    let config = stack.caddy.config();
    let (blue, green) = (stack.blue.address(), stack.green.address());
    let files: Vec<String> = stack
        .files
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    let dir = stack.files[0].parent().unwrap().to_path_buf();
    let temps = || {
        crate::pg::files_in(&dir)
            .iter()
            .filter(|name| name.contains(".tmp-"))
            .count()
    };
    let files = files.join(",");
    let run = |flag: &str, to: &str, then: &str| {
        stack
            .test()
            .runbook("ahead", AHEAD)
            .args(["-v", flag, "ahead", to, &files, then])
    };
    let ahead = |to: &str, then: &str| run("-v", to, then);
    // Staged for green, switched to green: the staged files are what goes into place.
    ahead(&green, &green)
        .stderr_contains("slot files written ahead: renamed into place")
        .stdout_contains(&format!("moved: [\"{blue}\"] -> [\"{green}\"]"))
        .success();
    assert_eq!(stack.version(), "green");
    assert!(stack.slots().iter().all(|a| *a == green));
    assert_eq!(temps(), 0, "temporary files left beside the slots");
    // Staged for one address, switched to another: the switch writes its own, and the staged
    // files are removed.
    ahead(&green, &blue)
        .stderr_lacks("written ahead")
        .stdout_contains(&format!("moved: [\"{green}\"] -> [\"{blue}\"]"))
        .success();
    assert_eq!(stack.version(), "blue");
    assert!(stack.slots().iter().all(|a| *a == blue));
    assert_eq!(temps(), 0, "temporary files left beside the slots");
    // Staged, then the run fails before its switch: nothing moved, nothing left behind.
    ahead(&green, "throw")
        .stderr_contains("refused after staging")
        .status(1);
    assert_eq!(stack.version(), "blue");
    assert!(stack.slots().iter().all(|a| *a == blue));
    assert_eq!(temps(), 0, "temporary files left beside the slots");
    // A dry run stages nothing and switches nothing.
    run("--dry-run", &green, &green)
        .stderr_lacks("written ahead")
        .success();
    assert!(stack.slots().iter().all(|a| *a == blue));
    assert_eq!(temps(), 0);
    assert_eq!(
        stack.caddy.config(),
        config,
        "a switch by slots reloads nothing"
    );
}

#[test]
fn load_adapts_a_caddyfile() {
    if !support::require(Service::Caddy) {
        return;
    }
    let stack = Stack::start(Routing::Literal);
    let port = support::free_port();
    let caddyfile = format!(
        "{{\n\tadmin {}\n}}\nhttp://127.0.0.1:{port} {{\n\treverse_proxy {}\n}}\n",
        stack.caddy.admin,
        stack.green.address()
    );
    stack
        .test()
        .file("Caddyfile", &caddyfile)
        .runbook(
            "load",
            r#"fn main(text) { caddy::load(text); print("loaded"); }"#,
        )
        .args(["load", &caddyfile])
        .stdout_contains("loaded")
        .success();
    assert_eq!(get_body(&format!("127.0.0.1:{port}"), "/version"), "green");
}

#[test]
fn shipped_config_switches_production_by_its_slot_files() {
    if !support::require(Service::Caddy) {
        return;
    }
    let blue = DemoProcess::start(support::free_port(), &[("VERSION", "blue")]);
    let green = DemoProcess::start(support::free_port(), &[("VERSION", "green")]);
    let port = support::free_port();
    let mut config: Value =
        serde_json::from_str(include_str!("../deploy/caddy/caddy.json")).unwrap();
    // Each environment's route has its own server (listening on a port from the environment)
    // and dials its own ten slot files; the test gives them ports of its own.
    let servers = &mut config["apps"]["http"]["servers"];
    for name in ["production", "staging", "blue", "green"] {
        let server = &mut servers[name];
        assert_eq!(server["routes"][0]["@id"], name);
        let dials: Vec<String> = (1..=SLOTS)
            .map(|n| match n {
                1 => format!("{{file.deploy/caddy/upstreams/{name}}}"),
                n => format!("{{file.deploy/caddy/upstreams/{name}.{n}}}"),
            })
            .map(|dial| json!({"dial": dial}).to_string())
            .collect();
        let proxy = server["routes"][0]["handle"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["handler"] == "reverse_proxy")
            .unwrap_or_else(|| panic!("route {name} has no reverse_proxy"));
        let upstreams = proxy["upstreams"]
            .as_array()
            .unwrap()
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>();
        assert_eq!(upstreams, dials, "route {name}");
        let listen = if name == "production" {
            port
        } else {
            support::free_port()
        };
        server["listen"] = json!([format!("127.0.0.1:{listen}")]);
    }
    // Caddy and cutover both run from the project root: relative paths agree.
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let upstreams = dir.path().join("deploy/caddy/upstreams");
    std::fs::create_dir_all(&upstreams).unwrap();
    let files = slot_files(&upstreams, "production", SLOTS, &blue.address());
    let caddy = CaddyProcess::start_in(config, Some(dir.path()));
    let started = caddy.config();
    let proxy = format!("127.0.0.1:{port}");
    assert_eq!(get_body(&proxy, "/version"), "blue");
    Test::within(dir.clone())
        .env("CADDY_ADMIN", caddy.admin_url())
        .runbook(
            "promote",
            r#"import "traffic" as traffic;
            fn main(addr, proxy) {
                let moved = traffic::switch_to("production", addr, proxy, "green");
                print(`moved by ${moved.mode}`);
            }"#,
        )
        .args(["promote", &green.address(), &format!("http://{proxy}")])
        .stderr_contains(&format!(
            "http://{proxy}/version answers green (10 times in a row)"
        ))
        .stdout_contains("moved by file")
        .success();
    let read = |file: &PathBuf| std::fs::read_to_string(file).unwrap().trim().to_string();
    assert!(files.iter().all(|f| read(f) == green.address()));
    assert_eq!(get_body(&proxy, "/version"), "green");
    // The stdlib's route() names the same slots as the shipped config: it only writes them.
    Test::within(dir.clone())
        .env("CADDY_ADMIN", caddy.admin_url())
        .runbook(
            "both",
            r#"import "bluegreen" as bg;
            fn main(a, b) { print(`moved by ${bg::route("production", [a, b]).mode}`); }"#,
        )
        .args(["both", &blue.address(), &green.address()])
        .stdout_contains("moved by file")
        .success();
    let spread: Vec<String> = files.iter().map(read).collect();
    let expected: Vec<String> = (0..SLOTS)
        .map(|i| [blue.address(), green.address()][i % 2].clone())
        .collect();
    assert_eq!(spread, expected);
    assert_eq!(caddy.config(), started, "a switch by slots reloads nothing");
}

#[test]
fn confirm_names_what_the_proxy_answered_instead() {
    if !support::require(Service::Caddy) {
        return;
    }
    let stack = Stack::start(Routing::Literal);
    stack
        .test()
        .runbook(
            "r",
            r#"import "traffic" as traffic;
            fn main(url) { traffic::confirm(url, "purple", #{timeout: 300}); }"#,
        )
        .args(["r", &format!("http://{}/version", stack.proxy)])
        .stderr_contains(&format!(
            "http://{}/version does not answer purple after 300 ms: HTTP 200 but the body is \"blue\", expected \"purple\"",
            stack.proxy
        ))
        .status(1);
}

/// The number of slots is named once, by the stdlib's `bluegreen::slots()`: every route of the
/// shipped Caddy config dials that many files, and every gateway port range of the shipped
/// settings and compose defaults holds that many ports.
#[test]
fn the_shipped_routes_and_port_ranges_follow_the_stdlib_slot_count() {
    let run = Test::new()
        .runbook(
            "n",
            r#"import "bluegreen" as bg; fn main() { print(`slots=${bg::slots()}`); }"#,
        )
        .args(["n"])
        .success();
    let slots: usize = run
        .stdout
        .split("slots=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no slot count in:\n{}", run.stdout));

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let read = |path: &str| std::fs::read_to_string(root.join(path)).unwrap();
    let config: Value = serde_json::from_str(&read("deploy/caddy/caddy.json")).unwrap();
    let servers = config["apps"]["http"]["servers"].as_object().unwrap();
    for route in ["production", "staging", "blue", "green"] {
        let server = servers[route].to_string();
        let slot = format!("{{file.deploy/caddy/upstreams/{route}");
        assert_eq!(
            server.matches(&slot).count(),
            slots,
            "caddy.json's {route} route"
        );
    }

    let mut ranges = Vec::new();
    for file in ["deploy/demo/demo.env", "deploy/.env.blue-green.example"] {
        for line in read(file).lines() {
            if let Some((name, range)) = line.split_once("_PORTS=") {
                ranges.push((format!("{file}: {name}_PORTS"), range.trim().to_string()));
            }
        }
    }
    let compose = read("deploy/docker-compose.blue-green.yml");
    for (i, _) in compose.match_indices("_PORTS:-") {
        let range = compose[i + "_PORTS:-".len()..].split('}').next().unwrap();
        ranges.push((format!("compose default {i}"), range.to_string()));
    }
    assert_eq!(ranges.len(), 9, "{ranges:?}");
    for (what, range) in ranges {
        let (first, last) = range.split_once('-').unwrap();
        let count = last.parse::<usize>().unwrap() - first.parse::<usize>().unwrap() + 1;
        assert_eq!(count, slots, "{what} = {range}");
    }
}
