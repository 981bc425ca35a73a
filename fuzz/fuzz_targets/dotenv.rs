//! `cargo +nightly fuzz run dotenv`: see `cutover::fuzzing::dotenv`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cutover::fuzzing::dotenv(data));
