//! One task per federated server: connect within the connect timeout, list the tools into the
//! registry, follow the server's `list_changed`, and when the connection ends, take its tools
//! away, wait (exponential backoff) and connect again. A server that fails too often in a short
//! time is parked: left stopped, with the reason in its status. No server waits for another.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use opsgate_core::Tool;
use opsgate_server::Registry;
use rmcp::model::{ClientCapabilities, ClientConfig, Implementation};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use tokio::io::AsyncBufReadExt;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::config::{ServerConfig, Transport};
use crate::tool::{FederatedTool, Link};

/// Failures within `CRASH_WINDOW` that park a server.
pub const CRASH_BUDGET: u32 = 5;
pub const CRASH_WINDOW: Duration = Duration::from_secs(120);
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A stdio child's stderr lines logged per second; the rest are counted and reported.
const STDERR_LINES_PER_SECOND: u32 = 50;
/// The longest stderr line logged; longer ones are cut.
const STDERR_LINE_CHARS: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Connecting,
    Ready,
    /// Failed; the next attempt is after a backoff.
    Retrying,
    /// Failed `CRASH_BUDGET` times within `CRASH_WINDOW`: no more attempts.
    Parked,
    Stopped,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Connecting => "connecting",
            State::Ready => "ready",
            State::Retrying => "retrying",
            State::Parked => "parked",
            State::Stopped => "stopped",
        }
    }
}

/// What `opsgate mcp list` and `doctor` show about a server.
#[derive(Debug, Clone)]
pub struct ServerStatus {
    pub name: String,
    pub transport: &'static str,
    pub state: State,
    pub n_tools: usize,
    pub last_error: Option<String>,
    /// From spawning or connecting to the end of `initialize`, on the last successful connect.
    pub connect_latency: Option<Duration>,
    /// Connections that ended or failed since opsgate started.
    pub n_failures: u32,
}

impl ServerStatus {
    /// Whether the server has been tried at least once: it connected or it failed.
    pub fn settled(&self) -> bool {
        self.connect_latency.is_some() || self.n_failures > 0
    }
}

pub type Statuses = Arc<Mutex<BTreeMap<String, ServerStatus>>>;

fn update(statuses: &Statuses, name: &str, change: impl FnOnce(&mut ServerStatus)) {
    if let Some(status) = statuses.lock().unwrap_or_else(PoisonError::into_inner).get_mut(name) {
        change(status);
    }
}

/// Receives the server's notifications; today only `tools/list_changed` matters.
#[derive(Clone)]
struct Upstream {
    tools_changed: mpsc::UnboundedSender<()>,
}

impl ClientHandler for Upstream {
    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        let _ = self.tools_changed.send(());
    }

    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(ClientCapabilities::default(), Implementation::new("opsgate", env!("CARGO_PKG_VERSION")))
    }
}

pub async fn supervise(config: ServerConfig, registry: Registry, statuses: Statuses, shutdown: CancellationToken) {
    let name = config.name.clone();
    let mut failures: Vec<Instant> = Vec::new();
    loop {
        update(&statuses, &name, |status| status.state = State::Connecting);
        let outcome = tokio::select! {
            outcome = run_once(&config, &registry, &statuses, &shutdown) => outcome,
            () = shutdown.cancelled() => Ok(()),
        };
        registry.remove_server(&name);
        if shutdown.is_cancelled() {
            update(&statuses, &name, |status| {
                status.state = State::Stopped;
                status.n_tools = 0;
            });
            return;
        }
        let reason = match outcome {
            Ok(()) => "the connection closed".to_string(),
            Err(reason) => reason,
        };
        let now = Instant::now();
        failures.retain(|at| now.duration_since(*at) < CRASH_WINDOW);
        failures.push(now);
        let n_recent = failures.len() as u32;
        tracing::warn!(server = %name, reason = %reason, n_recent, "federated server failed");
        let parked = n_recent >= CRASH_BUDGET;
        update(&statuses, &name, |status| {
            status.n_tools = 0;
            status.n_failures += 1;
            status.state = if parked { State::Parked } else { State::Retrying };
            status.last_error = Some(if parked {
                format!("{reason}; parked after {n_recent} failures within {}s", CRASH_WINDOW.as_secs())
            } else {
                reason
            });
        });
        if parked {
            tracing::error!(server = %name, "federated server parked: it failed {n_recent} times within {}s", CRASH_WINDOW.as_secs());
            return;
        }
        let backoff = FIRST_BACKOFF.saturating_mul(1 << (n_recent - 1).min(16)).min(MAX_BACKOFF);
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = shutdown.cancelled() => {
                update(&statuses, &name, |status| status.state = State::Stopped);
                return;
            }
        }
    }
}

/// One connection's life: connect, list, follow list changes; returns when it ends.
async fn run_once(
    config: &ServerConfig,
    registry: &Registry,
    statuses: &Statuses,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let (tools_changed, mut changes) = mpsc::unbounded_channel();
    let handler = Upstream { tools_changed };
    let started = Instant::now();
    let service = match tokio::time::timeout(config.connect_timeout, connect(config, handler)).await {
        Ok(result) => result?,
        Err(_) => return Err(format!("no answer to initialize within {:?}", config.connect_timeout)),
    };
    let latency = started.elapsed();
    let link = Arc::new(Link {
        server: config.name.clone(),
        peer: service.peer().clone(),
        slots: Semaphore::new(config.max_concurrency),
        call_timeout: config.call_timeout,
    });
    let n_tools = relist(config, registry, &link).await?;
    tracing::info!(server = %config.name, n_tools, latency_ms = latency.as_millis() as u64, "federated server ready");
    update(statuses, &config.name, |status| {
        status.state = State::Ready;
        status.n_tools = n_tools;
        status.connect_latency = Some(latency);
    });
    let mut waiting = std::pin::pin!(service.waiting());
    loop {
        tokio::select! {
            quit = &mut waiting => {
                return match quit {
                    Ok(reason) => Err(format!("the connection ended ({reason:?})")),
                    Err(error) => Err(format!("the connection task failed: {error}")),
                };
            }
            Some(()) = changes.recv() => {
                while changes.try_recv().is_ok() {}
                let n_tools = relist(config, registry, &link).await?;
                tracing::info!(server = %config.name, n_tools, "federated server's tools changed");
                update(statuses, &config.name, |status| status.n_tools = n_tools);
            }
            () = shutdown.cancelled() => return Ok(()),
        }
    }
}

/// Lists the server's tools into the registry (which tells clients); returns how many.
async fn relist(config: &ServerConfig, registry: &Registry, link: &Arc<Link>) -> Result<usize, String> {
    let listed = match tokio::time::timeout(config.call_timeout, link.peer.list_all_tools()).await {
        Ok(Ok(tools)) => tools,
        Ok(Err(error)) => return Err(format!("tools/list failed: {error}")),
        Err(_) => return Err(format!("no answer to tools/list within {:?}", config.call_timeout)),
    };
    let tools: Vec<Arc<dyn Tool>> = listed
        .iter()
        .map(|tool| {
            let configured = config.effects.get(tool.name.as_ref()).copied();
            Arc::new(FederatedTool::new(link.clone(), tool, configured)) as Arc<dyn Tool>
        })
        .collect();
    let n_listed = tools.len();
    let problems = registry.set_server_tools(&config.name, tools);
    for problem in &problems {
        tracing::warn!(server = %config.name, %problem, "federated tool left out");
    }
    Ok(n_listed - problems.len())
}

async fn connect(config: &ServerConfig, handler: Upstream) -> Result<RunningService<RoleClient, Upstream>, String> {
    match &config.transport {
        Transport::Stdio { command, args, env, cwd } => {
            let mut child = tokio::process::Command::new(command);
            child.args(args).env_clear().envs(crate::env::child_env(std::env::vars(), &config.allow_env, env));
            if let Some(cwd) = cwd {
                child.current_dir(cwd);
            }
            let (transport, stderr) = rmcp::transport::TokioChildProcess::builder(child)
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|error| format!("cannot start {command:?}: {error}"))?;
            if let Some(stderr) = stderr {
                tokio::spawn(drain_stderr(config.name.clone(), stderr));
            }
            handler.serve(transport).await.map_err(|error| format!("initialize failed: {error}"))
        }
        Transport::StreamableHttp { url, headers } => {
            use rmcp::transport::StreamableHttpClientTransport;
            use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
            let mut custom = std::collections::HashMap::new();
            for (name, value) in headers {
                let name = http::HeaderName::try_from(name.as_str())
                    .map_err(|error| format!("header name {name:?} is invalid: {error}"))?;
                let value = http::HeaderValue::try_from(value.as_str())
                    .map_err(|_| format!("the value of header {name} is not a valid header value"))?;
                custom.insert(name, value);
            }
            let transport_config = StreamableHttpClientTransportConfig::with_uri(url.clone()).custom_headers(custom);
            handler
                .serve(StreamableHttpClientTransport::from_config(transport_config))
                .await
                .map_err(|error| format!("initialize failed: {error}"))
        }
    }
}

/// Logs a child's stderr line by line under its server's name, at most
/// `STDERR_LINES_PER_SECOND`; a flood is counted, not logged, and never blocks the child.
async fn drain_stderr(server: String, stderr: tokio::process::ChildStderr) {
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let mut window = Instant::now();
    let (mut n_logged, mut n_dropped) = (0u32, 0u64);
    loop {
        let line = match lines.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => break,
            // Not UTF-8: skip the line rather than stop draining.
            Err(error) if error.kind() == std::io::ErrorKind::InvalidData => continue,
            Err(_) => break,
        };
        if window.elapsed() >= Duration::from_secs(1) {
            if n_dropped > 0 {
                tracing::warn!(server = %server, n_dropped, "federated server's stderr: lines dropped (more than {STDERR_LINES_PER_SECOND}/s)");
            }
            window = Instant::now();
            n_logged = 0;
            n_dropped = 0;
        }
        if n_logged >= STDERR_LINES_PER_SECOND {
            n_dropped += 1;
            continue;
        }
        n_logged += 1;
        let line: String = line.chars().take(STDERR_LINE_CHARS).collect();
        tracing::info!(server = %server, stderr = %line, "federated server");
    }
}
