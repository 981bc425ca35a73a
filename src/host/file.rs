//! `file::*`: files from a runbook — a report's input, a marker's age, a switch the proxy reads
//! (maintenance mode). Reading changes nothing, so `read`, `exists`, `stat` and `sha256` work
//! in readonly runbooks and dry runs (where `exec::run(["cat", …])` is refused, rightly: it runs a program).
//! `write` and `remove` are changes: `write` replaces a file whole and atomically; both are
//! refused in a readonly runbook, only described in a dry run, journaled.

use std::{io::Read, path::Path, sync::Arc};

use rhai::{Map, Module};

use super::{fail, function};
use crate::context::Context;

/// The largest file `file::read` returns: bigger is an error, not a memory spike.
const MAX_READ: u64 = 16 << 20;

pub fn module(context: &Arc<Context>) -> Module {
    let mut module = Module::new();
    function!(&mut module,
        /// Replaces the file at `path` with `text`, whole: a reader (Caddy reading a `{file.…}`
        /// placeholder for every request) sees the old text or the new, never a mix. Parent
        /// directories are created. A change: refused in a readonly runbook, described in a dry
        /// run, journaled (with the text's size, not the text).
        ///
        /// ```rhai
        /// file::write("deploy/caddy/maintenance/message", "Back at 14:00 UTC");
        /// ```
        fn write[context](call, path: &str, text: &str) -> () {
            let detail = format!("{path} ({} bytes)", text.len());
            context.change("file::write", &detail, || (), || {
                let target = Path::new(path);
                if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| fail(format!("file::write {path}: {e}")))?;
                }
                crate::journal::atomic::write(target, text.as_bytes(), 0o644)
                    .map_err(|e| fail(format!("file::write {path}: {e}")))
            })
        }
    );
    function!(&mut module,
        /// Deletes the file at `path` (a file, never a directory): a change, refused in a
        /// readonly runbook, described in a dry run, journaled. A missing file is an error
        /// naming it, so a script never believes it deleted what was not there.
        ///
        /// ```rhai
        /// if file::exists("deploy/backups/app-before-green-v1-20260101-000000.dump") {
        ///     file::remove("deploy/backups/app-before-green-v1-20260101-000000.dump");
        /// }
        /// ```
        fn remove[context](call, path: &str) -> () {
            context.change("file::remove", path, || (), || {
                std::fs::remove_file(path).map_err(|e| fail(format!("file::remove {path}: {e}")))
            })
        }
    );
    function!(&mut module,
        /// The text of the file at `path` (UTF-8; invalid bytes become U+FFFD), at most 16 MiB.
        /// A missing or unreadable file is an error naming it.
        ///
        /// ```rhai
        /// let version = file::read("deploy/VERSION");
        /// version.trim();
        /// ```
        fn read(call, path: &str) -> String {
            let file = std::fs::File::open(path).map_err(|e| fail(format!("file::read {path}: {e}")))?;
            let mut bytes = Vec::new();
            file.take(MAX_READ + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| fail(format!("file::read {path}: {e}")))?;
            if bytes.len() as u64 > MAX_READ {
                return Err(fail(format!("file::read {path}: larger than 16 MiB")));
            }
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        }
    );
    function!(&mut module,
        /// True when something exists at `path` (a file, a directory, a link's target).
        ///
        /// ```rhai
        /// if !file::exists("deploy/.env.blue-green") { throw "no settings: run 'cutover demo'"; }
        /// ```
        fn exists(call, path: &str) -> bool {
            Ok(Path::new(path).exists())
        }
    );
    function!(&mut module,
        /// What the file system says of `path`: `#{size, modified, age_ms, is_dir}` (`modified`
        /// in ms since the epoch, `age_ms` since it was last modified). A missing path throws.
        ///
        /// ```rhai
        /// let backup = file::stat("deploy/backups/latest.dump");
        /// if backup.age_ms > 86_400_000 { log::warn(`the last backup is ${backup.age_ms / 3_600_000} h old`); }
        /// ```
        fn stat(call, path: &str) -> Map {
            let meta = std::fs::metadata(path).map_err(|e| fail(format!("file::stat {path}: {e}")))?;
            let modified = meta
                .modified()
                .ok()
                .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as i64);
            let mut map = Map::new();
            map.insert("size".into(), (meta.len() as i64).into());
            map.insert("modified".into(), modified.into());
            map.insert("age_ms".into(), (jiff::Timestamp::now().as_millisecond() - modified).into());
            map.insert("is_dir".into(), meta.is_dir().into());
            Ok(map)
        }
    );
    function!(&mut module,
        /// The SHA-256 of the file at `path`, lowercase hex, read through in chunks (any size,
        /// flat memory): checks a backup against the checksum recorded when it was written. A
        /// missing or unreadable file is an error naming it.
        ///
        /// ```rhai
        /// let backup = pg::dump(#{container: "deploy-postgres-1", db: "app", to: "backups/"});
        /// if file::sha256(backup.path) != backup.sha256 { throw `${backup.path} does not read back as written`; }
        /// ```
        fn sha256(call, path: &str) -> String {
            crate::pg::dump::sha256_file(Path::new(path))
                .map_err(|e| fail(format!("file::sha256 {path}: {e}")))
        }
    );
    module
}
