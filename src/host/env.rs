//! `env::*`: configuration from the process environment and `.env` files. The process
//! environment wins over files, so `STAGING_TAG=v1.0.1 cutover deploy staging-only` overrides
//! `.env.blue-green` as it did with the old scripts. Values of secret-looking names are registered
//! for masking as they are loaded.

use std::{path::Path, sync::Arc};

use rhai::{Map, Module};

use super::{fail, function};
use crate::context::Context;

/// True for the spellings of "yes" that `env::flag` accepts.
pub fn is_truthy(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "true" | "1" | "yes" | "y" | "on"
    )
}

pub fn module(context: &Arc<Context>) -> Module {
    let mut module = Module::new();
    function!(&mut module,
        /// The value of variable `name`: the process environment first, then the loaded `.env`
        /// files. Fails if it is set nowhere; pass a default to make it optional.
        ///
        /// ```rhai
        /// let tag = env::get("GREEN_TAG");
        /// ```
        fn get[context](call, name: &str) -> String {
            context.env_var(name).ok_or_else(|| {
                let files = context.settings.env_file.as_ref().map(|f| format!(" and {}", f.display()));
                fail(format!(
                    "variable {name} is not set (looked in the environment{}); \
                     set it or call env::get({name:?}, default)",
                    files.unwrap_or_default()
                ))
            })
        }
    );
    function!(&mut module,
        /// The value of variable `name`, or `default` when it is not set.
        ///
        /// ```rhai
        /// let timeout_s = env::get("TIMEOUT", "300").parse_int();
        /// ```
        fn get[context](call, name: &str, default: &str) -> String {
            Ok(context.env_var(name).unwrap_or_else(|| default.to_string()))
        }
    );
    function!(&mut module,
        /// True when variable `name` is `true`, `1`, `yes`, `y` or `on` (any case); false when it
        /// is anything else or unset.
        ///
        /// ```rhai
        /// if env::flag("FORCE_ROLLBACK") { log::warn("forced rollback"); }
        /// ```
        fn flag[context](call, name: &str) -> bool {
            Ok(context.env_var(name).is_some_and(|v| is_truthy(&v)))
        }
    );
    function!(&mut module,
        /// Loads a `.env` file (docker compose syntax) so `env::get` sees its variables; the
        /// process environment still wins. Returns the file's variables as a map. A malformed
        /// file is an error naming the line, and nothing is loaded.
        ///
        /// ```rhai
        /// env::load("deploy/.env.blue-green");
        /// ```
        fn load[context](call, path: &str) -> Map {
            let file = context.load_env_file(Path::new(path)).map_err(fail)?;
            Ok(file.vars.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
        }
    );
    function!(&mut module,
        /// Sets variables in a `.env` file, as `prepare` records an environment's tag in
        /// `.env.blue-green`: a variable already there is rewritten in place, a new one appended,
        /// comments and other lines kept; values are quoted so they read back unchanged. The
        /// file is replaced whole (a missing one is created with mode 0600), and `env::get`
        /// sees the new values. A change: refused in a readonly run, only logged in a dry run.
        ///
        /// ```rhai
        /// env::save("deploy/.env.blue-green", #{GREEN_TAG: "v1.4.2"});
        /// ```
        fn save[context](call, path: &str, vars: Map) -> () {
            let mut pairs = Vec::new();
            for (name, value) in vars {
                let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    return Err(fail(format!("env::save: {name:?} is not a variable name")));
                }
                if !value.is_string() && !value.is_int() && !value.is_bool() && !value.is_float() {
                    return Err(fail(format!(
                        "env::save: {name} must be a string or a number, not {}",
                        value.type_name()
                    )));
                }
                pairs.push((name.to_string(), value.to_string()));
            }
            let names: Vec<&str> = pairs.iter().map(|(n, _)| n.as_str()).collect();
            let detail = format!("{path} {}", names.join(" "));
            context.change(
                "env::save",
                &detail,
                || context.save_env_file_dry(Path::new(path), pairs.clone()),
                || context.save_env_file(Path::new(path), pairs.clone()).map_err(fail),
            )
        }
    );
    module
}

#[cfg(test)]
mod tests {
    #[test]
    fn truthy_spellings() {
        for yes in ["true", "1", "YES", " y ", "On"] {
            assert!(super::is_truthy(yes), "{yes}");
        }
        for no in ["false", "0", "no", "", "maybe"] {
            assert!(!super::is_truthy(no), "{no}");
        }
    }
}
