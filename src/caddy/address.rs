//! Upstream addresses as `caddy::switch` and `caddy::weights` take them: `host:port`, checked
//! before Caddy sees them. Caddy itself accepts any dial string — `not a host:port:x` or
//! `127.0.0.1:99999` — and then answers 502 to everyone, so a typo would be an outage. An
//! address must also accept a TCP connection (unless the caller opts out, when Caddy reaches
//! targets this host cannot), so traffic never moves to a port nothing listens on.

use std::{net::Ipv6Addr, time::Duration};

use futures_util::future::join_all;

use crate::caddy::{CaddyError, Result};

/// Checks that `addr` is `host:port` with a port in 1–65535. Caddy accepts any dial string
/// and then answers 502 to everyone, so this is checked before Caddy sees it.
pub fn validate(addr: &str) -> Result<()> {
    let bad = |reason: &str| CaddyError::BadAddress {
        addr: addr.to_string(),
        reason: format!("{reason}; expected host:port, e.g. 127.0.0.1:8080 or api-green:8080"),
    };
    if addr.is_empty() {
        return Err(bad("it is empty"));
    }
    if addr.chars().any(char::is_whitespace) {
        return Err(bad("it contains spaces"));
    }
    if addr.contains("://") || addr.contains('/') {
        return Err(bad("an address has no scheme or path"));
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(bad("it has no port"));
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(&format!("port {port:?} is not a number")));
    }
    match port.parse::<u32>() {
        Ok(1..=65535) => {}
        _ => return Err(bad(&format!("port {port} is out of range 1–65535"))),
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner
            .parse::<Ipv6Addr>()
            .map(drop)
            .map_err(|_| bad(&format!("{host} is no IPv6 address")));
    }
    if host.is_empty() {
        return Err(bad("the host is empty"));
    }
    if let Some(c) = host
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        return Err(bad(&format!("the host contains {c:?}")));
    }
    Ok(())
}

/// Checks that every address accepts a TCP connection within `timeout`, all at once.
pub async fn check_accepting(addrs: &[String], timeout: Duration) -> Result<()> {
    let results = join_all(addrs.iter().map(|addr| async move {
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr.as_str())).await {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some((addr.clone(), e.to_string())),
            Err(_) => Some((
                addr.clone(),
                format!("no connection within {} ms", timeout.as_millis()),
            )),
        }
    }))
    .await;
    let down: Vec<(String, String)> = results.into_iter().flatten().collect();
    if down.is_empty() {
        return Ok(());
    }
    Err(CaddyError::TargetDown {
        addr: down
            .iter()
            .map(|(a, _)| a.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        detail: down
            .iter()
            .map(|(a, e)| format!("{a}: {e}"))
            .collect::<Vec<_>>()
            .join("; "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        for good in ["127.0.0.1:8080", "api-green:80", "[::1]:65535", "a.b_c:1"] {
            validate(good).unwrap();
        }
        for (bad, why) in [
            ("not a host:port:x", "spaces"),
            ("127.0.0.1:99999", "out of range"),
            ("127.0.0.1:0", "out of range"),
            ("a:b:1", "contains ':'"),
            ("localhost", "no port"),
            ("http://x:1", "scheme"),
            (":80", "host is empty"),
            ("x:", "not a number"),
        ] {
            let error = validate(bad).unwrap_err().to_string();
            assert!(error.contains(why), "{bad}: {error}");
        }
    }
}
