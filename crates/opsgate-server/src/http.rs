//! The HTTP surface: `/mcp` (Streamable HTTP, both MCP revisions), `/healthz`, `/metrics`,
//! `/.well-known/oauth-protected-resource` and `/hooks/<source>`. The caller binds the listener
//! (`run` takes it), so tests bind `127.0.0.1:0`.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use opsgate_core::Principal;
use opsgate_store::{AuditEntry, Store};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::identity::{Identity, Rejection, RejectionKind};
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
    /// The URL clients reach this server at, without a trailing slash: the base of the
    /// `resource_metadata` URL in `WWW-Authenticate`.
    pub public_url: String,
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
            public_url: if address.ip().is_unspecified() {
                format!("http://localhost:{}", address.port())
            } else {
                format!("http://{address}")
            },
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub mcp: Arc<McpState>,
    pub store: Store,
    pub http: HttpConfig,
    /// Who is calling: every `/mcp` request passes through it first.
    pub identity: Arc<Identity>,
    /// Cancelled at shutdown to close open MCP streams and sessions.
    pub streams: CancellationToken,
    /// `/hooks/<source>` (event ingestion), when the context store is on.
    pub hooks: Option<(crate::events::EventSink, crate::hooks_api::HooksConfig)>,
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
    let service = StreamableHttpService::new(
        move || Ok(OpsgateMcp::new(mcp_state.clone(), Principal::anonymous())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    // `/mcp` is one handler over shared state, not a nested service behind middleware layers:
    // tower middleware and rmcp's service clone the whole stack on every request (the server
    // config with its host and origin lists included), which costs more than the call itself.
    let endpoint = Arc::new(McpEndpoint { service, state: state.clone() });
    let mcp = Router::new().route("/mcp", any(serve_mcp)).route("/mcp/{*rest}", any(serve_mcp)).with_state(endpoint);
    // Webhooks authenticate themselves (a signature or a token per source), not with opsgate's
    // identities, so they sit outside the identity middleware.
    let hooks = match &state.hooks {
        Some((sink, config)) => crate::hooks_api::routes(sink.clone(), config.clone()),
        None => Router::new(),
    };
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .merge(crate::approvals_api::routes())
        .route(PROTECTED_RESOURCE_PATH, get(protected_resource_metadata))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state)
        .merge(mcp)
        .merge(hooks)
}

/// What `/mcp` needs on every request, shared.
struct McpEndpoint {
    service: StreamableHttpService<OpsgateMcp, LocalSessionManager>,
    state: AppState,
}

/// `/mcp`: the identity stage, then the body check, then the call: a plain 2026-07-28
/// `tools/call` straight to the pipeline (`crate::stateless`), everything else through rmcp's
/// Streamable HTTP service.
async fn serve_mcp(State(endpoint): State<Arc<McpEndpoint>>, request: Request) -> Response {
    let state = &endpoint.state;
    let request = match identity_stage(state, request).await {
        Ok(request) => request,
        Err(refused) => return refused,
    };
    if request.method() != http::Method::POST {
        return endpoint.service.handle(request).await.into_response();
    }
    let (parts, body) = request.into_parts();
    let bytes = match bounded_body(body, state.http.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(response) => return response,
    };
    if let Some(call) = crate::stateless::take(state, &parts, &bytes) {
        return crate::stateless::answer(state, call).await;
    }
    if let Some(response) = parse_error(&bytes) {
        return response;
    }
    endpoint.service.handle(Request::from_parts(parts, axum::body::Body::from(bytes))).await.into_response()
}

/// The whole body, or 413 with a JSON-RPC error an MCP client can show when it is over the limit.
async fn bounded_body(body: axum::body::Body, max_body_bytes: usize) -> Result<axum::body::Bytes, Response> {
    axum::body::to_bytes(body, max_body_bytes).await.map_err(|_| {
        jsonrpc_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            -32600,
            format!("request body is larger than {max_body_bytes} bytes or could not be read"),
        )
    })
}

/// For a body that is not JSON, the -32700 parse error naming where it broke. Validation builds
/// no value.
fn parse_error(bytes: &[u8]) -> Option<Response> {
    let error = serde_json::from_slice::<serde::de::IgnoredAny>(bytes).err()?;
    Some(jsonrpc_error(StatusCode::BAD_REQUEST, -32700, format!("parse error: request body is not JSON: {error}")))
}

fn jsonrpc_error(status: StatusCode, code: i64, message: String) -> Response {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message}});
    (status, axum::Json(body)).into_response()
}

/// RFC 9728's well-known path for the protected-resource metadata of the resource at the root.
pub const PROTECTED_RESOURCE_PATH: &str = "/.well-known/oauth-protected-resource";

/// Identity stage for HTTP, as middleware (the `/api/` routes). Every `/mcp` and `/api/` request gets a principal (`Identity::authenticate`)
/// before it reaches the MCP service, or is refused here: 401 or 403 with `WWW-Authenticate`, a
/// JSON-RPC error naming what was wrong, and an audit record written before the response leaves.
/// The client's `Authorization` header is removed from every request: it is opsgate's credential
/// alone and is never forwarded to a tool, a backend or a downstream server.
///
/// Public so that a test can mount it in front of a probe and see what passes through.
pub async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let needs_identity = path == "/mcp" || path.starts_with("/mcp/") || path.starts_with("/api/");
    if !needs_identity {
        request.headers_mut().remove(header::AUTHORIZATION);
        return next.run(request).await;
    }
    match identity_stage(&state, request).await {
        Ok(request) => next.run(request).await,
        Err(refused) => refused,
    }
}

/// The identity stage itself, for `/mcp` (called directly) and `authenticate`: the request with
/// its principal in the extensions and without its `Authorization` header, or the refusal to
/// send. A CORS preflight (OPTIONS) carries no credential and passes without one.
async fn identity_stage(state: &AppState, mut request: Request) -> Result<Request, Response> {
    if request.method() == http::Method::OPTIONS {
        request.headers_mut().remove(header::AUTHORIZATION);
        return Ok(request);
    }
    let started = Instant::now();
    let authenticated = state.identity.authenticate(request.headers()).await;
    request.headers_mut().remove(header::AUTHORIZATION);
    match authenticated {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            Ok(request)
        }
        Err(rejection) => Err(refuse(state, request, rejection, started).await),
    }
}

/// Audits a refused request and answers it.
async fn refuse(state: &AppState, request: Request, rejection: Rejection, started: Instant) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let bytes = axum::body::to_bytes(request.into_body(), state.http.max_body_bytes).await.unwrap_or_default();
    let call = RefusedCall::read(&bytes, &method, &path);
    let principal = rejection.principal.clone().unwrap_or_else(|| "unauthenticated".to_string());
    tracing::warn!(%principal, tool = %call.tool, reason = %rejection.reason, "request refused by the identity stage");
    let outcome = match rejection.kind {
        RejectionKind::InsufficientScope { .. } => "insufficient_scope",
        _ => "unauthenticated",
    };
    let entry = AuditEntry {
        time: crate::pipeline::now_rfc3339(),
        principal,
        principal_kind: opsgate_core::PrincipalKind::Anonymous.as_str().to_string(),
        client: call.client,
        tool: call.tool,
        server: None,
        target: None,
        environment: None,
        // A refused request's arguments are not recorded: nothing ran, and they come from someone
        // who could not say who they are.
        arguments: "{}".to_string(),
        arguments_hash: opsgate_store::audit::sha256_hex("{}"),
        decision: "deny".to_string(),
        reason: Some(rejection.reason.clone()),
        approval_id: None,
        approvers: None,
        outcome: outcome.to_string(),
        error: None,
        result_bytes: 0,
        duration_us: started.elapsed().as_micros() as i64,
    };
    if let Err(error) = state.mcp.pipeline.audit_log().record(entry).await {
        tracing::error!(%error, "audit record of a refused request not written");
    }
    refusal_response(state, &rejection, call.id)
}

fn refusal_response(state: &AppState, rejection: &Rejection, id: serde_json::Value) -> Response {
    let (status, label) = match rejection.kind {
        RejectionKind::InsufficientScope { .. } => (StatusCode::FORBIDDEN, "forbidden"),
        RejectionKind::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        _ => (StatusCode::UNAUTHORIZED, "unauthorized"),
    };
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {"code": -32001, "message": format!("{label}: {}", rejection.reason)},
    });
    let mut response = (status, axum::Json(body)).into_response();
    if rejection.kind == RejectionKind::Unavailable {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    }
    let mut challenge = match state.identity.oauth() {
        Some(_) => format!("Bearer resource_metadata=\"{}{PROTECTED_RESOURCE_PATH}\"", state.http.public_url),
        None => "Bearer realm=\"opsgate\"".to_string(),
    };
    if let Some(code) = rejection.kind.error_code() {
        challenge.push_str(&format!(", error=\"{code}\""));
        if let RejectionKind::InsufficientScope { scope } = &rejection.kind {
            challenge.push_str(&format!(", scope=\"{}\"", quotable(scope)));
        }
        challenge.push_str(&format!(", error_description=\"{}\"", quotable(&rejection.reason)));
    }
    match HeaderValue::from_str(&challenge) {
        Ok(value) => {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
        }
        Err(error) => tracing::error!(%error, "WWW-Authenticate challenge is not a valid header"),
    }
    response
}

/// RFC 6750 allows only printable ASCII other than `"` and `\` in these quoted values.
fn quotable(text: &str) -> String {
    text.chars()
        .map(|character| match character {
            '"' | '\\' => '\'',
            ' '..='~' => character,
            _ => '?',
        })
        .collect()
}

/// What a refused request was trying to do, for its audit record: the tool of a `tools/call`,
/// else the JSON-RPC method, else the HTTP method and path.
struct RefusedCall {
    id: serde_json::Value,
    tool: String,
    client: Option<String>,
}

impl RefusedCall {
    fn read(body: &[u8], method: &http::Method, path: &str) -> Self {
        let message: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        // A batch is described by its first message.
        let message = match message {
            Some(serde_json::Value::Array(mut batch)) if !batch.is_empty() => Some(batch.swap_remove(0)),
            other => other,
        };
        let text = |value: Option<&serde_json::Value>| value.and_then(serde_json::Value::as_str).map(short);
        let Some(message) = message.filter(serde_json::Value::is_object) else {
            return RefusedCall { id: serde_json::Value::Null, tool: format!("{method} {path}"), client: None };
        };
        let id = match message.get("id") {
            Some(id @ (serde_json::Value::String(_) | serde_json::Value::Number(_))) => id.clone(),
            _ => serde_json::Value::Null,
        };
        let rpc_method = text(message.get("method"));
        let tool = match rpc_method.as_deref() {
            Some("tools/call") => text(message.pointer("/params/name")).unwrap_or_else(|| "tools/call".to_string()),
            Some(rpc_method) => rpc_method.to_string(),
            None => format!("{method} {path}"),
        };
        // `initialize` in 2025-11-25; every request's `_meta` in 2026-07-28.
        let client = text(message.pointer("/params/clientInfo/name"))
            .or_else(|| text(message.pointer("/params/_meta/io.modelcontextprotocol~1clientInfo/name")));
        RefusedCall { id, tool, client }
    }
}

/// Text from an unauthenticated request, bounded before it reaches the audit log.
fn short(text: &str) -> String {
    text.chars().take(128).collect()
}

/// RFC 9728 metadata: where to get a token for this server. Served when OAuth is configured.
async fn protected_resource_metadata(State(state): State<AppState>) -> Response {
    match state.identity.oauth() {
        Some(oauth) => axum::Json(oauth.protected_resource_metadata()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({"error": "OAuth is not configured on this server; use an API key"})),
        )
            .into_response(),
    }
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
    let body = state.mcp.pipeline.metrics().render(state.store.log_flush_times());
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
