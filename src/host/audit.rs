//! `audit::*`: the journal from a runbook. Changes made through host calls are journaled without
//! asking; `audit::record` adds the runbook's own notes ("promoted green to v1.4.2"), filed under
//! a kind so `cutover history --kind promotion` finds them, and `audit::history` reads entries
//! back (e.g. the previous tag to roll back to).

use std::sync::Arc;

use rhai::{Array, Map, Module};

use super::{
    HostResult,
    convert::{from_json, to_json},
    fail, function,
};
use crate::{
    context::Context,
    journal::{Event, Filter},
};

/// How many entries `audit::history` returns when not told: as many as `cutover history` shows.
const DEFAULT_LAST: usize = 20;

pub fn module(context: &Arc<Context>) -> Module {
    let mut module = Module::new();
    function!(&mut module,
        /// Appends a `record` entry of `kind` (e.g. `deployment`, `promotion`, `rollback`) with
        /// `message` to the journal, with who, where and which run. Secrets are masked. A dry run
        /// only says what it would record.
        ///
        /// ```rhai
        /// audit::record("promotion", "promoted green to v1.4.2");
        /// ```
        fn record[context](call, kind: &str, message: &str) -> () {
            record(&context, kind, message, Map::new())
        }
    );
    function!(&mut module,
        /// Like `record(kind, message)`, with extra `fields` (any map) stored in the entry.
        ///
        /// ```rhai
        /// audit::record("rollback", "rolled back", #{ from: "green", to: "blue", reason: "5xx" });
        /// ```
        fn record[context](call, kind: &str, message: &str, fields: Map) -> () {
            record(&context, kind, message, fields)
        }
    );
    function!(&mut module,
        /// The last 20 journal entries, oldest first, as maps with `time`, `user`, `host`, `pid`,
        /// `runbook`, `args`, `kind`, `event`, `message`, and when present `outcome`,
        /// `duration_ms`, `error`, `fields`.
        ///
        /// ```rhai
        /// for e in audit::history() { print(`${e.time} ${e.kind} ${e.message}`); }
        /// ```
        fn history[context](call) -> Array {
            history(&context, "", DEFAULT_LAST as i64)
        }
    );
    function!(&mut module,
        /// The last 20 journal entries of `kind` (`""` for every kind), oldest first.
        ///
        /// ```rhai
        /// let promotions = audit::history("promotion");
        /// ```
        fn history[context](call, kind: &str) -> Array {
            history(&context, kind, DEFAULT_LAST as i64)
        }
    );
    function!(&mut module,
        /// The last `n` journal entries of `kind` (`""` for every kind), oldest first.
        ///
        /// ```rhai
        /// let last = audit::history("promotion", 1);
        /// if last.len() > 0 { print(`last promotion: ${last[0].message}`); }
        /// ```
        fn history[context](call, kind: &str, n: i64) -> Array {
            history(&context, kind, n)
        }
    );
    module
}

fn record(context: &Context, kind: &str, message: &str, fields: Map) -> HostResult<()> {
    let kind = kind.trim();
    if kind.is_empty() || kind.chars().any(char::is_whitespace) {
        return Err(fail(format!(
            "audit::record: kind {kind:?} must be one word, such as \"promotion\""
        )));
    }
    let serde_json::Value::Object(fields) = to_json(&fields.into())? else {
        unreachable!("a map becomes a JSON object")
    };
    if context.is_dry_run() {
        tracing::info!("would audit::record {kind}: {message}");
        return Ok(());
    }
    tracing::info!("audit::record {kind}: {message}");
    let mut entry = context.journal_entry(Event::Record, message);
    entry.kind = kind.to_string();
    entry.fields = fields;
    context.journal_append(&entry).map_err(fail)
}

fn history(context: &Context, kind: &str, n: i64) -> HostResult<Array> {
    let last = usize::try_from(n)
        .map_err(|_| fail(format!("audit::history: n must be 0 or more, not {n}")))?;
    let filter = Filter {
        kind: (!kind.is_empty()).then(|| kind.to_string()),
        last: Some(last),
    };
    let entries = context.journal().read(&filter).map_err(fail)?;
    entries
        .iter()
        .map(|entry| from_json(&serde_json::to_value(entry).map_err(fail)?))
        .collect()
}
