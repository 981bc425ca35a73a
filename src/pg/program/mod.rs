//! Runs a PostgreSQL client program (`pg_dump`, `psql`, `pg_restore`, `pg_isready`) here or inside
//! a container, the same way either side: an argument vector (never a shell), the password only
//! in the environment, standard input fed from a reader, standard output handed to a writer as it
//! arrives (so a dump of any size passes through a fixed amount of memory), and the tail of
//! standard error kept to say why the program failed.
//!
//! Locally the program is a child process (killed if the call is abandoned, e.g. on Ctrl-C); in a
//! container it is a Docker exec ([`crate::pg::program::container`]).

pub(crate) mod container;

use std::{
    fmt,
    io::{self, Read, Write},
    os::fd::AsRawFd,
    process::Stdio,
    time::Duration,
};

use bollard::Docker;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Chunk size of every copy; big chunks keep the number of system calls per gigabyte low.
pub const CHUNK: usize = 1 << 20;
/// How much of standard error is kept: its end, where programs say why they stopped.
const STDERR_TAIL: usize = 32 << 10;

/// One run of a client program.
pub struct Program {
    pub name: &'static str,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// How a program ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Code(i64),
    Signal(i32),
    /// A Docker exec whose exit code the engine did not report (e.g. its container stopped).
    Unknown,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Code(code) => write!(f, "exited with code {code}"),
            Status::Signal(signal) => write!(f, "was killed by signal {signal}"),
            Status::Unknown => write!(f, "ended without an exit code"),
        }
    }
}

/// A program that ran: how it ended and what it said on standard error.
#[derive(Debug)]
pub struct Outcome {
    pub status: Status,
    pub stderr: String,
    /// Writing its output (or feeding its input) failed; the program was stopped.
    pub io_error: Option<io::Error>,
}

impl Outcome {
    pub fn success(&self) -> bool {
        self.status == Status::Code(0) && self.io_error.is_none()
    }

    /// `pg_dump exited with code 1: pg_dump: error: …`
    pub fn describe(&self, program: &str) -> String {
        if let Some(error) = &self.io_error {
            return format!("{program}: {error}");
        }
        let stderr = self.stderr.trim();
        if stderr.is_empty() {
            format!("{program} {}", self.status)
        } else {
            format!("{program} {}: {stderr}", self.status)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    #[error(
        "cannot run {program}: it is not on PATH; install the PostgreSQL client programs (e.g. postgresql-client-15)"
    )]
    NotFound { program: &'static str },
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: &'static str,
        source: io::Error,
    },
    #[error("cannot run {program} in container {container}: {message}")]
    Docker {
        program: &'static str,
        container: String,
        message: String,
    },
}

impl ProgramError {
    /// True when the container exists but is not running.
    pub fn container_not_running(&self) -> bool {
        matches!(self, ProgramError::Docker { message, .. } if message.contains("is not running"))
    }
}

/// Runs `program` here (`container` None) or in `container`, feeding it `input` and writing its
/// standard output to `output`. A failing `output` stops the program.
pub async fn run(
    program: &Program,
    container: Option<(&Docker, &str)>,
    input: Option<&mut dyn Read>,
    output: &mut dyn Write,
) -> Result<Outcome, ProgramError> {
    match container {
        None => run_here(program, input, output).await,
        Some((docker, name)) => {
            crate::pg::program::container::run(program, docker, name, input, output).await
        }
    }
}

async fn run_here(
    program: &Program,
    input: Option<&mut dyn Read>,
    output: &mut dyn Write,
) -> Result<Outcome, ProgramError> {
    let stdin = match input {
        Some(_) => Stdio::piped(),
        None => Stdio::null(),
    };
    let mut child = spawn(program, stdin, Stdio::piped())?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let stdin = child.stdin.take();
    enlarge_pipe(stdout.as_raw_fd());

    let feed = async {
        match (stdin, input) {
            (Some(mut stdin), Some(input)) => feed(input, &mut stdin).await,
            _ => Ok(()),
        }
    };
    let drain = async {
        let mut buffer = vec![0; CHUNK];
        loop {
            let n = stdout.read(&mut buffer).await?;
            if n == 0 {
                return output.flush();
            }
            output.write_all(&buffer[..n])?;
        }
    };
    let errors = read_tail(&mut stderr);
    // A failed write must stop the program: it would otherwise block on a full pipe forever.
    let io = async {
        let (fed, drained) = tokio::join!(feed, drain);
        let failure = drained.err().or(fed.err());
        if failure.is_some() {
            let _ = child.start_kill();
        }
        failure
    };
    let (io_error, tail) = tokio::join!(io, errors);
    let status = child.wait().await.map_err(spawn_error(program))?;
    Ok(Outcome {
        status: exit_status(status),
        stderr: tail.text(),
        io_error,
    })
}

/// Runs `program` here with its standard output going straight into `file` (no pipe, no copy
/// through this process: as fast as `program > file`). `follow(exited)` is called over and over
/// while it runs and after it exits, to read what has arrived (e.g. to hash it); it returns how
/// many new bytes it took, and is called until it takes none once the program has exited.
pub async fn run_into_file(
    program: &Program,
    file: &std::fs::File,
    follow: &mut dyn FnMut(bool) -> io::Result<usize>,
) -> Result<Outcome, ProgramError> {
    let stdout = file.try_clone().map_err(spawn_error(program))?;
    let mut child = spawn(program, Stdio::null(), Stdio::from(stdout))?;
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let errors = read_tail(&mut stderr);
    let following = async {
        let result = async {
            loop {
                let exited = child.try_wait()?;
                let taken = follow(exited.is_some())?;
                match exited {
                    Some(status) if taken == 0 => return Ok(status),
                    _ if taken > 0 => {}
                    // Caught up with a running program: give it a moment to write more.
                    _ => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        }
        .await;
        match result {
            Ok(status) => Ok((status, None)),
            Err(error) => {
                // Stop the program at once: its output can no longer be taken.
                let _ = child.start_kill();
                child.wait().await.map(|status| (status, Some(error)))
            }
        }
    };
    let (followed, tail) = tokio::join!(following, errors);
    let (status, io_error) = followed.map_err(spawn_error(program))?;
    Ok(Outcome {
        status: exit_status(status),
        stderr: tail.text(),
        io_error,
    })
}

/// Starts `program` here with these standard input and output, standard error piped; it is
/// killed if the call is abandoned.
fn spawn(
    program: &Program,
    stdin: Stdio,
    stdout: Stdio,
) -> Result<tokio::process::Child, ProgramError> {
    tokio::process::Command::new(program.name)
        .args(&program.args)
        .envs(program.env.iter().map(|(k, v)| (k, v)))
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => ProgramError::NotFound {
                program: program.name,
            },
            _ => spawn_error(program)(source),
        })
}

/// The error of an operating-system call about `program`'s process.
fn spawn_error(program: &Program) -> impl Fn(io::Error) -> ProgramError {
    let program = program.name;
    move |source| ProgramError::Spawn { program, source }
}

fn exit_status(status: std::process::ExitStatus) -> Status {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => Status::Code(code.into()),
        (None, Some(signal)) => Status::Signal(signal),
        (None, None) => Status::Unknown,
    }
}

/// Copies `input` to a program's standard input in big chunks. A program that stops reading
/// (psql quitting at the first error) is not an error here: its exit status says what happened.
pub(crate) async fn feed<W>(input: &mut dyn Read, stdin: &mut W) -> io::Result<()>
where
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut buffer = vec![0; CHUNK];
    loop {
        let n = match input.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        match stdin.write_all(&buffer[..n]).await {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// The tail of a program's standard error, read until it closes.
async fn read_tail(stderr: &mut tokio::process::ChildStderr) -> Tail {
    let mut tail = Tail::default();
    let mut buffer = vec![0; 8 << 10];
    while let Ok(n) = stderr.read(&mut buffer).await {
        if n == 0 {
            break;
        }
        tail.push(&buffer[..n]);
    }
    tail
}

/// Grows a pipe to 1 MiB so the writer on the other end (pg_dump) rarely waits for us.
fn enlarge_pipe(fd: i32) {
    // Best effort: a smaller pipe only costs speed.
    unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, CHUNK as libc::c_int) };
}

/// The last [`STDERR_TAIL`] bytes of a stream.
#[derive(Default)]
pub(crate) struct Tail {
    bytes: Vec<u8>,
    dropped: bool,
}

impl Tail {
    pub(crate) fn push(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
        if self.bytes.len() > STDERR_TAIL {
            let excess = self.bytes.len() - STDERR_TAIL;
            self.bytes.drain(..excess);
            self.dropped = true;
        }
    }

    pub(crate) fn text(&self) -> String {
        let text = String::from_utf8_lossy(&self.bytes);
        if self.dropped {
            format!("…{text}")
        } else {
            text.into_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn program(name: &'static str, args: &[&str]) -> Program {
        Program {
            name,
            args: args.iter().map(|a| a.to_string()).collect(),
            env: vec![("SECRETISH".into(), "x".into())],
        }
    }

    #[test]
    fn streams_input_through_a_program() {
        let data: Vec<u8> = (0..3 * CHUNK + 7).map(|i| (i % 251) as u8).collect();
        let mut output = Vec::new();
        let outcome = runtime()
            .block_on(run(
                &program("cat", &[]),
                None,
                Some(&mut &data[..]),
                &mut output,
            ))
            .unwrap();
        assert!(outcome.success(), "{outcome:?}");
        assert_eq!(output, data);
    }

    #[test]
    fn reports_status_and_stderr() {
        let outcome = runtime()
            .block_on(run(
                &program("sh", &["-c", "echo oops >&2; exit 3"]),
                None,
                None,
                &mut io::sink(),
            ))
            .unwrap();
        assert_eq!(outcome.status, Status::Code(3));
        assert_eq!(outcome.describe("sh"), "sh exited with code 3: oops");
        let error = runtime()
            .block_on(run(
                &program("no-such-program-here", &[]),
                None,
                None,
                &mut io::sink(),
            ))
            .unwrap_err();
        assert!(error.to_string().contains("not on PATH"), "{error}");
    }

    #[test]
    fn follows_a_file_as_the_program_writes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let file = std::fs::File::create(&path).unwrap();
        let reader = std::fs::File::open(&path).unwrap();
        let mut seen = Vec::new();
        let mut follow = |_exited| {
            let mut buffer = [0; 4];
            let n = std::os::unix::fs::FileExt::read_at(&reader, &mut buffer, seen.len() as u64)?;
            seen.extend_from_slice(&buffer[..n]);
            Ok(n)
        };
        let script = "printf abc; sleep 0.05; printf defghij";
        let outcome = runtime()
            .block_on(run_into_file(
                &program("sh", &["-c", script]),
                &file,
                &mut follow,
            ))
            .unwrap();
        assert!(outcome.success(), "{outcome:?}");
        assert_eq!(seen, b"abcdefghij");

        let started = std::time::Instant::now();
        let mut failing = |_exited| Err(io::Error::other("cannot hash"));
        let outcome = runtime()
            .block_on(run_into_file(
                &program("sleep", &["30"]),
                &file,
                &mut failing,
            ))
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the program was not stopped"
        );
        assert_eq!(outcome.describe("sleep"), "sleep: cannot hash");
    }

    #[test]
    fn a_failing_writer_stops_the_program() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let outcome = runtime()
            .block_on(run(&program("yes", &[]), None, None, &mut Full))
            .unwrap();
        assert!(!outcome.success());
        assert!(outcome.describe("yes").contains("disk full"));
    }
}
