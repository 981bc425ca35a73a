//! The plan of a traffic change, computed before anything changes: which slot file gets which
//! address, in which order, and whether the route's handler must be PATCHed as well.
//!
//! A switch by slots (see [`crate::caddy::upstream`]) spreads `to`'s N addresses over the route's S
//! slot files, slot i getting `to[i % N]`, so every slot holds an address and each address gets
//! ⌊S/N⌋ or ⌈S/N⌉ of them (10 slots over 3 replicas: 4, 3, 3); more addresses than slots is an
//! error. Each file is replaced whole, so at every instant each slot holds its old address or
//! its new one. Both are live throughout a switch: the new ones were checked before it began,
//! and the old ones keep serving until after it returns (a scale-down stops the surplus
//! replicas only once the switch has taken them out; a blue-green switch leaves the old side
//! running as the standby). So every intermediate state is valid, and the order decides only
//! what changes first:
//!
//! 1. A slot that already holds its new address is not written.
//! 2. Slots that hold nothing (not written yet: each request Caddy sends there waits for a
//!    retry on another slot) or an address that leaves the route (in a failover, the dead
//!    ones) go first, then the slots moved between addresses that both stay (the rebalancing
//!    of a scale). Slot order within each group.
//! 3. The writes of one step are renamed back to back ([`crate::journal::atomic::Prepared::install`]).
//!
//! When the route must be PATCHed too (it dials other upstreams: the end of a canary, a route
//! switched by PATCH before, or `#{file: …}` naming other files), the writes are split around
//! the PATCH so that every state in between is valid and a PATCH Caddy refuses leaves the
//! traffic as it was: first the slots that take no traffic now (invisible until the PATCH),
//! then the PATCH, then the slots that do take traffic now (until then they keep serving the
//! live address they hold).

use std::path::PathBuf;

use serde_json::Value;

use crate::{
    caddy::Result,
    caddy::upstream::{Dial, ProxyRoute, SlotWrite, read_slot},
};

/// How to switch: by slot files — the route's own (`File(None)`, or `Auto` when it dials
/// files), or the files given, making the route dial them — or by PATCHing literal addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Auto,
    File(Option<Vec<PathBuf>>),
    Patch,
}

/// One step of a switch.
#[derive(Debug, Clone)]
pub enum SwitchStep {
    /// Replace these slot files, renamed back to back in this order: no reload.
    WriteSlots(Vec<SlotWrite>),
    /// Replace the handler in one If-Match PATCH: a reload.
    Patch(Value),
}

/// What a switch (or a weights change) will do, computed before anything changes.
#[derive(Debug, Clone)]
pub struct SwitchPlan {
    pub route: ProxyRoute,
    pub from: Vec<String>,
    pub to: Vec<String>,
    /// `file` (no config reload unless the route must be made to dial its slots) or `patch`.
    pub mode: &'static str,
    pub steps: Vec<SwitchStep>,
}

/// Plans moving all of `route`'s traffic to `to` (at least one address, each once).
pub fn plan_switch(route: ProxyRoute, to: Vec<String>, mode: Mode) -> Result<SwitchPlan> {
    let from = route.targets()?;
    let slots = match mode {
        Mode::Patch => Vec::new(),
        Mode::File(Some(files)) => files,
        Mode::Auto => route.slots()?,
        Mode::File(None) => {
            let slots = route.slots()?;
            if slots.is_empty() {
                return Err(route.problem(
                    "it dials no {file.…} upstream; give the files to dial with \
                     #{file: PATH} or #{file: [PATH, …]}",
                ));
            }
            slots
        }
    };
    if slots.is_empty() {
        let dials: Vec<Dial> = to.iter().cloned().map(Dial::Address).collect();
        let steps = vec![SwitchStep::Patch(route.handler_with(&dials, None))];
        return Ok(SwitchPlan {
            route,
            from,
            to,
            mode: "patch",
            steps,
        });
    }
    let steps = slot_steps(&route, &slots, &to)?;
    Ok(SwitchPlan {
        route,
        from,
        to,
        mode: "file",
        steps,
    })
}

/// The steps that make `route` dial exactly `slots` and spread `to` over them.
fn slot_steps(route: &ProxyRoute, slots: &[PathBuf], to: &[String]) -> Result<Vec<SwitchStep>> {
    if to.is_empty() || to.len() > slots.len() {
        let (count, plural) = (slots.len(), if slots.len() == 1 { "" } else { "s" });
        return Err(route.problem(&format!(
            "it has {count} upstream slot{plural} (files it dials), so it can send traffic to \
             at most {count} address{}, not {}: add {{file.…}} upstreams to the route, or \
             switch with #{{mode: \"patch\"}}",
            if count == 1 { "" } else { "es" },
            to.len()
        )));
    }
    let writes = slot_writes(slots, to)?;
    let upstreams = route.upstreams()?;
    let dials: Vec<Dial> = slots.iter().cloned().map(Dial::File).collect();
    let dials_exactly = upstreams.len() == dials.len()
        && upstreams
            .iter()
            .zip(&dials)
            .all(|(u, d)| u.dial == *d && u.weight.is_none());
    let mut steps = Vec::new();
    if dials_exactly {
        if !writes.is_empty() {
            steps.push(SwitchStep::WriteSlots(writes));
        }
        return Ok(steps);
    }
    let serving = |path: &PathBuf| {
        upstreams
            .iter()
            .any(|u| u.weight != Some(0) && matches!(&u.dial, Dial::File(p) if p == path))
    };
    let (after, before): (Vec<SlotWrite>, Vec<SlotWrite>) =
        writes.into_iter().partition(|w| serving(&w.path));
    if !before.is_empty() {
        steps.push(SwitchStep::WriteSlots(before));
    }
    steps.push(SwitchStep::Patch(route.handler_with(&dials, None)));
    if !after.is_empty() {
        steps.push(SwitchStep::WriteSlots(after));
    }
    Ok(steps)
}

/// Which slot gets which address (slot i: `to[i % to.len()]`), in the order to write them: the
/// slots that change, first those holding nothing or an address not in `to`, then those
/// moving between addresses of `to`, each group in slot order.
pub fn slot_writes(slots: &[PathBuf], to: &[String]) -> Result<Vec<SlotWrite>> {
    let (mut first, mut then) = (Vec::new(), Vec::new());
    for write in slot_assignment(slots, to) {
        match read_slot(&write.path)? {
            Some(held) if held == write.addr => {}
            Some(held) if to.contains(&held) => then.push(write),
            _ => first.push(write),
        }
    }
    first.extend(then);
    Ok(first)
}

/// Every slot with the address it gets (slot i: `to[i % to.len()]`), in slot order, whatever
/// it holds now: what a switch to `to` may write (`caddy::switch_ahead` stages them all).
pub fn slot_assignment(slots: &[PathBuf], to: &[String]) -> Vec<SlotWrite> {
    if to.is_empty() {
        return Vec::new();
    }
    slots
        .iter()
        .enumerate()
        .map(|(i, path)| SlotWrite {
            path: path.clone(),
            addr: to[i % to.len()].clone(),
        })
        .collect()
}

/// Plans a weighted split (a canary): one PATCH to a `weighted_round_robin` policy, no file
/// written. A route that dials slot files keeps every slot among its upstreams, so the switch
/// that ends the canary can return the route to them: the first slot holding an address
/// carries that address's weight, every other slot weight 0 (no traffic), and an address no
/// slot holds is added as a literal upstream. Each address thus has exactly one upstream of
/// non-zero weight, and the split is exactly the one asked for whatever the number of slots.
pub fn plan_weights(route: ProxyRoute, weights: Vec<(String, u64)>) -> Result<SwitchPlan> {
    if weights.iter().all(|(_, w)| *w == 0) {
        return Err(route.problem("at least one weight must be above 0"));
    }
    let from = route.targets()?;
    let weight_of = |addr: &str| {
        weights
            .iter()
            .find(|(a, _)| a == addr)
            .map_or(0, |(_, w)| *w)
    };
    let mut entries: Vec<(Dial, u64)> = Vec::new();
    let mut placed: Vec<String> = Vec::new();
    for path in route.slots()? {
        let weight = match read_slot(&path)? {
            Some(held) if !placed.contains(&held) => {
                let weight = weight_of(&held);
                placed.push(held);
                weight
            }
            _ => 0,
        };
        entries.push((Dial::File(path), weight));
    }
    entries.extend(
        weights
            .iter()
            .filter(|(a, _)| !placed.contains(a))
            .map(|(a, w)| (Dial::Address(a.clone()), *w)),
    );
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::*;
    use crate::caddy::upstream::{WEIGHTED, tests::route};

    fn dial(path: &Path) -> String {
        format!("{{file.{}}}", path.display())
    }

    /// `n` slot files in `dir` holding `held` (`None`: not written), and a route dialing them.
    fn slotted(dir: &Path, held: &[Option<&str>]) -> (ProxyRoute, Vec<PathBuf>) {
        let slots: Vec<PathBuf> = (1..=held.len())
            .map(|i| dir.join(format!("production.{i}")))
            .collect();
        for (path, addr) in slots.iter().zip(held) {
            if let Some(addr) = addr {
                std::fs::write(path, format!("{addr}\n")).unwrap();
            }
        }
        let upstreams: Vec<Value> = slots.iter().map(|p| json!({"dial": dial(p)})).collect();
        let r = route(json!({"handler": "reverse_proxy", "upstreams": upstreams}));
        (r, slots)
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// The slots written by a plan's steps, as (slot number, address), and where the PATCH is.
    fn written(plan: &SwitchPlan, slots: &[PathBuf]) -> Vec<(usize, String)> {
        let mut all = Vec::new();
        for step in &plan.steps {
            match step {
                SwitchStep::WriteSlots(writes) => all.extend(writes.iter().map(|w| {
                    let n = slots.iter().position(|p| *p == w.path).unwrap() + 1;
                    (n, w.addr.clone())
                })),
                SwitchStep::Patch(_) => all.push((0, "PATCH".into())),
            }
        }
        all
    }

    fn pairs(list: &[(usize, &str)]) -> Vec<(usize, String)> {
        list.iter().map(|(n, a)| (*n, a.to_string())).collect()
    }

    #[test]
    fn scaling_up_spreads_new_replicas_over_the_slots_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let (r, slots) = slotted(dir.path(), &[Some("a:1"); 5]);
        let plan = plan_switch(r, strings(&["a:1", "b:1", "c:1"]), Mode::Auto).unwrap();
        assert_eq!(plan.mode, "file");
        assert_eq!(plan.from, ["a:1"]);
        // a b c a b: slots 1 and 4 already hold a.
        assert_eq!(
            written(&plan, &slots),
            pairs(&[(2, "b:1"), (3, "c:1"), (5, "b:1")])
        );
        assert_eq!(plan.steps.len(), 1, "one step: the renames back to back");
    }

    #[test]
    fn scaling_down_replaces_the_leaving_replicas_first_then_rebalances() {
        let dir = tempfile::tempdir().unwrap();
        let held = ["a:1", "b:1", "c:1", "a:1", "b:1", "c:1", "a:1"].map(Some);
        let (r, slots) = slotted(dir.path(), &held);
        let plan = plan_switch(r, strings(&["a:1", "b:1"]), Mode::Auto).unwrap();
        assert_eq!(plan.from, ["a:1", "b:1", "c:1"]);
        // Target a b a b a b a. c leaves: slots 3 and 6 first; then 4 and 5 swap a and b.
        assert_eq!(
            written(&plan, &slots),
            pairs(&[(3, "a:1"), (6, "b:1"), (4, "b:1"), (5, "a:1")])
        );
        // Down to one: every slot holding b or c moves to a.
        let (r, slots) = slotted(dir.path(), &held);
        let plan = plan_switch(r, strings(&["a:1"]), Mode::Auto).unwrap();
        assert_eq!(
            written(&plan, &slots),
            pairs(&[(2, "a:1"), (3, "a:1"), (5, "a:1"), (6, "a:1")])
        );
    }

    #[test]
    fn a_blue_green_switch_writes_every_slot_empty_ones_included() {
        let dir = tempfile::tempdir().unwrap();
        let (r, slots) = slotted(dir.path(), &[Some("blue:1"), None, Some("blue:2")]);
        assert_eq!(r.targets().unwrap(), ["blue:1", "blue:2"]);
        let plan = plan_switch(r, strings(&["green:1"]), Mode::File(None)).unwrap();
        assert_eq!(
            written(&plan, &slots),
            pairs(&[(1, "green:1"), (2, "green:1"), (3, "green:1")])
        );
        // Nothing to change: no step at all.
        for path in &slots {
            std::fs::write(path, "green:1").unwrap();
        }
        let (r, _) = slotted(dir.path(), &[Some("green:1"); 3]);
        assert!(
            plan_switch(r, strings(&["green:1"]), Mode::Auto)
                .unwrap()
                .steps
                .is_empty()
        );
    }

    #[test]
    fn more_addresses_than_slots_is_an_error_naming_the_slot_count() {
        let dir = tempfile::tempdir().unwrap();
        let (r, _) = slotted(dir.path(), &[Some("a:1"); 2]);
        let error = plan_switch(r, strings(&["a:1", "b:1", "c:1"]), Mode::Auto).unwrap_err();
        assert!(
            error.to_string().contains(
                "it has 2 upstream slots (files it dials), so it can send traffic to at most 2 \
                 addresses, not 3"
            ),
            "{error}"
        );
        let (one, _) = slotted(dir.path(), &[Some("a:1")]);
        let error = plan_switch(one, strings(&["a:1", "b:1"]), Mode::Auto).unwrap_err();
        assert!(
            error.to_string().contains("it has 1 upstream slot (files"),
            "{error}"
        );
        // By PATCH, any number.
        let (one, _) = slotted(dir.path(), &[Some("a:1")]);
        let plan = plan_switch(one, strings(&["a:1", "b:1"]), Mode::Patch).unwrap();
        assert_eq!(plan.mode, "patch");
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
        let (r, slots) = slotted(dir.path(), &[Some("blue:1")]);
        let dial = dial(&slots[0]);
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
        assert_eq!(
            written(&plan, &slots),
            pairs(&[(0, "PATCH"), (1, "green:1")])
        );
        // A plain file route switches by the file alone.
        let (plain, _) = slotted(dir.path(), &[Some("blue:1")]);
        let plan = plan_switch(plain, vec!["green:1".into()], Mode::Auto).unwrap();
        assert_eq!(written(&plan, &slots), pairs(&[(1, "green:1")]));
    }

    #[test]
    fn weights_on_slots_give_each_address_one_weighted_slot() {
        let dir = tempfile::tempdir().unwrap();
        let held = [Some("a:1"), Some("b:1"), Some("a:1"), None];
        let (r, slots) = slotted(dir.path(), &held);
        let plan = plan_weights(
            r,
            vec![("b:1".into(), 30), ("a:1".into(), 60), ("c:1".into(), 10)],
        )
        .unwrap();
        let SwitchStep::Patch(handler) = &plan.steps[0] else {
            panic!()
        };
        let mut expected: Vec<Value> = slots.iter().map(|p| json!({"dial": dial(p)})).collect();
        expected.push(json!({"dial": "c:1"}));
        assert_eq!(handler["upstreams"], Value::Array(expected));
        assert_eq!(
            handler["load_balancing"]["selection_policy"]["weights"],
            json!([60, 30, 0, 0, 10])
        );
        let canary = route(handler.clone());
        assert_eq!(canary.targets().unwrap(), ["a:1", "b:1", "c:1"]);
        // Ending it on c: the slots without traffic (3, 4) are filled before the PATCH makes
        // them live; those with traffic (1, 2) keep serving a and b until after it.
        let plan = plan_switch(canary, vec!["c:1".into()], Mode::Auto).unwrap();
        assert_eq!(
            written(&plan, &slots),
            pairs(&[(3, "c:1"), (4, "c:1"), (0, "PATCH"), (1, "c:1"), (2, "c:1")])
        );
        let SwitchStep::Patch(back) = &plan.steps[1] else {
            panic!()
        };
        let dials: Vec<Value> = slots.iter().map(|p| json!({"dial": dial(p)})).collect();
        assert_eq!(back["upstreams"], Value::Array(dials));
        assert!(back.get("load_balancing").is_none(), "{back}");
    }

    #[test]
    fn a_one_file_route_given_ten_slots_fills_the_new_ones_patches_then_moves_the_old() {
        let dir = tempfile::tempdir().unwrap();
        let (r, _) = slotted(dir.path(), &[Some("blue:1")]);
        let slots: Vec<PathBuf> = std::iter::once(dir.path().join("production.1"))
            .chain((2..=10).map(|i| dir.path().join(format!("new.{i}"))))
            .collect();
        let plan = plan_switch(r, strings(&["green:1"]), Mode::File(Some(slots.clone()))).unwrap();
        let mut expected: Vec<(usize, &str)> = (2..=10).map(|n| (n, "green:1")).collect();
        expected.extend([(0, "PATCH"), (1, "green:1")]);
        assert_eq!(written(&plan, &slots), pairs(&expected));
    }

    #[test]
    fn files_given_make_a_literal_route_dial_them_filled_before_the_patch() {
        let dir = tempfile::tempdir().unwrap();
        let r = route(json!({"handler": "reverse_proxy",
            "upstreams": [{"dial": "a:1"}, {"dial": "b:1"}]}));
        let slots: Vec<PathBuf> = (1..=3).map(|i| dir.path().join(format!("s{i}"))).collect();
        let plan =
            plan_switch(r, strings(&["a:1", "b:1"]), Mode::File(Some(slots.clone()))).unwrap();
        assert_eq!(plan.mode, "file");
        assert_eq!(
            written(&plan, &slots),
            pairs(&[(1, "a:1"), (2, "b:1"), (3, "a:1"), (0, "PATCH")])
        );
        let error = plan_switch(
            route(json!({"handler": "reverse_proxy", "upstreams": [{"dial": "a:1"}]})),
            strings(&["b:1"]),
            Mode::File(None),
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("it dials no {file.…} upstream"),
            "{error}"
        );
    }
}
