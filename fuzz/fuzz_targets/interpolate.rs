//! `cargo +nightly fuzz run interpolate`: see `cutover::fuzzing::interpolate`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cutover::fuzzing::interpolate(data));
