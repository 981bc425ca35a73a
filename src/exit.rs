//! Process exit codes. They are part of the CLI contract: scripts and CI jobs branch on them.

/// The command did what was asked.
pub const OK: i32 = 0;
/// The runbook ran and failed (a thrown error, a host call that failed, a refused change).
pub const FAILED: i32 = 1;
/// Bad usage or a script that does not compile: nothing was run.
pub const USAGE: i32 = 2;
/// `--timeout` elapsed and the runbook was stopped.
pub const TIMED_OUT: i32 = 124;
/// Ctrl-C or SIGTERM stopped the runbook.
pub const INTERRUPTED: i32 = 130;
