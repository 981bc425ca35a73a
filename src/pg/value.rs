//! PostgreSQL values and plain values. Parameters travel in text form, as psql sends them, so
//! the server reads each `$n` as the type it infers there (numeric, timestamp, uuid, json…);
//! result columns arrive in PostgreSQL's binary form and become the closest plain [`Value`] (which the host turns into a script value):
//! integers and floats, whole `numeric`s as integers, text, booleans, json as maps and arrays,
//! arrays, bytea as blobs, uuids and timestamps as text, NULL as `()`.

use std::{error::Error as StdError, fmt::Write as _};

use postgres_protocol::types as wire;
use tokio_postgres::types::{FromSql, IsNull, Kind, ToSql, Type, to_sql_checked};

type BoxError = Box<dyn StdError + Sync + Send>;

/// A parameter in text form, as psql sends it: the server parses it as the type it inferred.
/// `None` is SQL NULL.
#[derive(Debug)]
pub struct TextParam(pub Option<String>);

/// A result value: what a column's binary form decodes to.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
    Json(serde_json::Value),
    Array(Vec<Value>),
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

/// One result value.
pub struct Cell(pub Value);

impl<'a> FromSql<'a> for Cell {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Cell, BoxError> {
        decode(ty, raw).map(Cell)
    }

    fn from_sql_null(_: &Type) -> Result<Cell, BoxError> {
        Ok(Cell(Value::Null))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_US: i64 = 946_684_800_000_000;

fn decode(ty: &Type, raw: &[u8]) -> Result<Value, BoxError> {
    let text = || -> Result<Value, BoxError> { Ok(Value::Text(wire::text_from_sql(raw)?.into())) };
    Ok(match *ty {
        Type::BOOL => Value::Bool(wire::bool_from_sql(raw)?),
        Type::INT2 => Value::Int(wire::int2_from_sql(raw)?.into()),
        Type::INT4 => Value::Int(wire::int4_from_sql(raw)?.into()),
        Type::INT8 => Value::Int(wire::int8_from_sql(raw)?),
        Type::OID => Value::Int(wire::oid_from_sql(raw)?.into()),
        Type::FLOAT4 => Value::Float(wire::float4_from_sql(raw)?.into()),
        Type::FLOAT8 => Value::Float(wire::float8_from_sql(raw)?),
        Type::NUMERIC => numeric(raw)?,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => text()?,
        Type::JSON => json(raw)?,
        Type::JSONB => match raw.split_first() {
            Some((1, rest)) => json(rest)?,
            _ => return Err("unsupported jsonb version".into()),
        },
        Type::BYTEA => Value::Bytes(raw.to_vec()),
        Type::UUID => Value::Text(uuid(&wire::uuid_from_sql(raw)?)),
        Type::TIMESTAMPTZ => Value::Text(timestamp(wire::timestamp_from_sql(raw)?, true)?),
        Type::TIMESTAMP => Value::Text(timestamp(wire::timestamp_from_sql(raw)?, false)?),
        Type::DATE => Value::Text(date(wire::date_from_sql(raw)?)?),
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

fn json(raw: &[u8]) -> Result<Value, BoxError> {
    Ok(Value::Json(serde_json::from_slice(raw)?))
}

fn array(element: &Type, raw: &[u8]) -> Result<Value, BoxError> {
    use fallible_iterator::FallibleIterator;
    let array = wire::array_from_sql(raw)?;
    if array.dimensions().count()? > 1 {
        return Err("multi-dimensional arrays have no script value; cast to text".into());
    }
    let mut values = Vec::new();
    let mut items = array.values();
    while let Some(item) = items.next()? {
        values.push(match item {
            None => Value::Null,
            Some(raw) => decode(element, raw)?,
        });
    }
    Ok(Value::Array(values))
}

fn uuid(bytes: &[u8; 16]) -> String {
    let hex = crate::pg::dump::hex(bytes);
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
fn numeric(raw: &[u8]) -> Result<Value, BoxError> {
    let text = numeric_text(raw)?;
    if let Ok(int) = text.parse::<i64>() {
        return Ok(Value::Int(int));
    }
    Ok(Value::Float(match text.as_str() {
        "NaN" => f64::NAN,
        "Infinity" => f64::INFINITY,
        "-Infinity" => f64::NEG_INFINITY,
        _ => text.parse::<f64>()?,
    }))
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
        assert_eq!(numeric(&raw).unwrap(), Value::Int(20000));
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
}
