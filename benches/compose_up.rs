//! Bringing up a 4-service compose file (demo images, a dependency chain, a named volume, a
//! published port): `cutover run up` (`compose::up`) against `docker-compose up -d`, alternating
//! in the same run, everything removed between runs. Prints both medians and their ratio.
//! Target (DESIGN.md): ≤ 0.7× docker-compose.
//!
//! `cargo bench --bench compose_up` (needs the Docker Engine and `docker-compose`)

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

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

fn run(command: &mut Command) {
    let output = command.output().expect("cannot run");
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Builds the static demo binary and, through cutover's own `docker::build`, its image.
fn demo_image(cutover: &str, dir: &Path) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = root.join("target/demo");
    run(Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "-p",
            "demo-service",
            "--target",
            "x86_64-unknown-linux-gnu",
        ])
        .arg("--target-dir")
        .arg(&target)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .current_dir(&root));
    let context = dir.join("image");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::copy(
        target.join("x86_64-unknown-linux-gnu/release/demo-service"),
        context.join("demo-service"),
    )
    .unwrap();
    std::fs::copy(
        root.join("deploy/demo-service/image/Dockerfile"),
        context.join("Dockerfile"),
    )
    .unwrap();
    let tag = "cutover-demo:bench".to_string();
    run(Command::new(cutover)
        .args(["run", "build", "image", &tag])
        .current_dir(dir));
    tag
}

/// Removes everything of `project`, as a test's cleanup would (not timed).
fn clean(project: &str) {
    let filter = format!("label=com.docker.compose.project={project}");
    for (list, remove) in [
        (vec!["ps", "-aq"], vec!["rm", "-f", "-v"]),
        (vec!["network", "ls", "-q"], vec!["network", "rm"]),
        (vec!["volume", "ls", "-q"], vec!["volume", "rm", "-f"]),
    ] {
        let output = Command::new("docker")
            .args(&list)
            .args(["--filter", &filter])
            .output()
            .unwrap();
        let ids: Vec<String> = String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if !ids.is_empty() {
            run(Command::new("docker").args(&remove).args(&ids));
        }
    }
}

fn timed(command: &mut Command) -> Duration {
    command.stdout(Stdio::null()).stderr(Stdio::piped());
    let started = Instant::now();
    let output = command.output().expect("cannot run");
    let took = started.elapsed();
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    took
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let cutover = env!("CARGO_BIN_EXE_cutover");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("runbooks")).unwrap();
    std::fs::write(
        dir.path().join("runbooks/build.rhai"),
        "fn main(dir, tag) { docker::build(dir, tag) }\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("runbooks/up.rhai"),
        "fn main(project) { compose::up(compose::load(\"compose.yaml\", #{project_name: project})) }\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("compose.yaml"), COMPOSE).unwrap();
    let image = demo_image(cutover, dir.path());
    let project = format!("cutover-bench-{}", std::process::id());
    clean(&project);
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        ours.push(timed(
            Command::new(cutover)
                .args(["run", "up", &project])
                .env("IMAGE", &image)
                .current_dir(dir.path()),
        ));
        clean(&project);
        theirs.push(timed(
            Command::new("docker-compose")
                .args(["-p", &project, "-f", "compose.yaml", "up", "-d"])
                .env("IMAGE", &image)
                .current_dir(dir.path()),
        ));
        clean(&project);
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
