//! A runbook: a Rhai script whose leading `//!` lines are its help (the first line is the summary
//! `cutover list` shows) and whose `fn main(...)` parameters are its positional arguments.
//! Overloads of `main` with more parameters make the extra arguments optional. A header line
//! `//! readonly` marks a runbook that only reads, so it runs without taking the lock. A header
//! line `//! kind: promotion` files the run's journal entries under that kind (`cutover history
//! --kind promotion`); without it they are filed under the runbook's name.

use rhai::{AST, CallFnOptions, Dynamic, EvalAltResult, Scope};

use crate::{
    engine::ScriptEngine,
    engine::catalog::{Catalog, CatalogError, Origin, Script},
    engine::error::Diagnostic,
};

/// The help a runbook carries in its leading `//!` lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    /// Help lines without the `//!` marker and without the `readonly` marker line.
    pub lines: Vec<String>,
    /// True when the header has a `//! readonly` line.
    pub readonly: bool,
    /// The journal kind from a `//! kind: NAME` line.
    pub kind: Option<String>,
}

impl Header {
    pub fn parse(text: &str) -> Header {
        let mut header = Header::default();
        for line in text.lines().map(str::trim_start) {
            let Some(help) = line.strip_prefix("//!") else {
                break;
            };
            let help = help.strip_prefix(' ').unwrap_or(help).trim_end();
            if help == "readonly" {
                header.readonly = true;
            } else if let Some(kind) = help.strip_prefix("kind:").map(str::trim)
                && !kind.is_empty()
            {
                header.kind = Some(kind.to_string());
            } else {
                header.lines.push(help.to_string());
            }
        }
        while header.lines.last().is_some_and(|l| l.is_empty()) {
            header.lines.pop();
        }
        header
    }

    /// The first help line, or a placeholder.
    pub fn summary(&self) -> &str {
        self.lines
            .first()
            .map(String::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("(no summary)")
    }
}

/// A compiled runbook ready to run.
pub struct Runbook {
    pub script: Script,
    pub header: Header,
    pub ast: AST,
}

/// Arguments that fit no overload of `main`.
#[derive(Debug, thiserror::Error)]
#[error("{runbook} takes {expected}, got {got}\n{usage}")]
pub struct ArityError {
    pub runbook: String,
    pub expected: String,
    pub got: usize,
    pub usage: String,
}

impl Runbook {
    pub fn compile(engine: &ScriptEngine, script: Script) -> Result<Runbook, Diagnostic> {
        let ast = engine.compile(&script)?;
        let header = Header::parse(&script.text);
        Ok(Runbook {
            script,
            header,
            ast,
        })
    }

    /// Parameter lists of every `main`, shortest first. Empty when the runbook has no `main`
    /// (then its top-level statements are the procedure).
    pub fn signatures(&self) -> Vec<Vec<String>> {
        let mut signatures: Vec<Vec<String>> = self
            .ast
            .iter_functions()
            .filter(|f| f.name == "main")
            .map(|f| f.params.iter().map(|p| p.to_string()).collect())
            .collect();
        signatures.sort_by_key(Vec::len);
        signatures
    }

    /// `usage: cutover NAME <env> [tag]`: required parameters in angle brackets, optional ones
    /// (present only in longer overloads) in square brackets.
    pub fn usage(&self) -> String {
        let signatures = self.signatures();
        let shortest = signatures.first().map_or(0, Vec::len);
        let mut words = vec![format!("usage: cutover {}", self.script.name)];
        if let Some(longest) = signatures.last() {
            for (i, param) in longest.iter().enumerate() {
                words.push(if i < shortest {
                    format!("<{param}>")
                } else {
                    format!("[{param}]")
                });
            }
        }
        words.join(" ")
    }

    /// The full help: usage, then the header lines.
    pub fn help(&self) -> String {
        let mut text = self.usage();
        text.push('\n');
        if !self.header.lines.is_empty() {
            text.push('\n');
            for line in &self.header.lines {
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }

    /// Checks that some `main` takes `count` arguments.
    pub fn check_arity(&self, count: usize) -> Result<(), ArityError> {
        let signatures = self.signatures();
        let arities: Vec<usize> = signatures.iter().map(Vec::len).collect();
        let fits = if arities.is_empty() {
            count == 0
        } else {
            arities.contains(&count)
        };
        if fits {
            return Ok(());
        }
        let plural = |n: usize| if n == 1 { "argument" } else { "arguments" };
        let expected = match arities.as_slice() {
            [] => "no arguments".to_string(),
            [n] => format!("{n} {}", plural(*n)),
            several => {
                let (last, rest) = several.split_last().unwrap();
                let rest: Vec<String> = rest.iter().map(usize::to_string).collect();
                format!("{} or {last} {}", rest.join(", "), plural(*last))
            }
        };
        Err(ArityError {
            runbook: self.script.name.clone(),
            expected,
            got: count,
            usage: self.usage(),
        })
    }

    /// Runs the top-level statements (imports, constants), then `main(args...)` if there is one.
    pub fn run(
        &self,
        engine: &ScriptEngine,
        scope: &mut Scope,
        args: &[String],
    ) -> Result<Dynamic, Box<EvalAltResult>> {
        if self.signatures().is_empty() {
            return engine.rhai.eval_ast_with_scope::<Dynamic>(scope, &self.ast);
        }
        let args: Vec<Dynamic> = args.iter().map(|a| Dynamic::from(a.clone())).collect();
        let options = CallFnOptions::new().eval_ast(true).rewind_scope(false);
        engine
            .rhai
            .call_fn_with_options::<Dynamic>(options, scope, &self.ast, "main", args)
    }
}

/// `cutover list` and the REPL's `:runbooks`: each runbook's name, summary and origin, one a line,
/// in columns.
pub fn table(catalog: &Catalog) -> Result<String, CatalogError> {
    let scripts = catalog.list()?;
    let rows: Vec<(&str, Header, String)> = scripts
        .iter()
        .map(|s| (s.name.as_str(), Header::parse(&s.text), origin(s)))
        .collect();
    let name_width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let summary_width = rows
        .iter()
        .map(|r| r.1.summary().chars().count())
        .max()
        .unwrap_or(0);
    let mut table = String::new();
    for (name, header, origin) in &rows {
        table.push_str(&format!(
            "{name:name_width$}  {:summary_width$}  [{origin}]\n",
            header.summary()
        ));
    }
    Ok(table)
}

fn origin(script: &Script) -> String {
    match &script.origin {
        Origin::Embedded => "embedded".to_string(),
        Origin::Disk(path) => path.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lines_and_readonly() {
        let header = Header::parse(
            "//! Show the stack.\n//!\n//! readonly\n//! More.\n\nfn main() {}\n//! not help",
        );
        assert_eq!(header.lines, vec!["Show the stack.", "", "More."]);
        assert!(header.readonly);
        assert_eq!(header.kind, None);
        assert_eq!(header.summary(), "Show the stack.");
        let header = Header::parse("//! Promote.\n//! kind: promotion\n");
        assert_eq!(header.kind.as_deref(), Some("promotion"));
        assert_eq!(header.lines, vec!["Promote."]);
        assert_eq!(Header::parse("fn main() {}").summary(), "(no summary)");
    }
}
