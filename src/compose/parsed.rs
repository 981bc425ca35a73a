//! Compose files as parsed by an earlier run, kept so the next run with the same text skips the
//! YAML parser. A rollback or a promote loads the compose file once and spends more time in
//! serde-saphyr (~2 ms for the shipped 12 KB file: anchors expanded, a line for every node) than
//! in any other single step of its own but compiling its scripts; reading the same tree back
//! from a compact encoding takes a small fraction of that.
//!
//! What is kept is the tree [`tree::parse`] gives — before interpolation, so it holds the file's
//! own text and no value of the environment (no secret the settings file holds) — in one file per
//! compose file (`compose-KEY.tree`, KEY from its path), headed by the SHA-256 of the text it
//! was parsed from. A tree is used only when that hash is the text's read now, so an edited file
//! is parsed again, whatever the clocks say; a missing, stale, torn or unreadable entry is the
//! same as none, and an entry that cannot be written is a miss next time too. Errors are never
//! kept: a file that does not parse is parsed (and its error said) every time.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::compose::tree::{self, Entry, Node, SpecError, Value};

/// The first bytes of an entry; a new encoding gets a new one, and old entries are misses.
const MAGIC: &[u8] = b"cutover compose tree 1\n";

/// Where parsed compose files are kept, and whether this run may add to them (a dry run or a
/// readonly runbook only reads).
#[derive(Debug, Clone)]
pub struct ParseCache {
    pub dir: PathBuf,
    pub store: bool,
}

impl ParseCache {
    /// The tree of `text` (the file at absolute path `path`, `source` in errors): the one kept
    /// for `path` when it was parsed from this very text, otherwise parsed now and kept.
    pub fn parse(&self, path: &Path, text: &str, source: &str) -> Result<Node, SpecError> {
        let entry = self.entry(path);
        let hash: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        if let Some(node) = std::fs::read(&entry).ok().and_then(|b| decode(&b, &hash)) {
            return Ok(node);
        }
        let node = tree::parse(text, source)?;
        if self.store
            && let Err(error) = self.keep(&entry, &encode(&node, &hash))
        {
            tracing::debug!(
                "the parsed compose file is not kept in {}: {error}",
                entry.display()
            );
        }
        Ok(node)
    }

    /// The entry of compose file `path`: one per file, so editing it replaces its entry.
    fn entry(&self, path: &Path) -> PathBuf {
        let key = Sha256::digest(path.as_os_str().as_encoded_bytes());
        let hex: String = key[..8].iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("compose-{hex}.tree"))
    }

    fn keep(&self, entry: &Path, bytes: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        crate::journal::atomic::remove_abandoned(entry);
        crate::journal::atomic::write(entry, bytes, 0o600)
    }
}

/// `node` as an entry for text of SHA-256 `hash`.
fn encode(node: &Node, hash: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 * 1024);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(hash);
    put_node(&mut out, node);
    out
}

fn put_node(out: &mut Vec<u8>, node: &Node) {
    put_number(out, node.line as u64);
    match &node.value {
        Value::Null => out.push(0),
        Value::Bool(false) => out.push(1),
        Value::Bool(true) => out.push(2),
        Value::Int(n) => {
            out.push(3);
            out.extend_from_slice(&n.to_le_bytes());
        }
        Value::Float(x) => {
            out.push(4);
            out.extend_from_slice(&x.to_le_bytes());
        }
        Value::Str(s) => {
            out.push(5);
            put_text(out, s);
        }
        Value::Seq(items) => {
            out.push(6);
            put_number(out, items.len() as u64);
            for item in items {
                put_node(out, item);
            }
        }
        Value::Map(entries) => {
            out.push(7);
            put_number(out, entries.len() as u64);
            for entry in entries {
                put_text(out, &entry.key);
                put_number(out, entry.line as u64);
                put_node(out, &entry.value);
            }
        }
    }
}

/// LEB128: seven bits a byte, low ones first.
fn put_number(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_text(out: &mut Vec<u8>, text: &str) {
    put_number(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

/// The tree of an entry, when it is one for text of SHA-256 `hash` and reads whole.
fn decode(bytes: &[u8], hash: &[u8; 32]) -> Option<Node> {
    let body = bytes.strip_prefix(MAGIC)?.strip_prefix(hash.as_slice())?;
    let mut reader = Reader { bytes: body, at: 0 };
    let node = reader.node(0)?;
    (reader.at == body.len()).then_some(node)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn node(&mut self, depth: usize) -> Option<Node> {
        // The parser refused deeper trees; a deeper one here is damage, not a compose file.
        if depth > tree::MAX_DEPTH + 1 {
            return None;
        }
        let line = usize::try_from(self.number()?).ok()?;
        let value = match self.byte()? {
            0 => Value::Null,
            1 => Value::Bool(false),
            2 => Value::Bool(true),
            3 => Value::Int(i64::from_le_bytes(self.take(8)?.try_into().ok()?)),
            4 => Value::Float(f64::from_le_bytes(self.take(8)?.try_into().ok()?)),
            5 => Value::Str(self.text()?),
            6 => {
                let count = self.count()?;
                let mut items = Vec::with_capacity(count);
                for _ in 0..count {
                    items.push(self.node(depth + 1)?);
                }
                Value::Seq(items)
            }
            7 => {
                let count = self.count()?;
                let mut entries = Vec::with_capacity(count);
                for _ in 0..count {
                    let key = self.text()?;
                    let line = usize::try_from(self.number()?).ok()?;
                    let value = self.node(depth + 1)?;
                    entries.push(Entry { key, line, value });
                }
                Value::Map(entries)
            }
            _ => return None,
        };
        Some(Node { line, value })
    }

    fn byte(&mut self) -> Option<u8> {
        let byte = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(byte)
    }

    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.at.checked_add(n)?;
        let taken = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(taken)
    }

    fn number(&mut self) -> Option<u64> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            n |= u64::from(byte & 0x7f).checked_shl(shift)?;
            if byte & 0x80 == 0 {
                return Some(n);
            }
        }
        None
    }

    /// A count of items, each at least two bytes: more than the bytes left is damage (and no
    /// allocation is made for it).
    fn count(&mut self) -> Option<usize> {
        let count = usize::try_from(self.number()?).ok()?;
        (count <= (self.bytes.len() - self.at) / 2).then_some(count)
    }

    fn text(&mut self) -> Option<String> {
        let len = usize::try_from(self.number()?).ok()?;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPOSE: &str = "\
x-app: &app
  image: demo:${TAG:-v1}
  restart: unless-stopped
services:
  api:
    <<: *app
    ports: [\"127.0.0.1:8080:80\"]
    healthcheck: {interval: 1.5, retries: 3, disable: false}
    environment:
      EMPTY:
      COUNT: -42
      UNICODE: \"caf\u{e9} \u{2713}\"
";

    fn cache(dir: &Path, store: bool) -> ParseCache {
        ParseCache {
            dir: dir.join("cache"),
            store,
        }
    }

    fn entries(dir: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(dir.join("cache"))
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn a_kept_tree_is_the_tree_the_parser_gives_lines_included() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("compose.yaml");
        let cache = cache(dir.path(), true);
        let parsed = tree::parse(COMPOSE, "compose.yaml").unwrap();
        assert_eq!(cache.parse(&path, COMPOSE, "compose.yaml").unwrap(), parsed);
        let [entry] = entries(dir.path()).try_into().unwrap();
        let hash: [u8; 32] = Sha256::digest(COMPOSE.as_bytes()).into();
        let kept = decode(&std::fs::read(&entry).unwrap(), &hash).unwrap();
        assert_eq!(kept, parsed);
        assert_eq!(cache.parse(&path, COMPOSE, "compose.yaml").unwrap(), parsed);
    }

    #[test]
    fn the_shipped_stack_reads_back_as_parsed() {
        let text = include_str!("../../deploy/docker-compose.blue-green.yml");
        let parsed = tree::parse(text, "docker-compose.blue-green.yml").unwrap();
        let hash: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        assert_eq!(decode(&encode(&parsed, &hash), &hash), Some(parsed));
        // Not for another text.
        let parsed = tree::parse(text, "docker-compose.blue-green.yml").unwrap();
        assert_eq!(decode(&encode(&parsed, &hash), &[0; 32]), None);
    }

    #[test]
    fn an_edited_file_is_parsed_again_and_its_entry_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("compose.yaml");
        let cache = cache(dir.path(), true);
        cache.parse(&path, COMPOSE, "compose.yaml").unwrap();
        let edited = COMPOSE.replace("COUNT: -42", "COUNT: 7");
        let node = cache.parse(&path, &edited, "compose.yaml").unwrap();
        assert_eq!(node, tree::parse(&edited, "compose.yaml").unwrap());
        assert_eq!(entries(dir.path()).len(), 1, "one entry per compose file");
        // Back to the first text: parsed again, not confused with the edit.
        let node = cache.parse(&path, COMPOSE, "compose.yaml").unwrap();
        assert_eq!(node, tree::parse(COMPOSE, "compose.yaml").unwrap());
    }

    #[test]
    fn damaged_entries_are_misses_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("compose.yaml");
        let cache = cache(dir.path(), true);
        let parsed = tree::parse(COMPOSE, "compose.yaml").unwrap();
        cache.parse(&path, COMPOSE, "compose.yaml").unwrap();
        let [entry] = entries(dir.path()).try_into().unwrap();
        let good = std::fs::read(&entry).unwrap();
        let hash: [u8; 32] = Sha256::digest(COMPOSE.as_bytes()).into();
        // Every truncation, and every byte flipped, either fails to decode or (a changed
        // string's byte, say) decodes to some tree: never a panic, never an endless read.
        for len in 0..good.len() {
            assert_eq!(decode(&good[..len], &hash), None, "truncated to {len}");
        }
        for i in MAGIC.len() + 32..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0xff;
            let _ = decode(&bad, &hash);
        }
        std::fs::write(&entry, &good[..good.len() / 2]).unwrap();
        assert_eq!(cache.parse(&path, COMPOSE, "compose.yaml").unwrap(), parsed);
        assert_eq!(
            std::fs::read(&entry).unwrap(),
            good,
            "the torn entry was replaced"
        );
    }

    #[test]
    fn huge_counts_and_deep_nesting_in_an_entry_are_refused_without_allocating() {
        let hash = [7u8; 32];
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&hash);
        put_number(&mut huge, 1);
        huge.push(6);
        put_number(&mut huge, u64::MAX >> 1);
        assert_eq!(decode(&huge, &hash), None);
        let mut deep = MAGIC.to_vec();
        deep.extend_from_slice(&hash);
        for _ in 0..10_000 {
            put_number(&mut deep, 1);
            deep.push(6);
            put_number(&mut deep, 1);
        }
        assert_eq!(decode(&deep, &hash), None);
    }

    #[test]
    fn errors_are_not_kept_and_a_read_only_run_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("compose.yaml");
        let error = cache(dir.path(), true)
            .parse(&path, "services: [\n", "compose.yaml")
            .unwrap_err();
        assert!(error.to_string().starts_with("compose.yaml:"), "{error}");
        assert!(entries(dir.path()).is_empty());
        let node = cache(dir.path(), false)
            .parse(&path, COMPOSE, "compose.yaml")
            .unwrap();
        assert_eq!(node, tree::parse(COMPOSE, "compose.yaml").unwrap());
        assert!(entries(dir.path()).is_empty());
    }
}
