//! The two servers the throughput benchmark compares, each started in-process on a loopback port:
//! a bare rmcp server with one `echo` tool written directly as a `ServerHandler` (the baseline:
//! what the SDK alone costs), and opsgate's own HTTP app with the full pipeline and a durable
//! SQLite audit log, serving the same `echo` as an `opsgate_core::Tool`. The bare server is also
//! the federation benchmark's upstream (see `upstream`).

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use opsgate_core::{CallContext, Effect, Tool, ToolError, ToolOutput, ToolSpec};
use opsgate_server::http::{AppState, HttpConfig};
use opsgate_server::metrics::Metrics;
use opsgate_server::surface::NoSurface;
use opsgate_server::{Identity, IdentityConfig, McpState, Pipeline, PipelineConfig, Registry, TargetCatalog};
use opsgate_store::{AuditLog, AuditWriterConfig, Store};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, JsonObject, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The tool both servers serve. It does nothing but copy its argument, so the benchmark measures
/// the transport and (for opsgate) the pipeline, not a tool.
pub const ECHO: &str = "echo";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    Baseline,
    Opsgate,
}

impl ServerKind {
    pub fn label(self) -> &'static str {
        match self {
            ServerKind::Baseline => "bare rmcp (baseline)",
            ServerKind::Opsgate => "opsgate",
        }
    }
}

/// A server serving on a loopback port until `stop` is called.
pub struct RunningServer {
    pub kind: ServerKind,
    pub address: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
    /// opsgate's store and the directory it lives in; `None` for the baseline.
    audit: Option<(Store, tempfile::TempDir)>,
    /// The `Authorization` value the server needs: opsgate's API key; `None` for the baseline.
    pub authorization: Option<String>,
}

/// What the audit log held after a run, for the check that every successful call was recorded.
#[derive(Debug, Clone, Copy)]
pub struct AuditCount {
    pub n_records: u64,
    /// Whether the hash chain verified end to end.
    pub chain_ok: bool,
}

impl RunningServer {
    /// Stops serving and, for opsgate, counts and verifies the audit records. Each call's record
    /// was committed before its response left, so once the load generator has all its responses
    /// every record is already on disk; stopping first only guarantees nothing more arrives.
    pub async fn stop(self) -> Result<Option<AuditCount>> {
        self.shutdown.cancel();
        match tokio::time::timeout(Duration::from_secs(10), self.task).await {
            Ok(joined) => joined.context("server task panicked")?.context("server failed")?,
            Err(_) => bail!("{} did not shut down within 10 s", self.kind.label()),
        }
        let Some((store, data_dir)) = self.audit else { return Ok(None) };
        let report = store.verify_audit().await.context("verifying the audit chain")?;
        store.close().await;
        drop(data_dir);
        Ok(Some(AuditCount { n_records: report.n_records, chain_ok: report.first_bad.is_none() }))
    }
}

pub async fn start(kind: ServerKind) -> Result<RunningServer> {
    let listener = TcpListener::bind("127.0.0.1:0").await.context("binding a loopback port")?;
    let address = listener.local_addr()?;
    // Both servers get the hosts opsgate would use for this address, so DNS-rebinding
    // protection costs the same on each side.
    let http = HttpConfig::for_listen_address(address);
    let (router, audit, authorization) = match kind {
        ServerKind::Baseline => (baseline_app(&http), None, None),
        ServerKind::Opsgate => {
            let (router, store, data_dir, key) = opsgate_app(http).await?;
            (router, Some((store, data_dir)), Some(format!("Bearer {key}")))
        }
    };
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    // The same serve loop for both, so the only difference measured is what sits behind `/mcp`.
    let task = tokio::spawn(async move {
        axum::serve(listener, router).with_graceful_shutdown(async move { stop.cancelled().await }).await
    });
    Ok(RunningServer { kind, address, shutdown, task, audit, authorization })
}

// ---------------------------------------------------------------------------------------------
// Baseline: the SDK and nothing else.

pub fn baseline_app(http: &HttpConfig) -> axum::Router {
    // The flags opsgate's app sets that change the wire or the work per request: JSON responses,
    // the same allowed hosts and the same body limit. Origin checks are left at rmcp's default
    // (off); the benchmark sends no Origin, so opsgate's check is a header lookup.
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(http.allowed_hosts.clone())
        .with_max_request_body_bytes(http.max_body_bytes)
        .with_json_response(true);
    let service = StreamableHttpService::new(|| Ok(BareEcho), Arc::new(LocalSessionManager::default()), config);
    axum::Router::new().nest_service("/mcp", service)
}

/// The echo tool as an rmcp server written by hand would serve it.
#[derive(Clone)]
pub struct BareEcho;

static ECHO_SCHEMA: LazyLock<Arc<JsonObject>> = LazyLock::new(|| Arc::new(echo_schema()));

fn echo_schema() -> JsonObject {
    let schema = json!({
        "type": "object",
        "properties": {"text": {"type": "string"}},
        "required": ["text"],
        "additionalProperties": false,
    });
    match schema {
        Value::Object(object) => object,
        _ => Map::new(),
    }
}

/// Annotated read-only, as a well-behaved server marks a tool that changes nothing: behind opsgate
/// that makes it a read, which the default policy allows without approval or a rate limit.
/// Built once: rmcp asks for it on every call (`get_tool`), and the clone is cheap.
static ECHO_TOOL: LazyLock<rmcp::model::Tool> = LazyLock::new(|| {
    rmcp::model::Tool::new(ECHO, "Returns its text unchanged.", ECHO_SCHEMA.clone())
        .annotate(ToolAnnotations::new().read_only(true))
});

fn bare_echo_tool() -> rmcp::model::Tool {
    ECHO_TOOL.clone()
}

impl ServerHandler for BareEcho {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(vec![bare_echo_tool()]))
    }

    // rmcp looks the tool up on every tools/call to validate `Mcp-Param-*` headers; the
    // `#[tool_handler]` macro implements this too, so a typical rmcp server pays for it.
    fn get_tool(&self, name: &str) -> Option<rmcp::model::Tool> {
        (name == ECHO).then(bare_echo_tool)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if request.name != ECHO {
            return Err(ErrorData::invalid_params(format!("unknown tool {}", request.name), None));
        }
        let text = request.arguments.as_ref().and_then(|arguments| arguments.get("text")).and_then(Value::as_str);
        let result = match text {
            Some(text) => CallToolResult::success(vec![ContentBlock::text(text.to_string())]),
            None => CallToolResult::error(vec![ContentBlock::text("invalid arguments: text must be a string")]),
        };
        Ok(CallToolResponse::from(result))
    }
}

// ---------------------------------------------------------------------------------------------
// opsgate: the shipping HTTP app, pipeline and audit store.

/// Returns the router, the store (to count audit records afterwards) and the directory holding
/// the SQLite file, which must outlive the run.
/// opsgate as `opsgate serve` runs it: API-key identity (the load generator presents a key with
/// role operator), the default policy bundle, and the durable SQLite audit log.
async fn opsgate_app(http: HttpConfig) -> Result<(axum::Router, Store, tempfile::TempDir, String)> {
    let data_dir = tempfile::tempdir().context("creating a data directory for the audit store")?;
    let store = Store::open_sqlite(data_dir.path()).await.context("opening the SQLite store")?;
    let key = store.create_api_key("bench", &["operator".to_string()]).await.context("creating the API key")?;
    // The writer task stops by itself once the pipeline (the last handle) is dropped.
    let (audit, _writer) = AuditLog::spawn(store.clone(), AuditWriterConfig::default());
    let mut registry = Registry::new(TargetCatalog::default());
    registry.register(Arc::new(OpsgateEcho(opsgate_echo_spec()))).context("registering echo")?;
    let pipeline = Pipeline::new(Arc::new(registry), audit, PipelineConfig::default(), Arc::new(Metrics::default()));
    let mcp = Arc::new(McpState {
        pipeline: Arc::new(pipeline),
        surface: Arc::new(NoSurface),
        server_name: "opsgate-bench".to_string(),
        instructions: None,
    });
    // With a key in the store, anonymous requests are refused: every call is authenticated.
    let identity = Arc::new(Identity::new(IdentityConfig::default(), store.clone()).context("identity")?);
    let state = AppState { mcp, store: store.clone(), http, identity, streams: CancellationToken::new(), hooks: None };
    Ok((opsgate_server::http::app(state), store, data_dir, key.secret))
}

fn opsgate_echo_spec() -> ToolSpec {
    ToolSpec {
        name: ECHO.to_string(),
        title: "Echo".to_string(),
        description: "Returns its text unchanged.".to_string(),
        input_schema: echo_schema(),
        // No output schema: the result is one text block, the same shape the baseline returns.
        output_schema: None,
        effect: Effect::Read,
        target_kind: None,
        idempotent: true,
        open_world: false,
    }
}

struct OpsgateEcho(ToolSpec);

#[async_trait::async_trait]
impl Tool for OpsgateEcho {
    fn spec(&self) -> &ToolSpec {
        &self.0
    }

    async fn call(&self, _context: CallContext, arguments: Map<String, Value>) -> Result<ToolOutput, ToolError> {
        match arguments.get("text") {
            Some(Value::String(text)) => Ok(ToolOutput::text(text.clone())),
            _ => Err(ToolError::InvalidArguments("text must be a string".to_string())),
        }
    }
}
