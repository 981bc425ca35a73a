//! Host modules: the primitives runbooks call, one file per capability, each built as a
//! `rhai::Module` whose functions capture the shared [`Context`]. Every function is registered
//! with [`function!`], which carries its `///` doc comment (with a Rhai example) into the
//! engine's metadata: `cutover docs` and the REPL's help are generated from it.

use std::{fmt::Display, sync::Arc};

use rhai::{Engine, EvalAltResult, Module, NativeCallContext};

use crate::context::Context;

pub(crate) mod audit;
pub(crate) mod caddy;
pub(crate) mod compose;
pub(crate) mod convert;
pub(crate) mod docker;
pub(crate) mod env;
pub(crate) mod exec;
pub(crate) mod file;
pub(crate) mod fmt;
pub(crate) mod health;
pub(crate) mod http;
pub(crate) mod lock;
pub(crate) mod log;
pub(crate) mod metrics;
pub(crate) mod operator;
pub(crate) mod options;
pub(crate) mod pg;
pub(crate) mod secret;
pub(crate) mod state;
pub(crate) mod swarm;
pub(crate) mod time;

/// What a host function returns: a value, or an error Rhai positions at the call.
pub type HostResult<T> = Result<T, Box<EvalAltResult>>;

/// Registers a documented host function into a module.
///
/// ```text
/// function!(&mut module,
///     /// What it does, then a Rhai example in a fenced block.
///     fn name[captured, values](call, arg: &str, n: i64) -> String {
///         Ok(format!("{arg}{n}"))
///     }
/// );
/// ```
/// * The `///` lines become the function's doc comments in the engine's metadata, and the
///   parameter and return types its signature (in Rhai's names), so `cutover docs` and the
///   REPL show them.
/// * The names in `[...]` are cloned into the closure (typically the `Arc<Context>`).
/// * `call` is the `NativeCallContext`; the body returns `HostResult<T>` and may use `?`. Any
///   error is stamped with the position of the call in the script: Rhai does not do it for
///   calls of namespaced functions like `env::get`.
/// * Host functions are volatile so the optimizer never folds a call like `time::now()`.
macro_rules! function {
    (
        $module:expr,
        $(#[doc = $doc:literal])*
        fn $name:ident $([$($capture:ident),* $(,)?])? ($call:ident $(, $arg:ident : $ty:ty)* $(,)?) -> $ret:ty $body:block
    ) => {{
        $($(let $capture = ::std::borrow::ToOwned::to_owned($capture);)*)?
        rhai::FuncRegistration::new(stringify!($name))
            .with_volatility(true)
            .with_params_info([
                $(format!("{}: {}", stringify!($arg), $crate::host::rhai_type(stringify!($ty))),)*
                $crate::host::rhai_type(stringify!($ret)),
            ])
            .with_comments([$(concat!("///", $doc)),*])
            .set_into_module(
                $module,
                move |$call: rhai::NativeCallContext $(, $arg: $ty)*| -> $crate::host::HostResult<$ret> {
                    let started = ::std::time::Instant::now();
                    #[allow(clippy::redundant_closure_call)]
                    let result: $crate::host::HostResult<$ret> = (|| $body)();
                    $crate::host::timed(module_path!(), stringify!($name), &$call, started);
                    result.map_err(|error| $crate::host::at(error, &$call))
                },
            );
    }};
}
pub(crate) use function;

pub use crate::context::fail;

/// An error whose text has every registered secret masked: for messages that quote what a
/// server or a program said, which may echo a password back.
pub fn fail_masked(context: &Context, message: impl Display) -> Box<EvalAltResult> {
    fail(context.secrets.redact(&message.to_string()))
}

/// Runs an async subsystem call from the script thread (stopped by Ctrl-C or `--timeout`); its
/// error becomes the script's.
pub fn wait<T, E: Display>(
    context: &Context,
    future: impl Future<Output = Result<T, E>>,
) -> HostResult<T> {
    context.block_on(future)?.map_err(fail)
}

/// Stamps `error` with the position of the host call, unless it already has one.
pub fn at(mut error: Box<EvalAltResult>, call: &NativeCallContext) -> Box<EvalAltResult> {
    if error.position().is_none() {
        error.set_position(call.call_position());
    }
    error
}

/// Says how long a host call took, at trace level (`-vvv`): where a run's time goes, call by
/// call, with the line that made it (`host call caddy::switch at promote.rhai:27 took 3.1 ms`).
pub fn timed(module: &str, name: &str, call: &NativeCallContext, started: std::time::Instant) {
    if tracing::enabled!(target: "cutover::calls", tracing::Level::TRACE) {
        let module = module.rsplit("::").next().unwrap_or(module);
        let ms = started.elapsed().as_secs_f64() * 1e3;
        let position = call.call_position();
        let source = call.call_source().unwrap_or("?");
        tracing::trace!(target: "cutover::calls", "host call {module}::{name} at {source}:{} took {ms:.2} ms",
            position.line().unwrap_or(0));
    }
}

/// The Rhai name of a Rust parameter or return type, for signatures in the docs.
pub fn rhai_type(rust: &str) -> String {
    let rust: String = rust.chars().filter(|c| !c.is_whitespace()).collect();
    let name = rust.rsplit("::").next().unwrap_or(&rust);
    match name {
        "&str" | "String" | "ImmutableString" => "String",
        "i64" | "INT" => "int",
        "f64" | "FLOAT" => "float",
        "bool" => "bool",
        "FnPtr" => "Fn",
        "()" => "()",
        other => return other.to_string(),
    }
    .to_string()
}

/// The option keys of every host function that takes an option map, module by module: what
/// the REPL completes inside `#{`, from the same tables the functions check their maps with.
pub const OPTION_KEYS: &[&[&options::OptionKeys]] = &[
    exec::OPTION_KEYS,
    http::OPTION_KEYS,
    health::OPTION_KEYS,
    caddy::OPTION_KEYS,
    docker::OPTION_KEYS,
    compose::OPTION_KEYS,
    pg::OPTION_KEYS,
    metrics::OPTION_KEYS,
    swarm::OPTION_KEYS,
    time::OPTION_KEYS,
    operator::OPTION_KEYS,
];

/// The option keys of the map `function` takes as parameter `param` (`in_list`: as each item
/// of the list given there), if it takes one there.
pub fn option_keys(
    function: &str,
    param: &str,
    in_list: bool,
) -> Option<&'static options::OptionKeys> {
    OPTION_KEYS
        .iter()
        .flat_map(|module| module.iter().copied())
        .find(|keys| keys.function == function && keys.given.is(param, in_list))
}

/// Registers every host module under its namespace, and the global functions.
pub fn register(engine: &mut Engine, context: &Arc<Context>, cleanups: &operator::Cleanups) {
    engine.register_static_module("log", log::module().into());
    engine.register_static_module("time", time::module().into());
    engine.register_static_module("file", file::module(context).into());
    engine.register_static_module("fmt", fmt::module().into());
    engine.register_static_module("env", env::module(context).into());
    engine.register_static_module("state", state::module(context).into());
    engine.register_static_module("audit", audit::module(context).into());
    engine.register_static_module("lock", lock::module(context).into());
    engine.register_static_module("secret", secret::module(context).into());
    engine.register_static_module("exec", exec::module(context).into());
    engine.register_static_module("http", http::module(context).into());
    engine.register_static_module("health", health::module(context).into());
    engine.register_static_module("caddy", caddy::module(context).into());
    engine.register_static_module("docker", docker::module(context).into());
    engine.register_static_module("compose", compose::module(context).into());
    engine.register_static_module("pg", pg::module(context).into());
    engine.register_static_module("metrics", metrics::module(context).into());
    engine.register_static_module("swarm", swarm::module(context).into());

    let mut globals = Module::new();
    time::globals(&mut globals, context);
    operator::globals(&mut globals, context, cleanups);
    engine.register_global_module(globals.into());
}
