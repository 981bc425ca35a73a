//! A container's resource use read from its cgroup, when the engine runs on this machine.
//!
//! The engine's own stats are published by a collector that wakes once a second, and a
//! one-shot sample waits for its next wake: measuring CPU takes two of them, so `docker stats`
//! (and any engine-based measure) spends one to two seconds on every call. `cutover status` is
//! run in `watch` during incidents; that second is most of its time. The kernel keeps the same
//! counters in the container's cgroup, readable at once: the engine's stats are those files.
//!
//! So when the engine is local, CPU, memory and pids are read here, twice, a short window apart.
//! "Local" is checked, not assumed: the container's main process (its pid, as the engine reports
//! it) must be visible in this machine's `/proc` and sit in a cgroup whose path names the
//! container's id. A remote engine, a cgroup namespace, or a layout this module does not know
//! fails that check, and the caller falls back to the engine's samples.
//!
//! Both cgroup versions are read: v1 (one hierarchy per controller: `cpuacct`, `memory`, `pids`)
//! and v2 (one unified directory). The figures are computed as `docker stats` computes them:
//! memory without the reclaimable inactive page cache, the limit capped at the host's memory.

use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";

/// Where a container's counters are.
#[derive(Debug, Clone, PartialEq)]
pub enum Cgroup {
    V1 {
        cpuacct: PathBuf,
        memory: PathBuf,
        pids: PathBuf,
    },
    V2 {
        dir: PathBuf,
    },
}

/// One reading of a container's counters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Counters {
    /// CPU time used since the container started, in nanoseconds.
    pub cpu_ns: u64,
    /// Memory in use, reclaimable inactive page cache left out.
    pub memory_used: u64,
    /// The cgroup's limit, or the host's memory when that is lower (no limit).
    pub memory_limit: u64,
    pub pids: u64,
}

impl Cgroup {
    /// The cgroup of the container with id `id` whose main process is `pid`, when this machine
    /// can read it (see the module's text); `None` otherwise.
    pub fn of(pid: i64, id: &str) -> Option<Cgroup> {
        if pid <= 0 || id.len() < 12 {
            return None;
        }
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        // Not read here: a reading that fails falls back to the engine where it is taken.
        locate(&text, id, Path::new(ROOT))
    }

    /// The counters now.
    pub fn read(&self) -> std::io::Result<Counters> {
        let host_memory = host_memory();
        match self {
            Cgroup::V1 {
                cpuacct,
                memory,
                pids,
            } => {
                let usage = number(&memory.join("memory.usage_in_bytes"))?;
                let stat = std::fs::read_to_string(memory.join("memory.stat"))?;
                let inactive = stat_value(&stat, "total_inactive_file")
                    .or_else(|| stat_value(&stat, "inactive_file"));
                Ok(Counters {
                    cpu_ns: number(&cpuacct.join("cpuacct.usage"))?,
                    memory_used: without_inactive(usage, inactive),
                    memory_limit: number(&memory.join("memory.limit_in_bytes"))?.min(host_memory),
                    pids: number(&pids.join("pids.current")).unwrap_or(0),
                })
            }
            Cgroup::V2 { dir } => {
                let cpu = std::fs::read_to_string(dir.join("cpu.stat"))?;
                let usec = stat_value(&cpu, "usage_usec").ok_or_else(|| {
                    std::io::Error::other(format!("no usage_usec in {}/cpu.stat", dir.display()))
                })?;
                let usage = number(&dir.join("memory.current"))?;
                let stat = std::fs::read_to_string(dir.join("memory.stat"))?;
                let limit = std::fs::read_to_string(dir.join("memory.max"))?;
                Ok(Counters {
                    cpu_ns: usec.saturating_mul(1000),
                    memory_used: without_inactive(usage, stat_value(&stat, "inactive_file")),
                    memory_limit: limit
                        .trim()
                        .parse::<u64>()
                        .unwrap_or(u64::MAX)
                        .min(host_memory),
                    pids: number(&dir.join("pids.current")).unwrap_or(0),
                })
            }
        }
    }
}

/// The share of one CPU used between two readings `elapsed_ns` apart, in percent (as `docker
/// stats` shows it: 200 % is two CPUs busy).
pub fn cpu_percent(before: &Counters, after: &Counters, elapsed_ns: u64) -> f64 {
    if elapsed_ns == 0 {
        return 0.0;
    }
    after.cpu_ns.saturating_sub(before.cpu_ns) as f64 / elapsed_ns as f64 * 100.0
}

/// The cgroup named by `/proc/PID/cgroup`'s `text` under `root`, when its path names `id`.
/// v1 controllers win over the unified line of a hybrid layout: there the v2 tree holds no
/// controllers.
fn locate(text: &str, id: &str, root: &Path) -> Option<Cgroup> {
    let mut v1 = (None, None, None);
    let mut unified = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if !path.contains(id) {
            continue;
        }
        let relative = path.trim_start_matches('/');
        if controllers.is_empty() {
            unified = Some(root.join(relative));
            continue;
        }
        for controller in controllers.split(',') {
            let dir = root.join(controller).join(relative);
            match controller {
                "cpuacct" => v1.0 = Some(dir),
                "memory" => v1.1 = Some(dir),
                "pids" => v1.2 = Some(dir),
                _ => {}
            }
        }
    }
    match v1 {
        (Some(cpuacct), Some(memory), pids) => Some(Cgroup::V1 {
            pids: pids.unwrap_or_else(|| memory.clone()),
            cpuacct,
            memory,
        }),
        _ => unified.map(|dir| Cgroup::V2 { dir }),
    }
}

fn number(path: &Path) -> std::io::Result<u64> {
    let text = std::fs::read_to_string(path)?;
    text.trim().parse().map_err(|_| {
        std::io::Error::other(format!(
            "{}: not a number: {:?}",
            path.display(),
            text.trim()
        ))
    })
}

/// The value of `key` in a `key value` per line file (`memory.stat`, `cpu.stat`).
fn stat_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

fn without_inactive(usage: u64, inactive: Option<u64>) -> u64 {
    usage - inactive.filter(|v| *v < usage).unwrap_or(0)
}

/// The host's memory in bytes (`MemTotal` of `/proc/meminfo`, read once), or `u64::MAX` when it
/// cannot be read (no cap).
fn host_memory() -> u64 {
    static MEMORY: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *MEMORY.get_or_init(|| {
        let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        text.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map_or(u64::MAX, |kib| kib * 1024)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "2169f64fe7368815c27e0dbca6dd4c6b09088809db537a78fb0c9c6db670cd73";

    #[test]
    fn a_v1_layout_is_read_per_controller_even_beside_a_unified_line() {
        let text = format!(
            "9:name=systemd:/docker/{ID}\n8:pids:/docker/{ID}\n4:memory:/docker/{ID}\n\
             2:cpu,cpuacct:/docker/{ID}\n0::/docker/{ID}\n"
        );
        let found = locate(&text, ID, Path::new("/cg")).unwrap();
        assert_eq!(
            found,
            Cgroup::V1 {
                cpuacct: PathBuf::from(format!("/cg/cpuacct/docker/{ID}")),
                memory: PathBuf::from(format!("/cg/memory/docker/{ID}")),
                pids: PathBuf::from(format!("/cg/pids/docker/{ID}")),
            }
        );
    }

    #[test]
    fn a_unified_layout_is_one_directory_as_the_systemd_driver_names_it() {
        let text = format!("0::/system.slice/docker-{ID}.scope\n");
        assert_eq!(
            locate(&text, ID, Path::new("/cg")),
            Some(Cgroup::V2 {
                dir: PathBuf::from(format!("/cg/system.slice/docker-{ID}.scope"))
            })
        );
    }

    #[test]
    fn a_process_whose_cgroup_does_not_name_the_container_is_not_taken_for_it() {
        // A remote engine's pid can be some other process here; a cgroup namespace shows "/".
        assert_eq!(locate("0::/\n", ID, Path::new("/cg")), None);
        assert_eq!(
            locate(
                "0::/user.slice/session-1.scope\n4:memory:/user.slice\n",
                ID,
                Path::new("/cg")
            ),
            None
        );
    }

    #[test]
    fn cpu_is_the_share_of_one_cpu_over_the_window_and_memory_leaves_out_inactive_cache() {
        let at = |cpu_ns| Counters {
            cpu_ns,
            memory_used: 0,
            memory_limit: 0,
            pids: 0,
        };
        // 375 ms of CPU in 250 ms: one and a half CPUs.
        assert_eq!(
            cpu_percent(&at(1_000), &at(375_001_000), 250_000_000),
            150.0
        );
        assert_eq!(cpu_percent(&at(5), &at(5), 0), 0.0);
        let stat = "cache 10\ninactive_file 400\ntotal_inactive_file 1000\n";
        assert_eq!(stat_value(stat, "total_inactive_file"), Some(1000));
        assert_eq!(stat_value(stat, "inactive_file"), Some(400));
        assert_eq!(without_inactive(4096, Some(1000)), 3096);
        assert_eq!(without_inactive(500, Some(1000)), 500);
    }
}
