//! `time::*`, `sleep` and `wait_until`: wall-clock time for stamps and measurements, a sleep
//! that Ctrl-C and `--timeout` interrupt at once, and polling a condition until it holds.
//! Durations are integers in milliseconds.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use rhai::{Dynamic, FnPtr, Map, Module, NativeCallContext};

use super::{
    HostResult, fail, function,
    options::{OptionKeys, Options},
};
use crate::context::Context;

/// The option keys of the host functions of this module.
pub(super) const OPTION_KEYS: &[&OptionKeys] = &[&WAIT_UNTIL];

const WAIT_UNTIL: OptionKeys = OptionKeys::new("wait_until", &[&["timeout", "interval", "name"]]);

pub fn module() -> Module {
    let mut module = Module::new();
    function!(&mut module,
        /// Milliseconds since the Unix epoch. Subtract two readings to time a step.
        ///
        /// ```rhai
        /// let started = time::now();
        /// docker::restart("api");
        /// log::info(`restart took ${time::now() - started} ms`);
        /// ```
        fn now(call) -> i64 {
            Ok(jiff::Timestamp::now().as_millisecond())
        }
    );
    function!(&mut module,
        /// The current UTC time as RFC 3339 text, e.g. `2026-11-26T04:31:02Z`.
        ///
        /// ```rhai
        /// state::set("last_backup", time::stamp());
        /// ```
        fn stamp(call) -> String {
            Ok(jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        }
    );
    function!(&mut module,
        /// The current UTC time in a `strftime` format, e.g. for file names.
        ///
        /// ```rhai
        /// let file = `backups/db-${time::stamp("%Y%m%d-%H%M%S")}.sql.gz`;
        /// ```
        fn stamp(call, format: &str) -> String {
            let mut text = String::new();
            std::fmt::write(&mut text, format_args!("{}", jiff::Timestamp::now().strftime(format)))
                .map_err(|_| fail(format!("invalid time format {format:?}")))?;
            Ok(text)
        }
    );
    function!(&mut module,
        /// Milliseconds since the Unix epoch of an RFC 3339 time stamp (`2026-11-26T04:31:02Z`,
        /// with an offset or fractions of a second: what `time::stamp()`, the journal and
        /// `docker::inspect` write). Text that is no such stamp is an error naming it.
        ///
        /// ```rhai
        /// let started = time::parse(docker::inspect("api").State.StartedAt);
        /// ```
        fn parse(call, stamp: &str) -> i64 {
            parse_stamp(stamp)
        }
    );
    function!(&mut module,
        /// How long ago an RFC 3339 time stamp was, in milliseconds (negative for the future).
        ///
        /// ```rhai
        /// let since = state::get("last_backup");
        /// if since == () || time::age(since) > 86_400_000 { log::warn("no backup for a day"); }
        /// ```
        fn age(call, stamp: &str) -> i64 {
            Ok(jiff::Timestamp::now().as_millisecond() - parse_stamp(stamp)?)
        }
    );
    module
}

fn parse_stamp(stamp: &str) -> Result<i64, Box<rhai::EvalAltResult>> {
    stamp
        .trim()
        .parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|e| fail(format!("{stamp:?} is not an RFC 3339 time stamp: {e}")))
}

pub fn globals(module: &mut Module, context: &Arc<Context>) {
    function!(module,
        /// Pauses for `ms` milliseconds. Ctrl-C and `--timeout` interrupt it at once.
        ///
        /// ```rhai
        /// sleep(500);
        /// ```
        fn sleep[context](call, ms: i64) -> () {
            let ms = u64::try_from(ms).map_err(|_| fail(format!("sleep: {ms} ms is negative")))?;
            context.block_on(tokio::time::sleep(Duration::from_millis(ms)))
        }
    );
    function!(module,
        /// Calls `check` (a closure) again and again until it returns something other than
        /// `false` or `()`, and returns that. Between calls it waits 1 s; after 60 s it throws
        /// `wait_until: still not true after 60000 ms`. An error `check` throws ends the wait;
        /// Ctrl-C and `--timeout` interrupt it at once.
        ///
        /// ```rhai
        /// wait_until(|| health::http("http://127.0.0.1:8082/api/health").ok);
        /// let row = wait_until(|| pg::query(db, "SELECT * FROM jobs WHERE done")[0]);
        /// ```
        fn wait_until[context](call, check: FnPtr) -> Dynamic {
            wait_until(&context, &call, &check, Map::new())
        }
    );
    function!(module,
        /// `wait_until` with options: `timeout` (ms, default 60000), `interval` (ms between
        /// calls, default 1000), `name` (what the timeout error calls the condition).
        ///
        /// ```rhai
        /// wait_until(|| docker::inspect("green-api-1").State.Health.Status == "healthy",
        ///            #{ timeout: 120_000, interval: 500, name: "green's gateway healthy" });
        /// ```
        fn wait_until[context](call, check: FnPtr, options: Map) -> Dynamic {
            wait_until(&context, &call, &check, options)
        }
    );
}

fn wait_until(
    context: &Context,
    call: &NativeCallContext,
    check: &FnPtr,
    options: Map,
) -> HostResult<Dynamic> {
    let options = Options::new(&WAIT_UNTIL, options)?;
    let timeout = options
        .millis("timeout")?
        .unwrap_or(Duration::from_secs(60));
    let interval = options
        .positive_millis("interval")?
        .unwrap_or(Duration::from_secs(1));
    let name = options.string("name")?;
    let started = Instant::now();
    loop {
        let value: Dynamic = check.call_within_context(call, ())?;
        let holds = !value.is_unit() && value.as_bool().unwrap_or(true);
        if holds {
            return Ok(value);
        }
        let waited = started.elapsed();
        if waited >= timeout {
            let what = name.map(|n| format!("{n}: ")).unwrap_or_default();
            return Err(fail(format!(
                "wait_until: {what}still not true after {} ms (it returned {})",
                waited.as_millis(),
                if value.is_unit() {
                    "()".to_string()
                } else {
                    value.to_string()
                }
            )));
        }
        context.block_on(tokio::time::sleep(interval.min(timeout - waited)))?;
    }
}
