//! Documents as trees whose every node remembers the line it came from, so a compose file's
//! errors and warnings can name the line, whatever part of the file they concern. A YAML text
//! is read with serde-saphyr (which gives a line for every node, merges `<<: *anchor` keys and
//! names the line of a syntax error); a Rhai map (a `docker::run` spec, a loaded project handed
//! back to `compose::up`) becomes the same tree with no lines, so one reader serves both.
//!
//! The readers ([`Node::str`], [`Node::seq`], …) take the dotted path of the node
//! (`services.api.ports[0]`) and fail with a [`SpecError`] naming it.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A node of the tree; `line` is 1-based, 0 when unknown (the node came from a Rhai map).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub line: usize,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// One `key: value` of a mapping; `line` is the key's.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub line: usize,
    pub value: Node,
}

/// What is wrong with a document, and where: `compose.yaml:12: services.api.ports[0]: …`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct SpecError {
    /// The file or call the document came from; set by whoever knows it.
    pub origin: String,
    pub line: usize,
    /// The dotted path of the offending node; empty for syntax errors.
    pub path: String,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut place = self.origin.clone();
        if self.line > 0 {
            place = format!("{place}:{}", self.line);
        }
        if !place.is_empty() {
            write!(f, "{place}: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

impl SpecError {
    pub fn new(line: usize, path: &str, message: impl Into<String>) -> SpecError {
        SpecError {
            origin: String::new(),
            line,
            path: path.to_string(),
            message: message.into(),
        }
    }

    /// Names the file or call the document came from.
    pub fn in_source(mut self, source: &str) -> SpecError {
        if self.origin.is_empty() {
            self.origin = source.to_string();
        }
        self
    }
}

/// `base.key`, or `key` at the top.
pub fn join(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_string()
    } else {
        format!("{base}.{key}")
    }
}

/// The most YAML events (aliases expanded) a document may produce: four times a thousand
/// services that each merge a 20-key anchor (a unit test loads that), far below what would take
/// memory or time: a billion laughs is refused after reading this many, in a tenth of a second.
const MAX_EVENTS: usize = 200_000;

/// How deep collections may nest: serde-saphyr's default, far beyond any real compose file,
/// and shallow enough that reading never runs out of the main thread's stack.
pub(crate) const MAX_DEPTH: usize = 64;

/// Parses YAML text; `source` names it in errors. An empty document is `Null`.
pub fn parse(text: &str, source: &str) -> Result<Node, SpecError> {
    if text.trim().is_empty() {
        return Ok(Node {
            line: 1,
            value: Value::Null,
        });
    }
    // Compose files lean on anchors and `<<:` merges (one anchor reused by every service), so
    // the ratio of aliases to anchors is no sign of malice here; what bounds a hostile file
    // (a billion laughs) is the total of events and nodes an expansion may produce.
    let options = serde_saphyr::options! {
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        underscored_numbers_as_strings: true,
        with_snippet: false,
        budget: serde_saphyr::budget! {
            enforce_alias_anchor_ratio: false,
            max_events: MAX_EVENTS,
            max_nodes: MAX_EVENTS / 2,
            max_recorded_anchor_events: MAX_EVENTS,
            max_depth: MAX_DEPTH,
        },
    };
    serde_saphyr::from_str_with_options::<Node>(text, options).map_err(|error| {
        let line = error.location().map_or(0, |l| l.line() as usize);
        let message = serde_saphyr::MessageFormatter::format_message(
            &serde_saphyr::DefaultMessageFormatter,
            error.without_snippet(),
        );
        let message = match error.without_snippet() {
            serde_saphyr::Error::Budget {
                breach: serde_saphyr::budget::BudgetBreach::Depth { .. },
                ..
            } => format!("the document nests more than {MAX_DEPTH} levels deep"),
            // A breach met while expanding an alias comes wrapped, so it is known by its text.
            _ if message.contains("budget breached") => format!(
                "the document expands to more than cutover reads ({MAX_EVENTS} YAML events, aliases \
                 expanded): is an anchor expanded within itself over and over? ({message})"
            ),
            _ => message.into_owned(),
        };
        SpecError::new(line, "", message).in_source(source)
    })
}

impl Node {
    pub fn null() -> Node {
        Node {
            line: 0,
            value: Value::Null,
        }
    }

    fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "nothing",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// An error about this node.
    pub fn error(&self, path: &str, message: impl Into<String>) -> SpecError {
        SpecError::new(self.line, path, message)
    }

    fn expected(&self, path: &str, what: &str) -> SpecError {
        self.error(path, format!("expected {what}, found {}", self.kind()))
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// A scalar as text (`8080` and `true` read as "8080" and "true").
    pub fn str(&self, path: &str) -> Result<String, SpecError> {
        match &self.value {
            Value::Str(s) => Ok(s.clone()),
            Value::Int(n) => Ok(n.to_string()),
            Value::Float(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            _ => Err(self.expected(path, "a string")),
        }
    }

    pub fn int(&self, path: &str) -> Result<i64, SpecError> {
        match &self.value {
            Value::Int(n) => Ok(*n),
            Value::Str(s) => s
                .trim()
                .parse()
                .map_err(|_| self.error(path, format!("expected an integer, found {s:?}"))),
            _ => Err(self.expected(path, "an integer")),
        }
    }

    pub fn float(&self, path: &str) -> Result<f64, SpecError> {
        match &self.value {
            Value::Int(n) => Ok(*n as f64),
            Value::Float(n) => Ok(*n),
            Value::Str(s) => s
                .trim()
                .parse()
                .map_err(|_| self.error(path, format!("expected a number, found {s:?}"))),
            _ => Err(self.expected(path, "a number")),
        }
    }

    pub fn bool(&self, path: &str) -> Result<bool, SpecError> {
        match &self.value {
            Value::Bool(b) => Ok(*b),
            Value::Str(s) if s == "true" || s == "false" => Ok(s == "true"),
            _ => Err(self.expected(path, "true or false")),
        }
    }

    pub fn seq(&self, path: &str) -> Result<&[Node], SpecError> {
        match &self.value {
            Value::Seq(items) => Ok(items),
            _ => Err(self.expected(path, "a list")),
        }
    }

    pub fn map(&self, path: &str) -> Result<&[Entry], SpecError> {
        match &self.value {
            Value::Map(entries) => Ok(entries),
            Value::Null => Ok(&[]),
            _ => Err(self.expected(path, "a mapping")),
        }
    }

    /// The entry `key` of a mapping, if present.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|e| e.key == key).map(|e| &e.value),
            _ => None,
        }
    }

    /// A list of scalars, or one scalar standing for a list of one.
    pub fn strings(&self, path: &str) -> Result<Vec<String>, SpecError> {
        match &self.value {
            Value::Seq(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| item.str(&format!("{path}[{i}]")))
                .collect(),
            _ => Ok(vec![self.str(path)?]),
        }
    }

    /// `NAME: value` pairs from a mapping, or from a list of `NAME=value` items. A name without
    /// a value (`NAME:` or `- NAME`) gives `None`.
    pub fn pairs(&self, path: &str) -> Result<Vec<(String, Option<String>)>, SpecError> {
        match &self.value {
            Value::Seq(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let text = item.str(&format!("{path}[{i}]"))?;
                    Ok(match text.split_once('=') {
                        Some((name, value)) => (name.to_string(), Some(value.to_string())),
                        None => (text, None),
                    })
                })
                .collect(),
            Value::Map(entries) => entries
                .iter()
                .map(|e| {
                    let value = match e.value.is_null() {
                        true => None,
                        false => Some(e.value.str(&join(path, &e.key))?),
                    };
                    Ok((e.key.clone(), value))
                })
                .collect(),
            _ => Err(self.expected(path, "a mapping or a list of NAME=value")),
        }
    }

    /// Applies `change` to every string scalar that is a value (not a key), depth first.
    pub fn map_strings(
        &mut self,
        path: &str,
        change: &mut dyn FnMut(&str, &str, usize) -> Result<String, SpecError>,
    ) -> Result<(), SpecError> {
        match &mut self.value {
            Value::Str(text) => *text = change(text, path, self.line)?,
            Value::Seq(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    item.map_strings(&format!("{path}[{i}]"), change)?;
                }
            }
            Value::Map(entries) => {
                for entry in entries {
                    entry.value.map_strings(&join(path, &entry.key), change)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Node, D::Error> {
        let spanned = serde_saphyr::Spanned::<Value>::deserialize(deserializer)?;
        Ok(Node {
            line: spanned.referenced.line() as usize,
            value: spanned.value,
        })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        i64::try_from(v)
            .map(Value::Int)
            .map_err(|_| E::custom(format!("{v} is too large")))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Node>()? {
            let value = map.next_value::<Node>()?;
            let text = match key.value {
                Value::Str(s) => s,
                Value::Int(n) => n.to_string(),
                Value::Float(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Null => "null".to_string(),
                Value::Seq(_) | Value::Map(_) => {
                    return Err(de::Error::custom(format!(
                        "line {}: a mapping key must be a plain value",
                        key.line
                    )));
                }
            };
            entries.push(Entry {
                key: text,
                line: key.line,
                value,
            });
        }
        Ok(Value::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_too_deep_is_named_as_such() {
        // On a thread with the main thread's stack, where scripts run (debug builds take ~50 KiB
        // a level).
        let read = |depth: usize| {
            let body: String = (0..depth)
                .map(|i| format!("{}k{i}:\n", "  ".repeat(i + 1)))
                .collect();
            let text = format!("x-deep:\n{body}");
            std::thread::Builder::new()
                .stack_size(8 << 20)
                .spawn(move || parse(&text, "deep.yaml").map(|_| ()))
                .unwrap()
                .join()
                .unwrap()
        };
        assert_eq!(read(MAX_DEPTH - 1), Ok(()));
        let error = read(1000).unwrap_err();
        assert_eq!(
            error.to_string(),
            "deep.yaml:65: the document nests more than 64 levels deep"
        );
    }

    #[test]
    fn lines_merges_and_scalars() {
        let text = "x: &common\n  restart: always\nservices:\n  api:\n    <<: *common\n    image: demo\n    port: 8080:80\n    on: yes\n    mode: 0755\n";
        let tree = parse(text, "c.yaml").unwrap();
        let api = tree.get("services").unwrap().get("api").unwrap();
        let image = api.get("image").unwrap();
        assert_eq!((image.line, image.str("").unwrap()), (6, "demo".into()));
        assert_eq!(api.get("restart").unwrap().str("").unwrap(), "always");
        assert_eq!(api.get("port").unwrap().str("").unwrap(), "8080:80");
        assert_eq!(api.get("on").unwrap().value, Value::Str("yes".into()));
        assert_eq!(api.get("mode").unwrap().value, Value::Str("0755".into()));
    }

    #[test]
    fn heavy_merges_load_and_a_billion_laughs_is_refused() {
        // A thousand services, each merging a 20-key anchor: far more than any real file.
        let mut text = String::from("x-base: &base\n  restart: always\n  labels: {a: b}\n");
        for k in 0..18 {
            text.push_str(&format!("  x-key-{k}: value {k}\n"));
        }
        text.push_str("x-env: &env\n  A: 1\nservices:\n");
        for i in 0..1000 {
            text.push_str(&format!(
                "  s{i}:\n    <<: *base\n    image: x\n    environment: *env\n"
            ));
        }
        let tree = parse(&text, "c.yaml").unwrap();
        let services = tree.get("services").unwrap().map("").unwrap();
        assert_eq!(services.len(), 1000);
        assert_eq!(
            services[999].value.get("restart").unwrap().str("").unwrap(),
            "always"
        );
        let mut laughs = String::from("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for (name, previous) in ["b", "c", "d", "e", "f", "g", "h", "i"]
            .iter()
            .zip(["a", "b", "c", "d", "e", "f", "g", "h"])
        {
            laughs.push_str(&format!("{name}: &{name} [*{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}]\n"));
        }
        let error = parse(&laughs, "c.yaml").unwrap_err();
        assert!(
            error.to_string().starts_with("c.yaml:")
                && error.message.contains("expands to more than"),
            "{error}"
        );
    }

    #[test]
    fn syntax_error_names_the_line() {
        let error =
            parse("services:\n  api:\n    image: [x\n    ports: 1\n", "c.yaml").unwrap_err();
        assert_eq!(error.origin, "c.yaml");
        assert_eq!(error.line, 4);
        let error = parse("a: 1\na: 2\n", "c.yaml").unwrap_err();
        assert!(
            error.to_string().starts_with("c.yaml:2: duplicate"),
            "{error}"
        );
    }

    #[test]
    fn readers_name_the_path() {
        let tree = parse("ports:\n  - [1]\n", "c.yaml").unwrap();
        let error = tree.get("ports").unwrap().seq("ports").unwrap()[0]
            .str("ports[0]")
            .unwrap_err()
            .in_source("c.yaml");
        assert_eq!(
            error.to_string(),
            "c.yaml:2: ports[0]: expected a string, found a list"
        );
    }
}
