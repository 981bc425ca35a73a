//! Variable interpolation with docker compose's rules, shared by `.env` files and compose files:
//! `$NAME`, `${NAME}`, `${NAME:-default}` / `${NAME-default}` (default when unset-or-empty /
//! unset), `${NAME:?message}` / `${NAME?message}` (an error), `${NAME:+alt}` / `${NAME+alt}`
//! (alternative when set), and `$$` for a literal dollar. Defaults may themselves interpolate.

/// An interpolation that cannot be completed. `offset` is the byte offset of the `$` in the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpolateError {
    #[error("required variable {name} is missing a value: {message}")]
    Required {
        name: String,
        message: String,
        offset: usize,
    },
    #[error("{reason}")]
    Malformed { reason: String, offset: usize },
}

/// Replaces every variable reference in `text` using `lookup`.
pub fn interpolate(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, InterpolateError> {
    let mut out = String::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            let next = text[i..].find('$').map_or(text.len(), |n| i + n);
            out.push_str(&text[i..next]);
            i = next;
            continue;
        }
        match bytes.get(i + 1) {
            Some(b'$') => {
                out.push('$');
                i += 2;
            }
            Some(b'{') => {
                let close =
                    matching_brace(text, i + 1).ok_or_else(|| InterpolateError::Malformed {
                        reason: format!("unclosed `${{` in {:?}", &text[i..]),
                        offset: i,
                    })?;
                out.push_str(&braced(&text[i + 2..close], i, lookup)?);
                i = close + 1;
            }
            Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {
                let end = name_end(text, i + 1);
                out.push_str(&lookup(&text[i + 1..end]).unwrap_or_default());
                i = end;
            }
            _ => {
                out.push('$');
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Expands the inside of `${...}`; `offset` is where the `$` stood.
fn braced(
    inner: &str,
    offset: usize,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, InterpolateError> {
    let end = name_end(inner, 0);
    let name = &inner[..end];
    if name.is_empty() || name.as_bytes()[0].is_ascii_digit() {
        return Err(InterpolateError::Malformed {
            reason: format!("invalid variable name in `${{{inner}}}`"),
            offset,
        });
    }
    let value = lookup(name);
    let rest = &inner[end..];
    let (operator, argument) = ["?", ":?", "-", ":-", "+", ":+"]
        .iter()
        .rev()
        .find_map(|op| rest.strip_prefix(op).map(|arg| (*op, arg)))
        .unwrap_or(("", rest));
    if operator.is_empty() && !rest.is_empty() {
        return Err(InterpolateError::Malformed {
            reason: format!("unexpected `{rest}` in `${{{inner}}}`"),
            offset,
        });
    }
    let set = value.is_some();
    let non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
    let expand = |arg: &str| interpolate(arg, lookup).map_err(|e| shift(e, offset));
    match operator {
        "" => Ok(value.unwrap_or_default()),
        ":-" if !non_empty => expand(argument),
        "-" if !set => expand(argument),
        ":?" if !non_empty => Err(required(name, argument, offset)),
        "?" if !set => Err(required(name, argument, offset)),
        ":+" => {
            if non_empty {
                expand(argument)
            } else {
                Ok(String::new())
            }
        }
        "+" => {
            if set {
                expand(argument)
            } else {
                Ok(String::new())
            }
        }
        _ => Ok(value.unwrap_or_default()),
    }
}

fn required(name: &str, message: &str, offset: usize) -> InterpolateError {
    let message = if message.is_empty() {
        "not set".to_string()
    } else {
        message.to_string()
    };
    InterpolateError::Required {
        name: name.to_string(),
        message,
        offset,
    }
}

/// Errors in a nested default are reported at the outer `$`.
fn shift(error: InterpolateError, offset: usize) -> InterpolateError {
    match error {
        InterpolateError::Required { name, message, .. } => InterpolateError::Required {
            name,
            message,
            offset,
        },
        InterpolateError::Malformed { reason, .. } => {
            InterpolateError::Malformed { reason, offset }
        }
    }
}

fn name_end(text: &str, start: usize) -> usize {
    text[start..]
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .map_or(text.len(), |n| start + n)
}

/// The index of the `}` closing the `{` at `open`, counting nested `${…}`.
fn matching_brace(text: &str, open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in text[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(open + i);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TAG" => Some("v2".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn run(text: &str) -> Result<String, InterpolateError> {
        interpolate(text, &env)
    }

    #[test]
    fn forms() {
        assert_eq!(run("app:${TAG}").unwrap(), "app:v2");
        assert_eq!(run("app:$TAG-x").unwrap(), "app:v2-x");
        assert_eq!(run("${MISSING:-latest}").unwrap(), "latest");
        assert_eq!(run("${EMPTY:-latest}").unwrap(), "latest");
        assert_eq!(run("${EMPTY-latest}").unwrap(), "");
        assert_eq!(run("${MISSING-${TAG}}").unwrap(), "v2");
        assert_eq!(run("${TAG:+set}/${MISSING:+set}").unwrap(), "set/");
        assert_eq!(run("cost $$5 and $").unwrap(), "cost $5 and $");
        assert_eq!(run("${MISSING}").unwrap(), "");
    }

    #[test]
    fn errors() {
        assert_eq!(
            run("x ${MISSING:?set MISSING first}").unwrap_err(),
            InterpolateError::Required {
                name: "MISSING".into(),
                message: "set MISSING first".into(),
                offset: 2
            }
        );
        assert!(matches!(run("${EMPTY?x}"), Ok(v) if v.is_empty()));
        assert!(matches!(
            run("${TAG"),
            Err(InterpolateError::Malformed { offset: 0, .. })
        ));
        assert!(matches!(
            run("${1X}"),
            Err(InterpolateError::Malformed { .. })
        ));
        assert!(matches!(
            run("${TAG!}"),
            Err(InterpolateError::Malformed { .. })
        ));
    }
}
