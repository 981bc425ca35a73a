//! Option maps of host functions (`#{timeout: 5_000, force: true}`), read key by key with the
//! type each key needs. A key the function does not know is an error naming the keys it does,
//! so a misspelt option never silently does nothing.

use rhai::{Dynamic, Map};

use super::{HostResult, fail};
use crate::yaml::Node;

pub struct Options {
    function: &'static str,
    map: Map,
}

impl Options {
    pub fn new(function: &'static str, map: Map) -> Options {
        Options { function, map }
    }

    /// No options.
    pub fn none(function: &'static str) -> Options {
        Options::new(function, Map::new())
    }

    fn take(&mut self, key: &str) -> Option<Dynamic> {
        self.map.remove(key).filter(|value| !value.is_unit())
    }

    fn wrong(&self, key: &str, wanted: &str, value: &Dynamic) -> Box<rhai::EvalAltResult> {
        fail(format!(
            "{}: option `{key}` must be {wanted}, not {} `{value}`",
            self.function,
            value.type_name()
        ))
    }

    pub fn bool(&mut self, key: &str) -> HostResult<Option<bool>> {
        match self.take(key) {
            None => Ok(None),
            Some(value) => value
                .as_bool()
                .map(Some)
                .map_err(|_| self.wrong(key, "true or false", &value)),
        }
    }

    pub fn int(&mut self, key: &str) -> HostResult<Option<i64>> {
        match self.take(key) {
            None => Ok(None),
            Some(value) => value
                .as_int()
                .map(Some)
                .map_err(|_| self.wrong(key, "an integer", &value)),
        }
    }

    /// A non-negative integer: milliseconds, a count.
    pub fn count(&mut self, key: &str) -> HostResult<Option<u64>> {
        match self.int(key)? {
            Some(n) if n < 0 => Err(fail(format!(
                "{}: option `{key}` must not be negative, not {n}",
                self.function
            ))),
            other => Ok(other.map(|n| n as u64)),
        }
    }

    pub fn string(&mut self, key: &str) -> HostResult<Option<String>> {
        match self.take(key) {
            None => Ok(None),
            Some(value) if value.is_string() => Ok(Some(value.to_string())),
            Some(value) => Err(self.wrong(key, "a string", &value)),
        }
    }

    /// A list of strings; a single string is a list of one.
    pub fn strings(&mut self, key: &str) -> HostResult<Option<Vec<String>>> {
        match self.take(key) {
            None => Ok(None),
            Some(value) => Node::from(&value)
                .strings(key)
                .map(Some)
                .map_err(|e| fail(format!("{}: option {e}", self.function))),
        }
    }

    /// `NAME: value` pairs from a map or a list of `NAME=value` strings.
    pub fn pairs(&mut self, key: &str) -> HostResult<Option<Vec<(String, String)>>> {
        match self.take(key) {
            None => Ok(None),
            Some(value) => Node::from(&value)
                .pairs(key)
                .map(|pairs| {
                    Some(
                        pairs
                            .into_iter()
                            .map(|(k, v)| (k, v.unwrap_or_default()))
                            .collect(),
                    )
                })
                .map_err(|e| fail(format!("{}: option {e}", self.function))),
        }
    }

    /// A map option as it is.
    pub fn map(&mut self, key: &str) -> HostResult<Option<Map>> {
        match self.take(key) {
            None => Ok(None),
            Some(value) => match value.clone().try_cast::<Map>() {
                Some(map) => Ok(Some(map)),
                None => Err(self.wrong(key, "a map", &value)),
            },
        }
    }

    /// Fails if keys are left that the function does not know.
    pub fn finish(self, known: &[&str]) -> HostResult<()> {
        match self.map.keys().next() {
            None => Ok(()),
            Some(key) => Err(fail(format!(
                "{}: unknown option `{key}` (it takes {})",
                self.function,
                known.join(", ")
            ))),
        }
    }
}
