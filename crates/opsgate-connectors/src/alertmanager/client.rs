//! The Alertmanager API v2 client (`/api/v2/alerts`) and the alert type the tools read, shaped
//! after the API's JSON. Unknown fields are ignored: newer Alertmanagers add some (`mutedBy`).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::config::AlertmanagerConfig;
use crate::http::{ConfigError, Endpoint, EndpointSettings, HttpError};
use crate::prometheus::PrometheusClients;

/// An alert as `GET /api/v2/alerts` returns it. Times stay strings: one odd timestamp must not
/// make the whole list unreadable; the tools parse them where they use them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct GettableAlert {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(rename = "startsAt", default)]
    pub starts_at: Option<String>,
    #[serde(rename = "endsAt", default)]
    pub ends_at: Option<String>,
    #[serde(rename = "updatedAt", default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub fingerprint: String,
    #[serde(default)]
    pub status: AlertStatus,
    #[serde(rename = "generatorURL", default)]
    pub generator_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct AlertStatus {
    /// `active`, `suppressed` or `unprocessed`.
    #[serde(default)]
    pub state: String,
    #[serde(rename = "silencedBy", default)]
    pub silenced_by: Vec<String>,
    #[serde(rename = "inhibitedBy", default)]
    pub inhibited_by: Vec<String>,
    /// Mute time intervals (Alertmanager 0.25+).
    #[serde(rename = "mutedBy", default)]
    pub muted_by: Vec<String>,
}

/// A client for one named Alertmanager instance.
#[derive(Debug, Clone)]
pub struct AlertmanagerClient {
    endpoint: Endpoint,
    environment: String,
    prometheus: Option<String>,
}

impl AlertmanagerClient {
    /// Builds the client for instance `name`. `bearer_token` is the resolved secret; it is sent
    /// as `Authorization: Bearer …` and never logged.
    pub fn new(name: &str, config: &AlertmanagerConfig, bearer_token: Option<String>) -> Result<Self, ConfigError> {
        let endpoint = Endpoint::new(EndpointSettings {
            kind: "alertmanager",
            name,
            url: &config.url,
            timeout_seconds: config.timeout_seconds,
            headers: &config.headers,
            bearer_token,
        })?;
        Ok(AlertmanagerClient {
            endpoint,
            environment: config.environment.clone(),
            prometheus: config.prometheus.clone(),
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

    /// The Prometheus instance named in the configuration, if any.
    pub fn prometheus(&self) -> Option<&str> {
        self.prometheus.as_deref()
    }

    /// Every alert Alertmanager holds: active, silenced, inhibited and not yet processed.
    pub async fn alerts(&self) -> Result<Vec<GettableAlert>, HttpError> {
        self.endpoint
            .get_json(
                "/api/v2/alerts",
                &[("active", "true"), ("silenced", "true"), ("inhibited", "true"), ("unprocessed", "true")],
            )
            .await
    }
}

/// The configured alertmanager instances by name; the first is the default.
pub type AlertmanagerClients = crate::instances::Instances<AlertmanagerClient>;

impl crate::instances::Instance for AlertmanagerClient {
    const KIND: &'static str = "alertmanager";

    fn name(&self) -> &str {
        AlertmanagerClient::name(self)
    }

    fn environment(&self) -> &str {
        AlertmanagerClient::environment(self)
    }
}

/// Checks at start-up that every `prometheus = "…"` in an Alertmanager's configuration names a
/// configured Prometheus, so a typo is a configuration error rather than alerts quietly shown
/// without their rules.
pub fn check_prometheus_links(
    alertmanagers: &AlertmanagerClients,
    prometheus: &PrometheusClients,
) -> Result<(), ConfigError> {
    for client in alertmanagers.iter() {
        if let Some(name) = client.prometheus()
            && prometheus.get(name).is_none()
        {
            let known: Vec<&str> = prometheus.iter().map(|client| client.name()).collect();
            return Err(ConfigError::Other {
                kind: "alertmanager",
                name: client.name().to_string(),
                detail: format!(
                    "prometheus = {name:?} is not a configured prometheus instance (configured: {})",
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                ),
            });
        }
    }
    Ok(())
}
