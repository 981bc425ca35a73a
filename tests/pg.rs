//! `pg::*` against real PostgreSQL 15: a throwaway cluster (password auth over TCP) and
//! PostgreSQL in a locally built container. Dumps in every format restore to exactly what was
//! dumped (row counts and a checksum of every table), by URL and inside a container; queries
//! return rows as maps; retention keeps the newest backups; a dry run changes nothing.
//! What happens when things go wrong is in `pg_failures`.

use std::{os::unix::fs::PermissionsExt, path::Path};

use sha2::Digest;

use crate::{
    support::{
        self, Service,
        pg_container::PgContainer,
        postgres::{Cluster, Psql, shared},
    },
    test::Test,
};

/// Runbooks get the URL (no password) as an argument and the password from `DB_PASSWORD`, a
/// secret-looking variable, as an operator would pass them.
const DUMP: &str = r#"fn main(url, to) { print(pg::dump(#{url: url, password: env::get("DB_PASSWORD"), to: to}).to_json()); }
fn main(url, to, format) { print(pg::dump(#{url: url, password: env::get("DB_PASSWORD"), to: to, format: format}).to_json()); }"#;
const RESTORE: &str = r#"fn main(url, from) { print(pg::restore(#{url: url, password: env::get("DB_PASSWORD"), from: from}).to_json()); }
fn main(url, from, terminate) { print(pg::restore(#{url: url, password: env::get("DB_PASSWORD"), from: from, terminate_sessions: terminate == "yes"}).to_json()); }"#;

pub(crate) fn pg_test(cluster: &Cluster) -> Test {
    Test::new()
        .runbook("dump", DUMP)
        .runbook("restore", RESTORE)
        .env("DB_PASSWORD", &cluster.password)
}

/// The JSON a runbook printed with `print(x.to_json())` (its output, on stdout), one per line.
pub(crate) fn printed(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .filter_map(|json| serde_json::from_str(json).ok())
        .collect()
}

fn sha256_hex(path: &Path) -> String {
    sha2::Sha256::digest(std::fs::read(path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(crate) fn files_in(dir: &Path) -> Vec<String> {
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
            .stdout_lacks(&cluster.password)
            .success();
        let result = &printed(&dumped.stdout)[0];
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
            .stderr_lacks(&cluster.password)
            .stdout_lacks(&cluster.password);
        std::fs::copy(&path, restored.path().join(file)).unwrap();
        let restored = restored.success();
        let report = &printed(&restored.stdout)[0];
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
    assert_eq!(printed(&restored.stdout)[0]["replaced"], true);
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
    try { pg::dump(#{container: name, db: "nope", to: "backups/nope.sql"}); } catch (e) { print(`nope: ${e}`); }
    try { pg::dump(#{container: `${name}-gone`, db: "app", to: "backups/gone.sql"}); } catch (e) { print(`gone: ${e}`); }
    try { pg::isready(#{container: `${name}-gone`, db: "app"}); } catch (e) { print(`isready gone: ${e}`); }
    pg::dump(#{container: name, db: "app", to: "backups/schema.sql", args: ["--schema-only"]});
}"#;
    let test = Test::new()
        .runbook("r", runbook)
        .args(["r", &container.name]);
    std::fs::create_dir(test.path().join("backups")).unwrap();
    let run = test.success();
    let results = printed(&run.stdout);
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
    // Failures inside the container are pg_dump's own words; a missing container is named.
    assert!(
        run.stdout.contains("nope: pg::dump container ")
            && run.stdout.contains("database \"nope\" does not exist"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("gone: pg::dump container "),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("No such container"), "{}", run.stdout);
    assert!(
        run.stdout.contains("isready gone: pg::isready container "),
        "{}",
        run.stdout
    );
    let mut names = files_in(&run.path().join("backups"));
    names.retain(|n| !n.starts_with("app-"));
    assert_eq!(names, ["schema.sql"], "failed dumps left files");
    // `args` reach pg_dump: a schema-only dump has the tables but no data.
    let schema = std::fs::read_to_string(run.path().join("backups/schema.sql")).unwrap();
    assert!(schema.contains("CREATE TABLE public.customers"), "{schema}");
    assert!(!schema.contains("COPY public.customers"), "{schema}");
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
    let results = printed(&run.stdout);
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
    let results = printed(&run.stdout);
    assert_eq!(results[0]["dry_run"], true);
    assert_eq!(results[1]["format"], "plain");
    assert_eq!(results[3]["deleted"][0], "backups/dry-20200101-000000.sql");
    assert!(!run.path().join("new.sql").exists());
    assert_eq!(files_in(&run.path().join("backups")).len(), 2);
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
        .stdout_contains("interval: pg::query postgres://postgres@127.0.0.1")
        .stdout_contains("column span: type interval has no script value; cast it in the SQL")
        .status(1);
    let results = printed(&run.stdout);
    assert_eq!(
        results[0],
        serde_json::json!({
            "a": 1, "b": 2, "c": 1.5, "d": 12.5, "e": "x'y", "f": true, "g": null,
            "h": {"k": [1, 2]}, "i": [1, null, 3], "j": "2026-01-26T04:31:02.5Z", "k": "2026-01-26",
            "l": [1, 255], "m": "00000000-0000-0000-0000-00000000002a", "n": 123456789012_i64
        })
    );
    assert!(run.stdout.contains("\nblob\n"), "{}", run.stdout);
    assert_eq!(
        results[1],
        serde_json::json!({"n": 2.5, "d": "2026-02-01", "j": "v", "z": true, "arr": [1, 2], "s": "it's"})
    );
    assert_eq!(results[2], 3);
}

/// A connection opened ahead (`pg::connect_ahead`) serves the next query of its target: the
/// server started its session before the script's pause ended, so the setup overlapped the
/// pause. The query after it connects itself, after the pause. (Compared on the one clock the
/// script and the local server share, not as ages: on a loaded machine a connection's own setup
/// may take as long as the pause.) One that cannot be opened (a wrong password) fails the query
/// that would have used it with the server's reason, the password masked, as any query does.
#[test]
fn a_connection_opened_ahead_serves_the_next_query_of_its_target() {
    if !support::require(Service::Postgres) {
        return;
    }
    let cluster = shared();
    let runbook = r#"
fn main(url) {
    let db = #{url: url, password: env::get("DB_PASSWORD")};
    let session = "SELECT (extract(epoch FROM backend_start) * 1000)::int8 AS ms FROM pg_stat_activity WHERE pid = pg_backend_pid()";
    pg::connect_ahead(db);
    sleep(400);
    let resumed = time::now();
    let ahead = pg::query(db, session)[0].ms;
    let own = pg::query(db, session)[0].ms;
    print(#{resumed: resumed, ahead: ahead, own: own}.to_json());
    let wrong = #{url: url, password: "not-the-password"};
    pg::connect_ahead(wrong);
    pg::query(wrong, "SELECT 1");
}"#;
    let run = pg_test(cluster)
        .runbook("ahead", runbook)
        .args(["ahead", &cluster.bare_url("postgres")])
        .stderr_contains("runbooks/ahead.rhai:13:9: pg::query")
        .stderr_contains("password authentication failed")
        .stderr_lacks("not-the-password")
        .status(1);
    let started = &printed(&run.stdout)[0];
    let [resumed, ahead, own] = ["resumed", "ahead", "own"].map(|k| started[k].as_i64().unwrap());
    assert!(
        ahead < resumed,
        "the connection ahead opened after the pause: {started}"
    );
    assert!(
        own >= resumed,
        "the next query did not connect itself: {started}"
    );
}

/// `pg::query` changes nothing where nothing may change: a readonly runbook still reads, and an
/// `INSERT` there is refused with the server's reason; a dry run reads and only describes the
/// `INSERT`; a real run writes. The row count says so after each.
#[test]
fn query_writes_nothing_in_readonly_runbooks_and_dry_runs() {
    if !support::require(Service::Postgres) {
        return;
    }
    let cluster = shared();
    let db = cluster.create_database("readonly_query");
    cluster.psql(
        &db,
        "CREATE TABLE t (id serial PRIMARY KEY, v int); INSERT INTO t (v) SELECT g FROM generate_series(1, 42) g",
    );
    let count = || {
        cluster
            .psql(&db, "SELECT count(*) FROM t")
            .trim()
            .to_string()
    };
    let body = r#"
fn main(url) {
    let db = #{url: url, password: env::get("DB_PASSWORD")};
    print(`before: ${pg::query(db, "SELECT count(*) AS n FROM t")[0].n}`);
    let inserted = pg::query(db, "INSERT INTO t (v) VALUES ($1) RETURNING id", [43]);
    print(`inserted: ${inserted.len()}`);
}"#;
    let url = cluster.bare_url(&db);
    pg_test(cluster)
        .runbook("report", &format!("//! A report.\n//! readonly\n{body}"))
        .args(["report", &url])
        .stdout_contains("before: 42")
        .stderr_contains("pg::query postgres://postgres@127.0.0.1")
        .stderr_contains(
            "refused, `report` is a readonly runbook (its header says `//! readonly`) and may not \
             change anything: ERROR: cannot execute INSERT in a read-only transaction (SQLSTATE 25006)",
        )
        .stdout_lacks("inserted")
        .status(1);
    assert_eq!(count(), "42");
    pg_test(cluster)
        .runbook("add", body)
        .args(["--dry-run", "add", &url])
        .stdout_contains("before: 42")
        .stderr_contains("would pg::query")
        .stderr_contains("INSERT INTO t (v) VALUES ($1) RETURNING id")
        .stdout_contains("inserted: 0")
        .success();
    assert_eq!(count(), "42");
    pg_test(cluster)
        .runbook("add", body)
        .args(["add", &url])
        .stdout_contains("inserted: 1")
        .success();
    assert_eq!(count(), "43");
}

/// `pg::query` reaches a database in its container as dump, restore and isready do, with no
/// port published: at the container's own address, with its password. Without the password, or
/// with no such container, the error says what is missing.
#[test]
fn query_reaches_a_database_in_its_container() {
    if !support::require(Service::Docker) || !support::require(Service::Postgres) {
        return;
    }
    let container = PgContainer::start();
    container.psql("postgres", "CREATE DATABASE app");
    container.psql(
        "app",
        "CREATE TABLE t (v int); INSERT INTO t SELECT generate_series(1, 42)",
    );
    let runbook = r#"
fn main(name) {
    let db = #{container: name, db: "app", password: env::get("DB_PASSWORD")};
    print(`rows: ${pg::query(db, "SELECT count(*) AS n FROM t WHERE v > $1", [40])[0].n}`);
    try { pg::query(#{container: name, db: "app"}, "SELECT 1"); } catch (e) { print(`no password: ${e}`); }
    pg::query(#{container: `${name}-gone`, db: "app"}, "SELECT 1");
}"#;
    let run = Test::new()
        .runbook("r", runbook)
        .env("DB_PASSWORD", &container.password)
        .args(["r", &container.name])
        .stdout_contains("rows: 2\n")
        .stdout_contains("no password: pg::query container ")
        .stdout_contains("where it asks for a password: add `password: …` to the target")
        .stderr_contains(&format!("pg::query container {}-gone", container.name))
        .stderr_lacks(&container.password)
        .stdout_lacks(&container.password)
        .status(1);
    assert!(run.stderr.contains("runbooks/r.rhai:6:9"), "{}", run.stderr);
    assert!(run.stderr.contains("No such container"), "{}", run.stderr);
}
