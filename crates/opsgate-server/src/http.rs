//! The HTTP surface: `/mcp` (Streamable HTTP, both MCP revisions), `/healthz` and `/metrics`.
//! The caller binds the listener (`run` takes it), so tests bind `127.0.0.1:0`.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use opsgate_core::Principal;
use opsgate_store::Store;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::mcp::{McpState, OpsgateMcp};

#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// `Host` header values accepted (DNS-rebinding protection).
    pub allowed_hosts: Vec<String>,
    /// Browser origins accepted; requests with any other `Origin` are refused.
    pub allowed_origins: Vec<String>,
    pub max_body_bytes: usize,
    /// How long shutdown waits for in-flight calls before closing streams.
    pub shutdown_grace: Duration,
}

impl HttpConfig {
    /// Defaults for a listener on `host:port`: loopback names and that address as hosts, and
    /// same-machine browser origins.
    pub fn for_listen_address(address: std::net::SocketAddr) -> Self {
        let mut allowed_hosts = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
        let ip = address.ip().to_string();
        if !allowed_hosts.contains(&ip) && !address.ip().is_unspecified() {
            allowed_hosts.push(ip);
        }
        HttpConfig {
            allowed_hosts,
            allowed_origins: vec![
                "http://localhost:*".to_string(),
                "http://127.0.0.1:*".to_string(),
                "http://[::1]:*".to_string(),
            ],
            max_body_bytes: 4 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub mcp: Arc<McpState>,
    pub store: Store,
    pub http: HttpConfig,
    /// Cancelled at shutdown to close open MCP streams and sessions.
    pub streams: CancellationToken,
}

pub fn app(state: AppState) -> Router {
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(state.http.allowed_hosts.clone())
        .with_allowed_origins(state.http.allowed_origins.clone())
        .enforce_origin_validation()
        .with_max_request_body_bytes(state.http.max_body_bytes)
        .with_json_response(true)
        .with_cancellation_token(state.streams.clone());
    let mcp_state = state.mcp.clone();
    let mcp = StreamableHttpService::new(
        move || Ok(OpsgateMcp::new(mcp_state.clone(), Principal::anonymous())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .merge(crate::approvals_api::routes())
        .nest_service("/mcp", mcp)
        .layer(middleware::from_fn_with_state(state.http.max_body_bytes, check_json_body))
        .layer(middleware::from_fn(authenticate))
        .with_state(state)
}

/// Bad input at the edge gets a JSON-RPC error an MCP client can show: a body over the limit is
/// 413, a body that is not JSON is a -32700 parse error naming where it broke. Valid bodies pass
/// through untouched (validation skips building any value).
async fn check_json_body(State(max_body_bytes): State<usize>, request: Request, next: Next) -> Response {
    if request.method() != http::Method::POST || request.uri().path() != "/mcp" {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return jsonrpc_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                -32600,
                format!("request body is larger than {max_body_bytes} bytes or could not be read"),
            );
        }
    };
    if let Err(error) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
        return jsonrpc_error(
            StatusCode::BAD_REQUEST,
            -32700,
            format!("parse error: request body is not JSON: {error}"),
        );
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await
}

fn jsonrpc_error(status: StatusCode, code: i64, message: String) -> Response {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message}});
    (status, axum::Json(body)).into_response()
}

/// Identity stage for HTTP: every request gets a principal before it reaches a handler. Without
/// configured credentials that is the anonymous principal.
async fn authenticate(mut request: Request, next: Next) -> Response {
    request.extensions_mut().insert(Principal::anonymous());
    next.run(request).await
}

async fn healthz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, axum::Json(serde_json::json!({"status": "ok", "store": state.store.backend()})))
            .into_response(),
        Err(error) => {
            tracing::warn!(%error, "health check: store unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({"status": "store unavailable"})))
                .into_response()
        }
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let body = state.mcp.pipeline.metrics().render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// How long cancelled background calls get to write their audit records at shutdown.
const TASK_CANCEL_GRACE: Duration = Duration::from_secs(2);

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting, lets in-flight
/// calls finish (each call's audit record is committed before its response, so a finished call is
/// a flushed one), cancels background calls still running after the grace period, and closes open
/// streams.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let streams = state.streams.clone();
    let pipeline = state.mcp.pipeline.clone();
    let grace = state.http.shutdown_grace;
    let router = app(state);
    let stop_accepting = CancellationToken::new();
    let stop = stop_accepting.clone();
    let drain = tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: no new connections; waiting for in-flight calls");
        stop.cancel();
        let deadline = Instant::now() + grace;
        while pipeline.metrics().in_flight() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Background calls (tasks) that outlived the grace period are cancelled rather than cut
        // off, so that they too end with an audit record; that takes a moment more.
        pipeline.tasks().shutdown();
        let deadline = Instant::now() + TASK_CANCEL_GRACE;
        while pipeline.metrics().in_flight() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Long-lived MCP streams never end on their own: closing them lets the server finish.
        streams.cancel();
    });
    let served =
        axum::serve(listener, router).with_graceful_shutdown(async move { stop_accepting.cancelled().await }).await;
    // With no connection open the server stops at once, but background calls may still be
    // running: return only once the drain has let them finish (or cancelled them).
    match served {
        Ok(()) => {
            let _ = drain.await;
        }
        Err(_) => drain.abort(),
    }
    served
}
