//! `caddy::*` when things go wrong, against a real Caddy 2.11 and demo-service upstreams: a
//! config Caddy rejects, someone else editing a route between this run's read and its write, an
//! unreachable admin API, addresses that are invalid or dead, unknown routes and options, and
//! dry or readonly runs. In every case the traffic and Caddy's config stay as they were.

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    process::Stdio,
};

use serde_json::json;

use crate::{
    caddy::{Routing, SWITCH, Stack},
    support::{self, Service, demo::DemoProcess},
    test::Test,
};

#[test]
fn rejected_config_leaves_traffic_and_config_unchanged() {
    if !support::require(Service::Caddy) {
        return;
    }
    let stack = Stack::start(Routing::Literal);
    let before = stack.caddy.config();
    stack
        .test()
        .runbook(
            "bad",
            r#"fn main() {
                let config = caddy::config();
                config.apps.http.servers.main.routes[0].handle[0].flush_interval = "soon";
                caddy::load(config);
            }"#,
        )
        .args(["bad"])
        .stderr_contains("Caddy rejected the config: loading new config:")
        .stderr_contains("invalid duration \"soon\"")
        .status(1);
    stack
        .test()
        .runbook(
            "bad",
            "fn main() { caddy::load(\"http://127.0.0.1:1 {\\n\\treverse_proxy {\\n\"); }",
        )
        .args(["bad"])
        .stderr_contains("Caddy rejected the Caddyfile:")
        .stderr_contains("unexpected EOF, at Caddyfile:2")
        .status(1);
    assert_eq!(stack.caddy.config(), before);
    assert_eq!(stack.version(), "blue");
}

/// Runs `test` until its log (stderr) shows `marker`, calls `edit`, then opens `signal` (the
/// runbook waits for it) and lets it finish. Returns its exit code and stderr.
fn run_with_edit_between(
    test: Test,
    marker: &str,
    signal: u16,
    edit: impl FnOnce(),
) -> (Option<i32>, String) {
    let mut child = test
        .command()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = String::new();
    let mut edit = Some(edit);
    let mut listener = None;
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        stderr.push_str(&line);
        stderr.push('\n');
        if line.contains(marker)
            && let Some(edit) = edit.take()
        {
            edit();
            listener = Some(TcpListener::bind(("127.0.0.1", signal)).unwrap());
        }
    }
    let status = child.wait().unwrap();
    drop(listener);
    (status.code(), stderr)
}

#[test]
fn concurrent_edit_is_detected_and_not_overwritten() {
    if !support::require(Service::Caddy) {
        return;
    }
    for routing in [Routing::Literal, Routing::File, Routing::Slots] {
        let stack = Stack::start(routing);
        let red = DemoProcess::start(support::free_port(), &[("VERSION", "red")]);
        let signal = support::free_port();
        // Someone else moves production to red between this run's read and its switch.
        let edit = || match routing {
            Routing::File | Routing::Slots => {
                for file in &stack.files {
                    std::fs::write(file, red.address()).unwrap();
                }
            }
            Routing::Literal => {
                let response = stack.caddy.request(
                    "PATCH",
                    "/id/production/handle/0/upstreams",
                    Some(&json!([{"dial": red.address()}])),
                    &[],
                );
                assert_eq!(response.status, 200, "{response:?}");
            }
        };
        let script = format!(
            r#"fn main() {{
                let live = caddy::upstreams("production");
                log::info(`read ${{live}}`);
                health::wait([#{{tcp: "127.0.0.1:{signal}"}}], #{{timeout: 30000, interval: 50}});
                caddy::switch("production", ["{}"]);
                log::info("switched");
            }}"#,
            stack.green.address()
        );
        let (code, stderr) = run_with_edit_between(
            stack.test().runbook("r", &script).args(["r"]),
            "read",
            signal,
            edit,
        );
        assert_eq!(code, Some(1), "{routing:?}\n{stderr}");
        assert!(
            stderr.contains("route \"production\" changed since this run read it"),
            "{stderr}"
        );
        assert!(!stderr.contains("switched"), "{stderr}");
        assert_eq!(
            stack.version(),
            "red",
            "{routing:?}: the other edit was overwritten"
        );
    }

    // A whole config read, then loaded back after someone else's change, is refused too.
    let stack = Stack::start(Routing::Literal);
    let signal = support::free_port();
    let script = format!(
        r#"fn main() {{
            let config = caddy::config();
            log::info("read config");
            health::wait([#{{tcp: "127.0.0.1:{signal}"}}], #{{timeout: 30000, interval: 50}});
            config.apps.http.grace_period = "5s";
            caddy::load(config);
        }}"#
    );
    let green = stack.green.address();
    let (code, stderr) = run_with_edit_between(
        stack.test().runbook("r", &script).args(["r"]),
        "read config",
        signal,
        || {
            let response = stack.caddy.request(
                "PATCH",
                "/id/production/handle/0/upstreams",
                Some(&json!([{"dial": green}])),
                &[],
            );
            assert_eq!(response.status, 200, "{response:?}");
        },
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("the config changed since this run read it"),
        "{stderr}"
    );
    assert_eq!(stack.version(), "green");
}

#[test]
fn slots_trading_addresses_count_as_a_concurrent_edit() {
    if !support::require(Service::Caddy) {
        return;
    }
    let stack = Stack::start(Routing::Slots);
    let (blue, green) = (stack.blue.address(), stack.green.address());
    stack
        .test()
        .runbook(
            "r",
            r#"fn main(a, b) { caddy::switch("production", [a, b]); }"#,
        )
        .args(["r", &blue, &green])
        .success();
    let signal = support::free_port();
    let script = format!(
        r#"fn main() {{
            log::info(`read ${{caddy::upstreams("production")}}`);
            health::wait([#{{tcp: "127.0.0.1:{signal}"}}], #{{timeout: 30000, interval: 50}});
            caddy::switch("production", ["{green}"]);
            log::info("switched");
        }}"#
    );
    // Someone else trades slots 3 and 4: the same addresses, in the same first-seen order,
    // but not the same split.
    let (code, stderr) = run_with_edit_between(
        stack.test().runbook("r", &script).args(["r"]),
        "read",
        signal,
        || {
            std::fs::write(&stack.files[2], &green).unwrap();
            std::fs::write(&stack.files[3], &blue).unwrap();
        },
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("route \"production\" changed since this run read it"),
        "{stderr}"
    );
    assert!(!stderr.contains("switched"), "{stderr}");
    let mut edited: Vec<String> = (0..10).map(|i| [&blue, &green][i % 2].clone()).collect();
    edited.swap(2, 3);
    assert_eq!(stack.slots(), edited, "the other edit was overwritten");
}

#[test]
fn admin_down_is_a_clear_error_and_changes_nothing() {
    if !support::require(Service::Caddy) {
        return;
    }
    let stack = Stack::start(Routing::Slots);
    let nowhere = format!("127.0.0.1:{}", support::free_port());
    for call in [
        r#"caddy::switch("production", [GREEN])"#,
        r#"caddy::weights("production", #{GREEN: 50, BLUE: 50})"#,
        r#"caddy::upstreams("production")"#,
        "caddy::config()",
    ] {
        let call = call
            .replace("GREEN", &format!("{:?}", stack.green.address()))
            .replace("BLUE", &format!("{:?}", stack.blue.address()));
        Test::new()
            .env("CADDY_ADMIN", &nowhere)
            .runbook("r", &format!("fn main() {{ {call}; }}"))
            .args(["r"])
            .stderr_contains(&format!(
                "cannot reach the Caddy admin API at http://{nowhere}: Connection refused"
            ))
            .status(1);
    }
    assert!(stack.slots().iter().all(|a| *a == stack.blue.address()));
    assert_eq!(stack.version(), "blue");
}

#[test]
fn invalid_or_dead_addresses_are_refused_before_caddy_sees_them() {
    if !support::require(Service::Caddy) {
        return;
    }
    let dead = format!("127.0.0.1:{}", support::free_port());
    for routing in [Routing::Literal, Routing::File, Routing::Slots] {
        let stack = Stack::start(routing);
        let config = stack.caddy.config();
        for (addr, message) in [
            (
                "not a host:port:x",
                "invalid upstream address \"not a host:port:x\": it contains spaces",
            ),
            (
                "127.0.0.1:99999",
                "invalid upstream address \"127.0.0.1:99999\": port 99999 is out of range 1–65535",
            ),
            (dead.as_str(), "does not accept connections ("),
        ] {
            for call in [
                format!("caddy::switch(\"production\", [{addr:?}])"),
                format!(
                    "caddy::weights(\"production\", #{{{addr:?}: 10, {:?}: 90}})",
                    stack.blue.address()
                ),
            ] {
                stack
                    .test()
                    .runbook("r", &format!("fn main() {{ {call}; }}"))
                    .args(["r"])
                    .stderr_contains(message)
                    .status(1);
            }
        }
        assert_eq!(stack.caddy.config(), config, "{routing:?}");
        assert_eq!(stack.version(), "blue");
        assert!(stack.slots().iter().all(|a| *a == stack.blue.address()));
    }
}

#[test]
fn unknown_route_and_bad_options_are_named() {
    if !support::require(Service::Caddy) {
        return;
    }
    let stack = Stack::start(Routing::Literal);
    let green = stack.green.address();
    for (call, message) in [
        (
            format!("caddy::switch(\"prod\", [{green:?}])"),
            "Caddy's config has no object with @id \"prod\" (ids it has: production)",
        ),
        (
            format!("caddy::switch(\"production\", [{green:?}], #{{mode: \"fast\"}})"),
            "mode \"fast\" is not one of",
        ),
        (
            format!("caddy::switch(\"production\", [{green:?}], #{{chek: false}})"),
            "caddy::switch: unknown option `chek` (known: mode, file, per_slot, check, check_timeout)",
        ),
        (
            format!("caddy::switch(\"production\", [{green:?}], #{{mode: \"file\"}})"),
            "it dials no {file.…} upstream",
        ),
        (
            "caddy::switch(\"production\", [])".to_string(),
            "no address to switch to",
        ),
        (
            format!("caddy::switch(\"production\", [{green:?}, {green:?}])"),
            "is listed twice (give #{per_slot: true} to list each slot's address)",
        ),
        (
            format!(
                "caddy::switch(\"production\", [{green:?}, {green:?}], #{{file: [\"a\", \"b\", \"c\"], per_slot: true}})"
            ),
            "caddy::switch: `per_slot` gives each slot of `file` its address: 2 address(es) for 3 slot file(s)",
        ),
        (
            format!("caddy::switch(\"production\", [{green:?}], #{{file: [\"a\", \"b\", \"a\"]}})"),
            "caddy::switch: `file` lists a twice: each slot is its own file",
        ),
        (
            format!("caddy::switch(\"production\", [{green:?}], #{{file: []}})"),
            "caddy::switch: `file` lists no file",
        ),
        (
            format!("caddy::weights(\"production\", #{{{green:?}: -1}})"),
            "must be an integer ≥ 0",
        ),
    ] {
        stack
            .test()
            .runbook("r", &format!("fn main() {{ {call}; }}"))
            .args(["r"])
            .stderr_contains(message)
            .status(1);
    }
    assert_eq!(stack.version(), "blue");
}

#[test]
fn dry_run_and_readonly_runbooks_change_nothing() {
    if !support::require(Service::Caddy) {
        return;
    }
    let stack = Stack::start(Routing::Literal);
    let (blue, green) = (stack.blue.address(), stack.green.address());
    stack
        .test()
        .runbook("switch", SWITCH)
        .args(["--dry-run", "switch", &green])
        .stderr_contains(&format!(
            "would caddy::switch production: {blue} -> {green} (patch)"
        ))
        .stdout_contains(&format!("after: [\"{blue}\"]"))
        .success();
    stack
        .test()
        .runbook("look", &format!("//! Looks.\n//!\n//! readonly\n{SWITCH}"))
        .args(["look", &green])
        .stderr_contains("refused, `look` is a readonly runbook")
        .status(1);
    assert_eq!(stack.version(), "blue");
}
