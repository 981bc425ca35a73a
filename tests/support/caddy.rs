//! Real Caddy processes for tests and benches: each started on free ports (proxy and admin API)
//! in its own temporary directory (its HOME and XDG dirs too, so nothing is written to the
//! user's), with the config given, and killed when dropped. Also a tiny HTTP/1.1 client to poke
//! the admin API and the proxy from the test itself, without another dependency.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
    time::Duration,
};

use serde_json::{Value, json};

use super::KillOnDrop;

/// The Caddy binary: `caddy` on PATH, resolved through a pyenv shim to the real static binary
/// (a shim costs a shell start on every run and hides the process behind a wrapper).
pub fn binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let found = super::which("caddy").expect("caddy is not on PATH");
            if !found.to_string_lossy().contains("/shims/") {
                return found;
            }
            let output = Command::new("pyenv")
                .args(["which", "caddy"])
                .output()
                .expect("cannot run pyenv to resolve the caddy shim");
            PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
        })
        .clone()
}

/// A Caddy process; killed when dropped.
pub struct CaddyProcess {
    _child: KillOnDrop,
    /// `127.0.0.1:PORT` of the admin API.
    pub admin: String,
    dir: tempfile::TempDir,
}

impl CaddyProcess {
    /// Starts Caddy with `config` (its `admin` section is set here) and waits for the admin API.
    pub fn start(config: Value) -> CaddyProcess {
        Self::start_in(config, None)
    }

    /// Like [`CaddyProcess::start`], with Caddy's working directory at `cwd` (relative
    /// `{file.…}` paths resolve there).
    pub fn start_in(mut config: Value, cwd: Option<&Path>) -> CaddyProcess {
        let dir = tempfile::Builder::new()
            .prefix("cutover-caddy-")
            .tempdir()
            .unwrap();
        let admin = format!("127.0.0.1:{}", super::free_port());
        config["admin"] = json!({"listen": admin, "config": {"persist": false}});
        let path = dir.path().join("caddy.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let log = std::fs::File::create(dir.path().join("caddy.log")).unwrap();
        let child = Command::new(binary())
            .arg("run")
            .arg("--config")
            .arg(&path)
            .current_dir(cwd.unwrap_or(dir.path()))
            .env("HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path().join("data"))
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cannot start caddy");
        let caddy = CaddyProcess {
            _child: KillOnDrop(child),
            admin,
            dir,
        };
        super::wait_for(
            Duration::from_secs(10),
            Duration::from_millis(20),
            || {
                format!(
                    "caddy never answered on its admin API; its log:\n{}",
                    caddy.log()
                )
            },
            || caddy.try_request("GET", "/config/", None, &[]).ok(),
        );
        caddy
    }

    /// `http://127.0.0.1:PORT`, for `CADDY_ADMIN`.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("caddy.log")).unwrap_or_default()
    }

    /// One admin API request; panics if the admin API cannot be reached.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Response {
        self.try_request(method, path, body, headers)
            .unwrap_or_else(|e| panic!("caddy admin {method} {path}: {e}"))
    }

    fn try_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> std::io::Result<Response> {
        let body = body.map(|b| serde_json::to_vec(b).unwrap());
        let mut extra: Vec<(&str, &str)> = headers.to_vec();
        if body.is_some() {
            extra.push(("content-type", "application/json"));
        }
        http(&self.admin, method, path, body.as_deref(), &extra)
    }

    /// The running config.
    pub fn config(&self) -> Value {
        let response = self.request("GET", "/config/", None, &[]);
        assert_eq!(response.status, 200, "{}", response.body);
        serde_json::from_str(&response.body).unwrap()
    }
}

/// An HTTP response as the tests need it.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request on a fresh connection (`connection: close`), read to the end.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!(
        "content-length: {}\r\n\r\n",
        body.map_or(0, <[u8]>::len)
    ));
    stream.write_all(request.as_bytes())?;
    if let Some(body) = body {
        stream.write_all(body)?;
    }
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no HTTP response: {text:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    Ok(Response {
        status,
        headers,
        body: if chunked {
            dechunk(body)
        } else {
            body.to_string()
        },
    })
}

/// The body of a `transfer-encoding: chunked` response (Caddy sends a large config so).
fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16);
        match size {
            Ok(size) if size > 0 && after.len() >= size => {
                body.push_str(&after[..size]);
                rest = after[size..].trim_start_matches("\r\n");
            }
            _ => break,
        }
    }
    body
}

/// GET through the proxy: the body (the demo service's version on `/version`).
pub fn get_body(addr: &str, path: &str) -> String {
    let response = http(addr, "GET", path, None, &[]).expect("proxy request failed");
    assert_eq!(response.status, 200, "GET {path} via {addr}: {response:?}");
    response.body
}

/// A Caddy config with one plain-HTTP server on `port` holding `routes` in order, with a
/// grace period so requests in flight at a reload finish on the old servers.
pub fn proxy_config(port: u16, routes: Vec<Value>) -> Value {
    json!({"apps": {"http": {
        "grace_period": "10s",
        "servers": {"main": {
            "listen": [format!("127.0.0.1:{port}")],
            "automatic_https": {"disable": true},
            "routes": routes,
        }},
    }}})
}

/// A route with `@id` `id` proxying to `dial`, for requests under `prefix` (all when `None`).
pub fn proxy_route(id: &str, prefix: Option<&str>, dial: &str) -> Value {
    proxy_route_to(id, prefix, &[dial.to_string()])
}

/// [`proxy_route`] with several upstreams, e.g. the dials of slot files.
pub fn proxy_route_to(id: &str, prefix: Option<&str>, dials: &[String]) -> Value {
    let upstreams: Vec<Value> = dials.iter().map(|d| json!({"dial": d})).collect();
    let mut route = json!({
        "@id": id,
        "handle": [{"handler": "reverse_proxy", "upstreams": upstreams}],
        "terminal": true,
    });
    if let Some(prefix) = prefix {
        route["match"] = json!([{"path": [format!("{prefix}*")]}]);
    }
    route
}

/// The dial of a route that follows the address in `file`.
pub fn file_dial(file: &Path) -> String {
    format!("{{file.{}}}", file.display())
}

/// `count` slot files in `dir` named as the shipped config names them (`NAME`, `NAME.2`, …),
/// each holding `addr`.
pub fn slot_files(dir: &Path, name: &str, count: usize, addr: &str) -> Vec<PathBuf> {
    (1..=count)
        .map(|n| {
            let file = match n {
                1 => dir.join(name),
                n => dir.join(format!("{name}.{n}")),
            };
            std::fs::write(&file, addr).unwrap();
            file
        })
        .collect()
}
