//! Entry points for the fuzz targets in `fuzz/` (cargo fuzz), built only with the `fuzzing`
//! feature (and for unit tests), so the crate's private subsystems stay private in every other
//! build.
//!
//! Each takes the raw bytes a hostile user could hand cutover — a `.env` file, a value to
//! interpolate, a compose file, the route JSON Caddy's admin API answers — and runs the same
//! reader the CLI runs on them. Errors are expected and ignored; what a fuzzer finds is a panic,
//! an abort (stack overflow, out of memory) or a hang. The crashes it found are kept as inputs
//! under `fuzz/regressions/TARGET/`, beside hostile inputs written by hand (the doubling `.env`,
//! 50,000 nested defaults), and the unit tests below run every one of them through these same
//! functions on each `cargo test`.

use std::path::Path;

use crate::{caddy, compose};

/// The `.env` reader: parse, then rewrite a variable as `env::save` does.
pub fn dotenv(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if compose::dotenv::parse(text, "fuzz.env").is_ok() {
        let vars = [("FUZZ_SAVED".to_string(), text.to_string())];
        let updated = compose::dotenv::update(text, "fuzz.env", &vars)
            .expect("a file that parses can be updated");
        let saved = compose::dotenv::parse(&updated, "fuzz.env")
            .expect("an updated file parses again")
            .get("FUZZ_SAVED")
            .map(str::to_string);
        assert_eq!(
            saved.as_deref(),
            Some(text),
            "a saved value reads back as written"
        );
    }
}

/// `${VAR}` interpolation as compose files and `.env` files use it, with variables of its own
/// that refer to each other (so nesting and growth are reachable).
pub fn interpolate(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lookup = |name: &str| match name {
        "A" => Some("a".to_string()),
        "SELF" => Some("${SELF}${SELF}".to_string()),
        "EMPTY" => Some(String::new()),
        _ => None,
    };
    if let Ok(out) = compose::interpolate::interpolate(text, &lookup) {
        assert!(out.len() <= compose::interpolate::MAX_LENGTH + text.len());
    }
}

/// The compose loader on `data` as `compose.yaml` in `dir` (a directory of the fuzzer's own:
/// the loader reads `.env`, `env_file:` and `extends:` files relative to it).
pub fn compose_file(dir: &Path, data: &[u8]) {
    let path = dir.join("compose.yaml");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let options = compose::LoadOptions {
        project_name: Some("fuzz".into()),
        profiles: Some(Vec::new()),
        ..Default::default()
    };
    let _ = compose::load(&path, &options);
}

/// The reader of a route Caddy's admin API returns, and planning a switch of it by PATCH
/// (planning by slot files reads the files the route names; PATCH planning reads nothing).
pub fn caddy_route(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(route) = caddy::upstream::ProxyRoute::parse("fuzz", value, "\"etag\"".into()) else {
        return;
    };
    let _ = route.upstreams();
    let _ = route.slots();
    if let Ok(targets) = route.targets()
        && !targets.is_empty()
    {
        let _ = caddy::plan::plan_switch(route, targets, caddy::plan::Mode::Patch);
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    /// Every kept input of `target`, by file name.
    fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/regressions")
            .join(target);
        let mut found: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().to_string();
                (name, std::fs::read(&path).unwrap())
            })
            .collect();
        found.sort();
        assert!(!found.is_empty(), "{} holds no inputs", dir.display());
        found
    }

    /// Runs each input on a thread of its own with the stack of the main thread, where scripts —
    /// and so these readers — run (8 MiB), so an input that recursed too deep fails this test
    /// rather than passing on a larger stack.
    fn each(target: &str, run: impl Fn(&[u8]) + Send + Sync + Copy + 'static) {
        for (name, data) in inputs(target) {
            let outcome = std::thread::Builder::new()
                .stack_size(8 << 20)
                .spawn(move || run(&data))
                .unwrap()
                .join();
            assert!(outcome.is_ok(), "fuzz/regressions/{target}/{name} panicked");
        }
    }

    #[test]
    fn dotenv_inputs_kept_from_fuzzing() {
        each("dotenv", super::dotenv);
    }

    #[test]
    fn interpolation_inputs_kept_from_fuzzing() {
        each("interpolate", super::interpolate);
    }

    #[test]
    fn compose_inputs_kept_from_fuzzing() {
        each("compose", |data| {
            let dir = tempfile::tempdir().unwrap();
            super::compose_file(dir.path(), data);
        });
    }

    #[test]
    fn caddy_route_inputs_kept_from_fuzzing() {
        each("caddy_route", super::caddy_route);
    }
}
