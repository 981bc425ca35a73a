//! `log::*`: lines in the run's log (stderr) at a chosen level. The lines go through the same
//! sink as cutover's own, so `--log-format json`, `-v`/`-q` and secret masking apply to them too.
//! A runbook's output — a table, a report — is `print(x)`, which writes stdout instead.

use rhai::{Dynamic, Module};

use super::function;
use crate::context::logging::SCRIPT_TARGET;

pub fn module() -> Module {
    let mut module = Module::new();
    function!(&mut module,
        /// Logs `message` at info level. Anything can be logged: maps and arrays print as Rhai
        /// literals.
        ///
        /// ```rhai
        /// log::info(`deploying ${tag} to ${env}`);
        /// ```
        fn info(call, message: Dynamic) -> () {
            tracing::info!(target: SCRIPT_TARGET, "{message}");
            Ok(())
        }
    );
    function!(&mut module,
        /// Logs `message` at warning level: shown even with `-q`.
        ///
        /// ```rhai
        /// log::warn("standby is unhealthy; rollback would be refused");
        /// ```
        fn warn(call, message: Dynamic) -> () {
            tracing::warn!(target: SCRIPT_TARGET, "{message}");
            Ok(())
        }
    );
    function!(&mut module,
        /// Logs `message` at error level. It does not stop the runbook: `throw` does.
        ///
        /// ```rhai
        /// log::error("backup failed, continuing with the deploy");
        /// ```
        fn error(call, message: Dynamic) -> () {
            tracing::error!(target: SCRIPT_TARGET, "{message}");
            Ok(())
        }
    );
    function!(&mut module,
        /// Logs `message` at debug level: shown only with `-v`.
        ///
        /// ```rhai
        /// log::debug(`health result: ${result}`);
        /// ```
        fn debug(call, message: Dynamic) -> () {
            tracing::debug!(target: SCRIPT_TARGET, "{message}");
            Ok(())
        }
    );
    module
}
