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

/// True for variable names whose values must never be shown. `*_FILE` names (compose's and the
/// official images' `POSTGRES_PASSWORD_FILE=/run/secrets/db`) hold the path of a file with the
/// secret, not the secret: masking the path would garble every mount and message naming it.
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    if upper.ends_with("_FILE") {
        return false;
    }
    ["PASSWORD", "SECRET", "TOKEN", "KEY"]
        .iter()
        .any(|word| upper.contains(word))
}

/// The credentials a URL carries, found however malformed the URL is (so they are masked before
/// a parse error could show them): the password of its user info, and the value of every query
/// parameter named like a secret (`password=`, `token=`, `api_key=`…), each as written and
/// percent-decoded.
pub fn url_credentials(url: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut push = |raw: &str| {
        if raw.is_empty() {
            return;
        }
        found.push(raw.to_string());
        let decoded = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
        if decoded != raw {
            found.push(decoded.into_owned());
        }
        let spaced = raw.replace('+', " ");
        if spaced != raw {
            found.push(
                percent_encoding::percent_decode_str(&spaced)
                    .decode_utf8_lossy()
                    .into_owned(),
            );
        }
    };
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[after_scheme..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    if let Some(at) = authority.rfind('@')
        && let Some(colon) = authority[..at].find(':')
    {
        push(&authority[colon + 1..at]);
    }
    if let Some(query_start) = url.find('?') {
        let query = &url[query_start + 1..];
        let query = &query[..query.find('#').unwrap_or(query.len())];
        for pair in query.split('&') {
            if let Some((name, value)) = pair.split_once('=') {
                let name = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
                if is_secret_name(&name)
                    || name.eq_ignore_ascii_case("pass")
                    || name.eq_ignore_ascii_case("pwd")
                {
                    push(value);
                }
            }
        }
    }
    found
}

/// The credentials of an `Authorization` header value: the whole value and the part after its
/// scheme (`Bearer X` → `X`), and for `Basic` the password inside it.
pub fn authorization_credentials(value: &str) -> Vec<String> {
    let mut found = vec![value.to_string()];
    if let Some((scheme, credentials)) = value.trim().split_once(char::is_whitespace) {
        let credentials = credentials.trim();
        found.push(credentials.to_string());
        if scheme.eq_ignore_ascii_case("basic")
            && let Some(decoded) = base64_decode(credentials)
            && let Ok(decoded) = String::from_utf8(decoded)
        {
            if let Some((_, password)) = decoded.split_once(':') {
                found.push(password.to_string());
            }
            found.push(decoded);
        }
    }
    found
}

/// Standard base64 (padding optional), or None.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for byte in text.trim_end_matches('=').bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(value);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    Some(out)
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

/// What the `url` crate (and so reqwest) escapes in a query, and in a path.
const URL_QUERY: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'\'');
const URL_PATH: &percent_encoding::AsciiSet = &URL_QUERY.add(b'?').add(b'`').add(b'{').add(b'}');

/// What a URL encoder escapes in user info: controls, space and the delimiters.
const URL_PART: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b':')
    .add(b';')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'@')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// `text` as Rust's (and Rhai's) debug form shows it inside quotes: `print([s])` escapes
/// control and invisible characters (`\t`, `\u{200b}`).
fn debug_escaped(text: &str) -> String {
    let quoted = format!("{text:?}");
    quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(text)
        .to_string()
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
        let mut forms = vec![value.to_string(), json_escaped(value), debug_escaped(value)];
        // URL-encoded, as a query, a path or user info would carry it.
        forms.push(
            percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC)
                .to_string(),
        );
        forms.push(url::form_urlencoded::byte_serialize(value.as_bytes()).collect());
        for set in [URL_QUERY, URL_PATH, URL_PART] {
            forms.push(percent_encoding::utf8_percent_encode(value, set).to_string());
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

    /// Registers the credentials `url` carries (see [`url_credentials`]).
    pub fn add_url(&self, url: &str) {
        for credential in url_credentials(url) {
            self.add(&credential);
        }
    }

    /// Registers the credentials of every URL (`scheme://…`) written in `text`: a command-line
    /// argument or a REPL line, before they are journaled as the run's arguments.
    pub fn add_urls_in(&self, text: &str) {
        let mut rest = text;
        while let Some(at) = rest.find("://") {
            let start = rest[..at]
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || "+-.".contains(c)))
                .map_or(0, |i| i + 1);
            let end = rest[at..]
                .find(|c: char| c.is_whitespace() || "\"'`<>".contains(c))
                .map_or(rest.len(), |i| at + i);
            self.add_url(&rest[start..end]);
            rest = &rest[end..];
        }
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

    /// Where to cut `text`, a line too long to log whole that is still arriving, so that each
    /// piece can be masked on its own: the returned length leaves no registered secret split
    /// (one that starts before the cut and ends after it), keeps in the rest whatever may be
    /// the start of a secret still arriving, and falls on a character boundary. 0 when no such
    /// cut exists yet (keep reading).
    pub fn safe_cut(&self, text: &[u8]) -> usize {
        let secrets = self.secrets.read().unwrap();
        let longest = secrets.iter().map(String::len).max().unwrap_or(0);
        let mut cut = text.len().saturating_sub(longest.saturating_sub(1));
        loop {
            while cut > 0 && cut < text.len() && (text[cut] & 0xC0) == 0x80 {
                cut -= 1;
            }
            let straddling = secrets.iter().filter_map(|secret| {
                let secret = secret.as_bytes();
                let from = cut.saturating_sub(secret.len() - 1);
                (from..cut).find(|&start| text[start..].starts_with(secret))
            });
            match straddling.min() {
                Some(start) if start < cut => cut = start,
                _ => return cut,
            }
        }
    }

    /// Where to start keeping the end of `text` from, at `start` or just after it: past any
    /// registered secret that `start` would cut in two (the kept end must not begin with the
    /// second half of one), on a character boundary.
    pub fn safe_start(&self, text: &[u8], start: usize) -> usize {
        let secrets = self.secrets.read().unwrap();
        let mut start = start.min(text.len());
        loop {
            while start < text.len() && (text[start] & 0xC0) == 0x80 {
                start += 1;
            }
            let past = secrets
                .iter()
                .filter_map(|secret| {
                    let secret = secret.as_bytes();
                    let from = start.saturating_sub(secret.len() - 1);
                    (from..start)
                        .find(|&at| text[at..].starts_with(secret))
                        .map(|at| at + secret.len())
                })
                .max();
            match past {
                Some(end) if end > start => start = end,
                _ => return start,
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
        assert!(!is_secret_name("POSTGRES_PASSWORD_FILE"));
    }

    #[test]
    fn escaped_and_encoded_forms_are_masked() {
        let redactor = Redactor::default();
        redactor.add("zero\u{200b}width\ttab");
        let shown = format!("{:?}", ["zero\u{200b}width\ttab"]);
        assert_eq!(redactor.redact(&shown), r#"["***"]"#);
        redactor.add("p@ss w/rd&x");
        for encoded in [
            "p%40ss%20w%2Frd%26x",
            "p%40ss+w%2Frd%26x",
            "p%40ss%20w%2Frd&x",
        ] {
            assert_eq!(
                redactor.redact(&format!("?a={encoded}")),
                "?a=***",
                "{encoded}"
            );
        }
    }

    #[test]
    fn urls_written_in_text_are_found() {
        let redactor = Redactor::default();
        redactor.add_urls_in(r#"let r = http::get("http://u:pw-in-line@h/x?token=tok-in-line"); `postgres://a:b-c-d@e`"#);
        assert_eq!(
            redactor.redact("pw-in-line tok-in-line b-c-d"),
            "*** *** ***"
        );
    }

    #[test]
    fn long_lines_are_cut_outside_secrets() {
        let redactor = Redactor::default();
        redactor.add("secret-value");
        let line = format!("{}secret-value tail", "x".repeat(100));
        // Wherever the line must be cut, the secret ends up whole on one side.
        for end in 100..line.len() {
            let text = &line.as_bytes()[..end];
            let cut = redactor.safe_cut(text);
            let (piece, rest) = text.split_at(cut);
            let piece = String::from_utf8_lossy(piece);
            assert!(
                !piece.contains("secret") || piece.contains("secret-value"),
                "{piece}"
            );
            assert!(cut <= 100 || cut >= 112, "{end}: {cut}");
            assert!(rest.len() < 2 * 12, "{end}");
        }
        assert_eq!(Redactor::default().safe_cut("é".repeat(10).as_bytes()), 20);
        redactor.add("ééé-long");
        let text = "aé".repeat(20);
        let cut = redactor.safe_cut(text.as_bytes());
        assert!(text.is_char_boundary(cut));
    }

    #[test]
    fn kept_ends_start_outside_secrets() {
        let redactor = Redactor::default();
        redactor.add("secret-value");
        let text = b"aaaasecret-valuebbbb";
        for start in 0..text.len() {
            let kept = &text[redactor.safe_start(text, start)..];
            let kept = String::from_utf8_lossy(kept);
            assert!(
                kept.contains("secret-value") || !kept.contains("value"),
                "{start}: {kept}"
            );
        }
        assert_eq!(redactor.safe_start(text, 6), 16);
        assert_eq!(redactor.safe_start(text, 4), 4);
    }

    #[test]
    fn credentials_of_urls_and_headers() {
        assert_eq!(
            url_credentials(
                "http://u:p%40ss-word@127.0.0.1:99999/x?password=pw-one&tag=v1&api_token=t+k#f"
            ),
            ["p%40ss-word", "p@ss-word", "pw-one", "t+k", "t k"]
        );
        assert_eq!(
            url_credentials("postgres://u@h/db?sslmode=require"),
            Vec::<String>::new()
        );
        assert_eq!(url_credentials("not a url :x@y"), ["x"]);
        assert_eq!(
            authorization_credentials("Bearer tok-123"),
            ["Bearer tok-123", "tok-123"]
        );
        // "user:pass-word" in base64.
        assert_eq!(
            authorization_credentials("Basic dXNlcjpwYXNzLXdvcmQ="),
            [
                "Basic dXNlcjpwYXNzLXdvcmQ=",
                "dXNlcjpwYXNzLXdvcmQ=",
                "pass-word",
                "user:pass-word"
            ]
        );
    }

    #[test]
    fn short_values_are_not_masked() {
        let redactor = Redactor::default();
        redactor.add("yes");
        assert_eq!(redactor.redact("yes"), "yes");
    }
}
