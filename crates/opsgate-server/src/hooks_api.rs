//! `/hooks/<source>`: webhook deliveries in. Each source is on only when its secret is
//! configured; the delivery is verified before anything is parsed, normalised (`hooks/`), mapped
//! and stored once (`EventSink`). Answers: 202 with what was stored or why nothing was; 401 for
//! a bad signature or token (nothing stored); 400 for a payload the source would not send; 413
//! over the size limit; 404 for a source that is not configured; 503 when the store fails.

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

/// The sources and their secrets (a bearer token, a shared token or an HMAC key, per source).
#[derive(Debug, Clone)]
pub struct HooksConfig {
    pub max_body_bytes: usize,
    pub alertmanager: Option<Secret>,
    pub github: Option<Secret>,
}

impl Default for HooksConfig {
    fn default() -> Self {
        HooksConfig { max_body_bytes: 1024 * 1024, alertmanager: None, github: None }
    }
}

impl HooksConfig {
    /// The sources that are on, by name.
    pub fn enabled(&self) -> Vec<&'static str> {
        let sources = [(hooks::alertmanager::SOURCE, &self.alertmanager), (hooks::github::SOURCE, &self.github)];
        sources.into_iter().filter(|(_, secret)| secret.is_some()).map(|(name, _)| name).collect()
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
    let secret = match source.as_str() {
        hooks::alertmanager::SOURCE => &config.alertmanager,
        hooks::github::SOURCE => &config.github,
        _ => &None,
    };
    let Some(secret) = secret else {
        let message = format!(
            "hook {source:?} is not configured; configured: {}",
            if config.enabled().is_empty() { "none".to_string() } else { config.enabled().join(", ") }
        );
        return answer(StatusCode::NOT_FOUND, json!({ "error": message }));
    };
    let Ok(body) = axum::body::to_bytes(body, config.max_body_bytes).await else {
        let message = format!("the body is larger than {} bytes or could not be read", config.max_body_bytes);
        return answer(StatusCode::PAYLOAD_TOO_LARGE, json!({ "error": message }));
    };
    let secret = secret.expose();
    let now = opsgate_store::now_rfc3339();
    let ingest = match source.as_str() {
        hooks::alertmanager::SOURCE => {
            hooks::alertmanager::verify(secret, &headers).and_then(|()| hooks::alertmanager::normalize(&body, &now))
        }
        hooks::github::SOURCE => hooks::github::verify(secret, &headers, &body)
            .and_then(|()| hooks::github::normalize(&headers, &body, &now)),
        _ => Err(HookError::BadRequest(format!("hook {source:?} has no handler"))),
    };
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

    async fn app(dir: &std::path::Path) -> (Router, opsgate_store::Store) {
        let store = opsgate_store::Store::open_sqlite(dir).await.expect("store");
        let config =
            HooksConfig { max_body_bytes: 2048, alertmanager: Some(Secret::new("t0ken")), ..HooksConfig::default() };
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
    }
}
