//! `pg::*` against real PostgreSQL 15: a throwaway cluster (password auth over TCP) and
//! PostgreSQL in a locally built container. Backups must be whole or absent, restores must bring
//! back exactly what was dumped or leave the database alone, and no password may show anywhere.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use sha2::Digest;

use crate::{
    support::{
        self, Service,
        postgres::{Cluster, PgContainer, Psql, shared},
    },
    test::Test,
};

/// Runbooks get the URL (no password) as an argument and the password from `DB_PASSWORD`, a
/// secret-looking variable, as an operator would pass them.
const DUMP: &str = r#"fn main(url, to) { print(pg::dump(#{url: url, password: env::get("DB_PASSWORD"), to: to}).to_json()); }
fn main(url, to, format) { print(pg::dump(#{url: url, password: env::get("DB_PASSWORD"), to: to, format: format}).to_json()); }"#;
const RESTORE: &str = r#"fn main(url, from) { print(pg::restore(#{url: url, password: env::get("DB_PASSWORD"), from: from}).to_json()); }
fn main(url, from, terminate) { print(pg::restore(#{url: url, password: env::get("DB_PASSWORD"), from: from, terminate_sessions: terminate == "yes"}).to_json()); }"#;

fn pg_test(cluster: &Cluster) -> Test {
    Test::new()
        .runbook("dump", DUMP)
        .runbook("restore", RESTORE)
        .env("DB_PASSWORD", &cluster.password)
}

/// The JSON a runbook printed with `print(x.to_json())`, one per line.
fn printed(stderr: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .filter_map(|line| line.split_once("INFO  ").map(|(_, json)| json))
        .filter_map(|json| serde_json::from_str(json).ok())
        .collect()
}

fn sha256_hex(path: &Path) -> String {
    sha2::Sha256::digest(std::fs::read(path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn dump_and_restore_round_trip_in_every_format() {
    if !support::require(Service::Postgres) {
        return;
    }
    let cluster = shared();
    let db = cluster.create_database("shop");
    cluster.seed(&db, 2000);
    let original = cluster.fingerprint(&db);

    for (file, format) in [
        ("shop.sql", "plain"),
        ("shop.sql.gz", "plain"),
        ("shop.dump", "custom"),
    ] {
        let dumped = pg_test(cluster)
            .args(["dump", &cluster.bare_url(&db), file, format])
            .stderr_lacks(&cluster.password)
            .success();
        let result = &printed(&dumped.stderr)[0];
        let path = dumped.path().join(file);
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{file} mode");
        assert_eq!(result["path"], file);
        assert_eq!(result["bytes"], meta.len(), "{file} size");
        assert_eq!(result["sha256"], sha256_hex(&path), "{file} checksum");
        assert_eq!(result["format"], format);
        assert_eq!(result["gzip"], file.ends_with(".gz"));
        let head = std::fs::read(&path).unwrap()[..5].to_vec();
        match file {
            "shop.sql" => assert!(head.starts_with(b"--"), "{head:?}"),
            "shop.sql.gz" => assert!(head.starts_with(&[0x1f, 0x8b]), "{head:?}"),
            _ => assert_eq!(head, b"PGDMP"),
        }

        // Into a database that does not exist yet: it is created.
        let copy = support::unique_name("copy").replace('-', "_");
        let restored = pg_test(cluster)
            .args(["restore", &cluster.bare_url(&copy), file])
            .stderr_lacks(&cluster.password);
        std::fs::copy(&path, restored.path().join(file)).unwrap();
        let restored = restored.success();
        let report = &printed(&restored.stderr)[0];
        assert_eq!(
            cluster.fingerprint(&copy),
            original,
            "{file} restored into {copy}"
        );
        assert_eq!(report["replaced"], false);
        assert_eq!(report["tables"]["public.customers"], 2000);
        assert_eq!(report["tables"]["public.orders"], 6000);
        assert_eq!(report["tables"]["public.empty"], 0);
        assert_eq!(report["rows"], 8000);
        if format == "plain" {
            assert!(report["statements"].as_u64().unwrap() > 10, "{report}");
        }
    }
}

#[test]
fn restore_replaces_a_changed_database() {
    if !support::require(Service::Postgres) {
        return;
    }
    let cluster = shared();
    let db = cluster.create_database("live");
    cluster.seed(&db, 500);
    let original = cluster.fingerprint(&db);
    let databases = cluster.databases_like(&db);
    let dumped = pg_test(cluster)
        .args(["dump", &cluster.bare_url(&db), "live.sql.gz"])
        .success();
    cluster.psql(
        &db,
        "DELETE FROM orders WHERE id % 2 = 0; UPDATE customers SET name = 'changed'; CREATE TABLE extra (x int)",
    );
    assert_ne!(cluster.fingerprint(&db), original);
    let restored = pg_test(cluster).args(["restore", &cluster.bare_url(&db), "live.sql.gz"]);
    std::fs::copy(
        dumped.path().join("live.sql.gz"),
        restored.path().join("live.sql.gz"),
    )
    .unwrap();
    let restored = restored.success();
    assert_eq!(printed(&restored.stderr)[0]["replaced"], true);
    assert_eq!(cluster.fingerprint(&db), original);
    assert_eq!(
        cluster.databases_like(&db),
        databases,
        "no scratch or replaced database is left"
    );
}

#[test]
fn container_dump_and_restore() {
    if !support::require(Service::Docker) || !support::require(Service::Postgres) {
        return;
    }
    let container = PgContainer::start();
    container.psql("postgres", "CREATE DATABASE app");
    container.seed("app", 1000);
    let original = container.fingerprint("app");
    let runbook = r#"
fn main(name) {
    let app = #{container: name, db: "app"};
    if !pg::isready(app) { throw "not ready"; }
    let plain = pg::dump(app + #{to: "backups/", gzip: true});
    let custom = pg::dump(app + #{to: "backups/", format: "custom"});
    print(plain.to_json());
    print(custom.to_json());
    print(pg::restore(#{container: name, db: "from_plain", from: plain.path}).to_json());
    print(pg::restore(#{container: name, db: "from_custom", from: custom.path}).to_json());
    print(pg::restore(app + #{from: custom.path}).to_json());
}"#;
    let test = Test::new()
        .runbook("r", runbook)
        .args(["r", &container.name]);
    std::fs::create_dir(test.path().join("backups")).unwrap();
    let run = test.success();
    let results = printed(&run.stderr);
    for dump in &results[..2] {
        let path = run.path().join(dump["path"].as_str().unwrap());
        assert_eq!(dump["sha256"], sha256_hex(&path));
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    assert!(
        results[0]["path"].as_str().unwrap().ends_with(".sql.gz"),
        "{}",
        results[0]
    );
    assert!(
        results[1]["path"].as_str().unwrap().ends_with(".dump"),
        "{}",
        results[1]
    );
    assert_eq!(results[2]["rows"], 4000);
    assert_eq!(container.fingerprint("from_plain"), original);
    assert_eq!(container.fingerprint("from_custom"), original);
    assert_eq!(results[4]["replaced"], true);
    assert_eq!(container.fingerprint("app"), original);
}

/// A database big enough that a dump of it takes a while (about 70 MB of SQL).
fn big_database() -> &'static str {
    static BIG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIG.get_or_init(|| {
        let cluster = shared();
        let db = cluster.create_database("big");
        cluster.psql(
            &db,
            "CREATE TABLE big AS SELECT g, repeat(md5(g::text), 4) AS t FROM generate_series(1, 500000) g",
        );
        db
    })
}

/// The process named `name` whose parent is `parent`.
fn child_named(parent: u32, name: &str) -> Option<i32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let status = std::fs::read_to_string(entry.path().join("status")).ok()?;
            let field = |key: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(key))
                    .map(|v| v.trim().to_string())
            };
            (field("Name:")? == name && field("PPid:")? == parent.to_string()).then_some(pid)
        })
}

fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Starts a dump of the big database into `backups/big.sql` and waits until pg_dump's output is
/// arriving in the temporary file; returns the run, its directory and pg_dump's pid.
fn dump_in_progress(app_name: &str) -> (crate::test::Running, PathBuf, i32) {
    let cluster = shared();
    let test = pg_test(cluster)
        .env("PGAPPNAME", app_name)
        .args(["dump", &cluster.bare_url(big_database()), "backups/big.sql"])
        .stderr_lacks(&cluster.password);
    let backups = test.path().join("backups");
    std::fs::create_dir(&backups).unwrap();
    let running = test.spawn();
    let pg_dump = wait_for("pg_dump to start", || {
        child_named(running.child.id(), "pg_dump")
    });
    wait_for("dump data in the temporary file", || {
        std::fs::read_dir(&backups)
            .unwrap()
            .flatten()
            .find(|e| e.metadata().is_ok_and(|m| m.len() > 0))
    });
    (running, backups, pg_dump)
}

#[test]
fn killed_pg_dump_leaves_no_file() {
    if !support::require(Service::Postgres) {
        return;
    }
    let (running, backups, pg_dump) = dump_in_progress("cutover-test-kill");
    // The password reaches pg_dump in its environment, never on its command line.
    let cmdline = std::fs::read(format!("/proc/{pg_dump}/cmdline")).unwrap();
    let environ = std::fs::read(format!("/proc/{pg_dump}/environ")).unwrap();
    let password = shared().password.as_bytes();
    assert!(
        !cmdline.windows(password.len()).any(|w| w == password),
        "password on the command line"
    );
    let pgpassword = [b"PGPASSWORD=".as_slice(), password].concat();
    assert!(
        environ.windows(pgpassword.len()).any(|w| w == pgpassword),
        "PGPASSWORD not set"
    );

    unsafe { libc::kill(pg_dump, libc::SIGKILL) };
    let (finished, _) = running.finish(1, Instant::now());
    assert!(
        finished.stderr.contains("pg_dump was killed by signal 9"),
        "{}",
        finished.stderr
    );
    assert!(
        finished
            .stderr
            .contains("nothing was written to backups/big.sql"),
        "{}",
        finished.stderr
    );
    assert_eq!(
        files_in(&backups),
        Vec::<String>::new(),
        "no backup and no temporary file"
    );
}

#[test]
fn server_ending_the_dump_leaves_no_file() {
    if !support::require(Service::Postgres) {
        return;
    }
    let app = support::unique_name("cutover-test-terminate");
    let (running, backups, pg_dump) = dump_in_progress(&app);
    // Hold pg_dump still while its server session is ended, so the end comes mid-stream.
    unsafe { libc::kill(pg_dump, libc::SIGSTOP) };
    let ended = shared().psql(
        "postgres",
        &format!("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = '{app}'"),
    );
    unsafe { libc::kill(pg_dump, libc::SIGCONT) };
    assert_eq!(ended, "1");
    let (finished, _) = running.finish(1, Instant::now());
    assert!(
        finished.stderr.contains("pg_dump exited with code 1"),
        "{}",
        finished.stderr
    );
    assert!(finished.stderr.contains("terminat"), "{}", finished.stderr);
    assert!(
        finished
            .stderr
            .contains("nothing was written to backups/big.sql"),
        "{}",
        finished.stderr
    );
    assert_eq!(files_in(&backups), Vec::<String>::new());
}

#[test]
fn interrupted_dump_and_restore_leave_nothing_behind() {
    if !support::require(Service::Postgres) {
        return;
    }
    let (running, backups, pg_dump) = dump_in_progress("cutover-test-interrupt");
    // Hold pg_dump still so the interrupt surely comes mid-stream.
    unsafe { libc::kill(pg_dump, libc::SIGSTOP) };
    running.signal(libc::SIGINT);
    let (_finished, _) = running.finish(130, Instant::now());
    assert_eq!(files_in(&backups), Vec::<String>::new());
    wait_for("pg_dump to be stopped", || {
        let status = std::fs::read_to_string(format!("/proc/{pg_dump}/status")).unwrap_or_default();
        (status.is_empty() || status.contains("zombie")).then_some(())
    });

    // A restore interrupted while loading drops its scratch database.
    let cluster = shared();
    let dump = pg_test(cluster)
        .args([
            "dump",
            &cluster.bare_url(big_database()),
            "big.dump",
            "custom",
        ])
        .success();
    let target = support::unique_name("restored").replace('-', "_");
    let test = pg_test(cluster).args(["restore", &cluster.bare_url(&target), "big.dump"]);
    std::fs::copy(dump.path().join("big.dump"), test.path().join("big.dump")).unwrap();
    let running = test.spawn();
    let scratch_prefix = format!("{target}__restore_");
    wait_for("the scratch database", || {
        cluster.databases_like(&scratch_prefix).pop()
    });
    std::thread::sleep(Duration::from_millis(100));
    running.signal(libc::SIGINT);
    let (finished, _) = running.finish(130, Instant::now());
    assert!(
        finished.stderr.contains("scratch database"),
        "{}",
        finished.stderr
    );
    assert_eq!(
        cluster.databases_like(&target),
        Vec::<String>::new(),
        "scratch database left behind"
    );
}

#[test]
fn wrong_password_fails_clearly_and_shows_no_secret() {
    if !support::require(Service::Postgres) {
        return;
    }
    let cluster = shared();
    let wrong = "Wr0ng-passw0rd-for-the-test";
    let in_url = "s3cret%40in-the-url";
    let runbook = r#"
fn main(url, url_with_password) {
    let pw = env::get("DB_PASSWORD");
    for target in [#{url: url, password: pw}, url_with_password] {
        try { pg::isready(target); } catch (e) { print(`isready: ${e}`); }
        try { pg::query(target, "SELECT 1"); } catch (e) { print(`query: ${e}`); }
    }
    try { pg::restore(#{url: url_with_password, from: "x.sql"}); } catch (e) { print(`restore: ${e}`); }
    try { pg::dump(#{url: url_with_password, to: "backups/x.sql"}); } catch (e) { print(`dump: ${e}`); }
    pg::dump(#{url: url, password: pw, to: "backups/y.sql"});
}"#;
    let url = cluster.bare_url("postgres");
    let url_with_password = url.replace("postgres@", &format!("postgres:{in_url}@"));
    let test = Test::new()
        .runbook("r", runbook)
        .file("x.sql", "SELECT 1;\n")
        .env("DB_PASSWORD", wrong)
        .args(["-v", "r", &url, &url_with_password]);
    std::fs::create_dir(test.path().join("backups")).unwrap();
    let run = test.status(1);
    let output = format!("{}{}", run.stdout, run.stderr);
    for secret in [wrong, in_url, "s3cret@in-the-url", &cluster.password] {
        assert!(!output.contains(secret), "{secret:?} shown:\n{output}");
    }
    for call in ["isready", "query", "restore", "dump"] {
        assert!(
            output.contains(&format!("{call}: ")) || call == "dump",
            "{call} did not fail:\n{output}"
        );
    }
    let failures = output
        .matches("password authentication failed for user \"postgres\"")
        .count();
    assert!(failures >= 7, "{failures} clear failures:\n{output}");
    // The journal of changes (logged at debug until the audit journal lands) is masked too.
    assert!(output.contains("change failed: pg::dump"), "{output}");
    assert_eq!(files_in(&run.path().join("backups")), Vec::<String>::new());
}

#[test]
fn bad_options_and_missing_directory_change_nothing() {
    let cases = [
        (
            r#"pg::dump(#{url: "postgres://u@127.0.0.1:1/db", to: "nope/x.sql"})"#,
            "pg::dump: cannot write nope/x.sql: directory nope does not exist",
        ),
        (
            r#"pg::dump(#{url: "postgres://u@127.0.0.1:1/db", to: "x.sql", fromat: "custom"})"#,
            "pg::dump: unknown option `fromat`",
        ),
        (
            r#"pg::dump(#{url: "postgres://u@127.0.0.1:1/db", to: "x.sql", format: "tar"})"#,
            "format \"tar\" is not one of plain, custom",
        ),
        (
            r#"pg::dump(#{url: "postgres://u@127.0.0.1:1/db", to: "x.dump", format: "custom", gzip: true})"#,
            "gzip applies to plain dumps",
        ),
        (
            r#"pg::dump(#{url: "mysql://u:hunter2-secret@h/db", to: "x.sql"})"#,
            "scheme must be postgres:// or postgresql://",
        ),
        (
            r#"pg::dump(#{url: "postgres://u@h/db", container: "c", to: "x.sql"})"#,
            "either `url` or `container`",
        ),
        (
            r#"pg::dump(#{container: "c", to: "x.sql"})"#,
            "option `db` (the database in the container) is missing",
        ),
        (
            r#"pg::restore(#{url: "postgres://u@127.0.0.1:1/db", from: "missing.sql"})"#,
            "cannot read missing.sql",
        ),
        (
            r#"pg::prune(#{dir: "b", db: "app", keep: 0})"#,
            "keep must be at least 1",
        ),
        (
            r#"pg::prune(#{dir: "nope", db: "app", keep: 1})"#,
            "directory nope does not exist",
        ),
    ];
    for (call, message) in cases {
        let run = Test::new()
            .runbook("r", &format!("fn main() {{\n    {call};\n}}\n"))
            .file("b/app-20260101-000000.sql", "")
            .args(["r"])
            .stderr_contains(message)
            .stderr_contains("runbooks/r.rhai:2:")
            .stderr_lacks("hunter2-secret")
            .status(1);
        assert_eq!(
            files_in(&run.path()),
            ["b", "runbooks"],
            "{call} left files"
        );
        assert_eq!(files_in(&run.path().join("b")), ["app-20260101-000000.sql"]);
    }
}

#[test]
fn server_down_fails_fast() {
    if !support::require(Service::Postgres) {
        return;
    }
    let url = format!("postgres://postgres@127.0.0.1:{}/app", support::free_port());
    let runbook = r#"
fn main(url) {
    print(`ready: ${pg::isready(url)}`);
    pg::dump(#{url: url, to: "backups/app.sql"});
}"#;
    let test = Test::new()
        .runbook("r", runbook)
        .args(["r", &url])
        .stderr_contains("ready: false")
        .stderr_contains("pg_dump exited with code 1")
        .stderr_contains("Connection refused")
        .stderr_contains("nothing was written to backups/app.sql");
    std::fs::create_dir(test.path().join("backups")).unwrap();
    let started = Instant::now();
    let run = test.status(1);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(files_in(&run.path().join("backups")), Vec::<String>::new());
}

#[test]
fn retention_keeps_the_newest_backups() {
    if !support::require(Service::Postgres) {
        return;
    }
    let cluster = shared();
    let db = cluster.create_database("kept");
    let runbook = r#"
fn main(url) {
    let first = pg::dump(#{url: url, password: env::get("DB_PASSWORD"), to: "backups"});
    let second = pg::dump(#{url: url, password: env::get("DB_PASSWORD"), to: "backups/", format: "custom"});
    print(#{first: first.path, second: second.path, listed: pg::backups("backups", first.database)}.to_json());
    print(pg::prune(#{dir: "backups", db: first.database, keep: 3}).to_json());
}"#;
    let mut test = Test::new()
        .runbook("r", runbook)
        .env("DB_PASSWORD", &cluster.password)
        .args(["r", &cluster.bare_url(&db)]);
    let old = [
        format!("{db}-20200101-000000.sql"),
        format!("{db}-20210101-000000.sql.gz"),
        format!("{db}-20220101-000000.dump"),
    ];
    for name in old.iter().chain([
        &format!("other-{db}-20200101-000000.sql"),
        &"notes.txt".to_string(),
    ]) {
        test = test.file(&format!("backups/{name}"), "x");
    }
    let run = test.success();
    let results = printed(&run.stderr);
    let (first, second) = (
        results[0]["first"].as_str().unwrap(),
        results[0]["second"].as_str().unwrap(),
    );
    let stamp = first
        .trim_start_matches(&format!("backups/{db}-"))
        .trim_end_matches(".sql");
    assert!(
        stamp.len() == 15
            && stamp.chars().enumerate().all(|(i, c)| if i == 8 {
                c == '-'
            } else {
                c.is_ascii_digit()
            }),
        "{first} is not named DB-YYYYMMDD-HHMMSS.sql"
    );
    assert!(second.ends_with(".dump"), "{second}");
    assert_eq!(results[0]["listed"][0], second);
    assert_eq!(results[0]["listed"].as_array().unwrap().len(), 5);
    let deleted: Vec<&str> = results[1]["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        deleted,
        [format!("backups/{}", old[1]), format!("backups/{}", old[0])]
    );
    let mut expected = vec![
        old[2].clone(),
        first.trim_start_matches("backups/").to_string(),
        second.trim_start_matches("backups/").to_string(),
        format!("other-{db}-20200101-000000.sql"),
        "notes.txt".to_string(),
    ];
    expected.sort();
    assert_eq!(files_in(&run.path().join("backups")), expected);
    assert!(run.stderr.contains("changed: pg::prune delete") || !run.stderr.contains("DEBUG"));
}

#[test]
fn dry_run_changes_nothing() {
    if !support::require(Service::Postgres) {
        return;
    }
    let cluster = shared();
    let db = cluster.create_database("dry");
    cluster.seed(&db, 100);
    let dumped = pg_test(cluster)
        .args(["dump", &cluster.bare_url(&db), "dry.sql"])
        .success();
    cluster.psql(&db, "DELETE FROM orders");
    let before = cluster.fingerprint(&db);
    let databases = cluster.databases_like(&db);
    let runbook = r#"
fn main(url, fresh) {
    let pw = env::get("DB_PASSWORD");
    print(pg::dump(#{url: url, password: pw, to: "new.sql"}).to_json());
    print(pg::restore(#{url: url, password: pw, from: "dry.sql"}).to_json());
    print(pg::restore(#{url: fresh, password: pw, from: "dry.sql"}).to_json());
    print(pg::prune(#{dir: "backups", db: "dry", keep: 1}).to_json());
}"#;
    let fresh_name = format!("{db}_never_created");
    let fresh = cluster.bare_url(&fresh_name);
    let test = pg_test(cluster)
        .runbook("r", runbook)
        .file("backups/dry-20200101-000000.sql", "x")
        .file("backups/dry-20210101-000000.sql", "x")
        .args(["--dry-run", "r", &cluster.bare_url(&db), &fresh])
        .stderr_contains("would pg::dump")
        .stderr_contains("would pg::restore")
        .stderr_contains("would pg::prune delete backups/dry-20200101-000000.sql");
    std::fs::copy(dumped.path().join("dry.sql"), test.path().join("dry.sql")).unwrap();
    let run = test.success();
    let results = printed(&run.stderr);
    assert_eq!(results[0]["dry_run"], true);
    assert_eq!(results[1]["format"], "plain");
    assert_eq!(results[3]["deleted"][0], "backups/dry-20200101-000000.sql");
    assert!(!run.path().join("new.sql").exists());
    assert_eq!(files_in(&run.path().join("backups")).len(), 2);
    assert_eq!(cluster.fingerprint(&db), before);
    assert_eq!(cluster.databases_like(&db), databases);
}

/// A psql session connected to `db`, sleeping, until killed or terminated.
fn hold_session(cluster: &Cluster, db: &str, app: &str) -> Child {
    let child = Command::new("psql")
        .env("PGPASSWORD", &cluster.password)
        .env("PGAPPNAME", app)
        .args(["-X", "-q", "-c", "SELECT pg_sleep(120)", &cluster.url(db)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the session to connect", || {
        let n = cluster.psql(
            "postgres",
            &format!("SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app}'"),
        );
        (n == "1").then_some(())
    });
    child
}

#[test]
fn restore_over_connected_sessions_needs_terminate_sessions() {
    if !support::require(Service::Postgres) {
        return;
    }
    let cluster = shared();
    let db = cluster.create_database("busy");
    cluster.seed(&db, 100);
    let original = cluster.fingerprint(&db);
    let dumped = pg_test(cluster)
        .args(["dump", &cluster.bare_url(&db), "busy.dump", "custom"])
        .success();
    cluster.psql(&db, "DELETE FROM orders");
    let changed = cluster.fingerprint(&db);
    let databases = cluster.databases_like(&db);
    let app = support::unique_name("busy-app");
    let mut session = hold_session(cluster, &db, &app);

    let refused = pg_test(cluster)
        .args(["restore", &cluster.bare_url(&db), "busy.dump"])
        .stderr_contains(&format!(
            "database {db} has 1 other session(s) connected (postgres@127.0.0.1 ({app}))"
        ))
        .stderr_contains("terminate_sessions: true");
    std::fs::copy(
        dumped.path().join("busy.dump"),
        refused.path().join("busy.dump"),
    )
    .unwrap();
    refused.status(1);
    assert_eq!(cluster.fingerprint(&db), changed);
    assert_eq!(cluster.databases_like(&db), databases);
    assert!(
        session.try_wait().unwrap().is_none(),
        "the session was ended"
    );

    let forced = pg_test(cluster).args(["restore", &cluster.bare_url(&db), "busy.dump", "yes"]);
    std::fs::copy(
        dumped.path().join("busy.dump"),
        forced.path().join("busy.dump"),
    )
    .unwrap();
    let forced = forced.success();
    assert_eq!(printed(&forced.stderr)[0]["terminated"], 1);
    let ended = wait_for("the session to end", || session.try_wait().unwrap());
    assert!(!ended.success());
    assert_eq!(cluster.fingerprint(&db), original);
    assert_eq!(cluster.databases_like(&db), databases);
}

#[test]
fn failed_restore_leaves_the_database_as_it_was() {
    if !support::require(Service::Postgres) {
        return;
    }
    let cluster = shared();
    let db = cluster.create_database("intact");
    cluster.seed(&db, 100);
    let before = cluster.fingerprint(&db);
    let databases = cluster.databases_like(&db);
    let broken = "CREATE TABLE t1 (x int);\nINSERT INTO t1 VALUES (1);\nINSERT INTO missing_table VALUES (1);\nCREATE TABLE t2 (x int);\n";
    pg_test(cluster)
        .file("broken.sql", broken)
        .args(["restore", &cluster.bare_url(&db), "broken.sql"])
        .stderr_contains("psql exited with code 3")
        .stderr_contains("relation \"missing_table\" does not exist")
        .stderr_contains("the database was left as it was")
        .status(1);
    let checked = r#"fn main(url) { pg::restore(#{url: url, password: env::get("DB_PASSWORD"), from: "ok.sql", sha256: "0000"}); }"#;
    pg_test(cluster)
        .runbook("checked", checked)
        .file("ok.sql", "CREATE TABLE t1 (x int);\n")
        .args(["checked", &cluster.bare_url(&db)])
        .stderr_contains("ok.sql has SHA-256 ")
        .stderr_contains("not the expected 0000; nothing was changed")
        .status(1);
    assert_eq!(cluster.fingerprint(&db), before);
    assert_eq!(cluster.databases_like(&db), databases);
}

#[test]
fn query_returns_rows_as_maps() {
    if !support::require(Service::Postgres) {
        return;
    }
    let cluster = shared();
    let runbook = r#"
fn main(url) {
    let db = #{url: url, password: env::get("DB_PASSWORD")};
    if !pg::isready(db) { throw "not ready"; }
    let row = pg::query(db, `SELECT 1::int2 AS a, 2::int8 AS b, 1.5::float8 AS c, 12.50::numeric(10,2) AS d,
        'x''y' AS e, true AS f, NULL::text AS g, '{"k": [1, 2]}'::jsonb AS h, ARRAY[1, NULL, 3] AS i,
        '2026-01-26 04:31:02.5+00'::timestamptz AS j, '2026-01-26'::date AS k, '\x01ff'::bytea AS l,
        '00000000-0000-0000-0000-00000000002a'::uuid AS m, 123456789012::numeric AS n`)[0];
    print(row.to_json());
    print(type_of(row.l));
    let bound = pg::query(db, `SELECT $1::numeric + 1 AS n, $2::date + 1 AS d, $3::jsonb -> 'k' AS j,
        $4::text IS NULL AS z, $5::int[] AS arr, $6 AS s`, ["1.5", "2026-01-31", #{k: "v"}, (), "{1,2}", "it's"])[0];
    print(bound.to_json());
    print(pg::query(db, "SELECT g FROM generate_series(1, 3) g").len());
    try { pg::query(db, "SELECT '1 day'::interval AS span"); } catch (e) { print(`interval: ${e}`); }
    pg::query(db, "SELECT * FROM no_such_table");
}"#;
    let run = pg_test(cluster)
        .runbook("q", runbook)
        .args(["q", &cluster.bare_url("postgres")])
        .stderr_contains("relation \"no_such_table\" does not exist (SQLSTATE 42P01)")
        .stderr_contains("runbooks/q.rhai:16:9: pg::query")
        .stderr_contains("interval: pg::query postgres://postgres@127.0.0.1")
        .stderr_contains("column span: type interval has no script value; cast it in the SQL")
        .status(1);
    let results = printed(&run.stderr);
    assert_eq!(
        results[0],
        serde_json::json!({
            "a": 1, "b": 2, "c": 1.5, "d": 12.5, "e": "x'y", "f": true, "g": null,
            "h": {"k": [1, 2]}, "i": [1, null, 3], "j": "2026-01-26T04:31:02.5Z", "k": "2026-01-26",
            "l": [1, 255], "m": "00000000-0000-0000-0000-00000000002a", "n": 123456789012_i64
        })
    );
    assert!(run.stderr.contains("INFO  blob"), "{}", run.stderr);
    assert_eq!(
        results[1],
        serde_json::json!({"n": 2.5, "d": "2026-02-01", "j": "v", "z": true, "arr": [1, 2], "s": "it's"})
    );
    assert_eq!(results[2], 3);
}
