//! Integration tests: one binary, every test driving the real `cutover` executable through the
//! [`test::Test`] builder. Tests that need Docker, Caddy or PostgreSQL say so through `support`
//! and skip loudly when those are missing, or fail when `CUTOVER_TEST_REQUIRE=all`.

mod support;
mod test;

mod authoring;
mod caddy;
mod caddy_failures;
mod canary;
mod canary_operators;
mod cancel;
mod cli;
mod compose;
mod compose_compat;
mod defer;
mod discovery;
mod docker;
mod docs;
mod env;
mod errors;
mod exec;
mod health;
mod http;
mod https;
mod journal;
mod lock;
mod maintenance;
mod monitoring;
mod notify;
mod output;
mod pg;
mod pg_failures;
mod proxy_truth;
mod releases;
mod repl;
mod secrets;
mod stack;
mod state;
mod swarm;
mod traffic;
