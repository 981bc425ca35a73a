//! `cutover maintenance on|off` on a real stack under load: production answers 503 with the page
//! and `Retry-After`, the health path and allow-listed addresses still reach the app, switching
//! reloads nothing (Caddy's config is untouched) and drops no connection, and status shows it.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use crate::{
    support::{self, Service, stack::Stack},
    test::Test,
};

/// `GET path` through the proxy: the status line, headers and body, as one text.
fn raw(stack: &Stack, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", stack.ports.proxy)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}

#[test]
fn maintenance_serves_the_page_lets_health_and_allowed_addresses_through_and_reloads_nothing() {
    if !support::require_all(&[Service::Docker, Service::Caddy, Service::Postgres]) {
        return;
    }
    let stack = Stack::running("maintenance");
    let config = support::stack::get(stack.ports.admin, "/config/");
    let load = stack.load(Duration::from_secs(120));
    std::thread::sleep(Duration::from_millis(500));

    stack
        .cutover(&["maintenance", "on", "Back at 14:00 UTC"])
        .env("MAINTENANCE_ALLOW", "10.1.2.3")
        .env("MAINTENANCE_RETRY_AFTER", "120")
        .stdout_contains("maintenance on: production answers 503 \"Back at 14:00 UTC\" (Retry-After 120 s); 10.1.2.3 still get through")
        .success();
    let page = raw(&stack, "/");
    assert!(page.starts_with("HTTP/1.1 503"), "{page}");
    assert!(page.to_lowercase().contains("retry-after: 120"), "{page}");
    assert!(page.contains("<p>Back at 14:00 UTC</p>"), "{page}");
    let health = raw(&stack, "/api/health");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    stack
        .cutover(&["status"])
        .stdout_contains("MAINTENANCE ON: production answers 503 \"Back at 14:00 UTC\"")
        .success();
    std::thread::sleep(Duration::from_millis(500));

    // This host's own address allowed: the app again, while maintenance stays on.
    stack
        .cutover(&["maintenance", "on"])
        .env("MAINTENANCE_ALLOW", "127.0.0.1")
        .success();
    assert_eq!(stack.version(), "v1");

    stack
        .cutover(&["maintenance", "off"])
        .stdout_contains("maintenance off")
        .success();
    assert_eq!(stack.version(), "v1");
    assert!(raw(&stack, "/").starts_with("HTTP/1.1 200"));
    std::thread::sleep(Duration::from_millis(500));
    let report = load.stop();

    assert_eq!(
        support::stack::get(stack.ports.admin, "/config/"),
        config,
        "Caddy's config changed: a switch must reload nothing"
    );
    for group in &report.groups {
        assert!(group.errors.is_empty(), "{}", report.describe());
        assert!(
            group.statuses.keys().all(|s| *s == 503),
            "only the page's 503 may fail: {}",
            report.describe()
        );
        assert!(
            group.statuses.get(&503).is_some_and(|n| *n > 0),
            "{}",
            report.describe()
        );
    }
}

#[test]
fn maintenance_takes_on_or_off_and_a_dry_run_changes_nothing() {
    let settings = "STACK_NAME=x\n";
    Test::new()
        .file("deploy/.env.blue-green", settings)
        .args(["maintenance", "sideways"])
        .stderr_contains("maintenance takes \"on\" or \"off\", not \"sideways\"")
        .status(1);
    let run = Test::new()
        .file("deploy/.env.blue-green", settings)
        .args(["--dry-run", "maintenance", "on", "soon"])
        .stderr_contains("would file::write deploy/caddy/maintenance/on (2 bytes)")
        .success();
    assert!(!run.path().join("deploy/caddy/maintenance").exists());
}
