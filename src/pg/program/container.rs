//! Client programs run inside a container through the Docker exec API (bollard): the argument
//! vector and environment go in the exec's configuration (never through a shell), standard
//! input streams over the attached connection, and standard output and error come back as
//! separate frames as the program writes them. No docker CLI is involved.

use std::{
    io::{self, Read, Write},
    time::Duration,
};

use bollard::{
    Docker,
    container::LogOutput,
    exec::{StartExecOptions, StartExecResults},
    models::ExecConfig,
};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::pg::program::{CHUNK, Outcome, Program, ProgramError, Status, Tail, feed};

/// Runs `program` in `container` as a Docker exec: `input` streams to its standard input
/// (closing our side of the connection ends it), its standard output streams back to `output`.
pub async fn run(
    program: &Program,
    docker: &Docker,
    container: &str,
    input: Option<&mut dyn Read>,
    output: &mut dyn Write,
) -> Result<Outcome, ProgramError> {
    let failed = |error: bollard::errors::Error| ProgramError::Docker {
        program: program.name,
        container: container.to_string(),
        message: match error {
            bollard::errors::Error::DockerResponseServerError { message, .. } => message,
            other => other.to_string(),
        },
    };
    let cmd = std::iter::once(program.name.to_string())
        .chain(program.args.iter().cloned())
        .collect();
    let env = program
        .env
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let exec = docker
        .create_exec(
            container,
            ExecConfig {
                cmd: Some(cmd),
                env: Some(env),
                attach_stdin: Some(input.is_some()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                tty: Some(false),
                ..Default::default()
            },
        )
        .await
        .map_err(failed)?;
    let started = docker
        .start_exec(
            &exec.id,
            Some(StartExecOptions {
                detach: false,
                tty: false,
                output_capacity: Some(CHUNK),
            }),
        )
        .await
        .map_err(failed)?;
    let StartExecResults::Attached {
        output: mut frames,
        input: mut stdin,
    } = started
    else {
        unreachable!("a Docker exec started without detach is attached")
    };

    let feed = async {
        let Some(input) = input else { return Ok(()) };
        let result = feed(input, &mut stdin).await;
        // Closing our side of the connection is what ends the program's standard input.
        let _ = stdin.shutdown().await;
        result
    };
    let mut tail = Tail::default();
    let drain = async {
        while let Some(frame) = frames.next().await {
            match frame.map_err(io::Error::other)? {
                LogOutput::StdOut { message } | LogOutput::Console { message } => {
                    output.write_all(&message)?
                }
                LogOutput::StdErr { message } => tail.push(&message),
                LogOutput::StdIn { .. } => {}
            }
        }
        output.flush()
    };
    let (fed, drained) = tokio::join!(feed, drain);
    let io_error = drained.err().or(fed.err());
    // The engine records the exit code a moment after the output ends.
    let mut status = Status::Unknown;
    if io_error.is_none() {
        for _ in 0..50 {
            let inspect = docker.inspect_exec(&exec.id).await.map_err(failed)?;
            if inspect.running != Some(true) {
                status = inspect.exit_code.map_or(Status::Unknown, Status::Code);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(Outcome {
        status,
        stderr: tail.text(),
        io_error,
    })
}
