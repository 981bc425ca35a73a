//! `pg::*` when things go wrong: pg_dump killed, its session ended by the server, the run
//! interrupted; a wrong password, bad options, a missing directory, a server that is down;
//! sessions in the way of a restore, a broken dump, a wrong checksum. Backups must be whole or
//! absent, the database must be left as it was, and no password may show anywhere.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{
    pg::{files_in, pg_test, printed},
    support::{
        self, Service,
        postgres::{Cluster, Psql, shared},
    },
    test::Test,
};

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

fn wait_for<T>(what: &str, probe: impl FnMut() -> Option<T>) -> T {
    let every = Duration::from_millis(2);
    let what = || format!("timed out waiting for {what}");
    crate::support::wait_for(Duration::from_secs(30), every, what, probe)
}

/// Starts a dump of the big database into `backups/big.sql` and waits until pg_dump's output is
/// arriving in the temporary file; returns the run, its directory and pg_dump's pid.
fn dump_in_progress(app_name: &str) -> (crate::test::Running, PathBuf, i32) {
    let cluster = shared();
    let test = pg_test(cluster)
        .env("PGAPPNAME", app_name)
        .args(["dump", &cluster.bare_url(big_database()), "backups/big.sql"])
        .stderr_lacks(&cluster.password)
        .stdout_lacks(&cluster.password);
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

/// The dump of [`dump_in_progress`] fails (exit 1) with an error saying each of `why` and that
/// nothing was written, and leaves neither a backup nor a temporary file.
fn dump_failed_leaving_nothing(running: crate::test::Running, backups: &Path, why: &[&str]) {
    let (finished, _) = running.finish(1, Instant::now());
    for said in why
        .iter()
        .chain(&["nothing was written to backups/big.sql"])
    {
        assert!(finished.stderr.contains(said), "{}", finished.stderr);
    }
    assert_eq!(
        files_in(backups),
        Vec::<String>::new(),
        "no backup and no temporary file"
    );
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
    dump_failed_leaving_nothing(running, &backups, &["pg_dump was killed by signal 9"]);
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
    let why = ["pg_dump exited with code 1", "terminat"];
    dump_failed_leaving_nothing(running, &backups, &why);
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
            r#"pg::dump(#{url: "postgres://u@127.0.0.1:1/db", to: "nope/"})"#,
            "pg::dump: directory nope/ does not exist",
        ),
        (
            r#"pg::dump(#{url: "postgres://u@127.0.0.1:1/db", to: "x.sql", fromat: "custom"})"#,
            "pg::dump: unknown option `fromat` (known: url, password, container, db, user, connect_timeout, to, format, gzip, args)",
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
            "pg::prune: option `keep` must be at least 1 (delete the last backup by hand), not i64 `0`",
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
        // deploy/ holds the journal, which records the failed attempt; nothing else appears.
        assert_eq!(
            files_in(&run.path()),
            ["b", "deploy", "runbooks"],
            "{call} left files"
        );
        let state: Vec<String> = files_in(&run.path().join("deploy"))
            .into_iter()
            .filter(|f| f != "cutover-journal.jsonl" && f != "cutover.lock")
            .collect();
        assert!(state.is_empty(), "{call} left {state:?} in deploy/");
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
        .stdout_contains("ready: false")
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
    assert_eq!(printed(&forced.stdout)[0]["terminated"], 1);
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
