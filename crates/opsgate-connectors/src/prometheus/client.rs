//! The Prometheus HTTP API client (`/api/v1/…`) and the response types the tools read, shaped
//! after the API's JSON. Unknown fields are ignored on purpose: Prometheus-compatible servers add
//! their own, and a newer Prometheus must not break an older opsgate.

use std::collections::{BTreeMap, HashMap};

use opsgate_core::ToolError;
use serde::Deserialize;

use super::config::PrometheusConfig;
use super::promql::Labels;
use super::series::{Point, parse_value};
use crate::http::{ConfigError, Endpoint, EndpointSettings, HttpError};

/// Why a Prometheus request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrometheusError {
    #[error(transparent)]
    Http(#[from] HttpError),
    /// Prometheus answered `{"status": "error"}`; its message names the problem (for a bad
    /// query, the line:column of the parse error).
    #[error("prometheus {name} rejected the request ({error_type}): {error}")]
    Api { name: String, error_type: String, error: String },
}

impl PrometheusError {
    /// The error as a tool reports it, with a hint for what the agent can change.
    pub fn into_tool_error(self) -> ToolError {
        match self {
            PrometheusError::Http(error) => error.into(),
            PrometheusError::Api { name, error_type, error } => {
                let hint = match error_type.as_str() {
                    "bad_data" => "fix the PromQL at the position shown (line:column)",
                    "execution" => "the query parsed but cannot be evaluated; check label matching and functions",
                    "timeout" | "canceled" => "the query is too expensive; narrow the period or add label filters",
                    _ => "",
                };
                let message = format!("prometheus {name} rejected the query ({error_type}): {error}");
                let message = if hint.is_empty() { message } else { format!("{message}; {hint}") };
                match error_type.as_str() {
                    "unavailable" | "internal" => ToolError::Unavailable(message),
                    _ => ToolError::Backend(message),
                }
            }
        }
    }
}

impl From<PrometheusError> for ToolError {
    fn from(error: PrometheusError) -> Self {
        error.into_tool_error()
    }
}

/// What the API wraps every answer in.
#[derive(Debug, Deserialize)]
struct Envelope<T> {
    status: String,
    data: Option<T>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

/// A successful answer and the warnings Prometheus attached (partial data from a remote read,
/// say), which the tools pass on.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer<T> {
    pub data: T,
    pub warnings: Vec<String>,
}

/// The `data` of `/api/v1/query` and `/api/v1/query_range`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
pub enum QueryResult {
    Vector(Vec<VectorSample>),
    Matrix(Vec<MatrixSeries>),
    Scalar(RawSample),
    String(RawSample),
}

/// `[unix_seconds, "value"]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RawSample(pub f64, pub String);

impl RawSample {
    pub fn point(&self) -> Point {
        Point { time: self.0, value: parse_value(&self.1) }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VectorSample {
    #[serde(default)]
    pub metric: Labels,
    /// Absent for native histogram samples (`histogram` instead), which these tools skip.
    pub value: Option<RawSample>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MatrixSeries {
    #[serde(default)]
    pub metric: Labels,
    #[serde(default)]
    pub values: Vec<RawSample>,
}

impl MatrixSeries {
    pub fn points(&self) -> Vec<Point> {
        self.values.iter().map(RawSample::point).collect()
    }
}

/// One entry of `/api/v1/metadata`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MetricMetadata {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub help: String,
    #[serde(default)]
    pub unit: String,
}

/// The `data` of `/api/v1/rules`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct RulesData {
    #[serde(default)]
    pub groups: Vec<RuleGroup>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RuleGroup {
    pub name: String,
    #[serde(default)]
    pub file: String,
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Evaluation interval in seconds.
    #[serde(default)]
    pub interval: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Rule {
    /// `alerting` or `recording`.
    #[serde(rename = "type", default)]
    pub kind: String,
    pub name: String,
    /// The rule's expression as Prometheus prints it.
    #[serde(default)]
    pub query: String,
    /// The `for` duration in seconds.
    #[serde(default)]
    pub duration: f64,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub alerts: Vec<RuleAlert>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub health: Option<String>,
}

/// An alert as its rule sees it: `value` is the expression's value for its series at the last
/// evaluation, which for `x > threshold` is the value of `x`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RuleAlert {
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub state: String,
    #[serde(rename = "activeAt", default)]
    pub active_at: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
}

/// A time range for a range query, in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    pub start: f64,
    pub end: f64,
    pub step_seconds: u64,
}

/// A client for one named Prometheus instance.
#[derive(Debug, Clone)]
pub struct PrometheusClient {
    endpoint: Endpoint,
    environment: String,
    service_labels: Vec<String>,
}

impl PrometheusClient {
    /// Builds the client for instance `name`. `bearer_token` is the resolved secret (never the
    /// reference); it is sent as `Authorization: Bearer …` and never logged.
    pub fn new(name: &str, config: &PrometheusConfig, bearer_token: Option<String>) -> Result<Self, ConfigError> {
        let endpoint = Endpoint::new(EndpointSettings {
            kind: "prometheus",
            name,
            url: &config.url,
            timeout_seconds: config.timeout_seconds,
            headers: &config.headers,
            bearer_token,
        })?;
        if config.service_labels.is_empty() || config.service_labels.iter().any(|label| !is_label_name(label)) {
            return Err(ConfigError::Other {
                kind: "prometheus",
                name: name.to_string(),
                detail: format!(
                    "service_labels must list label names like \"service\", got {:?}",
                    config.service_labels
                ),
            });
        }
        Ok(PrometheusClient {
            endpoint,
            environment: config.environment.clone(),
            service_labels: config.service_labels.clone(),
        })
    }

    pub fn name(&self) -> &str {
        self.endpoint.name()
    }

    /// The base URL, without credentials.
    pub fn url(&self) -> &str {
        self.endpoint.display_url()
    }

    pub fn environment(&self) -> &str {
        &self.environment
    }

    /// Labels that may carry a service's name, in the order they are tried.
    pub fn service_labels(&self) -> &[String] {
        &self.service_labels
    }

    /// An instant query, evaluated at Prometheus' "now".
    pub async fn query(&self, promql: &str) -> Result<Answer<QueryResult>, PrometheusError> {
        self.api("/api/v1/query", &[("query", promql)]).await
    }

    pub async fn query_range(&self, promql: &str, range: Range) -> Result<Answer<QueryResult>, PrometheusError> {
        let (start, end, step) = (range.start.to_string(), range.end.to_string(), range.step_seconds.to_string());
        self.api("/api/v1/query_range", &[("query", promql), ("start", &start), ("end", &end), ("step", &step)]).await
    }

    /// Values of `label` on series matching any of `matchers`, optionally limited to a time
    /// range (`/api/v1/label/<label>/values`).
    pub async fn label_values(
        &self,
        label: &str,
        matchers: &[String],
        range: Option<(f64, f64)>,
    ) -> Result<Answer<Vec<String>>, PrometheusError> {
        let path = format!("/api/v1/label/{label}/values");
        let (start, end) = range.map(|(start, end)| (start.to_string(), end.to_string())).unzip();
        let mut query: Vec<(&str, &str)> = matchers.iter().map(|matcher| ("match[]", matcher.as_str())).collect();
        if let (Some(start), Some(end)) = (&start, &end) {
            query.push(("start", start));
            query.push(("end", end));
        }
        self.api(&path, &query).await
    }

    /// Type, help and unit per metric name; one entry per metric is enough.
    pub async fn metadata(&self) -> Result<Answer<HashMap<String, Vec<MetricMetadata>>>, PrometheusError> {
        self.api("/api/v1/metadata", &[("limit_per_metric", "1")]).await
    }

    /// The alerting rules and their current alerts.
    pub async fn alert_rules(&self) -> Result<Answer<RulesData>, PrometheusError> {
        self.api("/api/v1/rules", &[("type", "alert")]).await
    }

    /// Calls an API path and unwraps the envelope. Prometheus explains failures in the body
    /// (`errorType`, `error`) with 4xx/5xx statuses, so the body is read before the status
    /// decides anything.
    async fn api<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<Answer<T>, PrometheusError> {
        let (status, body) = self.endpoint.get(path, query).await?;
        match decode(&body) {
            Decoded::Answer(answer) => Ok(answer),
            Decoded::Api { error_type, error } => Err(PrometheusError::Api {
                name: self.name().to_string(),
                error_type,
                error: error.unwrap_or_else(|| format!("HTTP {status}, no message")),
            }),
            // Not the API's JSON: a proxy's error page, most likely, which the status explains.
            Decoded::Unreadable(_) if !status.is_success() => Err(self.endpoint.status_error(status, &body).into()),
            Decoded::Unreadable(detail) => Err(self.endpoint.decode_error(&detail).into()),
        }
    }
}

/// What a Prometheus API body says.
#[derive(Debug, PartialEq)]
pub(crate) enum Decoded<T> {
    Answer(Answer<T>),
    Api { error_type: String, error: Option<String> },
    Unreadable(String),
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Decoded<T> {
    let envelope: Envelope<T> = match serde_json::from_slice(body) {
        Ok(envelope) => envelope,
        Err(error) => return Decoded::Unreadable(error.to_string()),
    };
    if envelope.status != "success" {
        return Decoded::Api {
            error_type: envelope.error_type.unwrap_or_else(|| "unknown".to_string()),
            error: envelope.error,
        };
    }
    match envelope.data {
        Some(data) => Decoded::Answer(Answer { data, warnings: envelope.warnings }),
        None => Decoded::Unreadable("a successful answer without data".to_string()),
    }
}

/// A Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub(crate) fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|character| character.is_ascii_alphanumeric() || character == '_')
}

/// The configured prometheus instances by name; the first is the default.
pub type PrometheusClients = crate::instances::Instances<PrometheusClient>;

impl crate::instances::Instance for PrometheusClient {
    const KIND: &'static str = "prometheus";

    fn name(&self) -> &str {
        PrometheusClient::name(self)
    }

    fn environment(&self) -> &str {
        PrometheusClient::environment(self)
    }
}
