//! Where the cursor is in the code typed so far: which brackets are open before it, read
//! forward from the start of the input with strings and comments skipped (a `(` inside
//! `"a(b"` opens nothing). From those the editor knows the call whose arguments the cursor is
//! in (for the signature hint) and, inside `#{`, the map literal being written: the function
//! and argument it is given to, and the keys it has already (for completing option keys).

/// The call whose argument list the cursor is in: `docker::logs("api", ` is argument 1 of
/// `docker::logs`.
#[derive(Debug, PartialEq, Eq)]
pub struct Call<'a> {
    pub function: &'a str,
    /// Which argument, from 0: the commas before the cursor at the call's own level.
    pub argument: usize,
}

/// The cursor where a key of a map literal goes: `docker::logs("api", #{follow: true, ti`.
#[derive(Debug, PartialEq, Eq)]
pub struct MapKey<'a> {
    /// The call the map is an argument of.
    pub call: Call<'a>,
    /// The map is an item of a list given as that argument: `health::all([#{`.
    pub in_list: bool,
    /// Where the key being typed starts; it runs to the cursor.
    pub start: usize,
    /// The keys the map has before the cursor.
    pub used: Vec<String>,
}

/// The call the end of `before` is in, when its innermost open bracket is that call's `(`.
pub fn enclosing_call(before: &str) -> Option<Call<'_>> {
    let scan = scan(before);
    call_at(before, &scan.open, scan.open.len().checked_sub(1)?)
}

/// The map key the end of `before` is at: inside an open `#{`, after its `{` or a comma, with
/// at most a partial identifier typed; the map given to a call directly or as an item of a list.
pub fn map_key(before: &str) -> Option<MapKey<'_>> {
    let scan = scan(before);
    if scan.in_text {
        return None;
    }
    let (map, outer) = scan.open.split_last()?;
    if map.bracket != Bracket::Map || map.keyed {
        return None;
    }
    let typed = before[map.entry..].trim_start();
    if !typed.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return None;
    }
    let (call, in_list) = match outer.last()?.bracket {
        Bracket::Paren => (call_at(before, outer, outer.len() - 1)?, false),
        Bracket::List => (call_at(before, outer, outer.len().checked_sub(2)?)?, true),
        _ => return None,
    };
    Some(MapKey {
        call,
        in_list,
        start: before.len() - typed.len(),
        used: map.keys.clone(),
    })
}

/// The call opened by `open[index]`, when that is a `(` after a function name.
fn call_at<'a>(before: &'a str, open: &[Open], index: usize) -> Option<Call<'a>> {
    let paren = open.get(index)?;
    if paren.bracket != Bracket::Paren {
        return None;
    }
    let head = before[..paren.at].trim_end();
    let function = &head[word_start(head)..];
    (!function.is_empty()).then_some(Call {
        function,
        argument: paren.commas,
    })
}

/// Where the identifier path (`env::ge`, `sle`) ending at the end of `before` starts.
pub fn word_start(before: &str) -> usize {
    before
        .char_indices()
        .rev()
        .find(|(_, c)| !(c.is_alphanumeric() || *c == '_' || *c == ':'))
        .map_or(0, |(i, c)| i + c.len_utf8())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bracket {
    /// `(`: a call's arguments, or grouping.
    Paren,
    /// `[`
    List,
    /// `#{`
    Map,
    /// `{` of a block.
    Block,
}

/// A bracket open before the cursor.
#[derive(Debug)]
struct Open {
    bracket: Bracket,
    /// The byte offset of the bracket (of the `#` of `#{`).
    at: usize,
    /// Commas at its own level so far.
    commas: usize,
    /// Where its current entry (after the bracket or the last comma) starts.
    entry: usize,
    /// A map's current entry has its key (a `:` followed it).
    keyed: bool,
    /// A map's keys so far.
    keys: Vec<String>,
}

struct Scan {
    open: Vec<Open>,
    /// The input ends inside a string or a comment.
    in_text: bool,
}

fn scan(before: &str) -> Scan {
    let bytes = before.as_bytes();
    let mut open: Vec<Open> = Vec::new();
    let mut i = 0;
    let push = |open: &mut Vec<Open>, bracket, at, entry| {
        open.push(Open {
            bracket,
            at,
            commas: 0,
            entry,
            keyed: false,
            keys: Vec::new(),
        })
    };
    while i < bytes.len() {
        let next = bytes.get(i + 1).copied();
        match bytes[i] {
            quote @ (b'"' | b'`' | b'\'') => match closing_quote(bytes, i + 1, quote) {
                Some(end) => i = end,
                None => {
                    return Scan {
                        open,
                        in_text: true,
                    };
                }
            },
            b'/' if next == Some(b'/') => match before[i..].find('\n') {
                Some(newline) => i += newline,
                None => {
                    return Scan {
                        open,
                        in_text: true,
                    };
                }
            },
            b'/' if next == Some(b'*') => match before[i + 2..].find("*/") {
                Some(end) => i += 2 + end + 1,
                None => {
                    return Scan {
                        open,
                        in_text: true,
                    };
                }
            },
            b'#' if next == Some(b'{') => {
                push(&mut open, Bracket::Map, i, i + 2);
                i += 1;
            }
            b'(' => push(&mut open, Bracket::Paren, i, i + 1),
            b'[' => push(&mut open, Bracket::List, i, i + 1),
            b'{' => push(&mut open, Bracket::Block, i, i + 1),
            b')' | b']' | b'}' => {
                open.pop();
            }
            b',' => {
                if let Some(top) = open.last_mut() {
                    top.commas += 1;
                    top.entry = i + 1;
                    top.keyed = false;
                }
            }
            b':' if next == Some(b':') => i += 1,
            b':' => {
                if let Some(top) = open.last_mut()
                    && top.bracket == Bracket::Map
                    && !top.keyed
                {
                    top.keyed = true;
                    let key = before[top.entry..i].trim();
                    let key = key
                        .strip_prefix('"')
                        .and_then(|k| k.strip_suffix('"'))
                        .unwrap_or(key);
                    top.keys.push(key.to_string());
                }
            }
            _ => {}
        }
        i += 1;
    }
    Scan {
        open,
        in_text: false,
    }
}

/// The offset of the quote closing a string whose text starts at `from`, backslash escapes
/// skipped (a backtick string has none).
fn closing_quote(bytes: &[u8], from: usize, quote: u8) -> Option<usize> {
    let mut i = from;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quote != b'`' => i += 1,
            b if b == quote => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(function: &str, argument: usize) -> Call<'_> {
        Call { function, argument }
    }

    #[test]
    fn the_enclosing_call_and_argument() {
        assert_eq!(
            enclosing_call("env::get(\"X\", "),
            Some(call("env::get", 1))
        );
        assert_eq!(enclosing_call("let x = sleep("), Some(call("sleep", 0)));
        assert_eq!(enclosing_call("f(g(1), [2, 3], "), Some(call("f", 2)));
        // Brackets and commas inside strings and comments count for nothing.
        assert_eq!(
            enclosing_call("log::info(\"a(b, c\", `d)[`, 'x'"),
            Some(call("log::info", 2))
        );
        assert_eq!(enclosing_call("f(1 /* ) */, "), Some(call("f", 1)));
        assert_eq!(enclosing_call("f(1) + 2"), None);
        assert_eq!(enclosing_call("f([1, "), None);
        assert_eq!(enclosing_call("(1 + "), None);
    }

    #[test]
    fn a_map_key_after_the_brace_or_a_comma() {
        let key = map_key("docker::logs(\"api\", #{fo").unwrap();
        assert_eq!(key.call, call("docker::logs", 1));
        assert!(!key.in_list);
        assert_eq!(key.start, "docker::logs(\"api\", #{".len());
        assert!(key.used.is_empty());

        let before = "docker::logs(\"api\", #{follow: true, \"tail\": 5, since: time::now(), ti";
        let key = map_key(before).unwrap();
        assert_eq!(key.used, ["follow", "tail", "since"]);
        assert_eq!(&before[key.start..], "ti");

        let key = map_key("exec::run([\"ls\"], #{ ").unwrap();
        assert_eq!((key.call, key.start), (call("exec::run", 1), 21));
    }

    #[test]
    fn a_map_in_a_list_argument() {
        let key = map_key("health::all([\"http://a\", #{http: \"http://b\", st").unwrap();
        assert_eq!(key.call, call("health::all", 0));
        assert!(key.in_list);
        assert_eq!(key.used, ["http"]);
    }

    #[test]
    fn no_map_key_at_a_value_in_text_or_outside_a_call() {
        for before in [
            "docker::logs(\"api\", #{follow: tr",
            "docker::logs(\"api\", #{follow: ",
            "docker::logs(\"api\", #{\"fo",
            "docker::logs(\"api\", #{a: 1} ",
            "docker::logs(\"api\", // #{",
            "let m = #{fo",
            "f(#{a: #{b: 1}, c: [#{",
            "{ #{",
        ] {
            assert_eq!(map_key(before), None, "{before}");
        }
        // A nested map is a map of its own, given to no call.
        assert_eq!(map_key("f(#{a: #{b"), None);
    }
}
