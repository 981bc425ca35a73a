//! A real Prometheus server (Debian's `prometheus` package) for the tests: it scrapes the
//! targets it is given every second, each labelled with its environment, and answers on a port
//! of its own. Killed when dropped.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use super::KillOnDrop;

/// Where Debian's package installs the server.
pub const PROMETHEUS_BIN: &str = "/usr/bin/prometheus";

pub struct PrometheusProcess {
    _process: KillOnDrop,
    _dir: tempfile::TempDir,
    pub port: u16,
}

impl PrometheusProcess {
    /// A server scraping `/metrics` of each `(environment, addresses)` every second.
    pub fn start(targets: &[(&str, Vec<String>)]) -> PrometheusProcess {
        let dir = tempfile::Builder::new()
            .prefix("cutover-prometheus-")
            .tempdir()
            .unwrap();
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: demo\n    static_configs:\n",
        );
        for (env, addrs) in targets {
            let list: Vec<String> = addrs.iter().map(|a| format!("'{a}'")).collect();
            config.push_str(&format!(
                "      - targets: [{}]\n        labels: {{environment: '{env}'}}\n",
                list.join(", ")
            ));
        }
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let port = super::free_port();
        let child = Command::new(PROMETHEUS_BIN)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start prometheus");
        let process = KillOnDrop(child);
        super::wait_listening(port, Duration::from_secs(30), "prometheus");
        PrometheusProcess {
            _process: process,
            _dir: dir,
            port,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
