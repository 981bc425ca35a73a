//! The Docker Engine client: one bollard `Docker` per process, created on the first docker call
//! and cloned by every host module that needs it. `DOCKER_HOST` is honoured (unix socket or
//! tcp), the API version is negotiated (the engine may be older than bollard's default; asked
//! by `/_ping`, whose answer names it, rather than bollard's slower `/version`), and an
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
    #[error("the Docker Engine at {host} did not answer within {} s", .within.as_secs())]
    TimedOut { host: String, within: Duration },
}

/// Where the engine is expected: `$DOCKER_HOST`, or the local socket.
pub fn engine_address() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| DEFAULT_HOST.to_string())
}

/// Connects and negotiates the API version: the version the engine's `GET /_ping` names in
/// its `API-Version` header when the engine is reached over a socket or plain TCP, otherwise
/// (TLS, ssh, or a ping that does not say) bollard's negotiation.
pub async fn connect() -> Result<Docker, DockerConnectError> {
    connect_to(&engine_address(), CONNECT_TIMEOUT).await
}

/// [`connect`] to the engine at `host` (`unix://…`, `tcp://…`), which must answer `within`.
pub async fn connect_to(host: &str, within: Duration) -> Result<Docker, DockerConnectError> {
    let host = host.to_string();
    let address = |source| DockerConnectError::Address {
        host: host.clone(),
        source,
    };
    let deadline = tokio::time::Instant::now() + within;
    // bollard negotiates with `GET /version`, which the engine answers only after asking
    // containerd about itself: 4–5 ms here, against 0.3 ms for `/_ping`, on every run's way
    // to its first container call.
    if let Ok(Some(version)) = tokio::time::timeout_at(deadline, pinged_version(&host)).await {
        // As bollard's negotiation: the engine's version when it is older than bollard's.
        let newest = *bollard::API_DEFAULT_VERSION;
        let version = if version < newest { version } else { newest };
        return connect_at_version(&host, &version).map_err(address);
    }
    let docker = Docker::connect_with_host(&host).map_err(address)?;
    match tokio::time::timeout_at(deadline, docker.negotiate_version()).await {
        Ok(Ok(docker)) => Ok(docker),
        Ok(Err(source)) => Err(DockerConnectError::Unreachable { host, source }),
        Err(_) => Err(DockerConnectError::TimedOut { host, within }),
    }
}

/// bollard's client for `host` speaking API `version`.
fn connect_at_version(
    host: &str,
    version: &bollard::ClientVersion,
) -> Result<Docker, bollard::errors::Error> {
    // bollard's own default for a request (its constant is private).
    const REQUEST_TIMEOUT_S: u64 = 120;
    if host.starts_with("unix://") {
        Docker::connect_with_unix(host, REQUEST_TIMEOUT_S, version)
    } else {
        Docker::connect_with_http(host, REQUEST_TIMEOUT_S, version)
    }
}

/// The API version the engine at `host` says it speaks (`API-Version` of its `/_ping`), or
/// `None` when it cannot be asked that way (TLS, ssh) or did not say; the caller then
/// negotiates as bollard does, and reports what fails.
async fn pinged_version(host: &str) -> Option<bollard::ClientVersion> {
    let answer = if let Some(path) = host.strip_prefix("unix://") {
        ping(tokio::net::UnixStream::connect(path).await.ok()?).await?
    } else if let Some(address) = host
        .strip_prefix("tcp://")
        .or_else(|| host.strip_prefix("http://"))
        .filter(|_| std::env::var_os("DOCKER_TLS_VERIFY").is_none())
    {
        let address = address.trim_end_matches('/');
        ping(tokio::net::TcpStream::connect(address).await.ok()?).await?
    } else {
        return None;
    };
    api_version_header(&String::from_utf8_lossy(&answer))
}

/// The engine's whole answer to `GET /_ping` on `stream` (HTTP/1.0: it closes when done).
async fn ping(
    mut stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
) -> Option<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .await
        .ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.ok()?;
    Some(answer)
}

/// The `API-Version` header of an HTTP answer `1.50` as a version, if it is an OK answer that
/// has one.
fn api_version_header(answer: &str) -> Option<bollard::ClientVersion> {
    let head = answer.split("\r\n\r\n").next()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?;
    if status.split(' ').nth(1) != Some("200") {
        return None;
    }
    let value = lines.find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("api-version")
            .then(|| value.trim())
    })?;
    let (major, minor) = value.split_once('.')?;
    Some(bollard::ClientVersion {
        major_version: major.parse().ok()?,
        minor_version: minor.parse().ok()?,
    })
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

#[cfg(test)]
mod tests {
    use super::api_version_header;

    #[test]
    fn the_api_version_is_read_from_an_ok_ping_only() {
        let ok = "HTTP/1.0 200 OK\r\nApi-Version: 1.50\r\nOstype: linux\r\n\r\nOK";
        let version = api_version_header(ok).unwrap();
        assert_eq!((version.major_version, version.minor_version), (1, 50));
        let lower = "HTTP/1.1 200 OK\r\napi-version:1.41\r\n\r\nOK";
        assert_eq!(api_version_header(lower).unwrap().minor_version, 41);
        // Not an engine's OK answer, no header, or one that is no version: bollard negotiates.
        for answer in [
            "HTTP/1.0 500 Internal Server Error\r\nApi-Version: 1.50\r\n\r\n",
            "HTTP/1.0 200 OK\r\nServer: nginx\r\n\r\nOK",
            "HTTP/1.0 200 OK\r\nApi-Version: latest\r\n\r\n",
            "",
        ] {
            assert!(api_version_header(answer).is_none(), "{answer:?}");
        }
    }
}
