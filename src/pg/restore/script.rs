//! A plain dump is a psql script, and psql scripts can do more than SQL: `\connect other_db`,
//! `\! shell command`, `\copy … program`, `\i file`, `\set ON_ERROR_STOP 0`. A restore must not
//! reach any database but its scratch one, so every plain dump is read by [`Scanner`] — a lexer
//! that splits psql input the way psql's own (`psqlscan.l`) does: quotes, `E''` strings, dollar
//! quotes, comments, numbers, `BEGIN ATOMIC` bodies and the data lines of `COPY … FROM stdin` — and
//! a backslash command anywhere outside a literal is refused, naming its line. Only the
//! `\restrict KEY` / `\unrestrict KEY` pair that pg_dump ≥ 15.14 writes passes the check; the
//! restore strips it and restricts psql with a key of its own, so psql itself refuses any
//! backslash command the check might have missed. Statements that reach other databases
//! (`CREATE`/`ALTER`/`DROP DATABASE`, `ALTER SYSTEM`) and `COPY … PROGRAM` are refused too.
//!
//! The scanner reads in chunks with a fixed amount of state, so a dump of any size is checked
//! in the same memory; [`Scanner::feed`] also hands on what psql may read (the input without
//! pg_dump's restrict lines) for a restore that streams the file into psql.

use std::{
    fmt,
    io::{self, Read},
};

/// What the scanner refused, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// 1-based line of the input.
    pub line: u64,
    /// `\connect`, `DROP DATABASE`, `COPY … PROGRAM`…
    pub what: String,
    pub meta: bool,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.meta {
            write!(
                f,
                "line {}: psql command `{}` refused: a restore runs only SQL, in its scratch \
                 database",
                self.line, self.what
            )?;
            if matches!(self.what.as_str(), "\\connect" | "\\c") {
                write!(f, " (pg_dump --create writes one: dump without --create)")?;
            }
            Ok(())
        } else {
            write!(
                f,
                "line {}: statement `{}` refused: a restore changes only its scratch database",
                self.line, self.what
            )
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Number {
    Int,
    Fraction,
    /// After `e`.
    Exponent,
    /// After `e+` / `e-`.
    ExponentSign,
    ExponentDigits,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Code,
    /// A `-` in code: a comment if another follows.
    Dash,
    /// A `/` in code: a comment if `*` follows.
    Slash,
    LineComment,
    Block {
        depth: u32,
        previous: u8,
    },
    Quote {
        escapes: bool,
    },
    /// After a backslash in an `E''` string.
    QuoteEscape,
    DoubleQuote,
    /// After `$`, reading what may be a dollar-quote tag.
    DollarTag(Vec<u8>),
    Dollar {
        tag: Vec<u8>,
        window: Vec<u8>,
    },
    Number(Number),
    /// A backslash command, until the end of its line.
    Meta {
        line: u64,
        name: Vec<u8>,
        rest: Vec<u8>,
        named: bool,
        /// Nothing but blanks before it on its line.
        alone: bool,
    },
    /// The data lines of `COPY … FROM stdin`, until `\.`.
    Data {
        length: usize,
        head: [u8; 3],
    },
}

/// The longest word or tag kept (longer ones are never keywords).
const WORD_LIMIT: usize = 64;

/// Splits psql input as psql does, refusing backslash commands (see the module docs).
pub struct Scanner {
    state: State,
    line: u64,
    /// An identifier being read (`None` outside one).
    word: Option<Vec<u8>>,
    paren_depth: u32,
    begin_depth: u32,
    /// psql's `identifier_count` and `identifiers[4]`.
    identifiers: u32,
    initials: [u8; 4],
    /// The statement's first word, and its previous word at paren depth 0.
    first: Vec<u8>,
    previous: Vec<u8>,
    copy_from_stdin: bool,
    /// Statements `COPY … FROM stdin` ended on this line: data lines follow.
    copies: u32,
    /// Only blanks so far on this line.
    blank: bool,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner {
            state: State::Code,
            line: 1,
            word: None,
            paren_depth: 0,
            begin_depth: 0,
            identifiers: 0,
            initials: [0; 4],
            first: Vec::new(),
            previous: Vec::new(),
            copy_from_stdin: false,
            copies: 0,
            blank: true,
        }
    }
}

fn ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn ident_continue(b: u8) -> bool {
    ident_start(b) || b.is_ascii_digit() || b == b'$'
}

fn dollar_continue(b: u8) -> bool {
    ident_start(b) || b.is_ascii_digit()
}

impl Scanner {
    /// Scans `chunk`, appending to `out` what psql may read (the input less pg_dump's own
    /// `\restrict`/`\unrestrict` lines). Stops at the first refused command.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), Refused> {
        for &byte in chunk {
            self.step(byte, out)?;
        }
        Ok(())
    }

    /// The end of the input: a backslash command on the last line without a newline is judged.
    pub fn finish(&mut self) -> Result<(), Refused> {
        if matches!(self.state, State::Meta { .. }) {
            self.end_meta()?;
        }
        Ok(())
    }

    fn step(&mut self, byte: u8, out: &mut Vec<u8>) -> Result<(), Refused> {
        if let State::Meta {
            name, rest, named, ..
        } = &mut self.state
        {
            // A backslash command is never passed on: refused, or pg_dump's restrict line,
            // stripped (its newline is kept, so psql's line numbers stay those of the file).
            if byte == b'\n' {
                self.end_meta()?;
                out.push(byte);
                self.newline()?;
            } else if !*named && (byte.is_ascii_whitespace() || byte == b'\\') {
                *named = true;
            } else if !*named {
                if name.len() < WORD_LIMIT {
                    name.push(byte);
                }
            } else if rest.len() < 256 {
                rest.push(byte);
            }
            return Ok(());
        }
        self.lex(byte)?;
        if !matches!(self.state, State::Meta { .. }) {
            out.push(byte);
        }
        if byte == b'\n' {
            self.newline()?;
        } else if !byte.is_ascii_whitespace() {
            self.blank = false;
        }
        Ok(())
    }

    fn newline(&mut self) -> Result<(), Refused> {
        self.line += 1;
        self.blank = true;
        if self.copies > 0 && !matches!(self.state, State::Data { .. }) {
            // psql reads the data from the next line and the rest of this one after it: a
            // literal left open here would span the data, which no dump does.
            if self.state != State::Code {
                return Err(Refused {
                    line: self.line - 1,
                    what: "COPY … FROM stdin; followed by an unfinished literal".into(),
                    meta: false,
                });
            }
            self.state = State::Data {
                length: 0,
                head: [0; 3],
            };
        }
        Ok(())
    }

    /// Judges the backslash command that ends here.
    fn end_meta(&mut self) -> Result<(), Refused> {
        let State::Meta {
            line,
            name,
            rest,
            alone,
            ..
        } = std::mem::replace(&mut self.state, State::Code)
        else {
            return Ok(());
        };
        let name = String::from_utf8_lossy(&name).into_owned();
        let key = String::from_utf8_lossy(&rest).trim().to_string();
        // Only pg_dump's own lines, alone on their line with a key, pass.
        let restrict = matches!(name.as_str(), "restrict" | "unrestrict")
            && !key.is_empty()
            && key.bytes().all(|b| b.is_ascii_alphanumeric());
        if restrict && alone {
            return Ok(());
        }
        Err(Refused {
            line,
            what: format!("\\{name}"),
            meta: true,
        })
    }

    fn lex(&mut self, byte: u8) -> Result<(), Refused> {
        match std::mem::replace(&mut self.state, State::Code) {
            State::Code => self.code(byte),
            State::Dash => {
                if byte == b'-' {
                    self.state = State::LineComment;
                    Ok(())
                } else {
                    self.code(byte)
                }
            }
            State::Slash => {
                if byte == b'*' {
                    self.state = State::Block {
                        depth: 1,
                        previous: 0,
                    };
                    Ok(())
                } else {
                    self.code(byte)
                }
            }
            State::LineComment => {
                if byte != b'\n' {
                    self.state = State::LineComment;
                }
                Ok(())
            }
            State::Block { depth, previous } => {
                self.state = match (previous, byte) {
                    (b'/', b'*') => State::Block {
                        depth: depth + 1,
                        previous: 0,
                    },
                    (b'*', b'/') if depth == 1 => State::Code,
                    (b'*', b'/') => State::Block {
                        depth: depth - 1,
                        previous: 0,
                    },
                    _ => State::Block {
                        depth,
                        previous: byte,
                    },
                };
                Ok(())
            }
            State::Quote { escapes } => {
                self.state = match byte {
                    b'\'' => State::Code,
                    b'\\' if escapes => State::QuoteEscape,
                    _ => State::Quote { escapes },
                };
                Ok(())
            }
            State::QuoteEscape => {
                self.state = State::Quote { escapes: true };
                Ok(())
            }
            State::DoubleQuote => {
                if byte != b'"' {
                    self.state = State::DoubleQuote;
                }
                Ok(())
            }
            State::DollarTag(mut tag) => {
                if byte == b'$' {
                    self.state = State::Dollar {
                        tag,
                        window: Vec::new(),
                    };
                    Ok(())
                } else if (tag.is_empty() && ident_start(byte))
                    || (!tag.is_empty() && dollar_continue(byte) && tag.len() < WORD_LIMIT)
                {
                    tag.push(byte);
                    self.state = State::DollarTag(tag);
                    Ok(())
                } else {
                    // Not a dollar quote: psql reads what followed `$` again, as an identifier.
                    if !tag.is_empty() {
                        self.word = Some(tag);
                    }
                    self.code(byte)
                }
            }
            State::Dollar { tag, mut window } => {
                window.push(byte);
                if window.len() > tag.len() + 2 {
                    window.remove(0);
                }
                let closed = window.len() == tag.len() + 2
                    && window[0] == b'$'
                    && window[window.len() - 1] == b'$'
                    && window[1..window.len() - 1] == tag[..];
                if !closed {
                    self.state = State::Dollar { tag, window };
                }
                Ok(())
            }
            State::Number(number) => self.number(number, byte),
            State::Data { length, head } => {
                if byte == b'\n' {
                    let end =
                        (length == 2 && head[..2] == *b"\\.") || (length == 3 && head == *b"\\.\r");
                    if end {
                        self.copies -= 1;
                        if self.copies == 0 {
                            return Ok(());
                        }
                    }
                    self.state = State::Data {
                        length: 0,
                        head: [0; 3],
                    };
                } else {
                    let mut head = head;
                    if length < 3 {
                        head[length] = byte;
                    }
                    self.state = State::Data {
                        length: length.saturating_add(1),
                        head,
                    };
                }
                Ok(())
            }
            State::Meta { .. } => unreachable!("handled in step"),
        }
    }

    fn number(&mut self, number: Number, byte: u8) -> Result<(), Refused> {
        use Number::*;
        let next = match (number, byte) {
            (Int | Fraction | ExponentDigits, b'0'..=b'9') => Some(number),
            (Int, b'.') => Some(Fraction),
            (Int | Fraction, b'e' | b'E') => Some(Exponent),
            (Exponent, b'+' | b'-') => Some(ExponentSign),
            (Exponent | ExponentSign, b'0'..=b'9') => Some(ExponentDigits),
            _ => None,
        };
        if let Some(next) = next {
            self.state = State::Number(next);
            return Ok(());
        }
        // psql 15 takes one identifier character after a number into the number's token
        // (`integer_junk`); after `1e` or `1e+` the token has already ended.
        if matches!(number, Int | Fraction | ExponentDigits) && ident_start(byte) {
            self.state = State::Code;
            return Ok(());
        }
        self.code(byte)
    }

    /// `byte` in code, outside any token but possibly inside an identifier.
    fn code(&mut self, byte: u8) -> Result<(), Refused> {
        if let Some(word) = &mut self.word
            && ident_continue(byte)
        {
            if word.len() < WORD_LIMIT {
                word.push(byte);
            } else {
                // Too long for a keyword: keep it distinct from any.
                word.push(b'_');
                word.truncate(WORD_LIMIT + 1);
            }
            return Ok(());
        }
        let adjacent = self.word.take();
        if let Some(word) = &adjacent {
            self.end_word(word)?;
        }
        match byte {
            b if ident_start(b) => self.word = Some(vec![b]),
            b'0'..=b'9' => self.state = State::Number(Number::Int),
            b'\'' => {
                let prefix = adjacent.map(|w| w.to_ascii_lowercase());
                let escapes = match prefix.as_deref() {
                    Some(b"e") => true,
                    // B'…' and X'…' never read backslashes; '…' and N'…' do not with
                    // standard_conforming_strings on, which the restore sets.
                    _ => false,
                };
                self.state = State::Quote { escapes };
            }
            b'"' => self.state = State::DoubleQuote,
            b'$' => self.state = State::DollarTag(Vec::new()),
            b'-' => self.state = State::Dash,
            b'/' => self.state = State::Slash,
            b'\\' => {
                self.state = State::Meta {
                    line: self.line,
                    name: Vec::new(),
                    rest: Vec::new(),
                    named: false,
                    alone: self.blank,
                };
            }
            b'(' => self.paren_depth += 1,
            b')' => self.paren_depth = self.paren_depth.saturating_sub(1),
            b';' if self.paren_depth == 0 && self.begin_depth == 0 => self.end_statement(),
            _ => {}
        }
        Ok(())
    }

    fn end_word(&mut self, word: &[u8]) -> Result<(), Refused> {
        let upper = word.to_ascii_uppercase();
        // psql's heuristic for CREATE [OR REPLACE] FUNCTION|PROCEDURE … BEGIN ATOMIC … END.
        if self.identifiers == 0 {
            self.initials = [0; 4];
        }
        let lower = word.to_ascii_lowercase();
        if matches!(
            lower.as_slice(),
            b"create" | b"function" | b"procedure" | b"or" | b"replace"
        ) && (self.identifiers as usize) < self.initials.len()
        {
            self.initials[self.identifiers as usize] = lower[0];
        }
        self.identifiers += 1;
        let i = self.initials;
        if i[0] == b'c'
            && (i[1] == b'f'
                || i[1] == b'p'
                || (i[1] == b'o' && i[2] == b'r' && (i[3] == b'f' || i[3] == b'p')))
            && self.paren_depth == 0
        {
            match lower.as_slice() {
                b"begin" => self.begin_depth += 1,
                b"case" if self.begin_depth >= 1 => self.begin_depth += 1,
                b"end" if self.begin_depth > 0 => self.begin_depth -= 1,
                _ => {}
            }
        }
        if self.identifiers == 1 {
            self.first = upper.clone();
        } else if self.identifiers == 2 {
            let refused = matches!(
                (self.first.as_slice(), upper.as_slice()),
                (b"CREATE" | b"ALTER" | b"DROP", b"DATABASE") | (b"ALTER", b"SYSTEM")
            );
            if refused {
                return Err(Refused {
                    line: self.line,
                    what: format!(
                        "{} {}",
                        String::from_utf8_lossy(&self.first),
                        String::from_utf8_lossy(&upper)
                    ),
                    meta: false,
                });
            }
        }
        if self.first == b"COPY" && self.paren_depth == 0 {
            if self.previous == b"FROM" && upper == b"STDIN" {
                self.copy_from_stdin = true;
            }
            if upper == b"PROGRAM" && matches!(self.previous.as_slice(), b"FROM" | b"TO") {
                return Err(Refused {
                    line: self.line,
                    what: "COPY … PROGRAM".into(),
                    meta: false,
                });
            }
            self.previous = upper;
        }
        Ok(())
    }

    fn end_statement(&mut self) {
        if self.copy_from_stdin {
            self.copies += 1;
        }
        self.copy_from_stdin = false;
        self.identifiers = 0;
        self.first.clear();
        self.previous.clear();
    }
}

/// Checks a whole psql script, without keeping it.
pub fn check(mut input: impl Read) -> io::Result<Result<(), Refused>> {
    let mut scanner = Scanner::default();
    let mut buffer = vec![0; 1 << 16];
    let mut out = Vec::with_capacity(1 << 16);
    loop {
        let n = match input.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        out.clear();
        if let Err(refused) = scanner.feed(&buffer[..n], &mut out) {
            return Ok(Err(refused));
        }
    }
    Ok(scanner.finish())
}

/// A reader that hands psql only checked input: it fails (and so stops the load) at a refused
/// command, before any byte of it is passed on.
pub struct Guarded<R> {
    inner: R,
    scanner: Scanner,
    pending: Vec<u8>,
    at: usize,
    done: bool,
}

impl<R: Read> Guarded<R> {
    pub fn new(inner: R) -> Self {
        Guarded {
            inner,
            scanner: Scanner::default(),
            pending: Vec::new(),
            at: 0,
            done: false,
        }
    }
}

impl<R: Read> Read for Guarded<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        while self.at == self.pending.len() {
            if self.done {
                return Ok(0);
            }
            self.pending.clear();
            self.at = 0;
            let mut chunk = vec![0; buffer.len().clamp(4096, 1 << 20)];
            let n = self.inner.read(&mut chunk)?;
            let result = if n == 0 {
                self.done = true;
                self.scanner.finish()
            } else {
                self.scanner.feed(&chunk[..n], &mut self.pending)
            };
            if let Err(refused) = result {
                self.pending.clear();
                self.done = true;
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    refused.to_string(),
                ));
            }
        }
        let n = buffer.len().min(self.pending.len() - self.at);
        buffer[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(text: &str) -> Result<String, Refused> {
        let mut scanner = Scanner::default();
        let mut out = Vec::new();
        // Byte by byte, so every state is crossed at a chunk boundary.
        for byte in text.bytes() {
            scanner.feed(&[byte], &mut out)?;
        }
        scanner.finish()?;
        Ok(String::from_utf8(out).unwrap())
    }

    fn refused(text: &str) -> (u64, String) {
        let refused = scan(text).unwrap_err();
        (refused.line, refused.what)
    }

    #[test]
    fn refuses_backslash_commands_in_code() {
        assert_eq!(
            refused("SELECT 1;\n\\connect flappyjournal\nDELETE FROM t;\n"),
            (2, "\\connect".into())
        );
        assert_eq!(refused("\\c other"), (1, "\\c".into()));
        assert_eq!(refused("SELECT 1; \\! rm -rf /\n"), (1, "\\!".into()));
        assert_eq!(refused("\\copy t to program 'sh'\n"), (1, "\\copy".into()));
        assert_eq!(refused("x\n\n\\i /etc/passwd"), (3, "\\i".into()));
        assert_eq!(refused("SELECT 1 \\gexec\n"), (1, "\\gexec".into()));
        assert_eq!(refused("SELECT 'a' \\\\ \n"), (1, "\\".into()));
        // Restrict lines only alone on their line, with a key.
        assert_eq!(refused("\\restrict\n"), (1, "\\restrict".into()));
        assert_eq!(
            refused("SELECT 1 \\restrict abc\n"),
            (1, "\\restrict".into())
        );
    }

    #[test]
    fn backslashes_inside_literals_and_comments_are_data() {
        let text = "SELECT 'a\\b', E'it\\'s \\connect', \"x\\y\", $$ \\c $$, $f$ $$ \\c $f$;\n\
                    -- \\connect in a comment\n/* \\c /* nested \\c */ \\c */ SELECT 1;\n\
                    COPY public.t (a, b) FROM stdin;\n1\t\\N\n\\connect data\n\\.\nSELECT 2;\n";
        assert_eq!(scan(text).unwrap(), text);
        // After the data, code again.
        assert_eq!(refused(&format!("{text}\\c x\n")).0, 9);
    }

    #[test]
    fn copy_data_needs_copy_from_stdin_at_depth_zero() {
        // `FROM stdin` inside parentheses is a table named stdin, not data.
        assert_eq!(
            refused("COPY (SELECT * FROM stdin) TO STDOUT;\n\\c x\n").0,
            2
        );
        // Two copies on one line: two data blocks.
        let two = "COPY a FROM stdin; COPY b FROM STDIN;\n\\x\n\\.\n\\y\n\\.\n";
        assert!(scan(two).is_ok());
        assert_eq!(refused(&format!("{two}\\z\n")).0, 6);
        // A `;` inside BEGIN ATOMIC does not end the statement, as in psql.
        let atomic = "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC; COPY x FROM stdin; END;\n\\c x\n";
        assert_eq!(refused(atomic).0, 2);
    }

    #[test]
    fn dollar_quotes_and_numbers_split_as_psql_splits_them() {
        // `1e` ends a token, so `$a$` opens a dollar quote that ends before the command.
        assert_eq!(refused("SELECT 1e$a$ x $a$ \\c x\n").0, 1);
        assert_eq!(refused("SELECT 1a$b$ x $b$ \\c x\n").0, 1);
        // Inside an identifier `$` is part of it: no quote opens.
        assert_eq!(refused("SELECT a$b$ \\c x $b$\n").0, 1);
        // `$1` is a parameter.
        assert_eq!(refused("SELECT $1 \\c x $1\n").0, 1);
        // A failed tag is an identifier again: `$e'…'` is an E string.
        assert!(scan("SELECT $e'\\'' ;\n").is_ok());
    }

    #[test]
    fn refuses_statements_reaching_other_databases() {
        assert_eq!(
            refused("SET x = 1;\nDROP DATABASE live;\n"),
            (2, "DROP DATABASE".into())
        );
        assert_eq!(refused("alter system set fsync = off;").1, "ALTER SYSTEM");
        assert_eq!(refused("COPY t TO PROGRAM 'sh -c id';").1, "COPY … PROGRAM");
        assert!(scan("CREATE TABLE database (x int); SELECT 'DROP DATABASE x';\n").is_ok());
    }

    #[test]
    fn pg_dump_restrict_lines_pass_and_are_stripped() {
        let text = "--\n\\restrict Abc123\n\nSET x = 1;\n\\unrestrict Abc123\n";
        assert_eq!(scan(text).unwrap(), "--\n\n\nSET x = 1;\n\n");
    }

    #[test]
    fn guarded_reader_stops_before_the_command() {
        let text = "SELECT 1;\nDELETE FROM t;\n\\connect live\nDELETE FROM t;\n";
        let mut guarded = Guarded::new(text.as_bytes());
        let mut out = Vec::new();
        let error = guarded.read_to_end(&mut out).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("line 3: psql command `\\connect`")
        );
        assert!(!String::from_utf8_lossy(&out).contains("connect"));
    }
}
