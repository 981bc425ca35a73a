//! Instant queries against a Prometheus server's HTTP API (`GET /api/v1/query`): the samples of
//! a PromQL expression now, each with its labels. A scalar answer is one sample without labels.

use std::{collections::BTreeMap, time::Duration};

use serde::Deserialize;

use super::MetricsError;

/// One sample of the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    /// `NaN` when Prometheus says so (a rate over no requests, say).
    pub value: f64,
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    data: Option<Data>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data {
    Vector(Vec<VectorSample>),
    Scalar((f64, String)),
    // A range query's or a string's answer: refused, so what it holds is never read.
    Matrix(#[allow(dead_code)] serde::de::IgnoredAny),
    String(#[allow(dead_code)] serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct VectorSample {
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

/// The samples `promql` evaluates to now at the server `url` (`http://127.0.0.1:9090`).
pub async fn query(
    http: &reqwest::Client,
    url: &str,
    promql: &str,
    timeout: Duration,
) -> Result<Vec<Sample>, MetricsError> {
    let failed = |reason: String| MetricsError::Prometheus {
        url: url.to_string(),
        reason,
    };
    let endpoint = format!("{}/api/v1/query", url.trim_end_matches('/'));
    let response = http
        .get(&endpoint)
        .query(&[("query", promql)])
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| failed(format!("cannot query: {}", without_url(&e))))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| failed(format!("cannot read the answer: {}", without_url(&e))))?;
    let answer: Answer = serde_json::from_str(&text).map_err(|_| {
        failed(format!(
            "answered {status} with no query result: {}",
            text.chars().take(200).collect::<String>()
        ))
    })?;
    if answer.status != "success" {
        return Err(failed(format!(
            "refused the query `{promql}`: {}",
            answer.error.unwrap_or(answer.status)
        )));
    }
    let number = |text: &str| text.parse::<f64>().unwrap_or(f64::NAN);
    match answer.data {
        Some(Data::Vector(samples)) => Ok(samples
            .into_iter()
            .map(|s| Sample {
                labels: s.metric,
                value: number(&s.value.1),
            })
            .collect()),
        Some(Data::Scalar((_, value))) => Ok(vec![Sample {
            labels: BTreeMap::new(),
            value: number(&value),
        }]),
        Some(Data::Matrix(_) | Data::String(_)) | None => Err(failed(format!(
            "`{promql}` is not an instant vector or a scalar"
        ))),
    }
}

/// reqwest's error text without the URL it repeats (the caller names the server once).
fn without_url(error: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = error;
    while let Some(inner) = source.source() {
        source = inner;
    }
    source.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_and_scalar_answers_parse() {
        let vector: Answer = serde_json::from_str(
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"version":"v2"},"value":[1.5,"0.25"]}]}}"#,
        )
        .unwrap();
        assert!(matches!(vector.data, Some(Data::Vector(ref s)) if s[0].value.1 == "0.25"));
        let scalar: Answer = serde_json::from_str(
            r#"{"status":"success","data":{"resultType":"scalar","result":[1.5,"NaN"]}}"#,
        )
        .unwrap();
        assert!(matches!(scalar.data, Some(Data::Scalar((_, ref v))) if v == "NaN"));
    }
}
