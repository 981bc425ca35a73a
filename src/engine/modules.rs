//! How `import "NAME"` finds and builds its module: the stdlib catalog first, then the runbooks
//! (a runbook can use another's functions: `import "db-report" as report; report::main()`),
//! each module compiled and evaluated once per process.
//!
//! Parsing a run's modules is most of what it costs before its first host call: a rollback's
//! six took 3 of its ~27 ms, on one core of two. So while the script thread takes the run lock
//! and journals the start, a helper thread parses the modules the runbook imports, and those
//! they import in turn ([`Modules::parse_ahead`]); the script thread, reaching an `import`,
//! takes the parsed AST (waiting while it is being parsed) or parses it itself when the helper
//! has not got to it, and the helper then leaves it alone. Only parsing moves: evaluating a
//! module runs its top-level statements, which may call the host, so that stays on the script
//! thread, in the order the script imports. The helper never waits for the script thread, so
//! neither can wait for the other in a circle. A module the helper cannot parse is parsed again
//! by the script thread, whose error then names the `import` that reached it.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Condvar, Mutex},
    time::Instant,
};

use rhai::{AST, EvalAltResult, Module, ModuleResolver, Position, Scope, Shared};

use crate::engine::{
    catalog::{Catalog, CatalogError, Script},
    sources::SourceMap,
};

/// The modules of one engine: where they are found, and those built or being parsed.
pub(crate) struct Modules {
    stdlib: Catalog,
    runbooks: Catalog,
    sources: SourceMap,
    built: Mutex<HashMap<String, Shared<Module>>>,
    ahead: Mutex<HashMap<String, Ahead>>,
    /// Signalled each time the helper finishes parsing one.
    parsed: Condvar,
}

/// A module's parse by the helper thread.
enum Ahead {
    Parsing,
    Parsed(Script, AST),
    /// The script thread has it, or parses it itself: the helper leaves it alone.
    Taken,
}

impl Modules {
    pub(crate) fn new(stdlib: Catalog, runbooks: Catalog, sources: SourceMap) -> Modules {
        Modules {
            stdlib,
            runbooks,
            sources,
            built: Mutex::default(),
            ahead: Mutex::default(),
            parsed: Condvar::new(),
        }
    }

    /// What `rhai::Engine::set_module_resolver` takes: these modules, shared with the helper.
    pub(crate) fn resolver(self: &Arc<Self>) -> impl ModuleResolver + use<> {
        Resolver(Arc::clone(self))
    }

    fn find(&self, path: &str) -> Result<Script, CatalogError> {
        self.stdlib
            .find(path)
            .or_else(|stdlib_error| self.runbooks.find(path).map_err(|_| stdlib_error))
    }

    /// Parses, on the calling thread, the modules `paths` name and those they import, skipping
    /// any the script thread has taken or that is built already. Returns when there is none
    /// left: the helper thread's whole work.
    pub(crate) fn parse_ahead(&self, engine: &rhai::Engine, paths: Vec<String>) {
        // The script thread parses the first import itself as soon as it starts the run; the
        // helper takes the others in the order they are needed, then what those import.
        let mut paths: VecDeque<String> = paths.into_iter().skip(1).collect();
        while let Some(path) = paths.pop_front() {
            {
                let mut ahead = self.ahead.lock().unwrap();
                if ahead.contains_key(&path) || self.built.lock().unwrap().contains_key(&path) {
                    continue;
                }
                ahead.insert(path.clone(), Ahead::Parsing);
            }
            let parsed = self.find(&path).ok().and_then(|script| {
                let ast = engine.compile(&*script.text).ok()?;
                Some((script, ast))
            });
            if let Some((_, ast)) = &parsed {
                paths.extend(imports(ast));
            }
            let state = match parsed {
                Some((script, ast)) => Ahead::Parsed(script, ast),
                None => Ahead::Taken,
            };
            self.ahead.lock().unwrap().insert(path, state);
            self.parsed.notify_all();
        }
    }

    /// `path`'s script and AST as the helper parsed it, waiting while it parses; `None` when it
    /// did not (or could not): the caller parses it, and the helper will not.
    fn take_parsed(&self, path: &str) -> Option<(Script, AST)> {
        let mut ahead = self.ahead.lock().unwrap();
        loop {
            match ahead.insert(path.to_string(), Ahead::Taken) {
                Some(Ahead::Parsing) => {
                    ahead.insert(path.to_string(), Ahead::Parsing);
                    ahead = self.parsed.wait(ahead).unwrap();
                }
                Some(Ahead::Parsed(script, ast)) => return Some((script, ast)),
                Some(Ahead::Taken) | None => return None,
            }
        }
    }

    fn resolve(
        &self,
        engine: &rhai::Engine,
        path: &str,
        position: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        if let Some(module) = self.built.lock().unwrap().get(path) {
            return Ok(module.clone());
        }
        let started = Instant::now();
        let (script, ast, how) = match self.take_parsed(path) {
            Some((script, ast)) => {
                self.sources
                    .insert(&script.display, Arc::clone(&script.text));
                (script, ast, "parsed ahead, evaluated")
            }
            None => {
                let script = self.find(path).map_err(|error| {
                    EvalAltResult::ErrorRuntime(error.to_string().into(), position)
                })?;
                self.sources
                    .insert(&script.display, Arc::clone(&script.text));
                let ast = engine.compile(&*script.text).map_err(|error| {
                    in_module(
                        &script,
                        position,
                        Box::new(EvalAltResult::ErrorParsing(
                            error.0.as_ref().clone(),
                            error.1,
                        )),
                    )
                })?;
                (script, ast, "compiled and evaluated")
            }
        };
        let mut ast = ast;
        ast.set_source(script.display.as_str());
        let mut module = Module::eval_ast_as_new(Scope::new(), &ast, engine)
            .map_err(|error| in_module(&script, position, error))?;
        module.build_index();
        tracing::trace!(target: "cutover::calls", "module {} {how} in {:.2} ms",
            script.display, started.elapsed().as_secs_f64() * 1e3);
        let module: Shared<Module> = module.into();
        self.built
            .lock()
            .unwrap()
            .insert(path.to_string(), module.clone());
        Ok(module)
    }
}

/// The modules `ast` imports at its top level by a constant name, in order.
pub(crate) fn imports(ast: &AST) -> Vec<String> {
    ast.statements()
        .iter()
        .filter_map(|statement| match statement {
            rhai::Stmt::Import(import, _) => match &import.0 {
                rhai::Expr::StringConstant(name, _) => Some(name.to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn in_module(script: &Script, position: Position, error: Box<EvalAltResult>) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorInModule(
        script.display.clone(),
        error,
        position,
    ))
}

struct Resolver(Arc<Modules>);

impl ModuleResolver for Resolver {
    fn resolve(
        &self,
        engine: &rhai::Engine,
        _source: Option<&str>,
        path: &str,
        position: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        self.0.resolve(engine, path, position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> rhai::Engine {
        let mut engine = rhai::Engine::new();
        engine.set_optimization_level(rhai::OptimizationLevel::None);
        engine
    }

    #[test]
    fn the_top_level_imports_by_name_in_order() {
        let ast = engine()
            .compile(
                "import \"stack\" as stack;\nimport \"bluegreen\" as bg;\nlet m = \"x\";\nimport m as dynamic;\nfn f() { import \"inner\" as inner; }\nimport \"table\";",
            )
            .unwrap();
        assert_eq!(imports(&ast), ["stack", "bluegreen", "table"]);
    }
}
