//! The reference of every function a script can call, read from the engine's registered
//! metadata (Rhai's `metadata` feature) rather than maintained by hand: the `///` comments and
//! typed parameters that the `function!` macro attaches to each host function. `cutover docs`
//! prints it as Markdown or writes Rhai definition files for editors; the REPL's `:help`,
//! completion and hints read the same [`FunctionDoc`] list, so a new host module shows up
//! everywhere as soon as it is registered.

use std::{collections::BTreeMap, fmt::Write as _, path::Path, sync::Arc};

use serde::Deserialize;

use crate::{
    context::Context,
    engine::{ScriptEngine, error::Failure, hints::script_type},
    exit,
    host::options::{Given, OptionKeys},
};

/// One function as the engine knows it: a host function, a stdlib function the REPL imported,
/// or a function of a file loaded with `:load`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionDoc {
    /// `env` for `env::get`; `None` for a function called without a namespace (`sleep`).
    pub module: Option<String>,
    pub name: String,
    /// Parameter names (`_` when unnamed) with their Rhai type, when the function declares one.
    pub params: Vec<(String, Option<String>)>,
    /// The Rhai return type; `None` for `()` or unknown.
    pub returns: Option<String>,
    /// The doc comment without its `///` markers, example included.
    pub doc: String,
    /// Registered by the host (Rust) rather than written in Rhai.
    pub native: bool,
}

impl FunctionDoc {
    /// `env::get`, or `sleep` for a global function.
    pub fn path(&self) -> String {
        match &self.module {
            Some(module) => format!("{module}::{}", self.name),
            None => self.name.clone(),
        }
    }

    /// `(name: String, default: String) -> String`
    pub fn params_text(&self) -> String {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|(name, ty)| match ty {
                Some(ty) => format!("{name}: {ty}"),
                None => name.clone(),
            })
            .collect();
        let returns = self
            .returns
            .as_ref()
            .map(|r| format!(" -> {r}"))
            .unwrap_or_default();
        format!("({}){returns}", params.join(", "))
    }

    /// `env::get(name: String) -> String`
    pub fn signature(&self) -> String {
        format!("{}{}", self.path(), self.params_text())
    }

    /// Plain text for `:help NAME`: the signature, then the doc with its example and the keys
    /// of its option maps.
    pub fn describe(&self) -> String {
        let mut text = format!("{}\n", self.signature());
        for part in [self.doc.clone()].into_iter().chain(self.keys_lines()) {
            if !part.is_empty() {
                text.push_str(&format!("\n{part}\n"));
            }
        }
        text
    }

    /// The option keys of the map this host function takes as parameter number `index`, or
    /// (`in_list`) as each item of the list given there: the table the function checks it with.
    pub fn option_keys(&self, index: usize, in_list: bool) -> Option<&'static OptionKeys> {
        let (param, _) = self.params.get(index).filter(|_| self.native)?;
        crate::host::option_keys(&self.path(), param, in_list)
    }

    /// "Keys of `options`: `tail`, `since`…", one line for each option map the function takes.
    fn keys_lines(&self) -> Vec<String> {
        (0..self.params.len())
            .flat_map(|index| [false, true].map(|in_list| self.option_keys(index, in_list)))
            .flatten()
            .map(|known| {
                let keys: Vec<String> = known.keys().map(|k| format!("`{k}`")).collect();
                let keys = keys.join(", ");
                match known.given {
                    Given::Argument(param) => format!("Keys of `{param}`: {keys}."),
                    Given::ItemOf(param) => format!("Keys of each map in `{param}`: {keys}."),
                }
            })
            .collect()
    }

    /// The first sentence-line of the doc, for one-line listings.
    pub fn summary(&self) -> &str {
        self.doc.lines().next().unwrap_or("").trim()
    }

    /// The code of the first fenced ```rhai block in the doc.
    pub fn example(&self) -> Option<String> {
        let mut lines = self.doc.lines();
        lines.by_ref().find(|l| l.trim() == "```rhai")?;
        let mut code = String::new();
        for line in lines {
            if line.trim() == "```" {
                return Some(code);
            }
            code.push_str(line);
            code.push('\n');
        }
        None
    }
}

/// The shape of `Engine::gen_fn_metadata_to_json`, only the fields used here.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModuleMetadata {
    #[serde(default)]
    modules: BTreeMap<String, ModuleMetadata>,
    #[serde(default)]
    functions: Vec<FnMetadata>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FnMetadata {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    access: String,
    #[serde(default)]
    is_anonymous: bool,
    #[serde(default)]
    params: Vec<ParamMetadata>,
    #[serde(default)]
    return_type: String,
    #[serde(default)]
    doc_comments: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct ParamMetadata {
    name: Option<String>,
    #[serde(rename = "type")]
    ty: Option<String>,
}

/// Every public function registered in `engine` (host modules, global host functions, static
/// modules added later), without Rhai's standard library, sorted global functions first, then
/// by module and name.
pub fn functions(engine: &rhai::Engine) -> Vec<FunctionDoc> {
    let json = engine
        .gen_fn_metadata_to_json(false)
        .expect("function metadata serializes");
    let root: ModuleMetadata = serde_json::from_str(&json).expect("function metadata parses");
    let mut found = Vec::new();
    collect(None, &root, &mut found);
    found.sort_by(|a, b| {
        (&a.module, &a.name, a.params.len()).cmp(&(&b.module, &b.name, b.params.len()))
    });
    found
}

fn collect(module: Option<&str>, metadata: &ModuleMetadata, found: &mut Vec<FunctionDoc>) {
    for function in &metadata.functions {
        if function.access != "public" || function.is_anonymous {
            continue;
        }
        found.push(FunctionDoc {
            module: module.map(str::to_string),
            name: function.name.clone(),
            params: function
                .params
                .iter()
                .map(|p| {
                    let name = p.name.clone().unwrap_or_else(|| "_".to_string());
                    (name, p.ty.clone().filter(|t| !t.is_empty()))
                })
                .collect(),
            returns: Some(function.return_type.clone()).filter(|r| !r.is_empty() && r != "()"),
            doc: doc_text(&function.doc_comments),
            native: function.kind == "native",
        });
    }
    for (name, sub) in &metadata.modules {
        let path = match module {
            Some(parent) => format!("{parent}::{name}"),
            None => name.clone(),
        };
        collect(Some(&path), sub, found);
    }
}

/// Doc comment lines (`/// text` or a `/** … */` block) as plain text.
pub fn doc_text(comments: &[String]) -> String {
    let mut lines = Vec::new();
    for comment in comments {
        if let Some(block) = comment.strip_prefix("/**") {
            let block = block.strip_suffix("*/").unwrap_or(block);
            lines.extend(block.lines().map(|l| {
                let l = l.trim_start();
                l.strip_prefix("* ")
                    .or(l.strip_prefix('*'))
                    .unwrap_or(l)
                    .to_string()
            }));
        } else {
            for line in comment.lines() {
                let line = line.trim_start();
                let line = line.strip_prefix("///").unwrap_or(line);
                lines.push(line.strip_prefix(' ').unwrap_or(line).to_string());
            }
        }
    }
    while lines.first().is_some_and(|l| l.trim().is_empty()) {
        lines.remove(0);
    }
    while lines.last().is_some_and(|l| l.trim().is_empty()) {
        lines.pop();
    }
    lines.join("\n")
}

/// Why `function` falls short of the documentation rule (a doc comment with a ```rhai
/// example), or `None` when it meets it.
pub fn missing_docs(function: &FunctionDoc) -> Option<&'static str> {
    if function.doc.trim().is_empty() {
        Some("has no doc comment")
    } else if function.example().is_none_or(|e| e.trim().is_empty()) {
        Some("has no ```rhai example in its doc comment")
    } else {
        None
    }
}

/// The Markdown reference of `functions`: global functions, then one section per module.
pub fn markdown(functions: &[FunctionDoc]) -> String {
    let mut modules: BTreeMap<Option<&str>, Vec<&FunctionDoc>> = BTreeMap::new();
    for function in functions {
        modules
            .entry(function.module.as_deref())
            .or_default()
            .push(function);
    }
    let mut out = String::from(
        "# cutover host functions\n\n\
         Every function runbooks and the REPL can call, generated by `cutover docs` from the \
         functions registered in the engine. Durations are integer milliseconds; option maps use \
         snake_case keys.\n\n",
    );
    let index: Vec<String> = modules
        .keys()
        .map(|m| match m {
            Some(name) => format!("[`{name}`](#{})", anchor(name)),
            None => "[global functions](#global-functions)".to_string(),
        })
        .collect();
    let _ = writeln!(out, "{}\n", index.join(" · "));
    for (module, functions) in &modules {
        match module {
            Some(name) => {
                let _ = writeln!(out, "## `{name}`\n");
            }
            None => out.push_str("## Global functions\n\n"),
        }
        for function in functions {
            function_section(&mut out, function);
        }
    }
    out
}

/// Plain text for the REPL's `:help`: one line a function, signature then summary.
pub fn listing(functions: &[&FunctionDoc]) -> String {
    let width = functions
        .iter()
        .map(|f| f.signature().chars().count())
        .max()
        .unwrap_or(0)
        .min(56);
    functions
        .iter()
        .map(|f| {
            let signature = f.signature();
            format!("  {signature:<width$}  {}\n", f.summary())
                .trim_end()
                .to_string()
                + "\n"
        })
        .collect()
}

/// The functions of every stdlib module, from their `///` docs (each module compiled, not run).
pub fn stdlib_functions(engine: &ScriptEngine) -> Vec<FunctionDoc> {
    let mut found = Vec::new();
    for script in engine.stdlib.list().unwrap_or_default() {
        let Ok(ast) = engine.rhai.compile(&*script.text) else {
            continue; // `cutover check` reports it
        };
        for function in ast.iter_functions() {
            if function.access == rhai::FnAccess::Private || function.name.starts_with("anon$") {
                continue;
            }
            let comments: Vec<String> = function.comments.iter().map(|c| c.to_string()).collect();
            found.push(FunctionDoc {
                module: Some(script.name.clone()),
                name: function.name.to_string(),
                params: function
                    .params
                    .iter()
                    .map(|p| (p.to_string(), None))
                    .collect(),
                returns: None,
                doc: doc_text(&comments),
                native: false,
            });
        }
    }
    found.sort_by(|a, b| {
        (&a.module, &a.name, a.params.len()).cmp(&(&b.module, &b.name, b.params.len()))
    });
    found
}

/// The stdlib part of the reference: each module's opening comment is in its source
/// (`cutover show --module NAME`); here are its functions, with the import that reaches them.
pub fn stdlib_markdown(functions: &[FunctionDoc]) -> String {
    let mut out = String::from(
        "# The stdlib\n\n\
         Rhai modules shipped with cutover (and overridden by files in `./stdlib`): the \
         blue-green model the runbooks are built on. Import one by name — `import \"bluegreen\" \
         as bg;` — and call `bg::promote(cfg, \"green\")`; `cutover show --module NAME` prints \
         its source.\n\n",
    );
    let mut current: Option<&str> = None;
    for function in functions {
        let module = function.module.as_deref().unwrap_or("");
        if current != Some(module) {
            let _ = writeln!(out, "## `{module}` (`import \"{module}\" as {module};`)\n");
            current = Some(module);
        }
        function_section(&mut out, function);
    }
    out
}

/// One function's entry in the reference: its signature as a heading, then its doc.
fn function_section(out: &mut String, function: &FunctionDoc) {
    let _ = writeln!(out, "### `{}`\n", function.signature());
    if function.doc.is_empty() {
        out.push_str("*(undocumented)*\n\n");
    } else {
        let _ = writeln!(out, "{}\n", function.doc);
    }
    for line in function.keys_lines() {
        let _ = writeln!(out, "{line}\n");
    }
}

/// What a runbook author needs of Rhai itself, with the traps newcomers meet.
pub const RHAI_FOR_RUNBOOK_AUTHORS: &str = r#"# Rhai for runbook authors

Runbooks are [Rhai](https://rhai.rs) scripts. What you need beyond the host functions above:

* **Strings.** Backtick strings interpolate: `` `${env} runs ${tag}` ``; they span lines and
  keep `\n` as written (no escapes: use a real line break). `text.split(",")` gives an array,
  `text.sub_string(0, 5)` a part, `text.contains("x")`, `text.starts_with("v")`,
  `text.len()`. `trim()`, `make_upper()`, `make_lower()` and `pad(n, " ")` change the string
  **in place** and return nothing: write `name.trim();`, not `let t = name.trim();`. Use
  `fmt::left`, `fmt::right` and `fmt::fixed` for columns and decimals.
* **JSON.** `parse_json(text)` gives maps and arrays; `map.to_json()` the text of a map (Rhai
  has it for maps only: for an array, join its items' JSON). `http::get(url).json` is already
  parsed, and `http::post` sends a map or an array as JSON itself.
* **Numbers.** `"42".parse_int()`, `"1.5".parse_float()` (throw on bad text: wrap them in
  `try { … } catch { … }`); `x.to_float()`, `x.to_int()`, `x.round()`. Integer division stays
  an integer: `7 / 2` is `3`.
* **Maps and arrays.** `#{name: "green", port: 8082}`, `m.name`, `m["name"]`, `m.keys()`,
  `m.contains("name")`; `[1, 2]`, `a.push(x)`, `a.len()`, `for x in a { … }`,
  `a.filter(|x| x > 1)`, `a.map(|x| x * 2)`. A missing map key reads as `()`; `x ?? fallback`
  gives a default.
* **Functions see only their parameters.** A `fn` cannot read the script's top-level `let` or
  `const`: pass values in, or make them functions (`fn timeout() { 30_000 }`).
* **Modules are imported by name.** `import "bluegreen" as bg;` at the top, then `bg::…`. A
  runbook can import another runbook the same way.
* **Errors.** `throw "message"` ends the run with that message (exit 1); `try { … } catch (e)
  { … }` handles an error, but never a Ctrl-C, `--timeout` or SIGTERM: register cleanup with
  `defer(|| …)` where the host has it.
"#;

/// Help on one of Rhai's own functions (`to_json`, `split`, `trim`), which are not host
/// functions: its signatures as the engine has them, and what [`RHAI_FOR_RUNBOOK_AUTHORS`]
/// says of it. `None` when the engine has no such function.
pub fn builtin_help(engine: &rhai::Engine, name: &str) -> Option<String> {
    let call = format!("{name}(");
    let mut signatures: Vec<String> = engine
        .gen_fn_signatures(true)
        .into_iter()
        .filter(|s| s.starts_with(&call))
        .map(|s| in_script_types(&s))
        .collect();
    signatures.sort();
    signatures.dedup();
    if signatures.is_empty() {
        return None;
    }
    let mut out = format!("{name} is one of Rhai's own functions:\n");
    for signature in &signatures {
        out.push_str(&format!("  {signature}\n"));
    }
    let mentions = |bullet: &&str| {
        bullet.match_indices(name).any(|(at, _)| {
            let before = bullet[..at].chars().next_back();
            let after = bullet[at + name.len()..].chars().next();
            !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
        })
    };
    for bullet in RHAI_FOR_RUNBOOK_AUTHORS
        .split("\n* ")
        .skip(1)
        .filter(mentions)
    {
        out.push_str(&format!("\n* {}\n", bullet.trim_end()));
    }
    out.push_str("\n(`cutover docs` has the page \"Rhai for runbook authors\".)\n");
    Some(out)
}

/// `split(string: string, segments: i64) -> Array` as a script author reads it:
/// `split(string: String, segments: int) -> array`.
fn in_script_types(signature: &str) -> String {
    let (call, returns) = match signature.split_once(" -> ") {
        Some((call, returns)) => (call, Some(returns)),
        None => (signature, None),
    };
    let (name, params) = call.split_once('(').unwrap_or((call, ")"));
    let params: Vec<String> = params
        .trim_end_matches(')')
        .split(", ")
        .filter(|p| !p.is_empty())
        .map(|param| match param.split_once(": ") {
            Some((name, rust)) => {
                format!("{name}: {}", script_type(rust.trim_start_matches("&mut ")))
            }
            None => param.to_string(),
        })
        .collect();
    let mut out = format!("{name}({})", params.join(", "));
    if let Some(returns) = returns {
        out.push_str(&format!(" -> {}", script_type(returns)));
    }
    out
}

/// GitHub's heading anchor for a module name heading like "## `env`".
fn anchor(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_alphanumeric() || *c == '_' || *c == '-')
        .collect::<String>()
        .to_lowercase()
}

/// `cutover docs [--definitions DIR]`
pub fn command(context: &Arc<Context>, definitions: Option<&Path>) -> Result<i32, Failure> {
    let engine = ScriptEngine::new(Arc::clone(context));
    match definitions {
        Some(dir) => {
            engine.rhai.definitions().write_to_dir(dir).map_err(|e| {
                Failure::Other(anyhow::anyhow!(
                    "cannot write definitions to {}: {e}",
                    dir.display()
                ))
            })?;
            errln!("wrote Rhai definition files to {}", dir.display());
        }
        None => {
            let stdlib = stdlib_functions(&engine);
            out!(
                "{}\n{}\n{RHAI_FOR_RUNBOOK_AUTHORS}",
                markdown(&functions(&engine.rhai)),
                stdlib_markdown(&stdlib)
            );
        }
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doc_text_strips_markers() {
        let doc = doc_text(&[
            "/// First line.".to_string(),
            "///".to_string(),
            "/// ```rhai".to_string(),
            "/// f(1);".to_string(),
            "/// ```".to_string(),
        ]);
        assert_eq!(doc, "First line.\n\n```rhai\nf(1);\n```");
        let function = FunctionDoc {
            module: Some("m".into()),
            name: "f".into(),
            params: vec![("n".into(), Some("int".into()))],
            returns: Some("String".into()),
            doc,
            native: true,
        };
        assert_eq!(function.signature(), "m::f(n: int) -> String");
        assert_eq!(function.example().as_deref(), Some("f(1);\n"));
        assert_eq!(function.summary(), "First line.");
        assert_eq!(missing_docs(&function), None);
    }

    fn engine() -> (tokio::runtime::Runtime, ScriptEngine) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let settings =
            crate::config::Settings::from_args(&crate::config::GlobalArgs::default()).unwrap();
        let context = Arc::new(Context::new(
            settings,
            runtime.handle().clone(),
            Arc::default(),
        ));
        (runtime, ScriptEngine::new(context))
    }

    /// The key tables and the registered functions agree: every `options: Map` parameter of a
    /// host function has its table (the REPL and the docs find it), and every table belongs to
    /// a parameter some registered function has (a renamed function or parameter shows here).
    #[test]
    fn every_option_map_has_its_key_table() {
        let (_runtime, engine) = engine();
        let functions = functions(&engine.rhai);
        for function in &functions {
            for (index, (param, ty)) in function.params.iter().enumerate() {
                if param == "options" {
                    assert_eq!(ty.as_deref(), Some("Map"), "{}", function.signature());
                    assert!(
                        function.option_keys(index, false).is_some(),
                        "{} takes an option map without an OptionKeys table in host::OPTION_KEYS",
                        function.signature()
                    );
                }
            }
        }
        for known in crate::host::OPTION_KEYS.iter().flat_map(|m| m.iter()) {
            let taken = functions.iter().any(|function| {
                (0..function.params.len()).any(|index| {
                    [false, true]
                        .into_iter()
                        .any(|in_list| function.option_keys(index, in_list) == Some(known))
                })
            });
            assert!(taken, "no registered function takes the map of {known:?}");
        }
        let logs = functions
            .iter()
            .find(|f| f.path() == "docker::logs" && f.params.len() == 2)
            .unwrap();
        assert!(
            logs.describe().ends_with(
                "\n\nKeys of `options`: `tail`, `since`, `follow`, `timeout`, \
                            `timestamps`, `to`, `append`, `prefix`.\n"
            ),
            "{}",
            logs.describe()
        );
    }

    /// Every stdlib function the runbooks call is in the reference, with its doc.
    #[test]
    fn the_stdlib_is_documented_from_its_doc_comments() {
        let (_runtime, engine) = engine();
        let stdlib = stdlib_functions(&engine);
        let promote = stdlib
            .iter()
            .find(|f| f.path() == "bluegreen::promote")
            .expect("bluegreen::promote is listed");
        assert_eq!(promote.signature(), "bluegreen::promote(cfg, env)");
        assert!(
            promote.doc.starts_with("Moves production traffic to `env`"),
            "{}",
            promote.doc
        );
        let text = stdlib_markdown(&stdlib);
        assert!(text.contains("## `canary` (`import \"canary\" as canary;`)"));
        assert!(text.contains("### `canary::run(cfg, env)`"));
    }
}
