//! Option maps of host functions (`#{timeout: 5_000, force: true}`): the one reader every host
//! module uses, so every function refuses the same mistakes in the same words. Keys are checked
//! when the map arrives — an unknown key (a typo like `tiemout`) is an error naming the keys the
//! function knows, raised before anything runs, so a misspelt option never silently does
//! nothing. Each key is then read with the type it needs; a wrong type names the key, what it
//! must be and what it was:
//!
//! ```text
//! exec::run: unknown option `tiemout` (known: timeout, cwd, env)
//! docker::stop: option `timeout` must be 0 or more milliseconds, not i64 `-5`
//! ```
//!
//! The keys a function knows are declared once, as an [`OptionKeys`] table next to its binding:
//! the same table checks the map here, and the REPL completes the keys inside `#{` from it
//! ([`super::option_keys`]).
//!
//! A key set to `()` counts as absent. An error never quotes the value of a key whose name says
//! it is secret (`password`, `token`…), nor a wrong value where a map of variables or headers
//! was wanted: those carry credentials before they are registered for masking.

use std::time::Duration;

use rhai::{Array, Dynamic, EvalAltResult, Map};

use super::{HostResult, fail};
use crate::redact::is_secret_name;

/// The option keys of one host function: the one list its map is checked against, the REPL
/// completes and `cutover docs` shows. Keys come in groups so that functions sharing some
/// (`caddy::switch` and `caddy::weights`, the targets of `pg::*`) share the group, not a copy.
#[derive(Debug, PartialEq, Eq)]
pub struct OptionKeys {
    /// The function, as errors and scripts name it: `docker::logs`, `defer`.
    pub function: &'static str,
    /// Where the function takes the map.
    pub given: Given,
    groups: &'static [&'static [&'static str]],
}

/// Where a function takes its option map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Given {
    /// As the parameter of this name: `options` in `docker::logs(name, options)`.
    Argument(&'static str),
    /// As each item of the list given as this parameter: the checks of `health::all(checks)`.
    ItemOf(&'static str),
}

impl Given {
    /// This is parameter `param` (`in_list`: each item of the list given as `param`).
    pub fn is(self, param: &str, in_list: bool) -> bool {
        match self {
            Given::Argument(name) => !in_list && name == param,
            Given::ItemOf(name) => in_list && name == param,
        }
    }
}

impl OptionKeys {
    /// The keys of `function`'s `options` parameter, in `groups`: `&[&["timeout"]]`.
    pub const fn new(
        function: &'static str,
        groups: &'static [&'static [&'static str]],
    ) -> OptionKeys {
        OptionKeys {
            function,
            given: Given::Argument("options"),
            groups,
        }
    }

    /// The same keys, of a map the function takes as `given`.
    pub const fn given(self, given: Given) -> OptionKeys {
        OptionKeys { given, ..self }
    }

    /// Every key, in the order the table gives them.
    pub fn keys(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.groups.iter().flat_map(|group| group.iter().copied())
    }

    pub fn contains(&self, key: &str) -> bool {
        self.keys().any(|known| known == key)
    }
}

/// An option map being read by one function.
pub struct Options {
    /// What errors start with: the function, and where needed which argument (`health::all:
    /// check #2 of the list`).
    function: String,
    map: Map,
}

impl Options {
    /// The options `map` of the function of `known`, which must use only its keys.
    pub fn new(known: &OptionKeys, map: Map) -> HostResult<Options> {
        Options::labelled(known.function, known, map)
    }

    /// [`Options::new`] whose errors start with `label` rather than the function's name: a map
    /// that is one item of a list (`health::all: check #2 of the list`).
    pub fn labelled(label: impl Into<String>, known: &OptionKeys, map: Map) -> HostResult<Options> {
        let options = Options {
            function: label.into(),
            map,
        };
        match options.map.keys().find(|key| !known.contains(key)) {
            None => Ok(options),
            Some(key) => Err(fail(format!(
                "{}: unknown option `{key}` (known: {})",
                options.function,
                known.keys().collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    /// The value of `key` as given, `None` when it is absent or `()`.
    pub fn value(&self, key: &str) -> Option<&Dynamic> {
        self.map.get(key).filter(|value| !value.is_unit())
    }

    pub fn has(&self, key: &str) -> bool {
        self.value(key).is_some()
    }

    /// The error for `key` holding `value` where it must be `wanted` ("a string", "at least 1").
    pub fn invalid(&self, key: &str, wanted: &str, value: &Dynamic) -> Box<EvalAltResult> {
        self.wrong(key, wanted, value, !is_secret_name(key))
    }

    fn wrong(&self, key: &str, wanted: &str, value: &Dynamic, quote: bool) -> Box<EvalAltResult> {
        let shown = match quote {
            true => format!(" `{value}`"),
            false => String::new(),
        };
        fail(format!(
            "{}: option `{key}` must be {wanted}, not {}{shown}",
            self.function,
            value.type_name()
        ))
    }

    /// The error for a required `key` that is absent; `what` says what it is for.
    pub fn missing(&self, key: &str, what: &str) -> Box<EvalAltResult> {
        fail(format!(
            "{}: option `{key}` ({what}) is missing",
            self.function
        ))
    }

    /// An error about these options in the function's name: `FUNCTION: message`.
    pub fn error(&self, message: impl std::fmt::Display) -> Box<EvalAltResult> {
        fail(format!("{}: {message}", self.function))
    }

    /// `key` read by `read`, which returns `None` when the value does not fit.
    fn read<T>(
        &self,
        key: &str,
        wanted: &str,
        read: impl FnOnce(&Dynamic) -> Option<T>,
    ) -> HostResult<Option<T>> {
        self.read_quoting(key, wanted, !is_secret_name(key), read)
    }

    /// [`Options::read`] that quotes a wrong value only when `quote`: a map of headers or
    /// variables given as text is likely to hold a credential.
    fn read_quoting<T>(
        &self,
        key: &str,
        wanted: &str,
        quote: bool,
        read: impl FnOnce(&Dynamic) -> Option<T>,
    ) -> HostResult<Option<T>> {
        self.value(key)
            .map(|value| read(value).ok_or_else(|| self.wrong(key, wanted, value, quote)))
            .transpose()
    }

    pub fn bool(&self, key: &str) -> HostResult<Option<bool>> {
        self.read(key, "true or false", |v| v.as_bool().ok())
    }

    pub fn int(&self, key: &str) -> HostResult<Option<i64>> {
        self.read(key, "an integer", |v| v.as_int().ok())
    }

    /// A count, 0 or more.
    pub fn count(&self, key: &str) -> HostResult<Option<u64>> {
        self.read(key, "an integer, 0 or more", |v| {
            v.as_int().ok().and_then(|n| u64::try_from(n).ok())
        })
    }

    /// Milliseconds as a duration, 0 or more.
    pub fn millis(&self, key: &str) -> HostResult<Option<Duration>> {
        self.read(key, "0 or more milliseconds", |v| {
            v.as_int().ok().and_then(|n| u64::try_from(n).ok())
        })
        .map(|ms| ms.map(Duration::from_millis))
    }

    /// Milliseconds as a duration above zero: for a timeout, where 0 could only fail.
    pub fn positive_millis(&self, key: &str) -> HostResult<Option<Duration>> {
        self.read(key, "a positive number of milliseconds", |v| {
            v.as_int().ok().filter(|n| *n > 0).map(|n| n as u64)
        })
        .map(|ms| ms.map(Duration::from_millis))
    }

    pub fn string(&self, key: &str) -> HostResult<Option<String>> {
        self.read(key, "a string", |v| v.clone().into_string().ok())
    }

    /// A string that must be there; `what` says what it is for.
    pub fn required(&self, key: &str, what: &str) -> HostResult<String> {
        self.string(key)?.ok_or_else(|| self.missing(key, what))
    }

    /// A list of strings; a single string is a list of one. Numbers and booleans read as their
    /// text (`["--jobs", 4]`).
    pub fn strings(&self, key: &str) -> HostResult<Option<Vec<String>>> {
        self.read(key, "a string or a list of strings", |value| {
            match value.read_lock::<Array>() {
                Some(items) => items.iter().map(scalar_text).collect(),
                None => scalar_text(value).map(|text| vec![text]),
            }
        })
    }

    /// `NAME: value` pairs from a map, or from a list of `NAME=value` strings. A name without a
    /// value (`#{NAME: ()}`, `["NAME"]`) has the empty value.
    pub fn pairs(&self, key: &str) -> HostResult<Option<Vec<(String, String)>>> {
        self.read_quoting(
            key,
            "a map or a list of NAME=value strings",
            false,
            |value| {
                if let Some(map) = value.read_lock::<Map>() {
                    map.iter()
                        .map(|(name, value)| {
                            let text = match value.is_unit() {
                                true => Some(String::new()),
                                false => scalar_text(value),
                            };
                            text.map(|text| (name.to_string(), text))
                        })
                        .collect()
                } else {
                    value
                        .read_lock::<Array>()?
                        .iter()
                        .map(|item| {
                            let text = scalar_text(item)?;
                            Some(match text.split_once('=') {
                                Some((name, value)) => (name.to_string(), value.to_string()),
                                None => (text, String::new()),
                            })
                        })
                        .collect()
                }
            },
        )
    }

    /// A map option as it is.
    pub fn map(&self, key: &str) -> HostResult<Option<Map>> {
        self.read_quoting(key, "a map", false, |v| {
            v.read_lock::<Map>().map(|map| map.clone())
        })
    }
}

/// A single value as text: a string, or a number or boolean written out; not a list, a map or
/// `()`.
fn scalar_text(value: &Dynamic) -> Option<String> {
    let nested = value.is_unit() || value.is_array() || value.is_map();
    (!nested).then(|| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(
        script_map: &[(&str, Dynamic)],
        known: &'static [&'static [&'static str]],
    ) -> HostResult<Options> {
        let map = script_map
            .iter()
            .map(|(k, v)| ((*k).into(), v.clone()))
            .collect();
        Options::new(&OptionKeys::new("f::g", known), map)
    }

    fn message(error: &EvalAltResult) -> String {
        match error {
            EvalAltResult::ErrorRuntime(value, _) => value.to_string(),
            other => other.to_string(),
        }
    }

    #[test]
    fn an_unknown_key_is_refused_naming_the_known_ones() {
        let error = options(&[("tiemout", 5.into())], &[&["timeout", "cwd"]])
            .err()
            .unwrap();
        assert_eq!(
            message(&error),
            "f::g: unknown option `tiemout` (known: timeout, cwd)"
        );
    }

    #[test]
    fn keys_of_shared_groups_are_checked_in_the_table_order() {
        const SHARED: [&str; 2] = ["check", "check_timeout"];
        const KEYS: OptionKeys = OptionKeys::new("f::g", &[&["mode"], &SHARED]);
        assert_eq!(
            KEYS.keys().collect::<Vec<_>>(),
            ["mode", "check", "check_timeout"]
        );
        let map: Map = [("check_timeout".into(), 5_i64.into())]
            .into_iter()
            .collect();
        assert!(Options::new(&KEYS, map).is_ok());
        let map: Map = [("chek".into(), true.into())].into_iter().collect();
        let error = Options::labelled("f::g: item #2", &KEYS, map)
            .err()
            .unwrap();
        assert_eq!(
            message(&error),
            "f::g: item #2: unknown option `chek` (known: mode, check, check_timeout)"
        );
    }

    #[test]
    fn a_wrong_type_names_key_wanted_type_and_value() {
        let o = options(&[("timeout", "soon".into())], &[&["timeout"]]).unwrap();
        assert_eq!(
            message(&o.millis("timeout").unwrap_err()),
            "f::g: option `timeout` must be 0 or more milliseconds, not string `soon`"
        );
        let o = options(&[("timeout", (-5_i64).into())], &[&["timeout"]]).unwrap();
        assert_eq!(
            message(&o.positive_millis("timeout").unwrap_err()),
            "f::g: option `timeout` must be a positive number of milliseconds, not i64 `-5`"
        );
    }

    #[test]
    fn a_secret_value_is_not_quoted() {
        let o = options(&[("password", 1234_i64.into())], &[&["password"]]).unwrap();
        let text = message(&o.string("password").unwrap_err());
        assert_eq!(text, "f::g: option `password` must be a string, not i64");
    }

    #[test]
    fn unit_is_absent_and_reads_do_not_consume() {
        let o = options(&[("a", Dynamic::UNIT), ("b", true.into())], &[&["a", "b"]]).unwrap();
        assert!(!o.has("a"));
        assert_eq!(o.bool("b").unwrap(), Some(true));
        assert_eq!(o.bool("b").unwrap(), Some(true));
        assert_eq!(o.string("a").unwrap(), None);
        assert_eq!(
            message(&o.required("a", "the thing").unwrap_err()),
            "f::g: option `a` (the thing) is missing"
        );
    }

    #[test]
    fn lists_and_pairs() {
        let list: Array = vec!["x".into(), 4_i64.into()];
        let pairs: Array = vec!["A=1".into(), "B".into()];
        let o = options(
            &[
                ("one", "x".into()),
                ("list", list.into()),
                ("env", pairs.into()),
            ],
            &[&["one", "list", "env"]],
        )
        .unwrap();
        assert_eq!(o.strings("one").unwrap(), Some(vec!["x".to_string()]));
        assert_eq!(
            o.strings("list").unwrap(),
            Some(vec!["x".to_string(), "4".to_string()])
        );
        assert_eq!(
            o.pairs("env").unwrap(),
            Some(vec![("A".into(), "1".into()), ("B".into(), String::new())])
        );
        let nested: Array = vec![Array::new().into()];
        let o = options(&[("list", nested.into())], &[&["list"]]).unwrap();
        assert_eq!(
            message(&o.strings("list").unwrap_err()),
            "f::g: option `list` must be a string or a list of strings, not array `[[]]`"
        );
    }
}
