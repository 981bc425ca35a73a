//! Running a program for a runbook: an argument vector, never a shell, so a value like
//! `; touch /tmp/pwned` reaches the program as one literal argument. Its output is logged live, a
//! line at a time with the program's name as prefix (masked like every log line), and the last
//! 1 MiB of each stream is kept for the result, so a chatty program cannot exhaust memory.
//!
//! The program runs in a process group of its own. On a timeout, Ctrl-C, SIGTERM or `--timeout`
//! the whole group is stopped (SIGTERM, a short grace, then SIGKILL), so a shell's background
//! children die with it and nothing is left running. If the future is dropped early, the guard
//! kills the group too. After a normal exit, whatever the program left behind is left alone (it
//! may be a daemon it started); its output is read for a short grace, then no longer.

use std::{
    borrow::Cow,
    path::PathBuf,
    process::{ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::{io::AsyncReadExt, task::JoinHandle};

use crate::cancel::{Cancel, StopReason};

/// Splits a command line into words the way a POSIX shell would, with `'…'`, `"…"` and `\`
/// quoting, and nothing else: no variables, globs or pipes. The one splitter for compose's
/// string `command:`, the REPL's `:run` arguments and scripts' `exec::split` (`TEST_COMMAND`).
pub fn split_words(text: &str) -> Result<Vec<String>, String> {
    shlex::split(text).ok_or_else(|| format!("unclosed quote (or a trailing \\) in {text:?}"))
}

/// How much of each stream the result keeps (the end of it).
pub const KEEP_BYTES: usize = 1 << 20;
/// A line longer than this is logged in pieces.
const MAX_LINE: usize = 64 << 10;
/// Between SIGTERM and SIGKILL when stopping the group.
const TERM_GRACE: Duration = Duration::from_millis(500);
/// How long output is still read after the program exited (a background child may hold the
/// pipes open).
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    /// The program and its arguments.
    pub argv: Vec<String>,
    pub cwd: Option<PathBuf>,
    /// Added to (or overriding) the inherited environment.
    pub env: Vec<(String, String)>,
    pub timeout: Option<Duration>,
}

/// How it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The exit code, or 128 + the signal number when a signal ended it (as shells report).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub ms: u64,
    /// True when a stream was longer than [`KEEP_BYTES`] and only its end is kept.
    pub truncated: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("nothing to run: the argument list is empty")]
    Empty,
    #[error("cannot start `{program}`: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("`{command}` timed out after {ms} ms; killed it and its process group")]
    TimedOut { command: String, ms: u128 },
    #[error("{}; killed `{command}` and its process group", reason.describe())]
    Stopped { command: String, reason: StopReason },
    #[error("waiting for `{command}`: {source}")]
    Wait {
        command: String,
        source: std::io::Error,
    },
}

/// `argv` as a shell would need it typed, for log lines and errors (never executed).
pub fn display(argv: &[String]) -> String {
    argv.iter()
        .map(|word| quote(word))
        .collect::<Vec<_>>()
        .join(" ")
}

fn quote(word: &str) -> Cow<'_, str> {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c));
    if plain {
        Cow::Borrowed(word)
    } else {
        Cow::Owned(format!("'{}'", word.replace('\'', r"'\''")))
    }
}

/// Runs `spec` to completion, or until it times out or `cancel` stops the run.
pub async fn run(spec: &Spec, cancel: &Cancel) -> Result<Output, ExecError> {
    let (program, args) = spec.argv.split_first().ok_or(ExecError::Empty)?;
    let command = display(&spec.argv);
    let mut process = tokio::process::Command::new(program);
    process
        .args(args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(cwd) = &spec.cwd {
        process.current_dir(cwd);
    }
    let started = Instant::now();
    let mut child = process.spawn().map_err(|source| ExecError::Spawn {
        program: program.clone(),
        source,
    })?;
    let mut group = GroupGuard(child.id().map(|pid| pid as libc::pid_t));
    let label = program.rsplit('/').next().unwrap_or(program).to_string();
    let stdout = Pump::start(child.stdout.take(), label.clone());
    let stderr = Pump::start(child.stderr.take(), format!("{label}:err"));

    let timeout = async {
        match spec.timeout {
            Some(limit) => tokio::time::sleep(limit).await,
            None => std::future::pending().await,
        }
    };
    let stop = tokio::select! {
        status = child.wait() => Ok(status),
        _ = timeout => Err(None),
        _ = cancel.stopped() => Err(cancel.reason()),
    };
    let status: ExitStatus = match stop {
        Ok(status) => status.map_err(|source| ExecError::Wait {
            command: command.clone(),
            source,
        })?,
        Err(reason) => {
            group.terminate(&mut child).await;
            stdout.finish().await;
            stderr.finish().await;
            return Err(match reason {
                Some(reason) => ExecError::Stopped { command, reason },
                None => ExecError::TimedOut {
                    command,
                    ms: spec.timeout.unwrap_or_default().as_millis(),
                },
            });
        }
    };
    group.disarm();
    let (stdout, out_cut) = stdout.finish().await;
    let (stderr, err_cut) = stderr.finish().await;
    Ok(Output {
        code: exit_code(status),
        stdout,
        stderr,
        ms: started.elapsed().as_millis() as u64,
        truncated: out_cut || err_cut,
    })
}

fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Kills the program's whole process group unless disarmed.
struct GroupGuard(Option<libc::pid_t>);

impl GroupGuard {
    /// SIGTERM to the group, a grace for the leader to exit, then SIGKILL to whatever is left.
    async fn terminate(&mut self, child: &mut tokio::process::Child) {
        if let Some(group) = self.0.take() {
            signal_group(group, libc::SIGTERM);
            let _ = tokio::time::timeout(TERM_GRACE, child.wait()).await;
            signal_group(group, libc::SIGKILL);
            let _ = child.wait().await;
        }
    }

    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(group) = self.0 {
            signal_group(group, libc::SIGKILL);
        }
    }
}

fn signal_group(group: libc::pid_t, signal: libc::c_int) {
    // SAFETY: plain syscall; ESRCH (the group is already gone) is fine.
    unsafe { libc::killpg(group, signal) };
}

/// Reads one output stream: logs it line by line and keeps its end.
struct Pump {
    task: Option<JoinHandle<()>>,
    tail: Arc<Mutex<Tail>>,
}

impl Pump {
    fn start(
        pipe: Option<impl tokio::io::AsyncRead + Unpin + Send + 'static>,
        label: String,
    ) -> Pump {
        let tail = Arc::new(Mutex::new(Tail::default()));
        let task = pipe.map(|pipe| tokio::spawn(pump(pipe, label, Arc::clone(&tail))));
        Pump { task, tail }
    }

    /// Waits (a short grace at most) for the stream to end; returns what was kept and whether
    /// the start was cut off.
    async fn finish(mut self) -> (String, bool) {
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(DRAIN_GRACE, task).await.is_err() {
                abort.abort();
            }
        }
        let tail = std::mem::take(&mut *self.tail.lock().unwrap());
        tail.into_text()
    }
}

async fn pump(mut pipe: impl tokio::io::AsyncRead + Unpin, label: String, tail: Arc<Mutex<Tail>>) {
    let mut buffer = vec![0u8; 16 << 10];
    let mut line: Vec<u8> = Vec::new();
    loop {
        let read = match pipe.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let chunk = &buffer[..read];
        tail.lock().unwrap().push(chunk);
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            line.extend_from_slice(&rest[..end]);
            log_line(&label, &line);
            line.clear();
            rest = &rest[end + 1..];
        }
        line.extend_from_slice(rest);
        if line.len() >= MAX_LINE {
            log_line(&label, &line);
            line.clear();
        }
    }
    if !line.is_empty() {
        log_line(&label, &line);
    }
}

fn log_line(label: &str, line: &[u8]) {
    let text = String::from_utf8_lossy(line);
    tracing::info!("[{label}] {}", text.trim_end_matches('\r'));
}

/// The last [`KEEP_BYTES`] of a stream.
#[derive(Default)]
struct Tail {
    bytes: Vec<u8>,
    cut: bool,
}

impl Tail {
    fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend_from_slice(chunk);
        // Trim in batches so a long stream costs linear time.
        if self.bytes.len() > 2 * KEEP_BYTES {
            self.trim();
        }
    }

    fn trim(&mut self) {
        if self.bytes.len() > KEEP_BYTES {
            let mut start = self.bytes.len() - KEEP_BYTES;
            // Do not start in the middle of a UTF-8 character.
            while start < self.bytes.len() && (self.bytes[start] & 0xC0) == 0x80 {
                start += 1;
            }
            self.bytes.drain(..start);
            self.cut = true;
        }
    }

    fn into_text(mut self) -> (String, bool) {
        self.trim();
        let text = match String::from_utf8(self.bytes) {
            Ok(text) => text,
            Err(error) => String::from_utf8_lossy(error.as_bytes()).into_owned(),
        };
        (text, self.cut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_as_a_shell_would() {
        assert_eq!(
            split_words(r#"sh -c "echo \"hi\" there" 'a b'  c\ d"#).unwrap(),
            ["sh", "-c", "echo \"hi\" there", "a b", "c d"]
        );
        assert_eq!(
            split_words(r#"npx cypress run --spec "a b""#).unwrap(),
            ["npx", "cypress", "run", "--spec", "a b"]
        );
        assert_eq!(split_words("  ").unwrap(), Vec::<String>::new());
        assert_eq!(split_words("''").unwrap(), [""]);
        assert!(split_words("echo 'open").is_err());
    }

    /// The REPL's `:run` arguments.
    #[test]
    fn quoted_words_and_empty_ones_are_kept() {
        assert_eq!(
            split_words(r#"promote green "a b" 'c d' """#).unwrap(),
            ["promote", "green", "a b", "c d", ""]
        );
        assert!(split_words("x \"open").is_err());
    }

    #[test]
    fn display_quotes_what_a_shell_would_misread() {
        let argv: Vec<String> = ["printf", "%s\n", "; touch x", "it's", "a=b"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            display(&argv),
            r"printf '%s
' '; touch x' 'it'\''s' a=b"
        );
    }

    #[test]
    fn tail_keeps_the_end() {
        let mut tail = Tail::default();
        for _ in 0..5 {
            tail.push(&vec![b'x'; KEEP_BYTES]);
        }
        tail.push(b"end");
        let (text, cut) = tail.into_text();
        assert!(cut);
        assert_eq!(text.len(), KEEP_BYTES);
        assert!(text.ends_with("xend"));
    }
}
