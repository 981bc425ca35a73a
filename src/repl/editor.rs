//! What the REPL's line editor knows about Rhai and about cutover: when Enter runs the input
//! and when it continues on the next line ([`is_complete`]), what Tab completes (REPL
//! commands, runbook names after `:run`, stdlib modules in `import "…"`, module names,
//! functions, variables, and inside `#{` the option keys of the function the map is given to),
//! and the signature hint shown as you type.
//! The words come from a [`Vocabulary`] the REPL refreshes from the engine's metadata before each
//! prompt, so functions of new modules, imports and `:load`ed files are offered at once.

use std::borrow::Cow;

use rustyline::{
    Context, Helper,
    completion::{Completer, FilenameCompleter, Pair},
    highlight::{CmdKind, Highlighter},
    hint::{Hint, Hinter},
    validate::{ValidationContext, ValidationResult, Validator},
};

use crate::{
    engine::docs::FunctionDoc,
    host::options::OptionKeys,
    repl::cursor::{MapKey, enclosing_call, map_key, word_start},
    repl::input::is_complete,
};

/// The REPL commands with their arguments, as `:help` lists them and Tab completes them.
pub const COMMANDS: &[(&str, &str, &str)] = &[
    (
        ":help",
        "[NAME]",
        "every module and function, or one function's signature, doc and example",
    ),
    (":runbooks", "", "the runbooks `:run` can run"),
    (
        ":run",
        "NAME [ARGS]...",
        "run a runbook in this session (its dry-run and environment)",
    ),
    (":load", "FILE", "define the functions of a Rhai file"),
    (
        ":dry",
        "[on|off]",
        "only describe changes (on) or make them (off)",
    ),
    (":history", "", "the lines entered in this session"),
    (":quit", "", "leave the REPL (Ctrl-D does too)"),
];

/// Everything Tab and the hints can offer, refreshed before each prompt.
#[derive(Debug, Clone, Default)]
pub struct Vocabulary {
    /// Host, stdlib and user-defined functions.
    pub functions: Vec<FunctionDoc>,
    pub runbooks: Vec<String>,
    /// Stdlib module names, for `import "…"`.
    pub stdlib: Vec<String>,
    pub variables: Vec<String>,
}

impl Vocabulary {
    fn modules(&self) -> Vec<&str> {
        let mut modules: Vec<&str> = self
            .functions
            .iter()
            .filter_map(|f| f.module.as_deref())
            .collect();
        modules.sort_unstable();
        modules.dedup();
        modules
    }

    /// Every overload of the function called `path` (`env::get`, `sleep`).
    pub fn overloads(&self, path: &str) -> Vec<&FunctionDoc> {
        self.functions.iter().filter(|f| f.path() == path).collect()
    }

    /// The option keys of the map at `key`: those of the function it is given to, when an
    /// overload of it takes that argument as an option map.
    fn option_keys(&self, key: &MapKey) -> Option<&'static OptionKeys> {
        self.overloads(key.call.function)
            .into_iter()
            .find_map(|function| function.option_keys(key.call.argument, key.in_list))
    }
}

/// The rustyline helper: completion, hints and multi-line validation.
pub struct ReplHelper {
    pub vocabulary: Vocabulary,
    filenames: FilenameCompleter,
    /// Dim the hints (off with `NO_COLOR` or off a terminal).
    color: bool,
}

impl ReplHelper {
    pub fn new(color: bool) -> ReplHelper {
        ReplHelper {
            vocabulary: Vocabulary::default(),
            filenames: FilenameCompleter::new(),
            color,
        }
    }

    /// Candidates for the text before the cursor, and where the replaced word starts.
    fn candidates(&self, before: &str) -> (usize, Vec<Pair>) {
        let trimmed = before.trim_start();
        if trimmed.starts_with(':') {
            return self.command_candidates(before);
        }
        if let Some(start) = import_path_start(before) {
            let partial = &before[start..];
            let pairs = self
                .vocabulary
                .stdlib
                .iter()
                .filter(|name| name.starts_with(partial))
                .map(|name| pair(name, name))
                .collect();
            return (start, pairs);
        }
        if let Some(key) = map_key(before)
            && let Some(known) = self.vocabulary.option_keys(&key)
        {
            // The key alone: the `:` the user types next would make `::`.
            let typed = &before[key.start..];
            let pairs = known
                .keys()
                .filter(|k| k.starts_with(typed) && !key.used.iter().any(|used| used == k))
                .map(|k| pair(k, k))
                .collect();
            return (key.start, pairs);
        }
        let start = word_start(before);
        let word = &before[start..];
        if word.is_empty() {
            return (start, Vec::new());
        }
        (start, self.word_candidates(word, true))
    }

    fn command_candidates(&self, before: &str) -> (usize, Vec<Pair>) {
        let trimmed = before.trim_start();
        let offset = before.len() - trimmed.len();
        let Some((command, rest)) = trimmed.split_once(char::is_whitespace) else {
            let pairs = COMMANDS
                .iter()
                .filter(|(name, ..)| name.starts_with(trimmed))
                .map(|(name, args, _)| {
                    let space = if args.is_empty() { "" } else { " " };
                    pair(name, &format!("{name}{space}"))
                })
                .collect();
            return (offset, pairs);
        };
        let start = before.len() - rest.trim_start().len();
        let argument = &before[start..];
        let choose = |words: Vec<&str>| {
            let pairs = words
                .into_iter()
                .filter(|w| w.starts_with(argument))
                .map(|w| pair(w, w))
                .collect();
            (start, pairs)
        };
        match command {
            ":run" if !argument.contains(char::is_whitespace) => choose(
                self.vocabulary
                    .runbooks
                    .iter()
                    .map(String::as_str)
                    .collect(),
            ),
            ":dry" => choose(vec!["on", "off"]),
            ":help" => {
                let mut pairs: Vec<Pair> = self.word_candidates(argument, false);
                pairs.extend(
                    COMMANDS
                        .iter()
                        .filter(|(name, ..)| name.starts_with(argument))
                        .map(|(name, ..)| pair(name, name)),
                );
                (start, pairs)
            }
            ":load" => self
                .filenames
                .complete_path(before, before.len())
                .unwrap_or((start, Vec::new())),
            _ => (start, Vec::new()),
        }
    }

    /// Modules, functions and variables (in `code`) starting with `word`; `module::prefix`
    /// completes the module's functions. A function is completed without its `(`: the `(` the
    /// user types next would make `((`, and the hint shows the signature meanwhile.
    fn word_candidates(&self, word: &str, code: bool) -> Vec<Pair> {
        let mut pairs: Vec<Pair> = Vec::new();
        let mut add = |display: String, replacement: String| {
            if !pairs.iter().any(|p| p.replacement == replacement) {
                pairs.push(Pair {
                    display,
                    replacement,
                });
            }
        };
        if let Some((module, prefix)) = word.rsplit_once("::") {
            for function in &self.vocabulary.functions {
                if function.module.as_deref() == Some(module) && function.name.starts_with(prefix) {
                    add(function.path(), function.path());
                }
            }
            return pairs;
        }
        for module in self.vocabulary.modules() {
            if module.starts_with(word) {
                add(format!("{module}::"), format!("{module}::"));
            }
        }
        for function in &self.vocabulary.functions {
            if function.module.is_none() && function.name.starts_with(word) {
                add(function.name.clone(), function.name.clone());
            }
        }
        if code {
            for variable in &self.vocabulary.variables {
                if variable.starts_with(word) {
                    add(variable.clone(), variable.clone());
                }
            }
        }
        pairs
    }

    /// The hint for the input so far: the rest of a function name only one function starts
    /// with, plus its signature; or the signature of the call the cursor is in.
    fn hint_for(&self, line: &str) -> Option<SignatureHint> {
        if line.trim_start().starts_with(':') {
            let trimmed = line.trim_start();
            let matches: Vec<_> = COMMANDS
                .iter()
                .filter(|(name, ..)| name.starts_with(trimmed) && trimmed.len() > 1)
                .collect();
            return match matches.as_slice() {
                [(name, args, _)] if !args.is_empty() || name.len() > trimmed.len() => {
                    let rest = &name[trimmed.len()..];
                    Some(SignatureHint {
                        display: format!("{rest} {args}").trim_end().to_string(),
                        completion: Some(rest.to_string()),
                    })
                }
                _ => None,
            };
        }
        let start = word_start(line);
        let word = &line[start..];
        if !word.is_empty() {
            let names: Vec<String> = {
                let mut names: Vec<String> = self
                    .vocabulary
                    .functions
                    .iter()
                    .map(FunctionDoc::path)
                    .filter(|p| p.starts_with(word))
                    .collect();
                names.sort_unstable();
                names.dedup();
                names
            };
            match names.as_slice() {
                [name] => {
                    let rest = &name[word.len()..];
                    return Some(SignatureHint {
                        display: format!("{rest}{}", self.signatures(name)),
                        completion: (!rest.is_empty()).then(|| rest.to_string()),
                    });
                }
                [] => {}
                _ => return None,
            }
        }
        let callee = enclosing_call(line)?.function;
        if self.vocabulary.overloads(callee).is_empty() {
            return None;
        }
        Some(SignatureHint {
            display: format!("  {callee}{}", self.signatures(callee)),
            completion: None,
        })
    }

    /// `(name: String) -> String | (name: String, default: String) -> String`
    fn signatures(&self, path: &str) -> String {
        self.vocabulary
            .overloads(path)
            .iter()
            .map(|f| f.params_text())
            .collect::<Vec<_>>()
            .join(" | ")
    }
}

fn pair(display: &str, replacement: &str) -> Pair {
    Pair {
        display: display.to_string(),
        replacement: replacement.to_string(),
    }
}

/// When the cursor is inside the string of `import "…`, where that string's text starts.
fn import_path_start(before: &str) -> Option<usize> {
    let quote = before.rfind('"')?;
    let head = before[..quote].trim_end();
    let head_word = &head[word_start(head)..];
    (head_word == "import" && !before[quote + 1..].contains('"')).then_some(quote + 1)
}

/// A hint shown after the cursor: `display` dimmed; `completion` is what → inserts, if anything.
pub struct SignatureHint {
    display: String,
    completion: Option<String>,
}

impl Hint for SignatureHint {
    fn display(&self) -> &str {
        &self.display
    }
    fn completion(&self) -> Option<&str> {
        self.completion.as_deref()
    }
}

impl Completer for ReplHelper {
    type Candidate = Pair;
    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        Ok(self.candidates(&line[..pos]))
    }
}

impl Hinter for ReplHelper {
    type Hint = SignatureHint;
    fn hint(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> Option<SignatureHint> {
        (pos == line.len() && !line.is_empty())
            .then(|| self.hint_for(line))
            .flatten()
    }
}

impl Highlighter for ReplHelper {
    fn highlight_hint<'h>(&self, hint: &'h str) -> Cow<'h, str> {
        if self.color {
            Cow::Owned(format!("\x1b[2m{hint}\x1b[0m"))
        } else {
            Cow::Borrowed(hint)
        }
    }

    fn highlight_char(&self, _line: &str, _pos: usize, _kind: CmdKind) -> bool {
        false
    }
}

impl Validator for ReplHelper {
    fn validate(&self, ctx: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        let input = ctx.input();
        Ok(
            if input.trim_start().starts_with(':') || is_complete(input) {
                ValidationResult::Valid(None)
            } else {
                ValidationResult::Incomplete
            },
        )
    }
}

impl Helper for ReplHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    fn function(module: Option<&str>, name: &str, params: &[&str]) -> FunctionDoc {
        FunctionDoc {
            module: module.map(str::to_string),
            name: name.to_string(),
            params: params
                .iter()
                .map(|p| (p.to_string(), Some("String".to_string())))
                .collect(),
            returns: Some("String".to_string()),
            doc: String::new(),
            native: true,
        }
    }

    fn helper() -> ReplHelper {
        let mut helper = ReplHelper::new(false);
        helper.vocabulary = Vocabulary {
            functions: vec![
                function(None, "sleep", &["ms"]),
                function(Some("env"), "flag", &["name"]),
                function(Some("env"), "get", &["name"]),
                function(Some("env"), "get", &["name", "default"]),
                function(Some("docker"), "logs", &["name"]),
                function(Some("docker"), "logs", &["name", "options"]),
                function(
                    Some("caddy"),
                    "weights",
                    &["route_id", "weights", "options"],
                ),
                function(Some("health"), "all", &["checks"]),
                function(Some("stack"), "up", &["cfg", "options"]),
            ],
            runbooks: vec!["doctor".into(), "deploy".into()],
            stdlib: vec!["table".into()],
            variables: vec!["envy".into()],
        };
        helper
    }

    fn replacements(before: &str) -> Vec<String> {
        helper()
            .candidates(before)
            .1
            .into_iter()
            .map(|p| p.replacement)
            .collect()
    }

    #[test]
    fn completion() {
        assert_eq!(replacements("let x = env::g"), vec!["env::get"]);
        assert_eq!(replacements("sle"), vec!["sleep"]);
        assert_eq!(replacements("en"), vec!["env::", "envy"]);
        assert_eq!(replacements(":run do"), vec!["doctor"]);
        assert_eq!(replacements(":ru"), vec![":runbooks", ":run "]);
        assert_eq!(replacements("import \"ta"), vec!["table"]);
        assert_eq!(replacements(":help env::f"), vec!["env::flag"]);
    }

    #[test]
    fn option_keys_inside_the_map_of_a_call() {
        // From the table docker::logs checks its map with, in its order.
        assert_eq!(replacements("docker::logs(\"api\", #{fo"), vec!["follow"]);
        assert_eq!(
            replacements("docker::logs(\"api\", #{"),
            vec![
                "tail",
                "since",
                "follow",
                "timeout",
                "timestamps",
                "to",
                "append",
                "prefix"
            ]
        );
        // A key the map has is not offered again.
        assert_eq!(
            replacements("docker::logs(\"api\", #{timeout: 5, \"to\": \"f\", t"),
            vec!["tail", "timestamps"]
        );
        let (start, _) = helper().candidates("docker::logs(\"api\", #{follow: true, ta");
        assert_eq!(start, "docker::logs(\"api\", #{follow: true, ".len());
        // Only the argument that is the option map: caddy::weights' first map is the split.
        assert_eq!(
            replacements("caddy::weights(\"p\", #{"),
            Vec::<String>::new()
        );
        assert_eq!(
            replacements("caddy::weights(\"p\", #{\"a:1\": 5}, #{"),
            vec!["check", "check_timeout"]
        );
        // The checks of a list.
        assert_eq!(
            replacements("health::all([#{http: \"http://a\", st"),
            vec!["status"]
        );
        // At a value, ordinary completion; a function without a table offers no keys.
        assert_eq!(
            replacements("docker::logs(\"api\", #{follow: en"),
            vec!["env::", "envy"]
        );
        assert_eq!(replacements("stack::up(cfg, #{en"), vec!["env::", "envy"]);
    }

    #[test]
    fn hints() {
        let helper = helper();
        let hint = helper.hint_for("env::g").unwrap();
        assert_eq!(
            hint.display,
            "et(name: String) -> String | (name: String, default: String) -> String"
        );
        assert_eq!(hint.completion.as_deref(), Some("et"));
        let hint = helper.hint_for("env::flag(\"X\"").unwrap();
        assert_eq!(hint.display, "  env::flag(name: String) -> String");
        assert!(helper.hint_for("nothing(").is_none());
        let hint = helper.hint_for("env::flag(nam").unwrap();
        assert_eq!(hint.display, "  env::flag(name: String) -> String");
        assert!(helper.hint_for("env::").is_none());
    }
}
