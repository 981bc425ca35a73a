//! The operator's side of a run: `confirm(question)` asks on the terminal, and `is_dry_run()`
//! tells a script whether changes are only being described. Without a terminal and without
//! `--yes`, `confirm` fails at once instead of hanging a CI job on a prompt nobody sees.
//!
//! `defer(closure)` registers cleanup that runs when the run ends for any reason — success, an
//! error, Ctrl-C, SIGTERM or `--timeout` — each bounded in time. A stop cannot be caught
//! (rightly), so this is how a runbook that moves traffic in steps puts it back when it is
//! stopped half-way. `defer` returns a handle, and `dismiss(handle)` takes the cleanup off the
//! list once the normal path has done its job, so a run that went well does not end by
//! running (and journaling) cleanups with nothing left to do. The engine runs the list
//! (`ScriptEngine::run_cleanups`); this file only reads the call and keeps what the closure
//! needs.

use std::{
    cell::RefCell,
    io::{IsTerminal, Write},
    rc::Rc,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use rhai::{FnPtr, GlobalRuntimeState, Map, Module, NativeCallContext};

use super::{
    HostResult, fail, function,
    options::{OptionKeys, Options},
};
use crate::context::Context;

/// How long a cleanup may run unless its `timeout` says otherwise.
pub(crate) const DEFAULT_CLEANUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A cleanup a script registered with `defer(closure)`: run when the run ends, whatever ended it.
pub(crate) struct Cleanup {
    /// Which `defer` call made it, as its [`Deferred`] handle says.
    id: u64,
    pub closure: FnPtr,
    /// What the script saw where it called `defer`: the functions the closure is one of (its
    /// runbook's, its stdlib module's) and the modules it imported.
    pub global: GlobalRuntimeState,
    /// How the log and the journal name it: `deferred at runbooks/r.rhai:3:5`, or its `name`.
    pub name: String,
    /// The script it was deferred in, for its error's snippet.
    pub source: String,
    pub timeout: Duration,
}

/// The cleanups of the run in progress, in the order they were deferred. Script values are not
/// `Send`, so they live with the engine on the script thread, not in the shared [`Context`].
pub(crate) type Cleanups = Rc<RefCell<Vec<Cleanup>>>;

/// What `defer` returns: which cleanup it registered, for `dismiss`. Shown as the cleanup's
/// name (`deferred at runbooks/r.rhai:3:5`).
#[derive(Clone)]
pub(crate) struct Deferred {
    id: u64,
    name: String,
}

/// The next [`Deferred`] id: unique in the process, so a handle kept from an earlier REPL input
/// never dismisses a later cleanup.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The option keys of the host functions of this module.
pub(super) const OPTION_KEYS: &[&OptionKeys] = &[&DEFER];

pub fn globals(module: &mut Module, context: &Arc<Context>, cleanups: &Cleanups) {
    function!(module,
        /// True when this run only describes its changes (`--dry-run`, or `:dry on` in the REPL).
        ///
        /// ```rhai
        /// if !is_dry_run() { log::info("changing things for real"); }
        /// ```
        fn is_dry_run[context](call) -> bool {
            Ok(context.is_dry_run())
        }
    );
    function!(module,
        /// Asks `question` on the terminal and returns true for `y`/`yes`. `--yes` answers yes
        /// without asking; a dry run answers yes so the whole plan is shown. Without a terminal
        /// (and without `--yes`) it fails instead of waiting forever.
        ///
        /// ```rhai
        /// if !confirm("Switch production traffic to green?") { throw "cancelled by operator"; }
        /// ```
        fn confirm[context](call, question: &str) -> bool {
            confirm(&context, question)
        }
    );
    module.set_custom_type::<Deferred>("Deferred");
    function!(module,
        /// Registers `cleanup` (a closure, `|| …`) to run when this run ends, whatever ends it:
        /// success, an error, Ctrl-C, SIGTERM or `--timeout` (a stop that `try`/`catch` cannot
        /// catch). Cleanups run last registered first, each for up to 30 s, with the run lock
        /// still held; each is journaled as a change (`cleanup …`, with its outcome) and its own
        /// changes as usual. A cleanup that fails makes the run fail. Returns a handle: once the
        /// normal path has done what the cleanup guards, `dismiss(handle)` takes it off the
        /// list, so it neither runs nor is journaled. A closure sees the variables it captured
        /// as they are when it runs, so it may also check a flag itself. In the REPL an input's
        /// cleanups run when the input ends.
        ///
        /// ```rhai
        /// let back = defer(|| caddy::switch("production", ["10.0.0.5:8080"]));
        /// caddy::weights("production", #{"10.0.0.5:8080": 90, "10.0.0.6:8080": 10});
        /// sleep(60_000);                       // a stop here still puts traffic back
        /// caddy::switch("production", ["10.0.0.6:8080"]);
        /// dismiss(back);                       // promoted: nothing to put back
        /// ```
        fn defer[cleanups](call, cleanup: FnPtr) -> Deferred {
            defer(&call, &cleanups, cleanup, Map::new())
        }
    );
    function!(module,
        /// `defer` with options: `name` (what the journal and the log call it; default: where it
        /// was deferred, `runbooks/canary.rhai:12:5`), `timeout` (ms it may run, default 30000).
        ///
        /// ```rhai
        /// let back = defer(|| caddy::switch("production", ["10.0.0.5:8080"]),
        ///       #{ name: "send production back to the baseline", timeout: 10_000 });
        /// ```
        fn defer[cleanups](call, cleanup: FnPtr, options: Map) -> Deferred {
            defer(&call, &cleanups, cleanup, options)
        }
    );
    function!(module,
        /// Takes the cleanup `defer` returned `deferred` for off the list: the normal path did
        /// what it guards, so the run ends without running it, and nothing of it is journaled
        /// (it changed nothing). True when it was still to run; false when it had run already
        /// (an earlier REPL input's) or was dismissed before. The log says so at debug level.
        ///
        /// ```rhai
        /// let removed = defer(|| docker::remove("migrate-1", #{force: true}));
        /// docker::run(#{name: "migrate-1", image: "app:v2", command: ["migrate"]});
        /// docker::remove("migrate-1", #{force: true});
        /// dismiss(removed);
        /// ```
        fn dismiss[cleanups](call, deferred: Deferred) -> bool {
            let mut pending = cleanups.borrow_mut();
            let Some(at) = pending.iter().position(|c| c.id == deferred.id) else {
                return Ok(false);
            };
            pending.remove(at);
            tracing::debug!("cleanup {} dismissed: nothing left for it to do", deferred.name);
            Ok(true)
        }
    );
    function!(module,
        /// What a `defer` handle names: the cleanup's name, as the log and the journal give it.
        ///
        /// ```rhai
        /// let back = defer(|| print("undo"), #{name: "undo"});
        /// log::info(`armed ${back}`);            // armed `undo` (deferred at …)
        /// ```
        fn to_string(call, deferred: Deferred) -> String {
            Ok(deferred.name)
        }
    );
}

fn confirm(ctx: &Context, question: &str) -> HostResult<bool> {
    if ctx.settings.assume_yes {
        tracing::info!("{question} yes (--yes)");
        return Ok(true);
    }
    if ctx.is_dry_run() {
        tracing::info!("would ask: {question} (dry run: answering yes)");
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(fail(format!(
            "confirm({question:?}) needs an answer but there is no terminal to ask on; \
             pass --yes to answer yes"
        )));
    }
    err!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    // Read on a blocking thread so Ctrl-C still stops the run while the prompt waits. When it
    // does, the reader is told to give up rather than left blocked on stdin, where it would
    // swallow the next lines typed at the REPL.
    let abandoned = Arc::new(AtomicBool::new(false));
    let _abandon_on_return = Abandon(Arc::clone(&abandoned));
    let answer = ctx.block_on(tokio::task::spawn_blocking(move || {
        read_line_unless(&abandoned)
    }))?;
    let line = answer.map_err(fail)?.map_err(fail)?;
    Ok(matches!(
        line.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// Sets the flag when dropped: the caller no longer wants the answer.
struct Abandon(Arc<AtomicBool>);

impl Drop for Abandon {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// One line from stdin, read a byte at a time (so nothing past the newline is taken from
/// whoever reads stdin next), checking `abandoned` between waits of at most 100 ms.
fn read_line_unless(abandoned: &AtomicBool) -> std::io::Result<String> {
    let mut line = Vec::new();
    loop {
        let mut wait = libc::pollfd {
            fd: libc::STDIN_FILENO,
            events: libc::POLLIN,
            revents: 0,
        };
        let ready = unsafe { libc::poll(&mut wait, 1, 100) };
        if abandoned.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("no longer waiting for an answer"));
        }
        if ready < 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        if ready == 0 {
            continue;
        }
        let mut byte = 0u8;
        let read = unsafe { libc::read(libc::STDIN_FILENO, (&raw mut byte).cast(), 1) };
        match read {
            0 => break,
            1 if byte == b'\n' => break,
            1 => line.push(byte),
            _ => {
                let error = std::io::Error::last_os_error();
                if error.kind() != std::io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
        }
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

const DEFER: OptionKeys = OptionKeys::new("defer", &[&["name", "timeout"]]);

fn defer(
    call: &NativeCallContext,
    cleanups: &Cleanups,
    closure: FnPtr,
    options: Map,
) -> HostResult<Deferred> {
    let options = Options::new(&DEFER, options)?;
    let timeout = options
        .positive_millis("timeout")?
        .unwrap_or(DEFAULT_CLEANUP_TIMEOUT);
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
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    cleanups.borrow_mut().push(Cleanup {
        id,
        closure,
        global: global.clone(),
        name: name.clone(),
        source,
        timeout,
    });
    Ok(Deferred { id, name })
}
