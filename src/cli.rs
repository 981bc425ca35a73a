//! The command line: subcommands, global flags and their help text.
//!
//! `cutover NAME ARGS...` is shorthand for `cutover run NAME ARGS...`, and global flags may come
//! after the runbook's arguments (`cutover rollback --yes`), as an operator types them in a hurry.
//! [`parse`] moves such flags in front of the subcommand before clap sees them; `--` ends flag
//! handling so a runbook can still receive an argument that starts with a dash.

use std::{ffi::OsString, path::PathBuf};

use clap::{CommandFactory, Parser, Subcommand};

use crate::config::GlobalArgs;

const EXIT_CODES: &str = "\
Exit codes:
  0    success
  1    the runbook failed
  2    usage or compile error (nothing was run)
  124  stopped by --timeout
  130  interrupted (Ctrl-C or SIGTERM)";

#[derive(Debug, Parser)]
#[command(
    name = "cutover",
    version,
    about = "Run the runbooks that deploy, promote, roll back, back up and rescue a blue-green stack",
    long_about = "cutover runs runbooks: Rhai scripts that deploy, promote, roll back, back up and \
                  rescue a Docker blue-green stack behind Caddy with PostgreSQL. The procedures \
                  are scripts you can read (`cutover show NAME`) and override by putting a file \
                  of the same name in ./runbooks.",
    after_help = EXIT_CODES,
    args_conflicts_with_subcommands = false,
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run runbook NAME; ARGS go to its `main` as strings (`cutover run NAME --help` for its help)
    Run {
        /// Runbook name (see `cutover list`) or path to a .rhai file
        name: String,
        /// Arguments for the runbook's `main`
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// List runbooks with their one-line summaries and where each comes from
    List,
    /// Print a runbook's source, to read it or copy it into ./runbooks and edit it
    Show {
        /// Runbook name
        name: String,
        /// Show the stdlib module NAME instead of a runbook
        #[arg(long)]
        module: bool,
    },
    /// Compile runbooks and stdlib modules without running them, and check that every
    /// import, host function, call into an imported module, call without a module and method
    /// call (by name and number of arguments) exists; exit 2 on any error
    Check {
        /// Runbook names or paths (default: every runbook and stdlib module)
        targets: Vec<String>,
    },
    /// Interactive shell with every primitive, the stdlib and the runbooks
    Repl,
    /// The audit journal as a table
    History {
        /// Only entries of this kind (deployment, promotion, rollback, …)
        #[arg(long)]
        kind: Option<String>,
        /// Show the last N entries
        #[arg(short = 'n', long, default_value_t = 20)]
        limit: usize,
        /// One JSON object a line instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Who holds the run lock (`lock status`); break a stuck one (`lock release --force`)
    Lock {
        #[command(subcommand)]
        action: LockAction,
    },
    /// Reference of every host function, generated from the registered metadata
    Docs {
        /// Write Rhai definition files for editors into DIR instead
        #[arg(long, value_name = "DIR")]
        definitions: Option<PathBuf>,
    },
    /// Print a shell completion script
    Completions { shell: clap_complete::Shell },
    /// Run runbook NAME (shorthand for `cutover run NAME ARGS...`)
    #[command(external_subcommand)]
    External(Vec<String>),
}

/// `cutover lock ...`
#[derive(Debug, Subcommand)]
pub enum LockAction {
    /// Show whether a run holds the lock, and who: user, host, pid, runbook, since when
    Status,
    /// Break the lock: the next run may start even though the holder has not finished
    Release {
        /// Required: a holder that is still running is not stopped, and two runs may then change
        /// things at once
        #[arg(long)]
        force: bool,
    },
}

/// Parses the command line, accepting global flags after a runbook's arguments.
pub fn parse(argv: Vec<OsString>) -> Result<Cli, clap::Error> {
    let cli = match Cli::try_parse_from(&argv) {
        Err(error) if error.kind() == clap::error::ErrorKind::DisplayHelp => {
            // `cutover run NAME --help` asks for the runbook's help, not for `run`'s.
            match runbook_help_request(&argv) {
                Some(rebuilt) => Cli::try_parse_from(rebuilt)?,
                None => return Err(error),
            }
        }
        other => other?,
    };
    let name = match &cli.command {
        Some(Command::Run { name, .. }) => name.clone(),
        Some(Command::External(words)) if !words.is_empty() => words[0].clone(),
        _ => return Ok(cli),
    };
    let Some(name_at) = argv
        .iter()
        .skip(1)
        .position(|word| *word == *name)
        .map(|i| i + 1)
    else {
        return Ok(cli);
    };
    // Rebuild as `cutover [flags before NAME] [flags after NAME] run NAME -- ARGS...`, reading
    // the words after NAME raw so that a `--` the user typed still protects what follows it.
    let head = &argv[..name_at];
    let tail: Vec<String> = argv[name_at + 1..]
        .iter()
        .map(|w| w.to_string_lossy().into_owned())
        .collect();
    let (flags, positionals) = split_global_flags(&tail);
    let mut rebuilt: Vec<OsString> = head.to_vec();
    rebuilt.extend(flags.into_iter().map(OsString::from));
    if !head.iter().skip(1).any(|word| word == "run") {
        rebuilt.push("run".into());
    }
    rebuilt.extend([name.into(), "--".into()]);
    rebuilt.extend(positionals.into_iter().map(OsString::from));
    Cli::try_parse_from(rebuilt)
}

/// For `cutover [flags] run [flags] NAME ... --help`, the same words with `--` after NAME.
fn runbook_help_request(argv: &[OsString]) -> Option<Vec<OsString>> {
    let run_at = argv.iter().position(|w| w == "run")?;
    let name_at = argv[run_at + 1..]
        .iter()
        .position(|w| !w.to_string_lossy().starts_with('-'))
        .map(|i| run_at + 1 + i)?;
    let mut rebuilt = argv[..=name_at].to_vec();
    rebuilt.push("--".into());
    rebuilt.extend(argv[name_at + 1..].iter().cloned());
    Some(rebuilt)
}

/// Splits a runbook's argument list into global flags (with their values) and the rest.
/// `-h`/`--help` stays with the runbook: it asks for the runbook's help.
fn split_global_flags(args: &[String]) -> (Vec<String>, Vec<String>) {
    let command = Cli::command();
    let globals: Vec<&clap::Arg> = command
        .get_arguments()
        .filter(|a| a.is_global_set())
        .collect();
    let lookup = |word: &str| -> Option<bool> {
        let flag = word.split('=').next().unwrap_or(word);
        globals.iter().find_map(|arg| {
            let long = arg.get_long().is_some_and(|l| flag == format!("--{l}"));
            let short = arg.get_short().is_some_and(|s| flag == format!("-{s}"));
            (long || short).then(|| arg.get_action().takes_values() && !word.contains('='))
        })
    };
    let (mut flags, mut rest) = (Vec::new(), Vec::new());
    let mut words = args.iter();
    while let Some(word) = words.next() {
        if word == "--" {
            rest.extend(words.by_ref().cloned());
            break;
        }
        match lookup(word) {
            Some(takes_value) => {
                flags.push(word.clone());
                if takes_value && let Some(value) = words.next() {
                    flags.push(value.clone());
                }
            }
            None => rest.push(word.clone()),
        }
    }
    (flags, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_words(words: &str) -> Cli {
        parse(words.split_whitespace().map(OsString::from).collect()).unwrap()
    }

    #[test]
    fn shorthand_with_late_flags() {
        let cli = parse_words("cutover rollback --yes --timeout 5 now");
        assert!(cli.global.yes);
        assert_eq!(cli.global.timeout, Some(5.0));
        match cli.command {
            Some(Command::Run { name, args }) => {
                assert_eq!(name, "rollback");
                assert_eq!(args, vec!["now"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn double_dash_keeps_dashes_for_the_runbook() {
        let cli = parse_words("cutover run x -- --yes");
        assert!(!cli.global.yes);
        match cli.command {
            Some(Command::Run { args, .. }) => assert_eq!(args, vec!["--yes"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn help_stays_with_the_runbook() {
        for words in [
            "cutover promote --help",
            "cutover run promote --help",
            "cutover run -y promote -h",
        ] {
            match parse_words(words).command {
                Some(Command::Run { name, args }) => {
                    assert_eq!(name, "promote");
                    assert!(args == ["--help"] || args == ["-h"], "{words}: {args:?}");
                }
                other => panic!("{words}: {other:?}"),
            }
        }
    }

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }
}
