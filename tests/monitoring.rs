//! Monitoring in the stack: the shipped Prometheus config (deploy/prometheus/) run by a real
//! Prometheus scrapes every environment's gateways (labelled environment and tag, from the
//! targets cutover writes), Caddy, and the Pushgateway cutover reports its runs to; after a
//! deploy and a failed deploy, PromQL answers the runs' outcomes. The alert rules pass
//! `promtool check rules` and their unit tests; the Grafana dashboard is JSON whose every query
//! runs on that Prometheus and names metrics it has.

use std::{path::Path, process::Command, time::Duration};

use serde_json::Value;

use crate::support::{
    self, Service,
    prometheus::{PrometheusProcess, PushgatewayProcess},
    stack::Stack,
};

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `GET url` (with the port in the Host header), the body as JSON.
fn get_json(url: &str) -> Value {
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "5", url])
        .output()
        .unwrap();
    serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
}

/// The result vector of PromQL `query`, as (labels, value) pairs.
fn query(prometheus: &str, promql: &str) -> Vec<(Value, f64)> {
    let url = format!("{prometheus}/api/v1/query?query={}", percent_encode(promql));
    let answer = get_json(&url);
    assert_eq!(answer["status"], "success", "{promql}: {answer}");
    answer["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|r| {
            let value = r["value"][1].as_str().unwrap_or("nan").parse().unwrap();
            (r["metric"].clone(), value)
        })
        .collect()
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Waits (up to 30 s) until `promql` answers exactly one series with `value`.
fn wait_value(prometheus: &str, promql: &str, value: f64) -> Value {
    let mut last = Vec::new();
    for _ in 0..120 {
        last = query(prometheus, promql);
        if let [(labels, v)] = last.as_slice()
            && *v == value
        {
            return labels.clone();
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("{promql} never answered {value}: {last:?}");
}

/// The shipped Prometheus config with a one-second scrape, written to `dir` (with the alert
/// rules beside it), reading the targets files cutover writes in `stack_prometheus` (the stack's
/// deploy/prometheus; `None`: beside the config, as shipped): the gateways, and Caddy's and the
/// Pushgateway's addresses — the stack's own ports, none of them the defaults, followed without
/// editing the config.
fn write_config(dir: &Path, stack_prometheus: Option<&Path>) {
    let shipped = workspace().join("deploy/prometheus");
    let config = std::fs::read_to_string(shipped.join("prometheus.yml"))
        .unwrap()
        .replace("15s", "1s");
    assert!(
        !config.contains("127.0.0.1:"),
        "prometheus.yml names no address: cutover writes them"
    );
    let config = match stack_prometheus {
        Some(at) => config
            .replace("\"targets/", &format!("\"{}/targets/", at.display()))
            .replace("\"services/", &format!("\"{}/services/", at.display())),
        None => config,
    };
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    std::fs::copy(shipped.join("alerts.yml"), dir.join("alerts.yml")).unwrap();
}

/// A Prometheus process on the shipped config, reading the targets `stack`'s runs wrote (the
/// Pushgateway among them, from `PUSHGATEWAY_URL`).
fn prometheus_for(stack: &Stack) -> PrometheusProcess {
    let dir = tempfile::Builder::new()
        .prefix("cutover-prometheus-")
        .tempdir()
        .unwrap();
    write_config(dir.path(), Some(&stack.path().join("deploy/prometheus")));
    PrometheusProcess::run_in(dir)
}

#[test]
fn prometheus_scrapes_gateways_caddy_and_cutovers_runs_and_answers_their_outcomes() {
    if !support::require_all(&[
        Service::Docker,
        Service::Caddy,
        Service::Postgres,
        Service::Prometheus,
        Service::Pushgateway,
    ]) {
        return;
    }
    let pushgateway = PushgatewayProcess::start();
    let stack = Stack::new("monitoring");
    stack.set("PUSHGATEWAY_URL", &pushgateway.url());
    stack.cutover(&["prepare", "blue", "v1"]).success();
    stack.cutover(&["promote", "blue"]).success();
    stack.cutover(&["prepare", "green", "v2"]).success();
    let process = prometheus_for(&stack);
    let prometheus = &process.url();

    // A deploy (green on v2 promoted), then one that fails (blue on a build that is not there).
    stack.cutover(&["deploy", "blue-only"]).success();
    stack
        .cutover(&["deploy", "blue-only"])
        .env("BLUE_TAG", "v9-missing")
        .status(1);
    assert_eq!(stack.version(), "v2", "the failed deploy moved nothing");

    wait_value(
        prometheus,
        r#"cutover_last_run_success{job="cutover",kind="deployment"}"#,
        0.0,
    );
    let outcome = wait_value(
        prometheus,
        r#"cutover_last_run_outcome{job="cutover",kind="deployment"}"#,
        1.0,
    );
    assert_eq!(outcome["outcome"], "failed");
    wait_value(
        prometheus,
        r#"cutover_last_run_success{job="cutover",kind="promotion"}"#,
        1.0,
    );
    wait_value(
        prometheus,
        r#"cutover_active_environment{job="cutover_stack",environment="green"}"#,
        1.0,
    );
    wait_value(
        prometheus,
        r#"cutover_canary_in_progress{job="cutover_stack"}"#,
        0.0,
    );
    let duration = query(
        prometheus,
        r#"cutover_last_run_duration_seconds{kind="deployment"}"#,
    );
    assert!(
        duration.len() == 1 && duration[0].1 > 0.0 && duration[0].1 < 120.0,
        "{duration:?}"
    );
    let promoted = query(
        prometheus,
        "time() - cutover_last_promotion_timestamp_seconds",
    );
    assert!(
        promoted.len() == 1 && promoted[0].1 >= 0.0 && promoted[0].1 < 300.0,
        "{promoted:?}"
    );

    // Every environment's gateway, with its environment and tag; Caddy.
    wait_value(
        prometheus,
        r#"up{job="gateway",environment="blue",tag="v1"}"#,
        1.0,
    );
    wait_value(
        prometheus,
        r#"up{job="gateway",environment="green",tag="v2"}"#,
        1.0,
    );
    wait_value(prometheus, r#"up{job="caddy"}"#, 1.0);

    // Traffic, so the dashboard's rates have something to say.
    let load = stack.load(Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(5));
    let report = load.stop();
    assert!(report.groups.iter().all(|g| g.failures() == 0));
    wait_value(
        prometheus,
        r#"sum(increase(demo_requests_total{job="gateway",environment="green"}[1m])) > bool 100"#,
        1.0,
    );

    let names = get_json(&format!("{prometheus}/api/v1/label/__name__/values"));
    let names: Vec<&str> = names["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace().join("deploy/prometheus/grafana/cutover.json"))
            .unwrap(),
    )
    .expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().expect("expr").to_string());
        }
    }
    assert!(exprs.len() >= 6, "{exprs:?}");
    for expr in &exprs {
        for metric in metric_names(expr) {
            assert!(
                names.contains(&metric.as_str()),
                "the dashboard's {expr:?} names {metric}, which Prometheus does not have"
            );
        }
        let promql = expr.replace("$__rate_interval", "1m");
        assert!(
            !query(prometheus, &promql).is_empty(),
            "the dashboard's {expr:?} answers nothing"
        );
    }
}

/// The metric names in a PromQL expression: identifiers directly before `{`.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (i, _) in expr.match_indices('{') {
        let start = expr[..i]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .map_or(0, |p| p + 1);
        if start < i {
            names.push(expr[start..i].to_string());
        }
    }
    names
}

#[test]
fn with_monitoring_on_the_stack_runs_its_own_prometheus_and_pushgateway_and_teardown_removes_them()
{
    if !support::require_all(&[
        Service::Docker,
        Service::Caddy,
        Service::Postgres,
        Service::Prometheus,
        Service::Pushgateway,
    ]) {
        return;
    }
    let stack = Stack::new("promstack");
    let (prometheus_port, pushgateway_port) = (support::free_port(), support::free_port());
    write_config(&stack.path().join("deploy/prometheus"), None);
    stack.set("MONITORING", "1");
    stack.set("PROMETHEUS_PORT", &prometheus_port.to_string());
    stack.set("PUSHGATEWAY_PORT", &pushgateway_port.to_string());
    stack.set(
        "PUSHGATEWAY_URL",
        &format!("http://127.0.0.1:{pushgateway_port}"),
    );
    stack.cutover(&["prepare", "blue", "v1"]).success();
    stack.cutover(&["promote", "blue"]).success();
    let prometheus = &format!("http://127.0.0.1:{prometheus_port}");
    wait_value(
        prometheus,
        r#"up{job="gateway",environment="blue",tag="v1"}"#,
        1.0,
    );
    wait_value(prometheus, r#"up{job="caddy"}"#, 1.0);
    wait_value(
        prometheus,
        r#"cutover_last_run_success{job="cutover",kind="promotion"}"#,
        1.0,
    );
    stack.cutover(&["teardown", "volumes", "--yes"]).success();
    let left = stack.docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=com.docker.compose.project={}", stack.name),
        "--format",
        "{{.Names}}",
    ]);
    assert_eq!(left.trim(), "", "teardown left containers");
}

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    if !support::require(Service::Prometheus) {
        return;
    }
    let dir = workspace().join("deploy/prometheus");
    for args in [
        vec!["check", "rules", "alerts.yml"],
        vec!["test", "rules", "alerts.test.yml"],
    ] {
        let output = Command::new("/usr/bin/promtool")
            .args(&args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
