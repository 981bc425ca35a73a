//! When a piece of REPL input is complete: every bracket, backtick string, interpolation and
//! block comment closed. The line editor continues an incomplete input on the next line, and
//! piped mode reads more lines before running it, so a `fn` or an `if` can span lines in both.

/// True when `input` can be run as it is: every bracket, backtick string, interpolation and
/// block comment is closed. Mismatched brackets and unterminated `"` strings count as complete,
/// so the compiler reports them with a caret instead of the prompt waiting for more.
pub fn is_complete(input: &str) -> bool {
    #[derive(PartialEq)]
    enum Open {
        Bracket(char),
        Backtick,
        /// `${` inside a backtick string: code until the matching `}`.
        Interpolation,
    }
    let mut open: Vec<Open> = Vec::new();
    let chars: Vec<char> = input.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if open.last() == Some(&Open::Backtick) {
            match (c, next) {
                ('`', Some('`')) => i += 1,
                ('`', _) => {
                    open.pop();
                }
                ('$', Some('{')) => {
                    open.push(Open::Interpolation);
                    i += 1;
                }
                _ => {}
            }
            i += 1;
            continue;
        }
        match (c, next) {
            ('/', Some('/')) => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            ('/', Some('*')) => {
                let mut depth = 0;
                loop {
                    match (chars.get(i), chars.get(i + 1)) {
                        (Some('/'), Some('*')) => {
                            depth += 1;
                            i += 1;
                        }
                        (Some('*'), Some('/')) => {
                            depth -= 1;
                            i += 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        (None, _) => return false,
                        _ => {}
                    }
                    i += 1;
                }
            }
            ('"' | '\'', _) => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                if i >= chars.len() {
                    return true;
                }
            }
            ('`', _) => open.push(Open::Backtick),
            ('(' | '[' | '{', _) => open.push(Open::Bracket(c)),
            (')' | ']' | '}', _) => {
                let opener = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                match open.pop() {
                    Some(Open::Bracket(o)) if o == opener => {}
                    Some(Open::Interpolation) if c == '}' => {}
                    _ => return true,
                }
            }
            _ => {}
        }
        i += 1;
    }
    open.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completeness() {
        for complete in [
            "1 + 1",
            "fn f() { 1 }",
            "let s = \"{\";",
            "let c = '(';",
            "// {",
            "`a ${1 + 2} b`",
            "let x = (1]",
            "let s = \"open",
            "/* a /* b */ c */ 1",
        ] {
            assert!(is_complete(complete), "{complete}");
        }
        for incomplete in [
            "fn f() {",
            "if x {\n  let y = [1,",
            "`multi\nline",
            "`a ${ f(",
            "/* open",
            "#{ a: 1,",
        ] {
            assert!(!is_complete(incomplete), "{incomplete}");
        }
    }
}
