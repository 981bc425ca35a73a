//! Verified restores. A dump is never loaded over the live database: it goes into a fresh scratch
//! database beside it (psql for plain dumps, gzipped or not, pg_restore for custom ones, both
//! stopping at the first error), the tables and rows that arrived are counted (and, for a plain
//! dump, checked to hold every row its COPY/INSERT statements loaded), and only then is the scratch
//! database renamed into place and the old one dropped. A restore that fails at any step leaves
//! the live database as it was.
//!
//! Renaming needs the database to itself: with other sessions connected the restore fails, naming
//! them, unless it was told to terminate them. The user needs the right to create databases and
//! to rename and drop the one restored over (its owner with CREATEDB, or a superuser).

pub(crate) mod admin;

use std::{
    fs::File,
    io::{self, BufReader, Read, Write},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use bollard::Docker;

use crate::{
    pg::program::{self, Program, ProgramError},
    pg::restore::admin::{Admin, check, create_database},
    pg::target::{Target, quote_ident},
};

/// What a dump file holds, read from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DumpKind {
    pub custom: bool,
    pub gzip: bool,
}

impl DumpKind {
    pub fn describe(self) -> &'static str {
        match (self.custom, self.gzip) {
            (false, false) => "plain",
            (false, true) => "plain (gzip)",
            (true, false) => "custom",
            (true, true) => "custom (gzip)",
        }
    }
}

pub struct RestoreRequest {
    /// The database to restore into (it need not exist).
    pub target: Target,
    pub from: PathBuf,
    /// Expected SHA-256 of the file, checked before anything is changed.
    pub sha256: Option<String>,
    pub terminate_sessions: bool,
    /// The database to connect to for CREATE/ALTER/DROP DATABASE.
    pub maintenance_db: String,
    /// The scratch database the dump is loaded into (see [`scratch_name`]).
    pub scratch: String,
}

#[derive(Debug)]
pub struct Restored {
    /// Statements psql ran (plain dumps).
    pub statements: Option<u64>,
    /// Rows the dump's COPY and INSERT statements loaded (plain dumps).
    pub loaded_rows: Option<u64>,
    /// Every table (`schema.name`) and its row count, after the restore.
    pub tables: Vec<(String, u64)>,
    /// The database existed and was replaced (else it was created).
    pub replaced: bool,
    /// Sessions terminated to take the database over.
    pub terminated: u64,
    pub took: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("cannot read {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("{} has SHA-256 {actual}, not the expected {expected}; nothing was changed", path.display())]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error(
        "database {database} has {} other session(s) connected ({}); stop them, or pass \
         terminate_sessions: true to end them; the database was left as it was",
        sessions.len(), sessions.join(", ")
    )]
    Sessions {
        database: String,
        sessions: Vec<String>,
    },
    #[error(transparent)]
    Program(#[from] ProgramError),
    #[error("{0}; the database was left as it was")]
    Failed(String),
}

/// Reads what `path` holds (and checks its SHA-256 if one is expected) without changing
/// anything: the part of a restore that a dry run does too.
pub fn inspect(path: &Path, sha256: Option<&str>) -> Result<(DumpKind, u64), RestoreError> {
    let open_error = |source| RestoreError::Open {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(open_error)?;
    let bytes = file.metadata().map_err(open_error)?.len();
    let mut head = [0u8; 5];
    let n = read_up_to(&mut &file, &mut head).map_err(open_error)?;
    let gzip = head[..n].starts_with(&[0x1f, 0x8b]);
    let custom = if gzip {
        let mut inner = [0u8; 5];
        let mut decoder = flate2::read::GzDecoder::new(File::open(path).map_err(open_error)?);
        let n = read_up_to(&mut decoder, &mut inner).map_err(open_error)?;
        inner[..n] == *b"PGDMP"
    } else {
        head[..n] == *b"PGDMP"
    };
    if let Some(expected) = sha256 {
        let actual = crate::pg::dump::sha256_file(path).map_err(open_error)?;
        if !actual.eq_ignore_ascii_case(expected.trim()) {
            return Err(RestoreError::Checksum {
                path: path.to_path_buf(),
                expected: expected.to_string(),
                actual,
            });
        }
    }
    Ok((DumpKind { custom, gzip }, bytes))
}

fn read_up_to(reader: &mut impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// A scratch database name for restoring `database`: recognisable, unique, ≤ 63 bytes.
pub fn scratch_name(database: &str) -> String {
    let suffix = format!(
        "__restore_{}_{}",
        jiff::Timestamp::now().strftime("%Y%m%d%H%M%S"),
        std::process::id()
    );
    let mut prefix = database.to_string();
    while prefix.len() + suffix.len() > 63 {
        prefix.pop();
    }
    format!("{prefix}{suffix}")
}

/// Restores `request.from`, already [`inspect`]ed, into `request.target`'s database as
/// described above.
pub async fn restore(
    request: &RestoreRequest,
    kind: DumpKind,
    docker: Option<&Docker>,
) -> Result<Restored, RestoreError> {
    let started = Instant::now();
    let admin = Admin {
        target: request.target.with_database(&request.maintenance_db),
        docker,
    };
    let database = request.target.database();
    let sessions = admin.sessions(&database).await?;
    if !sessions.is_empty() && !request.terminate_sessions {
        return Err(RestoreError::Sessions { database, sessions });
    }
    let existing = admin.database_settings(&database).await?;
    admin
        .run(&[create_database(&request.scratch, existing.as_deref())])
        .await?;
    let result = async {
        let scratch = request.target.with_database(&request.scratch);
        let (statements, loaded_rows) = load(&scratch, &request.from, kind, docker).await?;
        let tables = Admin {
            target: scratch,
            docker,
        }
        .count_rows()
        .await?;
        let counted: u64 = tables.iter().map(|(_, rows)| rows).sum();
        // More rows than loaded is fine (an extension's own tables fill themselves); fewer is not.
        if let Some(loaded) = loaded_rows
            && counted < loaded
        {
            return Err(RestoreError::Failed(format!(
                "the dump loaded {loaded} rows but the restored tables hold only {counted}"
            )));
        }
        let terminated = admin
            .swap(
                &request.scratch,
                &database,
                existing.is_some(),
                request.terminate_sessions,
            )
            .await?;
        Ok(Restored {
            statements,
            loaded_rows,
            tables,
            replaced: existing.is_some(),
            terminated,
            took: started.elapsed(),
        })
    }
    .await;
    if result.is_err() {
        let _ = drop_scratch(request, docker).await;
    }
    result
}

/// Drops the scratch database of `request` (after a failed or interrupted restore).
pub async fn drop_scratch(
    request: &RestoreRequest,
    docker: Option<&Docker>,
) -> Result<(), RestoreError> {
    Admin {
        target: request.target.with_database(&request.maintenance_db),
        docker,
    }
    .run(&[format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        quote_ident(&request.scratch)
    )])
    .await
}

/// Client sessions connected to the database of `request`, other than cutover's own.
pub async fn other_sessions(
    request: &RestoreRequest,
    docker: Option<&Docker>,
) -> Result<Vec<String>, RestoreError> {
    Admin {
        target: request.target.with_database(&request.maintenance_db),
        docker,
    }
    .sessions(&request.target.database())
    .await
}

/// Loads the dump into `scratch`: psql for plain SQL, pg_restore for a custom archive.
async fn load(
    scratch: &Target,
    from: &Path,
    kind: DumpKind,
    docker: Option<&Docker>,
) -> Result<(Option<u64>, Option<u64>), RestoreError> {
    let open = || -> Result<Box<dyn Read>, RestoreError> {
        let file = File::open(from).map_err(|source| RestoreError::Open {
            path: from.to_path_buf(),
            source,
        })?;
        Ok(if kind.gzip {
            Box::new(flate2::read::GzDecoder::new(BufReader::with_capacity(
                program::CHUNK,
                file,
            )))
        } else {
            Box::new(file)
        })
    };
    let container = scratch.container_name().map(|name| {
        (
            docker.expect("a container target comes with a Docker client"),
            name,
        )
    });
    let mut args = scratch.connection_args();
    if kind.custom {
        args.push("--exit-on-error".into());
        // Here pg_restore reads the file itself (it may seek); elsewhere it reads standard input.
        let mut input = None;
        if container.is_none() && !kind.gzip {
            args.push(from.display().to_string());
        } else {
            input = Some(open()?);
        }
        let program = Program {
            name: "pg_restore",
            args,
            env: scratch.environment(),
        };
        let input = input.as_mut().map(|r| r as &mut dyn Read);
        let outcome = program::run(&program, container, input, &mut io::sink()).await?;
        check(&outcome, "pg_restore")?;
        return Ok((None, None));
    }
    args.extend(["--no-psqlrc", "--set=ON_ERROR_STOP=1", "--file=-"].map(String::from));
    let program = Program {
        name: "psql",
        args,
        env: scratch.environment(),
    };
    let mut input = open()?;
    let mut tags = CommandTags::default();
    let outcome = program::run(&program, container, Some(&mut input), &mut tags).await?;
    check(&outcome, "psql")?;
    Ok((Some(tags.statements), Some(tags.rows)))
}

/// Counts the command tags psql prints (`CREATE TABLE`, `COPY 1000`, `INSERT 0 1`), line by
/// line as they stream past, and the rows COPY and INSERT loaded.
#[derive(Default)]
struct CommandTags {
    line: Vec<u8>,
    statements: u64,
    rows: u64,
}

impl CommandTags {
    fn tag(&mut self, line: &[u8]) {
        let Ok(line) = std::str::from_utf8(line) else {
            return;
        };
        let words: Vec<&str> = line.trim_end_matches('\r').split(' ').collect();
        let is_word = |w: &&str| !w.is_empty() && w.bytes().all(|b| b.is_ascii_uppercase());
        let is_number = |w: &&str| !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit());
        let split = words
            .iter()
            .position(|w| !is_word(w))
            .unwrap_or(words.len());
        if split == 0 || !words[split..].iter().all(is_number) {
            return;
        }
        self.statements += 1;
        if matches!(words[0], "COPY" | "INSERT")
            && let Some(rows) = words.last().and_then(|w| w.parse::<u64>().ok())
        {
            self.rows += rows;
        }
    }
}

impl Write for CommandTags {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut rest = data;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            if self.line.is_empty() {
                self.tag(&rest[..end]);
            } else {
                self.line.extend_from_slice(&rest[..end]);
                let line = std::mem::take(&mut self.line);
                self.tag(&line);
            }
            rest = &rest[end + 1..];
        }
        // A tag is short; a longer partial line is query output, not worth keeping.
        if self.line.len() + rest.len() <= 256 {
            self.line.extend_from_slice(rest);
        } else {
            self.line.clear();
            self.line.extend_from_slice(b"-");
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_tags_across_chunks() {
        let mut tags = CommandTags::default();
        let output = "SET\nSET\n set_config \n------------\n \n(1 row)\n\nCREATE TABLE\nALTER TABLE\nCOPY 1000\nINSERT 0 2\nCOPY 5\n";
        for chunk in output.as_bytes().chunks(3) {
            tags.write_all(chunk).unwrap();
        }
        assert_eq!(tags.statements, 7);
        assert_eq!(tags.rows, 1007);
    }

    #[test]
    fn detects_dump_kinds() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("a.sql");
        std::fs::write(&plain, "--\n-- PostgreSQL database dump\n").unwrap();
        let custom = dir.path().join("a.dump");
        std::fs::write(&custom, b"PGDMP\x01\x0e").unwrap();
        let gz = dir.path().join("a.sql.gz");
        let mut encoder =
            flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::fast());
        encoder.write_all(b"SELECT 1;\n").unwrap();
        encoder.finish().unwrap();
        let kind = |p: &Path| inspect(p, None).unwrap().0.describe();
        assert_eq!(kind(&plain), "plain");
        assert_eq!(kind(&custom), "custom");
        assert_eq!(kind(&gz), "plain (gzip)");
        let sha = crate::pg::dump::sha256_file(&plain).unwrap();
        assert!(inspect(&plain, Some(&sha)).is_ok());
        let error = inspect(&plain, Some("00")).unwrap_err().to_string();
        assert!(error.contains("not the expected 00"), "{error}");
    }

    #[test]
    fn scratch_names_fit() {
        let long = "x".repeat(80);
        assert!(scratch_name(&long).len() <= 63);
        assert!(scratch_name("shop").starts_with("shop__restore_"));
    }
}
