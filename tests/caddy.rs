//! `caddy::*` against a real Caddy 2.11 and demo-service upstreams: switching (by PATCH and by
//! upstream file), canary weights, loading a Caddyfile, the shipped config and the stdlib helper
//! that confirms a switch through the proxy. What goes wrong (rejected configs, concurrent
//! edits, an unreachable admin API, bad addresses and options, dry runs) is in
//! `caddy_failures`.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::PathBuf,
    time::Duration,
};

use serde_json::{Value, json};

use crate::{
    support::{
        self, Service,
        caddy::{CaddyProcess, file_dial, get_body, proxy_config, proxy_route},
        demo::DemoProcess,
        load::{Group, Load, Method, Plan, Retry},
    },
    test::Test,
};

/// Blue and green demo services behind a Caddy whose `production` route points at blue, by a
/// literal address or by an upstream file.
pub struct Stack {
    pub blue: DemoProcess,
    pub green: DemoProcess,
    pub caddy: CaddyProcess,
    pub proxy: String,
    /// The upstream file, when the route dials one.
    pub file: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Routing {
    Literal,
    File,
}

impl Stack {
    pub fn start(routing: Routing) -> Stack {
        let blue = DemoProcess::start(support::free_port(), &[("VERSION", "blue")]);
        let green = DemoProcess::start(support::free_port(), &[("VERSION", "green")]);
        let dir = tempfile::tempdir().unwrap();
        let file = (routing == Routing::File).then(|| dir.path().join("production"));
        let dial = match &file {
            Some(file) => {
                std::fs::write(file, blue.address()).unwrap();
                file_dial(file)
            }
            None => blue.address(),
        };
        let port = support::free_port();
        let caddy = CaddyProcess::start(proxy_config(
            port,
            vec![proxy_route("production", None, &dial)],
        ));
        let stack = Stack {
            blue,
            green,
            caddy,
            proxy: format!("127.0.0.1:{port}"),
            file,
            _dir: dir,
        };
        assert_eq!(stack.version(), "blue");
        stack
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
    for (routing, mode) in [(Routing::Literal, "patch"), (Routing::File, "file")] {
        let stack = Stack::start(routing);
        let (blue, green) = (stack.blue.address(), stack.green.address());
        stack
            .test()
            .runbook("switch", SWITCH)
            .args(["switch", &green])
            .stderr_contains(&format!("before: [\"{blue}\"]"))
            .stderr_contains(&format!("moved: [\"{blue}\"] -> [\"{green}\"] by {mode}"))
            .stderr_contains(&format!("after: [\"{green}\"]"))
            .success();
        assert_eq!(stack.version(), "green", "{routing:?}");
        if let Some(file) = &stack.file {
            assert_eq!(std::fs::read_to_string(file).unwrap().trim(), green);
        }
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
    let stack = Stack::start(Routing::File);
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
    assert_eq!(get_on(&mut client).as_deref(), Some("green"));
    assert_eq!(stack.caddy.config(), config);
}

/// Sends `n` GETs through the proxy and counts who served them.
fn served_by(proxy: &str, n: u64) -> (u64, u64) {
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
    let count = |who: &str| {
        group
            .samples
            .iter()
            .filter(|s| s.served_by.as_deref() == Some(who))
            .count() as u64
    };
    (count("demo-blue"), count("demo-green"))
}

#[test]
fn weights_split_traffic_90_10_then_a_switch_ends_the_canary() {
    if !support::require(Service::Caddy) {
        return;
    }
    for routing in [Routing::Literal, Routing::File] {
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
            .stderr_contains("by patch")
            .success();
        let (to_blue, to_green) = served_by(&stack.proxy, 2000);
        assert_eq!(to_blue + to_green, 2000);
        let share = to_green as f64 / 2000.0;
        assert!(
            (0.05..=0.15).contains(&share),
            "{routing:?}: green got {to_green} of 2000 ({share:.3}), expected 10% ± 5"
        );
        // Ending the canary on green leaves one upstream and no weighted policy; a route that
        // dialed a file dials it again.
        stack
            .test()
            .runbook("switch", SWITCH)
            .args(["switch", &green])
            .success();
        assert_eq!(stack.version(), "green");
        let handler =
            &stack.caddy.config()["apps"]["http"]["servers"]["main"]["routes"][0]["handle"][0];
        let expected_dial = match &stack.file {
            Some(file) => file_dial(file),
            None => green.clone(),
        };
        assert_eq!(handler["upstreams"], json!([{"dial": expected_dial}]));
        assert!(handler.get("load_balancing").is_none(), "{handler}");
    }
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
        .stderr_contains("loaded")
        .success();
    assert_eq!(get_body(&format!("127.0.0.1:{port}"), "/version"), "green");
}

#[test]
fn shipped_config_switches_production_by_its_upstream_file() {
    if !support::require(Service::Caddy) {
        return;
    }
    let blue = DemoProcess::start(support::free_port(), &[("VERSION", "blue")]);
    let green = DemoProcess::start(support::free_port(), &[("VERSION", "green")]);
    let port = support::free_port();
    let mut config: Value =
        serde_json::from_str(include_str!("../deploy/caddy/caddy.json")).unwrap();
    // Each environment's route has its own server (listening on a port from the environment)
    // and dials its own upstream file; the test gives them ports of its own.
    let servers = &mut config["apps"]["http"]["servers"];
    for name in ["production", "staging", "blue", "green"] {
        let server = &mut servers[name];
        assert_eq!(server["routes"][0]["@id"], name);
        assert_eq!(
            server["routes"][0]["handle"][0]["upstreams"][0]["dial"],
            format!("{{file.deploy/caddy/upstreams/{name}}}")
        );
        let listen = if name == "production" {
            port
        } else {
            support::free_port()
        };
        server["listen"] = json!([format!("127.0.0.1:{listen}")]);
    }
    // Caddy and cutover both run from the project root: relative paths agree.
    let test = Test::new().file("deploy/caddy/upstreams/production", &blue.address());
    let caddy = CaddyProcess::start_in(config, Some(test.path()));
    let proxy = format!("127.0.0.1:{port}");
    assert_eq!(get_body(&proxy, "/version"), "blue");
    let run = test
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
        .stderr_contains("moved by file")
        .success();
    let file = run.path().join("deploy/caddy/upstreams/production");
    assert_eq!(
        std::fs::read_to_string(file).unwrap().trim(),
        green.address()
    );
    assert_eq!(get_body(&proxy, "/version"), "green");
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
