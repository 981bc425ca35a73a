//! The secret canary: runbooks that log, record, fail, exec and post with known secret values,
//! then every byte cutover wrote — terminal output in text and JSON, the journal, `history`, the
//! state directory, the lock file — is searched for them. Zero hits.

use std::{path::Path, time::Duration};

use crate::{support::http::Server, test::Test};

/// Every canary value contains this word; nothing else the test writes does.
const CANARY: &str = "canary";

const LEAK: &str = r#"//! Tries every way to leak a secret.
//! kind: deployment
fn main(url, arg) {
    let pg = env::get("POSTGRES_PASSWORD");
    let token = env::get("API_TOKEN");
    let quoted = env::get("QUOTED_SECRET");
    let multi = env::get("MULTILINE_KEY");
    let plain = secret::get("PLAIN_VALUE");
    print(`arg=${arg} pg=${pg} token=${token} plain=${plain} quoted=${quoted} multi=${multi}`);
    log::warn(`warn ${plain}`);
    log::debug(`debug ${plain} ${quoted}`);
    audit::record("deployment", `recorded ${plain} ${pg}`, #{ token: token, nested: [plain, quoted] });
    for e in audit::history("deployment", 5) { print(e); }
    let r = exec::run(["sh", "-c", "echo out $1; echo err $PGPASSWORD >&2; printf '%s\n' \"$MULTI\"", "sh", plain],
                      #{ env: #{ PGPASSWORD: pg, MULTI: multi } });
    print(r);
    try { exec::run([`/nonexistent/${plain}`]); } catch (e) { print(`caught ${e}`); }
    let r = http::post(`${url}/echo/${plain}?token=${token}`, #{ password: pg, plain: plain, quoted: quoted },
                       #{ headers: #{ Authorization: `Bearer ${token}`, "X-Plain": plain } });
    print(r.body);
    print(r.json);
    let r = http::get(`${url}/echo?pg=${pg}`);
    print(r);
    throw `failed with ${plain} and ${pg} and ${quoted} and ${multi}`;
}"#;

const HOLD: &str =
    "fn main(arg) {\n    while state::get(\"release\", false) != true { sleep(20); }\n}\n";

fn canaries(test: Test) -> Test {
    test.env("POSTGRES_PASSWORD", "canary-pg-1234")
        .env("API_TOKEN", "canary-token-5678")
        .env("QUOTED_SECRET", r#"canary"quote\back"#)
        .env("MULTILINE_KEY", "canary-line-one\ncanary-line-two")
        .env("PLAIN_VALUE", "canary-plain-9012")
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files(&path));
        } else {
            found.push(path);
        }
    }
    found
}

fn assert_clean(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    assert!(
        !text.contains(CANARY),
        "a secret leaked into {what}:\n{text}"
    );
}

#[test]
fn no_secret_reaches_any_output() {
    let server = Server::start();
    let test = canaries(Test::new().runbook("leak", LEAK).runbook("hold", HOLD));
    let mut outputs = Vec::new();
    for format in ["text", "json"] {
        let ran = test
            .run(&[
                "-vv",
                "--log-format",
                format,
                "leak",
                &server.url,
                "canary-pg-1234",
            ])
            .status(1);
        // The runbook did reach every sink: the masks are there.
        for seen in ["[sh] out ***", "[sh:err] err ***", "failed with ***"] {
            assert!(
                ran.stderr.contains(seen),
                "{format}: lacks {seen:?}:\n{}",
                ran.stderr
            );
        }
        // What it printed is its output, on stdout, masked the same way.
        for seen in ["arg=*** pg=*** token=*** plain=***", "caught "] {
            assert!(
                ran.stdout.contains(seen),
                "{format}: lacks {seen:?}:\n{}",
                ran.stdout
            );
        }
        outputs.push((format!("{format} run"), ran));
    }
    // The secrets did reach the server: the runbook really sent them.
    let requests = server.requests();
    assert_eq!(requests.len(), 4);
    assert!(requests[0].body.contains("canary-pg-1234"));
    assert_eq!(
        requests[0].header("authorization"),
        Some("Bearer canary-token-5678")
    );

    for args in [
        vec!["history", "-n", "100"],
        vec!["history", "--json", "-n", "100"],
        vec!["history", "--kind", "deployment"],
    ] {
        let ran = test.run(&args).success();
        assert!(
            ran.stdout.contains("recorded ***"),
            "{args:?}: {}",
            ran.stdout
        );
        outputs.push((format!("{args:?}"), ran));
    }

    // While a run holds the lock with a secret argument: the lock file and `lock status`.
    let holder = test.start(&["hold", "canary-pg-1234"]);
    let lock_file = test.path().join("deploy/cutover.lock");
    let started = std::time::Instant::now();
    while std::fs::read(&lock_file).map_or(true, |b| b.is_empty()) {
        assert!(started.elapsed() < Duration::from_secs(20), "never held");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_clean("the lock file", &std::fs::read(&lock_file).unwrap());
    let status = test.run(&["lock", "status"]).success();
    assert!(
        status.stdout.contains("running `hold ***`"),
        "{}",
        status.stdout
    );
    outputs.push(("lock status".into(), status));
    outputs.push((
        "lock release".into(),
        test.run(&["lock", "release", "--force"]).success(),
    ));
    std::fs::write(
        test.path().join("deploy/cutover-state.json"),
        r#"{"release": true}"#,
    )
    .unwrap();
    let held = holder.wait_with_output().unwrap();
    assert_clean("the holder's stderr", &held.stderr);
    assert_clean("the holder's stdout", &held.stdout);

    for (what, ran) in &outputs {
        assert_clean(&format!("stdout of {what}"), ran.stdout.as_bytes());
        assert_clean(&format!("stderr of {what}"), ran.stderr.as_bytes());
    }
    let written = files(test.path());
    assert!(
        written
            .iter()
            .any(|f| f.ends_with("deploy/cutover-journal.jsonl"))
    );
    for file in written {
        assert_clean(&file.display().to_string(), &std::fs::read(&file).unwrap());
    }
}

#[test]
fn secret_get_fails_clearly_when_unset() {
    Test::new()
        .runbook("r", "fn main() { secret::get(\"DB_ADMIN_PASSWORD\"); }")
        .args(["r"])
        .stderr_contains(
            "runbooks/r.rhai:1:21: secret DB_ADMIN_PASSWORD is not set (looked in the environment)",
        )
        .status(1);
    Test::new()
        .file("vars.env", "DB_ADMIN_PASSWORD=from-the-file-value\nSHORT=abc\n")
        .runbook(
            "r",
            r#"fn main() { print(`got ${secret::get("DB_ADMIN_PASSWORD")}`); print(secret::get("SHORT")); }"#,
        )
        .args(["--env-file", "vars.env", "r"])
        .stdout_contains("got ***")
        .stderr_contains("secret SHORT is shorter than 4 characters")
        .stderr_lacks("from-the-file-value")
        .stdout_lacks("from-the-file-value")
        .success();
}

/// `http::post` sends what it is given (an API may need the token), so a notification built from
/// a secret is masked with `secret::mask` first: the server gets `***`, in a string and inside a
/// map or an array alike; the unmasked post shows the value does travel when asked to.
#[test]
fn secret_mask_keeps_secrets_out_of_what_is_posted() {
    let server = Server::start();
    Test::new()
        .runbook(
            "notify",
            r#"fn main(url) {
    let message = `promote failed; token ${env::get("JWT_SECRET")}`;
    print(secret::mask(message));
    http::post(`${url}/echo/chat`, #{ text: secret::mask(message), n: 1 });
    http::post(`${url}/echo/chat`, secret::mask(#{ text: message, list: [message, 2] }));
    http::post(`${url}/echo/api`, #{ token: env::get("JWT_SECRET") });
}"#,
        )
        .env("JWT_SECRET", "canary-jwt-3456")
        .args(["notify", &server.url])
        .stdout("promote failed; token ***\n")
        .stderr_lacks("canary-jwt-3456")
        .success();
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    let first: serde_json::Value = serde_json::from_str(&requests[0].body).unwrap();
    assert_eq!(
        first,
        serde_json::json!({"text": "promote failed; token ***", "n": 1})
    );
    let second: serde_json::Value = serde_json::from_str(&requests[1].body).unwrap();
    assert_eq!(
        second,
        serde_json::json!({"text": "promote failed; token ***", "list": ["promote failed; token ***", 2]})
    );
    assert!(requests[2].body.contains("canary-jwt-3456"));
}
