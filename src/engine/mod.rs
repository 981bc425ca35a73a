//! Builds the one `rhai::Engine` every runbook, stdlib module and REPL line runs in: host modules
//! registered, `import` resolved from the stdlib search path, limits that keep a runaway script
//! from taking the host down, `print`/`debug` sent to the log, and the cancellation flag checked
//! between operations so Ctrl-C and `--timeout` stop even a tight `loop {}`.

pub(crate) mod catalog;
pub mod docs;
pub(crate) mod error;
pub(crate) mod hints;
pub(crate) mod runbook;
pub(crate) mod sources;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use rhai::{
    AST, Dynamic, EvalAltResult, Module, ModuleResolver, ParseErrorType, Position, Scope, Shared,
};

use crate::{
    context::Context,
    context::logging::SCRIPT_TARGET,
    engine::catalog::{Catalog, Script},
    engine::error::{Diagnostic, Failure},
    engine::sources::SourceMap,
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

/// The script engine with the catalogs it loads from and the sources it has seen.
pub struct ScriptEngine {
    pub rhai: rhai::Engine,
    pub sources: SourceMap,
    pub runbooks: Catalog,
    pub stdlib: Catalog,
    pub context: Arc<Context>,
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
            .set_strict_variables(true);

        allow_keyword_names_after_namespace(&mut rhai);

        let cancel = Arc::clone(&context.cancel);
        rhai.on_progress(move |_| {
            cancel
                .reason()
                .map(|reason| Dynamic::from(reason.describe()))
        });
        rhai.on_print(|text| tracing::info!(target: SCRIPT_TARGET, "{text}"));
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

        crate::host::register(&mut rhai, &context);

        ScriptEngine {
            rhai,
            sources,
            runbooks,
            stdlib,
            context,
        }
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
    /// module that exists, and every call of a host module's function (`docker::restart`)
    /// names one that is registered. Calls through an imported module are left to run time.
    pub fn check_names(&self, script: &Script, ast: &AST) -> Vec<Diagnostic> {
        let functions = docs::functions(&self.rhai);
        let paths: Vec<String> = functions.iter().map(|f| f.path()).collect();
        let modules: std::collections::BTreeSet<String> =
            functions.iter().filter_map(|f| f.module.clone()).collect();
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
                Some(
                    rhai::ASTNode::Expr(rhai::Expr::FnCall(call, position))
                    | rhai::ASTNode::Stmt(rhai::Stmt::FnCall(call, position)),
                ) => {
                    let namespace = &call.namespace;
                    if namespace.path.len() == 1 && modules.contains(namespace.root()) {
                        let name = format!("{}::{}", namespace.root(), call.name);
                        if !paths.contains(&name) {
                            found.push(at(
                                *position,
                                format!("no function {name}"),
                                hints::for_missing_function(&name, &[], &paths),
                            ));
                        }
                    }
                }
                _ => {}
            }
            true
        });
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
        let mut ast = engine.compile(&*script.text).map_err(|error| {
            in_module(Box::new(EvalAltResult::ErrorParsing(
                error.0.as_ref().clone(),
                error.1,
            )))
        })?;
        ast.set_source(script.display.as_str());
        let mut module = Module::eval_ast_as_new(Scope::new(), &ast, engine).map_err(in_module)?;
        module.build_index();
        let module: Shared<Module> = module.into();
        self.cache
            .lock()
            .unwrap()
            .insert(path.to_string(), module.clone());
        Ok(module)
    }
}
