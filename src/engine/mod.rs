//! Builds the one `rhai::Engine` every runbook, stdlib module and REPL line runs in: host modules
//! registered, `import` resolved from the stdlib search path, limits that keep a runaway script
//! from taking the host down, `print` sent to stdout (the runbook's output) and `debug` to the
//! log, and the cancellation flag checked between operations so Ctrl-C and `--timeout` stop even
//! a tight `loop {}`.

pub(crate) mod catalog;
pub mod docs;
pub(crate) mod error;
pub(crate) mod hints;
pub(crate) mod runbook;
pub(crate) mod sources;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Instant,
};

use rhai::{
    AST, Dynamic, EvalAltResult, Module, ModuleResolver, NativeCallContext, ParseErrorType,
    Position, Scope, Shared,
};

use crate::{
    cancel::StopReason,
    context::Context,
    context::logging::SCRIPT_TARGET,
    engine::catalog::{Catalog, Script},
    engine::error::{Diagnostic, Failure},
    engine::sources::SourceMap,
    host::operator::Cleanups,
};

/// Deepest call chain a script may build (recursion guard).
const MAX_CALL_LEVELS: usize = 96;
/// Deepest expression nesting at top level and inside functions (Rhai's debug-build defaults
/// are too low for ordinary nested loops and conditionals).
const MAX_EXPR_DEPTHS: (usize, usize) = (128, 96);
/// Largest string, array and map a script may build.
const MAX_STRING_BYTES: usize = 64 << 20;
const MAX_ARRAY_LEN: usize = 1 << 20;
const MAX_MAP_LEN: usize = 1 << 18;
/// How many short strings (names, map keys) Rhai interns. Its default, 256, is fewer than a
/// rollback's modules hold, and a full interner evicts one string per scan of all of them: that
/// scan was a fifth of compiling the stdlib (`perf record`). This many keeps every name of the
/// shipped scripts, a few hundred kilobytes at most.
const MAX_STRINGS_INTERNED: usize = 1 << 14;

/// The script engine with the catalogs it loads from and the sources it has seen.
pub struct ScriptEngine {
    pub rhai: rhai::Engine,
    pub sources: SourceMap,
    pub runbooks: Catalog,
    pub stdlib: Catalog,
    pub context: Arc<Context>,
    /// What scripts registered with `defer`, to run when the run ends.
    pub(crate) cleanups: Cleanups,
}

impl ScriptEngine {
    pub fn new(context: Arc<Context>) -> ScriptEngine {
        let settings = &context.settings;
        let runbooks = Catalog::runbooks(settings.runbook_dirs.clone());
        let stdlib = Catalog::stdlib(settings.stdlib_dirs.clone());
        let sources = SourceMap::default();

        let mut rhai = rhai::Engine::new();
        rhai.set_max_call_levels(MAX_CALL_LEVELS)
            .set_max_expr_depths(MAX_EXPR_DEPTHS.0, MAX_EXPR_DEPTHS.1)
            .set_max_string_size(MAX_STRING_BYTES)
            .set_max_array_size(MAX_ARRAY_LEN)
            .set_max_map_size(MAX_MAP_LEN)
            .set_strict_variables(true)
            .set_max_strings_interned(MAX_STRINGS_INTERNED)
            // The optimizer folds constant expressions and drops dead branches, which runbooks
            // have almost none of, and it was a quarter of what compiling a rollback's modules
            // cost. Host functions are volatile, so it never saved a call either.
            .set_optimization_level(rhai::OptimizationLevel::None);

        allow_keyword_names_after_namespace(&mut rhai);

        let cancel = Arc::clone(&context.cancel);
        rhai.on_progress(move |_| {
            cancel
                .reason()
                .map(|reason| Dynamic::from(reason.describe()))
        });
        let secrets = Arc::clone(&context.secrets);
        rhai.on_print(move |text| print_output(&secrets, text));
        rhai.on_debug(|text, source, position| {
            let at = source.map(|s| format!("{s}:{}", display_position(position)));
            tracing::debug!(target: SCRIPT_TARGET, "{}{text}", at.map(|a| a + ": ").unwrap_or_default())
        });

        rhai.set_module_resolver(StdlibResolver {
            catalog: stdlib.clone(),
            runbooks: runbooks.clone(),
            sources: sources.clone(),
            cache: Mutex::default(),
        });

        let cleanups = Cleanups::default();
        crate::host::register(&mut rhai, &context, &cleanups);

        ScriptEngine {
            rhai,
            sources,
            runbooks,
            stdlib,
            context,
            cleanups,
        }
    }

    /// Runs the cleanups deferred so far, last deferred first, and forgets them: at the end of a
    /// run, whatever ended it, and removes slot files staged for a switch the run never made
    /// (`caddy::switch_ahead`). A run stopped by Ctrl-C, SIGTERM or `--timeout` is let run again
    /// for them, each bounded by its `timeout`; a Ctrl-C during one stops it and skips the rest,
    /// and a second signal exits at once as always. Each is journaled like a change. Returns one
    /// rendered error per cleanup that failed; the stop, if there was one, is restored after.
    pub fn run_cleanups(&self) -> Vec<String> {
        let cancel = &self.context.cancel;
        let stopped = cancel.reason();
        let mut errors = Vec::new();
        // Taken whole: a `defer` inside a cleanup is not run (it could defer itself forever).
        let mut pending = std::mem::take(&mut *self.cleanups.borrow_mut());
        while let Some(cleanup) = pending.pop() {
            if errors
                .iter()
                .any(|e: &String| e.ends_with(INTERRUPTED_CLEANUP))
            {
                tracing::warn!("interrupted: {} more cleanup(s) skipped", pending.len() + 1);
                break;
            }
            cancel.resume();
            cancel.stop_after(self.context.runtime(), cleanup.timeout);
            match stopped {
                Some(reason) => tracing::info!(
                    "{}: running cleanup {} (up to {} ms)",
                    reason.describe(),
                    cleanup.name,
                    cleanup.timeout.as_millis()
                ),
                None => tracing::info!("running cleanup {}", cleanup.name),
            }
            let started = Instant::now();
            let call = NativeCallContext::new_with_all_fields(
                &self.rhai,
                cleanup.closure.fn_name(),
                Some(cleanup.source.as_str()),
                &cleanup.global,
                Position::NONE,
            );
            let result = cleanup.closure.call_raw(&call, None, []);
            let cut = cancel.reason();
            cancel.resume();
            // Why it failed, for the journal; the run's error says which cleanup too.
            let why = result.err().map(|error| match cut {
                Some(StopReason::TimedOut) => {
                    format!("did not finish within {} ms", cleanup.timeout.as_millis())
                }
                Some(StopReason::Interrupted) => INTERRUPTED_CLEANUP.to_string(),
                None => self.render(&cleanup.source, &error).trim_end().to_string(),
            });
            self.context
                .record_cleanup(&cleanup.name, why.clone(), started.elapsed());
            errors.extend(why.map(|why| format!("cleanup {} failed: {why}", cleanup.name)));
        }
        let nested = std::mem::take(&mut *self.cleanups.borrow_mut());
        if !nested.is_empty() {
            tracing::warn!(
                "{} cleanup(s) deferred by a cleanup not run: defer before the run ends",
                nested.len()
            );
        }
        if let Some(reason) = stopped {
            cancel.stop(reason);
        }
        // A switch staged ahead that no switch of this run took (`caddy::switch_ahead`).
        self.context.discard_staged_switch();
        errors
    }

    /// Compiles `script`, remembering its text for error snippets.
    pub fn compile(&self, script: &Script) -> Result<AST, Diagnostic> {
        self.sources
            .insert(&script.display, Arc::clone(&script.text));
        let mut ast = self.rhai.compile(&*script.text).map_err(|error| {
            let mut diagnostic = Diagnostic::from_parse(&script.display, &error);
            diagnostic.help = match error.err_type() {
                ParseErrorType::ModuleUndefined(module) => {
                    Some(hints::for_missing_module(module, &self.stdlib_names()))
                }
                ParseErrorType::VariableUndefined(name) => {
                    hints::for_missing_variable(name, &script.text)
                }
                _ => None,
            }
            .map(Into::into);
            diagnostic
        })?;
        ast.set_source(script.display.as_str());
        Ok(ast)
    }

    /// Renders a run-time error raised while running code from `source`, secrets masked.
    pub fn render(&self, source: &str, error: &EvalAltResult) -> String {
        let mut diagnostic = Diagnostic::from_eval(source, error);
        match Diagnostic::innermost(error) {
            EvalAltResult::ErrorFunctionNotFound(signature, _) => {
                let (name, shape) = hints::call_shape(signature);
                let functions = docs::functions(&self.rhai);
                let overloads: Vec<String> = functions
                    .iter()
                    .filter(|f| f.path() == name)
                    .map(|f| f.signature())
                    .collect();
                let paths: Vec<String> = functions.iter().map(|f| f.path()).collect();
                diagnostic.message = format!("no function matches the call {shape}");
                diagnostic.help =
                    hints::for_missing_function(&name, &overloads, &paths).map(Into::into);
            }
            EvalAltResult::ErrorModuleNotFound(module, _) => {
                diagnostic.help =
                    Some(hints::for_missing_module(module, &self.stdlib_names()).into());
            }
            _ => {}
        }
        self.redact(&diagnostic.render(&self.sources))
    }

    /// What compiling cannot see but `cutover check` should: every `import` names a stdlib
    /// module that exists, every call of a host module's function (`docker::restart`) names
    /// one that is registered, and every call through an imported script module
    /// (`bg::send_traffic(cfg, project, env)`) names a public function of it taking that many
    /// arguments, and every call without a module (`retry(3)`) or of a method (`list.lenn()`)
    /// names a function the script defines, or a global host or Rhai function, taking that
    /// many — so a typo in a branch a run rarely takes is found before a run reaches it,
    /// and not midway through a change.
    ///
    /// `modules_seen` keeps the imported modules' functions for the next script checked.
    pub fn check_names(
        &self,
        script: &Script,
        ast: &AST,
        modules_seen: &mut ModuleFunctions,
    ) -> Vec<Diagnostic> {
        // Put back after the walk, which looks modules up in `modules_seen` meanwhile.
        let registered =
            (modules_seen.registered.take()).unwrap_or_else(|| Registered::of(&self.rhai));
        let Registered {
            paths,
            modules,
            globals,
        } = &registered;
        let mut importable = self.stdlib_names();
        if let Ok(runbooks) = self.runbooks.list() {
            importable.extend(runbooks.into_iter().map(|s| s.name));
        }
        let stdlib = self.stdlib_names();
        let mut found = Vec::new();
        let at = |position: Position, message: String, help: Option<String>| Diagnostic {
            message,
            source: script.display.clone(),
            location: error::Location::new(&script.display, position),
            frames: Box::default(),
            help: help.map(Into::into),
        };
        let imported = imported_modules(ast);
        let own = ExportedFn::of(ast);
        let map_keys = map_field_names(ast);
        ast.walk(&mut |path: &[rhai::ASTNode]| {
            match path.last() {
                Some(rhai::ASTNode::Stmt(rhai::Stmt::Import(import, position))) => {
                    if let rhai::Expr::StringConstant(name, _) = &import.0
                        && !importable.iter().any(|m| m == name.as_str())
                    {
                        found.push(at(
                            *position,
                            format!("no stdlib module or runbook named `{name}`"),
                            Some(hints::for_missing_module(name, &stdlib)),
                        ));
                    }
                }
                // `x.f(a)` is `f(x, a)`, unless `x` is a map whose `f` is a closure (a method
                // of an object map): names the script gives a map's field pass.
                Some(rhai::ASTNode::Expr(rhai::Expr::MethodCall(call, position)))
                    if !map_keys.contains(call.name.as_str()) =>
                {
                    if let Some((message, help)) = unmatched_call_of(
                        Call::Method,
                        &call.name,
                        call.args.len() + 1,
                        &own,
                        globals,
                    ) {
                        found.push(at(*position, message, help));
                    }
                }
                Some(
                    rhai::ASTNode::Expr(rhai::Expr::FnCall(call, position))
                    | rhai::ASTNode::Stmt(rhai::Stmt::FnCall(call, position)),
                ) => {
                    let namespace = &call.namespace;
                    // Operators (`a + b`, `-x`) are calls too, by symbol: Rhai checks those.
                    if namespace.path.is_empty() {
                        if call.op_token.is_none()
                            && rhai::is_valid_identifier(&call.name)
                            && let Some((message, help)) = unmatched_call_of(
                                Call::Plain,
                                &call.name,
                                call.args.len(),
                                &own,
                                globals,
                            )
                        {
                            found.push(at(*position, message, help));
                        }
                        return true;
                    }
                    // A call through a module's own import (`bg::stack::f`) is left to run time.
                    if namespace.path.len() != 1 {
                        return true;
                    }
                    let alias = namespace.root();
                    if modules.contains(alias) {
                        let name = format!("{alias}::{}", call.name);
                        if !paths.contains(&name) {
                            found.push(at(
                                *position,
                                format!("no function {name}"),
                                hints::for_missing_function(&name, &[], paths),
                            ));
                        }
                    } else if let Some(Some(module)) = imported.get(alias)
                        && let Some(functions) = modules_seen.functions(self, module)
                        && let Some((message, help)) =
                            unmatched_call(alias, module, &call.name, call.args.len(), functions)
                    {
                        found.push(at(*position, message, help));
                    }
                }
                _ => {}
            }
            true
        });
        modules_seen.registered = Some(registered);
        found
    }

    /// The stdlib's module names, for hints.
    fn stdlib_names(&self) -> Vec<String> {
        self.stdlib
            .list()
            .map(|scripts| scripts.into_iter().map(|s| s.name).collect())
            .unwrap_or_default()
    }

    /// The [`Failure`] a run-time error in code from `source` ends a call with: stopped (130 or
    /// 124) when Ctrl-C, SIGTERM or `--timeout` caused it, otherwise a runbook failure (1).
    pub fn failure(&self, source: &str, error: &EvalAltResult) -> Failure {
        let message = self.render(source, error);
        match self.context.cancel.reason() {
            Some(reason) => Failure::Stopped {
                message,
                code: reason.exit_code(),
            },
            None => Failure::Runtime(message),
        }
    }

    pub fn redact(&self, text: &str) -> String {
        self.context.secrets.redact(text).into_owned()
    }
}

/// The functions `cutover check` has looked up, kept for the next script it checks: those of
/// each script module, by module name (compiled once for every script that imports it), and
/// those the engine registers (read once).
#[derive(Default)]
pub struct ModuleFunctions {
    modules: HashMap<String, Option<Vec<ExportedFn>>>,
    registered: Option<Registered>,
}

/// The functions the engine registers, as `cutover check` matches calls to them: the host
/// modules' by path (`docker::restart`) and those called without a module.
struct Registered {
    paths: Vec<String>,
    modules: std::collections::BTreeSet<String>,
    globals: GlobalFunctions,
}

impl Registered {
    fn of(engine: &rhai::Engine) -> Registered {
        let functions = docs::functions(engine);
        Registered {
            paths: functions.iter().map(|f| f.path()).collect(),
            modules: functions.iter().filter_map(|f| f.module.clone()).collect(),
            globals: GlobalFunctions::of(engine),
        }
    }
}

impl ModuleFunctions {
    /// The functions of the script module `import "NAME"` brings in (resolved as the run
    /// resolves it: the stdlib first, then the runbooks), or `None` when it cannot be compiled
    /// (its own check says why).
    fn functions(&mut self, engine: &ScriptEngine, name: &str) -> Option<&[ExportedFn]> {
        let compiled = self.modules.entry(name.to_string()).or_insert_with(|| {
            let script = engine
                .stdlib
                .find(name)
                .or_else(|_| engine.runbooks.find(name))
                .ok()?;
            let ast = engine.rhai.compile(&*script.text).ok()?;
            Some(ExportedFn::of(&ast))
        });
        compiled.as_deref()
    }
}

/// What is wrong with the call `alias::name` with `arity` arguments into the script module
/// `module`, which defines `functions`: `(message, help)`, or `None` when a public function of
/// that name takes that many.
fn unmatched_call(
    alias: &str,
    module: &str,
    name: &str,
    arity: usize,
    functions: &[ExportedFn],
) -> Option<(String, Option<String>)> {
    let public = || functions.iter().filter(|f| !f.private);
    let mut overloads: Vec<&ExportedFn> = public().filter(|f| f.name == name).collect();
    if overloads.iter().any(|f| f.params.len() == arity) {
        return None;
    }
    overloads.sort_by_key(|f| f.params.len());
    let path = format!("{alias}::{name}");
    if overloads.is_empty() {
        let message = format!("no function {path} in module `{module}`");
        let help = match functions.iter().any(|f| f.name == name) {
            true => Some(format!(
                "`{name}` is a `private fn` of `{module}`: only that module calls it"
            )),
            false => {
                let names: Vec<String> = public().map(|f| format!("{alias}::{}", f.name)).collect();
                hints::for_missing_function(&path, &[], &names)
            }
        };
        return Some((message, help));
    }
    let message = format!(
        "no function {path} taking {arity} argument{} in module `{module}`",
        if arity == 1 { "" } else { "s" }
    );
    let shown: Vec<String> = overloads.iter().map(|f| f.shown(alias)).collect();
    Some((message, hints::for_missing_function(&path, &shown, &[])))
}

/// The functions a script can call without a module, by name: each overload's number of
/// parameters and how it is called (`sub_string(string: String, start: int)`). Host functions
/// registered globally and Rhai's packages both; a host module's functions are called with
/// their module (`docker::restart`) and are checked as such.
struct GlobalFunctions(HashMap<String, Vec<(usize, String)>>);

/// What Rhai itself evaluates by name rather than as a registered function (`Fn("f")`,
/// `call(f, x)`, `type_of(x)`): never reported.
const KEYWORD_FUNCTIONS: [&str; 10] = [
    "Fn",
    "call",
    "curry",
    "is_def_fn",
    "is_def_var",
    "is_shared",
    "eval",
    "type_of",
    "print",
    "debug",
];

impl GlobalFunctions {
    fn of(engine: &rhai::Engine) -> GlobalFunctions {
        let mut found: HashMap<String, Vec<(usize, String)>> = HashMap::new();
        for signature in engine.gen_fn_signatures(true) {
            if let Some((name, params)) = parse_signature(&signature)
                && !name.contains("::")
            {
                let shown = shown_in_script_types(name, &params);
                found
                    .entry(name.to_string())
                    .or_default()
                    .push((params.len(), shown));
            }
        }
        GlobalFunctions(found)
    }
}

/// The name and the parameters (`a: T`) of a signature `name(a: T, b: Map<K, V>) -> R`.
fn parse_signature(signature: &str) -> Option<(&str, Vec<&str>)> {
    let open = signature.find('(')?;
    let (mut depth, mut start, mut params) = (0usize, open + 1, Vec::new());
    for (i, c) in signature.char_indices().skip_while(|(i, _)| *i <= open) {
        match c {
            ')' | ']' | '>' if depth == 0 => {
                params.push(signature[start..i].trim());
                break;
            }
            '(' | '[' | '<' => depth += 1,
            ')' | ']' | '>' => depth -= 1,
            ',' if depth == 0 => {
                params.push(signature[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    params.retain(|p| !p.is_empty());
    Some((&signature[..open], params))
}

/// `name(a: String, n: int)`: a signature as a script writer reads it (script types, no Rust).
fn shown_in_script_types(name: &str, params: &[&str]) -> String {
    let params: Vec<String> = params
        .iter()
        .map(|p| match p.split_once(':') {
            Some((param, ty)) => {
                let ty = ty
                    .trim()
                    .trim_start_matches("&mut ")
                    .trim_start_matches('&');
                format!("{}: {}", param.trim(), hints::script_type(ty))
            }
            None => hints::script_type(p),
        })
        .collect();
    format!("{name}({})", params.join(", "))
}

/// How a call names its function: `f(x)`, or `x.f()` (the value before the dot its first
/// argument).
#[derive(Clone, Copy)]
enum Call {
    Plain,
    Method,
}

/// What is wrong with a call of `name` with `arity` arguments (a method's value counted) and
/// no module, in a script that defines `own` functions: `(message, help)`, or `None` when the
/// script or the engine has a function of that name taking that many.
fn unmatched_call_of(
    call: Call,
    name: &str,
    arity: usize,
    own: &[ExportedFn],
    globals: &GlobalFunctions,
) -> Option<(String, Option<String>)> {
    let global = globals.0.get(name).map(Vec::as_slice).unwrap_or_default();
    let defined: Vec<&ExportedFn> = own.iter().filter(|f| f.name == name).collect();
    // A script function called as a method gets the value before the dot as `this`, not as a
    // parameter; a host or Rhai function as its first parameter.
    let own_arity = match call {
        Call::Plain => arity,
        Call::Method => arity - 1,
    };
    if KEYWORD_FUNCTIONS.contains(&name)
        || defined.iter().any(|f| f.params.len() == own_arity)
        || global.iter().any(|(n, _)| *n == arity)
    {
        return None;
    }
    if defined.is_empty() && global.is_empty() {
        let mut names: Vec<String> = own.iter().map(|f| f.name.clone()).collect();
        names.extend(globals.0.keys().cloned());
        let message = match call {
            Call::Plain => format!(
                "no function {name}: the script defines none, and no host or Rhai function has that name"
            ),
            Call::Method => format!(
                "no method .{name}(): the script defines no function {name}, and no host or Rhai function has that name"
            ),
        };
        return Some((message, hints::for_missing_function(name, &[], &names)));
    }
    let mut shown: Vec<(usize, String)> = defined
        .iter()
        .map(|f| (f.params.len(), f.shown_plain()))
        .collect();
    shown.extend(global.iter().cloned());
    shown.sort();
    shown.dedup();
    let shown: Vec<String> = shown.into_iter().map(|(_, s)| s).collect();
    let arguments = |n: usize| format!("{n} argument{}", if n == 1 { "" } else { "s" });
    let message = match call {
        Call::Plain => format!("no function {name} taking {}", arguments(arity)),
        Call::Method => format!(
            "no method .{name}() taking {} (besides the value before the dot)",
            arguments(arity - 1)
        ),
    };
    Some((message, hints::for_missing_function(name, &shown, &[])))
}

/// A function a script module defines, as `cutover check` matches calls to it (a `private fn`
/// cannot be called from outside).
struct ExportedFn {
    name: String,
    params: Vec<String>,
    private: bool,
}

impl ExportedFn {
    /// How it is called through `alias`: `bg::send_traffic(cfg, project, env)`.
    fn shown(&self, alias: &str) -> String {
        format!("{alias}::{}({})", self.name, self.params.join(", "))
    }

    /// How it is called from its own script: `send_traffic(cfg, project, env)`.
    fn shown_plain(&self) -> String {
        format!("{}({})", self.name, self.params.join(", "))
    }

    /// The functions `ast` defines, closures included.
    fn of(ast: &AST) -> Vec<ExportedFn> {
        ast.iter_functions()
            .map(|f| ExportedFn {
                name: f.name.to_string(),
                params: f.params.iter().map(|p| p.to_string()).collect(),
                private: f.access == rhai::FnAccess::Private,
            })
            .collect()
    }
}

/// Every name `ast` gives a map's field, in a literal (`#{name: …}`) or as a property
/// (`o.name = …`, `o.name`): a method call of one of them may be a closure's.
fn map_field_names(ast: &AST) -> std::collections::HashSet<String> {
    let mut keys = std::collections::HashSet::new();
    ast.walk(&mut |path: &[rhai::ASTNode]| {
        match path.last() {
            Some(rhai::ASTNode::Expr(rhai::Expr::Map(map, _))) => {
                keys.extend(map.0.iter().map(|(key, _)| key.name.to_string()));
            }
            Some(rhai::ASTNode::Expr(rhai::Expr::Property(property, _))) => {
                keys.insert(property.2.to_string());
            }
            _ => {}
        }
        true
    });
    keys
}

/// The script modules `ast` imports, by alias (`import "bluegreen" as bg;`: `bg` ->
/// `bluegreen`); `None` for an alias given to more than one module, whose calls are left to run
/// time.
fn imported_modules(ast: &AST) -> HashMap<String, Option<String>> {
    let mut imported: HashMap<String, Option<String>> = HashMap::new();
    ast.walk(&mut |path: &[rhai::ASTNode]| {
        if let Some(rhai::ASTNode::Stmt(rhai::Stmt::Import(import, _))) = path.last()
            && let rhai::Expr::StringConstant(name, _) = &import.0
            && !import.1.name.is_empty()
        {
            let module = Some(name.to_string());
            imported
                .entry(import.1.name.to_string())
                .and_modify(|known| {
                    if *known != module {
                        *known = None;
                    }
                })
                .or_insert(module);
        }
        true
    });
    imported
}

/// `result` of a call, failed as well when its cleanups failed (their errors after its own).
pub fn with_cleanup_errors<T>(
    result: Result<T, Failure>,
    errors: Vec<String>,
) -> Result<T, Failure> {
    if errors.is_empty() {
        return result;
    }
    let mut text = errors.join("\n");
    text.push('\n');
    match result {
        Ok(_) => Err(Failure::Runtime(text)),
        Err(Failure::Runtime(message)) => Err(Failure::Runtime(joined(message, &text))),
        Err(Failure::Stopped { message, code }) => Err(Failure::Stopped {
            message: joined(message, &text),
            code,
        }),
        Err(other) => {
            tracing::error!("{}", text.trim_end());
            Err(other)
        }
    }
}

fn joined(mut first: String, then: &str) -> String {
    if !first.ends_with('\n') {
        first.push('\n');
    }
    first.push_str(then);
    first
}

/// How a cleanup stopped by Ctrl-C ends its error (the rest are then skipped).
const INTERRUPTED_CLEANUP: &str = "interrupted (Ctrl-C or SIGTERM)";

/// `print(x)`: the runbook's output (a table, a report, a result), one line on stdout with
/// secrets masked, whatever `-q` or `--log-format` say; logs stay on stderr. Output that cannot be
/// written (a closed pipe) is dropped: it never changes what the run does.
fn print_output(secrets: &crate::redact::Redactor, text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out
        .write_all(secrets.redact(text).as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
}

/// Lets `log::debug(...)` and `caddy::switch(...)` parse. `debug` is reserved and `switch` a
/// keyword in Rhai; either right after `::` is turned back into a plain name.
#[allow(deprecated)] // `on_parse_token` is marked volatile, not deprecated.
fn allow_keyword_names_after_namespace(rhai: &mut rhai::Engine) {
    use std::cell::Cell;

    use rhai::Token;
    let after_namespace = Cell::new(false);
    rhai.on_parse_token(move |token, _, _| {
        let token = match token {
            Token::Reserved(word) if after_namespace.get() && rhai::is_valid_identifier(&word) => {
                Token::Identifier(word)
            }
            // `caddy::switch`: a keyword right after `::` is a function name too.
            keyword
                if after_namespace.get()
                    && (keyword.is_standard_keyword() || matches!(keyword, Token::Switch)) =>
            {
                Token::Identifier(Box::new(keyword.literal_syntax().into()))
            }
            token => token,
        };
        after_namespace.set(matches!(token, Token::DoubleColon));
        token
    });
}

fn display_position(position: Position) -> String {
    match (position.line(), position.position()) {
        (Some(line), Some(column)) => format!("{line}:{column}"),
        (Some(line), None) => line.to_string(),
        _ => "?".to_string(),
    }
}

/// Resolves `import "NAME"` through the stdlib catalog, then the runbooks (a runbook can use
/// another's functions: `import "db-report" as report; report::main()`), compiling each module
/// once per process.
struct StdlibResolver {
    catalog: Catalog,
    runbooks: Catalog,
    sources: SourceMap,
    cache: Mutex<HashMap<String, Shared<Module>>>,
}

impl ModuleResolver for StdlibResolver {
    fn resolve(
        &self,
        engine: &rhai::Engine,
        _source: Option<&str>,
        path: &str,
        position: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        if let Some(module) = self.cache.lock().unwrap().get(path) {
            return Ok(module.clone());
        }
        let script = self
            .catalog
            .find(path)
            .or_else(|stdlib_error| self.runbooks.find(path).map_err(|_| stdlib_error))
            .map_err(|error| EvalAltResult::ErrorRuntime(error.to_string().into(), position))?;
        self.sources
            .insert(&script.display, Arc::clone(&script.text));
        let in_module = |error: Box<EvalAltResult>| {
            Box::new(EvalAltResult::ErrorInModule(
                script.display.clone(),
                error,
                position,
            ))
        };
        let started = std::time::Instant::now();
        let mut ast = engine.compile(&*script.text).map_err(|error| {
            in_module(Box::new(EvalAltResult::ErrorParsing(
                error.0.as_ref().clone(),
                error.1,
            )))
        })?;
        ast.set_source(script.display.as_str());
        let mut module = Module::eval_ast_as_new(Scope::new(), &ast, engine).map_err(in_module)?;
        module.build_index();
        tracing::trace!(target: "cutover::calls", "module {} compiled and evaluated in {:.2} ms",
            script.display, started.elapsed().as_secs_f64() * 1e3);
        let module: Shared<Module> = module.into();
        self.cache
            .lock()
            .unwrap()
            .insert(path.to_string(), module.clone());
        Ok(module)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_give_their_name_and_parameters_nested_commas_kept() {
        assert_eq!(
            parse_signature("merge(a: Map<K, V>, b: &mut Array) -> Map"),
            Some(("merge", vec!["a: Map<K, V>", "b: &mut Array"]))
        );
        assert_eq!(parse_signature("now() -> i64"), Some(("now", vec![])));
        assert_eq!(parse_signature("no parentheses"), None);
        assert_eq!(
            shown_in_script_types(
                "sub_string",
                &["s: ImmutableString", "n: i64", "a: &mut Array"]
            ),
            "sub_string(s: String, n: int, a: array)"
        );
    }

    #[test]
    fn a_plain_call_matches_the_scripts_functions_then_the_globals_by_arity() {
        let globals = GlobalFunctions(HashMap::from([(
            "sleep".to_string(),
            vec![(1, "sleep(ms: int)".to_string())],
        )]));
        let own = vec![ExportedFn {
            name: "retry".into(),
            params: vec!["times".into()],
            private: true,
        }];
        assert_eq!(
            unmatched_call_of(Call::Plain, "retry", 1, &own, &globals),
            None
        );
        assert_eq!(
            unmatched_call_of(Call::Plain, "sleep", 1, &own, &globals),
            None
        );
        assert_eq!(
            unmatched_call_of(Call::Plain, "type_of", 1, &own, &globals),
            None
        );
        let (message, help) = unmatched_call_of(Call::Plain, "sleep", 2, &own, &globals).unwrap();
        assert_eq!(message, "no function sleep taking 2 arguments");
        assert_eq!(help.unwrap(), "sleep is called as: sleep(ms: int)");
        let (message, help) = unmatched_call_of(Call::Plain, "retyr", 1, &own, &globals).unwrap();
        assert!(
            message.starts_with("no function retyr: the script defines none"),
            "{message}"
        );
        assert_eq!(help.unwrap(), "did you mean `retry`?");
        // `5.retry()`: the script's `retry(times)` takes the 5 as `this`, not as `times`, so
        // it needs one argument inside the parentheses; a host `sleep(ms)` takes it as `ms`.
        assert!(unmatched_call_of(Call::Method, "retry", 2, &own, &globals).is_none());
        let (message, _) = unmatched_call_of(Call::Method, "retry", 1, &own, &globals).unwrap();
        assert_eq!(
            message,
            "no method .retry() taking 0 arguments (besides the value before the dot)"
        );
        assert!(unmatched_call_of(Call::Method, "sleep", 1, &own, &globals).is_none());
    }
}
