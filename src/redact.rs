//! Secret redaction. Every value registered here is replaced by `***` in everything cutover
//! writes: terminal, log lines, the journal, error messages, subprocess output. Values come from
//! `secret::get` and from any variable whose name looks secret (`*PASSWORD*`, `*SECRET*`,
//! `*TOKEN*`, `*KEY*`), wherever it was read: the process environment or a `.env` file.

use std::{borrow::Cow, sync::RwLock};

/// What stands in for a secret in output.
pub const MASK: &str = "***";

/// Values shorter than this are not masked: masking `1` or `yes` everywhere would garble every
/// line while protecting nothing worth the name.
pub const MIN_SECRET_LEN: usize = 4;

/// True for variable names whose values must never be shown.
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["PASSWORD", "SECRET", "TOKEN", "KEY"]
        .iter()
        .any(|word| upper.contains(word))
}

/// `text` with every escaped occurrence of `secret` masked, or `None` if there is none.
fn replace_escaped(text: &str, secret: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let (mut masked, mut copied, mut at) = (String::new(), 0, 0);
    while at < bytes.len() {
        match text
            .is_char_boundary(at)
            .then(|| match_escaped(bytes, at, secret.as_bytes()))
            .flatten()
        {
            Some(end) => {
                masked.push_str(&text[copied..at]);
                masked.push_str(MASK);
                (copied, at) = (end, end);
            }
            None => at += 1,
        }
    }
    (copied > 0).then(|| masked + &text[copied..])
}

/// Where an occurrence of `secret` starting at `start` ends, when every `"` in it may be
/// preceded by backslashes and every run of `\` may be any longer run: the secret escaped into
/// JSON strings any number of times.
fn match_escaped(text: &[u8], start: usize, secret: &[u8]) -> Option<usize> {
    let mut at = start;
    let mut wanted = secret.iter().peekable();
    while let Some(&byte) = wanted.next() {
        let run = text[at..].iter().take_while(|&&b| b == b'\\').count();
        match byte {
            b'\\' => {
                while wanted.peek() == Some(&&b'\\') {
                    wanted.next();
                }
                if run == 0 {
                    return None;
                }
                at += run;
            }
            b'"' if text.get(at + run) == Some(&b'"') => at += run + 1,
            _ if text.get(at) == Some(&byte) => at += 1,
            _ => return None,
        }
    }
    Some(at)
}

/// `text` as it appears between the quotes of a JSON string.
fn json_escaped(text: &str) -> String {
    let quoted = serde_json::to_string(text).unwrap_or_default();
    quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(text)
        .to_string()
}

/// The set of secret values known to this process.
#[derive(Debug, Default)]
pub struct Redactor {
    /// Longest first, so a secret that contains another is masked whole.
    secrets: RwLock<Vec<String>>,
}

impl Redactor {
    /// Registers `value` for masking, with the forms it takes in output: escaped inside a JSON
    /// string (a tab or a newline as `\t`, `\n`), and line by line for a value spanning lines (a
    /// key file printed by a program, whose output is logged a line at a time). Quotes and
    /// backslashes are matched however many times they were escaped: see [`Redactor::redact`].
    pub fn add(&self, value: &str) {
        let mut forms = vec![value.to_string(), json_escaped(value)];
        if value.contains('\n') {
            forms.extend(value.lines().map(|line| line.trim().to_string()));
        }
        let mut secrets = self.secrets.write().unwrap();
        for form in forms {
            if form.len() >= MIN_SECRET_LEN && !secrets.contains(&form) {
                secrets.push(form);
            }
        }
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// Registers the value of `name` if the name looks secret.
    pub fn add_if_secret_name(&self, name: &str, value: &str) {
        if is_secret_name(name) {
            self.add(value);
        }
    }

    /// Registers every secret-looking variable of the process environment.
    pub fn add_process_environment(&self) {
        for (name, value) in std::env::vars_os() {
            if let (Some(name), Some(value)) = (name.to_str(), value.to_str()) {
                self.add_if_secret_name(name, value);
            }
        }
    }

    /// `text` with every registered secret replaced by [`MASK`]. A secret with `"` or `\` in it
    /// is also found escaped, any number of times: a JSON body echoed inside a JSON answer,
    /// logged as a JSON line, puts several backslashes before each of them.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let secrets = self.secrets.read().unwrap();
        let mut text = Cow::Borrowed(text);
        for secret in secrets.iter() {
            if text.contains(secret.as_str()) {
                text = Cow::Owned(text.replace(secret.as_str(), MASK));
            }
            if secret.contains(['"', '\\'])
                && let Some(masked) = replace_escaped(&text, secret)
            {
                text = Cow::Owned(masked);
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_longest_first() {
        let redactor = Redactor::default();
        redactor.add("hunter2");
        redactor.add("hunter2-extended");
        assert_eq!(
            redactor.redact("a hunter2-extended b hunter2"),
            "a *** b ***"
        );
    }

    #[test]
    fn json_escaped_and_multiline_forms_are_masked() {
        let redactor = Redactor::default();
        redactor.add("pa\"ss\\word");
        assert_eq!(
            redactor.redact(r#"{"message":"pw=pa\"ss\\word"}"#),
            r#"{"message":"pw=***"}"#
        );
        assert_eq!(
            redactor.redact(r#"{"body":"{\"pw\":\"pa\\\"ss\\\\word\"}"}"#),
            r#"{"body":"{\"pw\":\"***\"}"}"#
        );
        assert_eq!(
            redactor.redact(r#"x pa\\\\\\\"ss\\\\\\\\word y pa"ss\word"#),
            "x *** y ***"
        );
        assert_eq!(redactor.redact(r#"pa"ss word"#), r#"pa"ss word"#);
        redactor.add("-----BEGIN-----\nAAAAsecretline\n-----END-----");
        assert_eq!(redactor.redact("got AAAAsecretline"), "got ***");
    }

    #[test]
    fn secret_names() {
        assert!(is_secret_name("POSTGRES_PASSWORD"));
        assert!(is_secret_name("cloudflare_api_token"));
        assert!(is_secret_name("JWT_SECRET"));
        assert!(is_secret_name("API_KEY"));
        assert!(!is_secret_name("BLUE_TAG"));
    }

    #[test]
    fn short_values_are_not_masked() {
        let redactor = Redactor::default();
        redactor.add("yes");
        assert_eq!(redactor.redact("yes"), "yes");
    }
}
