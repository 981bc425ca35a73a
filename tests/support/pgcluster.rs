//! A throwaway PostgreSQL 15 cluster for tests (DESIGN.md's recipe): `initdb` as the
//! `postgres` user (it refuses root) in a temporary directory, started on a free port on
//! 127.0.0.1 with its socket in that directory, stopped and removed when dropped.

use std::{
    path::Path,
    process::{Command, Stdio},
};

use super::POSTGRES_BIN;

pub struct PgCluster {
    dir: tempfile::TempDir,
    pub port: u16,
}

impl PgCluster {
    /// Creates and starts a cluster where user `postgres` has password `password` (md5 auth
    /// over TCP, so a wrong password is refused).
    pub fn start(password: &str) -> PgCluster {
        let dir = tempfile::Builder::new()
            .prefix("cutover-pg-")
            .tempdir()
            .unwrap();
        let port = super::free_port();
        let data = dir.path().join("data");
        run(Command::new("chown")
            .arg("postgres:postgres")
            .arg(dir.path()));
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, password).unwrap();
        run(Command::new("chown").arg("postgres:postgres").arg(&pwfile));
        run(as_postgres("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth-local=trust", "--auth-host=md5"])
            .arg(format!("--pwfile={}", pwfile.display())));
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            dir.path().display()
        );
        run(as_postgres("pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-w", "-l"])
            .arg(dir.path().join("log"))
            .args(["-o", &options, "start"]));
        PgCluster { dir, port }
    }

    pub fn url(&self, password: &str) -> String {
        format!(
            "postgres://postgres:{password}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    fn data(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = as_postgres("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn as_postgres(program: &str) -> Command {
    let mut command = Command::new("runuser");
    command
        .args(["-u", "postgres", "--"])
        .arg(Path::new(POSTGRES_BIN).join(program));
    command
}

fn run(command: &mut Command) {
    let output = command.output().expect("cannot run a PostgreSQL tool");
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
