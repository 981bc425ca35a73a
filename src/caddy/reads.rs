//! What a run has read from Caddy, so an edit never overwrites a change it did not see. Each read
//! of the config or of a route is remembered by admin address and API path, with Caddy's ETag
//! and, for a route, what each upstream held (its address, or the address in its slot file). An
//! edit of the same thing first [`Reads::verify`]s it: a different ETag, or slots that now hold
//! other addresses (another run switched them between this run's read and its switch), is a
//! [`CaddyError::Conflict`]. A read is used once: after the edit, the next edit reads again.

use std::{collections::HashMap, sync::Mutex};

use super::{CaddyError, upstream::ProxyRoute};

/// What this run has read from Caddy, by admin address and path: the ETag, and for a route what
/// each upstream held (its address, or the address in its file).
#[derive(Default)]
pub struct Reads {
    seen: Mutex<HashMap<String, Seen>>,
}

#[derive(Clone)]
pub struct Seen {
    pub etag: Option<String>,
    /// What each upstream of a route held (its address, or the address in its file).
    pub held: Option<Vec<Option<String>>>,
}

impl Reads {
    fn key(admin: &str, path: &str) -> String {
        format!("{admin} {path}")
    }

    pub fn remember(&self, admin: &str, path: &str, seen: Seen) {
        self.seen
            .lock()
            .unwrap()
            .insert(Self::key(admin, path), seen);
    }

    pub fn take(&self, admin: &str, path: &str) -> Option<Seen> {
        self.seen.lock().unwrap().remove(&Self::key(admin, path))
    }

    /// After a load every route may have changed: forget what was read from this Caddy.
    pub fn forget_all(&self, admin: &str) {
        let prefix = format!("{admin} ");
        self.seen
            .lock()
            .unwrap()
            .retain(|k, _| !k.starts_with(&prefix));
    }

    /// Fails if the route changed since this run read it.
    pub fn verify(&self, admin: &str, route: &ProxyRoute) -> Result<(), CaddyError> {
        let Some(seen) = self.take(admin, &route_path(&route.id)) else {
            return Ok(());
        };
        let conflict = || CaddyError::Conflict {
            what: format!("route {:?}", route.id),
        };
        if seen.etag.as_deref().is_some_and(|etag| etag != route.etag) {
            return Err(conflict());
        }
        match seen.held {
            Some(held) if held != route.held()? => Err(conflict()),
            _ => Ok(()),
        }
    }
}

/// The admin API path of route `id`, as reads are remembered under it.
pub fn route_path(id: &str) -> String {
    format!("/id/{id}")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::caddy::upstream::tests::route;

    const ADMIN: &str = "127.0.0.1:2019";

    fn seen(route: &ProxyRoute) -> Seen {
        Seen {
            etag: Some(route.etag.clone()),
            held: Some(route.held().unwrap()),
        }
    }

    fn proxy(dial: &str) -> serde_json::Value {
        json!({"handler": "reverse_proxy", "upstreams": [{"dial": dial}]})
    }

    #[test]
    fn an_edit_of_what_was_read_passes_once() {
        let reads = Reads::default();
        let read = route(proxy("a:1"));
        reads.remember(ADMIN, &route_path("production"), seen(&read));
        assert!(reads.verify(ADMIN, &read).is_ok());
        // Used up: a second edit without a new read is not checked against the old one.
        let other = route(proxy("b:2"));
        assert!(reads.verify(ADMIN, &other).is_ok());
    }

    #[test]
    fn a_route_that_changed_since_it_was_read_is_a_conflict() {
        let reads = Reads::default();
        let read = route(proxy("a:1"));
        let mut stale = seen(&read);
        stale.etag = Some("\"/config/x 0\"".into());
        reads.remember(ADMIN, &route_path("production"), stale);
        assert!(matches!(
            reads.verify(ADMIN, &read),
            Err(CaddyError::Conflict { .. })
        ));
        // Same ETag, but the upstream now holds another address.
        reads.remember(ADMIN, &route_path("production"), seen(&read));
        let moved = route(proxy("b:2"));
        assert!(matches!(
            reads.verify(ADMIN, &moved),
            Err(CaddyError::Conflict { .. })
        ));
    }

    #[test]
    fn a_load_forgets_what_was_read_from_that_caddy_only() {
        let reads = Reads::default();
        let path = route_path("production");
        reads.remember(ADMIN, &path, seen(&route(proxy("a:1"))));
        reads.remember("127.0.0.1:2020", &path, seen(&route(proxy("a:1"))));
        reads.forget_all(ADMIN);
        assert!(reads.take(ADMIN, &path).is_none());
        assert!(reads.take("127.0.0.1:2020", &path).is_some());
    }
}
