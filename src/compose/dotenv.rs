//! `.env` files read the way docker compose reads them, so the stack's `.env.blue-green` means the
//! same to cutover as to compose: `KEY=value`, optional `export`, `#` comments (a `#` after
//! whitespace ends an unquoted value), single quotes literal, double quotes with `\n`-style
//! escapes and interpolation, values spanning lines inside quotes, and `${VAR}` /
//! `${VAR:-default}` interpolation from the process environment and earlier lines.
//!
//! dotenvy parses most of this but not compose's `${VAR:-default}` forms; the interpolation rules
//! live in one place ([`crate::compose::interpolate`](mod@crate::compose::interpolate)) for both `.env` and compose files.

use std::path::{Path, PathBuf};

use crate::compose::interpolate::interpolate;

/// A malformed `.env` file: what is wrong and on which line.
#[derive(Debug, thiserror::Error)]
pub enum DotenvError {
    #[error("{path}:{line}: {message}")]
    Syntax {
        path: String,
        line: usize,
        message: String,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Variables from one or more `.env` files, in the order they were defined.
#[derive(Debug, Clone, Default)]
pub struct EnvFile {
    pub vars: Vec<(String, String)>,
}

impl EnvFile {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Adds `other`'s variables; a later definition of a name replaces an earlier one.
    pub fn merge(&mut self, other: EnvFile) {
        for (name, value) in other.vars {
            self.vars.retain(|(n, _)| *n != name);
            self.vars.push((name, value));
        }
    }

    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<EnvFile, DotenvError> {
        let text = std::fs::read_to_string(path).map_err(|source| DotenvError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        parse(&text, &path.display().to_string())
    }
}

/// Parses `.env` text; `path` names the file in errors. `${VAR}` references see the process
/// environment first (as compose does), then variables defined earlier in the file.
pub fn parse(text: &str, path: &str) -> Result<EnvFile, DotenvError> {
    Ok(parse_with_spans(text, path)?.0)
}

/// Each entry's name and the bytes its definition spans, for [`update`].
type Spans = Vec<(String, std::ops::Range<usize>)>;

fn parse_with_spans(text: &str, path: &str) -> Result<(EnvFile, Spans), DotenvError> {
    let mut parser = Parser {
        text,
        pos: 0,
        path,
        file: EnvFile::default(),
        spans: Vec::new(),
    };
    parser.entries()?;
    Ok((parser.file, parser.spans))
}

/// `text` (the content of `.env` file `path`) with each of `vars` set: a variable already
/// defined keeps its place (its last definition is rewritten), a new one is appended; comments
/// and every other line stay as they are. Values are quoted so they read back unchanged.
pub fn update(text: &str, path: &str, vars: &[(String, String)]) -> Result<String, DotenvError> {
    let (_, spans) = parse_with_spans(text, path)?;
    let mut edits: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    let mut appended = String::new();
    for (name, value) in vars {
        let line = definition(name, value);
        match spans.iter().rev().find(|(n, _)| n == name) {
            Some((_, span)) => edits.push((span.clone(), line)),
            None => {
                appended.push_str(&line);
                appended.push('\n');
            }
        }
    }
    edits.sort_by_key(|(span, _)| std::cmp::Reverse(span.start));
    let mut text = text.to_string();
    for (span, line) in edits {
        text.replace_range(span, &line);
    }
    if !appended.is_empty() && !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&appended);
    Ok(text)
}

/// `NAME=value`, quoted when needed: bare for plain words, single quotes (literal) when the
/// value has no `'` or line break, else double quotes with escapes (`$` doubled, so nothing
/// in it is interpolated when read back).
fn definition(name: &str, value: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_./:@%+,-".contains(c);
    if value.chars().all(plain) {
        format!("{name}={value}")
    } else if !value.contains(['\'', '\n', '\r']) {
        format!("{name}='{value}'")
    } else {
        let escaped = value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
            .replace('\r', "\\r")
            .replace('$', "$$");
        format!("{name}=\"{escaped}\"")
    }
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    path: &'a str,
    file: EnvFile,
    spans: Spans,
}

impl Parser<'_> {
    fn line_at(&self, pos: usize) -> usize {
        self.text[..pos].matches('\n').count() + 1
    }

    fn error(&self, pos: usize, message: impl Into<String>) -> DotenvError {
        DotenvError::Syntax {
            path: self.path.to_string(),
            line: self.line_at(pos),
            message: message.into(),
        }
    }

    fn rest(&self) -> &str {
        &self.text[self.pos..]
    }

    fn skip_blanks(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start_matches([' ', '\t']).len();
    }

    fn skip_to_next_line(&mut self) {
        self.pos = self
            .rest()
            .find('\n')
            .map_or(self.text.len(), |n| self.pos + n + 1);
    }

    fn entries(&mut self) -> Result<(), DotenvError> {
        while self.pos < self.text.len() {
            self.skip_blanks();
            match self.rest().chars().next() {
                None => break,
                Some('\n' | '\r') => self.pos += 1,
                Some('#') => self.skip_to_next_line(),
                Some(_) => self.entry()?,
            }
        }
        Ok(())
    }

    fn entry(&mut self) -> Result<(), DotenvError> {
        let start = self.pos;
        if let Some(after) = self.rest().strip_prefix("export ") {
            self.pos = self.text.len() - after.len();
            self.skip_blanks();
        }
        let name_len = self
            .rest()
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
            .unwrap_or(self.rest().len());
        let name = self.rest()[..name_len].to_string();
        if name.is_empty() || name.as_bytes()[0].is_ascii_digit() {
            let line = self.rest().lines().next().unwrap_or("");
            return Err(self.error(start, format!("expected NAME=value, found `{line}`")));
        }
        self.pos += name_len;
        self.skip_blanks();
        if !self.rest().starts_with('=') {
            return Err(self.error(start, format!("expected `=` after `{name}`")));
        }
        self.pos += 1;
        self.skip_blanks();
        let value = match self.rest().chars().next() {
            Some('\'') => self.quoted('\'')?,
            Some('"') => {
                let raw = self.quoted('"')?;
                self.interpolate(&raw, start)?
            }
            _ => {
                let line_end = self.rest().find('\n').unwrap_or(self.rest().len());
                let line = &self.rest()[..line_end];
                let value_end = comment_start(line).unwrap_or(line.len());
                let raw = line[..value_end].trim().to_string();
                self.pos += line_end;
                self.interpolate(&raw, start)?
            }
        };
        self.file.vars.retain(|(n, _)| *n != name);
        self.spans.push((name.clone(), start..self.pos));
        self.file.vars.push((name, value));
        Ok(())
    }

    /// Reads a quoted value starting at the opening quote; leaves `pos` after the line.
    fn quoted(&mut self, quote: char) -> Result<String, DotenvError> {
        let start = self.pos;
        let mut value = String::new();
        let mut chars = self.rest().char_indices().skip(1);
        let end = loop {
            match chars.next() {
                None => return Err(self.error(start, format!("unterminated {quote}quoted value"))),
                Some((i, c)) if c == quote => break i,
                Some((_, '\\')) if quote == '"' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, 't')) => value.push('\t'),
                    Some((_, 'r')) => value.push('\r'),
                    Some((_, c)) => value.push(c),
                    None => return Err(self.error(start, "unterminated \"quoted value")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        self.pos += end + 1;
        let line_end = self.rest().find('\n').unwrap_or(self.rest().len());
        let trailing = self.rest()[..line_end].trim();
        if !trailing.is_empty() && !trailing.starts_with('#') {
            return Err(self.error(
                self.pos,
                format!("unexpected `{trailing}` after quoted value"),
            ));
        }
        self.pos += line_end;
        Ok(value)
    }

    fn interpolate(&self, raw: &str, at: usize) -> Result<String, DotenvError> {
        let lookup = |name: &str| {
            std::env::var(name)
                .ok()
                .or_else(|| self.file.get(name).map(str::to_string))
        };
        interpolate(raw, &lookup).map_err(|e| self.error(at, e.to_string()))
    }
}

/// Where an inline comment starts in an unquoted value: a `#` at the start or after whitespace.
fn comment_start(line: &str) -> Option<usize> {
    let bytes = line.as_bytes();
    (0..bytes.len()).find(|&i| bytes[i] == b'#' && (i == 0 || bytes[i - 1].is_ascii_whitespace()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(text: &str) -> Vec<(String, String)> {
        parse(text, ".env").unwrap().vars
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn compose_semantics() {
        let text = "# comment\nA=plain value # trailing\nexport B = 'single ${A}'\nC=\"double ${A}\\n\"\nD=${UNSET_CUTOVER_TEST_VAR:-fallback}\nE=x#notcomment\nF=\n";
        assert_eq!(
            vars(text),
            pairs(&[
                ("A", "plain value"),
                ("B", "single ${A}"),
                ("C", "double plain value\n"),
                ("D", "fallback"),
                ("E", "x#notcomment"),
                ("F", ""),
            ])
        );
    }

    #[test]
    fn multiline_quotes() {
        assert_eq!(
            vars("K=\"line1\nline2\"\nN=1"),
            pairs(&[("K", "line1\nline2"), ("N", "1")])
        );
    }

    #[test]
    fn update_keeps_comments_and_order() {
        let text = "# tags\nBLUE_TAG=v1 # live\nGREEN_TAG=\"v1\"\nNOTE='a\nb'\n";
        let vars = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect()
        };
        let updated = update(
            text,
            ".env",
            &vars(&[
                ("GREEN_TAG", "v2.0.1"),
                ("NEW", "it's $HOME\n"),
                ("NOTE", "x y"),
            ]),
        )
        .unwrap();
        assert_eq!(
            updated,
            "# tags\nBLUE_TAG=v1 # live\nGREEN_TAG=v2.0.1\nNOTE='x y'\nNEW=\"it's $$HOME\\n\"\n"
        );
        let read = parse(&updated, ".env").unwrap();
        assert_eq!(read.get("NEW"), Some("it's $HOME\n"));
        assert_eq!(read.get("NOTE"), Some("x y"));
        assert_eq!(update("", ".env", &vars(&[("A", "1")])).unwrap(), "A=1\n");
    }

    #[test]
    fn errors_name_the_line() {
        let error = parse("A=1\nnot a pair\n", "x.env").unwrap_err().to_string();
        assert_eq!(error, "x.env:2: expected `=` after `not`");
        let error = parse("A=1\nB=\"open\n", "x.env").unwrap_err().to_string();
        assert_eq!(error, "x.env:2: unterminated \"quoted value");
        let error = parse("A=${NOPE_CUTOVER:?must be set}", "x.env")
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "x.env:1: required variable NOPE_CUTOVER is missing a value: must be set"
        );
    }
}
