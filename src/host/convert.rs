//! Script values to the plain values subsystems take, and back.
//!
//! * JSON, for the host modules that store, journal, send or receive it (`state`, `audit`,
//!   `http`): maps become objects, arrays arrays, `()` null; integers stay integers. A value JSON
//!   cannot hold (a function pointer, a timestamp) is an error naming it.
//! * A compose tree ([`Node`]), for a `docker::run` spec or a loaded project handed back to
//!   `compose::up`: the same tree a compose file gives, without lines, so one reader serves both.

use rhai::Dynamic;
use serde_json::Value;

use super::{HostResult, fail};
use crate::compose::tree::{Entry, Node, Value as TreeValue};

pub fn to_json(value: &Dynamic) -> HostResult<Value> {
    rhai::serde::from_dynamic(value).map_err(|e| {
        fail(format!(
            "{} cannot be stored as JSON: {e}",
            value.type_name()
        ))
    })
}

/// Any serializable plain value as a script value (structs become maps).
pub fn to_dynamic(value: impl serde::Serialize) -> HostResult<Dynamic> {
    rhai::serde::to_dynamic(value)
}

pub fn from_json(value: &Value) -> HostResult<Dynamic> {
    rhai::serde::to_dynamic(value)
}

/// A short rendering of `value` for log lines and journal messages.
pub fn preview(value: &Value) -> String {
    const LIMIT: usize = 200;
    let text = value.to_string();
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// A script value as a tree without lines. Unit is null; other types read as their text.
pub fn to_tree(value: &Dynamic) -> Node {
    let value = if value.is_unit() {
        TreeValue::Null
    } else if let Ok(b) = value.as_bool() {
        TreeValue::Bool(b)
    } else if let Ok(n) = value.as_int() {
        TreeValue::Int(n)
    } else if let Ok(n) = value.as_float() {
        TreeValue::Float(n)
    } else if let Some(items) = value.read_lock::<rhai::Array>() {
        TreeValue::Seq(items.iter().map(to_tree).collect())
    } else if let Some(map) = value.read_lock::<rhai::Map>() {
        TreeValue::Map(
            map.iter()
                .map(|(key, value)| Entry {
                    key: key.to_string(),
                    line: 0,
                    value: to_tree(value),
                })
                .collect(),
        )
    } else {
        TreeValue::Str(value.to_string())
    };
    Node { line: 0, value }
}
