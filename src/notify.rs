//! Webhook notifications: one JSON POST, Slack-compatible (`{"text": …}`), to a URL that asked to
//! be told when a run ends. Sending is bounded by a timeout and reported as a plain error; what
//! to send, to whom and when is decided by the caller (the Context, at the end of a run).

use std::time::Duration;

/// POSTs `body` to `url`, waiting at most `timeout`. A non-2xx answer is an error naming it.
pub async fn post(
    http: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
    timeout: Duration,
) -> Result<(), String> {
    send(http.post(url).json(body), timeout, "NOTIFY_TIMEOUT").await
}

/// Sends `request`, waiting at most `timeout` (the setting `timeout_setting` names, for the
/// message). A non-2xx answer is an error naming it; a failure, its innermost cause.
pub async fn send(
    request: reqwest::RequestBuilder,
    timeout: Duration,
    timeout_setting: &str,
) -> Result<(), String> {
    match request.timeout(timeout).send().await {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(format!("answered HTTP {}", response.status().as_u16())),
        Err(error) if error.is_timeout() => Err(format!(
            "no answer within {} s ({timeout_setting})",
            timeout.as_secs_f64()
        )),
        Err(error) => {
            let mut source: &dyn std::error::Error = &error;
            while let Some(inner) = source.source() {
                source = inner;
            }
            Err(source.to_string())
        }
    }
}
