//! `pg::dump` against plain `pg_dump > file`, in the same run on the same ≥ 1 GB database: the
//! throughput of each, their ratio, and cutover's peak memory. Targets (README, Benchmarks): ≥ 0.95× raw
//! throughput, peak RSS ≤ 64 MB at any size.
//!
//! `cargo bench --bench pg_dump` (needs PostgreSQL 15 server binaries; runs as root, like the
//! tests). `PG_DUMP_BENCH_ROWS` sets the table size (default 4.2 million rows ≈ 1.1 GB of SQL),
//! `PG_DUMP_BENCH_ROUNDS` the rounds of each contender (default 3).

#[path = "../tests/support/mod.rs"]
mod support;
// The support modules reach the test harness as `crate::test`.
#[path = "../tests/test.rs"]
mod test;

use std::{
    fs::File,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use support::postgres::{Cluster, Psql};

const RUNBOOK: &str = r#"fn main(url, to, format) {
    print(pg::dump(#{url: url, password: env::get("DB_PASSWORD"), to: to, format: format}).to_json());
}"#;

/// One measured run: bytes written, wall time, peak RSS of the measured process (VmHWM sampled
/// from /proc) and the peak reported by wait4 (the process or any child it waited for).
struct Run {
    bytes: u64,
    wall: Duration,
    hwm_kb: u64,
    maxrss_kb: u64,
}

impl Run {
    fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / self.wall.as_secs_f64() / 1e6
    }
}

/// Runs `command` to completion, sampling its VmHWM, and returns the wait4 figures.
fn measure(mut command: Command, output: &Path) -> Run {
    let started = Instant::now();
    let child = command.spawn().expect("cannot start");
    let pid = child.id() as libc::pid_t;
    let mut hwm_kb = 0;
    let (status, usage) = loop {
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/status"))
            && let Some(kb) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
        {
            hwm_kb = hwm_kb.max(kb);
        }
        let mut status = 0;
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let done = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if done == pid {
            break (status, usage);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let wall = started.elapsed();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{command:?} failed"
    );
    let bytes = std::fs::metadata(output).expect("no output").len();
    std::mem::forget(child); // reaped above
    Run {
        bytes,
        wall,
        hwm_kb,
        maxrss_kb: usage.ru_maxrss as u64,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

fn main() {
    let rows: u64 = std::env::var("PG_DUMP_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4_200_000);
    let rounds: usize = std::env::var("PG_DUMP_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let cutover = env!("CARGO_BIN_EXE_cutover");
    let cluster = Cluster::start();
    let result = std::panic::catch_unwind(|| run(&cluster, cutover, rows, rounds));
    cluster.stop();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

fn run(cluster: &Cluster, cutover: &str, rows: u64, rounds: usize) {
    let work = tempfile::Builder::new()
        .prefix("pg-dump-bench-")
        .tempdir_in(std::env::current_dir().unwrap())
        .unwrap();
    std::fs::create_dir(work.path().join("runbooks")).unwrap();
    std::fs::write(work.path().join("runbooks/dump.rhai"), RUNBOOK).unwrap();

    // ≥ 1 GB of SQL, loaded by two sessions at once (the machine has two cores).
    let loading = Instant::now();
    cluster.psql("postgres", "CREATE DATABASE bench");
    cluster.psql(
        "bench",
        "CREATE UNLOGGED TABLE t (id bigint, a text, b text, c timestamptz)",
    );
    let half = rows / 2;
    std::thread::scope(|scope| {
        for (from, to) in [(1, half), (half + 1, rows)] {
            scope.spawn(move || {
                cluster.psql(
                    "bench",
                    &format!(
                        "INSERT INTO t SELECT g, md5(g::text), repeat(md5(g::text), 6), \
                         '2026-01-26 04:31:02+00'::timestamptz + g * interval '1 second' \
                         FROM generate_series({from}, {to}) g"
                    ),
                )
            });
        }
    });
    println!(
        "pg_dump: {rows} rows loaded in {:.1} s",
        loading.elapsed().as_secs_f64()
    );

    let url = format!("postgres://postgres@127.0.0.1:{}/bench", cluster.port);
    let raw = |format: &str, out: &Path| {
        let mut command = Command::new("pg_dump");
        command
            .args([&format!("--format={format}"), &format!("--dbname={url}")])
            .env("PGPASSWORD", &cluster.password)
            .stdout(File::create(out).unwrap())
            .stderr(Stdio::inherit());
        command
    };
    let ours = |format: &str, out: &Path| {
        let mut command = Command::new(cutover);
        command
            .args(["-q", "run", "dump", &url, out.to_str().unwrap(), format])
            .current_dir(work.path())
            .env("DB_PASSWORD", &cluster.password)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        command
    };

    let out = work.path().join("dump.out");
    // Warm-up: the table into the page cache for both contenders.
    measure(raw("plain", &out), &out);

    for (format, rounds) in [("plain", rounds), ("custom", 1)] {
        let (mut raw_speeds, mut durable_speeds, mut our_speeds, mut our_runs) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            // Alternate who goes first, so a drift in the machine's load favours neither.
            let mut order = [Contender::Raw, Contender::Ours];
            if round % 2 == 1 {
                order.reverse();
            }
            let (mut baseline, mut run) = (None, None);
            for contender in order {
                match contender {
                    Contender::Raw => baseline = Some(measure(raw(format, &out), &out)),
                    Contender::Ours => run = Some(measure(ours(format, &out), &out)),
                }
                std::fs::remove_file(&out).unwrap();
            }
            let (baseline, run) = (baseline.unwrap(), run.unwrap());
            // The same, made durable as pg::dump makes its file: fsync before it counts.
            let mut durable = measure(raw(format, &out), &out);
            let syncing = Instant::now();
            File::open(&out).unwrap().sync_all().unwrap();
            durable.wall += syncing.elapsed();
            std::fs::remove_file(&out).unwrap();
            println!(
                "  {format:6} round {}: pg_dump > file {:6.1} MB/s ({:.2} s)  + fsync {:6.1} MB/s   pg::dump {:6.1} MB/s ({:.2} s, {:.2} GB)",
                round + 1,
                baseline.mb_per_s(),
                baseline.wall.as_secs_f64(),
                durable.mb_per_s(),
                run.mb_per_s(),
                run.wall.as_secs_f64(),
                run.bytes as f64 / 1e9
            );
            raw_speeds.push(baseline.mb_per_s());
            durable_speeds.push(durable.mb_per_s());
            our_speeds.push(run.mb_per_s());
            our_runs.push(run);
        }
        let (raw_median, durable_median, our_median) = (
            median(raw_speeds),
            median(durable_speeds),
            median(our_speeds),
        );
        let hwm = our_runs.iter().map(|r| r.hwm_kb).max().unwrap();
        let maxrss = our_runs.iter().map(|r| r.maxrss_kb).max().unwrap();
        println!("pg_dump --format={format}: median of {rounds}");
        println!("  pg_dump > file           {raw_median:>8.1} MB/s");
        println!("  pg_dump > file; fsync    {durable_median:>8.1} MB/s");
        println!(
            "  pg::dump (cutover)       {our_median:>8.1} MB/s   (sha256 computed, fsynced, renamed)"
        );
        println!(
            "  ratio                    {:>8.3}×   vs pg_dump > file (target ≥ 0.95×); {:.3}× vs the fsynced file",
            our_median / raw_median,
            our_median / durable_median
        );
        println!(
            "  cutover peak RSS         {:>8.1} MB   (VmHWM; target ≤ 64 MB; wait4 maxrss incl. pg_dump {:.1} MB)",
            hwm as f64 / 1024.0,
            maxrss as f64 / 1024.0
        );
    }
}

#[derive(Clone, Copy)]
enum Contender {
    Raw,
    Ours,
}
