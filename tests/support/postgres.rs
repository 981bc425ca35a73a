//! Real PostgreSQL 15 for tests: a throwaway cluster on a free port, shared by the tests of one
//! process and stopped and deleted when the process exits (the benchmark starts its own). It
//! requires a password over TCP (scram-sha-256), so every test that reaches it by URL goes
//! through the password path; the helpers here connect over the Unix socket (trust). The
//! [`Psql`] helpers (seeding, fingerprints) serve PostgreSQL in a container too
//! (`pg_container`).

#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
};

use super::POSTGRES_BIN as BIN;

/// The `psql` arguments every helper runs SQL with: no psqlrc, quiet, unaligned tuples only,
/// stopping at the first error, as the superuser.
pub const PSQL_ARGS: [&str; 7] = ["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-U", "postgres"];

/// Runs SQL somewhere and returns the output of `psql -At`.
pub trait Psql {
    fn psql(&self, db: &str, sql: &str) -> String;

    /// A new empty database with a name unique to this test.
    fn create_database(&self, prefix: &str) -> String {
        let name = super::unique_name(prefix).replace('-', "_");
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        name
    }

    fn databases(&self) -> Vec<String> {
        self.psql(
            "postgres",
            "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1",
        )
        .lines()
        .map(str::to_string)
        .collect()
    }

    /// The databases whose names start with `prefix` (a test's own, among those of tests running
    /// beside it).
    fn databases_like(&self, prefix: &str) -> Vec<String> {
        self.databases()
            .into_iter()
            .filter(|d| d.starts_with(prefix))
            .collect()
    }

    /// Fills `db` with tables that exercise a dump: awkward text, NULLs, numerics, json,
    /// bytea, arrays, timestamps, a sequence, a foreign key, an index and a view.
    fn seed(&self, db: &str, rows: u32) {
        self.psql(db, &format!(
            "CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, note text, \
               balance numeric(12,2), tags text[], meta jsonb, photo bytea, \
               joined timestamptz DEFAULT '2026-01-26 04:31:02+00');
             INSERT INTO customers (name, note, balance, tags, meta, photo, joined)
               SELECT 'name ' || g || E' with ''quotes'', \\ backslash, tab\\t and ünïcode',
                      CASE WHEN g % 3 = 0 THEN NULL ELSE E'line1\\nline2 ' || g END,
                      g * 1.25, ARRAY['a' || g, NULL, 'c'], jsonb_build_object('g', g, 'odd', g % 2 = 1),
                      decode(md5(g::text), 'hex'), '2026-01-26 04:31:02+00'::timestamptz + g * interval '1 hour'
               FROM generate_series(1, {rows}) g;
             CREATE TABLE orders (id bigserial PRIMARY KEY, customer int REFERENCES customers(id),
               amount double precision, placed date);
             INSERT INTO orders (customer, amount, placed)
               SELECT 1 + g % {rows}, g / 7.0, DATE '2026-01-01' + g % 365 FROM generate_series(1, {rows} * 3) g;
             CREATE INDEX orders_customer ON orders (customer);
             CREATE VIEW big_spenders AS SELECT customer, sum(amount) FROM orders GROUP BY customer;
             CREATE TABLE empty (x int);"
        ));
    }

    /// Every table's row count and a checksum of its content, and every sequence's position.
    fn fingerprint(&self, db: &str) -> BTreeMap<String, String> {
        let tables = self.psql(
            db,
            "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables \
             WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
        );
        let mut print = BTreeMap::new();
        for table in tables.lines() {
            let sum = self.psql(
                db,
                &format!(
                    "SELECT count(*) || ' rows, md5 ' || md5(coalesce(string_agg(t::text, E'\\n' \
                     ORDER BY t::text), '')) FROM {table} t"
                ),
            );
            print.insert(table.to_string(), sum);
        }
        let sequences = self.psql(
            db,
            "SELECT schemaname || '.' || sequencename || ' at ' || coalesce(last_value, 0) \
             FROM pg_sequences ORDER BY 1",
        );
        print.insert("sequences".into(), sequences);
        print
    }
}

/// A PostgreSQL cluster run by this test process.
pub struct Cluster {
    dir: PathBuf,
    pub port: u16,
    pub password: String,
}

impl Cluster {
    /// Starts a new cluster: initdb as the postgres user, trust on the socket, scram-sha-256
    /// with `password` over TCP on 127.0.0.1.
    pub fn start() -> Cluster {
        let dir = std::env::temp_dir().join(super::unique_name("cutover-pg"));
        run(Command::new("install")
            .args(["-d", "-o", "postgres", "-g", "postgres", "-m", "700"])
            .arg(&dir));
        let data = dir.join("data");
        run(as_postgres("initdb").arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "--locale=C",
            "--encoding=UTF8",
        ]));
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
        )
        .unwrap();
        let password = format!(
            "cluster-secret-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = super::free_port();
            let options = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
                dir.display()
            );
            let output = as_postgres("pg_ctl")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(dir.join("log"))
                .args(["-w", "-o", &options, "start"])
                .output()
                .unwrap();
            if output.status.success() {
                let cluster = Cluster {
                    dir,
                    port,
                    password,
                };
                cluster.psql(
                    "postgres",
                    &format!("ALTER USER postgres PASSWORD '{}'", cluster.password),
                );
                return cluster;
            }
            last_error = String::from_utf8_lossy(&output.stderr).into_owned();
        }
        panic!("cannot start PostgreSQL in {}: {last_error}", dir.display());
    }

    /// `postgres://postgres:PASSWORD@127.0.0.1:PORT/db`
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/{db}",
            self.password, self.port
        )
    }

    /// The URL without the password, for the `password` option.
    pub fn bare_url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    pub fn stop(&self) {
        let _ = as_postgres("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Psql for Cluster {
    fn psql(&self, db: &str, sql: &str) -> String {
        let mut command = Command::new("psql");
        command.args(PSQL_ARGS).arg("-h").arg(&self.dir).args([
            "-p",
            &self.port.to_string(),
            "-d",
            db,
            "-c",
            sql,
        ]);
        run(&mut command)
    }
}

/// The cluster shared by this process's tests; stopped and deleted when the process exits.
pub fn shared() -> &'static Cluster {
    static SHARED: OnceLock<Cluster> = OnceLock::new();
    SHARED.get_or_init(|| {
        let cluster = Cluster::start();
        extern "C" fn stop_shared() {
            if let Some(cluster) = SHARED.get() {
                cluster.stop();
            }
        }
        unsafe { libc::atexit(stop_shared) };
        cluster
    })
}

fn as_postgres(program: &str) -> Command {
    let mut command = Command::new("runuser");
    command
        .args(["-u", "postgres", "--"])
        .arg(Path::new(BIN).join(program));
    command
}

/// Runs `command`, panicking with its stderr if it fails; returns stdout.
pub fn run(command: &mut Command) -> String {
    let output = command.output().expect("cannot run command");
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .trim_end()
        .to_string()
}
