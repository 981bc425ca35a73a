//! Settings resolved once from the command line's global flags and the environment: where
//! scripts and state live, and how the run behaves. Everything downstream reads these, never the
//! raw flags. The flags themselves ([`GlobalArgs`]) are declared here, beside what they resolve
//! to; the rest of the command line is in [`crate::cli`].

use std::{path::PathBuf, time::Duration};

use clap::{Args, ValueEnum};

/// Flags accepted before or after any subcommand.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// Look for runbooks in DIR first (then $CUTOVER_RUNBOOKS, ./runbooks, the embedded ones)
    #[arg(long, global = true, value_name = "DIR")]
    pub runbooks: Option<PathBuf>,

    /// Look for stdlib modules in DIR first (then $CUTOVER_STDLIB, ./stdlib, the embedded ones)
    #[arg(long, global = true, value_name = "DIR")]
    pub stdlib: Option<PathBuf>,

    /// Load variables from FILE for env::get (the process environment still wins)
    #[arg(long, global = true, value_name = "FILE", env = "CUTOVER_ENV_FILE")]
    pub env_file: Option<PathBuf>,

    /// Keep .current-environment, state, the lock and the journal in DIR [default: deploy]
    #[arg(long, global = true, value_name = "DIR", env = "CUTOVER_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// Show what would change without changing anything
    #[arg(long, global = true)]
    pub dry_run: bool,

    /// Stop the runbook after SECS seconds (exit 124)
    #[arg(
        long,
        global = true,
        value_name = "SECS",
        allow_negative_numbers = true
    )]
    pub timeout: Option<f64>,

    /// Answer yes to every confirmation
    #[arg(long, short = 'y', global = true)]
    pub yes: bool,

    /// Wait up to SECS for another run to release the lock [default: 0]
    #[arg(
        long,
        global = true,
        value_name = "SECS",
        allow_negative_numbers = true
    )]
    pub lock_wait: Option<f64>,

    /// Log as human-readable text or as one JSON object a line
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// More output (-v debug, -vv trace)
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Less output (-q warnings and errors only, -qq errors only)
    #[arg(long, short = 'q', global = true, action = clap::ArgAction::Count)]
    pub quiet: u8,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

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
            value.map(|secs| flag_seconds(flag, secs)).transpose()
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
            verbosity: verbosity(args.verbose, args.quiet),
            color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        })
    }
}

/// The value of a flag in seconds (`--timeout`, `--lock-wait`): a number ≥ 0, fractions allowed.
/// One too large for any clock (`1e30`, `inf`) is a limit never reached, so it is kept as the
/// longest duration there is rather than refused.
fn flag_seconds(flag: &str, secs: f64) -> Result<Duration, String> {
    if secs.is_nan() || secs < 0.0 {
        return Err(format!(
            "--{flag} takes a number of seconds ≥ 0, not {secs}"
        ));
    }
    Ok(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
}

/// `-v` counts up, `-q` down; any number of either stays in range (`-v` 128 times is as verbose
/// as it gets, never wrapped round to quiet).
fn verbosity(verbose: u8, quiet: u8) -> i8 {
    (i16::from(verbose) - i16::from(quiet)).clamp(i8::MIN.into(), i8::MAX.into()) as i8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbosity_never_wraps() {
        assert_eq!(verbosity(0, 0), 0);
        assert_eq!(verbosity(128, 0), i8::MAX);
        assert_eq!(verbosity(255, 0), i8::MAX);
        assert_eq!(verbosity(0, 255), i8::MIN);
        assert_eq!(verbosity(2, 1), 1);
    }

    #[test]
    fn seconds_of_any_size() {
        assert_eq!(
            flag_seconds("timeout", 1.5),
            Ok(Duration::from_millis(1500))
        );
        assert_eq!(flag_seconds("timeout", 1e30), Ok(Duration::MAX));
        assert_eq!(flag_seconds("timeout", f64::INFINITY), Ok(Duration::MAX));
        let error = flag_seconds("timeout", -1.0).unwrap_err();
        assert!(
            error.contains("--timeout takes a number of seconds ≥ 0"),
            "{error}"
        );
        assert!(flag_seconds("lock-wait", f64::NAN).is_err());
    }
}
