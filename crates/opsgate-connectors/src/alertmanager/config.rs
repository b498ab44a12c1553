//! Configuration of one Alertmanager instance (`[connectors.alertmanager.<name>]`), as read from
//! `opsgate.toml`.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::http::{default_environment, default_timeout_seconds};

/// One Alertmanager (API v2).
///
/// The credential is not here: the binary resolves `bearer_token` (a secret reference) and
/// passes the token to `AlertmanagerClient::new`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct AlertmanagerConfig {
    /// Base URL, with any path prefix: `http://alertmanager:9093`.
    pub url: String,
    #[serde(default = "default_environment")]
    pub environment: String,
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u64,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A secret reference (`env:VAR`, `file:/path`) the binary resolves into the bearer token.
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// The Prometheus instance that evaluates the alert rules behind this Alertmanager's alerts;
    /// `get_active_alerts` reads rule expressions, thresholds and current values there. Default:
    /// the first configured Prometheus.
    #[serde(default)]
    pub prometheus: Option<String>,
}

impl std::fmt::Debug for AlertmanagerConfig {
    /// Header values and the token reference stay out of logs.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AlertmanagerConfig")
            .field("url", &self.url)
            .field("environment", &self.environment)
            .field("timeout_seconds", &self.timeout_seconds)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("bearer_token", &self.bearer_token.as_ref().map(|_| "***"))
            .field("prometheus", &self.prometheus)
            .finish()
    }
}
