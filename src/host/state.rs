//! `state::*`: what cutover remembers between runs. `state::active()` / `state::set_active(env)`
//! read and write `.current-environment` (the old scripts' file), `state::active_record()` reads
//! it with the time it was recorded; `state::get` / `state::set` any other key, kept in
//! `cutover-state.json`. Both files live in the state directory and are
//! replaced atomically; writes go through the change gate (dry run, readonly, journal).

use std::sync::Arc;

use rhai::{Dynamic, Module};

use super::{
    convert::{from_json, preview, to_json},
    fail, function,
};
use crate::context::Context;

pub fn module(context: &Arc<Context>) -> Module {
    let mut module = Module::new();
    function!(&mut module,
        /// The active environment recorded in `.current-environment`, or `()` when none was
        /// recorded yet.
        ///
        /// ```rhai
        /// let live = state::active() ?? "blue";
        /// ```
        fn active[context](call) -> Dynamic {
            Ok(context.state().active().map_err(fail)?.map(Dynamic::from).unwrap_or(Dynamic::UNIT))
        }
    );
    function!(&mut module,
        /// The active environment and since when it is recorded, `#{env, since}` (`since` in
        /// RFC 3339 UTC: when `.current-environment` was written), or `()` when none was
        /// recorded yet. Name and time are one record, written together by `state::set_active`.
        ///
        /// ```rhai
        /// let active = state::active_record();
        /// if active != () { print(`${active.env} since ${active.since}`); }
        /// ```
        fn active_record[context](call) -> Dynamic {
            let Some(active) = context.state().active_record().map_err(fail)? else {
                return Ok(Dynamic::UNIT);
            };
            let since = jiff::Timestamp::try_from(active.since)
                .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_default();
            let mut map = rhai::Map::new();
            map.insert("env".into(), active.env.into());
            map.insert("since".into(), since.into());
            Ok(Dynamic::from_map(map))
        }
    );
    function!(&mut module,
        /// Records `env` as the active environment, since now: one atomic write of
        /// `.current-environment` (the name; the write's time is the "since" of
        /// `state::active_record`). Names are letters, digits, `_`, `-` and `.`. A dry run only
        /// says what it would write.
        ///
        /// ```rhai
        /// state::set_active("green");
        /// ```
        fn set_active[context](call, env: &str) -> () {
            crate::journal::state::check_environment(env).map_err(fail)?;
            context.change("state::set_active", env, || (), || {
                context.state().set_active(env).map_err(fail)
            })
        }
    );
    function!(&mut module,
        /// The value stored under `key` (string, number, bool, array or map), or `()` when the
        /// key is not set.
        ///
        /// ```rhai
        /// let previous = state::get("previous_tag");
        /// ```
        fn get[context](call, key: &str) -> Dynamic {
            match context.state().get(key).map_err(fail)? {
                Some(value) => from_json(&value),
                None => Ok(Dynamic::UNIT),
            }
        }
    );
    function!(&mut module,
        /// The value stored under `key`, or `default` when the key is not set.
        ///
        /// ```rhai
        /// let deploys = state::get("deploy_count", 0);
        /// ```
        fn get[context](call, key: &str, default: Dynamic) -> Dynamic {
            match context.state().get(key).map_err(fail)? {
                Some(value) => from_json(&value),
                None => Ok(default),
            }
        }
    );
    function!(&mut module,
        /// Stores `value` (string, number, bool, array or map) under `key`; `()` removes the key.
        /// The file is replaced atomically; a dry run only says what it would store.
        ///
        /// ```rhai
        /// state::set("previous_tag", "v1.4.1");
        /// state::set("last_backup", #{ file: "db.dump", at: time::stamp() });
        /// ```
        fn set[context](call, key: &str, value: Dynamic) -> () {
            crate::journal::state::check_key(key).map_err(fail)?;
            let json = to_json(&value)?;
            let detail = format!("{key} = {}", preview(&json));
            context.change("state::set", &detail, || (), || {
                context.state().set(key, json).map_err(fail)
            })
        }
    );
    module
}
