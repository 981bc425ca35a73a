//! `demo-service migrate [--sql STATEMENT]`: the demo's migration tool, run as cutover's release
//! phase (`MIGRATE_COMMAND=migrate`) in a one-off container of the new build. It brings the
//! database named by `DATABASE_URL` up to the schema this build knows (`SCHEMA`, baked in by
//! `cutover images`: v1 builds 1, v2 builds 2, v3 builds 3), recording each step in
//! `schema_migrations(version)`, the convention cutover reads the schema version from.
//!
//! 1. `notes(id, body)`: what v1 needs.
//! 2. adds `notes.author`: v2 writes it; v1 works with or without it (expand).
//! 3. renames `notes.body` to `content`: v1 and v2 no longer work (an incompatible change).
//!
//! A database already past this build's schema is left as it is (an older build never undoes a
//! newer one's migration). `--sql` runs one more statement afterwards (a drill for a failing
//! migration). Every step and error is printed: cutover shows what a migration printed.

use postgres::{Client, NoTls};

/// Each migration: its version, what it does, its SQL.
const MIGRATIONS: [(i64, &str, &str); 3] = [
    (
        1,
        "create notes(id, body)",
        "CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)",
    ),
    (
        2,
        "add notes.author (v1 works with or without it)",
        "ALTER TABLE notes ADD COLUMN author text",
    ),
    (
        3,
        "rename notes.body to content (incompatible with v1 and v2)",
        "ALTER TABLE notes RENAME COLUMN body TO content",
    ),
];

pub fn run(args: &[String]) -> i32 {
    let sql = match args {
        [] => None,
        [flag, statement] if flag == "--sql" => Some(statement.as_str()),
        _ => {
            eprintln!("usage: demo-service migrate [--sql STATEMENT]");
            return 2;
        }
    };
    let Ok(url) = std::env::var("DATABASE_URL") else {
        eprintln!("migrate: DATABASE_URL is not set");
        return 2;
    };
    let wanted: i64 = std::env::var("SCHEMA")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1);
    match migrate(&url, wanted, sql) {
        Ok(()) => 0,
        Err(error) => {
            // The server's own words (`relation "x" does not exist`), not just "db error".
            match error.as_db_error() {
                Some(db) => eprintln!("migrate: {}: {}", db.severity(), db.message()),
                None => eprintln!("migrate: {error}"),
            }
            1
        }
    }
}

fn migrate(url: &str, wanted: i64, sql: Option<&str>) -> Result<(), postgres::Error> {
    let mut client = Client::connect(url, NoTls)?;
    client.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version bigint PRIMARY KEY)",
    )?;
    let current: i64 = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )?
        .get(0);
    println!("schema version {current}; this build knows {wanted}");
    if current > wanted {
        println!("the database is ahead of this build ({current} > {wanted}): nothing to do");
    }
    for (version, what, statement) in MIGRATIONS {
        if version <= current || version > wanted {
            continue;
        }
        println!("applying {version}: {what}");
        let mut transaction = client.transaction()?;
        transaction.batch_execute(statement)?;
        transaction.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&version],
        )?;
        transaction.commit()?;
    }
    if let Some(statement) = sql {
        println!("running: {statement}");
        client.batch_execute(statement)?;
    }
    let now: i64 = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )?
        .get(0);
    println!("schema version {now}");
    Ok(())
}
