//! Talking to PostgreSQL directly (tokio-postgres): readiness, and queries whose rows come back as
//! maps of column name to script value (see [`crate::pg::value`] for how values are carried). In a
//! container, readiness is asked of `pg_isready` there.

use std::{error::Error as StdError, fmt::Write as _, str::FromStr, time::Duration};

use bollard::Docker;
use tokio_postgres::{Client, NoTls, error::SqlState, types::ToSql};

use crate::{
    pg::program::{self, Program},
    pg::target::{Place, Target},
    pg::value::{Cell, TextParam, Value},
};

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    Postgres(String),
    #[error("pg::query reaches a server by URL; {0} is a container")]
    Container(String),
    #[error("{0} has no network address to reach its database at (is it running, on a network?)")]
    NoAddress(String),
    /// The Docker Engine's answer when the container cannot be inspected.
    #[error("{0}")]
    Inspect(String),
    #[error("column {column}: {reason}")]
    Column { column: String, reason: String },
    /// The statement would write, and it ran in a read-only transaction.
    #[error("{0}")]
    Writes(String),
}

/// How a query runs: as given, or in a read-only transaction that is rolled back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadWrite,
    /// `BEGIN READ ONLY`, a first statement that fixes the snapshot (so the script's statement
    /// cannot turn the transaction read-write), the statement, `ROLLBACK`: the server refuses
    /// every write to data (`INSERT`, `UPDATE`, DDL, `nextval`, …) with SQLSTATE 25006.
    ReadOnly,
}

/// Whether a server takes connections, and if not why.
pub enum Readiness {
    Ready,
    NotReady(String),
}

/// Whether the server of `target` takes connections. By URL: connects and runs `SELECT 1`;
/// authentication failures are errors, not "not ready" (waiting will not fix a wrong password).
/// In a container (`docker` is then needed): runs `pg_isready` there; a container that is not
/// running is not ready.
pub async fn isready(target: &Target, docker: Option<&Docker>) -> Result<Readiness, QueryError> {
    if let Some(container) = target.container_name() {
        let docker = docker.expect("a container target comes with a Docker client");
        return isready_in_container(target, docker, container).await;
    }
    let client = match connect(target).await {
        Ok(client) => client,
        Err(ConnectError::Refused(reason)) => return Ok(Readiness::NotReady(reason)),
        Err(ConnectError::Fatal(error)) => return Err(error),
    };
    match client.simple_query("SELECT 1").await {
        Ok(_) => Ok(Readiness::Ready),
        Err(error) => Ok(Readiness::NotReady(describe(&error))),
    }
}

async fn isready_in_container(
    target: &Target,
    docker: &Docker,
    container: &str,
) -> Result<Readiness, QueryError> {
    let mut args: Vec<String> = target
        .connection_args()
        .into_iter()
        .filter(|a| a != "--no-password")
        .collect();
    args.push(format!(
        "--timeout={}",
        target.connect_timeout.as_secs().max(1)
    ));
    let program = Program {
        name: "pg_isready",
        args,
        env: target.environment(),
    };
    let mut sink = std::io::sink();
    match program::run(&program, Some((docker, container)), None, &mut sink).await {
        Ok(outcome) if outcome.success() => Ok(Readiness::Ready),
        Ok(outcome) => Ok(Readiness::NotReady(outcome.describe("pg_isready"))),
        Err(error) if error.container_not_running() => Ok(Readiness::NotReady(error.to_string())),
        Err(error) => Err(QueryError::Postgres(error.to_string())),
    }
}

/// The port PostgreSQL listens on inside a container.
const CONTAINER_PORT: u16 = 5432;

/// The server inside container `target` as a server target: its address on its first Docker
/// network, port 5432, the same database, user, password and connect timeout. This host reaches
/// a container's address without any port published, so a query reaches the database where
/// the client programs (run inside the container) do. Over TCP the server asks for the
/// password (the container's `host … scram-sha-256` rule), so the target should carry one.
pub async fn in_container(target: &Target, docker: &Docker) -> Result<Target, QueryError> {
    let Place::Container {
        name,
        database,
        user,
    } = &target.place
    else {
        return Ok(target.clone());
    };
    let inspected = docker
        .inspect_container(name, None)
        .await
        .map_err(|e| QueryError::Inspect(e.to_string()))?;
    let running = inspected
        .state
        .as_ref()
        .and_then(|s| s.running)
        .unwrap_or(false);
    let settings = inspected.network_settings.unwrap_or_default();
    let mut networks: Vec<(String, String)> = settings
        .networks
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(network, endpoint)| {
            endpoint
                .ip_address
                .filter(|ip| !ip.is_empty())
                .map(|ip| (network, ip))
        })
        .collect();
    networks.sort();
    let address = networks
        .into_iter()
        .map(|(_, ip)| ip)
        .next()
        .filter(|_| running)
        .ok_or_else(|| QueryError::NoAddress(target.to_string()))?;
    let mut url = url::Url::parse(&format!("postgres://{address}:{CONTAINER_PORT}/"))
        .map_err(|e| QueryError::Postgres(e.to_string()))?;
    let _ = url.set_username(user);
    url.set_path(&format!(
        "/{}",
        percent_encoding::utf8_percent_encode(database, percent_encoding::NON_ALPHANUMERIC)
    ));
    let mut server = Target::server(url.as_str(), target.password.clone())
        .map_err(|e| QueryError::Postgres(e.to_string()))?;
    server.connect_timeout = target.connect_timeout;
    Ok(server)
}

/// One result row: each column's name and value, in the query's order.
pub type Row = Vec<(String, Value)>;

/// Runs `sql` with `params` (in text form; `None` is NULL) bound to `$1`, `$2`… and returns
/// every row.
pub async fn query(
    target: &Target,
    sql: &str,
    params: Vec<Option<String>>,
    access: Access,
) -> Result<Vec<Row>, QueryError> {
    let client = connect(target).await.map_err(ConnectError::into_query)?;
    run(client, sql, params, access).await
}

/// A connection to a server, opened before the query that uses it (see [`open`]): its setup
/// (a TCP handshake and SCRAM's key derivation, several milliseconds) then overlaps other work.
pub struct Connection {
    server: Target,
    client: Client,
}

impl Connection {
    /// The server connected to (a container target's, at the container's address).
    pub fn server(&self) -> &Target {
        &self.server
    }
}

/// Opens a connection to `target`'s server; a container target is first resolved to its server
/// at the container's own address (see [`in_container`]), which needs `docker`.
pub async fn open(target: &Target, docker: Option<&Docker>) -> Result<Connection, QueryError> {
    let server = match (target.container_name(), docker) {
        (None, _) => target.clone(),
        (Some(_), Some(docker)) => in_container(target, docker).await?,
        (Some(_), None) => return Err(QueryError::Container(target.to_string())),
    };
    let client = connect(&server).await.map_err(ConnectError::into_query)?;
    Ok(Connection { server, client })
}

/// [`query`] on a connection [`open`]ed before; it is closed afterwards, as [`query`]'s own is.
pub async fn query_on(
    connection: Connection,
    sql: &str,
    params: Vec<Option<String>>,
    access: Access,
) -> Result<Vec<Row>, QueryError> {
    run(connection.client, sql, params, access).await
}

/// Runs `sql` on `client`, which it closes when done.
async fn run(
    client: Client,
    sql: &str,
    params: Vec<Option<String>>,
    access: Access,
) -> Result<Vec<Row>, QueryError> {
    let params: Vec<TextParam> = params.into_iter().map(TextParam).collect();
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as _).collect();
    if access == Access::ReadOnly {
        client
            .batch_execute("BEGIN TRANSACTION READ ONLY; SELECT 1")
            .await
            .map_err(|e| QueryError::Postgres(describe(&e)))?;
    }
    // Without parameters there is no type for the server to infer, so the statement is parsed,
    // bound and run in one round trip; with them, `query` prepares it first (the server says
    // what type each `$n` is, and the text given is read as that).
    let rows = if refs.is_empty() {
        client.query_typed(sql, &[]).await
    } else {
        client.query(sql, &refs).await
    };
    let rows = rows.map_err(|e| {
        let writes = e.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION);
        match writes && access == Access::ReadOnly {
            true => QueryError::Writes(describe(&e)),
            false => QueryError::Postgres(describe(&e)),
        }
    });
    if access == Access::ReadOnly {
        // The connection closes when `client` drops; the rollback is for the server's log.
        let _ = client.batch_execute("ROLLBACK").await;
    }
    let rows = rows?;
    rows.iter()
        .map(|row| {
            let mut values = Row::new();
            for (i, column) in row.columns().iter().enumerate() {
                let cell: Cell = row.try_get(i).map_err(|e| QueryError::Column {
                    column: column.name().to_string(),
                    reason: e.source().map_or_else(|| e.to_string(), |s| s.to_string()),
                })?;
                values.push((column.name().to_string(), cell.0));
            }
            Ok(values)
        })
        .collect()
}

enum ConnectError {
    /// The server is not there, or not taking connections yet.
    Refused(String),
    /// Waiting will not help: bad credentials, a bad URL, a container target.
    Fatal(QueryError),
}

impl ConnectError {
    /// As a query reports it: no difference between the two.
    fn into_query(self) -> QueryError {
        match self {
            ConnectError::Refused(reason) => QueryError::Postgres(reason),
            ConnectError::Fatal(error) => error,
        }
    }
}

async fn connect(target: &Target) -> Result<Client, ConnectError> {
    let Place::Server { url } = &target.place else {
        return Err(ConnectError::Fatal(QueryError::Container(
            target.to_string(),
        )));
    };
    let mut config = tokio_postgres::Config::from_str(url.as_str())
        .map_err(|e| ConnectError::Fatal(QueryError::Postgres(describe(&e))))?;
    if let Some(password) = &target.password {
        config.password(password);
    }
    config.connect_timeout(target.connect_timeout);
    let connecting = config.connect(NoTls);
    // libpq-style connect_timeout covers each address; bound the whole attempt as well.
    let limit = target.connect_timeout + Duration::from_secs(1);
    let (client, connection) = match tokio::time::timeout(limit, connecting).await {
        Err(_) => {
            return Err(ConnectError::Refused(format!(
                "no answer from {target} within {} ms",
                limit.as_millis()
            )));
        }
        Ok(Err(error)) => {
            let fatal = error.as_db_error().is_some_and(|db| {
                let code = db.code();
                code == &SqlState::INVALID_PASSWORD
                    || code == &SqlState::INVALID_AUTHORIZATION_SPECIFICATION
            });
            let reason = describe(&error);
            return Err(if fatal {
                ConnectError::Fatal(QueryError::Postgres(reason))
            } else {
                ConnectError::Refused(reason)
            });
        }
        Ok(Ok(pair)) => pair,
    };
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// A tokio-postgres error in full: the server's message with its SQLSTATE, detail and hint, or
/// the chain of causes for a connection problem.
pub fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let mut text = format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
        if let Some(detail) = db.detail() {
            let _ = write!(text, "; DETAIL: {detail}");
        }
        if let Some(hint) = db.hint() {
            let _ = write!(text, "; HINT: {hint}");
        }
        return text;
    }
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}
