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

/// Secrets that enter by every path at once, each with a value no other part of the test
/// writes, and every one of them reaches an output. Beside them, their inputs.
const EVERY_PATH: &str = r#"//! Every path a secret can come in by.
fn main(url) {
    // The compose file's .env, a service's env_file, and compose::load's env_file option.
    print(compose::load("stack/compose.yaml"));
    print(compose::load("stack/compose.yaml", #{env_file: "other.env"}));
    // The settings file (--env-file) and the process environment.
    print(`settings ${env::get("JWT_SECRET")} process ${env::get("POSTGRES_PASSWORD")}`);
    // URLs: a password in the user info reaching a parse error, one in a query parameter.
    try { http::get("http://u:canary-url-pw@127.0.0.1:99999/"); } catch (e) { print(`http: ${e}`); }
    print(`isready ${pg::isready("postgres://u@127.0.0.1:1/db?password=canary-query-pw")}`);
    try { health::wait([#{postgres: "postgres://u:canary-health-pw@127.0.0.1:1/db"}], #{timeout: 200}); }
    catch (e) { print(`health: ${e}`); }
    // A bearer token, shown alone; a Basic password ("u:canary-basic-pw").
    let r = http::get(`${url}/echo`, #{headers: #{Authorization: "Bearer canary-bearer-tok",
        "Proxy-Authorization": "Basic dTpjYW5hcnktYmFzaWMtcHc="}});
    print(r.body);
    print("the token was canary-bearer-tok, the password canary-basic-pw");
    // secret::get: escaped in a debug form, and URL-encoded by the HTTP client.
    let zw = secret::get("ZERO_WIDTH_SECRET");
    print([zw]);
    let encoded = secret::get("ENCODED_PASSWORD");
    print(http::get(`${url}/echo?q=${encoded}`).body);
    // A line longer than 64 KiB, secrets back to back where it is cut; a child still running.
    let long = secret::get("LONG_SECRET");
    exec::run(["sh", "-c", "head -c 65000 /dev/zero | tr '\\0' x; for i in $(seq 1000); do printf '%s ' \"$S\"; done; echo; sleep 2"],
        #{env: #{S: long}});
    throw `failed with ${zw} ${encoded} ${long}`;
}"#;

const COMPOSE: &str = r#"services:
  api:
    image: cutover-never-pulled:1
    environment:
      DATABASE_URL: "postgres://app:${DB_PASSWORD}@db/app"
    env_file: app.env
    command: ["serve", "--password", "${DB_PASSWORD}"]
"#;

/// Every process below `root` (its children, theirs…), by pid.
fn descendants(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let status = std::fs::read_to_string(entry.path().join("status")).ok()?;
            let ppid = status.lines().find_map(|l| l.strip_prefix("PPid:"))?;
            Some((pid, ppid.trim().parse().ok()?))
        })
        .collect();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        i += 1;
    }
    found.remove(0);
    found
}

#[test]
fn no_secret_from_any_path_reaches_any_output_or_file() {
    let server = Server::start();
    let inputs = [
        ("runbooks/every.rhai", EVERY_PATH),
        ("vars.env", "JWT_SECRET=canary-settings-jwt\n"),
        ("stack/compose.yaml", COMPOSE),
        ("stack/.env", "DB_PASSWORD=canary-dotenv-pw\n"),
        ("stack/app.env", "API_KEY=canary-envfile-key\n"),
        (
            "other.env",
            "DB_PASSWORD=canary-option-pw\nSESSION_SECRET=canary-option-secret\n",
        ),
    ];
    let mut test = Test::new()
        .env("POSTGRES_PASSWORD", "canary-process-pw")
        .env("ZERO_WIDTH_SECRET", "canary\u{200b}zero\twidth")
        .env("ENCODED_PASSWORD", "canary enc@ded\"pw")
        .env("LONG_SECRET", "canary-long-line-secret");
    for (path, text) in inputs {
        test = test.file(path, text);
    }
    for format in ["text", "json"] {
        let child = test.start(&[
            "-vv",
            "--log-format",
            format,
            "--env-file",
            "vars.env",
            "every",
            &server.url,
        ]);
        // While it runs: no process it started carries a secret on its command line.
        let pid = child.id();
        let output = std::thread::spawn(move || crate::test::Ran::of(child));
        let mut children_seen = 0;
        while !output.is_finished() {
            for child in descendants(pid) {
                if let Ok(cmdline) = std::fs::read(format!("/proc/{child}/cmdline")) {
                    children_seen += usize::from(!cmdline.is_empty());
                    assert_clean(&format!("/proc/{child}/cmdline"), &cmdline);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(children_seen > 0, "never saw the runbook's child process");
        let ran = output.join().unwrap().status(1);
        // Each path did reach its output: masked there.
        for seen in [
            "DATABASE_URL",
            "API_KEY",
            "settings *** process ***",
            "http: ",
            "isready false",
            "health: ",
            "the token was ***, the password ***",
            "failed with *** *** ***",
        ] {
            // Printed lines are the runbook's output (stdout), the rest is log (stderr).
            let both = format!("{}{}", ran.stdout, ran.stderr);
            assert!(both.contains(seen), "{format}: lacks {seen:?}:\n{both}");
        }
        assert!(
            ran.stderr.matches("*** ").count() >= 1000,
            "the long line was not logged"
        );
        assert_clean(
            &format!("stdout of the {format} run"),
            ran.stdout.as_bytes(),
        );
        assert_clean(
            &format!("stderr of the {format} run"),
            ran.stderr.as_bytes(),
        );
    }
    // The secrets did reach the server.
    let requests = server.requests();
    assert_eq!(
        requests[0].header("authorization"),
        Some("Bearer canary-bearer-tok")
    );
    for args in [
        vec!["history", "-n", "100"],
        vec!["history", "--json", "-n", "100"],
    ] {
        let ran = test.run(&args).success();
        assert_clean(&format!("{args:?}"), ran.stdout.as_bytes());
        assert_clean(&format!("{args:?}"), ran.stderr.as_bytes());
    }
    for file in files(test.path()) {
        let relative = file.strip_prefix(test.path()).unwrap().to_str().unwrap();
        if inputs.iter().any(|(path, _)| *path == relative) {
            continue;
        }
        assert_clean(relative, &std::fs::read(&file).unwrap());
    }
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
