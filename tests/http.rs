//! `http::get` / `http::post` against a real HTTP server on 127.0.0.1: JSON in and out, headers,
//! statuses, timeouts, and posts that honour dry runs, readonly runbooks and the journal.

use crate::{
    support::{free_port, http::Server},
    test::Test,
};

#[test]
fn get_returns_status_body_json_and_headers() {
    let server = Server::start();
    Test::new()
        .runbook(
            "r",
            r#"fn main(url) {
    let r = http::get(`${url}/json`);
    print(`status=${r.status} ok=${r.json.ok} n=${r.json.n + 1} type=${r.headers["content-type"]} ms=${r.ms >= 0}`);
    let r = http::get(`${url}/text`);
    print(`body=${r.body} json=${r.json}`);
    let r = http::get(`${url}/status/503`);
    print(`unavailable=${r.status} ${r.body}`);
}"#,
        )
        .args(["r", &server.url])
        .stdout_contains("status=200 ok=true n=4 type=application/json ms=true")
        .stdout_contains("body=plain text json=\n")
        .stdout_contains("unavailable=503 status 503")
        .success();
}

#[test]
fn post_sends_json_text_and_headers() {
    let server = Server::start();
    Test::new()
        .runbook(
            "r",
            r#"fn main(url) {
    let r = http::post(`${url}/echo/map`, #{ env: "green", n: 2, tags: ["a"] }, #{ headers: #{ "X-Test": "yes" }, timeout: 5000 });
    print(`echoed method=${r.json.method} status=${r.status}`);
    http::post(`${url}/echo/text`, "hello");
    http::post(`${url}/echo/empty`, ());
}"#,
        )
        .args(["r", &server.url])
        .stdout_contains("echoed method=POST status=200")
        .success();
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    let map = &requests[0];
    assert_eq!(
        (map.method.as_str(), map.target.as_str()),
        ("POST", "/echo/map")
    );
    assert_eq!(map.header("content-type"), Some("application/json"));
    assert_eq!(map.header("x-test"), Some("yes"));
    let body: serde_json::Value = serde_json::from_str(&map.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({ "env": "green", "n": 2, "tags": ["a"] })
    );
    assert_eq!(
        requests[1].header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(requests[1].body, "hello");
    assert_eq!(requests[2].body, "");
}

#[test]
fn posts_honour_dry_run_and_readonly_and_are_journaled() {
    let server = Server::start();
    let test = Test::new()
        .runbook(
            "post",
            r#"fn main(url) { print(`status=${http::post(`${url}/echo/hook`, #{ text: "green is live" }).status}`); }"#,
        )
        .runbook(
            "ro",
            r#"//! readonly
fn main(url) {
    print(`read=${http::get(`${url}/json`).status}`);
    http::post(`${url}/echo/hook`, "x");
}"#,
        );
    let dry = test.run(&["--dry-run", "post", &server.url]).success();
    assert!(
        dry.stderr.contains(&format!(
            "would http::post {}/echo/hook (24 bytes)",
            server.url
        )) && dry.stdout.contains("status=200"),
        "{}{}",
        dry.stdout,
        dry.stderr
    );
    assert!(server.requests().is_empty(), "a dry run posted");

    let refused = test.run(&["ro", &server.url]).status(1);
    assert!(
        refused.stdout.contains("read=200")
            && refused.stderr.contains(&format!(
                "http::post {}/echo/hook (1 byte): refused, `ro` is a readonly runbook",
                server.url
            )),
        "{}{}",
        refused.stdout,
        refused.stderr
    );
    assert_eq!(server.requests().len(), 1, "only the get was sent");

    test.run(&["post", &server.url]).success();
    assert_eq!(server.requests().len(), 2);
    let journal =
        std::fs::read_to_string(test.path().join("deploy/cutover-journal.jsonl")).unwrap();
    assert!(
        journal.contains(&format!(
            r#""event":"change","message":"http::post {}/echo/hook (24 bytes)","outcome":"ok""#,
            server.url
        )),
        "{journal}"
    );
}

#[test]
fn timeouts_refused_connections_and_bad_urls_are_clear_errors() {
    let server = Server::start();
    let port = free_port();
    for (call, message) in [
        (
            format!(r#"http::get("{}/slow", #{{ timeout: 200 }})"#, server.url),
            format!("http::get {}/slow: no answer within 200 ms", server.url),
        ),
        (
            format!(r#"http::get("http://127.0.0.1:{port}/")"#),
            format!("http::get http://127.0.0.1:{port}/: "),
        ),
        (
            r#"http::get("not a url")"#.to_string(),
            r#"http::get: "not a url" is not a valid URL"#.to_string(),
        ),
        (
            r#"http::get("ftp://example.com/x")"#.to_string(),
            r#"http::get: "ftp://example.com/x" is not an http or https URL"#.to_string(),
        ),
        (
            format!(r#"http::get("{}/json", #{{ header: #{{}} }})"#, server.url),
            "http::get: unknown option `header` (known: headers, timeout)".to_string(),
        ),
    ] {
        let run = Test::new()
            .runbook("r", &format!("fn main() {{ {call}; }}"))
            .args(["r"])
            .stderr_contains(&format!("runbooks/r.rhai:1:19: {message}"))
            .status(1);
        if call.contains(&port.to_string()) {
            assert!(run.stderr.contains("Connection refused"), "{}", run.stderr);
        }
    }
}
