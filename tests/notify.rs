//! `NOTIFY_URL`: a webhook told when a release-changing run ends — who ran what, how it ended,
//! what changed — failed runs included, secrets masked, and never at the cost of the run: a
//! receiver that fails or hangs changes neither the outcome nor the exit code.

use crate::{support::http::Server, test::Test};

const PROMOTE: &str = r#"//! A promotion.
//!
//! kind: promotion
fn main(env) {
    state::set("token_used", env::get("JWT_SECRET", "none"));
    print(`promoted ${env}`);
}
fn main(env, fail) { throw `${env} is not healthy`; }
"#;

fn text(server: &Server) -> Vec<String> {
    server
        .requests()
        .iter()
        .map(|r| {
            let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
            body["text"].as_str().unwrap_or("").to_string()
        })
        .collect()
}

#[test]
fn a_finished_promotion_is_posted_with_its_changes_and_no_secret() {
    let server = Server::start();
    Test::new()
        .runbook("promote", PROMOTE)
        .env("NOTIFY_URL", format!("{}/hook", server.url))
        .env("JWT_SECRET", "notify-canary-secret-42")
        .args(["promote", "green"])
        .success();
    let requests = server.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].header("content-type"), Some("application/json"));
    assert!(
        !requests[0].body.contains("notify-canary-secret-42"),
        "{}",
        requests[0].body
    );
    let body: serde_json::Value = serde_json::from_str(&requests[0].body).unwrap();
    assert_eq!(body["cutover"]["outcome"], "ok");
    assert_eq!(body["cutover"]["kind"], "promotion");
    let text = body["text"].as_str().unwrap();
    assert!(
        text.starts_with("cutover promotion: `cutover promote green` by "),
        "{text}"
    );
    assert!(text.contains(" ok in "), "{text}");
    assert!(
        text.contains("1 change(s):\n• state::set token_used = \"***\""),
        "{text}"
    );

    // A failed run is posted too, with the first line of its error.
    Test::new()
        .runbook("promote", PROMOTE)
        .env("NOTIFY_URL", format!("{}/hook", server.url))
        .args(["promote", "green", "fail"])
        .status(1);
    let texts = self::text(&server);
    assert_eq!(texts.len(), 2);
    assert!(texts[1].contains(" failed in "), "{}", texts[1]);
    assert!(texts[1].contains("green is not healthy"), "{}", texts[1]);
}

#[test]
fn runs_of_other_kinds_dry_runs_and_readonly_runs_notify_nobody() {
    let server = Server::start();
    let url = format!("{}/hook", server.url);
    Test::new()
        .runbook("other", "fn main() { state::set(\"x\", 1); }")
        .env("NOTIFY_URL", &url)
        .args(["other"])
        .success();
    Test::new()
        .runbook("promote", PROMOTE)
        .env("NOTIFY_URL", &url)
        .args(["--dry-run", "promote", "green"])
        .success();
    assert!(server.requests().is_empty(), "{:?}", server.requests());
    // NOTIFY_KINDS chooses the kinds.
    Test::new()
        .runbook("other", "fn main() { state::set(\"x\", 1); }")
        .env("NOTIFY_URL", &url)
        .env("NOTIFY_KINDS", "other")
        .args(["other"])
        .success();
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn a_failing_or_hanging_receiver_changes_nothing_about_the_run() {
    let server = Server::start();
    let run = Test::new()
        .runbook("promote", PROMOTE)
        .env("NOTIFY_URL", format!("{}/status/500", server.url))
        .args(["promote", "green"])
        .success();
    assert_eq!(server.requests().len(), 2, "tried twice");
    assert!(
        run.stderr
            .contains("the notification to *** was not sent: answered HTTP 500"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains(&server.url),
        "the webhook URL is masked"
    );

    let run = Test::new()
        .runbook("promote", PROMOTE)
        .env("NOTIFY_URL", format!("{}/slow", server.url))
        .env("NOTIFY_TIMEOUT", "0.5")
        .args(["promote", "green", "fail"])
        .status(1);
    assert!(
        run.stderr
            .contains("was not sent: no answer within 0.5 s (NOTIFY_TIMEOUT)"),
        "{}",
        run.stderr
    );
    let journal = std::fs::read_to_string(run.path().join("deploy/cutover-journal.jsonl")).unwrap();
    assert!(
        journal.contains("was not sent: no answer within 0.5 s"),
        "{journal}"
    );
}
