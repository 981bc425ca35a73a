//! PostgreSQL in a container for tests. No registry is reachable here, so the image is built
//! locally from the machine's own PostgreSQL 15: `FROM scratch` with /usr/lib/postgresql/15,
//! /usr/share/postgresql/15, the shared libraries `ldd` lists, a shell, a passwd file and an
//! entrypoint that runs initdb on first start (trust on the socket, scram-sha-256 over TCP with
//! `POSTGRES_PASSWORD`). Built once per machine: the tag carries a hash of the recipe.

#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
    time::Duration,
};

use super::{
    POSTGRES_BIN as BIN,
    postgres::{PSQL_ARGS, Psql, run},
};

/// The locally built PostgreSQL image, built on first use (once per machine: its tag carries a
/// hash of the recipe).
pub fn image() -> String {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(build_image).clone()
}

const ENTRYPOINT: &str = r#"set -e
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  printf '%s\n' "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}" | initdb -D "$PGDATA" -U postgres \
    --locale=C --encoding=UTF8 --auth-local=trust --auth-host=scram-sha-256 --pwfile=/dev/stdin >/dev/null
  printf 'host all all all scram-sha-256\n' >> "$PGDATA/pg_hba.conf"
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
"#;

const DOCKERFILE: &str = "FROM scratch
COPY rootfs/ /
COPY --chown=999:999 owned/ /
ENV PATH=/usr/lib/postgresql/15/bin:/bin PGDATA=/var/lib/postgresql/data TZ=UTC
USER postgres
STOPSIGNAL SIGINT
ENTRYPOINT [\"/bin/sh\", \"/entrypoint.sh\"]
";

fn build_image() -> String {
    let recipe = format!(
        "{ENTRYPOINT}{DOCKERFILE}{}",
        run(Command::new(Path::new(BIN).join("postgres")).arg("--version"))
    );
    let tag = format!("cutover-test-postgres:15-{:016x}", fnv(recipe.as_bytes()));
    let exists = Command::new("docker")
        .args(["image", "inspect", &tag])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    if exists {
        return tag;
    }
    let context = tempfile::tempdir().unwrap();
    let root = context.path().join("rootfs");
    let owned = context.path().join("owned");
    for dir in ["var/lib/postgresql", "var/run/postgresql"] {
        std::fs::create_dir_all(owned.join(dir)).unwrap();
    }
    for dir in [
        "etc",
        "bin",
        "tmp",
        "usr/lib/postgresql",
        "usr/share/postgresql",
        "usr/share/zoneinfo/Etc",
    ] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    run(Command::new("chmod").arg("1777").arg(root.join("tmp")));
    run(Command::new("cp")
        .args(["-a", "/usr/lib/postgresql/15"])
        .arg(root.join("usr/lib/postgresql")));
    run(Command::new("cp")
        .args(["-a", "/usr/share/postgresql/15"])
        .arg(root.join("usr/share/postgresql")));
    // JIT pulls in LLVM (100+ MB) and is off unless asked for.
    let lib = root.join("usr/lib/postgresql/15/lib");
    for entry in std::fs::read_dir(&lib).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("llvmjit") || name == "bitcode" {
            run(Command::new("rm").arg("-rf").arg(entry.path()));
        }
    }
    for zone in ["UTC", "GMT", "Etc/UTC"] {
        run(Command::new("cp")
            .arg("-L")
            .arg(Path::new("/usr/share/zoneinfo").join(zone))
            .arg(root.join("usr/share/zoneinfo").join(zone)));
    }
    run(Command::new("cp")
        .arg("-L")
        .arg("/bin/sh")
        .arg(root.join("bin/sh")));
    let mut binaries: Vec<PathBuf> = vec![root.join("bin/sh")];
    for dir in ["usr/lib/postgresql/15/bin", "usr/lib/postgresql/15/lib"] {
        binaries.extend(
            std::fs::read_dir(root.join(dir))
                .unwrap()
                .flatten()
                .map(|e| e.path()),
        );
    }
    let mut libraries = std::collections::BTreeSet::new();
    for binary in binaries {
        let Ok(output) = Command::new("ldd").arg(&binary).output() else {
            continue;
        };
        for word in String::from_utf8_lossy(&output.stdout).split_whitespace() {
            if word.starts_with('/') {
                libraries.insert(word.to_string());
            }
        }
    }
    for library in libraries {
        let dest = root.join(library.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        run(Command::new("cp").arg("-L").arg(&library).arg(&dest));
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\npostgres:x:999:999:PostgreSQL:/var/lib/postgresql:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\npostgres:x:999:\n").unwrap();
    std::fs::write(root.join("entrypoint.sh"), ENTRYPOINT).unwrap();
    std::fs::write(context.path().join("Dockerfile"), DOCKERFILE).unwrap();
    run(Command::new("docker")
        .args(["build", "-q", "-t", &tag])
        .arg(context.path()));
    tag
}

/// FNV-1a, to name the image after its recipe.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

/// PostgreSQL running in a container of [`image`]; removed when dropped.
pub struct PgContainer {
    pub name: String,
    pub password: String,
}

impl PgContainer {
    pub fn start() -> PgContainer {
        let name = super::unique_name("cutover-test-pg");
        let password = format!("container-secret-{}", std::process::id());
        run(Command::new("docker").args([
            "run",
            "-d",
            "--name",
            &name,
            "--label",
            "cutover-test=pg",
            "-e",
            &format!("POSTGRES_PASSWORD={password}"),
            &image(),
        ]));
        let container = PgContainer { name, password };
        super::wait_for(
            Duration::from_secs(60),
            Duration::from_millis(200),
            || format!("PostgreSQL in {} never became ready", container.name),
            || {
                Command::new("docker")
                    .args([
                        "exec",
                        &container.name,
                        "pg_isready",
                        "-q",
                        "-U",
                        "postgres",
                    ])
                    .status()
                    .unwrap()
                    .success()
                    .then_some(())
            },
        );
        container
    }
}

impl Psql for PgContainer {
    fn psql(&self, db: &str, sql: &str) -> String {
        run(Command::new("docker")
            .args(["exec", &self.name, "psql"])
            .args(PSQL_ARGS)
            .args(["-d", db, "-c", sql]))
    }
}

impl Drop for PgContainer {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
