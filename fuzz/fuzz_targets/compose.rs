//! `cargo +nightly fuzz run compose`: see `cutover::fuzzing::compose_file`.
#![no_main]

use std::sync::OnceLock;

/// One directory for the whole run: the loader reads the file from disk.
static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("a temporary directory"));
    cutover::fuzzing::compose_file(dir.path(), data)
});
