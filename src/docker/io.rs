//! Output of containers — `docker::exec` and `docker::logs` — streamed as it arrives to where it
//! is wanted: a file, the run's log line by line, or a bounded capture for the result. Nothing
//! is ever collected whole, so a 200 MB dump through `exec` costs a few buffers of memory.

use std::{
    io::Write,
    path::{Path, PathBuf},
    time::Duration,
};

use bollard::{
    Docker, container::LogOutput, exec::StartExecResults, models::ExecConfig,
    query_parameters::LogsOptionsBuilder,
};
use futures_util::{Stream, StreamExt};

use std::sync::Arc;

use crate::{
    docker::{Doing, EngineError},
    journal::atomic::AtomicFile,
    redact::Redactor,
};

/// How much of a stream a result keeps; the rest goes uncounted but not unnoticed.
pub const CAPTURE_LIMIT: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Keeps the first (or the last) [`CAPTURE_LIMIT`] bytes of a stream and counts the rest.
#[derive(Debug, Default)]
pub struct Capture {
    data: Vec<u8>,
    keep_last: bool,
    dropped: u64,
}

impl Capture {
    pub fn first() -> Capture {
        Capture::default()
    }

    pub fn last() -> Capture {
        Capture {
            keep_last: true,
            ..Capture::default()
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        if self.keep_last {
            self.data.extend_from_slice(bytes);
            if self.data.len() > 2 * CAPTURE_LIMIT {
                let excess = self.data.len() - CAPTURE_LIMIT;
                self.data.drain(..excess);
                self.dropped += excess as u64;
            }
        } else {
            let room = CAPTURE_LIMIT.saturating_sub(self.data.len());
            self.data.extend_from_slice(&bytes[..room.min(bytes.len())]);
            self.dropped += bytes.len().saturating_sub(room) as u64;
        }
    }

    /// The kept text, with a note where bytes were left out.
    pub fn text(mut self) -> String {
        if self.keep_last && self.data.len() > CAPTURE_LIMIT {
            let excess = self.data.len() - CAPTURE_LIMIT;
            self.data.drain(..excess);
            self.dropped += excess as u64;
        }
        let text = String::from_utf8_lossy(&self.data).into_owned();
        match (self.dropped, self.keep_last) {
            (0, _) => text,
            (n, true) => format!("[… {n} earlier bytes not kept]\n{text}"),
            (n, false) => format!("{text}\n[… {n} more bytes not kept]"),
        }
    }
}

/// Splits a byte stream into lines (a line over 64 KiB is cut) and hands each to `sink`: the
/// run's log for `follow`, an archive file for `to` with `prefix`.
struct Lines<F: FnMut(&[u8]) -> std::io::Result<()>> {
    pending: Vec<u8>,
    sink: F,
    /// Where a long line is cut: never through one of these secrets.
    secrets: Option<Arc<Redactor>>,
}

impl<F: FnMut(&[u8]) -> std::io::Result<()>> Lines<F> {
    const LONGEST: usize = 64 << 10;

    fn new(sink: F, secrets: Option<Arc<Redactor>>) -> Self {
        Lines {
            pending: Vec::new(),
            sink,
            secrets,
        }
    }

    fn push(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.pending.extend_from_slice(bytes);
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let line = &line[..line.len() - 1];
            (self.sink)(line.strip_suffix(b"\r").unwrap_or(line))?;
        }
        if self.pending.len() > Self::LONGEST {
            // Each piece is masked on its own: cut where no secret is split.
            let cut = self
                .secrets
                .as_ref()
                .map_or(self.pending.len(), |s| s.safe_cut(&self.pending));
            if cut > 0 {
                let line: Vec<u8> = self.pending.drain(..cut).collect();
                (self.sink)(&line)?;
            }
        }
        Ok(())
    }

    fn finish(mut self) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            (self.sink)(&line)?;
        }
        Ok(())
    }
}

/// What to run inside a container.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    pub container: String,
    pub command: Vec<String>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    /// Stdout goes to this file (mode 0600), replaced only when the command exits 0.
    pub stdout_to: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct ExecResult {
    pub code: i64,
    pub stdout: String,
    pub stderr: String,
    /// Bytes of stdout, wherever they went.
    pub stdout_bytes: u64,
}

/// Runs a command in a running container and streams its output.
pub async fn exec(docker: &Docker, request: &ExecRequest) -> Result<ExecResult, OutputError> {
    let name = &request.container;
    let config = ExecConfig {
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        cmd: Some(request.command.clone()),
        env: (!request.env.is_empty()).then(|| request.env.clone()),
        user: request.user.clone(),
        working_dir: request.working_dir.clone(),
        ..Default::default()
    };
    let action = format!("exec {:?} in {name}", request.command.join(" "));
    let created = docker.create_exec(name, config).await.doing(&action)?;
    let mut file = match &request.stdout_to {
        Some(path) => {
            Some(
                AtomicFile::create(path, 0o600).map_err(|source| OutputError::Write {
                    path: path.clone(),
                    source,
                })?,
            )
        }
        None => None,
    };
    let mut stdout = Capture::first();
    let mut stderr = Capture::first();
    let mut stdout_bytes = 0u64;
    if let StartExecResults::Attached { mut output, .. } =
        docker.start_exec(&created.id, None).await.doing(&action)?
    {
        while let Some(chunk) = output.next().await {
            match chunk.doing(&action)? {
                LogOutput::StdOut { message } | LogOutput::Console { message } => {
                    stdout_bytes += message.len() as u64;
                    match &mut file {
                        Some(file) => file.file().write_all(&message).map_err(|source| {
                            OutputError::Write {
                                path: request.stdout_to.clone().unwrap_or_default(),
                                source,
                            }
                        })?,
                        None => stdout.push(&message),
                    }
                }
                LogOutput::StdErr { message } => stderr.push(&message),
                LogOutput::StdIn { .. } => {}
            }
        }
    }
    let inspected = docker.inspect_exec(&created.id).await.doing(&action)?;
    let code = inspected.exit_code.unwrap_or(-1);
    if let (Some(file), 0) = (file, code) {
        let path = request.stdout_to.clone().unwrap_or_default();
        file.commit()
            .map_err(|source| OutputError::Write { path, source })?;
    }
    Ok(ExecResult {
        code,
        stdout: stdout.text(),
        stderr: stderr.text(),
        stdout_bytes,
    })
}

/// Whose logs: a container's, or a swarm service's (every task's, gathered by the manager).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogSource {
    #[default]
    Container,
    Service,
}

/// Which logs, and where to.
#[derive(Debug, Clone, Default)]
pub struct LogsRequest {
    /// The container's name, or the swarm service's with [`LogSource::Service`].
    pub container: String,
    pub source: LogSource,
    /// Ids the engine's messages may name, each with the name to show instead (a swarm's node
    /// ids and hostnames).
    pub names: Vec<(String, String)>,
    /// Lines from the end (`"all"` when `None`).
    pub tail: Option<u64>,
    /// Only lines since this time, in seconds since the epoch.
    pub since: Option<i64>,
    /// Keep reading until the container stops (or `follow_for` elapses).
    pub follow: bool,
    pub follow_for: Option<Duration>,
    pub timestamps: bool,
    /// Write everything to this file instead of keeping it.
    pub to: Option<PathBuf>,
    /// Add to the end of `to` instead of replacing it (an archive of several containers).
    pub append: bool,
    /// Start each line written to `to` with `NAME | `, as the log shows followed lines.
    pub prefix: bool,
    /// The run's secrets: a long followed line is cut where none is split.
    pub secrets: Option<Arc<Redactor>>,
}

/// Where the logs went.
#[derive(Debug)]
pub enum LogsResult {
    /// The last [`CAPTURE_LIMIT`] bytes, when kept.
    Text(String),
    /// Bytes written to the file or the run's log.
    Streamed(u64),
}

/// Reads a container's logs (stdout and stderr interleaved as written), or a swarm service's
/// through its manager.
pub async fn logs(docker: &Docker, request: &LogsRequest) -> Result<LogsResult, OutputError> {
    let name = &request.container;
    let mut options = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .follow(request.follow)
        .timestamps(request.timestamps)
        .tail(&request.tail.map_or("all".to_string(), |n| n.to_string()));
    if let Some(since) = request.since {
        options = options.since(since as i32);
    }
    let options = options.build();
    let stream: std::pin::Pin<Box<dyn Stream<Item = _> + Send>> = match request.source {
        LogSource::Container => Box::pin(docker.logs(name, Some(options))),
        LogSource::Service => Box::pin(docker.service_logs(name, Some(options))),
    };
    let deadline = request
        .follow_for
        .map(|limit| tokio::time::Instant::now() + limit);
    let mut chunks = Chunks {
        stream,
        deadline,
        action: format!("logs of {name}"),
        names: &request.names,
    };
    let write_error = |path: &Path, source| OutputError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = 0u64;
    let prefix = request.container.as_str();
    if let Some(path) = &request.to {
        // Nothing is written before the first chunk arrives (a mistyped container leaves the
        // file as it was): appended to the file, opened then, or written to a temporary file
        // that replaces `to` (mode 0600) only once the whole stream has been read.
        let mut target = LogFile::new(path, request.append);
        if request.prefix {
            let mut lines = Lines::new(
                |line| {
                    let file = target.file()?;
                    file.write_all(format!("{prefix} | ").as_bytes())?;
                    file.write_all(line)?;
                    file.write_all(b"\n")
                },
                request.secrets.clone(),
            );
            while let Some(chunk) = chunks.next().await? {
                bytes += chunk.len() as u64;
                lines.push(&chunk).map_err(|e| write_error(path, e))?;
            }
            lines.finish().map_err(|e| write_error(path, e))?;
        } else {
            while let Some(chunk) = chunks.next().await? {
                bytes += chunk.len() as u64;
                target
                    .file()
                    .and_then(|file| file.write_all(&chunk))
                    .map_err(|e| write_error(path, e))?;
            }
        }
        target.finish().map_err(|e| write_error(path, e))?;
        return Ok(LogsResult::Streamed(bytes));
    }
    if request.follow {
        let mut lines = Lines::new(
            |line| {
                let line = String::from_utf8_lossy(line);
                tracing::info!("{prefix} | {line}");
                Ok(())
            },
            request.secrets.clone(),
        );
        while let Some(chunk) = chunks.next().await? {
            bytes += chunk.len() as u64;
            let _ = lines.push(&chunk);
        }
        let _ = lines.finish();
        return Ok(LogsResult::Streamed(bytes));
    }
    let mut kept = Capture::last();
    while let Some(chunk) = chunks.next().await? {
        kept.push(&chunk);
    }
    Ok(LogsResult::Text(kept.text()))
}

/// Where `docker::logs(#{to})` writes: opened at the first byte, so a stream that fails before
/// any leaves the file untouched.
enum LogFile<'a> {
    Closed { path: &'a Path, append: bool },
    Appending(std::fs::File),
    Replacing(AtomicFile),
}

impl<'a> LogFile<'a> {
    fn new(path: &'a Path, append: bool) -> Self {
        LogFile::Closed { path, append }
    }

    fn file(&mut self) -> std::io::Result<&mut std::fs::File> {
        if let LogFile::Closed { path, append } = *self {
            *self = if append {
                use std::os::unix::fs::OpenOptionsExt;
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(path)?;
                LogFile::Appending(file)
            } else {
                LogFile::Replacing(AtomicFile::create(path, 0o600)?)
            };
        }
        Ok(match self {
            LogFile::Appending(file) => file,
            LogFile::Replacing(atomic) => atomic.file(),
            LogFile::Closed { .. } => unreachable!("opened above"),
        })
    }

    /// Saves what was written. A stream that brought nothing still empties the file it
    /// replaces (there were no logs), but creates no file to append to.
    fn finish(mut self) -> std::io::Result<()> {
        if let LogFile::Closed { append: false, .. } = self {
            self.file()?;
        }
        match self {
            LogFile::Closed { .. } => Ok(()),
            LogFile::Appending(mut file) => file.flush(),
            LogFile::Replacing(atomic) => atomic.commit(),
        }
    }
}

/// The chunks of a log stream, ending early at the deadline.
struct Chunks<'a, S> {
    stream: S,
    deadline: Option<tokio::time::Instant>,
    action: String,
    names: &'a [(String, String)],
}

/// The header of a frame of the engine's own stream (`systemerr`, stream 3), which bollard
/// passes on undecoded: the engine's word about the logs, not a line of them.
const SYSTEM_ERROR: [u8; 4] = [3, 0, 0, 0];

impl<S> Chunks<'_, S>
where
    S: Stream<Item = Result<LogOutput, bollard::errors::Error>> + Unpin,
{
    async fn next(&mut self) -> Result<Option<bytes::Bytes>, OutputError> {
        loop {
            let next = match self.deadline {
                Some(deadline) => {
                    match tokio::time::timeout_at(deadline, self.stream.next()).await {
                        Ok(next) => next,
                        Err(_) => return Ok(None),
                    }
                }
                None => self.stream.next().await,
            };
            let Some(chunk) = next else { return Ok(None) };
            let bytes = chunk.doing(&self.action)?.into_bytes();
            // A manager that cannot reach some nodes says so in its own stream ("incomplete
            // log stream … node ID is not available"): a warning, named, and the rest goes on.
            if bytes.len() >= 8 && bytes[..4] == SYSTEM_ERROR {
                let mut said = String::from_utf8_lossy(&bytes[8..]).trim().to_string();
                for (id, name) in self.names {
                    said = said.replace(id.as_str(), name);
                }
                tracing::warn!("{}: {said}", self.action);
                continue;
            }
            return Ok(Some(bytes));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_are_bounded() {
        let mut first = Capture::first();
        let mut last = Capture::last();
        for i in 0..300u32 {
            let block = vec![b'a' + (i % 26) as u8; 10_000];
            first.push(&block);
            last.push(&block);
        }
        let first = first.text();
        assert!(first.starts_with("aaaa"));
        assert!(first.ends_with(&format!(
            "[… {} more bytes not kept]",
            3_000_000 - CAPTURE_LIMIT
        )));
        let last = last.text();
        assert!(last.starts_with(&format!(
            "[… {} earlier bytes not kept]",
            3_000_000 - CAPTURE_LIMIT
        )));
        assert!(
            last.ends_with(&"n".repeat(10_000)),
            "last block is 299 % 26 = n"
        );
    }
}
