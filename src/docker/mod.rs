//! The Docker Engine client: one bollard `Docker` per process, created on the first docker call
//! and cloned by every host module that needs it. `DOCKER_HOST` is honoured (unix socket or
//! tcp), the API version is negotiated (the engine may be older than bollard's default), and an
//! unreachable engine fails within two seconds with an error naming where it looked.

mod cgroup;
pub(crate) mod containers;
pub(crate) mod ignore;
pub(crate) mod image;
pub(crate) mod io;

use std::time::Duration;

use bollard::Docker;

/// How long the first call waits for the engine before saying it is unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

#[derive(Debug, thiserror::Error)]
pub enum DockerConnectError {
    #[error("cannot use the Docker Engine address {host}: {source}")]
    Address {
        host: String,
        source: bollard::errors::Error,
    },
    #[error("cannot reach the Docker Engine at {host}: {}", describe(.source))]
    Unreachable {
        host: String,
        source: bollard::errors::Error,
    },
    #[error("the Docker Engine at {host} did not answer within {} s", CONNECT_TIMEOUT.as_secs())]
    TimedOut { host: String },
}

/// Where the engine is expected: `$DOCKER_HOST`, or the local socket.
pub fn engine_address() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| DEFAULT_HOST.to_string())
}

/// Connects and negotiates the API version.
pub async fn connect() -> Result<Docker, DockerConnectError> {
    let host = engine_address();
    let docker =
        Docker::connect_with_host(&host).map_err(|source| DockerConnectError::Address {
            host: host.clone(),
            source,
        })?;
    match tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version()).await {
        Ok(Ok(docker)) => Ok(docker),
        Ok(Err(source)) => Err(DockerConnectError::Unreachable { host, source }),
        Err(_) => Err(DockerConnectError::TimedOut { host }),
    }
}

/// A failed engine call: what was being done, and the engine's own words for why.
#[derive(Debug, thiserror::Error)]
#[error("{action}: {}", describe(.source))]
pub struct EngineError {
    pub action: String,
    pub source: bollard::errors::Error,
}

impl EngineError {
    pub fn is_not_found(&self) -> bool {
        is_status(&self.source, 404)
    }
}

/// Names the action of a failed engine call: `docker.stop_container(..).await.doing("stop api")`.
pub trait Doing<T> {
    fn doing(self, action: impl Into<String>) -> Result<T, EngineError>;
}

impl<T> Doing<T> for Result<T, bollard::errors::Error> {
    fn doing(self, action: impl Into<String>) -> Result<T, EngineError> {
        self.map_err(|source| EngineError {
            action: action.into(),
            source,
        })
    }
}

/// True when the engine answered with HTTP `status` (404: no such thing; 304: already so).
pub fn is_status(error: &bollard::errors::Error, status: u16) -> bool {
    matches!(error, bollard::errors::Error::DockerResponseServerError { status_code, .. } if *status_code == status)
}

/// The engine's message without bollard's wrapping.
pub fn describe(error: &bollard::errors::Error) -> String {
    use bollard::errors::Error;
    match error {
        Error::DockerResponseServerError { message, .. } => message.trim().to_string(),
        Error::DockerStreamError { error } => error.trim().to_string(),
        other => {
            // hyper's errors say "client error (Connect)"; the cause is further down the chain.
            let mut text = other.to_string();
            let mut cause = std::error::Error::source(other);
            while let Some(error) = cause {
                let line = error.to_string();
                if !text.contains(&line) {
                    text = format!("{text}: {line}");
                }
                cause = error.source();
            }
            text
        }
    }
}
