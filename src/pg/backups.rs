//! The backup naming convention and retention. A backup of database `DB` taken at a UTC instant
//! is named `DB-YYYYMMDD-HHMMSS.EXT`, where EXT is `sql` (plain), `sql.gz` (plain, gzipped) or
//! `dump` (custom format), e.g. `shop-20260126-043102.sql.gz`; a second backup in the same second
//! is `DB-YYYYMMDD-HHMMSS-2.EXT` (then `-3`…), so no backup ever replaces another. Names sort by
//! time, so "the newest N backups of a database in a directory" needs nothing but the names:
//! retention keeps those and deletes the rest, and touches no other file (other databases, other
//! names) — except the temporary files of backups whose writer died (a `kill -9`d dump), which
//! the next backup or prune of the database removes.

use std::path::{Path, PathBuf};

use crate::pg::dump::Format;

/// The extensions a conventional backup name may end with, and what each holds.
const EXTENSIONS: [&str; 3] = ["sql.gz", "sql", "dump"];

#[derive(Debug, thiserror::Error)]
pub enum NameError {
    #[error(
        "database name {0:?} cannot be part of a backup file name (it is empty, starts with a dot \
         or holds a slash or NUL)"
    )]
    Unusable(String),
    #[error("directory {} does not exist", .0.display())]
    NoDirectory(PathBuf),
}

/// A backup found in a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    pub path: PathBuf,
    /// `YYYYMMDD-HHMMSS`, UTC; sorts as time does.
    pub stamp: String,
    /// 1, or N of a name ending in `-N` (the Nth backup of that second).
    pub sequence: u32,
}

/// The extension of a backup in `format`, gzipped or not.
pub fn extension(format: Format, gzip: bool) -> &'static str {
    match (format, gzip) {
        (Format::Plain, false) => "sql",
        (Format::Plain, true) => "sql.gz",
        (Format::Custom, _) => "dump",
    }
}

/// The conventional name of a backup of `db` taken at `at`.
pub fn file_name(
    db: &str,
    format: Format,
    gzip: bool,
    at: jiff::Timestamp,
) -> Result<String, NameError> {
    check_db(db)?;
    Ok(format!(
        "{db}-{}.{}",
        at.strftime("%Y%m%d-%H%M%S"),
        extension(format, gzip)
    ))
}

fn check_db(db: &str) -> Result<(), NameError> {
    if db.is_empty() || db.starts_with('.') || db.contains(['/', '\0']) {
        return Err(NameError::Unusable(db.to_string()));
    }
    Ok(())
}

/// The Nth name (N ≥ 1) for a backup named `name` by [`file_name`]: `name` itself, then
/// `DB-YYYYMMDD-HHMMSS-N.EXT`.
pub fn numbered(name: &str, n: u32) -> String {
    if n <= 1 {
        return name.to_string();
    }
    for extension in EXTENSIONS {
        if let Some(stem) = name.strip_suffix(&format!(".{extension}")) {
            return format!("{stem}-{n}.{extension}");
        }
    }
    format!("{name}-{n}")
}

/// The stamp of `name` if it is a conventional backup name of `db`.
#[cfg(test)]
fn parse(db: &str, name: &str) -> Option<String> {
    parse_numbered(db, name).map(|(stamp, _)| stamp)
}

/// The stamp and sequence number of `name` if it is a conventional backup name of `db`.
fn parse_numbered(db: &str, name: &str) -> Option<(String, u32)> {
    let rest = name.strip_prefix(db)?.strip_prefix('-')?;
    let (stamp, rest) = rest.split_at_checked(15)?;
    let (sequence, extension) = match rest.strip_prefix('-') {
        Some(numbered) => {
            let (n, extension) = numbered.split_once('.')?;
            let value: u32 = n.parse().ok()?;
            // Only the canonical spelling: `-2`, never `-1` or `-02`.
            (value >= 2 && value.to_string() == n).then_some(())?;
            (value, extension)
        }
        None => (1, rest.strip_prefix('.')?),
    };
    let (date, time) = stamp.split_once('-')?;
    let digits = |s: &str, n| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    (digits(date, 8) && digits(time, 6) && EXTENSIONS.contains(&extension))
        .then(|| (stamp.to_string(), sequence))
}

/// Removes the temporary files of backups of `db` in `dir` whose writer is gone (a dump killed
/// before it could clean up); those of live processes may be mid-write and stay. Returns how
/// many it removed.
pub fn remove_abandoned(dir: &Path, db: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().into_string().ok() else {
            continue;
        };
        // `.NAME.tmp-PID-N`, as `AtomicFile` names them.
        let Some((backup, rest)) = name.strip_prefix('.').and_then(|n| n.rsplit_once(".tmp-"))
        else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<i32>().ok());
        if let Some(pid) = pid
            && parse_numbered(db, backup).is_some()
            && !crate::journal::identity::process_exists(pid)
            && std::fs::remove_file(entry.path()).is_ok()
        {
            tracing::info!(
                "removed {}, left by a backup that was killed",
                entry.path().display()
            );
            removed += 1;
        }
    }
    removed
}

/// The backups of `db` in `dir`, newest first.
pub fn list(dir: &Path, db: &str) -> Result<Vec<Backup>, NameError> {
    check_db(db)?;
    if !dir.is_dir() {
        return Err(NameError::NoDirectory(dir.to_path_buf()));
    }
    let mut backups: Vec<(Backup, Option<std::time::SystemTime>)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let (stamp, sequence) = parse_numbered(db, &name)?;
            let modified = entry.metadata().and_then(|m| m.modified()).ok();
            Some((
                Backup {
                    path: entry.path(),
                    stamp,
                    sequence,
                },
                modified,
            ))
        })
        .collect();
    // Two backups stamped in the same second: the higher number, else the one written last,
    // is the newer.
    backups.sort_by(|(a, a_modified), (b, b_modified)| {
        (&b.stamp, b.sequence, b_modified, &b.path)
            .cmp(&(&a.stamp, a.sequence, a_modified, &a.path))
    });
    let backups: Vec<Backup> = backups.into_iter().map(|(backup, _)| backup).collect();
    Ok(backups)
}

/// Which backups of `db` in `dir` to keep (the newest `keep`) and which to delete.
pub fn plan_prune(
    dir: &Path,
    db: &str,
    keep: usize,
) -> Result<(Vec<Backup>, Vec<Backup>), NameError> {
    let mut backups = list(dir, db)?;
    let deleted = backups.split_off(keep.min(backups.len()));
    Ok((backups, deleted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_convention() {
        let at: jiff::Timestamp = "2026-01-26T04:31:02Z".parse().unwrap();
        assert_eq!(
            file_name("shop", Format::Plain, true, at).unwrap(),
            "shop-20260126-043102.sql.gz"
        );
        assert_eq!(
            file_name("shop", Format::Custom, false, at).unwrap(),
            "shop-20260126-043102.dump"
        );
        assert!(file_name("../etc", Format::Plain, false, at).is_err());
        assert!(file_name("", Format::Plain, false, at).is_err());
    }

    #[test]
    fn parse_is_strict() {
        assert_eq!(
            parse("shop", "shop-20260126-043102.sql").as_deref(),
            Some("20260126-043102")
        );
        assert_eq!(
            parse("my-app", "my-app-20260126-043102.dump").as_deref(),
            Some("20260126-043102")
        );
        for other in [
            "shop-staging-20260126-043102.sql",
            "shop-20260126-043102.sql.bak",
            "shop-2026012-0431020.sql",
            ".shop-20260126-043102.sql.tmp-1-2",
            "shopx-20260126-043102.sql",
            "shop-20260126-043102",
        ] {
            assert_eq!(parse("shop", other), None, "{other}");
        }
        assert_eq!(parse("my", "my-app-20260126-043102.sql"), None);
        assert_eq!(
            parse_numbered("shop", "shop-20260126-043102-12.sql.gz"),
            Some(("20260126-043102".into(), 12))
        );
        for other in [
            "shop-20260126-043102-1.sql",
            "shop-20260126-043102-02.sql",
            "shop-20260126-043102-.sql",
            "shop-20260126-043102-x.sql",
        ] {
            assert_eq!(parse("shop", other), None, "{other}");
        }
    }

    #[test]
    fn numbered_names_sort_after_their_second() {
        assert_eq!(
            numbered("a-20260126-043102.sql.gz", 1),
            "a-20260126-043102.sql.gz"
        );
        assert_eq!(
            numbered("a-20260126-043102.sql.gz", 3),
            "a-20260126-043102-3.sql.gz"
        );
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "a-20260126-043102-2.dump",
            "a-20260126-043102-10.dump",
            "a-20260126-043102.dump",
        ] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        let names: Vec<String> = list(dir.path(), "a")
            .unwrap()
            .iter()
            .map(|b| b.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "a-20260126-043102-10.dump",
                "a-20260126-043102-2.dump",
                "a-20260126-043102.dump"
            ]
        );
    }

    #[test]
    fn temporaries_of_dead_writers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let live = format!(".a-20260126-043102.dump.tmp-{}-7", std::process::id());
        for name in [
            ".a-20260126-043102.dump.tmp-2147483646-5",
            ".a-20260126-043102-2.sql.gz.tmp-2147483645-1",
            ".b-20260126-043102.dump.tmp-2147483646-5",
            ".notes.tmp-2147483646-5",
            &live,
        ] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        assert_eq!(remove_abandoned(dir.path(), "a"), 2);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                live.as_str(),
                ".b-20260126-043102.dump.tmp-2147483646-5",
                ".notes.tmp-2147483646-5"
            ]
        );
    }

    #[test]
    fn prune_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "shop-20260101-000000.sql",
            "shop-20260103-000000.dump",
            "shop-20260102-000000.sql.gz",
            "shop-20251231-235959.sql",
            "other-20270101-000000.sql",
            "notes.txt",
        ] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        let (kept, deleted) = plan_prune(dir.path(), "shop", 2).unwrap();
        let names = |b: &[Backup]| -> Vec<String> {
            b.iter()
                .map(|b| b.path.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(
            names(&kept),
            ["shop-20260103-000000.dump", "shop-20260102-000000.sql.gz"]
        );
        assert_eq!(
            names(&deleted),
            ["shop-20260101-000000.sql", "shop-20251231-235959.sql"]
        );
        assert!(plan_prune(&dir.path().join("nope"), "shop", 1).is_err());
    }
}
