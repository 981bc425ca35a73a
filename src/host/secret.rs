//! `secret::get(name)`: a secret value for a runbook (a database password, an API token) from
//! the process environment or a loaded `.env` file. The value is registered for masking before
//! the runbook sees it, so whatever the runbook then does with it — log it, put it in an error,
//! pass it to a program that echoes it, post it — every output shows `***`.

use std::sync::Arc;

use rhai::Module;

use super::{fail, function};
use crate::{context::Context, redact::MIN_SECRET_LEN};

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
    module
}
