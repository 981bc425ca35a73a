//! Measurements of live traffic, for judging a release while it serves: what the proxy saw of
//! each upstream ([`access_log`]), and what a Prometheus server answers to a query
//! ([`prometheus`]). Both give plain figures; what counts as good (the gates of a canary, the
//! steps) is policy, and lives in `stdlib/canary.rhai`.
//!
//! The proxy's figures need no cooperation from the application: Caddy writes one JSON line per
//! request with the upstream it chose and what that upstream answered (`deploy/caddy/caddy.json`
//! appends `route`, `upstream` and `upstream_status` to every access-log entry), so a build that
//! answers 500, answers late or refuses connections shows up whatever it exports itself.
//!
//! The other way round, [`push`] reports cutover's own runs to Prometheus (a Pushgateway).

pub(crate) mod access_log;
pub(crate) mod prometheus;
pub(crate) mod push;

use std::path::PathBuf;

/// Why a measurement could not be made.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot read the proxy's access log {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("Prometheus at {url}: {reason}")]
    Prometheus { url: String, reason: String },
}
