//! Where a Caddy route sends its traffic.
//!
//! A route is the config object with a given `@id`; it holds one `reverse_proxy` handler (itself,
//! or nested in `handle`/`routes`). Its upstreams dial either an address (`10.0.0.5:8080`) or a
//! file: `{file.deploy/caddy/upstreams/production}` is Caddy's file placeholder, read again for
//! every request, so the upstream follows whatever address that file holds.
//!
//! That is what makes a switch cheap. Any change to Caddy's config, even a one-field PATCH,
//! rebuilds its HTTP servers, and the old ones close their idle keep-alive connections: a client
//! that sends its next request on such a connection just then gets no answer. A file is replaced
//! whole instead (written and renamed, so Caddy reads the old address or the new one, never
//! half): no reload, no connection closed, and requests in flight finish where they are.
//!
//! A file holds one address, so a route that must reach several (the replicas of a scaled
//! service) dials several files: its **slots**. Caddy's load balancer picks an upstream for each
//! request and only then reads its file, so addresses spread over the slots share the traffic.
//! How a switch or a canary fills and orders the slots is planned in [`crate::caddy::plan`].

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::{
    caddy::{CaddyError, Result},
    journal::atomic::Prepared,
};

/// Caddy's policy for canary splits (Caddy ≥ 2.7).
pub(crate) const WEIGHTED: &str = "weighted_round_robin";

/// What an upstream dials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dial {
    Address(String),
    /// `{file.PATH}`: the address is PATH's content, read per request.
    File(PathBuf),
}

impl Dial {
    pub fn parse(dial: &str) -> Dial {
        match dial
            .strip_prefix("{file.")
            .and_then(|rest| rest.strip_suffix('}'))
        {
            Some(path) if !path.contains(['{', '}']) => Dial::File(PathBuf::from(path)),
            _ => Dial::Address(dial.to_string()),
        }
    }

    pub(crate) fn to_config(&self) -> String {
        match self {
            Dial::Address(addr) => addr.clone(),
            Dial::File(path) => format!("{{file.{}}}", path.display()),
        }
    }
}

/// One upstream of the route, with its weight when a weighted policy is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub dial: Dial,
    pub weight: Option<u64>,
}

/// A route's reverse proxy as read from Caddy, with the ETag of the route object.
#[derive(Debug, Clone)]
pub struct ProxyRoute {
    pub id: String,
    pub etag: String,
    /// Where the handler is under the `@id` object (`["handle", "0"]`); empty when the `@id`
    /// is on the handler itself.
    handler_path: Vec<String>,
    handler: Value,
}

impl ProxyRoute {
    pub fn parse(id: &str, route: Value, etag: String) -> Result<ProxyRoute> {
        let problem = |problem: String| CaddyError::Route {
            id: id.to_string(),
            problem,
        };
        let mut found = Vec::new();
        find_proxies(&route, &mut Vec::new(), &mut found);
        let (handler_path, handler) = match found.len() {
            1 => found.pop().unwrap(),
            0 => return Err(problem("it holds no reverse_proxy handler".into())),
            n => {
                let places: Vec<String> = found.iter().map(|(p, _)| p.join("/")).collect();
                return Err(problem(format!(
                    "it holds {n} reverse_proxy handlers (at {}); put the @id on the one to switch",
                    places.join(", ")
                )));
            }
        };
        if handler.get("dynamic_upstreams").is_some() {
            return Err(problem(
                "its reverse_proxy uses dynamic_upstreams, which cutover does not drive".into(),
            ));
        }
        let route = ProxyRoute {
            id: id.to_string(),
            etag,
            handler_path,
            handler,
        };
        route.upstreams()?;
        Ok(route)
    }

    /// The admin API path of the handler: `/id/production/handle/0`.
    pub fn proxy_api_path(&self) -> String {
        let mut path = format!("/id/{}", self.id);
        for part in &self.handler_path {
            path.push('/');
            path.push_str(part);
        }
        path
    }

    pub fn upstreams(&self) -> Result<Vec<Upstream>> {
        let list = match self.handler.get("upstreams") {
            None => return Ok(Vec::new()),
            Some(Value::Array(list)) => list,
            Some(_) => return Err(self.problem("its upstreams are not a list")),
        };
        let weights = self.weights();
        list.iter()
            .enumerate()
            .map(|(i, upstream)| {
                let dial = upstream["dial"]
                    .as_str()
                    .ok_or_else(|| self.problem(&format!("upstream #{} has no dial", i + 1)))?;
                Ok(Upstream {
                    dial: Dial::parse(dial),
                    weight: weights
                        .as_ref()
                        .map(|w| w.get(i).copied().unwrap_or_default()),
                })
            })
            .collect()
    }

    /// The weights of a `weighted_round_robin` policy, if that is the policy.
    pub(crate) fn weights(&self) -> Option<Vec<u64>> {
        let policy = &self.handler["load_balancing"]["selection_policy"];
        (policy["policy"] == WEIGHTED).then(|| {
            policy["weights"]
                .as_array()
                .map(|w| w.iter().map(|w| w.as_u64().unwrap_or(0)).collect())
                .unwrap_or_default()
        })
    }

    /// The files the route dials, in upstream order, each once: its slots.
    pub fn slots(&self) -> Result<Vec<PathBuf>> {
        let mut slots: Vec<PathBuf> = Vec::new();
        for upstream in self.upstreams()? {
            if let Dial::File(path) = upstream.dial
                && !slots.contains(&path)
            {
                slots.push(path);
            }
        }
        Ok(slots)
    }

    /// The distinct addresses that receive traffic now, in upstream order (a slotted route's
    /// addresses in slot order): upstreams of weight 0 are left out, a dialed file is read. A
    /// slot not written yet (before a stack's first switch) sends traffic nowhere.
    pub fn targets(&self) -> Result<Vec<String>> {
        let mut targets: Vec<String> = Vec::new();
        for upstream in self.upstreams()? {
            let addr = match upstream.dial {
                _ if upstream.weight == Some(0) => None,
                Dial::Address(addr) => Some(addr),
                Dial::File(path) => read_slot(&path)?,
            };
            if let Some(addr) = addr.filter(|a| !targets.contains(a)) {
                targets.push(addr);
            }
        }
        Ok(targets)
    }

    /// What each upstream holds, in order: its address, or for a file what the file holds.
    /// Any change here is a change of where traffic goes, even one `targets` does not show
    /// (two slots trading addresses).
    pub fn held(&self) -> Result<Vec<Option<String>>> {
        self.upstreams()?
            .into_iter()
            .map(|upstream| match upstream.dial {
                Dial::Address(addr) => Ok(Some(addr)),
                Dial::File(path) => read_slot(&path),
            })
            .collect()
    }

    pub(crate) fn problem(&self, problem: &str) -> CaddyError {
        CaddyError::Route {
            id: self.id.clone(),
            problem: problem.to_string(),
        }
    }

    /// The handler with `dials` as its upstreams and, with `weights`, a weighted policy; a
    /// weighted policy left from a canary is dropped otherwise. Other settings are kept.
    pub(crate) fn handler_with(&self, dials: &[Dial], weights: Option<Vec<u64>>) -> Value {
        let mut handler = self.handler.clone();
        handler["upstreams"] = dials
            .iter()
            .map(|d| json!({"dial": d.to_config()}))
            .collect();
        let object = handler.as_object_mut().expect("a handler is an object");
        match weights {
            Some(weights) => {
                let lb = object.entry("load_balancing").or_insert_with(|| json!({}));
                lb["selection_policy"] = json!({"policy": WEIGHTED, "weights": weights});
            }
            None if self.weights().is_some() => {
                if let Some(Value::Object(lb)) = object.get_mut("load_balancing") {
                    lb.remove("selection_policy");
                    if lb.is_empty() {
                        object.remove("load_balancing");
                    }
                }
            }
            None => {}
        }
        handler
    }
}

fn find_proxies(value: &Value, path: &mut Vec<String>, found: &mut Vec<(Vec<String>, Value)>) {
    if value["handler"] == "reverse_proxy" {
        found.push((path.clone(), value.clone()));
        return;
    }
    for key in ["handle", "routes"] {
        if let Some(Value::Array(items)) = value.get(key) {
            for (i, item) in items.iter().enumerate() {
                path.extend([key.to_string(), i.to_string()]);
                find_proxies(item, path, found);
                path.truncate(path.len() - 2);
            }
        }
    }
}

/// The address a slot file holds, `None` when it holds none: the file is missing (not written
/// yet) or empty. Caddy cannot dial such a slot: a request it picks the slot for fails.
pub fn read_slot(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_string()).filter(|a| !a.is_empty())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CaddyError::File {
            path: path.display().to_string(),
            detail: format!(
                "cannot read it ({e}); cutover must see the file at the path Caddy reads it from"
            ),
        }),
    }
}

/// One slot file to replace with an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotWrite {
    pub path: PathBuf,
    pub addr: String,
}

/// Replaces the slot files, each whole (temp file, fsync, rename), renamed back to back in the
/// order given: Caddy reads each slot's old address or its new one, never a torn one.
pub fn write_slots(writes: &[SlotWrite]) -> Result<()> {
    if writes.is_empty() {
        return Ok(());
    }
    stage_slots(writes.to_vec())?.install(writes)
}

/// Slot contents written and fsynced beside their files ahead of the switch that renames them
/// into place ([`stage_slots`]): what a switch spends on the disk, spent while its target is
/// still being checked. Dropped, the temporary files are removed and the slots are untouched.
pub struct StagedSlots {
    writes: Vec<SlotWrite>,
    files: Prepared,
}

/// Writes and fsyncs `writes`' contents beside their slot files, renaming nothing yet.
pub fn stage_slots(writes: Vec<SlotWrite>) -> Result<StagedSlots> {
    let failed = |e| write_failed(&writes, e);
    let mut dirs: Vec<&Path> = Vec::new();
    for write in &writes {
        if let Some(dir) = write.path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dirs.contains(&dir)
        {
            std::fs::create_dir_all(dir).map_err(failed)?;
            dirs.push(dir);
        }
    }
    // What a run killed between staging and switching (or mid-write) left beside the slots.
    let targets: Vec<&Path> = writes.iter().map(|w| w.path.as_path()).collect();
    crate::journal::atomic::remove_abandoned_of(&targets);
    let contents: Vec<Vec<u8>> = writes
        .iter()
        .map(|w| format!("{}\n", w.addr).into_bytes())
        .collect();
    let files: Vec<(&Path, &[u8])> = writes
        .iter()
        .zip(&contents)
        .map(|(w, c)| (w.path.as_path(), c.as_slice()))
        .collect();
    let files = crate::journal::atomic::prepare_all(&files, 0o644).map_err(failed)?;
    Ok(StagedSlots { writes, files })
}

/// A failed write of `writes`, naming the first slot (the error may be any one's).
fn write_failed(writes: &[SlotWrite], e: std::io::Error) -> CaddyError {
    let first = writes.first().map(|w| w.path.display().to_string());
    CaddyError::File {
        path: match writes.len() {
            0 | 1 => first.unwrap_or_default(),
            n => format!(
                "{} (or one of the {} other slots written with it)",
                first.unwrap_or_default(),
                n - 1
            ),
        },
        detail: format!("cannot write it: {e}"),
    }
}

impl StagedSlots {
    /// Whether every one of `writes` was staged (the same file, the same address).
    pub fn covers(&self, writes: &[SlotWrite]) -> bool {
        writes.iter().all(|w| self.writes.contains(w))
    }

    /// Renames the staged contents of `writes` into place, back to back in that order; those
    /// of other slots are removed. `writes` must be covered ([`StagedSlots::covers`]).
    pub fn install(self, writes: &[SlotWrite]) -> Result<()> {
        let order: Vec<&Path> = writes.iter().map(|w| w.path.as_path()).collect();
        self.files
            .install(&order)
            .map_err(|e| write_failed(writes, e))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Route `production` with one handler: the fixture of the route-model and planning tests.
    pub(crate) fn route(handler: Value) -> ProxyRoute {
        ProxyRoute::parse(
            "production",
            json!({"@id": "production", "handle": [handler]}),
            "\"/config/x 1\"".into(),
        )
        .unwrap()
    }

    #[test]
    fn the_proxy_is_found_in_subroutes_and_must_be_unique() {
        let proxy = json!({"handler": "reverse_proxy", "upstreams": [{"dial": "a:1"}]});
        let nested = json!({"@id": "production", "handle": [
            {"handler": "headers"},
            {"handler": "subroute", "routes": [{"handle": [proxy.clone()]}]}]});
        let route = ProxyRoute::parse("production", nested, "\"e\"".into()).unwrap();
        assert_eq!(
            route.proxy_api_path(),
            "/id/production/handle/1/routes/0/handle/0"
        );
        // The @id on the handler itself.
        let own = ProxyRoute::parse("proxy", proxy.clone(), "\"e\"".into()).unwrap();
        assert_eq!(own.proxy_api_path(), "/id/proxy");
        let two = json!({"handle": [proxy.clone(), proxy]});
        let error = ProxyRoute::parse("both", two, "\"e\"".into()).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("holds 2 reverse_proxy handlers (at handle/0, handle/1)"),
            "{error}"
        );
        let none = json!({"handle": [{"handler": "static_response"}]});
        let error = ProxyRoute::parse("x", none, "\"e\"".into()).unwrap_err();
        assert!(error.to_string().contains("holds no reverse_proxy handler"));
    }

    #[test]
    fn file_dials() {
        assert_eq!(
            Dial::parse("{file./srv/up}"),
            Dial::File(PathBuf::from("/srv/up"))
        );
        assert_eq!(
            Dial::parse("{http.x}:1"),
            Dial::Address("{http.x}:1".into())
        );
    }

    #[test]
    fn slots_and_targets_follow_upstream_order_once_each() {
        let dir = tempfile::tempdir().unwrap();
        let slot = |n: usize| dir.path().join(format!("p.{n}"));
        let dial = |n: usize| format!("{{file.{}}}", slot(n).display());
        std::fs::write(slot(1), "b:1\n").unwrap();
        std::fs::write(slot(2), "a:1").unwrap();
        std::fs::write(slot(3), "b:1").unwrap();
        std::fs::write(slot(4), "\n").unwrap();
        let r = route(json!({"handler": "reverse_proxy", "upstreams": [
            {"dial": dial(1)}, {"dial": dial(2)}, {"dial": dial(3)}, {"dial": dial(4)},
            {"dial": dial(5)}, {"dial": dial(1)}]}));
        assert_eq!(r.slots().unwrap(), (1..=5).map(slot).collect::<Vec<_>>());
        // Distinct, in slot order; an empty or missing slot holds nothing.
        assert_eq!(r.targets().unwrap(), ["b:1", "a:1"]);
        assert_eq!(read_slot(&slot(4)).unwrap(), None);
        assert_eq!(read_slot(&slot(5)).unwrap(), None);
    }

    #[test]
    fn a_write_removes_what_a_killed_run_left_beside_the_slots() {
        let dir = tempfile::tempdir().unwrap();
        let slot = |n: usize| dir.path().join(format!("p.{n}"));
        // A run killed after staging its switch: its pid is gone, its files are not.
        let left = dir.path().join(".p.1.tmp-2147483646-7");
        std::fs::write(&left, "a:1\n").unwrap();
        let writes: Vec<SlotWrite> = (1..=2)
            .map(|n| SlotWrite {
                path: slot(n),
                addr: "b:1".into(),
            })
            .collect();
        write_slots(&writes).unwrap();
        assert!(!left.exists());
        assert_eq!(read_slot(&slot(1)).unwrap().as_deref(), Some("b:1"));
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["p.1", "p.2"]);
    }
}
