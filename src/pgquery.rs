//! Talking to PostgreSQL directly (tokio-postgres): readiness, and queries whose rows come back as
//! maps of column name to script value. Parameters travel in text form, so the server reads them
//! as the type it infers for each `$n` (numeric, timestamp, uuid, json…) just as psql would;
//! result columns are decoded from PostgreSQL's binary form into the closest script value.

use std::{error::Error as StdError, fmt::Write as _, str::FromStr, time::Duration};

use bollard::Docker;
use postgres_protocol::types as wire;
use rhai::{Array, Blob, Dynamic, Map};
use tokio_postgres::{
    Client, NoTls,
    error::SqlState,
    types::{FromSql, IsNull, Kind, ToSql, Type, to_sql_checked},
};

use crate::{
    pgprogram::{self, Program},
    pgtarget::{Place, Target},
};

type BoxError = Box<dyn StdError + Sync + Send>;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    Postgres(String),
    #[error("pg::query reaches a server by URL; {0} is a container")]
    Container(String),
    #[error("column {column}: {reason}")]
    Column { column: String, reason: String },
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
    match pgprogram::run(&program, Some((docker, container)), None, &mut sink).await {
        Ok(outcome) if outcome.success() => Ok(Readiness::Ready),
        Ok(outcome) => Ok(Readiness::NotReady(outcome.describe("pg_isready"))),
        Err(error) if error.container_not_running() => Ok(Readiness::NotReady(error.to_string())),
        Err(error) => Err(QueryError::Postgres(error.to_string())),
    }
}

/// Runs `sql` with `params` bound to `$1`, `$2`… and returns every row as a map.
pub async fn query(target: &Target, sql: &str, params: &[Dynamic]) -> Result<Vec<Map>, QueryError> {
    let client = connect(target).await.map_err(|e| match e {
        ConnectError::Refused(reason) => QueryError::Postgres(reason),
        ConnectError::Fatal(error) => error,
    })?;
    let params: Vec<TextParam> = params.iter().map(TextParam::from_dynamic).collect();
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as _).collect();
    let rows = client
        .query(sql, &refs)
        .await
        .map_err(|e| QueryError::Postgres(describe(&e)))?;
    rows.iter()
        .map(|row| {
            let mut map = Map::new();
            for (i, column) in row.columns().iter().enumerate() {
                let cell: Cell = row.try_get(i).map_err(|e| QueryError::Column {
                    column: column.name().to_string(),
                    reason: e.source().map_or_else(|| e.to_string(), |s| s.to_string()),
                })?;
                map.insert(column.name().into(), cell.0);
            }
            Ok(map)
        })
        .collect()
}

enum ConnectError {
    /// The server is not there, or not taking connections yet.
    Refused(String),
    /// Waiting will not help: bad credentials, a bad URL, a container target.
    Fatal(QueryError),
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

/// A parameter in text form, as psql sends it: the server parses it as the type it inferred.
#[derive(Debug)]
struct TextParam(Option<String>);

impl TextParam {
    fn from_dynamic(value: &Dynamic) -> TextParam {
        if value.is_unit() {
            return TextParam(None);
        }
        if let Some(blob) = value.read_lock::<Blob>() {
            return TextParam(Some(format!("\\x{}", crate::pgdump::hex(&blob))));
        }
        if value.is_array() || value.is_map() {
            return TextParam(Some(
                serde_json::to_string(value).unwrap_or_else(|_| value.to_string()),
            ));
        }
        TextParam(Some(value.to_string()))
    }
}

impl ToSql for TextParam {
    fn to_sql(&self, _: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, BoxError> {
        match &self.0 {
            None => Ok(IsNull::Yes),
            Some(text) => {
                out.extend_from_slice(text.as_bytes());
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn encode_format(&self, _: &Type) -> tokio_postgres::types::Format {
        tokio_postgres::types::Format::Text
    }

    to_sql_checked!();
}

/// One result value as a script value.
struct Cell(Dynamic);

impl<'a> FromSql<'a> for Cell {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Cell, BoxError> {
        decode(ty, raw).map(Cell)
    }

    fn from_sql_null(_: &Type) -> Result<Cell, BoxError> {
        Ok(Cell(Dynamic::UNIT))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_US: i64 = 946_684_800_000_000;

fn decode(ty: &Type, raw: &[u8]) -> Result<Dynamic, BoxError> {
    let text = || -> Result<Dynamic, BoxError> { Ok(wire::text_from_sql(raw)?.into()) };
    Ok(match *ty {
        Type::BOOL => wire::bool_from_sql(raw)?.into(),
        Type::INT2 => i64::from(wire::int2_from_sql(raw)?).into(),
        Type::INT4 => i64::from(wire::int4_from_sql(raw)?).into(),
        Type::INT8 => wire::int8_from_sql(raw)?.into(),
        Type::OID => i64::from(wire::oid_from_sql(raw)?).into(),
        Type::FLOAT4 => f64::from(wire::float4_from_sql(raw)?).into(),
        Type::FLOAT8 => wire::float8_from_sql(raw)?.into(),
        Type::NUMERIC => numeric(raw)?,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => text()?,
        Type::JSON => json(raw)?,
        Type::JSONB => match raw.split_first() {
            Some((1, rest)) => json(rest)?,
            _ => return Err("unsupported jsonb version".into()),
        },
        Type::BYTEA => Dynamic::from_blob(raw.to_vec()),
        Type::UUID => uuid(&wire::uuid_from_sql(raw)?).into(),
        Type::TIMESTAMPTZ => timestamp(wire::timestamp_from_sql(raw)?, true)?.into(),
        Type::TIMESTAMP => timestamp(wire::timestamp_from_sql(raw)?, false)?.into(),
        Type::DATE => date(wire::date_from_sql(raw)?)?.into(),
        _ => match ty.kind() {
            Kind::Enum(_) => text()?,
            Kind::Domain(inner) => decode(inner, raw)?,
            Kind::Array(element) => array(element, raw)?,
            _ if ty.name() == "citext" => text()?,
            _ => {
                return Err(format!(
                    "type {} has no script value; cast it in the SQL, e.g. `column::text`",
                    ty.name()
                )
                .into());
            }
        },
    })
}

fn json(raw: &[u8]) -> Result<Dynamic, BoxError> {
    let value: serde_json::Value = serde_json::from_slice(raw)?;
    rhai::serde::to_dynamic(value).map_err(|e| e.to_string().into())
}

fn array(element: &Type, raw: &[u8]) -> Result<Dynamic, BoxError> {
    use fallible_iterator::FallibleIterator;
    let array = wire::array_from_sql(raw)?;
    if array.dimensions().count()? > 1 {
        return Err("multi-dimensional arrays have no script value; cast to text".into());
    }
    let mut values = Array::new();
    let mut items = array.values();
    while let Some(item) = items.next()? {
        values.push(match item {
            None => Dynamic::UNIT,
            Some(raw) => decode(element, raw)?,
        });
    }
    Ok(values.into())
}

fn uuid(bytes: &[u8; 16]) -> String {
    let hex = crate::pgdump::hex(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// RFC 3339 text: `2026-01-26T04:31:02.5Z` with a zone, without one for `timestamp`.
fn timestamp(microseconds: i64, zoned: bool) -> Result<String, BoxError> {
    match microseconds {
        i64::MAX => return Ok("infinity".into()),
        i64::MIN => return Ok("-infinity".into()),
        _ => {}
    }
    let instant = jiff::Timestamp::from_microsecond(PG_EPOCH_US + microseconds)?;
    Ok(if zoned {
        instant.to_string()
    } else {
        instant
            .to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .datetime()
            .to_string()
    })
}

fn date(days: i32) -> Result<String, BoxError> {
    match days {
        i32::MAX => return Ok("infinity".into()),
        i32::MIN => return Ok("-infinity".into()),
        _ => {}
    }
    let epoch = jiff::civil::date(2000, 1, 1);
    Ok(epoch.checked_add(jiff::Span::new().days(days))?.to_string())
}

/// A `numeric` as an integer when it is whole and fits, else as a float (cast to text in the
/// SQL for every digit).
fn numeric(raw: &[u8]) -> Result<Dynamic, BoxError> {
    let text = numeric_text(raw)?;
    if let Ok(int) = text.parse::<i64>() {
        return Ok(int.into());
    }
    Ok(match text.as_str() {
        "NaN" => f64::NAN,
        "Infinity" => f64::INFINITY,
        "-Infinity" => f64::NEG_INFINITY,
        _ => text.parse::<f64>()?,
    }
    .into())
}

/// The decimal text of a binary `numeric`: base-10000 digits with a weight and a display scale.
fn numeric_text(raw: &[u8]) -> Result<String, BoxError> {
    let short = || -> BoxError { "numeric value too short".into() };
    let word = |i: usize| -> Result<u16, BoxError> {
        let bytes = raw.get(i * 2..i * 2 + 2).ok_or_else(short)?;
        Ok(u16::from_be_bytes([bytes[0], bytes[1]]))
    };
    let ndigits = word(0)? as usize;
    let weight = word(1)? as i16 as i64;
    let sign = word(2)?;
    let dscale = word(3)? as usize;
    match sign {
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        _ => {}
    }
    let digits: Vec<u16> = (0..ndigits)
        .map(|i| word(4 + i))
        .collect::<Result<_, _>>()?;
    let digit = |position: i64| -> u16 {
        // Group `position` counts from the most significant group (weight) down.
        let index = weight - position;
        if index < 0 {
            0
        } else {
            digits.get(index as usize).copied().unwrap_or(0)
        }
    };
    let mut text = String::new();
    if sign == 0x4000 {
        text.push('-');
    }
    if weight < 0 {
        text.push('0');
    } else {
        let _ = write!(text, "{}", digit(weight));
        for position in (0..weight).rev() {
            let _ = write!(text, "{:04}", digit(position));
        }
    }
    if dscale > 0 {
        let mut fraction = String::new();
        let mut position = -1;
        while fraction.len() < dscale {
            let _ = write!(fraction, "{:04}", digit(position));
            position -= 1;
        }
        fraction.truncate(dscale);
        text.push('.');
        text.push_str(&fraction);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_raw(ndigits: u16, weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut raw = Vec::new();
        for word in [ndigits, weight as u16, sign, dscale].iter().chain(digits) {
            raw.extend_from_slice(&word.to_be_bytes());
        }
        raw
    }

    #[test]
    fn numeric_decimal_text() {
        // 12345.678 = groups [1, 2345, 6780], weight 1, dscale 3
        let raw = numeric_raw(3, 1, 0, 3, &[1, 2345, 6780]);
        assert_eq!(numeric_text(&raw).unwrap(), "12345.678");
        // -0.0012 = groups [12], weight -1, dscale 4
        let raw = numeric_raw(1, -1, 0x4000, 4, &[12]);
        assert_eq!(numeric_text(&raw).unwrap(), "-0.0012");
        // 20000 = groups [2], weight 1, dscale 0
        let raw = numeric_raw(1, 1, 0, 0, &[2]);
        assert_eq!(numeric_text(&raw).unwrap(), "20000");
        assert_eq!(numeric(&raw).unwrap().as_int().unwrap(), 20000);
        let raw = numeric_raw(0, 0, 0, 0, &[]);
        assert_eq!(numeric_text(&raw).unwrap(), "0");
    }

    #[test]
    fn dates_and_times() {
        assert_eq!(date(0).unwrap(), "2000-01-01");
        assert_eq!(date(-1).unwrap(), "1999-12-31");
        assert_eq!(
            timestamp(1_500_000, true).unwrap(),
            "2000-01-01T00:00:01.5Z"
        );
        assert_eq!(timestamp(0, false).unwrap(), "2000-01-01T00:00:00");
        assert_eq!(timestamp(i64::MAX, true).unwrap(), "infinity");
    }

    #[test]
    fn params_as_text() {
        let text = |v: Dynamic| TextParam::from_dynamic(&v).0;
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
