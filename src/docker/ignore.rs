//! `.dockerignore`, read as the docker CLI reads it: one pattern a line (`#` comments, blank
//! lines skipped), `*` and `?` within one path segment, `[…]` classes, `**` across any number
//! of directories, `!` re-including what an earlier line excluded; the last matching line
//! decides, and a pattern that matches a directory excludes everything under it. The
//! Dockerfile and `.dockerignore` itself are always sent, as the CLI does.

use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Char(char),
    /// `*`: any run of characters but `/`.
    Star,
    /// `?`: one character but `/`.
    One,
    /// `[a-z]`, `[^0-9]`: (ranges, negated).
    Class(Vec<(char, char)>, bool),
    /// `**/` (or `**` before more pattern): any number of whole directories, even none.
    Dirs,
    /// `**` at the end: anything at all.
    Rest,
}

#[derive(Debug, Clone)]
struct Rule {
    tokens: Vec<Token>,
    exclude: bool,
}

/// The rules of one build context.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    rules: Vec<Rule>,
}

impl Ignore {
    /// Reads `dir/.dockerignore`; no file means nothing is ignored.
    pub fn load(dir: &Path) -> std::io::Result<Ignore> {
        match std::fs::read_to_string(dir.join(".dockerignore")) {
            Ok(text) => Ok(Ignore::parse(&text)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Ignore::default()),
            Err(error) => Err(error),
        }
    }

    pub fn parse(text: &str) -> Ignore {
        let mut rules = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exclude, pattern) = match line.strip_prefix('!') {
                Some(rest) => (false, rest.trim()),
                None => (true, line),
            };
            let pattern = clean(pattern);
            if pattern.is_empty() {
                continue;
            }
            rules.push(Rule {
                tokens: compile(&pattern),
                exclude,
            });
        }
        Ignore { rules }
    }

    /// True when a `!` line could bring back something under an excluded directory, so the
    /// walk must look inside it.
    pub fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|r| !r.exclude)
    }

    /// Whether `path` (relative to the context, `/`-separated) is left out.
    pub fn excluded(&self, path: &str) -> bool {
        let mut excluded = false;
        for rule in &self.rules {
            if rule.exclude == excluded {
                continue;
            }
            // A pattern matching the path or any directory above it.
            let mut matched = matches(&rule.tokens, path);
            let mut end = 0;
            while !matched && let Some(i) = path[end..].find('/') {
                end += i;
                matched = matches(&rule.tokens, &path[..end]);
                end += 1;
            }
            if matched {
                excluded = rule.exclude;
            }
        }
        excluded
    }
}

/// `./a//b/` as `a/b`, `/a` as `a` (patterns are relative to the context).
fn clean(pattern: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in pattern.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

fn compile(pattern: &str) -> Vec<Token> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' if chars.get(i + 1) == Some(&'*') => {
                i += 2;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                tokens.push(if i >= chars.len() {
                    Token::Rest
                } else {
                    Token::Dirs
                });
                continue;
            }
            '*' => tokens.push(Token::Star),
            '?' => tokens.push(Token::One),
            '\\' if i + 1 < chars.len() => {
                i += 1;
                tokens.push(Token::Char(chars[i]));
            }
            '[' => {
                let mut j = i + 1;
                let negated = matches!(chars.get(j), Some('^' | '!'));
                if negated {
                    j += 1;
                }
                let mut ranges = Vec::new();
                while j < chars.len() && chars[j] != ']' {
                    let mut low = chars[j];
                    if low == '\\' && j + 1 < chars.len() {
                        j += 1;
                        low = chars[j];
                    }
                    if chars.get(j + 1) == Some(&'-') && j + 2 < chars.len() && chars[j + 2] != ']'
                    {
                        ranges.push((low, chars[j + 2]));
                        j += 3;
                    } else {
                        ranges.push((low, low));
                        j += 1;
                    }
                }
                if j >= chars.len() {
                    // No closing bracket: a literal `[`.
                    tokens.push(Token::Char('['));
                } else {
                    tokens.push(Token::Class(ranges, negated));
                    i = j;
                }
            }
            c => tokens.push(Token::Char(c)),
        }
        i += 1;
    }
    tokens
}

fn matches(tokens: &[Token], text: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    match_at(tokens, &chars)
}

fn match_at(tokens: &[Token], text: &[char]) -> bool {
    let Some((first, rest)) = tokens.split_first() else {
        return text.is_empty();
    };
    match first {
        Token::Char(c) => text.first() == Some(c) && match_at(rest, &text[1..]),
        Token::One => text.first().is_some_and(|c| *c != '/') && match_at(rest, &text[1..]),
        Token::Class(ranges, negated) => {
            text.first().is_some_and(|c| {
                let inside = ranges.iter().any(|(low, high)| low <= c && c <= high);
                *c != '/' && inside != *negated
            }) && match_at(rest, &text[1..])
        }
        Token::Star => {
            for skip in 0..=text.len() {
                if match_at(rest, &text[skip..]) {
                    return true;
                }
                if text.get(skip) == Some(&'/') {
                    break;
                }
            }
            false
        }
        Token::Rest => true,
        Token::Dirs => {
            // Zero directories, or up to any `/`.
            if match_at(rest, text) {
                return true;
            }
            (0..text.len()).any(|i| text[i] == '/' && match_at(rest, &text[i + 1..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_as_the_docker_cli_reads_them() {
        let ignore = Ignore::parse(
            "# build output\ntarget\n*.log\n/secrets/*.key\n**/node_modules\ndocs/**\n!docs/keep.md\ntmp?\n[ab].txt\n",
        );
        for (path, excluded) in [
            ("target", true),
            ("target/debug/app", true),
            ("src/target", false),
            ("app.log", true),
            ("logs/app.log", false),
            ("secrets/api.key", true),
            ("secrets/api.pub", false),
            ("node_modules/x/index.js", true),
            ("web/node_modules/y", true),
            ("docs/guide.md", true),
            ("docs/keep.md", false),
            ("tmp1", true),
            ("tmp12", false),
            ("a.txt", true),
            ("c.txt", false),
            ("src/main.rs", false),
        ] {
            assert_eq!(ignore.excluded(path), excluded, "{path}");
        }
        assert!(ignore.has_exceptions());
        assert!(!Ignore::parse("*\n").has_exceptions());
        assert!(Ignore::parse("*\n").excluded("Dockerfile"));
    }
}
