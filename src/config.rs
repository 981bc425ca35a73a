//! Settings resolved once from the command line and the environment: where scripts and state
//! live, and how the run behaves. Everything downstream reads these, never the raw flags.

use std::{path::PathBuf, time::Duration};

use crate::cli::{GlobalArgs, LogFormat};

/// The resolved configuration of one cutover process.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Runbook directories in priority order (existing or not; missing ones are skipped).
    pub runbook_dirs: Vec<PathBuf>,
    /// Stdlib directories in priority order.
    pub stdlib_dirs: Vec<PathBuf>,
    /// A `.env` file whose variables `env::get` sees after the process environment.
    pub env_file: Option<PathBuf>,
    /// Where `.current-environment`, state, the lock and the journal live.
    pub state_dir: PathBuf,
    pub dry_run: bool,
    pub timeout: Option<Duration>,
    pub assume_yes: bool,
    pub lock_wait: Duration,
    pub log_format: LogFormat,
    /// 0 is info; positive is more verbose, negative quieter.
    pub verbosity: i8,
    /// Colors on the terminal (off with `NO_COLOR` or when stderr is not a terminal).
    pub color: bool,
}

impl Settings {
    pub fn from_args(args: &GlobalArgs) -> Result<Settings, String> {
        let search_path = |flag: &Option<PathBuf>, variable: &str, local: &str| {
            let mut dirs: Vec<PathBuf> = flag.iter().cloned().collect();
            dirs.extend(
                std::env::var_os(variable)
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from),
            );
            dirs.push(PathBuf::from(local));
            dirs
        };
        let seconds = |flag: &str, value: Option<f64>| -> Result<Option<Duration>, String> {
            value
                .map(|secs| {
                    Duration::try_from_secs_f64(secs)
                        .map_err(|_| format!("--{flag} takes a number of seconds ≥ 0, not {secs}"))
                })
                .transpose()
        };
        Ok(Settings {
            runbook_dirs: search_path(&args.runbooks, "CUTOVER_RUNBOOKS", "runbooks"),
            stdlib_dirs: search_path(&args.stdlib, "CUTOVER_STDLIB", "stdlib"),
            env_file: args.env_file.clone(),
            state_dir: args
                .state_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("deploy")),
            dry_run: args.dry_run,
            timeout: seconds("timeout", args.timeout)?,
            assume_yes: args.yes,
            lock_wait: seconds("lock-wait", args.lock_wait)?.unwrap_or_default(),
            log_format: args.log_format,
            verbosity: (args.verbose as i8).saturating_sub(args.quiet as i8),
            color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        })
    }
}
