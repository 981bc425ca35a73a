//! Rhai values to JSON and back, for the host modules that store, journal, send or receive JSON
//! (`state`, `audit`, `http`). Maps become objects, arrays arrays, `()` null; integers stay
//! integers. A value JSON cannot hold (a function pointer, a timestamp) is an error naming it.

use rhai::Dynamic;
use serde_json::Value;

use super::{HostResult, fail};

pub fn to_json(value: &Dynamic) -> HostResult<Value> {
    rhai::serde::from_dynamic(value).map_err(|e| {
        fail(format!(
            "{} cannot be stored as JSON: {e}",
            value.type_name()
        ))
    })
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
