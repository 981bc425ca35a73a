//! Where a Caddy route sends its traffic, and the plan for moving it.
//!
//! A route is the config object with a given `@id`; it holds one `reverse_proxy` handler (itself,
//! or nested in `handle`/`routes`). Its upstreams dial either an address (`10.0.0.5:8080`) or a
//! file: `{file.deploy/caddy/upstreams/production}` is Caddy's file placeholder, read again for
//! every request, so the route follows whatever address that file holds.
//!
//! That is what makes a switch cheap. Any change to Caddy's config, even a one-field PATCH,
//! rebuilds its HTTP servers, and the old ones close their idle keep-alive connections: a client
//! that sends its next request on such a connection just then gets no answer. A route that dials
//! a file is switched by replacing the file (written whole and renamed, so Caddy reads the old
//! address or the new one, never half): no reload, no connection closed, and requests already
//! in flight finish where they are. Routes with literal addresses are switched with one PATCH of
//! the handler, atomic but with the reload's cost. Canary weights always take a PATCH; a route
//! that dials a file keeps the file among its weighted upstreams, so the switch that ends the
//! canary can return it to the file alone.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::caddy::{CaddyError, Result};

const WEIGHTED: &str = "weighted_round_robin";

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

    fn to_config(&self) -> String {
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
    fn weights(&self) -> Option<Vec<u64>> {
        let policy = &self.handler["load_balancing"]["selection_policy"];
        (policy["policy"] == WEIGHTED).then(|| {
            policy["weights"]
                .as_array()
                .map(|w| w.iter().map(|w| w.as_u64().unwrap_or(0)).collect())
                .unwrap_or_default()
        })
    }

    /// The file the route dials, if it dials one.
    pub fn file(&self) -> Result<Option<PathBuf>> {
        Ok(self.upstreams()?.into_iter().find_map(|u| match u.dial {
            Dial::File(path) => Some(path),
            Dial::Address(_) => None,
        }))
    }

    /// The addresses that receive traffic now (upstreams of weight 0 are left out), with the
    /// content of a dialed file read. A dialed file not written yet (before a stack's first
    /// switch) sends traffic nowhere.
    pub fn targets(&self) -> Result<Vec<String>> {
        let mut targets = Vec::new();
        for upstream in self.upstreams()? {
            match upstream.dial {
                _ if upstream.weight == Some(0) => {}
                Dial::Address(addr) => targets.push(addr),
                Dial::File(path) if !path.exists() => {}
                Dial::File(path) => targets.push(read_file(&path)?),
            }
        }
        Ok(targets)
    }

    fn problem(&self, problem: &str) -> CaddyError {
        CaddyError::Route {
            id: self.id.clone(),
            problem: problem.to_string(),
        }
    }

    /// The handler with `dials` as its upstreams and, with `weights`, a weighted policy; a
    /// weighted policy left from a canary is dropped otherwise. Other settings are kept.
    fn handler_with(&self, dials: &[Dial], weights: Option<Vec<u64>>) -> Value {
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

/// How to switch: by the route's file when it dials one (or with `File(Some(path))`, making it
/// dial that file), or by PATCHing literal addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Auto,
    File(Option<PathBuf>),
    Patch,
}

/// One step of a switch.
#[derive(Debug, Clone)]
pub enum SwitchStep {
    /// Replace the upstream file: no reload.
    WriteFile { path: PathBuf, addr: String },
    /// Replace the handler in one If-Match PATCH: a reload.
    Patch(Value),
}

/// What a switch (or a weights change) will do, computed before anything changes.
#[derive(Debug, Clone)]
pub struct SwitchPlan {
    pub route: ProxyRoute,
    pub from: Vec<String>,
    pub to: Vec<String>,
    /// `file` (no config reload) or `patch`.
    pub mode: &'static str,
    pub steps: Vec<SwitchStep>,
}

/// Plans moving all of `route`'s traffic to `to`.
pub fn plan_switch(route: ProxyRoute, to: Vec<String>, mode: Mode) -> Result<SwitchPlan> {
    let from = route.targets()?;
    let current_file = route.file()?;
    let file = match mode {
        Mode::Auto => current_file.filter(|_| to.len() == 1),
        Mode::Patch => None,
        Mode::File(path) => {
            let Some(path) = path.or(current_file) else {
                return Err(route.problem(
                    "it dials no {file.…} upstream; give the file to dial with #{file: PATH}",
                ));
            };
            if to.len() != 1 {
                return Err(route.problem(&format!(
                    "a file holds one address, not {}; switch by patch for several",
                    to.len()
                )));
            }
            Some(path)
        }
    };
    let Some(path) = file else {
        let dials: Vec<Dial> = to.iter().cloned().map(Dial::Address).collect();
        let steps = vec![SwitchStep::Patch(route.handler_with(&dials, None))];
        return Ok(SwitchPlan {
            route,
            from,
            to,
            mode: "patch",
            steps,
        });
    };
    let upstreams = route.upstreams()?;
    let dial = Dial::File(path.clone());
    let write = SwitchStep::WriteFile {
        path: path.clone(),
        addr: to[0].clone(),
    };
    let steps =
        if upstreams.len() == 1 && upstreams[0].dial == dial && upstreams[0].weight.is_none() {
            vec![write]
        } else {
            let patch = SwitchStep::Patch(route.handler_with(std::slice::from_ref(&dial), None));
            let file_serves = upstreams
                .iter()
                .any(|u| u.dial == dial && u.weight != Some(0));
            // The file's address already takes traffic: narrow the route to it first, then move
            // it. Otherwise the file takes none yet, so filling it first changes nothing live.
            if file_serves {
                vec![patch, write]
            } else {
                vec![write, patch]
            }
        };
    Ok(SwitchPlan {
        route,
        from,
        to,
        mode: "file",
        steps,
    })
}

/// Plans a weighted split. A route that dials a file keeps it as an upstream, weighted by the
/// share given to the address it holds (0 if none), so a later switch can return to it.
pub fn plan_weights(route: ProxyRoute, weights: Vec<(String, u64)>) -> Result<SwitchPlan> {
    if weights.iter().all(|(_, w)| *w == 0) {
        return Err(route.problem("at least one weight must be above 0"));
    }
    let from = route.targets()?;
    let mut entries: Vec<(Dial, u64)> = Vec::new();
    if let Some(path) = route.file()? {
        let held = read_file(&path)?;
        let share = weights
            .iter()
            .find(|(a, _)| *a == held)
            .map_or(0, |(_, w)| *w);
        entries.push((Dial::File(path), share));
        entries.extend(
            weights
                .iter()
                .filter(|(a, _)| *a != held)
                .map(|(a, w)| (Dial::Address(a.clone()), *w)),
        );
    } else {
        entries.extend(weights.iter().map(|(a, w)| (Dial::Address(a.clone()), *w)));
    }
    let dials: Vec<Dial> = entries.iter().map(|(d, _)| d.clone()).collect();
    let handler = route.handler_with(&dials, Some(entries.iter().map(|(_, w)| *w).collect()));
    Ok(SwitchPlan {
        route,
        from,
        to: weights
            .iter()
            .filter(|(_, w)| *w > 0)
            .map(|(a, _)| a.clone())
            .collect(),
        mode: "patch",
        steps: vec![SwitchStep::Patch(handler)],
    })
}

/// The address an upstream file holds.
pub fn read_file(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| CaddyError::File {
        path: path.display().to_string(),
        detail: format!(
            "cannot read it ({e}); cutover must see the file at the path Caddy reads it from"
        ),
    })?;
    Ok(text.trim().to_string())
}

/// Replaces the upstream file whole (temp file, fsync, rename): Caddy reads the old address or
/// the new one, never a torn one.
pub fn write_file(path: &Path, addr: &str) -> Result<()> {
    let failed = |e: std::io::Error| CaddyError::File {
        path: path.display().to_string(),
        detail: format!("cannot write it: {e}"),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(failed)?;
    }
    crate::atomic::write(path, format!("{addr}\n").as_bytes(), 0o644).map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(handler: Value) -> ProxyRoute {
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
    fn patch_switch_drops_canary_weights() {
        let r = route(json!({"handler": "reverse_proxy",
            "upstreams": [{"dial": "a:1"}, {"dial": "b:1"}],
            "load_balancing": {"selection_policy": {"policy": WEIGHTED, "weights": [9, 1]}}}));
        assert_eq!(r.proxy_api_path(), "/id/production/handle/0");
        let plan = plan_switch(r, vec!["c:1".into()], Mode::Auto).unwrap();
        assert_eq!(plan.mode, "patch");
        assert_eq!(plan.from, ["a:1", "b:1"]);
        let SwitchStep::Patch(handler) = &plan.steps[0] else {
            panic!()
        };
        assert_eq!(
            handler,
            &json!({"handler": "reverse_proxy", "upstreams": [{"dial": "c:1"}]})
        );
    }

    #[test]
    fn weights_keep_the_file_upstream() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("production");
        write_file(&file, "blue:1").unwrap();
        let dial = format!("{{file.{}}}", file.display());
        let r = route(json!({"handler": "reverse_proxy", "upstreams": [{"dial": dial}]}));
        let plan = plan_weights(r, vec![("blue:1".into(), 90), ("green:1".into(), 10)]).unwrap();
        let SwitchStep::Patch(handler) = &plan.steps[0] else {
            panic!()
        };
        assert_eq!(
            handler["upstreams"],
            json!([{"dial": dial}, {"dial": "green:1"}])
        );
        assert_eq!(
            handler["load_balancing"]["selection_policy"]["weights"],
            json!([90, 10])
        );
        // Ending the canary on green: the file carries traffic, so narrow first, then move.
        let canary = route(handler.clone());
        assert_eq!(canary.targets().unwrap(), ["blue:1", "green:1"]);
        let plan = plan_switch(canary, vec!["green:1".into()], Mode::Auto).unwrap();
        assert_eq!(plan.mode, "file");
        assert!(matches!(
            &plan.steps[..],
            [SwitchStep::Patch(_), SwitchStep::WriteFile { .. }]
        ));
        // A plain file route switches by the file alone.
        let plain = route(json!({"handler": "reverse_proxy", "upstreams": [{"dial": dial}]}));
        let plan = plan_switch(plain, vec!["green:1".into()], Mode::Auto).unwrap();
        assert!(matches!(&plan.steps[..], [SwitchStep::WriteFile { .. }]));
    }
}
