//! `http::get` / `http::post`: webhooks and APIs from a runbook (announce a deploy in chat, ask
//! a feature-flag service). JSON in and out, headers, a timeout; one pooled client for the
//! process. A non-2xx status is returned, not thrown, so a runbook decides what it means. A post
//! is a change: refused in a readonly runbook, described in a dry run, journaled. Credentials in
//! a URL or an `Authorization` header are registered as secrets before anything is logged.

use std::{sync::Arc, time::Duration, time::Instant};

use rhai::{Dynamic, Map, Module};

use super::{
    HostResult,
    convert::{from_json, to_json},
    fail, fail_masked, function,
    options::{OptionKeys, Options},
};
use crate::{context::Context, redact::is_secret_name};

/// The timeout when the options name none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response body read; a bigger one is an error, not a memory spike.
const MAX_BODY: usize = 16 << 20;

/// The option keys of the host functions of this module.
pub(super) const OPTION_KEYS: &[&OptionKeys] = &[&GET, &POST];

/// The options of every request.
const REQUEST_KEYS: [&str; 2] = ["headers", "timeout"];
const GET: OptionKeys = OptionKeys::new("http::get", &[&REQUEST_KEYS]);
const POST: OptionKeys = OptionKeys::new("http::post", &[&REQUEST_KEYS]);

pub fn module(context: &Arc<Context>) -> Module {
    let mut module = Module::new();
    function!(&mut module,
        /// GETs `url`. Returns `#{status, body, json, headers, ms}`: `json` is the body parsed
        /// as JSON, or `()` when it is not JSON. Times out after 30 s.
        ///
        /// ```rhai
        /// let r = http::get("http://127.0.0.1:8080/version");
        /// print(`status ${r.status}: ${r.body}`);
        /// ```
        fn get[context](call, url: &str) -> Map {
            let request = Request::new(&context, reqwest::Method::GET, url, Map::new())?;
            request.send(&context)
        }
    );
    function!(&mut module,
        /// GETs `url` with options: `headers` (a map), `timeout` (ms).
        ///
        /// ```rhai
        /// let r = http::get("https://api.example.com/flags",
        ///                   #{ headers: #{ Authorization: `Bearer ${secret::get("API_TOKEN")}` }, timeout: 5000 });
        /// if r.status == 200 { print(r.json.rollout); }
        /// ```
        fn get[context](call, url: &str, options: Map) -> Map {
            let request = Request::new(&context, reqwest::Method::GET, url, options)?;
            request.send(&context)
        }
    );
    function!(&mut module,
        /// POSTs `body` to `url`: a map or array is sent as JSON, a string as text, `()` as an
        /// empty body. Returns `#{status, body, json, headers, ms}`. A dry run only says what it
        /// would post. The body is sent as given, secrets and all (an API may need a token in
        /// it); only what cutover logs of it is masked. Text for people — a chat message, a
        /// webhook — goes through `secret::mask` first.
        ///
        /// ```rhai
        /// http::post(env::get("CHAT_WEBHOOK"), #{ text: secret::mask(`green is live: ${report}`) });
        /// ```
        fn post[context](call, url: &str, body: Dynamic) -> Map {
            let request = Request::new(&context, reqwest::Method::POST, url, Map::new())?.body(body)?;
            request.send_change(&context)
        }
    );
    function!(&mut module,
        /// POSTs `body` to `url` with options: `headers` (a map), `timeout` (ms).
        ///
        /// ```rhai
        /// http::post("https://hooks.example.com/deploys", #{ env: "green", tag: "v1.4.2" },
        ///            #{ headers: #{ "X-Api-Key": secret::get("HOOK_KEY") }, timeout: 5000 });
        /// ```
        fn post[context](call, url: &str, body: Dynamic, options: Map) -> Map {
            let request = Request::new(&context, reqwest::Method::POST, url, options)?.body(body)?;
            request.send_change(&context)
        }
    );
    module
}

struct Request {
    method: reqwest::Method,
    url: reqwest::Url,
    headers: Vec<(String, String)>,
    body: Option<(Vec<u8>, &'static str)>,
    timeout: Duration,
}

impl Request {
    /// Reads the URL and options, registering any credentials they carry as secrets.
    fn new(
        context: &Context,
        method: reqwest::Method,
        url: &str,
        options: Map,
    ) -> HostResult<Request> {
        let known = match method {
            reqwest::Method::POST => &POST,
            _ => &GET,
        };
        let call = known.function;
        // Before anything could show the URL, an error included.
        context.secrets.add_url(url);
        let parsed = reqwest::Url::parse(url).map_err(|e| {
            fail_masked(context, format!("{call}: {url:?} is not a valid URL: {e}"))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(fail_masked(
                context,
                format!("{call}: {url:?} is not an http or https URL"),
            ));
        }
        if let Some(password) = parsed.password() {
            context.secrets.add(password);
        }
        let options = Options::new(known, options)?;
        let mut headers = Vec::new();
        for (name, value) in options.map("headers")?.unwrap_or_default() {
            let value = value.to_string();
            let lower = name.to_ascii_lowercase();
            if is_secret_name(&name)
                || matches!(
                    lower.as_str(),
                    "authorization" | "proxy-authorization" | "cookie"
                )
            {
                for credential in crate::redact::authorization_credentials(&value) {
                    context.secrets.add(&credential);
                }
            }
            headers.push((name.to_string(), value));
        }
        Ok(Request {
            method,
            url: parsed,
            headers,
            body: None,
            timeout: options
                .positive_millis("timeout")?
                .unwrap_or(DEFAULT_TIMEOUT),
        })
    }

    fn body(mut self, body: Dynamic) -> HostResult<Request> {
        self.body = if body.is_unit() {
            None
        } else if body.is_string() {
            Some((body.to_string().into_bytes(), "text/plain; charset=utf-8"))
        } else {
            let json = serde_json::to_vec(&to_json(&body)?).map_err(fail)?;
            Some((json, "application/json"))
        };
        Ok(self)
    }

    fn send_change(self, context: &Context) -> HostResult<Map> {
        let size = self.body.as_ref().map_or(0, |b| b.0.len());
        let detail = format!(
            "{} ({size} byte{})",
            self.url,
            if size == 1 { "" } else { "s" }
        );
        context.change("http::post", &detail, dry_response, || self.send(context))
    }

    fn send(self, context: &Context) -> HostResult<Map> {
        let call = format!(
            "http::{} {}",
            self.method.as_str().to_ascii_lowercase(),
            self.url
        );
        let timeout_ms = self.timeout.as_millis();
        let mut builder = context
            .http()
            .request(self.method.clone(), self.url.clone())
            .timeout(self.timeout);
        let has_content_type = self
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"));
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        if let Some((bytes, content_type)) = self.body {
            if !has_content_type {
                builder = builder.header(reqwest::header::CONTENT_TYPE, content_type);
            }
            builder = builder.body(bytes);
        }
        let started = Instant::now();
        let exchange = async {
            let mut response = builder.send().await?;
            let status = response.status().as_u16();
            let headers: Map = response
                .headers()
                .iter()
                .map(|(name, value)| {
                    (
                        name.as_str().into(),
                        String::from_utf8_lossy(value.as_bytes())
                            .into_owned()
                            .into(),
                    )
                })
                .collect();
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                if body.len() + chunk.len() > MAX_BODY {
                    return Ok(Err(format!(
                        "the response is larger than {} MiB",
                        MAX_BODY >> 20
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Ok::<_, reqwest::Error>(Ok((status, headers, body)))
        };
        let (status, headers, body) = match context.block_on(exchange)? {
            Ok(Ok(answer)) => answer,
            Ok(Err(message)) => return Err(fail(format!("{call}: {message}"))),
            Err(error) if error.is_timeout() => {
                return Err(fail(format!("{call}: no answer within {timeout_ms} ms")));
            }
            Err(error) => return Err(fail(format!("{call}: {}", describe(&error.without_url())))),
        };
        let ms = started.elapsed().as_millis() as i64;
        let body = String::from_utf8_lossy(&body).into_owned();
        tracing::debug!("{call} -> {status} ({ms} ms, {} bytes)", body.len());
        tracing::trace!("{call} body: {body}");
        let json = match serde_json::from_str::<serde_json::Value>(&body) {
            Ok(value) => from_json(&value)?,
            Err(_) => Dynamic::UNIT,
        };
        let mut map = Map::new();
        map.insert("status".into(), Dynamic::from(status as i64));
        map.insert("body".into(), body.into());
        map.insert("json".into(), json);
        map.insert("headers".into(), headers.into());
        map.insert("ms".into(), Dynamic::from(ms));
        Ok(map)
    }
}

/// An error with its causes, which reqwest keeps in the source chain ("connection refused").
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn dry_response() -> Map {
    let mut map = Map::new();
    map.insert("status".into(), Dynamic::from(200_i64));
    map.insert("body".into(), "".into());
    map.insert("json".into(), Dynamic::UNIT);
    map.insert("headers".into(), Map::new().into());
    map.insert("ms".into(), Dynamic::from(0_i64));
    map
}
