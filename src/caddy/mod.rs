//! A client for Caddy's admin API (`$CADDY_ADMIN`, default `http://127.0.0.1:2019`): read the
//! config, load a new one (JSON, or a Caddyfile through Caddy's own adapter), and change where a
//! route sends its traffic. Every edit carries `If-Match` with the ETag of what it was computed
//! from, so an edit made by someone else in between is refused by Caddy (412) and reported as a
//! conflict instead of being overwritten. Caddy itself validates a new config before it swaps it
//! in and keeps the old one when it refuses: its message is passed on whole.
//!
//! What a route's upstreams are lives in [`crate::caddy::upstream`], how a switch is planned in
//! [`crate::caddy::plan`]; this file only speaks HTTP to Caddy.

pub(crate) mod address;
pub(crate) mod ahead;
pub(crate) mod plan;
pub(crate) mod reads;
pub(crate) mod upstream;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::{
    caddy::plan::{SwitchPlan, SwitchStep},
    caddy::upstream::{ProxyRoute, StagedSlots},
};

pub const DEFAULT_ADMIN: &str = "http://127.0.0.1:2019";
/// How long one admin request may take. A load is quick (old servers drain in the background),
/// but a large config with many certificates can take seconds to provision.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum CaddyError {
    #[error("invalid Caddy admin address {0:?} (CADDY_ADMIN): expected http://host:port")]
    BadAdmin(String),
    #[error(
        "cannot reach the Caddy admin API at {admin}: {detail}; is Caddy running with its admin \
         endpoint there? (set CADDY_ADMIN to its address)"
    )]
    Unreachable { admin: String, detail: String },
    #[error("Caddy rejected {what}: {message}")]
    Rejected { what: String, message: String },
    #[error(
        "{what} changed since this run read it: someone else edited Caddy's config meanwhile, so \
         nothing was changed; read it again and retry"
    )]
    Conflict { what: String },
    #[error("Caddy's config has no object with @id {id:?} ({known})")]
    UnknownId { id: String, known: String },
    #[error("route {id:?}: {problem}")]
    Route { id: String, problem: String },
    #[error("invalid upstream address {addr:?}: {reason}")]
    BadAddress { addr: String, reason: String },
    #[error(
        "upstream {addr} does not accept connections ({detail}); traffic was left where it was \
         (pass #{{check: false}} to skip this check)"
    )]
    TargetDown { addr: String, detail: String },
    #[error("the Caddy at {admin} cannot split traffic by weight: {reason}")]
    NoWeights { admin: String, reason: String },
    #[error("upstream file {path}: {detail}")]
    File { path: String, detail: String },
    #[error("unexpected answer from the Caddy admin API at {admin}: {detail}")]
    Protocol { admin: String, detail: String },
}

pub type Result<T, E = CaddyError> = std::result::Result<T, E>;

/// A value read from the config, with the ETag that names that exact version of it.
#[derive(Debug, Clone)]
pub struct Read {
    pub value: Value,
    pub etag: Option<String>,
}

/// The admin API of one Caddy.
#[derive(Debug, Clone)]
pub struct Admin {
    base: String,
    http: reqwest::Client,
}

impl Admin {
    /// `address` is `http://host:port`, or `host:port`.
    pub fn new(address: &str, http: reqwest::Client) -> Result<Admin> {
        let address = address.trim().trim_end_matches('/');
        if address.starts_with("unix") {
            // Caddy can serve its admin API on a unix socket; this client speaks TCP only.
            return Err(CaddyError::BadAdmin(address.to_string()));
        }
        let base = if address.contains("://") {
            address.to_string()
        } else {
            format!("http://{address}")
        };
        match reqwest::Url::parse(&base) {
            Ok(url) if url.scheme() == "http" || url.scheme() == "https" => {}
            _ => return Err(CaddyError::BadAdmin(address.to_string())),
        }
        Ok(Admin { base, http })
    }

    pub fn address(&self) -> &str {
        &self.base
    }

    /// Sends one request; a 4xx/5xx answer becomes [`CaddyError::Rejected`] (or `Conflict` on
    /// 412) carrying Caddy's own message.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
        if_match: Option<&str>,
        what: &str,
    ) -> Result<(reqwest::header::HeaderMap, Vec<u8>)> {
        // Every config change restarts Caddy's admin server, which closes idle connections: a
        // change goes on a fresh connection of its own, and a read (idempotent) reuses a pooled
        // one — a switch reads its route right after the run's first look at the proxy — and,
        // should that one have been closed under it, is sent again once on a fresh one.
        let read = method == Method::GET;
        // Only a read is sent twice, and a read has no body: the body goes with the first.
        let mut body = body;
        let mut request = |fresh: bool| {
            let mut request = self
                .http
                .request(method.clone(), format!("{}{path}", self.base))
                .timeout(REQUEST_TIMEOUT);
            if fresh {
                request = request.header("connection", "close");
            }
            if let Some((content_type, body)) = body.take() {
                request = request.header("content-type", content_type).body(body);
            }
            if let Some(etag) = if_match {
                request = request.header("if-match", etag);
            }
            request
        };
        let unreachable = |e: reqwest::Error| CaddyError::Unreachable {
            admin: self.base.clone(),
            detail: describe(&e),
        };
        let response = match request(!read).send().await {
            Err(error) if read && !error.is_timeout() => request(true).send().await,
            sent => sent,
        }
        .map_err(unreachable)?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(unreachable)?.to_vec();
        if status.is_success() {
            return Ok((headers, body));
        }
        let message = caddy_message(&body);
        Err(match status {
            StatusCode::PRECONDITION_FAILED => CaddyError::Conflict {
                what: what.to_string(),
            },
            _ => CaddyError::Rejected {
                what: what.to_string(),
                message: if message.is_empty() {
                    format!("HTTP {status}")
                } else {
                    message
                },
            },
        })
    }

    /// GETs a config path (`/config/…` or `/id/…`) with its ETag.
    pub async fn get(&self, path: &str) -> Result<Read> {
        let (headers, body) = self.send(Method::GET, path, None, None, path).await?;
        let value = serde_json::from_slice(&body).map_err(|e| CaddyError::Protocol {
            admin: self.base.clone(),
            detail: format!("GET {path} is not JSON: {e}"),
        })?;
        let etag = headers
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok(Read { value, etag })
    }

    /// The root certificate (PEM) of Caddy's certificate authority `id` (`local` is the one
    /// `tls internal` issues from), for clients that must trust the sites it certifies.
    pub async fn root_certificate(&self, id: &str) -> Result<String> {
        check_id(id)?;
        let path = format!("/pki/ca/{id}");
        let read = self.get(&path).await?;
        match read.value["root_certificate"].as_str() {
            Some(pem) => Ok(pem.to_string()),
            None => Err(CaddyError::Protocol {
                admin: self.base.clone(),
                detail: format!("GET {path} names no root_certificate"),
            }),
        }
    }

    /// The whole running config (`null` when Caddy runs none).
    pub async fn config(&self) -> Result<Read> {
        self.get("/config/").await
    }

    /// Replaces the whole config in one step. With `if_match` (the ETag of an earlier
    /// [`Admin::config`]) it is refused if the config changed since. A config Caddy cannot run is
    /// refused and the running one stays.
    pub async fn load(&self, config: &Value, if_match: Option<&str>) -> Result<()> {
        let body = serde_json::to_vec(config).expect("a JSON value serializes");
        self.send(
            Method::POST,
            "/config/",
            Some(("application/json", body)),
            if_match,
            "the config",
        )
        .await
        .map(drop)
    }

    /// Adapts a Caddyfile to JSON with Caddy's own adapter; returns the config and warnings.
    pub async fn adapt(&self, caddyfile: &str) -> Result<(Value, Vec<String>)> {
        let (_, body) = self
            .send(
                Method::POST,
                "/adapt",
                Some(("text/caddyfile", caddyfile.as_bytes().to_vec())),
                None,
                "the Caddyfile",
            )
            .await?;
        let adapted: Value = serde_json::from_slice(&body).map_err(|e| CaddyError::Protocol {
            admin: self.base.clone(),
            detail: format!("/adapt answered no JSON: {e}"),
        })?;
        let warnings = adapted["warnings"]
            .as_array()
            .map(|all| all.iter().map(describe_warning).collect())
            .unwrap_or_default();
        Ok((adapted["result"].clone(), warnings))
    }

    /// The object with `@id` `id` and the reverse proxy it holds.
    pub async fn route(&self, id: &str) -> Result<ProxyRoute> {
        check_id(id)?;
        let read = match self.get(&format!("/id/{id}")).await {
            Err(CaddyError::Rejected { message, .. }) if message.contains("unknown object ID") => {
                return Err(CaddyError::UnknownId {
                    id: id.to_string(),
                    known: self.known_ids().await,
                });
            }
            other => other?,
        };
        let etag = read.etag.ok_or_else(|| CaddyError::Protocol {
            admin: self.base.clone(),
            detail: format!("GET /id/{id} carried no ETag (Caddy older than 2.7?)"),
        })?;
        ProxyRoute::parse(id, read.value, etag)
    }

    /// "known ids: a, b" for an error message, best effort.
    async fn known_ids(&self) -> String {
        let Ok(read) = self.config().await else {
            return "cannot list the ids it has".to_string();
        };
        let mut ids = Vec::new();
        collect_ids(&read.value, &mut ids);
        if ids.is_empty() {
            "it has no @id at all".to_string()
        } else {
            format!("ids it has: {}", ids.join(", "))
        }
    }

    /// Replaces the value at `path` under the route in one request, refused unless the route is
    /// still as it was read.
    async fn patch(&self, route: &ProxyRoute, value: &Value) -> Result<()> {
        let body = serde_json::to_vec(value).expect("a JSON value serializes");
        self.send(
            Method::PATCH,
            &route.proxy_api_path(),
            Some(("application/json", body)),
            Some(&route.etag),
            &format!("route {:?}", route.id),
        )
        .await
        .map(drop)
    }

    /// Carries out a planned switch, in the order that never sends traffic anywhere unplanned
    /// (see [`SwitchStep`]).
    pub async fn apply(&self, plan: &SwitchPlan, staged: Option<StagedSlots>) -> Result<()> {
        let mut staged = staged;
        for step in &plan.steps {
            match step {
                SwitchStep::WriteSlots(writes) => match staged.take_if(|s| s.covers(writes)) {
                    Some(staged) => {
                        tracing::debug!("slot files written ahead: renamed into place");
                        staged.install(writes)?
                    }
                    None => crate::caddy::upstream::write_slots(writes)?,
                },
                SwitchStep::Patch(handler) => self.patch(&plan.route, handler).await?,
            }
        }
        Ok(())
    }

    /// Whether this Caddy has the `weighted_round_robin` policy (Caddy ≥ 2.7), asked without
    /// changing anything: Caddy's Caddyfile adapter looks the module up.
    pub async fn check_weights_supported(&self) -> Result<()> {
        const PROBE: &str = ":1 {\n\treverse_proxy 127.0.0.1:1 127.0.0.1:2 {\n\t\tlb_policy weighted_round_robin 1 1\n\t}\n}\n";
        match self.adapt(PROBE).await {
            Ok(_) => Ok(()),
            Err(CaddyError::Rejected { message, .. }) => Err(CaddyError::NoWeights {
                admin: self.base.clone(),
                reason: format!(
                    "it does not know the weighted_round_robin policy, added in Caddy 2.7 \
                     ({message}); {}; canary weights need Caddy ≥ 2.7",
                    local_caddy_version()
                        .await
                        .map(|v| format!("the caddy on PATH here is {v}"))
                        .unwrap_or_else(|| "`caddy version` there tells which it runs".into())
                ),
            }),
            Err(other) => Err(other),
        }
    }
}

/// Ids are one path segment of the admin API.
fn check_id(id: &str) -> Result<()> {
    if id.is_empty() || id.contains(['/', '?', '#', ' ']) {
        return Err(CaddyError::Route {
            id: id.to_string(),
            problem: "an @id is a non-empty name without '/', '?', '#' or spaces".into(),
        });
    }
    Ok(())
}

fn collect_ids(value: &Value, ids: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(id)) = map.get("@id") {
                ids.push(id.clone());
            }
            map.values().for_each(|v| collect_ids(v, ids));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_ids(v, ids)),
        _ => {}
    }
}

/// Caddy answers errors as `{"error": "..."}`.
fn caddy_message(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string())
}

fn describe_warning(warning: &Value) -> String {
    let text = |key: &str| warning[key].as_str().unwrap_or_default().to_string();
    let line = warning["line"].as_i64().unwrap_or_default();
    format!("{}:{line}: {}", text("file"), text("message"))
}

fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return format!("no answer within {} s", REQUEST_TIMEOUT.as_secs());
    }
    let mut cause: &dyn std::error::Error = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// `caddy version` of the binary on PATH, to name the version in an error. Only a hint: the
/// Caddy behind the admin API may be another one.
async fn local_caddy_version() -> Option<String> {
    let output = tokio::process::Command::new("caddy")
        .arg("version")
        .output()
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.split_whitespace().next().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_addresses() {
        let http = crate::context::http_client();
        assert_eq!(
            Admin::new("127.0.0.1:2019", http.clone())
                .unwrap()
                .address(),
            "http://127.0.0.1:2019"
        );
        assert_eq!(
            Admin::new("http://localhost:2019/", http.clone())
                .unwrap()
                .address(),
            "http://localhost:2019"
        );
        assert!(Admin::new("unix//run/caddy.sock", http).is_err());
    }

    #[test]
    fn ids_are_found_anywhere() {
        let config = serde_json::json!({"apps": {"http": {"servers": {"a": {"routes": [
            {"@id": "production", "handle": [{"@id": "proxy"}]}, {"@id": "staging"}]}}}}});
        let mut ids = Vec::new();
        collect_ids(&config, &mut ids);
        ids.sort();
        assert_eq!(ids, ["production", "proxy", "staging"]);
    }
}
