//! The Alertmanager API v2 client (`/api/v2/alerts`, `/api/v2/silences`, `/api/v2/silence/{id}`)
//! and the alert and silence types the tools read, shaped after the API's JSON. Unknown fields
//! are ignored: newer Alertmanagers add some (`mutedBy`).

use std::collections::BTreeMap;

use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};

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

/// A silence matcher as the API carries it. `isEqual` is absent from silences made by
/// Alertmanagers before 0.22, and then means `true`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiMatcher {
    pub name: String,
    pub value: String,
    #[serde(rename = "isRegex")]
    pub is_regex: bool,
    #[serde(rename = "isEqual", default = "default_is_equal")]
    pub is_equal: bool,
}

fn default_is_equal() -> bool {
    true
}

/// A silence as `GET /api/v2/silences` and `GET /api/v2/silence/{id}` return it. Times stay
/// strings, as for alerts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct GettableSilence {
    pub id: String,
    #[serde(default)]
    pub status: SilenceStatus,
    #[serde(default)]
    pub matchers: Vec<ApiMatcher>,
    #[serde(rename = "startsAt", default)]
    pub starts_at: String,
    #[serde(rename = "endsAt", default)]
    pub ends_at: String,
    #[serde(rename = "updatedAt", default)]
    pub updated_at: Option<String>,
    #[serde(rename = "createdBy", default)]
    pub created_by: String,
    #[serde(default)]
    pub comment: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct SilenceStatus {
    /// `active`, `pending` (starts later) or `expired`.
    #[serde(default)]
    pub state: String,
}

/// The body of `POST /api/v2/silences` for a new silence (no `id`: with one, Alertmanager
/// would update that silence instead).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PostableSilence {
    pub matchers: Vec<ApiMatcher>,
    /// RFC 3339.
    #[serde(rename = "startsAt")]
    pub starts_at: String,
    #[serde(rename = "endsAt")]
    pub ends_at: String,
    #[serde(rename = "createdBy")]
    pub created_by: String,
    pub comment: String,
}

#[derive(Debug, Deserialize)]
struct PostSilenceResponse {
    #[serde(rename = "silenceID")]
    silence_id: String,
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

    /// The alerts every one of `filter` selects: matchers in Alertmanager's syntax
    /// (`name="value"`), evaluated by Alertmanager itself, so the answer is exactly what a
    /// silence with these matchers covers.
    pub async fn alerts_matching(&self, filter: &[String]) -> Result<Vec<GettableAlert>, HttpError> {
        let mut query: Vec<(&str, &str)> =
            vec![("active", "true"), ("silenced", "true"), ("inhibited", "true"), ("unprocessed", "true")];
        query.extend(filter.iter().map(|matcher| ("filter", matcher.as_str())));
        self.endpoint.get_json("/api/v2/alerts", &query).await
    }

    /// Every silence Alertmanager holds (expired ones until its retention drops them), or those
    /// with a matcher equal to one in `filter` (Alertmanager compares name, operator and value;
    /// it does not evaluate them).
    pub async fn silences(&self, filter: &[String]) -> Result<Vec<GettableSilence>, HttpError> {
        let query: Vec<(&str, &str)> = filter.iter().map(|matcher| ("filter", matcher.as_str())).collect();
        self.endpoint.get_json("/api/v2/silences", &query).await
    }

    /// One silence by id; `None` when Alertmanager does not know it. `id` goes into the path, so
    /// callers pass only ids they checked are UUIDs, as Alertmanager's are.
    pub async fn silence(&self, id: &str) -> Result<Option<GettableSilence>, HttpError> {
        let (status, body) = self.endpoint.get(&format!("/api/v2/silence/{id}"), &[]).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(self.endpoint.status_error(status, &body));
        }
        serde_json::from_slice(&body).map(Some).map_err(|error| self.endpoint.decode_error(&error.to_string()))
    }

    /// Creates a silence and returns its id.
    pub async fn create_silence(&self, silence: &PostableSilence) -> Result<String, HttpError> {
        let json = serde_json::to_value(silence).map_err(|error| self.endpoint.decode_error(&error.to_string()))?;
        let (status, body) = self.endpoint.send(Method::POST, "/api/v2/silences", &[], Some(&json)).await?;
        if !status.is_success() {
            return Err(self.endpoint.status_error(status, &body));
        }
        let created: PostSilenceResponse =
            serde_json::from_slice(&body).map_err(|error| self.endpoint.decode_error(&error.to_string()))?;
        Ok(created.silence_id)
    }

    /// Expires a silence now (`DELETE /api/v2/silence/{id}`; Alertmanager keeps it, expired).
    /// Alertmanager refuses an unknown id with 404 and one already expired with 500; the caller
    /// words those from `HttpError::Status`.
    pub async fn expire_silence(&self, id: &str) -> Result<(), HttpError> {
        let (status, body) = self.endpoint.send(Method::DELETE, &format!("/api/v2/silence/{id}"), &[], None).await?;
        if !status.is_success() {
            return Err(self.endpoint.status_error(status, &body));
        }
        Ok(())
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
