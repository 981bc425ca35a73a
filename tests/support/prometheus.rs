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
/// Where Debian's `prometheus-pushgateway` installs it.
pub const PUSHGATEWAY_BIN: &str = "/usr/bin/prometheus-pushgateway";

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
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        PrometheusProcess::run_in(dir)
    }

    /// A server running `dir/prometheus.yml` (its rule files beside it).
    pub fn run_in(dir: tempfile::TempDir) -> PrometheusProcess {
        let config_path = dir.path().join("prometheus.yml");
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

/// A Pushgateway (Debian's package) on a port of its own, killed when dropped.
pub struct PushgatewayProcess {
    _process: KillOnDrop,
    pub port: u16,
}

impl PushgatewayProcess {
    pub fn start() -> PushgatewayProcess {
        let port = super::free_port();
        let child = Command::new(PUSHGATEWAY_BIN)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start prometheus-pushgateway");
        let process = KillOnDrop(child);
        super::wait_listening(port, Duration::from_secs(30), "pushgateway");
        PushgatewayProcess {
            _process: process,
            port,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
