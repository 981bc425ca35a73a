//! `secret::get(name)`: a secret value for a runbook (a database password, an API token) from
//! the process environment or a loaded `.env` file. The value is registered for masking before
//! the runbook sees it, so whatever the runbook then does with it — log it, put it in an error,
//! pass it to a program that echoes it — every output shows `***`. What a runbook sends
//! elsewhere (an `http::post` body, a program's arguments) is sent as given, since an API may
//! need the token; `secret::mask(x)` gives the masked form to send instead, as a chat message or
//! a webhook should get it.

use std::sync::Arc;

use rhai::{Array, Dynamic, Map, Module};

use super::{fail, function};
use crate::{
    context::Context,
    redact::{MIN_SECRET_LEN, Redactor},
};

pub fn module(context: &Arc<Context>) -> Module {
    let mut module = Module::new();
    function!(&mut module,
        /// The value of variable `name` (process environment first, then the loaded `.env`
        /// files), registered as a secret: every log line, journal entry, error message and
        /// program output shows `***` in its place. Fails if the variable is unset or empty.
        ///
        /// ```rhai
        /// let password = secret::get("DB_ADMIN_PASSWORD");
        /// exec::run(["pg_isready", "-h", "db"], #{ env: #{ PGPASSWORD: password } });
        /// ```
        fn get[context](call, name: &str) -> String {
            let Some(value) = context.env_var(name) else {
                let files = context.settings.env_file.as_ref().map(|f| format!(" and {}", f.display()));
                return Err(fail(format!(
                    "secret {name} is not set (looked in the environment{}); set it or load \
                     the file that defines it with env::load",
                    files.unwrap_or_default()
                )));
            };
            if value.is_empty() {
                return Err(fail(format!("secret {name} is set but empty")));
            }
            if value.len() < MIN_SECRET_LEN {
                tracing::warn!(
                    "secret {name} is shorter than {MIN_SECRET_LEN} characters: too short to \
                     mask without garbling every line, so it will show in output"
                );
            }
            context.secrets.add(&value);
            Ok(value)
        }
    );
    function!(&mut module,
        /// `value` with every secret cutover knows of (`secret::get` values, variables named like
        /// `*PASSWORD*`, `*SECRET*`, `*TOKEN*`, `*KEY*`, passwords in URLs) replaced by `***`, as
        /// every log line shows it: a string is masked, a map or an array has each string in it
        /// masked, anything else is returned as it is. Use it for text that leaves cutover
        /// through a call that sends what it is given, such as an `http::post` to a chat.
        ///
        /// ```rhai
        /// let text = `promote failed: ${error}`;   // may quote a URL with its password
        /// http::post(env::get("CHAT_WEBHOOK"), #{ text: secret::mask(text) });
        /// ```
        fn mask[context](call, value: Dynamic) -> Dynamic {
            Ok(mask(&context.secrets, value))
        }
    );
    module
}

fn mask(secrets: &Redactor, value: Dynamic) -> Dynamic {
    if value.is_string() {
        let text = value.into_immutable_string().unwrap_or_default();
        return secrets.redact(&text).into_owned().into();
    }
    if value.is_map() {
        let map = value.cast::<Map>();
        let masked: Map = map
            .into_iter()
            .map(|(key, item)| (secrets.redact(&key).as_ref().into(), mask(secrets, item)))
            .collect();
        return masked.into();
    }
    if value.is_array() {
        let array = value.cast::<Array>();
        let masked: Array = array.into_iter().map(|item| mask(secrets, item)).collect();
        return masked.into();
    }
    value
}
