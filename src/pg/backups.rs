//! The backup naming convention and retention. A backup of database `DB` taken at a UTC instant
//! is named `DB-YYYYMMDD-HHMMSS.EXT`, where EXT is `sql` (plain), `sql.gz` (plain, gzipped) or
//! `dump` (custom format), e.g. `shop-20260126-043102.sql.gz`. Names sort by time, so "the newest
//! N backups of a database in a directory" needs nothing but the names: retention keeps those and
//! deletes the rest, and touches no other file (other databases, other names, temporary files).

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

/// The stamp of `name` if it is a conventional backup name of `db`.
pub fn parse(db: &str, name: &str) -> Option<String> {
    let rest = name.strip_prefix(db)?.strip_prefix('-')?;
    let (stamp, extension) = rest.split_at_checked(15)?;
    let extension = extension.strip_prefix('.')?;
    let (date, time) = stamp.split_once('-')?;
    let digits = |s: &str, n| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    (digits(date, 8) && digits(time, 6) && EXTENSIONS.contains(&extension))
        .then(|| stamp.to_string())
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
            let stamp = parse(db, &name)?;
            let modified = entry.metadata().and_then(|m| m.modified()).ok();
            Some((
                Backup {
                    path: entry.path(),
                    stamp,
                },
                modified,
            ))
        })
        .collect();
    // Two backups stamped in the same second: the one written last is the newer.
    backups.sort_by(|(a, a_modified), (b, b_modified)| {
        (&b.stamp, b_modified, &b.path).cmp(&(&a.stamp, a_modified, &a.path))
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
