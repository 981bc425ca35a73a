//! Bringing up a 4-service compose file (demo images, a dependency chain, a named volume, a
//! published port): `cutover run up` (`compose::up`) against `docker-compose up -d`, alternating
//! in the same run, everything removed between runs. Prints both medians and their ratio.
//! Target (README, Benchmarks): ≤ 0.7× docker-compose.
//!
//! `cargo bench --bench compose_up` (needs the Docker Engine and `docker-compose`)

mod common;
#[path = "../tests/support/mod.rs"]
mod support;
// The support modules reach the test harness as `crate::test`.
#[path = "../tests/test.rs"]
mod test;

use std::process::Command;

use common::{median, timed};
use support::docker::{Cleanup, demo_image};

const RUNS: usize = 7;

const COMPOSE: &str = r#"services:
  db:
    image: ${IMAGE}
    environment: {SERVICE: db}
    volumes: [data:/data]
  cache:
    image: ${IMAGE}
    environment: {SERVICE: cache}
  api:
    image: ${IMAGE}
    environment: {SERVICE: api, VERSION: v1}
    depends_on: [db, cache]
  web:
    image: ${IMAGE}
    environment: {SERVICE: web}
    depends_on: [api]
    ports: ["127.0.0.1::8080"]
volumes:
  data: {}
"#;

fn main() {
    let cutover = env!("CARGO_BIN_EXE_cutover");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("runbooks")).unwrap();
    std::fs::write(
        dir.path().join("runbooks/up.rhai"),
        "fn main(project) { compose::up(compose::load(\"compose.yaml\", #{project_name: project})) }\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("compose.yaml"), COMPOSE).unwrap();
    let image = demo_image();
    let mut cleanup = Cleanup::new("cutover-bench");
    let project = cleanup.project("cutover-bench");
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        ours.push(timed(
            Command::new(cutover)
                .args(["run", "up", &project])
                .env("IMAGE", &image)
                .current_dir(dir.path()),
        ));
        cleanup.remove();
        theirs.push(timed(
            Command::new("docker-compose")
                .args(["-p", &project, "-f", "compose.yaml", "up", "-d"])
                .env("IMAGE", &image)
                .current_dir(dir.path()),
        ));
        cleanup.remove();
    }
    let (ours, theirs) = (median(ours), median(theirs));
    println!("compose up of 4 services: median of {RUNS} runs each, alternating");
    println!(
        "  cutover (compose::up)    {:>8.1} ms",
        ours.as_secs_f64() * 1e3
    );
    println!(
        "  docker-compose up -d     {:>8.1} ms",
        theirs.as_secs_f64() * 1e3
    );
    println!(
        "  ratio                    {:>8.2}×   (target ≤ 0.7×)",
        ours.as_secs_f64() / theirs.as_secs_f64()
    );
}
