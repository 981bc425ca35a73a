//! `cargo +nightly fuzz run caddy_route`: see `cutover::fuzzing::caddy_route`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cutover::fuzzing::caddy_route(data));
