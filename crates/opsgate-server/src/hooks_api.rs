//! `/hooks/<source>` (alertmanager, github, gitlab, argocd, flux, cloudevents): webhook
//! deliveries in. Each source is on only when its secret is
//! configured; the delivery is verified before anything is parsed, normalised (`hooks/`), mapped
//! and stored once (`EventSink`). Answers: 202 with what was stored or why nothing was; 401 for
//! a bad signature or token (nothing stored); 400 for a payload the source would not send; 413
//! over the size limit; 404 for a source that is not configured; 503 when the store fails.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opsgate_core::Secret;
use serde_json::json;

use crate::events::EventSink;
use crate::hooks::{self, HookError, Ingest};

/// Every source `/hooks/<source>` knows.
pub const SOURCES: [&str; 6] = [
    hooks::alertmanager::SOURCE,
    hooks::github::SOURCE,
    hooks::gitlab::SOURCE,
    hooks::argocd::SOURCE,
    hooks::flux::SOURCE,
    hooks::cloudevents::SOURCE,
];

/// The sources that are on, each with its secret: a bearer token (Alertmanager, Argo CD,
/// CloudEvents), a shared token (GitLab's `X-Gitlab-Token`) or an HMAC key (GitHub, Flux).
#[derive(Debug, Clone)]
pub struct HooksConfig {
    pub max_body_bytes: usize,
    pub secrets: BTreeMap<String, Secret>,
}

impl Default for HooksConfig {
    fn default() -> Self {
        HooksConfig { max_body_bytes: 1024 * 1024, secrets: BTreeMap::new() }
    }
}

impl HooksConfig {
    /// The sources that are on, by name.
    pub fn enabled(&self) -> Vec<&str> {
        self.secrets.keys().map(String::as_str).collect()
    }
}

/// Verifies a delivery to `source`, then normalises it.
fn ingest(source: &str, secret: &str, headers: &HeaderMap, body: &[u8], now: &str) -> Result<Ingest, HookError> {
    use hooks::{alertmanager, argocd, cloudevents, flux, github, gitlab};
    match source {
        alertmanager::SOURCE => alertmanager::verify(secret, headers).and_then(|()| alertmanager::normalize(body, now)),
        github::SOURCE => github::verify(secret, headers, body).and_then(|()| github::normalize(headers, body, now)),
        gitlab::SOURCE => gitlab::verify(secret, headers).and_then(|()| gitlab::normalize(headers, body, now)),
        argocd::SOURCE => argocd::verify(secret, headers).and_then(|()| argocd::normalize(body, now)),
        flux::SOURCE => flux::verify(secret, headers, body).and_then(|()| flux::normalize(body, now)),
        cloudevents::SOURCE => {
            cloudevents::verify(secret, headers).and_then(|()| cloudevents::normalize(headers, body, now))
        }
        // `receive` answers only the configured sources, all of them in `SOURCES`.
        other => Err(HookError::BadRequest(format!("hook {other:?} has no handler"))),
    }
}

struct HooksState {
    sink: EventSink,
    config: HooksConfig,
}

pub fn routes(sink: EventSink, config: HooksConfig) -> Router {
    Router::new().route("/hooks/{source}", post(receive)).with_state(Arc::new(HooksState { sink, config }))
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

async fn receive(
    State(state): State<Arc<HooksState>>,
    Path(source): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let config = &state.config;
    let Some(secret) = config.secrets.get(&source) else {
        let message = if SOURCES.contains(&source.as_str()) {
            let enabled = config.enabled();
            let enabled = if enabled.is_empty() { "none".to_string() } else { enabled.join(", ") };
            format!("hook {source:?} is not configured (set [hooks.{source}] secret); configured: {enabled}")
        } else {
            format!("there is no hook {source:?}; hooks are {}", SOURCES.join(", "))
        };
        return answer(StatusCode::NOT_FOUND, json!({ "error": message }));
    };
    let Ok(body) = axum::body::to_bytes(body, config.max_body_bytes).await else {
        let message = format!("the body is larger than {} bytes or could not be read", config.max_body_bytes);
        return answer(StatusCode::PAYLOAD_TOO_LARGE, json!({ "error": message }));
    };
    let now = opsgate_store::now_rfc3339();
    let ingest = ingest(&source, secret.expose(), &headers, &body, &now);
    match ingest {
        Err(HookError::Unauthorized(reason)) => {
            tracing::warn!(%source, %reason, "webhook delivery refused");
            answer(StatusCode::UNAUTHORIZED, json!({ "error": reason }))
        }
        Err(HookError::BadRequest(reason)) => answer(StatusCode::BAD_REQUEST, json!({ "error": reason })),
        Ok(Ingest::Ignored(reason)) => answer(StatusCode::ACCEPTED, json!({ "stored": 0, "ignored": reason })),
        Ok(Ingest::Events(events)) => match state.sink.ingest(events).await {
            Ok(ingested) => answer(
                StatusCode::ACCEPTED,
                json!({
                    "stored": ingested.stored.len(),
                    "duplicates": ingested.n_duplicates,
                    "ids": ingested.stored.iter().map(|stored| stored.id.as_str()).collect::<Vec<_>>(),
                }),
            ),
            Err(error) => {
                tracing::error!(%source, %error, "webhook events not stored");
                answer(StatusCode::SERVICE_UNAVAILABLE, json!({ "error": "the events could not be stored; retry" }))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;
    use crate::hooks::test_support::{signature as sign, testdata};

    async fn app(dir: &std::path::Path) -> (Router, opsgate_store::Store) {
        let store = opsgate_store::Store::open_sqlite(dir).await.expect("store");
        let config = HooksConfig {
            max_body_bytes: 2048,
            secrets: BTreeMap::from([("alertmanager".to_string(), Secret::new("t0ken"))]),
        };
        (routes(EventSink::new(store.clone(), Vec::new()), config), store)
    }

    async fn post(app: &Router, path: &str, token: &str, body: impl Into<Body>) -> (StatusCode, serde_json::Value) {
        let request = Request::post(path).header("authorization", format!("Bearer {token}")).body(body.into());
        let response = app.clone().oneshot(request.expect("request")).await.expect("infallible");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }

    const FIRING: &str = r#"{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"Down","service":"api"},"annotations":{},"startsAt":"2026-11-21T12:00:00Z","endsAt":"0001-01-01T00:00:00Z","fingerprint":"f1"}]}"#;

    #[tokio::test]
    async fn bad_deliveries_get_the_status_that_names_the_problem_and_store_nothing() {
        let dir = tempfile::tempdir().expect("dir");
        let (app, store) = app(dir.path()).await;
        let (status, body) = post(&app, "/hooks/alertmanager", "wrong", FIRING).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        let (status, body) = post(&app, "/hooks/alertmanager", "t0ken", "{not json").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["error"].as_str().is_some_and(|error| error.contains("not valid JSON")), "{body}");
        let (status, _) = post(&app, "/hooks/alertmanager", "t0ken", vec![b' '; 4096]).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        let (status, body) = post(&app, "/hooks/github", "t0ken", "{}").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body["error"].as_str().is_some_and(|error| error.contains("configured: alertmanager")), "{body}");
        let (status, body) = post(&app, "/hooks/jenkins", "t0ken", "{}").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body["error"].as_str().is_some_and(|error| error.contains("hooks are alertmanager, github")), "{body}");
        let everything = opsgate_store::EventQuery { limit: 10, ..Default::default() };
        assert!(store.events(&everything).await.expect("read").is_empty(), "nothing stored");

        let (status, body) = post(&app, "/hooks/alertmanager", "t0ken", FIRING).await;
        assert_eq!(
            (status, body["stored"].clone(), body["duplicates"].clone()),
            (StatusCode::ACCEPTED, 1.into(), 0.into())
        );
        let (_, body) = post(&app, "/hooks/alertmanager", "t0ken", FIRING).await;
        assert_eq!((body["stored"].clone(), body["duplicates"].clone()), (0.into(), 1.into()), "a redelivery: {body}");
        assert_eq!(store.events(&everything).await.expect("read").len(), 1);

        // Whatever a sender puts in a label, the stored event is bounded: one summary line.
        let long = format!("{}\\nSecond line", "A".repeat(1_500));
        let flood = FIRING.replace("\"Down\"", &format!("\"{long}\"")).replace("\"f1\"", "\"f2\"");
        let (status, body) = post(&app, "/hooks/alertmanager", "t0ken", flood).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let newest = store.events(&everything).await.expect("read").remove(0).event;
        assert_eq!(newest.summary.chars().count(), opsgate_core::event::MAX_SUMMARY_CHARS, "{}", newest.summary);
        assert!(!newest.summary.contains('\n'));
        assert!(
            newest.attributes.values().all(|value| value.chars().count() <= opsgate_core::event::MAX_ATTRIBUTE_CHARS)
        );
    }

    /// Every source is routed to its own check and normaliser: a real payload of each, with its
    /// own kind of credential, is stored; the same payload with a bad credential is refused.
    /// (Alertmanager's route is the other test's.)
    #[tokio::test]
    async fn each_source_checks_its_own_credential_and_stores_its_events() {
        let dir = tempfile::tempdir().expect("dir");
        let store = opsgate_store::Store::open_sqlite(dir.path()).await.expect("store");
        let secrets =
            SOURCES.iter().map(|source| (source.to_string(), Secret::new(format!("{source}-secret")))).collect();
        // One mapping rule, applied on the way in: Flux's service renamed.
        let rule = crate::events::MappingRule::new(
            Some("flux".into()),
            "service".into(),
            ".+",
            Some("webapp-prod".into()),
            None,
        );
        let sink = EventSink::new(store.clone(), vec![rule.expect("valid rule")]);
        let app = routes(sink, HooksConfig { max_body_bytes: 1 << 20, secrets });
        let cases: [(&str, &str, &str, &str); 5] = [
            ("github", "github/push.json", "x-hub-signature-256", ""),
            ("gitlab", "gitlab/pipeline.json", "x-gitlab-token", ""),
            ("argocd", "argocd/guestbook-succeeded.json", "authorization", "Bearer "),
            ("flux", "flux/kustomization-progressing.json", "x-signature", ""),
            ("cloudevents", "cloudevents/cdevents-service-deployed.structured.json", "authorization", "Bearer "),
        ];
        for (source, file, header, prefix) in cases {
            let body = testdata(file);
            let secret = format!("{source}-secret");
            let signed = source == "flux" || source == "github";
            let credential = if signed { sign(&secret, &body) } else { format!("{prefix}{secret}") };
            let wrong = if signed { sign("wrong", &body) } else { format!("{prefix}wrong") };
            for (value, expected) in [(wrong, StatusCode::UNAUTHORIZED), (credential, StatusCode::ACCEPTED)] {
                let mut request = Request::post(format!("/hooks/{source}")).header(header, value);
                if source == "gitlab" {
                    request = request.header("x-gitlab-event", "Pipeline Hook");
                }
                if source == "github" {
                    request = request.header("x-github-event", "push");
                }
                if source == "cloudevents" {
                    request = request.header("content-type", "application/cloudevents+json");
                }
                let response = app.clone().oneshot(request.body(Body::from(body.clone())).expect("request")).await;
                let response = response.expect("infallible");
                let status = response.status();
                let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
                let answer: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
                assert_eq!(status, expected, "{source}: {answer}");
                if expected == StatusCode::ACCEPTED {
                    assert_eq!(answer["stored"], 1, "{source}: {answer}");
                }
            }
        }
        let everything = opsgate_store::EventQuery { limit: 10, ..Default::default() };
        let stored = store.events(&everything).await.expect("read");
        let mut sources: Vec<&str> = stored.iter().map(|stored| stored.event.source.as_str()).collect();
        sources.sort_unstable();
        assert_eq!(sources, ["argocd", "cloudevents", "flux", "github", "gitlab"]);
        let flux = stored.iter().find(|stored| stored.event.source == "flux").map(|stored| &stored.event.service);
        assert_eq!(flux, Some(&Some("webapp-prod".to_string())), "the mapping rule applied");
    }
}
