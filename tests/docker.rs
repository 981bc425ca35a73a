//! `docker::*` against the real Docker Engine with the demo image: run, inspect, exec (a 200 MB
//! output streamed to a file while cutover's memory stays flat), logs, stats, stop, remove,
//! build and pull (from a registry the test starts), an unreachable engine, and a dry run.

use std::{
    io::Read,
    net::TcpListener,
    time::{Duration, Instant},
};

use crate::{
    support::{
        self, Service,
        docker::{Cleanup, demo_image, docker, http_get, inspect},
    },
    test::Test,
};

const RUN: &str = r#"
fn main(image, name, port, label) {
    let network = docker::network(name, #{labels: #{"cutover.test": label}});
    print(`network again: ${docker::network(name) == network}`);
    let id = docker::run(#{
        image: image, name: name, network: name, aliases: ["api"],
        env: #{VERSION: "v7", SERVICE: "api"},
        ports: [`127.0.0.1:${port}:8080`],
        labels: #{"cutover.test": label},
        healthcheck: #{test: ["CMD", "/demo-service", "check", "http://127.0.0.1:8080/api/health"], interval: 200, retries: 5},
        memory: "64m", cpus: 0.5, restart: "unless-stopped",
    });
    let info = docker::inspect(name);
    print(`id=${info.Id == id} state=${info.State.Status} memory=${info.HostConfig.Memory} nanocpus=${info.HostConfig.NanoCpus} restart=${info.HostConfig.RestartPolicy.Name}`);
}
"#;

const USE: &str = r#"
fn main(name, label) {
    let r = docker::exec(name, ["/demo-service", "env"], #{env: #{EXTRA: "from-exec"}});
    print(`exec code=${r.code}`);
    print(r.stdout);
    let r = docker::exec(name, ["/demo-service", "write", "100", "stderr"]);
    print(`stderr bytes=${r.stderr.len()} stdout bytes=${r.stdout.len()}`);
    let r = docker::exec(name, ["/demo-service", "write", "-1"]);
    print(`bad usage code=${r.code}`);
    print(`logs: ${docker::logs(name)}`);
    let found = docker::ps(#{label: `cutover.test=${label}`});
    print(`ps: ${found.len()} ${found[0].name} ${found[0].state} ${found[0].ports}`);
    let s = docker::stats(name);
    print(`stats: limit=${s.memory_limit} used>0=${s.memory_used > 0} cpu>=0=${s.cpu_percent >= 0.0} pids=${s.pids}`);
    let both = docker::stats([name]);
    print(`stats of several: ${both.keys()} limit=${both[name].memory_limit}`);
    docker::stop(name, #{timeout: 5_000});
    print(`after stop: ${docker::inspect(name).State.Status}`);
    docker::stop(name);
    docker::start(name);
    docker::restart(name);
    print(`after restart: ${docker::inspect(name).State.Status}`);
    docker::stop(name);
    docker::remove(name);
    print(`after remove: ${docker::ps(#{name: name}).len()}`);
    docker::remove(name, #{force: true});
}
"#;

#[test]
fn run_inspect_exec_logs_stats_stop_remove() {
    if !support::require(Service::Docker) {
        return;
    }
    let image = demo_image();
    let cleanup = Cleanup::new("run");
    let name = cleanup.id.clone();
    let port = support::free_port().to_string();
    Test::new()
        .runbook("create", RUN)
        .args(["create", &image, &name, &port, &cleanup.id])
        .stdout_contains("network again: true")
        .stdout_contains(
            "id=true state=running memory=67108864 nanocpus=500000000 restart=unless-stopped",
        )
        .success();
    let aliases = inspect(
        &name,
        &format!("{{{{json (index .NetworkSettings.Networks \"{name}\").Aliases}}}}"),
    );
    assert!(aliases.contains("\"api\""), "{aliases}");
    assert_eq!(http_get(port.parse().unwrap(), "/version"), "v7");
    Test::new()
        .runbook("use", USE)
        .args(["use", &name, &cleanup.id])
        .stdout_contains("exec code=0")
        .stdout_contains("VERSION=v7")
        .stdout_contains("EXTRA=from-exec")
        .stdout_contains("stderr bytes=100 stdout bytes=0")
        .stdout_contains("bad usage code=2")
        .stdout_contains("api v7 listening on 8080")
        .stdout_contains(&format!(
            r#"ps: 1 {name} running [#{{"container_port": 8080, "host_ip": "127.0.0.1", "host_port": {port}, "protocol": "tcp"}}]"#
        ))
        .stdout_contains("stats: limit=67108864 used>0=true cpu>=0=true")
        .stdout_contains("\"] limit=67108864")
        .stdout_contains("after stop: exited")
        .stdout_contains("after restart: running")
        .stdout_contains("after remove: 0")
        .success();
}

#[test]
#[allow(clippy::zombie_processes)] // Reaped by wait4.
fn exec_streams_a_large_output_to_a_file_with_flat_memory() {
    if !support::require(Service::Docker) {
        return;
    }
    const SIZE: u64 = 200 << 20;
    let cleanup = Cleanup::new("exec");
    let test = Test::new()
        .runbook(
            "dump",
            r#"fn main(image, name, label, size) {
                docker::run(#{image: image, name: name, labels: #{"cutover.test": label}});
                let r = docker::exec(name, ["/demo-service", "write", size], #{stdout_to: "out/dump.txt"});
                print(`code=${r.code} bytes=${r.bytes} kept=${r.stdout.len()}`);
                sleep(300); // alive a little longer, so its peak memory is read after the exec
            }"#,
        )
        .file("out/.keep", "")
        .args(["dump", &demo_image(), &cleanup.id, &cleanup.id, &SIZE.to_string()]);
    let mut command = test.command();
    // What it prints is on stdout; its log (stderr) is not read here.
    command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = command.spawn().unwrap();
    // Its own peak memory: VmHWM of its address space, read while it lives. (wait4's ru_maxrss
    // would also count this test process's memory, which the child's address space held from
    // spawn to exec: hundreds of MB when the whole suite runs.)
    let pid = child.id();
    let peak = std::thread::spawn(move || {
        let mut peak_kb = 0u64;
        while let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            let Some(kb) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            else {
                break; // a zombie has no memory left to read
            };
            peak_kb = peak_kb.max(kb);
            std::thread::sleep(Duration::from_millis(20));
        }
        peak_kb
    });
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    // Reaped with wait4 on this child alone (not other tests' processes).
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("code=0 bytes={SIZE} kept=0")),
        "{stdout}"
    );
    let path = test.path().join("out/dump.txt");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), SIZE);
    let mut tail = vec![0u8; 64];
    let mut file = std::fs::File::open(&path).unwrap();
    std::io::Seek::seek(&mut file, std::io::SeekFrom::End(-64)).unwrap();
    file.read_exact(&mut tail).unwrap();
    assert_eq!(
        tail,
        b"cutover demo-service streaming test line: 0123456789abcdefghijk\n"
    );
    let peak_mb = peak.join().unwrap() as f64 / 1024.0;
    eprintln!(
        "exec of {} MB to a file: cutover peak RSS {peak_mb:.1} MB",
        SIZE >> 20
    );
    assert!(
        peak_mb < 64.0,
        "peak RSS {peak_mb:.1} MB while streaming {} MB",
        SIZE >> 20
    );
}

#[test]
fn exec_output_is_bounded_and_a_failed_command_leaves_no_file() {
    if !support::require(Service::Docker) {
        return;
    }
    let cleanup = Cleanup::new("bounded");
    let finished = Test::new()
        .runbook(
            "r",
            r#"fn main(image, name, label) {
                docker::run(#{image: image, name: name, labels: #{"cutover.test": label}});
                let r = docker::exec(name, ["/demo-service", "write", "3000000"]);
                print(`kept=${r.stdout.len()} ends=${r.stdout.ends_with("[… 1951424 more bytes not kept]")}`);
                let r = docker::exec(name, ["/demo-service", "write", "x"], #{stdout_to: "never.txt"});
                print(`code=${r.code} bytes=${r.bytes}`);
            }"#,
        )
        .args(["r", &demo_image(), &cleanup.id, &cleanup.id])
        .stdout_contains("kept=1048608 ends=true")
        .stdout_contains("code=2 bytes=0")
        .success();
    assert!(!finished.path().join("never.txt").exists());
}

#[test]
fn logs_tail_to_a_file_and_followed_until_the_container_stops() {
    if !support::require(Service::Docker) {
        return;
    }
    let cleanup = Cleanup::new("logs");
    let writer = format!("{}-writer", cleanup.id);
    let crasher = format!("{}-crasher", cleanup.id);
    let finished = Test::new()
        .runbook(
            "r",
            r#"fn main(image, writer, crasher, label) {
                docker::run(#{image: image, name: writer, command: ["write", "320000"], labels: #{"cutover.test": label}});
                docker::run(#{image: image, name: crasher, env: #{CRASH_AFTER_MS: "1500", VERSION: "v9"}, labels: #{"cutover.test": label}});
                sleep(500);
                print(`to file: ${docker::logs(writer, #{to: "writer.log"})}`);
                print(`tail: [${docker::logs(writer, #{tail: 1})}]`);
                print(`followed: ${docker::logs(crasher, #{follow: true}) > 0}`);
                print(`since the future: [${docker::logs(crasher, #{since: time::now() + 60_000})}]`);
                docker::logs(crasher, #{to: "archive.log", prefix: true});
                docker::logs(crasher, #{to: "archive.log", prefix: true, append: true});
            }"#,
        )
        .args(["r", &demo_image(), &writer, &crasher, &cleanup.id])
        .stdout_contains("to file: 320000")
        .stdout_contains("tail: [cutover demo-service streaming test line: 0123456789abcdefghijk\n]")
        .stderr_contains(&format!("{crasher} | demo v9 listening on 8080"))
        .stderr_contains(&format!("{crasher} | crashing as asked (CRASH_AFTER_MS)"))
        .stdout_contains("followed: true")
        .stdout_contains("since the future: []")
        .success();
    let log = std::fs::read(finished.path().join("writer.log")).unwrap();
    assert_eq!(log.len(), 320_000);
    let archive = std::fs::read_to_string(finished.path().join("archive.log")).unwrap();
    let crashed = format!("{crasher} | crashing as asked (CRASH_AFTER_MS)\n");
    assert_eq!(archive.matches(&crashed).count(), 2, "{archive}");
    assert!(
        archive
            .lines()
            .all(|l| l.starts_with(&format!("{crasher} | "))),
        "{archive}"
    );
}

#[test]
fn build_failure_names_the_step() {
    if !support::require(Service::Docker) {
        return;
    }
    let mut cleanup = Cleanup::new("build");
    let tag = format!("cutover-test-broken:{}", cleanup.id);
    cleanup.image(&tag);
    Test::new()
        .file("ctx/Dockerfile", "FROM scratch\nCOPY missing-file /x\n")
        .runbook("b", "fn main(tag) { docker::build(\"ctx\", tag) }")
        .args(["b", &tag])
        .stderr_contains(&format!(
            "building {tag} failed at `Step 2/3 : COPY missing-file /x`"
        ))
        .status(1);
    Test::new()
        .file("ctx/README", "no Dockerfile here")
        .runbook("b", "fn main(tag) { docker::build(\"ctx\", tag) }")
        .args(["b", &tag])
        .stderr_contains("ctx has no Dockerfile to build from")
        .status(1);
}

#[test]
fn build_keeps_an_image_built_from_the_same_context() {
    if !support::require(Service::Docker) {
        return;
    }
    let mut cleanup = Cleanup::new("rebuild");
    let tag = format!("cutover-test-kept:{}", cleanup.id);
    let other = format!("cutover-test-kept:{}-other", cleanup.id);
    cleanup.image(&tag);
    cleanup.image(&other);
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let build = |content: &str, options: &str| {
        Test::within(dir.clone())
            .file("ctx/Dockerfile", "FROM scratch\nCOPY greeting /greeting\n")
            .file("ctx/greeting", content)
            .runbook(
                "b",
                &format!("fn main(tag) {{ print(docker::build(\"ctx\", tag{options})) }}"),
            )
            .args(["b", &tag])
    };
    build("hello", "")
        .stderr_contains(&format!("built {tag}"))
        .success();
    let first = inspect(&tag, "{{.Id}}");
    docker(&["tag", &tag, &other]);
    build("hello", "")
        .stderr_contains(&format!("{tag} is up to date"))
        .stderr_lacks("built ")
        .stdout_contains(&first)
        .success();
    assert_eq!(
        inspect(&other, "{{.Id}}"),
        first,
        "the other tag lost its image"
    );
    build("hello", ", #{rebuild: true}")
        .stderr_contains(&format!("built {tag}"))
        .success();
    build("changed", "")
        .stderr_contains(&format!("built {tag}"))
        .success();
    assert_ne!(
        inspect(&tag, "{{.Id}}"),
        first,
        "a changed context kept the old image"
    );
    assert_eq!(inspect(&other, "{{.Id}}"), first);
}

#[test]
fn pull_from_a_local_registry() {
    if !support::require(Service::Docker) || !support::require(Service::Registry) {
        return;
    }
    let mut cleanup = Cleanup::new("pull");
    let registry = support::docker::Registry::start();
    let port = registry.port;
    let reference = format!("127.0.0.1:{port}/cutover-demo:{}", cleanup.id);
    cleanup.image(&reference);
    docker(&["tag", &demo_image(), &reference]);
    docker(&["push", &reference]);
    docker(&["rmi", &reference]);
    Test::new()
        .runbook(
            "p",
            r#"fn main(reference) {
                print(`before: ${docker::image_exists(reference)}`);
                let id = docker::pull(reference);
                print(`after: ${docker::image_exists(reference)} ${id.starts_with("sha256:")}`);
            }"#,
        )
        .args(["p", &reference])
        .stdout_contains("before: false")
        .stdout_contains("after: true true")
        .success();
    assert_eq!(
        inspect(&reference, "{{.Id}}"),
        inspect(&demo_image(), "{{.Id}}")
    );
    let missing = format!("127.0.0.1:{port}/cutover-demo:no-such-tag");
    Test::new()
        .runbook("p", "fn main(reference) { docker::pull(reference) }")
        .args(["p", &missing])
        .stderr_contains(&format!("pull {missing}: "))
        .status(1);
    drop(registry);
}

#[test]
fn unreachable_engine_fails_within_seconds_naming_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("missing.sock");
    let refused = format!("tcp://127.0.0.1:{}", support::free_port());
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = format!("tcp://{}", silent.local_addr().unwrap());
    for (host, says) in [
        (
            format!("unix://{}", socket.display()),
            format!("Socket not found: {}", socket.display()),
        ),
        (
            refused.clone(),
            format!("cannot reach the Docker Engine at {refused}: "),
        ),
        (
            silent.clone(),
            format!("the Docker Engine at {silent} did not answer within 2 s"),
        ),
    ] {
        let started = Instant::now();
        Test::new()
            .runbook("r", "fn main() { docker::ps() }")
            .env("DOCKER_HOST", &host)
            .args(["r"])
            .stderr_contains(&says)
            .status(1);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "DOCKER_HOST={host} took {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn dry_run_describes_and_changes_nothing() {
    if !support::require(Service::Docker) {
        return;
    }
    let cleanup = Cleanup::new("dry");
    Test::new()
        .runbook(
            "r",
            r#"fn main(image, name, label) {
                let id = docker::run(#{image: image, name: name, labels: #{"cutover.test": label}});
                docker::exec(name, ["/demo-service", "env"]);
                print(`exists: ${docker::ps(#{name: name}).len()}`);
            }"#,
        )
        .args(["--dry-run", "r", &demo_image(), &cleanup.id, &cleanup.id])
        .stderr_contains(&format!(
            "would docker::run {} {}",
            demo_image(),
            cleanup.id
        ))
        .stderr_contains(&format!("would docker::exec {}", cleanup.id))
        .stdout_contains("exists: 0")
        .success();
    assert_eq!(
        docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label={}", cleanup.label())
        ]),
        ""
    );
}

#[test]
fn bad_run_spec_is_an_error_naming_the_key() {
    Test::new()
        .runbook(
            "r",
            r#"fn main() { docker::run(#{image: "x", ports: ["80:99999"]}) }"#,
        )
        .args(["r"])
        .stderr_contains("docker::run: ports[0]: \"99999\" is not a port number")
        .status(1);
    Test::new()
        .runbook(
            "r",
            r#"fn main() { docker::run(#{image: "x", imgae: "y"}) }"#,
        )
        .args(["r"])
        .stderr_contains("docker::run: imgae: unknown key")
        .status(1);
    Test::new()
        .runbook("r", r#"fn main() { docker::stop("x", #{timout: 5}) }"#)
        .args(["r"])
        .stderr_contains("docker::stop: unknown option `timout` (known: timeout)")
        .status(1);
}

#[test]
fn logs_to_a_file_change_nothing_for_a_missing_container_a_dry_run_or_a_readonly_runbook() {
    if !support::require(Service::Docker) {
        return;
    }
    let missing = support::unique_name("cutover-test-no-such-container");
    let test = || {
        Test::new()
            .file("kept.log", "yesterday's archive\n")
            .runbook(
                "r",
                r#"fn main(name) {
                    try { docker::logs(name, #{to: "kept.log"}); } catch (e) { print(`replace: ${e}`); }
                    try { docker::logs(name, #{to: "kept.log", append: true, prefix: true}); } catch (e) { print(`append: ${e}`); }
                    try { docker::logs(name, #{to: "new.log", append: true}); } catch (e) { print(`new: ${e}`); }
                }"#,
            )
            .runbook(
                "ro",
                "//! readonly\nfn main(name) { docker::logs(name, #{to: \"kept.log\"}); }",
            )
    };
    let check = |finished: &crate::test::Finished| {
        assert_eq!(
            std::fs::read_to_string(finished.path().join("kept.log")).unwrap(),
            "yesterday's archive\n"
        );
        assert!(!finished.path().join("new.log").exists());
    };
    // A mistyped container: the engine says so, and no file is emptied or created.
    let finished = test()
        .args(["r", &missing])
        .stdout_contains("replace: ")
        .stdout_contains("append: ")
        .stdout_contains("No such container")
        .success();
    check(&finished);
    let finished = test()
        .args(["--dry-run", "r", &missing])
        .stderr_contains(&format!("would docker::logs {missing} > kept.log"))
        .stderr_contains(&format!("would docker::logs {missing} >> kept.log"))
        .success();
    check(&finished);
    let finished = test()
        .args(["ro", &missing])
        .stderr_contains("is a readonly runbook")
        .status(1);
    check(&finished);
}

#[test]
fn secret_named_variables_given_to_a_container_are_masked() {
    if !support::require(Service::Docker) {
        return;
    }
    let cleanup = Cleanup::new("secret-env");
    let name = format!("{}-app", cleanup.id);
    let finished = Test::new()
        .runbook(
            "r",
            r#"fn main(image, name, label) {
                docker::run(#{image: image, name: name, labels: #{"cutover.test": label},
                    env: #{APP_SECRET: "canary-run-secret-value"}});
                print(docker::inspect(name));
                print(docker::exec(name, ["/demo-service", "check"], #{env: #{EXEC_TOKEN: "canary-exec-token-value"}}));
                print("run canary-run-secret-value exec canary-exec-token-value");
            }"#,
        )
        .args(["r", &demo_image(), &name, &cleanup.id])
        .stdout_contains("run *** exec ***")
        .stdout_lacks("canary-")
        .stderr_lacks("canary-")
        .success();
    // The container really got it.
    let env = inspect(&name, "{{json .Config.Env}}");
    assert!(env.contains("APP_SECRET=canary-run-secret-value"), "{env}");
    assert!(
        finished.stdout.contains("APP_SECRET=***"),
        "{}",
        finished.stdout
    );
}
