//! Configuration of one Prometheus instance (`[connectors.prometheus.<name>]`) and of the metric
//! signal catalog (wherever the binary puts it; not under `[connectors.prometheus]`, whose keys
//! are instance names), as read from `opsgate.toml`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::catalog::{Aggregation, Unit};
use crate::http::{default_environment, default_timeout_seconds};

/// One Prometheus-compatible server (Prometheus, Thanos, Mimir, VictoriaMetrics).
///
/// The credential is not here: the binary resolves `bearer_token` (a secret reference such as
/// `env:PROM_TOKEN`) and passes the token to `PrometheusClient::new`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct PrometheusConfig {
    /// Base URL, with any path prefix: `http://prometheus:9090`, `https://mimir/prometheus`.
    pub url: String,
    /// The environment this instance belongs to; policy keys on it.
    #[serde(default = "default_environment")]
    pub environment: String,
    /// Every request is cut off after this long.
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u64,
    /// Extra headers on every request (`X-Scope-OrgID` for Mimir, say).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A secret reference (`env:VAR`, `file:/path`) the binary resolves into the bearer token.
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// Labels that may carry a service's name, tried in order: the first whose value is the
    /// service and whose series exist is used.
    #[serde(default = "default_service_labels")]
    pub service_labels: Vec<String>,
}

impl std::fmt::Debug for PrometheusConfig {
    /// Header values and the token reference stay out of logs: a header may hold an API key,
    /// and a token may have been written inline by mistake.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PrometheusConfig")
            .field("url", &self.url)
            .field("environment", &self.environment)
            .field("timeout_seconds", &self.timeout_seconds)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("bearer_token", &self.bearer_token.as_ref().map(|_| "***"))
            .field("service_labels", &self.service_labels)
            .finish()
    }
}

/// `service` first (the common relabelling convention), then the scrape job, then the
/// Kubernetes `app` label, then OpenTelemetry's `service_name` (its `service.name` resource
/// attribute as Prometheus sees it).
pub fn default_service_labels() -> Vec<String> {
    ["service", "job", "app", "service_name"].into_iter().map(str::to_string).collect()
}

/// Overrides and additions to the built-in metric signals of `get_service_metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsCatalogConfig {
    /// By signal name: an existing name changes that signal, a new one adds a signal.
    #[serde(default)]
    pub signals: BTreeMap<String, SignalOverride>,
}

/// One signal's PromQL templates and description. Templates use `{{selector}}` (replaced by
/// `<service_label>="<service>"`, required), `{{window}}` (the rate window, e.g. `5m`) and
/// optionally `{{agg}}` (the `aggregation` argument: `sum`, `avg`, `max` or `min`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalOverride {
    /// Shown in the tool's description of the signal; required for a new signal.
    #[serde(default)]
    pub description: Option<String>,
    /// Required for a new signal.
    #[serde(default)]
    pub unit: Option<Unit>,
    /// Templates tried before the built-in ones, in order.
    #[serde(default)]
    pub queries: Vec<String>,
    /// When true, the built-in templates are dropped and only `queries` are tried.
    #[serde(default)]
    pub replace: bool,
    /// The aggregation used when the call names none (templates with `{{agg}}` only).
    #[serde(default)]
    pub default_aggregation: Option<Aggregation>,
}
