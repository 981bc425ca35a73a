//! Backups with `pg_dump`: its output streams, as it arrives, into a temporary file beside the
//! target (hashed, and gzipped if asked, on the way), which is fsynced and renamed over the target
//! only when `pg_dump` exits 0. So a backup is whole or absent: a dump that fails, is killed, or
//! is interrupted leaves nothing at the target, and says why. Backups are written mode 0600.

use std::{
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use bollard::Docker;
use sha2::{Digest, Sha256};

use crate::{
    journal::atomic::AtomicFile,
    pg::program::{self, CHUNK, Program, ProgramError},
    pg::target::Target,
};

/// Permission bits of every backup: the data is as sensitive as the database.
pub const BACKUP_MODE: u32 = 0o600;
/// gzip level when none is given: what `gzip` itself uses.
pub const DEFAULT_GZIP_LEVEL: u32 = 6;

/// pg_dump's output formats that stream (the directory format is not a stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// SQL text, restored with psql.
    Plain,
    /// pg_dump's compressed archive, restored with pg_restore.
    Custom,
}

impl Format {
    pub fn parse(name: &str) -> Option<Format> {
        match name {
            "plain" | "p" | "sql" => Some(Format::Plain),
            "custom" | "c" => Some(Format::Custom),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Plain => "plain",
            Format::Custom => "custom",
        }
    }
}

pub struct DumpRequest {
    pub target: Target,
    pub to: PathBuf,
    pub format: Format,
    /// gzip level (1–9) for a plain dump; None writes it uncompressed.
    pub gzip: Option<u32>,
    /// More pg_dump arguments, e.g. `--schema=public`.
    pub extra_args: Vec<String>,
}

/// A backup that was written.
#[derive(Debug)]
pub struct Dumped {
    pub path: PathBuf,
    /// Size of the file (compressed, if gzipped).
    pub bytes: u64,
    /// SHA-256 of the file, lowercase hex.
    pub sha256: String,
    pub took: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("cannot write {}: directory {} does not exist", path.display(), dir.display())]
    NoDirectory { path: PathBuf, dir: PathBuf },
    #[error("cannot write {}: {source}", path.display())]
    Create { path: PathBuf, source: io::Error },
    #[error("gzip applies to plain dumps; a custom dump is compressed already")]
    GzipCustom,
    #[error(transparent)]
    Program(#[from] ProgramError),
    #[error("{0}; nothing was written to {1}")]
    Failed(String, String),
}

/// Dumps `request.target` into `request.to`. `docker` is needed for a container target.
/// `progress` is told the number of bytes pg_dump has written so far, now and then.
pub async fn dump(
    request: &DumpRequest,
    docker: Option<&Docker>,
    progress: &mut dyn FnMut(u64),
) -> Result<Dumped, DumpError> {
    let started = Instant::now();
    if request.format == Format::Custom && request.gzip.is_some() {
        return Err(DumpError::GzipCustom);
    }
    let path = &request.to;
    check_directory(path)?;
    let mut file = AtomicFile::create(path, BACKUP_MODE).map_err(|source| DumpError::Create {
        path: path.clone(),
        source,
    })?;
    let failed = |why: String| DumpError::Failed(why, path.display().to_string());

    let mut args = vec![format!("--format={}", request.format.name())];
    args.extend(request.extra_args.iter().cloned());
    args.extend(request.target.connection_args());
    let program = Program {
        name: "pg_dump",
        args,
        env: request.target.environment(),
    };
    let container = request.target.container_name().map(|name| {
        (
            docker.expect("a container target comes with a Docker client"),
            name,
        )
    });

    let (dumped_bytes, bytes, sha256) = if container.is_none() && request.gzip.is_none() {
        // Straight into the file, as `pg_dump > file` would, hashed as it grows. A custom archive
        // is hashed once complete: pg_dump goes back to fill in its table of contents.
        let reader = std::fs::File::open(file.temp_path()).map_err(|source| DumpError::Create {
            path: path.clone(),
            source,
        })?;
        let out: &std::fs::File = file.file();
        let mut follower = Follower::new(&reader, request.format == Format::Plain, progress);
        let outcome =
            program::run_into_file(&program, out, &mut |exited| follower.take(exited)).await?;
        if !outcome.success() {
            return Err(failed(outcome.describe("pg_dump")));
        }
        let (bytes, sha256) = follower.digest();
        (bytes, bytes, sha256)
    } else {
        let mut sink = Sink::new(file.file(), request.gzip, progress);
        let outcome = program::run(&program, container, None, &mut sink).await?;
        if !outcome.success() {
            return Err(failed(outcome.describe("pg_dump")));
        }
        sink.finish()
            .map_err(|e| failed(format!("writing {}: {e}", file.temp_path().display())))?
    };
    let dumped = started.elapsed();
    file.commit()
        .map_err(|e| failed(format!("saving {}: {e}", path.display())))?;
    tracing::debug!(
        "pg_dump wrote {dumped_bytes} bytes in {} ms; {} fsynced and renamed in {} ms",
        dumped.as_millis(),
        path.display(),
        (started.elapsed() - dumped).as_millis()
    );
    Ok(Dumped {
        path: path.clone(),
        bytes,
        sha256,
        took: started.elapsed(),
    })
}

/// Fails unless the directory that will hold `path` exists.
pub fn check_directory(path: &Path) -> Result<(), DumpError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(DumpError::NoDirectory {
            path: path.to_path_buf(),
            dir: dir.to_path_buf(),
        });
    }
    Ok(())
}

/// Reads a file as pg_dump writes it, hashing each new piece and asking the kernel to start
/// writing it to disk (so the fsync at the end has little left to do).
struct Follower<'a> {
    file: &'a std::fs::File,
    /// Hash while the file grows (else only once the writer has exited).
    live: bool,
    offset: u64,
    hash: Sha256,
    buffer: Vec<u8>,
    progress: &'a mut dyn FnMut(u64),
    reported: Instant,
    /// When the writer was first seen to have exited.
    exited: Option<Instant>,
}

impl<'a> Follower<'a> {
    fn new(file: &'a std::fs::File, live: bool, progress: &'a mut dyn FnMut(u64)) -> Follower<'a> {
        Follower {
            file,
            live,
            offset: 0,
            hash: Sha256::new(),
            buffer: vec![0; CHUNK],
            progress,
            reported: Instant::now(),
            exited: None,
        }
    }

    /// Takes what is new in the file; returns its size in bytes.
    fn take(&mut self, exited: bool) -> io::Result<usize> {
        if exited && self.exited.is_none() {
            self.exited = Some(Instant::now());
        }
        if self.reported.elapsed() >= Duration::from_millis(100) {
            self.reported = Instant::now();
            (self.progress)(self.file.metadata()?.len());
        }
        if !self.live && !exited {
            return Ok(0);
        }
        let n = std::os::unix::fs::FileExt::read_at(self.file, &mut self.buffer, self.offset)?;
        if n > 0 {
            self.hash.update(&self.buffer[..n]);
            if self.live {
                start_writeback(self.file, self.offset, n);
            }
            self.offset += n as u64;
        }
        Ok(n)
    }

    fn digest(self) -> (u64, String) {
        if let Some(exited) = self.exited {
            tracing::debug!(
                "pg_dump output hashed {} ms after pg_dump exited",
                exited.elapsed().as_millis()
            );
        }
        (self.offset, hex(&self.hash.finalize()))
    }
}

/// Starts writing a range of `file` to disk without waiting for it.
fn start_writeback(file: &std::fs::File, offset: u64, len: usize) {
    use std::os::fd::AsRawFd;
    // Best effort: without it the final fsync only takes longer.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        )
    };
}

/// Where pg_dump's output goes: optionally through gzip, then through the hash into the file.
struct Sink<'a> {
    out: Output<'a>,
    dumped: u64,
    progress: &'a mut dyn FnMut(u64),
    reported: Instant,
}

enum Output<'a> {
    /// Chunks arrive big already (up to 1 MiB), so they go straight to the file.
    Plain(Hashed<&'a mut std::fs::File>),
    /// The encoder writes small pieces: buffer them into big writes.
    Gzip(Box<flate2::write::GzEncoder<Hashed<BufWriter<&'a mut std::fs::File>>>>),
}

impl<'a> Sink<'a> {
    fn new(
        file: &'a mut std::fs::File,
        gzip: Option<u32>,
        progress: &'a mut dyn FnMut(u64),
    ) -> Sink<'a> {
        let out = match gzip {
            None => Output::Plain(Hashed::new(file)),
            Some(level) => Output::Gzip(Box::new(flate2::write::GzEncoder::new(
                Hashed::new(BufWriter::with_capacity(CHUNK, file)),
                flate2::Compression::new(level.clamp(1, 9)),
            ))),
        };
        Sink {
            out,
            dumped: 0,
            progress,
            reported: Instant::now(),
        }
    }

    /// Completes the file; returns the bytes dumped, the bytes in the file and its SHA-256.
    fn finish(self) -> io::Result<(u64, u64, String)> {
        let (bytes, sha256) = match self.out {
            Output::Plain(hashed) => hashed.digest(),
            Output::Gzip(encoder) => {
                let mut hashed = encoder.finish()?;
                hashed.inner.flush()?;
                hashed.digest()
            }
        };
        Ok((self.dumped, bytes, sha256))
    }
}

impl Write for Sink<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match &mut self.out {
            Output::Plain(hashed) => hashed.write_all(data)?,
            Output::Gzip(encoder) => encoder.write_all(data)?,
        }
        self.dumped += data.len() as u64;
        if self.reported.elapsed() >= Duration::from_millis(100) {
            self.reported = Instant::now();
            (self.progress)(self.dumped);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Flushing gzip mid-stream would hurt compression; `finish` completes the file.
        Ok(())
    }
}

/// A writer that hashes and counts what passes through it.
struct Hashed<W> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W> Hashed<W> {
    fn new(inner: W) -> Hashed<W> {
        Hashed {
            inner,
            hash: Sha256::new(),
            bytes: 0,
        }
    }

    fn digest(self) -> (u64, String) {
        (self.bytes, hex(&self.hash.finalize()))
    }
}

impl<W: Write> Write for Hashed<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(data)?;
        self.hash.update(&data[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.inner.write_all(data)?;
        self.hash.update(data);
        self.bytes += data.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut text, b| {
        let _ = write!(text, "{b:02x}");
        text
    })
}

/// SHA-256 of a file, lowercase hex, read in big chunks.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hash = Sha256::new();
    let mut buffer = vec![0; CHUNK];
    loop {
        let n = io::Read::read(&mut file, &mut buffer)?;
        if n == 0 {
            return Ok(hex(&hash.finalize()));
        }
        hash.update(&buffer[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_hashes_the_file_bytes() {
        let dir = tempfile::tempdir().unwrap();
        for gzip in [None, Some(6)] {
            let path = dir.path().join("out");
            let mut file = std::fs::File::create(&path).unwrap();
            let mut reports = 0;
            let mut progress = |_| reports += 1;
            let mut sink = Sink::new(&mut file, gzip, &mut progress);
            for _ in 0..100 {
                sink.write_all(b"INSERT INTO t VALUES (1);\n").unwrap();
            }
            let (dumped, bytes, sha) = sink.finish().unwrap();
            drop(file);
            let content = std::fs::read(&path).unwrap();
            assert_eq!(dumped, 2600);
            assert_eq!(bytes, content.len() as u64);
            assert_eq!(sha, sha256_file(&path).unwrap());
            if gzip.is_some() {
                let mut text = String::new();
                io::Read::read_to_string(
                    &mut flate2::read::GzDecoder::new(&content[..]),
                    &mut text,
                )
                .unwrap();
                assert_eq!(text.len(), 2600);
            }
        }
        assert_eq!(
            sha256_file(&dir.path().join("out")).unwrap().len(),
            64,
            "hex digest"
        );
    }

    #[test]
    fn missing_directory_is_named() {
        let error = check_directory(Path::new("/no/such/dir/x.sql"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "cannot write /no/such/dir/x.sql: directory /no/such/dir does not exist"
        );
    }
}
