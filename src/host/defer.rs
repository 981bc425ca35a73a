//! `defer(closure)`: cleanup a script registers while it runs, run when the run ends for any
//! reason — success, an error, Ctrl-C, SIGTERM or `--timeout` — each bounded in time. A stop
//! cannot be caught (rightly), so this is how a runbook that moves traffic in steps puts it back
//! when it is stopped half-way. The engine keeps the list and runs it (see
//! [`crate::engine::ScriptEngine::run_cleanups`]); this file only reads the call.

use std::time::Duration;

use rhai::{Engine, FnPtr, Map, Module, NativeCallContext};

use super::{HostResult, fail, function, options::Options};
use crate::engine::{Cleanup, Cleanups};

/// How long a cleanup may run unless its `timeout` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

pub fn register(engine: &mut Engine, cleanups: &Cleanups) {
    let mut module = Module::new();
    function!(&mut module,
        /// Registers `cleanup` (a closure, `|| …`) to run when this run ends, whatever ends it:
        /// success, an error, Ctrl-C, SIGTERM or `--timeout` (a stop that `try`/`catch` cannot
        /// catch). Cleanups run last registered first, each for up to 30 s, with the run lock
        /// still held; each is journaled as a change (`cleanup …`, with its outcome) and its own
        /// changes as usual. A cleanup that fails makes the run fail. A closure sees the
        /// variables it captured as they are when it runs, so a flag set after the risky part
        /// can tell it there is nothing left to undo. In the REPL an input's cleanups run when
        /// the input ends.
        ///
        /// ```rhai
        /// let done = false;
        /// defer(|| if !done { caddy::switch("production", ["10.0.0.5:8080"]); });
        /// caddy::weights("production", #{"10.0.0.5:8080": 90, "10.0.0.6:8080": 10});
        /// sleep(60_000);                       // a stop here still puts traffic back
        /// done = true;
        /// ```
        fn defer[cleanups](call, cleanup: FnPtr) -> () {
            defer(&call, &cleanups, cleanup, Map::new())
        }
    );
    function!(&mut module,
        /// `defer` with options: `name` (what the journal and the log call it; default: where it
        /// was deferred, `runbooks/canary.rhai:12:5`), `timeout` (ms it may run, default 30000).
        ///
        /// ```rhai
        /// defer(|| caddy::switch("production", ["10.0.0.5:8080"]),
        ///       #{ name: "send production back to the baseline", timeout: 10_000 });
        /// ```
        fn defer[cleanups](call, cleanup: FnPtr, options: Map) -> () {
            defer(&call, &cleanups, cleanup, options)
        }
    );
    engine.register_global_module(module.into());
}

fn defer(
    call: &NativeCallContext,
    cleanups: &Cleanups,
    closure: FnPtr,
    options: Map,
) -> HostResult<()> {
    let options = Options::new("defer", options, &["name", "timeout"])?;
    let timeout = options
        .positive_millis("timeout")?
        .unwrap_or(DEFAULT_TIMEOUT);
    // The closure is a script function of the runbook or module that defined it. The run ends
    // outside of both, so keep what the call sees now: those functions and the imports
    // (`import "bluegreen" as bg;`) the closure's body may name.
    let arity = closure.curry().len();
    let global = call.global_runtime_state();
    if !global
        .lib
        .iter()
        .any(|lib| lib.get_script_fn(closure.fn_name(), arity).is_some())
    {
        return Err(fail(format!(
            "defer: {closure} is not a function of this script taking no arguments; pass a \
             closure such as `|| caddy::switch(route, [baseline])`"
        )));
    }
    let source = call.call_source().unwrap_or("<script>").to_string();
    let position = call.call_position();
    let at = match (position.line(), position.position()) {
        (Some(line), Some(column)) => format!("{source}:{line}:{column}"),
        _ => source.clone(),
    };
    let name = match options.string("name")? {
        Some(name) => format!("`{name}` (deferred at {at})"),
        None => format!("deferred at {at}"),
    };
    cleanups.borrow_mut().push(Cleanup {
        closure,
        global: global.clone(),
        name,
        source,
        timeout,
    });
    Ok(())
}
