//! The stack by hostname over HTTPS (`DOMAIN`, `TLS_ISSUER=internal`): every host answers its
//! environment through Caddy with a certificate from Caddy's own CA (trusted here as a user
//! would, from the admin API), HTTP is redirected, and promote and rollback switch the slot
//! files under HTTP/1.1 and HTTP/2 keep-alive load without failing a request.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use crate::support::{self, Service, stack::Stack};

const DOMAIN: &str = "cutover.test";

/// A client that resolves every host of the stack to 127.0.0.1 (curl's `--resolve`), trusts only
/// `root` (Caddy's CA), and speaks HTTP/2 when `h2`, else HTTP/1.1 only.
fn client(root: &reqwest::Certificate, ports: &[u16], h2: bool) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .tls_certs_only([root.clone()])
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10));
    for host in ["app", "staging.app", "blue.internal", "green.internal"] {
        for port in ports {
            builder = builder.resolve(
                &format!("{host}.{DOMAIN}"),
                SocketAddr::from(([127, 0, 0, 1], *port)),
            );
        }
    }
    builder = if h2 {
        builder.http2_prior_knowledge()
    } else {
        builder.http1_only()
    };
    builder.build().unwrap()
}

/// What each protocol's clients saw: (protocol, version answered) counts, and every failure.
#[derive(Default, Debug)]
struct Seen {
    answers: std::collections::BTreeMap<(String, String), u64>,
    failures: Vec<String>,
}

#[test]
fn https_by_hostname_serves_every_environment_and_switches_under_http1_and_http2_load() {
    for service in [Service::Docker, Service::Caddy, Service::Postgres] {
        if !support::require(service) {
            return;
        }
    }
    let stack = Stack::new("https");
    let (https_port, http_port) = (support::free_port(), support::free_port());
    stack.set("DOMAIN", DOMAIN);
    stack.set("TLS_ISSUER", "internal");
    stack.set("HTTPS_PORT", &https_port.to_string());
    stack.set("HTTP_PORT", &http_port.to_string());
    stack.cutover(&["prepare", "blue", "v1"]).success();
    stack.cutover(&["promote", "blue"]).success();
    stack.cutover(&["prepare", "green", "v2"]).success();
    stack.cutover(&["prepare", "staging", "v2-slow"]).success();

    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // As a user would: `curl http://127.0.0.1:2019/pki/ca/local` (the admin API wants the port
    // in the Host header).
    let url = format!("http://127.0.0.1:{}/pki/ca/local", stack.ports.admin);
    let answer =
        runtime.block_on(async { reqwest::get(&url).await.unwrap().text().await.unwrap() });
    let ca: serde_json::Value = serde_json::from_str(&answer).unwrap_or_default();
    let Some(pem) = ca["root_certificate"].as_str() else {
        panic!("Caddy's admin API names no root: {answer}")
    };
    let root = reqwest::Certificate::from_pem(pem.as_bytes()).unwrap();
    let plain = client(&root, &[https_port, http_port], false);

    runtime.block_on(async {
        for (host, want) in [
            ("app", "v1"),
            ("staging.app", "v2-slow"),
            ("blue.internal", "v1"),
            ("green.internal", "v2"),
        ] {
            let url = format!("https://{host}.{DOMAIN}:{https_port}/version");
            let response = plain.get(&url).send().await.unwrap();
            assert_eq!(response.status(), 200, "{url}");
            assert_eq!(response.text().await.unwrap(), want, "{url}");
        }
        let response = plain
            .get(format!("http://app.{DOMAIN}:{http_port}/some/path?q=1"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 308);
        assert_eq!(
            response.headers()["location"],
            format!("https://app.{DOMAIN}/some/path?q=1")
        );
    });
    // The loopback port stays for cutover's own checks, and serves the same slots.
    assert_eq!(stack.version(), "v1");

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let load = {
        let (stop, seen) = (Arc::clone(&stop), Arc::clone(&seen));
        let clients = [
            ("HTTP/1.1", client(&root, &[https_port], false)),
            ("HTTP/2", client(&root, &[https_port], true)),
        ];
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async {
                let mut tasks = Vec::new();
                for (protocol, client) in clients {
                    // Four keep-alive loops a protocol: over HTTP/2 they share one connection.
                    for _ in 0..4 {
                        let (client, stop, seen) =
                            (client.clone(), Arc::clone(&stop), Arc::clone(&seen));
                        tasks.push(tokio::spawn(async move {
                            let url = format!("https://app.{DOMAIN}:{https_port}/");
                            while !stop.load(Ordering::Relaxed) {
                                let outcome = match client.get(&url).send().await {
                                    Ok(r) if r.status().is_success() => {
                                        let version = format!("{:?}", r.version());
                                        let body = r.text().await.unwrap_or_default();
                                        Ok((version, body.trim().to_string()))
                                    }
                                    Ok(r) => Err(format!("{protocol}: HTTP {}", r.status())),
                                    Err(e) => Err(format!("{protocol}: {e:?}")),
                                };
                                {
                                    let mut seen = seen.lock().unwrap();
                                    match outcome {
                                        Ok((version, body)) => {
                                            *seen.answers.entry((version, body)).or_default() += 1;
                                        }
                                        Err(failure) => seen.failures.push(failure),
                                    }
                                }
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }));
                    }
                }
                for task in tasks {
                    task.await.unwrap();
                }
            });
        })
    };
    std::thread::sleep(Duration::from_millis(700));
    stack
        .cutover(&["promote", "green"])
        .stdout_contains("green")
        .success();
    std::thread::sleep(Duration::from_millis(700));
    stack.cutover(&["rollback", "--yes"]).success();
    std::thread::sleep(Duration::from_millis(700));
    stack.cutover(&["promote", "green"]).success();
    std::thread::sleep(Duration::from_millis(700));
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();

    let seen = seen.lock().unwrap();
    assert!(seen.failures.is_empty(), "failed requests: {seen:?}");
    for version in ["HTTP/1.1", "HTTP/2.0"] {
        for body in ["api-gateway v1", "api-gateway v2"] {
            let n = seen
                .answers
                .get(&(version.to_string(), body.to_string()))
                .copied()
                .unwrap_or(0);
            assert!(n > 0, "no {version} request got {body:?}: {seen:?}");
        }
    }
    runtime.block_on(async {
        let url = format!("https://app.{DOMAIN}:{https_port}/version");
        assert_eq!(
            plain.get(&url).send().await.unwrap().text().await.unwrap(),
            "v2"
        );
    });
}
