//! A REPL session: one engine, one `Scope` and the functions defined so far, so each input sees
//! the variables, functions and imports of the ones before it, as if the session were one long
//! script typed a piece at a time.
//!
//! That is also how errors are placed: every input is appended to one document, `<repl>`, and is
//! compiled padded with the newlines of the inputs before it, so a position in any input (or in
//! a function defined ten inputs ago and failing now) is a line of that document, and the caret
//! snippet shows the right line.
//!
//! Stdlib modules are imported under their own names when the session starts (`table::render`
//! works without an `import`), and an `import "m" as x;` typed at the prompt stays in effect for
//! the inputs after it. Host modules keep their names: an import cannot hide `env` or `docker`.

use std::{collections::BTreeSet, path::Path, sync::Arc};

use rhai::{AST, Dynamic, Expr, Map, Module, Position, Scope, Stmt};

use crate::{
    context::Context,
    engine::ScriptEngine,
    engine::catalog::Script,
    engine::docs::{FunctionDoc, functions},
    engine::error::{Diagnostic, Failure},
    engine::runbook::Runbook,
};

/// The name errors give the document of everything typed in the session.
pub const SOURCE: &str = "<repl>";

pub struct Session {
    pub engine: ScriptEngine,
    scope: Scope<'static>,
    /// Functions defined by inputs so far; its statements are cleared after each input.
    defined: AST,
    /// Every input of the session, one after the other: the `<repl>` document.
    document: String,
    /// Names of the host modules, which imports may not hide.
    host_modules: BTreeSet<String>,
}

impl Session {
    pub fn new(context: Arc<Context>) -> Session {
        let engine = ScriptEngine::new(context);
        let host_modules = functions(&engine.rhai)
            .into_iter()
            .filter_map(|f| f.module)
            .collect();
        let mut session = Session {
            engine,
            scope: Scope::new(),
            defined: AST::empty(),
            document: String::new(),
            host_modules,
        };
        session.import_stdlib();
        session
    }

    /// Makes every stdlib module callable under its own name, and under each alias the
    /// runbooks and stdlib modules import it as (`import "bluegreen" as bg;` makes `bg::` work
    /// here too), so a line copied from a runbook runs as it is. A module that fails to load is
    /// left out (an explicit `import` of it shows why).
    fn import_stdlib(&mut self) {
        let Ok(modules) = self.engine.stdlib.list() else {
            return;
        };
        let mut registered = BTreeSet::new();
        for module in &modules {
            if rhai::is_valid_identifier(&module.name) && self.import(&module.name, &module.name) {
                registered.insert(module.name.clone());
            }
        }
        let scripts = self.engine.runbooks.list().unwrap_or_default();
        for script in scripts.iter().chain(&modules) {
            let Ok(ast) = self.engine.rhai.compile(&*script.text) else {
                continue;
            };
            for (path, alias) in imports(&ast) {
                if registered.contains(&path)
                    && !registered.contains(&alias)
                    && self.import(&path, &alias)
                {
                    registered.insert(alias);
                }
            }
        }
    }

    /// Registers stdlib module `path` as the static module `alias`, unless a host module has
    /// that name. Returns whether it did.
    fn import(&mut self, path: &str, alias: &str) -> bool {
        if self.host_modules.contains(alias) {
            return false;
        }
        let resolved = self.engine.rhai.module_resolver().resolve(
            &self.engine.rhai,
            None,
            path,
            Position::NONE,
        );
        match resolved {
            Ok(module) => {
                self.engine.rhai.register_static_module(alias, module);
                true
            }
            Err(error) => {
                tracing::debug!("stdlib module {path} not imported: {error}");
                false
            }
        }
    }

    /// Compiles and runs one input, keeping its variables, functions and imports.
    pub fn eval(&mut self, input: &str) -> Result<Dynamic, Failure> {
        let lines_before = self.document.matches('\n').count();
        self.document.push_str(input);
        if !input.ends_with('\n') {
            self.document.push('\n');
        }
        let padded = format!("{}{input}", "\n".repeat(lines_before));
        let ast = match self.engine.rhai.compile_with_scope(&self.scope, &padded) {
            Ok(ast) => ast,
            Err(error) => {
                self.share_document();
                return Err(self.compile_failure(&Diagnostic::from_parse(SOURCE, &error)));
            }
        };
        let imports = imports(&ast);
        let mut run = std::mem::take(&mut self.defined);
        run += ast;
        run.set_source(SOURCE);
        let result = self
            .engine
            .rhai
            .eval_ast_with_scope::<Dynamic>(&mut self.scope, &run);
        run.clear_statements();
        self.defined = run;
        for (path, alias) in imports {
            self.import(&path, &alias);
        }
        result.map_err(|error| {
            self.share_document();
            self.engine.failure(SOURCE, &error)
        })
    }

    /// Hands the `<repl>` document to the source map for an error snippet. Done only when an
    /// error is shown, so a long session does not copy its whole text at every input.
    fn share_document(&self) {
        self.engine.sources.insert(SOURCE, self.document.as_str());
    }

    /// `:load FILE`: runs the file as a module and makes its functions callable by name.
    /// Returns how many functions it defined.
    pub fn load(&mut self, path: &Path) -> Result<usize, Failure> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", path.display())))?;
        let display = path.display().to_string();
        let script = Script {
            name: display.clone(),
            origin: crate::engine::catalog::Origin::Disk(path.to_path_buf()),
            display: display.clone(),
            text: Arc::from(text),
        };
        let ast = self
            .engine
            .compile(&script)
            .map_err(|d| self.compile_failure(&d))?;
        let count = ast
            .iter_functions()
            .filter(|f| f.access == rhai::FnAccess::Public)
            .count();
        let mut module = Module::eval_ast_as_new(Scope::new(), &ast, &self.engine.rhai)
            .map_err(|error| self.engine.failure(&display, &error))?;
        module.build_index();
        self.engine.rhai.register_global_module(module.into());
        Ok(count)
    }

    /// Finds and compiles runbook `name` for `:run`.
    pub fn runbook(&self, name: &str) -> Result<Runbook, Failure> {
        let script = self
            .engine
            .runbooks
            .find(name)
            .map_err(|e| Failure::Usage(e.to_string()))?;
        Runbook::compile(&self.engine, script).map_err(|d| self.compile_failure(&d))
    }

    /// Runs `runbook` with `args` in a scope of its own, as `cutover run` would.
    pub fn run(&self, runbook: &Runbook, args: &[String]) -> Result<Dynamic, Failure> {
        runbook
            .run(&self.engine, &mut Scope::new(), args)
            .map_err(|error| self.engine.failure(&runbook.script.display, &error))
    }

    fn compile_failure(&self, diagnostic: &Diagnostic) -> Failure {
        Failure::Compile(self.engine.redact(&diagnostic.render(&self.engine.sources)))
    }

    /// Every function callable now: host functions, imported stdlib modules, `:load`ed files
    /// and the functions defined at the prompt.
    pub fn functions(&self) -> Vec<FunctionDoc> {
        let mut all = functions(&self.engine.rhai);
        all.extend(self.defined.iter_functions().map(|f| FunctionDoc {
            module: None,
            name: f.name.to_string(),
            params: f.params.iter().map(|p| (p.to_string(), None)).collect(),
            returns: None,
            doc: crate::engine::docs::doc_text(
                &f.comments.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            ),
            native: false,
        }));
        all
    }

    /// Names of the variables defined at the prompt.
    pub fn variables(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .scope
            .iter_raw()
            .map(|(name, ..)| name.to_string())
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

/// `(path, alias)` of each top-level `import "path" as alias;` of `ast`.
fn imports(ast: &AST) -> Vec<(String, String)> {
    ast.statements()
        .iter()
        .filter_map(|statement| match statement {
            Stmt::Import(import, _) => match (&import.0, &import.1) {
                (Expr::StringConstant(path, _), alias) if !alias.name.is_empty() => {
                    Some((path.to_string(), alias.name.to_string()))
                }
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// A value as the REPL echoes it: Rhai literal syntax, maps and arrays spread over lines when
/// they do not fit on one. A string of several lines (command output, a rendered table) is
/// printed as it is, to be read rather than copied.
pub fn display_value(value: &Dynamic) -> String {
    if let Ok(text) = value.as_immutable_string_ref()
        && text.contains('\n')
    {
        return text.to_string();
    }
    let mut out = String::new();
    write_value(value, 0, &mut out);
    out
}

const FLAT_WIDTH: usize = 100;

fn write_value(value: &Dynamic, indent: usize, out: &mut String) {
    let flat = format!("{value:?}");
    if flat.len() + indent <= FLAT_WIDTH || !(value.is_map() || value.is_array()) {
        out.push_str(&flat);
        return;
    }
    let pad = "    ".repeat(indent + 1);
    if let Some(map) = value.clone().try_cast::<Map>() {
        out.push_str("#{\n");
        for (key, item) in &map {
            out.push_str(&pad);
            if rhai::is_valid_identifier(key) {
                out.push_str(key);
            } else {
                out.push_str(&format!("{:?}", key.as_str()));
            }
            out.push_str(": ");
            write_value(item, indent + 1, out);
            out.push_str(",\n");
        }
        out.push_str(&"    ".repeat(indent));
        out.push('}');
    } else if let Some(array) = value.clone().try_cast::<rhai::Array>() {
        out.push_str("[\n");
        for item in &array {
            out.push_str(&pad);
            write_value(item, indent + 1, out);
            out.push_str(",\n");
        }
        out.push_str(&"    ".repeat(indent));
        out.push(']');
    }
}
