//! `pg::*`: PostgreSQL for runbooks. Readiness and queries over the wire (tokio-postgres); backups
//! and restores with the PostgreSQL client programs, run here against a URL or inside a container
//! through the Docker exec API. Backups stream into a file that is whole or absent; restores are
//! loaded beside the live database and swapped in only once they are complete and counted;
//! retention keeps the newest backups by the naming convention of [`crate::pgbackups`].

use std::{path::PathBuf, sync::Arc, time::Duration};

use rhai::{Array, Dynamic, Map, Module};

use super::{
    HostResult, fail, fail_masked, function,
    options::Options,
    pg_requests::{dump_request, restore_request, target_of},
};
use crate::{
    context::Context,
    pgbackups, pgdump,
    pgquery::{self, Access, QueryError, Readiness},
    pgrestore::{self, RestoreRequest},
    pgtarget::Target,
    progress::Progress,
};

/// How long cleaning up after an interrupted restore may take.
const CLEANUP_LIMIT: Duration = Duration::from_secs(10);

pub fn module(context: &Arc<Context>) -> Module {
    let mut module = Module::new();
    function!(&mut module,
        /// True when the database takes connections and answers `SELECT 1`. `target` is a URL, or
        /// a map: `#{url, password}` or `#{container, db, user}` (then `pg_isready` runs in the
        /// container). `connect_timeout` (ms, default 5000) bounds the wait. A wrong password is
        /// an error, not `false`: waiting will not fix it.
        ///
        /// ```rhai
        /// while !pg::isready(#{container: "deploy-postgres-1", db: "app"}) { sleep(500); }
        /// if !pg::isready(`postgres://app:${secret::get("DB_PASSWORD")}@127.0.0.1/app`) {
        ///     throw "database down";
        /// }
        /// ```
        fn isready[context](call, target: Dynamic) -> bool {
            let target = target_of(&context, "pg::isready", target)?;
            isready(&context, &target)
        }
    );
    function!(&mut module,
        /// Runs `sql` and returns its rows as maps of column name to value (numbers, strings,
        /// booleans, arrays, json as maps, timestamps as RFC 3339 text, bytea as blobs, NULL as
        /// `()`). `target` is a URL, `#{url, password}`, or `#{container, db, user, password}`:
        /// the server in that container, reached at the container's own address on its Docker
        /// network (no port need be published; over TCP the server usually asks for the
        /// password). In a `//! readonly` runbook and in a dry run it runs in a read-only
        /// transaction: reads work, a statement that would write (`INSERT`, `UPDATE`, DDL,
        /// `nextval`) is refused in a readonly runbook and only logged as `would pg::query …`
        /// (returning no rows) in a dry run.
        ///
        /// ```rhai
        /// let rows = pg::query(db_url, "SELECT count(*) AS n FROM orders");
        /// log::info(`${rows[0].n} orders`);
        /// let db = #{container: "deploy-postgres-1", db: "app", password: secret::get("POSTGRES_PASSWORD")};
        /// print(pg::query(db, "SELECT version()")[0].version);
        /// ```
        fn query[context](call, target: Dynamic, sql: &str) -> Array {
            let target = target_of(&context, "pg::query", target)?;
            query(&context, &target, sql, &[])
        }
    );
    function!(&mut module,
        /// Runs `sql` with `params` bound to `$1`, `$2`…; each is sent as text and read by the
        /// server as the type it expects there (so `$1::date` takes `"2026-01-26"`).
        ///
        /// ```rhai
        /// let rows = pg::query(db_url, "SELECT * FROM orders WHERE id = $1", [42]);
        /// ```
        fn query[context](call, target: Dynamic, sql: &str, params: Array) -> Array {
            let target = target_of(&context, "pg::query", target)?;
            query(&context, &target, sql, &params)
        }
    );
    function!(&mut module,
        /// Backs up a database with `pg_dump`: `#{url, to}` runs it here, `#{container, db, user,
        /// to}` inside the container. The output streams into a temporary file beside `to` that
        /// becomes `to` (mode 0600) only when pg_dump succeeds, so a failed dump leaves no file.
        /// Options: `format` (`"plain"` or `"custom"`), `gzip` (true or a level 1–9; default: true
        /// when `to` ends in `.gz`), `password`, `connect_timeout` (ms), `args` (more pg_dump
        /// arguments). If `to` is a directory the file is named `DB-YYYYMMDD-HHMMSS.sql[.gz]` or
        /// `.dump`. Returns `#{path, bytes, sha256, ms, format, gzip, database}`.
        ///
        /// ```rhai
        /// let backup = pg::dump(#{container: "deploy-postgres-1", db: "app", to: "backups/", gzip: true});
        /// log::info(`backup ${backup.path}: ${backup.bytes} bytes, sha256 ${backup.sha256}`);
        /// ```
        fn dump[context](call, options: Map) -> Map {
            dump(&context, options)
        }
    );
    function!(&mut module,
        /// Restores a dump into a database: `#{url, from}` or `#{container, db, user, from}`.
        /// Plain dumps (`.sql`, `.sql.gz`) load with psql, custom ones with pg_restore, both
        /// stopping at the first error, into a scratch database that replaces the live one only
        /// when the load succeeded and its rows are counted. Other sessions on the database make
        /// it fail unless `terminate_sessions: true`. `sha256` checks the file first. Returns
        /// `#{database, from, format, bytes, ms, tables: #{name: rows}, rows, replaced, …}`.
        ///
        /// ```rhai
        /// let restored = pg::restore(#{url: db_url, from: "backups/app-20260126-043102.sql.gz",
        ///                              terminate_sessions: true});
        /// log::info(`restored ${restored.rows} rows in ${restored.tables.len()} tables`);
        /// ```
        fn restore[context](call, options: Map) -> Map {
            restore(&context, options)
        }
    );
    function!(&mut module,
        /// Keeps the newest `keep` backups of database `db` in directory `dir` (files named
        /// `DB-YYYYMMDD-HHMMSS.sql`, `.sql.gz` or `.dump`) and deletes the older ones; no other
        /// file is touched. Returns `#{kept: [paths], deleted: [paths]}`.
        ///
        /// ```rhai
        /// let pruned = pg::prune(#{dir: "backups", db: "app", keep: 7});
        /// log::info(`deleted ${pruned.deleted.len()} old backups`);
        /// ```
        fn prune[context](call, options: Map) -> Map {
            prune(&context, options)
        }
    );
    function!(&mut module,
        /// The backups of database `db` in directory `dir`, newest first (by the naming
        /// convention `DB-YYYYMMDD-HHMMSS.sql[.gz]` / `.dump`).
        ///
        /// ```rhai
        /// let latest = pg::backups("backups", "app")[0];
        /// ```
        fn backups(call, dir: &str, db: &str) -> Array {
            let backups = pgbackups::list(&PathBuf::from(dir), db).map_err(fail)?;
            Ok(backups.into_iter().map(|b| b.path.display().to_string().into()).collect())
        }
    );
    module
}

fn isready(context: &Context, target: &Target) -> HostResult<bool> {
    let docker = docker_for(context, target)?;
    match context.block_on(pgquery::isready(target, docker.as_ref()))? {
        Ok(Readiness::Ready) => Ok(true),
        Ok(Readiness::NotReady(reason)) => {
            tracing::debug!("pg::isready {target}: {reason}");
            Ok(false)
        }
        Err(error) => Err(fail_masked(
            context,
            format!("pg::isready {target}: {error}"),
        )),
    }
}

/// A query changes nothing in a readonly runbook or a dry run: there it runs in a read-only
/// transaction. A statement that would write is refused (readonly) or only described (dry run,
/// returning no rows), as every other change is.
fn query(context: &Context, target: &Target, sql: &str, params: &[Dynamic]) -> HostResult<Array> {
    let run = context.run_info();
    let dry_run = context.is_dry_run();
    let access = if run.readonly || dry_run {
        Access::ReadOnly
    } else {
        Access::ReadWrite
    };
    // In a container: its server, reached at the container's own address (no port published).
    let server = match target.container_name() {
        None => target.clone(),
        Some(_) => {
            let docker = context.docker()?;
            context
                .block_on(pgquery::in_container(target, &docker))?
                .map_err(|e| fail_masked(context, format!("pg::query {target}: {e}")))?
        }
    };
    let rows = match context.block_on(pgquery::query(&server, sql, params, access))? {
        Ok(rows) => rows,
        Err(QueryError::Writes(reason)) if run.readonly => {
            return Err(fail_masked(
                context,
                format!(
                    "pg::query {target}: refused, `{}` is a readonly runbook (its header says \
                     `//! readonly`) and may not change anything: {reason}",
                    run.runbook
                ),
            ));
        }
        Err(QueryError::Writes(_)) => {
            tracing::info!("would pg::query {target}: {}", one_line(sql));
            return Ok(Array::new());
        }
        Err(error) => {
            let hint = if target.container_name().is_some()
                && target.password.is_none()
                && error.to_string().contains("password")
            {
                format!(
                    "; pg::query reaches the container's server at its address ({server}), \
                     where it asks for a password: add `password: …` to the target"
                )
            } else {
                String::new()
            };
            return Err(fail_masked(
                context,
                format!("pg::query {target}: {error}{hint}"),
            ));
        }
    };
    Ok(rows.into_iter().map(Dynamic::from_map).collect())
}

/// SQL on one line, for a log line.
fn one_line(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn dump(context: &Context, options: Map) -> HostResult<Map> {
    let request = dump_request(context, options)?;
    pgdump::check_directory(&request.to)
        .map_err(|e| fail_masked(context, format!("pg::dump: {e}")))?;
    let gzip = request.gzip.is_some();
    let detail = format!(
        "{} → {} ({}{})",
        request.target,
        request.to.display(),
        request.format.name(),
        if gzip { ", gzip" } else { "" }
    );
    let summary = |path: &std::path::Path, bytes: u64, sha256: &str, ms: u128| -> Map {
        let mut map = Map::new();
        map.insert("path".into(), path.display().to_string().into());
        map.insert("bytes".into(), (bytes as i64).into());
        map.insert("sha256".into(), sha256.into());
        map.insert("ms".into(), (ms as i64).into());
        map.insert("format".into(), request.format.name().into());
        map.insert("gzip".into(), gzip.into());
        map.insert("database".into(), request.target.database().into());
        map
    };
    context.change(
        "pg::dump",
        &detail,
        || {
            let mut map = summary(&request.to, 0, "", 0);
            map.insert("dry_run".into(), true.into());
            map
        },
        || {
            let docker = docker_for(context, &request.target)?;
            let progress = Progress::spinner(context, &format!("pg_dump {detail}"));
            let mut report = |bytes: u64| {
                progress.set_message(&format!("pg_dump {detail}: {} MiB", bytes >> 20))
            };
            let dumped = context
                .block_on(pgdump::dump(&request, docker.as_ref(), &mut report))?
                .map_err(|e| fail_masked(context, format!("pg::dump {}: {e}", request.target)))?;
            tracing::info!(
                "backup of {} written to {}: {} bytes in {} ms",
                request.target,
                dumped.path.display(),
                dumped.bytes,
                dumped.took.as_millis()
            );
            Ok(summary(
                &dumped.path,
                dumped.bytes,
                &dumped.sha256,
                dumped.took.as_millis(),
            ))
        },
    )
}

fn restore(context: &Context, options: Map) -> HostResult<Map> {
    let request = restore_request(context, options)?;
    let database = request.target.database();
    // Reading the file (format, checksum) is no change: a dry run does it too.
    let (kind, bytes) = pgrestore::inspect(&request.from, request.sha256.as_deref())
        .map_err(|e| fail_masked(context, format!("pg::restore: {e}")))?;
    let detail = format!(
        "{} ← {} ({}{})",
        request.target,
        request.from.display(),
        kind.describe(),
        if request.terminate_sessions {
            ", terminating sessions"
        } else {
            ""
        }
    );
    if context.is_dry_run() {
        warn_of_sessions(context, &request)?;
    }
    let base = |ms: u128| -> Map {
        let mut map = Map::new();
        map.insert("database".into(), database.clone().into());
        map.insert("from".into(), request.from.display().to_string().into());
        map.insert("format".into(), kind.describe().into());
        map.insert("bytes".into(), (bytes as i64).into());
        map.insert("ms".into(), (ms as i64).into());
        map
    };
    context.change(
        "pg::restore",
        &detail,
        || {
            // The shape of a real result, with nothing restored, so a runbook reads it alike.
            let mut map = base(0);
            map.insert("dry_run".into(), true.into());
            map.insert("tables".into(), Map::new().into());
            map.insert("rows".into(), 0_i64.into());
            map.insert("replaced".into(), false.into());
            map
        },
        || {
            let docker = docker_for(context, &request.target)?;
            let _progress = Progress::spinner(context, &format!("restoring {detail}"));
            let restoring = pgrestore::restore(&request, (kind, bytes), docker.as_ref());
            let restored = match context.block_on(restoring) {
                Ok(result) => result.map_err(|e| {
                    fail_masked(context, format!("pg::restore {}: {e}", request.target))
                })?,
                Err(stopped) => {
                    cleanup(context, &request, docker.as_ref());
                    return Err(stopped);
                }
            };
            tracing::info!(
                "restored {} into {}: {} tables, {} rows in {} ms",
                request.from.display(),
                request.target,
                restored.tables.len(),
                restored.tables.iter().map(|(_, n)| n).sum::<u64>(),
                restored.took.as_millis()
            );
            let mut map = base(restored.took.as_millis());
            let tables: Map = restored
                .tables
                .iter()
                .map(|(name, rows)| (name.into(), (*rows as i64).into()))
                .collect();
            let rows: u64 = restored.tables.iter().map(|(_, n)| n).sum();
            map.insert("tables".into(), tables.into());
            map.insert("rows".into(), (rows as i64).into());
            map.insert("replaced".into(), restored.replaced.into());
            map.insert("terminated".into(), (restored.terminated as i64).into());
            if let Some(statements) = restored.statements {
                map.insert("statements".into(), (statements as i64).into());
            }
            if let Some(loaded) = restored.loaded_rows {
                map.insert("loaded_rows".into(), (loaded as i64).into());
            }
            Ok(map)
        },
    )
}

/// After an interrupted restore: drop the scratch database, if it got that far.
fn cleanup(context: &Context, request: &RestoreRequest, docker: Option<&bollard::Docker>) {
    let dropping = tokio::time::timeout(CLEANUP_LIMIT, pgrestore::drop_scratch(request, docker));
    let scratch = &request.scratch;
    match context.runtime().block_on(dropping) {
        Ok(Ok(())) => tracing::info!("restore interrupted; scratch database {scratch} dropped"),
        Ok(Err(error)) => tracing::warn!(
            "restore interrupted; scratch database {scratch} is left: {}",
            context.secrets.redact(&error.to_string())
        ),
        Err(_) => {
            tracing::warn!("restore interrupted; dropping scratch database {scratch} timed out")
        }
    }
}

fn prune(context: &Context, options: Map) -> HostResult<Map> {
    let options = Options::new("pg::prune", options, &["dir", "db", "keep"])?;
    let dir = PathBuf::from(options.required("dir", "the backup directory")?);
    let db = options.required("db", "whose backups to prune")?;
    let keep = match options.int("keep")? {
        Some(keep) if keep >= 1 => keep as usize,
        Some(keep) => {
            let wanted = "at least 1 (delete the last backup by hand)";
            return Err(options.invalid("keep", wanted, &keep.into()));
        }
        None => return Err(options.missing("keep", "how many backups to keep")),
    };
    let (kept, deleted) = pgbackups::plan_prune(&dir, &db, keep).map_err(|e| options.error(e))?;
    let mut gone = Array::new();
    for backup in &deleted {
        let path = backup.path.display().to_string();
        context.change(
            "pg::prune",
            &format!("delete {path}"),
            || (),
            || {
                std::fs::remove_file(&backup.path)
                    .map_err(|e| fail(format!("pg::prune: cannot delete {path}: {e}")))
            },
        )?;
        gone.push(path.into());
    }
    let paths = |list: &[pgbackups::Backup]| -> Array {
        list.iter()
            .map(|b| b.path.display().to_string().into())
            .collect()
    };
    let mut map = Map::new();
    map.insert("kept".into(), paths(&kept).into());
    map.insert("deleted".into(), gone.into());
    Ok(map)
}

/// In a dry run: say if the real restore would meet other sessions (they may be gone by then,
/// e.g. when the runbook stops the application first).
fn warn_of_sessions(context: &Context, request: &RestoreRequest) -> HostResult<()> {
    if request.terminate_sessions {
        return Ok(());
    }
    let docker = docker_for(context, &request.target)?;
    let sessions = context
        .block_on(pgrestore::other_sessions(request, docker.as_ref()))?
        .map_err(|e| fail_masked(context, format!("pg::restore {}: {e}", request.target)))?;
    if !sessions.is_empty() {
        tracing::warn!(
            "{} has {} other session(s) connected ({}): the restore will fail unless they are \
             gone by then or terminate_sessions is true",
            request.target,
            sessions.len(),
            sessions.join(", ")
        );
    }
    Ok(())
}

/// The Docker client when `target` is a container.
fn docker_for(context: &Context, target: &Target) -> HostResult<Option<bollard::Docker>> {
    target
        .container_name()
        .map(|_| context.docker())
        .transpose()
}
