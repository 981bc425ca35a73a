//! `pg::*`: PostgreSQL for runbooks. Readiness and queries over the wire (tokio-postgres); backups
//! and restores with the PostgreSQL client programs, run here against a URL or inside a container
//! through the Docker exec API. Backups stream into a file that is whole or absent; restores are
//! loaded beside the live database and swapped in only once they are complete and counted;
//! retention keeps the newest backups by the naming convention of [`crate::pg::backups`].
//!
//! Option maps are read into typed requests with the shared reader of [`super::options`]: an
//! unknown key (a typo like `fromat`) or a value of the wrong type is an error naming the
//! function, the key and what was expected, raised before anything runs. Passwords met there (a
//! `password` option or one inside a URL) are registered for masking at once, before any message
//! could show them.

use std::{path::PathBuf, sync::Arc, time::Duration};

use rhai::{Array, Dynamic, Map, Module};

use super::{
    HostResult, fail, fail_masked, function,
    options::{Given, OptionKeys, Options},
};
use crate::{
    context::progress::Progress,
    context::{Context, RunInfo},
    pg::backups,
    pg::dump::{self, DEFAULT_GZIP_LEVEL, DumpRequest, Format},
    pg::query::{self, Access, QueryError, Readiness},
    pg::restore::{self, RestoreRequest, scratch_name},
    pg::target::Target,
    pg::value::Value,
};

/// How long cleaning up after an interrupted restore may take.
const CLEANUP_LIMIT: Duration = Duration::from_secs(10);

/// The option keys of the host functions of this module.
pub(super) const OPTION_KEYS: &[&OptionKeys] =
    &[&ISREADY, &QUERY, &CONNECT_AHEAD, &DUMP, &RESTORE, &PRUNE];

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
            let target = target_of(&context, &ISREADY, target)?;
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
            let target = target_of(&context, &QUERY, target)?;
            query(&context, &target, sql, &[])
        }
    );
    function!(&mut module,
        /// Starts connecting to `target` (as `pg::query` takes it) in the background and returns
        /// at once: the next `pg::query` of the same target uses that connection, so its setup
        /// (a TCP handshake and the password exchange, several milliseconds) overlaps whatever
        /// the script does meanwhile. A connection that cannot be opened is not an error here:
        /// that query then connects itself and says why it cannot. Each connection serves one
        /// query, as `pg::query`'s own does.
        ///
        /// ```rhai
        /// let db = #{container: "deploy-postgres-1", db: "app", password: secret::get("POSTGRES_PASSWORD")};
        /// pg::connect_ahead(db);
        /// caddy::switch("production", ["127.0.0.1:4200"]);
        /// let version = pg::query(db, "SELECT max(version) AS v FROM schema_migrations")[0].v;
        /// ```
        fn connect_ahead[context](call, target: Dynamic) -> () {
            let target = target_of(&context, &CONNECT_AHEAD, target)?;
            context.connect_pg_ahead(target)
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
            let target = target_of(&context, &QUERY, target)?;
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
        /// when the load succeeded and its rows are counted. A plain dump holding a psql
        /// command (`\connect`, `\!`…) or a statement on another database is refused before
        /// anything changes. Other sessions on the database make it fail unless
        /// `terminate_sessions: true`. `sha256` checks the file first. `stop: [containers]`
        /// are stopped only for the swap, once the dump is loaded and counted, and started
        /// again after it, whatever happened. Returns `#{database, from, format, bytes, ms,
        /// tables: #{name: rows}, rows, replaced, stopped, …}`.
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
            let backups = backups::list(&PathBuf::from(dir), db).map_err(fail)?;
            Ok(backups.into_iter().map(|b| b.path.display().to_string().into()).collect())
        }
    );
    module
}

fn isready(context: &Context, target: &Target) -> HostResult<bool> {
    let docker = docker_for(context, target)?;
    match context.block_on(query::isready(target, docker.as_ref()))? {
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
    let params: Vec<Option<String>> = params.iter().map(text_param).collect();
    if let Some(connection) = context.take_pg_connection(target)? {
        let server = connection.server().clone();
        let rows = context.block_on(query::query_on(connection, sql, params, access))?;
        return rows_of(context, target, &server, sql, rows, &run);
    }
    // In a container: its server, reached at the container's own address (no port published).
    let server = match target.container_name() {
        None => target.clone(),
        Some(_) => {
            let docker = context.docker()?;
            context
                .block_on(query::in_container(target, &docker))?
                .map_err(|e| fail_masked(context, format!("pg::query {target}: {e}")))?
        }
    };
    let rows = context.block_on(query::query(&server, sql, params, access))?;
    rows_of(context, target, &server, sql, rows, &run)
}

/// What a query's outcome gives the script: its rows, or the error said for it.
fn rows_of(
    context: &Context,
    target: &Target,
    server: &Target,
    sql: &str,
    rows: Result<Vec<query::Row>, QueryError>,
    run: &RunInfo,
) -> HostResult<Array> {
    let rows = match rows {
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
    Ok(rows
        .into_iter()
        .map(|row| {
            let map: Map = row
                .into_iter()
                .map(|(column, value)| (column.into(), script_value(value)))
                .collect();
            Dynamic::from_map(map)
        })
        .collect())
}

/// A script value as a query parameter in text form, as psql would send it: `()` is NULL,
/// blobs are `\x…` hex, arrays and maps JSON, anything else its display form.
fn text_param(value: &Dynamic) -> Option<String> {
    if value.is_unit() {
        return None;
    }
    if let Some(blob) = value.read_lock::<rhai::Blob>() {
        return Some(format!("\\x{}", crate::pg::dump::hex(&blob)));
    }
    if value.is_array() || value.is_map() {
        return Some(serde_json::to_string(value).unwrap_or_else(|_| value.to_string()));
    }
    Some(value.to_string())
}

/// A result value as the closest script value: NULL is `()`, bytea a blob, json maps and arrays.
fn script_value(value: Value) -> Dynamic {
    match value {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => b.into(),
        Value::Int(i) => i.into(),
        Value::Float(f) => f.into(),
        Value::Text(text) => text.into(),
        Value::Bytes(bytes) => Dynamic::from_blob(bytes),
        Value::Json(json) => rhai::serde::to_dynamic(json).unwrap_or(Dynamic::UNIT),
        Value::Array(items) => items
            .into_iter()
            .map(script_value)
            .collect::<Array>()
            .into(),
    }
}

/// SQL on one line, for a log line.
fn one_line(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn dump(context: &Context, options: Map) -> HostResult<Map> {
    let request = dump_request(context, options)?;
    dump::check_directory(&request.to)
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
            // Temporary files of dumps killed before they could clean up go first.
            if !request.free_names.is_empty() {
                let dir = request.to.parent().unwrap_or(std::path::Path::new("."));
                backups::remove_abandoned(dir, &request.target.database());
            } else {
                crate::journal::atomic::remove_abandoned(&request.to);
            }
            let docker = docker_for(context, &request.target)?;
            let progress = Progress::spinner(context, &format!("pg_dump {detail}"));
            let mut report = |bytes: u64| {
                progress.set_message(&format!("pg_dump {detail}: {} MiB", bytes >> 20))
            };
            let dumped = context
                .block_on(dump::dump(&request, docker.as_ref(), &mut report))?
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
    let (request, stop) = restore_request(context, options)?;
    let database = request.target.database();
    // Reading the file (format, checksum, psql commands) is no change: a dry run does it too.
    let (kind, bytes) = restore::inspect(&request.from, request.sha256.as_deref())
        .map_err(|e| fail_masked(context, format!("pg::restore: {e}")))?;
    let detail = format!(
        "{} ← {} ({}{}{})",
        request.target,
        request.from.display(),
        kind.describe(),
        if request.terminate_sessions {
            ", terminating sessions"
        } else {
            ""
        },
        match stop.len() {
            0 => String::new(),
            n => format!(", stopping {n} container(s) for the swap"),
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
            let (restored, halted) = {
                let _progress = Progress::spinner(context, &format!("restoring {detail}"));
                // Nothing live is touched until the dump is loaded and counted.
                let loading = restore::load(&request, kind, docker.as_ref(), stop.is_empty());
                let loaded = settle(context, &request, &docker, context.block_on(loading))?;
                let halted = match stop_for_swap(context, &stop) {
                    Ok(halted) => halted,
                    Err((error, halted)) => {
                        cleanup(context, &request, docker.as_ref());
                        start_after_swap(context, &halted);
                        return Err(error);
                    }
                };
                let swapping = restore::swap(&request, loaded, docker.as_ref());
                let swapped = settle(context, &request, &docker, context.block_on(swapping));
                start_after_swap(context, &halted);
                (swapped?, halted)
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
            let halted: Array = halted.into_iter().map(Dynamic::from).collect();
            map.insert("stopped".into(), halted.into());
            Ok(map)
        },
    )
}

/// The outcome of a step of a restore: its error masked, or after an interrupt the scratch
/// database dropped.
fn settle<T>(
    context: &Context,
    request: &RestoreRequest,
    docker: &Option<bollard::Docker>,
    outcome: Result<Result<T, restore::RestoreError>, Box<rhai::EvalAltResult>>,
) -> HostResult<T> {
    match outcome {
        Ok(result) => {
            result.map_err(|e| fail_masked(context, format!("pg::restore {}: {e}", request.target)))
        }
        Err(stopped) => {
            cleanup(context, request, docker.as_ref());
            Err(stopped)
        }
    }
}

/// Stops the running ones of `names` (each a journaled change) for the swap; returns those it
/// stopped, or the error and those it had stopped before it.
fn stop_for_swap(
    context: &Context,
    names: &[String],
) -> Result<Vec<String>, (Box<rhai::EvalAltResult>, Vec<String>)> {
    let mut halted = Vec::new();
    if names.is_empty() {
        return Ok(halted);
    }
    let docker = context.docker().map_err(|e| (e, Vec::new()))?;
    for name in names {
        // One already stopped stays stopped: it is not started after the swap either.
        let running = context
            .block_on(crate::docker::containers::inspect(&docker, name))
            .map_err(|e| (e, halted.clone()))?
            .map(|c| c.state.and_then(|s| s.running).unwrap_or(false))
            .map_err(|e| {
                (
                    fail(format!("pg::restore: cannot stop {name}: {e}")),
                    halted.clone(),
                )
            })?;
        if !running {
            continue;
        }
        let stopped = context.change(
            "docker::stop",
            name,
            || (),
            || {
                context
                    .block_on(crate::docker::containers::stop(&docker, name, None))?
                    .map_err(|e| fail(format!("docker::stop {name}: {e}")))
            },
        );
        match stopped {
            Ok(()) => halted.push(name.clone()),
            Err(error) => return Err((error, halted)),
        }
    }
    tracing::info!("stopped {} container(s) for the swap", halted.len());
    Ok(halted)
}

/// Starts again what [`stop_for_swap`] stopped, whatever the swap did; a container that will
/// not start is a warning (the restore's outcome stands).
fn start_after_swap(context: &Context, names: &[String]) {
    if names.is_empty() {
        return;
    }
    let Ok(docker) = context.docker() else { return };
    for name in names {
        let started = context.change(
            "docker::start",
            name,
            || (),
            || {
                // Started even after Ctrl-C: the containers must not stay down for it.
                context
                    .runtime()
                    .block_on(crate::docker::containers::start(&docker, name, name))
                    .map_err(|e| fail(format!("docker::start {name}: {e}")))
            },
        );
        if let Err(error) = started {
            tracing::warn!("{}", context.secrets.redact(&error.to_string()));
        }
    }
    tracing::info!("started {} container(s) again", names.len());
}

/// After an interrupted restore: drop the scratch database, if it got that far.
fn cleanup(context: &Context, request: &RestoreRequest, docker: Option<&bollard::Docker>) {
    let dropping = tokio::time::timeout(CLEANUP_LIMIT, restore::drop_scratch(request, docker));
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

const PRUNE: OptionKeys = OptionKeys::new("pg::prune", &[&["dir", "db", "keep"]]);

fn prune(context: &Context, options: Map) -> HostResult<Map> {
    let options = Options::new(&PRUNE, options)?;
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
    let (kept, deleted) = backups::plan_prune(&dir, &db, keep).map_err(|e| options.error(e))?;
    if !context.is_dry_run() && !context.run_info().readonly {
        backups::remove_abandoned(&dir, &db);
    }
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
    let paths = |list: &[backups::Backup]| -> Array {
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
        .block_on(restore::other_sessions(request, docker.as_ref()))?
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

/// The keys that say where the database is; every function that reaches one accepts them.
const TARGET_KEYS: [&str; 6] = [
    "url",
    "password",
    "container",
    "db",
    "user",
    "connect_timeout",
];

const ISREADY: OptionKeys =
    OptionKeys::new("pg::isready", &[&TARGET_KEYS]).given(Given::Argument("target"));
const QUERY: OptionKeys =
    OptionKeys::new("pg::query", &[&TARGET_KEYS]).given(Given::Argument("target"));
const CONNECT_AHEAD: OptionKeys =
    OptionKeys::new("pg::connect_ahead", &[&TARGET_KEYS]).given(Given::Argument("target"));
const DUMP: OptionKeys = OptionKeys::new(
    "pg::dump",
    &[&TARGET_KEYS, &["to", "format", "gzip", "args"]],
);
const RESTORE: OptionKeys = OptionKeys::new(
    "pg::restore",
    &[
        &TARGET_KEYS,
        &[
            "from",
            "sha256",
            "terminate_sessions",
            "maintenance_db",
            "stop",
        ],
    ],
);

/// The database these options name: `url` (with an optional `password`), or `container` with
/// `db` and `user` (default `postgres`). Its password is registered for masking.
fn target(options: &Options, context: &Context) -> HostResult<Target> {
    let password = options.string("password")?;
    if let Some(password) = &password {
        context.secrets.add(password);
    }
    let url = options.string("url")?;
    if let Some(url) = &url {
        context.secrets.add_url(url);
    }
    let container = options.string("container")?;
    let mut target = match (url, container) {
        (Some(url), None) => {
            if let Some(key) = ["db", "user"].into_iter().find(|k| options.has(k)) {
                return Err(options.error(format!(
                    "option `{key}` goes with `container`; with `url` the URL names the \
                     database and user"
                )));
            }
            Target::server(&url, password)
        }
        (None, Some(container)) => {
            let db = options.required("db", "the database in the container")?;
            let user = options.string("user")?.unwrap_or_else(|| "postgres".into());
            Target::container(&container, &db, &user, password)
        }
        (Some(_), Some(_)) => {
            return Err(options.error("give either `url` or `container`, not both"));
        }
        (None, None) => {
            return Err(options.error(
                "say where the database is: `url` (postgres://user@host:port/db) or \
                 `container` with `db`",
            ));
        }
    }
    .map_err(|e| options.error(e))?;
    for secret in target.secrets() {
        context.secrets.add(&secret);
    }
    if let Some(timeout) = options.positive_millis("connect_timeout")? {
        target.connect_timeout = timeout;
    }
    Ok(target)
}

/// A dump request from `pg::dump`'s options. `to` may name a directory: the file is then named by
/// the backup convention (see [`crate::pg::backups`]).
pub fn dump_request(context: &Context, map: Map) -> HostResult<DumpRequest> {
    let options = Options::new(&DUMP, map)?;
    let target = target(&options, context)?;
    let format = match options.string("format")? {
        None => Format::Plain,
        Some(name) => Format::parse(&name)
            .ok_or_else(|| options.error(format!("format {name:?} is not one of plain, custom")))?,
    };
    let to = options.required("to", "the backup file, or a directory")?;
    let gzip = match options.value("gzip") {
        None => (format == Format::Plain && to.ends_with(".gz")).then_some(DEFAULT_GZIP_LEVEL),
        Some(value) => match (value.as_bool(), value.as_int()) {
            (Ok(on), _) => on.then_some(DEFAULT_GZIP_LEVEL),
            (_, Ok(level @ 1..=9)) => Some(level as u32),
            _ => return Err(options.invalid("gzip", "true, false or a level 1–9", value)),
        },
    };
    if to.ends_with('/') && !std::path::Path::new(&to).is_dir() {
        return Err(options.error(format!("directory {to} does not exist")));
    }
    let mut to = PathBuf::from(to);
    let mut free_names = Vec::new();
    if to.is_dir() {
        let name = backups::file_name(
            &target.database(),
            format,
            gzip.is_some(),
            jiff::Timestamp::now(),
        )
        .map_err(|e| options.error(e))?;
        // Two backups in the same second: the second takes `-2`, and so on; none replaces one.
        free_names = (1..=1000)
            .map(|n| to.join(backups::numbered(&name, n)))
            .collect();
        to.push(name);
    }
    Ok(DumpRequest {
        target,
        to,
        format,
        gzip,
        free_names,
        extra_args: options.strings("args")?.unwrap_or_default(),
    })
}

/// A restore request from `pg::restore`'s options, and the containers to stop for its swap.
pub fn restore_request(context: &Context, map: Map) -> HostResult<(RestoreRequest, Vec<String>)> {
    let options = Options::new(&RESTORE, map)?;
    let target = target(&options, context)?;
    let scratch = scratch_name(&target.database());
    let stop = options.strings("stop")?.unwrap_or_default();
    let request = RestoreRequest {
        from: options.required("from", "the dump file")?.into(),
        sha256: options.string("sha256")?,
        terminate_sessions: options.bool("terminate_sessions")?.unwrap_or(false),
        maintenance_db: options
            .string("maintenance_db")?
            .unwrap_or_else(|| "postgres".into()),
        scratch,
        target,
    };
    Ok((request, stop))
}

/// A target from `pg::isready`/`pg::query`'s first argument: a URL, or a map of target options.
fn target_of(context: &Context, known: &OptionKeys, value: Dynamic) -> HostResult<Target> {
    let map = if value.is_string() {
        let mut map = Map::new();
        map.insert("url".into(), value);
        map
    } else {
        value.try_cast::<Map>().ok_or_else(|| {
            fail(format!(
                "{}: the target is a URL string or a map such as #{{url: …}} or \
                 #{{container: …, db: …}}",
                known.function
            ))
        })?
    };
    target(&Options::new(known, map)?, context)
}

#[cfg(test)]
mod tests {
    use rhai::Array;

    use super::*;

    #[test]
    fn params_as_text() {
        let text = |v: Dynamic| text_param(&v);
        assert_eq!(text(Dynamic::UNIT), None);
        assert_eq!(text(42_i64.into()), Some("42".into()));
        assert_eq!(text(true.into()), Some("true".into()));
        assert_eq!(text("x".into()), Some("x".into()));
        assert_eq!(
            text(Dynamic::from_blob(vec![1, 255])),
            Some("\\x01ff".into())
        );
        let array: Array = vec![1_i64.into(), "a".into()];
        assert_eq!(text(array.into()), Some(r#"[1,"a"]"#.into()));
    }
}
