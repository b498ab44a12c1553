//! Shared test fixtures: a few tools with known behaviour and an opsgate app on a loopback port.

// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use opsgate_core::{CallContext, Effect, Row, Target, Tool, ToolError, ToolOutput, ToolSpec, parse_arguments};
use opsgate_server::http::{AppState, HttpConfig};
use opsgate_server::identity::{Identity, IdentityConfig};
use opsgate_server::metrics::Metrics;
use opsgate_server::surface::{NoSurface, Surface};
use opsgate_server::{ChangeFeed, McpState, Pipeline, PipelineConfig, Registry, TargetCatalog};
use opsgate_store::{AuditLog, AuditWriterConfig, Store};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

pub fn spec(name: &str, effect: Effect, target_kind: Option<&str>, properties: Value, required: &[&str]) -> ToolSpec {
    let schema =
        json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false});
    ToolSpec {
        name: name.to_string(),
        title: name.to_string(),
        description: format!("test tool {name}"),
        input_schema: schema.as_object().cloned().unwrap_or_default(),
        output_schema: Some(Map::from_iter([("type".to_string(), json!("object"))])),
        effect,
        target_kind: target_kind.map(str::to_string),
        idempotent: true,
        open_world: false,
    }
}

/// Echoes its text, the resolved target, and `n` rows.
pub struct Echo(pub ToolSpec);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EchoArgs {
    text: String,
    #[serde(default)]
    rows: usize,
}

#[async_trait::async_trait]
impl Tool for Echo {
    fn spec(&self) -> &ToolSpec {
        &self.0
    }

    async fn call(&self, context: CallContext, arguments: Map<String, Value>) -> Result<ToolOutput, ToolError> {
        let args: EchoArgs = parse_arguments(arguments)?;
        let target = context.target.map(|target| target.name).unwrap_or_else(|| "none".to_string());
        Ok(ToolOutput {
            summary: vec![format!("echo: {} (target {target})", args.text)],
            fields: Map::from_iter([("text".to_string(), json!(args.text)), ("target".to_string(), json!(target))]),
            columns: vec!["n".to_string()],
            rows: (0..args.rows)
                .map(|index| Row { cells: vec![index.to_string()], item: json!({"n": index}) })
                .collect(),
            ..ToolOutput::default()
        })
    }
}

/// Sleeps for the given seconds: for timeouts and shutdown.
pub struct Sleep(pub ToolSpec);

#[async_trait::async_trait]
impl Tool for Sleep {
    fn spec(&self) -> &ToolSpec {
        &self.0
    }

    async fn call(&self, _context: CallContext, arguments: Map<String, Value>) -> Result<ToolOutput, ToolError> {
        let seconds = arguments.get("seconds").and_then(Value::as_f64).unwrap_or(0.0);
        tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
        Ok(ToolOutput::text(format!("slept {seconds}s")))
    }
}

/// A write tool that records whether it ever ran: policy must stop it first.
pub struct Write(pub ToolSpec, pub Arc<std::sync::atomic::AtomicUsize>);

#[async_trait::async_trait]
impl Tool for Write {
    fn spec(&self) -> &ToolSpec {
        &self.0
    }

    async fn call(&self, _context: CallContext, _arguments: Map<String, Value>) -> Result<ToolOutput, ToolError> {
        self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(ToolOutput::text("wrote"))
    }
}

pub struct TestServer {
    pub address: SocketAddr,
    pub store: Store,
    pub write_runs: Arc<std::sync::atomic::AtomicUsize>,
    pub shutdown: CancellationToken,
    pub server: tokio::task::JoinHandle<std::io::Result<()>>,
    /// The registry's change feed, for tests that announce changes.
    pub changes: ChangeFeed,
    /// The state the app was built from: its identity stage, and its middleware for tests that
    /// mount it elsewhere.
    pub state: AppState,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.address)
    }
}

pub fn registry(write_runs: Arc<std::sync::atomic::AtomicUsize>) -> Registry {
    let mut targets = TargetCatalog::default();
    for (name, environment) in [("staging", "staging"), ("prod", "production")] {
        targets.add(Target {
            name: name.to_string(),
            kind: "echo".to_string(),
            environment: environment.to_string(),
            protected: environment == "production",
        });
    }
    let mut registry = Registry::new(targets);
    let tools: Vec<Arc<dyn Tool>> = vec![
        Arc::new(Echo(spec(
            "echo",
            Effect::Read,
            Some("echo"),
            json!({"text": {"type": "string"}, "rows": {"type": "integer"}}),
            &["text"],
        ))),
        Arc::new(Sleep(spec("sleep", Effect::Read, None, json!({"seconds": {"type": "number"}}), &[]))),
        Arc::new(Write(spec("restart_thing", Effect::Write, None, json!({}), &[]), write_runs)),
    ];
    for tool in tools {
        registry.register(tool).expect("test tools register");
    }
    registry
}

pub async fn start(config: PipelineConfig) -> anyhow::Result<TestServer> {
    start_with(config, Vec::new(), Arc::new(NoSurface)).await
}

/// `start` with more tools beside the standard ones, and a surface of the test's choosing.
pub async fn start_with(
    config: PipelineConfig,
    extra_tools: Vec<Arc<dyn Tool>>,
    surface: Arc<dyn Surface>,
) -> anyhow::Result<TestServer> {
    start_with_identity(config, extra_tools, surface, |_| IdentityConfig::default()).await
}

/// `start_with` and an identity configuration, made once the server's public URL is known.
pub async fn start_with_identity(
    config: PipelineConfig,
    extra_tools: Vec<Arc<dyn Tool>>,
    surface: Arc<dyn Surface>,
    identity: impl FnOnce(&str) -> IdentityConfig,
) -> anyhow::Result<TestServer> {
    let dir = tempfile::tempdir()?;
    let store = Store::open_sqlite(dir.path()).await?;
    let (audit, _writer) = AuditLog::spawn(store.clone(), AuditWriterConfig::default());
    let write_runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut registry = registry(write_runs.clone());
    for tool in extra_tools {
        registry.register(tool)?;
    }
    let changes = registry.changes().clone();
    let pipeline = Pipeline::new(Arc::new(registry), audit, config, Arc::new(Metrics::default()));
    let mcp = Arc::new(McpState {
        pipeline: Arc::new(pipeline),
        surface,
        server_name: "opsgate-test".to_string(),
        instructions: None,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let mut http = HttpConfig::for_listen_address(address);
    http.max_body_bytes = 64 * 1024;
    http.shutdown_grace = Duration::from_secs(5);
    let identity = Arc::new(Identity::new(identity(&http.public_url), store.clone())?);
    let state = AppState { mcp, store: store.clone(), http, identity, streams: CancellationToken::new(), hooks: None };
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let app_state = state.clone();
    let server =
        tokio::spawn(
            async move { opsgate_server::http::run(listener, state, async move { stop.cancelled().await }).await },
        );
    Ok(TestServer { address, store, write_runs, shutdown, server, changes, state: app_state, _dir: dir })
}
pub mod identity;
