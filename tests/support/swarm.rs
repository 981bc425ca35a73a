//! A real Docker Swarm of several machines on this one, for the swarm tests. Each node is a
//! network namespace (its own address on a switch of its own) and a UTS namespace (its own
//! hostname, which Swarm shows as the node's name), with its own Docker Engine: `dockerd`
//! started by `nsenter --net=… --uts=…` (not `ip netns exec`, which remounts /sys and hides the
//! cgroups), with a config file, data root, exec root, pid file and unix socket of its own and
//! the machine's storage driver. The first node initialises the swarm, the others join it as
//! workers; the images a test names are moved to every node by `docker save` / `docker load`.
//!
//! The switch is a bridge inside a namespace of its own, so the machine's firewall (Docker's
//! `FORWARD DROP`) never sees traffic between nodes; the machine reaches every node through one
//! more veth on that switch (address `.1`), as the proxy on an edge host would.
//!
//! Everything is stopped by PID and removed on drop, also when the test failed: each engine
//! (SIGTERM, then SIGKILL), whatever it left running (containerd, shims, fuse-overlayfs, the
//! containers: the processes naming the node's directory, and their children), the mounts under
//! the node's directory, the namespaces, the veths and the directories.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

/// The third octet of every swarm's `10.231.X.0/24` handed out in this process.
static SUBNETS: Mutex<BTreeSet<u8>> = Mutex::new(BTreeSet::new());

/// True when this machine can build a swarm: root, `ip`, `nsenter`, `unshare` and `dockerd`.
pub fn available() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    root && ["ip", "nsenter", "unshare", "dockerd"]
        .iter()
        .all(|tool| super::which(tool).is_some() || Path::new("/usr/sbin").join(tool).exists())
}

/// One machine of the swarm.
pub struct Node {
    /// Its hostname, which is the node's name in Swarm: `manager`, `worker-1`, …
    pub name: String,
    /// Its address, which the machine running the test reaches.
    pub addr: String,
    netns: String,
    uts: PathBuf,
    dir: PathBuf,
    /// The engine's PID, `None` once it was stopped or killed.
    pid: Option<u32>,
}

impl Node {
    /// `unix://…` for `DOCKER_HOST`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }

    /// Its network namespace's name (`ip netns`).
    pub fn netns_name(&self) -> &str {
        &self.netns
    }

    /// The engine's PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }
}

/// One swarm at a time in this process: three engines each (and their containerd) are what a
/// 2-core machine can start, heartbeat and stop within the tests' timeouts alongside the other
/// tests; two or three swarms at once made engines miss heartbeats and outlive their SIGKILL.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

pub struct Swarm {
    pub nodes: Vec<Node>,
    /// The machine's own address on the swarm's switch.
    pub gateway: String,
    switch: String,
    host_link: String,
    subnet: u8,
    dir: tempfile::TempDir,
    /// Held until the swarm is gone (dropped last, after `Drop::drop` stopped everything).
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl Swarm {
    /// A swarm of one manager and `workers` workers, every node Ready, with `images` (from the
    /// machine's engine) on every node.
    pub fn start(workers: usize, images: &[&str]) -> Swarm {
        // A test that failed holding the turn poisoned it; the swarm it had is gone all the same.
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let subnet = pick_subnet();
        let id = format!("{}{}", std::process::id() % 100_000, subnet);
        let dir = tempfile::Builder::new()
            .prefix("cutover-swarm-")
            .tempdir()
            .unwrap();
        let mut swarm = Swarm {
            nodes: Vec::new(),
            gateway: format!("10.231.{subnet}.1"),
            switch: format!("cutover-sw{id}"),
            host_link: format!("cs{id}h"),
            subnet,
            dir,
            _turn: turn,
        };
        swarm.build_switch();
        for n in 0..=workers {
            let name = if n == 0 {
                "manager".to_string()
            } else {
                format!("worker-{n}")
            };
            swarm.add_node(&id, n, name);
        }
        for n in 0..swarm.nodes.len() {
            swarm.start_engine(n);
        }
        // Built as an operator would: `cutover swarm init ADDR` on the manager, then `cutover
        // swarm join ENGINE ADDR` for each worker (so every swarm test runs both).
        let manager = swarm.nodes[0].addr.clone();
        let said = swarm.cutover(&["swarm", "init", &manager]);
        assert!(
            said.contains(&format!("a new swarm is initialised on {manager}")),
            "{said}"
        );
        for n in 1..swarm.nodes.len() {
            let (engine, addr) = (swarm.nodes[n].host(), swarm.nodes[n].addr.clone());
            let said = swarm.cutover(&["swarm", "join", &engine, &addr]);
            assert!(
                said.contains(&format!("({addr}) joined the swarm managed at {manager}")),
                "{said}"
            );
        }
        let expected = swarm.nodes.len();
        super::wait_for(
            Duration::from_secs(60),
            Duration::from_millis(200),
            || {
                format!(
                    "the swarm's nodes never all became ready:\n{}",
                    swarm.try_docker(0, &["node", "ls"]).unwrap_or_default()
                )
            },
            || {
                let ready = swarm
                    .try_docker(0, &["node", "ls", "--format", "{{.Status}}"])?
                    .lines()
                    .filter(|s| *s == "Ready")
                    .count();
                (ready == expected).then_some(())
            },
        );
        for image in images {
            swarm.load_image(image);
        }
        swarm
    }

    /// The manager: where cutover sends its requests (`DOCKER_HOST`).
    pub fn manager(&self) -> &Node {
        &self.nodes[0]
    }

    /// Makes `stack`'s environments run on this swarm (`CUTOVER_ORCHESTRATOR=swarm`, the
    /// manager as `CUTOVER_SWARM_HOST`); its proxy and database stay on this machine.
    pub fn drive(&self, stack: &super::stack::Stack) {
        stack.set("CUTOVER_ORCHESTRATOR", "swarm");
        stack.set("CUTOVER_SWARM_HOST", &self.manager().host());
    }

    /// The directory holding every node's engine.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// Puts `image` from the machine's engine on every node (`docker save` | `docker load`).
    pub fn load_image(&self, image: &str) {
        let archive = self.dir.path().join("image.tar");
        let saved = Command::new("docker")
            .args(["save", "-o"])
            .arg(&archive)
            .arg(image)
            .output()
            .expect("cannot run docker save");
        assert!(
            saved.status.success(),
            "docker save {image}: {}",
            String::from_utf8_lossy(&saved.stderr)
        );
        for node in &self.nodes {
            let loaded = Command::new("docker")
                .args(["-H", &node.host(), "load", "-q", "-i"])
                .arg(&archive)
                .output()
                .expect("cannot run docker load");
            assert!(
                loaded.status.success(),
                "docker load {image} on {}: {}",
                node.name,
                String::from_utf8_lossy(&loaded.stderr)
            );
        }
        let _ = std::fs::remove_file(archive);
    }

    /// `docker ARGS` against node `n`'s engine (test plumbing); its trimmed stdout. Panics
    /// when it fails.
    pub fn docker(&self, n: usize, args: &[&str]) -> String {
        let mut docker = Command::new("docker");
        docker.args(["-H", &self.nodes[n].host()]).args(args);
        stdout_of(
            docker,
            &format!("docker {args:?} on {}", self.nodes[n].name),
        )
    }

    /// `cutover ARGS` with the manager as the swarm's manager (`CUTOVER_SWARM_HOST`), its state
    /// in this swarm's directory; what it printed. Fails the test when the run fails.
    pub fn cutover(&self, args: &[&str]) -> String {
        let mut cutover = Command::new(crate::test::BIN);
        cutover
            .args(args)
            .env("CUTOVER_SWARM_HOST", self.nodes[0].host())
            .env("CUTOVER_STATE_DIR", self.dir.path().join("state"))
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        stdout_of(cutover, &format!("cutover {args:?}"))
    }

    /// `docker ARGS` against node `n`, `None` when it fails.
    pub fn try_docker(&self, n: usize, args: &[&str]) -> Option<String> {
        let output = Command::new("docker")
            .args(["-H", &self.nodes[n].host()])
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    /// Kills node `name`'s engine with SIGKILL, as a machine lost at once: its containers and
    /// their shims are left as they are (until the swarm is dropped).
    pub fn kill_engine(&mut self, name: &str) {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"));
        let pid = node.pid.take().expect("that engine is not running");
        // SAFETY: pid is the engine this swarm started.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        wait_gone(pid, Duration::from_secs(10));
    }

    /// A line per node as the manager sees it (`docker node ls`), for failure messages.
    pub fn describe(&self) -> String {
        self.try_docker(0, &["node", "ls"]).unwrap_or_default()
    }

    fn build_switch(&self) {
        ip(&["netns", "add", &self.switch]);
        in_netns(&self.switch, &["ip", "link", "set", "lo", "up"]);
        in_netns(
            &self.switch,
            &["ip", "link", "add", "br0", "type", "bridge"],
        );
        in_netns(&self.switch, &["ip", "link", "set", "br0", "up"]);
        ip(&[
            "link",
            "add",
            &self.host_link,
            "type",
            "veth",
            "peer",
            "name",
            "up0",
            "netns",
            &self.switch,
        ]);
        ip(&[
            "addr",
            "add",
            &format!("{}/24", self.gateway),
            "dev",
            &self.host_link,
        ]);
        ip(&["link", "set", &self.host_link, "up"]);
        in_netns(
            &self.switch,
            &["ip", "link", "set", "up0", "master", "br0", "up"],
        );
    }

    fn add_node(&mut self, id: &str, n: usize, name: String) {
        let netns = format!("{}-n{n}", self.switch);
        let dir = self.dir.path().join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let addr = format!("10.231.{}.{}", self.subnet, 11 + n);
        let uts = dir.join("uts");
        // Pushed before anything can fail, so drop removes what was made.
        self.nodes.push(Node {
            name: name.clone(),
            addr: addr.clone(),
            netns: netns.clone(),
            uts: uts.clone(),
            dir: dir.clone(),
            pid: None,
        });
        ip(&["netns", "add", &netns]);
        in_netns(&netns, &["ip", "link", "set", "lo", "up"]);
        let port = format!("p{n}");
        let link = format!("cs{id}n{n}");
        ip(&[
            "link",
            "add",
            &link,
            "netns",
            &netns,
            "type",
            "veth",
            "peer",
            "name",
            &port,
            "netns",
            &self.switch,
        ]);
        in_netns(&netns, &["ip", "link", "set", &link, "name", "eth0"]);
        in_netns(
            &netns,
            &["ip", "addr", "add", &format!("{addr}/24"), "dev", "eth0"],
        );
        in_netns(&netns, &["ip", "link", "set", "eth0", "up"]);
        in_netns(
            &netns,
            &["ip", "route", "add", "default", "via", &self.gateway],
        );
        in_netns(
            &self.switch,
            &["ip", "link", "set", &port, "master", "br0", "up"],
        );
        std::fs::write(&uts, "").unwrap();
        run(Command::new("unshare")
            .arg(format!("--uts={}", uts.display()))
            .args(["hostname", &name]));
    }

    fn start_engine(&mut self, n: usize) {
        let node = &self.nodes[n];
        let config = node.dir.join("daemon.json");
        std::fs::write(
            &config,
            r#"{"storage-driver": "fuse-overlayfs", "mtu": 1400, "log-driver": "json-file"}"#,
        )
        .unwrap();
        let log = std::fs::File::create(node.dir.join("dockerd.log")).unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", node.netns))
            .arg(format!("--uts={}", node.uts.display()))
            .arg("dockerd")
            .arg("--config-file")
            .arg(&config)
            .arg("--data-root")
            .arg(node.dir.join("data"))
            .arg("--exec-root")
            .arg(node.dir.join("exec"))
            .arg("--pidfile")
            .arg(node.dir.join("dockerd.pid"))
            .arg("-H")
            .arg(node.host())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot start dockerd");
        // nsenter execs dockerd (no fork without --target), so the child is the engine.
        let pid = child.id();
        std::mem::forget(child);
        self.nodes[n].pid = Some(pid);
        let node = &self.nodes[n];
        let deadline = Instant::now() + Duration::from_secs(60);
        while self
            .try_docker(n, &["version", "-f", "{{.Server.Version}}"])
            .is_none()
        {
            assert!(
                Instant::now() < deadline,
                "the engine of {} never answered:\n{}",
                node.name,
                std::fs::read_to_string(node.dir.join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(pid) = node.pid.take() {
                // SAFETY: pid is the engine this swarm started.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
                if !wait_gone(pid, Duration::from_secs(20)) {
                    // SAFETY: as above.
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                    wait_gone(pid, Duration::from_secs(30));
                }
            }
        }
        // What a killed engine left: the processes naming a node's directory (containerd,
        // shims, fuse-overlayfs) and everything below them (the containers).
        let root = self.dir.path().to_path_buf();
        let leftovers = processes_under(&root);
        for pid in &leftovers {
            // SAFETY: each pid is a process of this swarm's engines.
            unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
        }
        for pid in &leftovers {
            wait_gone(*pid, Duration::from_secs(5));
        }
        unmount_under(&root);
        for node in &self.nodes {
            let _ = Command::new("ip")
                .args(["netns", "delete", &node.netns])
                .output();
        }
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.switch])
            .output();
        let _ = Command::new("ip")
            .args(["link", "delete", &self.host_link])
            .stderr(Stdio::null())
            .output();
        SUBNETS.lock().unwrap().remove(&self.subnet);
    }
}

/// A `10.231.X.0/24` no interface of the machine holds and no other swarm of this process has.
fn pick_subnet() -> u8 {
    let used = Command::new("ip")
        .args(["-4", "-o", "addr"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mut taken = SUBNETS.lock().unwrap();
    let start = (std::process::id() % 200) as u8;
    for k in 0..200u8 {
        let x = 20 + (start.wrapping_add(k) % 200);
        if !taken.contains(&x) && !used.contains(&format!("10.231.{x}.")) {
            taken.insert(x);
            return x;
        }
    }
    panic!("no free 10.231.X.0/24 for a test swarm");
}

fn run(command: &mut Command) {
    let output = command.output().expect("cannot run a swarm set-up command");
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn ip(args: &[&str]) {
    run(Command::new("ip").args(args));
}

/// What `command` printed, trimmed; panics naming it (`what`) with its stderr when it fails.
fn stdout_of(mut command: Command, what: &str) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        output.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// `args` in namespace `netns` (network only: `nsenter --net`).
fn in_netns(netns: &str, args: &[&str]) {
    run(Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{netns}"))
        .args(args));
}

/// Waits until process `pid` is gone (reaping it when it is a child; a zombie has ended too);
/// true when it went.
pub fn wait_gone(pid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        // SAFETY: reaps only `pid`; harmless when it is no child of ours.
        unsafe { libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), libc::WNOHANG) };
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = state
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
        if zombie {
            // SAFETY: as above; a zombie child is reaped at once, another's is left alone.
            unsafe { libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), libc::WNOHANG) };
        }
        if state.is_empty() || zombie {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every process whose command line names `root`, and all their descendants, deepest first.
fn processes_under(root: &Path) -> Vec<u32> {
    let needle = root.to_string_lossy().into_owned();
    let mut parents: Vec<(u32, u32)> = Vec::new();
    let mut roots = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&needle) {
            roots.push(pid);
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        if let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
        {
            parents.push((pid, ppid));
        }
    }
    let mut found = roots.clone();
    let mut frontier = roots;
    while let Some(parent) = frontier.pop() {
        for (pid, ppid) in &parents {
            if *ppid == parent && !found.contains(pid) {
                found.push(*pid);
                frontier.push(*pid);
            }
        }
    }
    found.reverse();
    found
}

/// Unmounts (lazily) every mount under `root`, deepest first.
fn unmount_under(root: &Path) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|line| line.split_whitespace().nth(4))
        .filter(|point| Path::new(point).starts_with(root))
        .map(str::to_string)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let Ok(path) = std::ffi::CString::new(point) else {
            continue;
        };
        // SAFETY: a valid C string; MNT_DETACH never blocks on a busy mount.
        unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
    }
}
