//! The rendering of script errors as `path:line:col: message` followed by the
//! source line and a caret, the way `just` and `rustc` show them.
//!
//! Rhai reports an error inside a called function as a chain of `ErrorInFunctionCall` wrappers,
//! each naming the function, the file it lives in and where it was called. [`Diagnostic`] unwinds
//! that chain so the message points at the innermost failing line (even inside a stdlib module)
//! and lists the calls that led there, outermost last.

use std::{fmt::Write as _, sync::Arc};

use rhai::{EvalAltResult, ParseError, Position};

use crate::{engine::sources::SourceMap, exit, journal::lock::LockError};

/// An error that ends a command, with the exit code it maps to.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Usage error: bad arguments, unknown runbook. Exit 2.
    #[error("error: {0}")]
    Usage(String),
    /// One or more scripts failed to compile; already rendered. Exit 2.
    #[error("{0}")]
    Compile(String),
    /// The runbook failed at run time; already rendered. Exit 1.
    #[error("{0}")]
    Runtime(String),
    /// The run was stopped by a signal or by `--timeout`.
    #[error("{message}")]
    Stopped { message: String, code: i32 },
    /// Any other error from the host (I/O, configuration). Exit 1.
    #[error("error: {0:#}")]
    Other(#[from] anyhow::Error),
}

impl Failure {
    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Usage(_) | Failure::Compile(_) => exit::USAGE,
            Failure::Runtime(_) | Failure::Other(_) => exit::FAILED,
            Failure::Stopped { code, .. } => *code,
        }
    }

    /// A run that could not take the lock: stopped while it waited (130, 124), or failed naming
    /// the holder.
    pub fn of_lock(error: LockError) -> Failure {
        match error {
            LockError::Stopped(reason) => Failure::Stopped {
                message: format!("error: {error}"),
                code: reason.exit_code(),
            },
            other => Failure::Other(other.into()),
        }
    }
}

/// A place in a script: which file, which line and column (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub source: String,
    pub line: usize,
    pub column: usize,
}

impl Location {
    pub fn new(source: &str, position: Position) -> Option<Location> {
        Some(Location {
            source: source.to_string(),
            line: position.line()?,
            column: position.position().unwrap_or(1).max(1),
        })
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.source, self.line, self.column)
    }
}

/// One step of the call chain that led to an error: function `name` was called at `call_site`.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The function called; empty for an `import`.
    pub function: String,
    pub call_site: Location,
}

/// An error unwound from Rhai's nesting into a location, a message and a call chain.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub message: String,
    /// The script the error happened in, for errors without a precise location.
    pub source: String,
    pub location: Option<Location>,
    /// Innermost call first.
    pub frames: Box<[Frame]>,
    /// What to do about it, for errors a newcomer meets (see [`super::hints`]). Boxed: most
    /// diagnostics have none, and every compile result carries the field.
    pub help: Option<Box<str>>,
}

impl Diagnostic {
    /// A compile error in `source`.
    pub fn from_parse(source: &str, error: &ParseError) -> Diagnostic {
        Diagnostic {
            message: format!("syntax error: {}", error.err_type()),
            source: source.to_string(),
            location: Location::new(source, error.position()),
            frames: Box::default(),
            help: None,
        }
    }

    /// The error at the end of Rhai's chain of function-call and module wrappers.
    pub fn innermost(mut error: &EvalAltResult) -> &EvalAltResult {
        while let EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
        | EvalAltResult::ErrorInModule(_, inner, _) = error
        {
            error = inner;
        }
        error
    }

    /// A run-time error raised while running code from `source`.
    pub fn from_eval(source: &str, error: &EvalAltResult) -> Diagnostic {
        let mut frames = Vec::new();
        let mut current_source = source.to_string();
        let mut error = error;
        loop {
            match error {
                EvalAltResult::ErrorInFunctionCall(function, fn_source, inner, call_pos) => {
                    if let Some(call_site) = Location::new(&current_source, *call_pos) {
                        frames.push(Frame {
                            function: function.clone(),
                            call_site,
                        });
                    }
                    if !fn_source.is_empty() {
                        current_source = fn_source.clone();
                    }
                    error = inner;
                }
                EvalAltResult::ErrorInModule(module, inner, pos) => {
                    if let Some(call_site) = Location::new(&current_source, *pos) {
                        frames.push(Frame {
                            function: String::new(),
                            call_site,
                        });
                    }
                    if !module.is_empty() {
                        current_source = module.clone();
                    }
                    error = inner;
                }
                _ => break,
            }
        }
        frames.reverse();
        let message = match error {
            EvalAltResult::ErrorParsing(parse, _) => format!("syntax error: {parse}"),
            EvalAltResult::ErrorRuntime(value, _) => value.to_string(),
            EvalAltResult::ErrorTerminated(value, _) => value.to_string(),
            other => {
                // Rhai's Display appends " (line N, position M)"; the location is shown apart.
                let mut text = other.to_string();
                if let Some(at) = text.rfind(" (line ") {
                    text.truncate(at);
                }
                text
            }
        };
        let location = Location::new(&current_source, error.position());
        Diagnostic {
            message,
            source: current_source,
            location,
            frames: frames.into(),
            help: None,
        }
    }

    /// Renders the diagnostic with the offending source line and a caret under the column.
    pub fn render(&self, sources: &SourceMap) -> String {
        let mut out = String::new();
        match &self.location {
            Some(location) => {
                let _ = writeln!(out, "{location}: {}", self.message);
                snippet(&mut out, sources.get(&location.source), location);
            }
            None => {
                let _ = writeln!(out, "{}: {}", self.source, self.message);
            }
        }
        for frame in &self.frames {
            let _ = match frame.function.as_str() {
                "" => writeln!(out, "  = imported from {}", frame.call_site),
                function => writeln!(out, "  = in `{function}`, called from {}", frame.call_site),
            };
        }
        if let Some(help) = &self.help {
            let _ = writeln!(out, "  = help: {help}");
        }
        out
    }
}

fn snippet(out: &mut String, text: Option<Arc<str>>, location: &Location) {
    let Some(line) = text
        .as_deref()
        .and_then(|text| text.lines().nth(location.line - 1))
    else {
        return;
    };
    let number = location.line.to_string();
    let gutter = " ".repeat(number.len());
    // Keep tabs as tabs so the caret stays under the right character.
    let pad: String = line
        .chars()
        .take(location.column.saturating_sub(1))
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    let _ = writeln!(out, "{gutter} |");
    let _ = writeln!(out, "{number} | {line}");
    let _ = writeln!(out, "{gutter} | {pad}^");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caret_sits_under_the_column() {
        let sources = SourceMap::default();
        sources.insert("a.rhai", "let x = 1;\n  boom();\n");
        let diagnostic = Diagnostic {
            message: "Function not found: boom ()".into(),
            source: "a.rhai".into(),
            location: Some(Location {
                source: "a.rhai".into(),
                line: 2,
                column: 3,
            }),
            frames: Box::default(),
            help: None,
        };
        assert_eq!(
            diagnostic.render(&sources),
            "a.rhai:2:3: Function not found: boom ()\n  |\n2 |   boom();\n  |   ^\n"
        );
    }
}
