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

/// The set of secret values known to this process.
#[derive(Debug, Default)]
pub struct Redactor {
    /// Longest first, so a secret that contains another is masked whole.
    secrets: RwLock<Vec<String>>,
}

impl Redactor {
    /// Registers `value` for masking, with the forms it takes in output: escaped inside a JSON
    /// string (JSON logs, the journal), and line by line for a value spanning lines (a key file
    /// printed by a program, whose output is logged a line at a time).
    pub fn add(&self, value: &str) {
        let mut forms = vec![value.to_string()];
        if let Ok(quoted) = serde_json::to_string(value) {
            forms.push(quoted[1..quoted.len() - 1].to_string());
        }
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

    /// `text` with every registered secret replaced by [`MASK`].
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let secrets = self.secrets.read().unwrap();
        if !secrets.iter().any(|s| text.contains(s.as_str())) {
            return Cow::Borrowed(text);
        }
        let mut text = text.to_string();
        for secret in secrets.iter() {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), MASK);
            }
        }
        Cow::Owned(text)
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
