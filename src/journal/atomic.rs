//! Files that are whole or absent, never torn: written to a temporary file beside the target,
//! fsynced, renamed over the target, and the directory fsynced, so a crash at any instant leaves
//! the old content or the new. Used for `.current-environment`, state, backups, and the upstream
//! files Caddy reads (several at once, renamed back to back).

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

/// A file being written in place of `target`. Dropped without [`AtomicFile::commit`], the
/// temporary file is removed and `target` is untouched.
pub struct AtomicFile {
    target: PathBuf,
    temp: PathBuf,
    file: Option<File>,
}

impl AtomicFile {
    /// Creates the temporary file beside `target` (same directory, so the rename is atomic)
    /// with permission bits `mode` (e.g. 0o600 for backups).
    pub fn create(target: &Path, mode: u32) -> io::Result<AtomicFile> {
        let dir = parent(target);
        let name = target.file_name().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a file path", target.display()),
            )
        })?;
        let unique = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let temp = dir.join(format!(
            ".{}.tmp-{}-{unique}",
            name.to_string_lossy(),
            std::process::id()
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)?;
        Ok(AtomicFile {
            target: target.to_path_buf(),
            temp,
            file: Some(file),
        })
    }

    /// The temporary file, to write into.
    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("file is present until commit")
    }

    /// Where the content goes until it is committed.
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// Flushes and fsyncs the content, renames it over the target and fsyncs the directory.
    pub fn commit(mut self) -> io::Result<()> {
        let dir = parent(&self.target).to_path_buf();
        self.sync()?;
        self.install()?;
        File::open(dir)?.sync_all()
    }

    /// Like [`AtomicFile::commit`], but never replaces a file: the content goes to the first of
    /// `candidates` (the target first) that does not exist, checked and taken in one step by
    /// the kernel (`renameat2(RENAME_NOREPLACE)`, or a hard link where that is not supported).
    /// Returns the path it went to.
    pub fn commit_new(
        mut self,
        candidates: impl IntoIterator<Item = PathBuf>,
    ) -> io::Result<PathBuf> {
        self.sync()?;
        drop(self.file.take());
        let result = (|| {
            for candidate in candidates {
                match rename_no_replace(&self.temp, &candidate) {
                    Ok(()) => {
                        File::open(parent(&candidate))?.sync_all()?;
                        return Ok(candidate);
                    }
                    Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
                    Err(error) => return Err(error),
                }
            }
            Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("every name for {} is taken", self.target.display()),
            ))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&self.temp);
        }
        result
    }

    /// Renames the (synced) content over the target; the directory is left to the caller to
    /// fsync. A failed rename removes the temporary file.
    fn install(mut self) -> io::Result<()> {
        drop(self.file.take());
        std::fs::rename(&self.temp, &self.target).inspect_err(|_| {
            let _ = std::fs::remove_file(&self.temp);
        })
    }

    /// Flushes and fsyncs the content.
    fn sync(&mut self) -> io::Result<()> {
        let file = self.file();
        file.flush()?;
        file.sync_all()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Replaces `target` with `content` atomically.
pub fn write(target: &Path, content: &[u8], mode: u32) -> io::Result<()> {
    let mut file = AtomicFile::create(target, mode)?;
    file.file().write_all(content)?;
    file.commit()
}

/// Replaces several files, each atomically, in two steps: this one writes and fsyncs every
/// content to a temporary file beside its target and renames nothing (it can run ahead of the
/// moment the files must change: a switch's slot files, written while its target's health is
/// checked); [`Prepared::install`] then renames them into place back to back, in the order
/// given (so they change within microseconds of each other, never out of order), and fsyncs
/// each directory once. Until then the targets are untouched; dropped, the temporary files are
/// removed. On an error, files renamed before it have their new content and the others their
/// old one; none is ever torn.
///
/// Each file's writeback is started as soon as it is written (`sync_file_range`), so the first
/// fsync commits them all and the others find nothing left to wait for: one journal commit for
/// a switch's ten slot files, where ten fsyncs one after another each waited for its own.
pub fn prepare_all(files: &[(&Path, &[u8])], mode: u32) -> io::Result<Prepared> {
    let mut pending = Vec::with_capacity(files.len());
    for (target, content) in files {
        let mut file = AtomicFile::create(target, mode)?;
        file.file().write_all(content)?;
        start_writeback(file.file());
        pending.push(file);
    }
    for file in &mut pending {
        file.sync()?;
    }
    Ok(Prepared { files: pending })
}

/// Contents written and fsynced beside their targets ([`prepare_all`]), not yet in place.
pub struct Prepared {
    files: Vec<AtomicFile>,
}

impl Prepared {
    /// Renames the contents of `order`'s targets over them, in that order, then fsyncs each
    /// directory once; the contents of targets `order` leaves out are removed. A target that
    /// was not prepared is an error, raised before anything is renamed.
    pub fn install(mut self, order: &[&Path]) -> io::Result<()> {
        let mut picked = Vec::with_capacity(order.len());
        for target in order {
            let i = self
                .files
                .iter()
                .position(|f| f.target == *target)
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("no content was prepared for {}", target.display()),
                    )
                })?;
            picked.push(self.files.swap_remove(i));
        }
        let mut dirs: Vec<PathBuf> = Vec::new();
        for file in picked {
            let dir = parent(&file.target).to_path_buf();
            file.install()?;
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        for dir in dirs {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// Asks the kernel to start writing `file`'s data out now, without waiting. Only a head start
/// for the fsync that follows, which alone makes the data durable: where the call is refused,
/// nothing is lost but the head start.
fn start_writeback(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on a descriptor this process owns; no memory is passed.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Removes temporary files of `target` left by processes that died mid-write (a `kill -9`
/// between create and rename). Files of live processes are left alone: they may be mid-write.
pub fn remove_abandoned(target: &Path) {
    remove_abandoned_of(&[target]);
}

/// [`remove_abandoned`] for several targets, each directory read once.
pub fn remove_abandoned_of(targets: &[&Path]) {
    let mut dirs: Vec<&Path> = Vec::new();
    for target in targets {
        let dir = parent(target);
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    for dir in dirs {
        let prefixes: Vec<String> = targets
            .iter()
            .filter(|t| parent(t) == dir)
            .filter_map(|t| t.file_name())
            .map(|name| format!(".{}.tmp-", name.to_string_lossy()))
            .collect();
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(pid) = file_name
                .to_str()
                .and_then(|n| prefixes.iter().find_map(|p| n.strip_prefix(p.as_str())))
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<i32>().ok())
            else {
                continue;
            };
            if !crate::journal::identity::process_exists(pid) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Opens `path` with `options` without following a symbolic link (`O_NOFOLLOW`: a link planted
/// at the path is an error naming it, never a way to write to what it points at) and keeps the
/// file private to its owner (0600, tightened if it was created looser): the lock and the
/// journal name who ran what, with which arguments.
pub fn open_private(options: &mut OpenOptions, path: &Path) -> io::Result<File> {
    use std::os::unix::fs::PermissionsExt;
    let file = options
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|error| {
            if error.raw_os_error() == Some(libc::ELOOP) {
                io::Error::new(
                    error.kind(),
                    format!(
                        "{} is a symbolic link, which cutover does not follow: remove it",
                        path.display()
                    ),
                )
            } else {
                error
            }
        })?;
    let mode = file.metadata()?.permissions().mode();
    if mode & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(mode & 0o7700))?;
    }
    Ok(file)
}

/// Renames `from` to `to` unless `to` exists (then `AlreadyExists`), atomically.
fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))
    };
    let (source, target) = (c(from)?, c(to)?);
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            source.as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        // A file system without RENAME_NOREPLACE: a hard link fails as well if `to` exists.
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => {
            std::fs::hard_link(from, to)?;
            std::fs::remove_file(from)
        }
        _ => Err(error),
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_never_opened_through_a_link() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("precious");
        std::fs::write(&target, "keep").unwrap();
        let link = dir.path().join("cutover.lock");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        let error = open_private(&mut options, &link).unwrap_err().to_string();
        assert!(error.contains("cutover.lock is a symbolic link"), "{error}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        let loose = dir.path().join("journal");
        std::fs::write(&loose, "").unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
        open_private(OpenOptions::new().append(true), &loose).unwrap();
        let mode = std::fs::metadata(&loose).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn commit_new_never_replaces_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("b.dump");
        std::fs::write(&first, "first").unwrap();
        let second = dir.path().join("b-2.dump");
        let mut file = AtomicFile::create(&first, 0o600).unwrap();
        file.file().write_all(b"new").unwrap();
        let went = file.commit_new([first.clone(), second.clone()]).unwrap();
        assert_eq!(went, second);
        assert_eq!(std::fs::read_to_string(&first).unwrap(), "first");
        assert_eq!(std::fs::read_to_string(&second).unwrap(), "new");
        let mut file = AtomicFile::create(&first, 0o600).unwrap();
        file.file().write_all(b"newer").unwrap();
        assert!(file.commit_new([first.clone(), second.clone()]).is_err());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            2,
            "temp file left"
        );
    }

    #[test]
    fn commit_replaces_and_drop_discards() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("state");
        write(&target, b"old", 0o644).unwrap();
        let mut pending = AtomicFile::create(&target, 0o644).unwrap();
        pending.file().write_all(b"half").unwrap();
        drop(pending);
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temp file left behind"
        );
        write(&target, b"new", 0o600).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
    }

    #[test]
    fn installed_files_are_all_replaced_and_leave_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        write(&a, b"old", 0o644).unwrap();
        let write_all = |files: &[(&Path, &[u8])], mode| {
            let order: Vec<&Path> = files.iter().map(|(target, _)| *target).collect();
            prepare_all(files, mode)?.install(&order)
        };
        write_all(&[(a.as_path(), b"new a"), (b.as_path(), b"new b")], 0o644).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), b"new a");
        assert_eq!(std::fs::read(&b).unwrap(), b"new b");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        // A file that cannot be created stops the batch before any rename: nothing changes.
        let nowhere = dir.path().join("missing/c");
        assert!(write_all(&[(a.as_path(), b"x"), (nowhere.as_path(), b"y")], 0o644).is_err());
        assert_eq!(std::fs::read(&a).unwrap(), b"new a");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn prepared_contents_change_nothing_until_installed_and_only_those_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let [a, b, c] = ["a", "b", "c"].map(|n| dir.path().join(n));
        for f in [&a, &b, &c] {
            write(f, b"old", 0o644).unwrap();
        }
        let files = [
            (a.as_path(), &b"new a"[..]),
            (b.as_path(), b"new b"),
            (c.as_path(), b"new c"),
        ];
        let prepared = prepare_all(&files, 0o644).unwrap();
        // Written beside the targets, which still hold what they held.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 6);
        assert!(
            [&a, &b, &c]
                .iter()
                .all(|f| std::fs::read(f).unwrap() == b"old")
        );
        prepared.install(&[c.as_path(), a.as_path()]).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), b"new a");
        assert_eq!(std::fs::read(&b).unwrap(), b"old");
        assert_eq!(std::fs::read(&c).unwrap(), b"new c");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            3,
            "temp file left"
        );
        // A target never prepared is refused before any rename; dropped, nothing is left.
        let prepared = prepare_all(&files[..1], 0o644).unwrap();
        let error = prepared.install(&[a.as_path(), b.as_path()]).unwrap_err();
        assert!(
            error.to_string().contains("no content was prepared for"),
            "{error}"
        );
        assert_eq!(std::fs::read(&a).unwrap(), b"new a");
        drop(prepare_all(&files, 0o644).unwrap());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            3,
            "temp file left"
        );
    }

    #[test]
    fn abandoned_temp_files_of_dead_processes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("state");
        let dead = dir.path().join(".state.tmp-2147483646-5");
        let mine = dir
            .path()
            .join(format!(".state.tmp-{}-5", std::process::id()));
        std::fs::write(&dead, "x").unwrap();
        std::fs::write(&mine, "x").unwrap();
        remove_abandoned(&target);
        assert!(!dead.exists());
        assert!(mine.exists());
    }

    #[test]
    fn abandoned_temp_files_of_several_targets_go_and_others_stay() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let left = [".a.tmp-2147483646-1", ".b.tmp-2147483646-2"];
        let kept = [".c.tmp-2147483646-3", "a", ".a.tmp-x"];
        for name in left.iter().chain(&kept) {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        remove_abandoned_of(&[&a, &b]);
        for name in left {
            assert!(!dir.path().join(name).exists(), "{name} left");
        }
        for name in kept {
            assert!(dir.path().join(name).exists(), "{name} removed");
        }
    }
}
