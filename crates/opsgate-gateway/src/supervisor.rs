//! One task per federated server: connect within the connect timeout, list the tools into the
//! registry, follow the server's `list_changed`, and when the connection ends, take its tools
//! away, wait (exponential backoff) and connect again. A server that fails too often in a short
//! time is parked: left stopped, with the reason in its status. No server waits for another.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use opsgate_server::{Registry, ServerTool};
use opsgate_store::Store;
use rmcp::model::ProtocolVersion;
use rmcp::model::{ClientCapabilities, ClientConfig, Implementation};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, NotificationContext, RunningService};
use rmcp::{ClientHandler, RoleClient};
use tokio::io::AsyncBufReadExt;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::config::{ServerConfig, Transport};
use crate::direct::DirectHttp;
use crate::pin::{self, Quarantined};
use crate::surface::{Catalog, Offer};
use crate::tool::{FederatedTool, Link};

/// Failures within `CRASH_WINDOW` that park a stdio server.
pub const CRASH_BUDGET: u32 = 5;
pub const CRASH_WINDOW: Duration = Duration::from_secs(120);
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A stdio child's stderr lines logged per second; the rest are counted and reported.
const STDERR_LINES_PER_SECOND: u32 = 50;
/// The longest stderr line logged; longer ones are cut.
const STDERR_LINE_CHARS: usize = 1_000;
/// While a server has quarantined tools, how often its pins are read again, so that a tool
/// trusted with `opsgate mcp trust` (another process) comes back without a restart.
const PIN_RECHECK: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Connecting,
    Ready,
    /// Failed; the next attempt is after a backoff.
    Retrying,
    /// A stdio server that failed `CRASH_BUDGET` times within `CRASH_WINDOW`: no more attempts.
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
    /// The `mcp.json` the server's entry came from.
    pub source: std::path::PathBuf,
    pub transport: &'static str,
    pub state: State,
    pub n_tools: usize,
    pub last_error: Option<String>,
    /// From spawning or connecting to the end of `initialize`, on the last successful connect.
    pub connect_latency: Option<Duration>,
    /// Connections that ended or failed since opsgate started.
    pub n_failures: u32,
    /// The MCP revision agreed with the server on the last connect.
    pub protocol: Option<String>,
    /// Whether, on the last connect, `tools/call` went straight to the server (a Streamable HTTP
    /// server on the stateless revision; see `direct`) rather than through rmcp's client.
    pub direct_calls: bool,
    /// Tools whose definition changed since they were pinned: hidden and denied.
    pub quarantined: Vec<Quarantined>,
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

/// What a server's list-change notification asks to list again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Relist {
    Tools,
    /// Resources, resource templates or prompts.
    Offer,
}

/// Receives the server's notifications: its list changes.
#[derive(Clone)]
struct Upstream {
    changed: mpsc::UnboundedSender<Relist>,
}

impl ClientHandler for Upstream {
    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        let _ = self.changed.send(Relist::Tools);
    }

    async fn on_resource_list_changed(&self, _context: NotificationContext<RoleClient>) {
        let _ = self.changed.send(Relist::Offer);
    }

    async fn on_prompt_list_changed(&self, _context: NotificationContext<RoleClient>) {
        let _ = self.changed.send(Relist::Offer);
    }

    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(ClientCapabilities::default(), Implementation::new("opsgate", env!("CARGO_PKG_VERSION")))
    }
}

/// What every supervisor shares.
#[derive(Clone)]
pub struct Shared {
    pub registry: Registry,
    /// Where tool pins live.
    pub store: Store,
    /// Where the servers' resources and prompts go.
    pub catalog: Catalog,
    pub statuses: Statuses,
    pub shutdown: CancellationToken,
}

pub async fn supervise(config: ServerConfig, shared: Shared) {
    let Shared { registry, statuses, shutdown, .. } = &shared;
    let name = config.name.clone();
    let mut failures: Vec<Instant> = Vec::new();
    loop {
        update(statuses, &name, |status| status.state = State::Connecting);
        let outcome = tokio::select! {
            outcome = run_once(&config, &shared) => outcome,
            () = shutdown.cancelled() => Ok(()),
        };
        registry.remove_server(&name);
        shared.catalog.remove(&name);
        if shutdown.is_cancelled() {
            update(statuses, &name, |status| {
                status.state = State::Stopped;
                status.n_tools = 0;
                status.quarantined.clear();
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
        // A crash-looping child is parked; a remote server that is away is retried at the
        // longest backoff for as long as it takes: it may come back by itself.
        let parked = n_recent >= CRASH_BUDGET && matches!(config.transport, Transport::Stdio { .. });
        update(statuses, &name, |status| {
            status.n_tools = 0;
            status.quarantined.clear();
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
                update(statuses, &name, |status| status.state = State::Stopped);
                return;
            }
        }
    }
}

/// One connection's life: connect, list, follow list changes; returns when it ends.
async fn run_once(config: &ServerConfig, shared: &Shared) -> Result<(), String> {
    let (changed, mut changes) = mpsc::unbounded_channel();
    let handler = Upstream { changed };
    let introduction = handler.get_info();
    let started = Instant::now();
    let service = match tokio::time::timeout(config.connect_timeout, connect(config, handler)).await {
        Ok(result) => result?,
        Err(_) => return Err(format!("no answer to initialize within {:?}", config.connect_timeout)),
    };
    let latency = started.elapsed();
    let direct = match (&config.transport, service.peer().peer_info()) {
        (Transport::StreamableHttp { url, headers }, Some(info)) => DirectHttp::new(
            crate::http_client::upstream_client()?,
            url,
            &header_pairs(headers)?,
            &info.protocol_version,
            &introduction,
        ),
        _ => None,
    };
    let link = Arc::new(Link {
        server: config.name.clone(),
        peer: service.peer().clone(),
        direct,
        slots: Semaphore::new(config.max_concurrency),
        call_timeout: config.call_timeout,
        broken: CancellationToken::new(),
    });
    let mut listed = list(config, &link).await?;
    let verdicts = judge(config, &shared.store, &listed).await?;
    let mut n_quarantined = register(config, shared, &link, &listed, verdicts);
    shared.catalog.set(&config.name, list_offer(config, &link).await);
    let protocol = link.peer.peer_info().map(|info| info.protocol_version.to_string());
    let direct_calls = link.direct.is_some();
    tracing::info!(server = %config.name, n_tools = listed.len(), n_quarantined, latency_ms = latency.as_millis() as u64, protocol = ?protocol, "federated server ready");
    update(&shared.statuses, &config.name, |status| {
        status.state = State::Ready;
        status.connect_latency = Some(latency);
        status.protocol = protocol;
        status.direct_calls = direct_calls;
    });
    let mut waiting = std::pin::pin!(service.waiting());
    let mut recheck = tokio::time::interval(PIN_RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            quit = &mut waiting => {
                return match quit {
                    Ok(reason) => Err(format!("the connection ended ({reason:?})")),
                    Err(error) => Err(format!("the connection task failed: {error}")),
                };
            }
            Some(first) = changes.recv() => {
                let mut pending = vec![first];
                while let Ok(next) = changes.try_recv() {
                    pending.push(next);
                }
                if pending.contains(&Relist::Tools) {
                    listed = list(config, &link).await?;
                    let verdicts = judge(config, &shared.store, &listed).await?;
                    n_quarantined = register(config, shared, &link, &listed, verdicts);
                    tracing::info!(server = %config.name, n_tools = listed.len(), n_quarantined, "federated server's tools changed");
                }
                if pending.contains(&Relist::Offer) {
                    shared.catalog.set(&config.name, list_offer(config, &link).await);
                }
            }
            _ = recheck.tick(), if n_quarantined > 0 => {
                // Someone may have trusted the new definitions meanwhile; only a change in what
                // is quarantined is registered (and announced to clients).
                let verdicts = judge(config, &shared.store, &listed).await?;
                if verdicts.quarantined.len() != n_quarantined {
                    n_quarantined = register(config, shared, &link, &listed, verdicts);
                }
            }
            () = link.broken.cancelled() => return Err("a request found the connection broken".to_string()),
            () = shared.shutdown.cancelled() => return Ok(()),
        }
    }
}

async fn list(config: &ServerConfig, link: &Link) -> Result<Vec<rmcp::model::Tool>, String> {
    bounded("tools/list", config.call_timeout, link.peer.list_all_tools()).await
}

/// The server's resources, resource templates and prompts, for the capabilities it declared. A
/// list the server fails to give is logged and left empty: its tools stay usable.
async fn list_offer(config: &ServerConfig, link: &Arc<Link>) -> Offer {
    let capabilities = link.peer.peer_info().map(|info| info.capabilities.clone()).unwrap_or_default();
    let timeout = config.call_timeout;
    let mut offer = Offer { link: link.clone(), resources: Vec::new(), templates: Vec::new(), prompts: Vec::new() };
    if capabilities.resources.is_some() {
        offer.resources =
            or_empty(&config.name, bounded("resources/list", timeout, link.peer.list_all_resources()).await);
        offer.templates = or_empty(
            &config.name,
            bounded("resources/templates/list", timeout, link.peer.list_all_resource_templates()).await,
        );
    }
    if capabilities.prompts.is_some() {
        offer.prompts = or_empty(&config.name, bounded("prompts/list", timeout, link.peer.list_all_prompts()).await);
    }
    offer
}

/// What a list request gave, or nothing (logged) when it failed.
fn or_empty<T>(server: &str, listed: Result<Vec<T>, String>) -> Vec<T> {
    listed.unwrap_or_else(|error| {
        tracing::warn!(server = %server, %error, "federated server's list left empty");
        Vec::new()
    })
}

/// A request to the server within `timeout`; a failure says which request and why.
async fn bounded<T>(
    what: &str,
    timeout: Duration,
    request: impl Future<Output = Result<T, rmcp::ServiceError>>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, request).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(error)) => Err(format!("{what} failed: {error}")),
        Err(_) => Err(format!("no answer to {what} within {timeout:?}")),
    }
}

/// Judges a listing against the server's pins, pinning the tools seen for the first time.
async fn judge(config: &ServerConfig, store: &Store, listed: &[rmcp::model::Tool]) -> Result<pin::Verdicts, String> {
    let server = &config.name;
    let pins = store.tool_pins(server).await.map_err(|error| format!("cannot read the tool pins: {error}"))?;
    let verdicts = pin::judge(server, listed, &pins, &opsgate_store::now_rfc3339());
    if !verdicts.new_pins.is_empty() {
        store.pin_new_tools(&verdicts.new_pins).await.map_err(|error| format!("cannot pin the tools: {error}"))?;
    }
    Ok(verdicts)
}

/// Puts a listing in the registry (which tells clients), the tools whose definition changed
/// quarantined, and updates the server's status. Returns how many are quarantined.
fn register(
    config: &ServerConfig,
    shared: &Shared,
    link: &Arc<Link>,
    listed: &[rmcp::model::Tool],
    verdicts: pin::Verdicts,
) -> usize {
    let server = &config.name;
    for quarantined in &verdicts.quarantined {
        tracing::warn!(server = %server, tool = %quarantined.pinned.tool, changed = %quarantined.changed.join(","), "federated tool quarantined: its definition changed since it was pinned");
    }
    let tools: Vec<ServerTool> = listed
        .iter()
        .map(|tool| {
            let configured = config.effects.get(tool.name.as_ref()).copied();
            ServerTool {
                tool: Arc::new(FederatedTool::new(link.clone(), tool, configured)),
                quarantine: verdicts.quarantine_of(&tool.name).map(Quarantined::reason),
            }
        })
        .collect();
    let set = shared.registry.set_server_tools(server, tools);
    for problem in &set.problems {
        tracing::warn!(server = %server, %problem, "federated tool left out");
    }
    let n_quarantined = verdicts.quarantined.len();
    update(&shared.statuses, server, |status| {
        status.n_tools = set.n_usable;
        status.quarantined = verdicts.quarantined;
    });
    n_quarantined
}

/// The newest revision first (`server/discover`), falling back to the `initialize` handshake of
/// 2025-11-25 for a server that does not know it.
fn lifecycle() -> ClientLifecycleMode {
    ClientLifecycleMode::Auto {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        legacy_version: Some(ProtocolVersion::LATEST_WITH_INITIALIZE),
    }
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
            handler
                .serve_with_lifecycle(transport, lifecycle())
                .await
                .map_err(|error| format!("initialize failed: {error}"))
        }
        Transport::StreamableHttp { url, headers } => {
            use rmcp::transport::StreamableHttpClientTransport;
            use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
            let custom = header_pairs(headers)?.into_iter().collect();
            let transport_config = StreamableHttpClientTransportConfig::with_uri(url.clone()).custom_headers(custom);
            let transport =
                StreamableHttpClientTransport::with_client(crate::http_client::upstream_client()?, transport_config);
            handler
                .serve_with_lifecycle(transport, lifecycle())
                .await
                .map_err(|error| format!("initialize failed: {error}"))
        }
    }
}

/// A server's configured headers as HTTP headers; an invalid one is named.
fn header_pairs(headers: &BTreeMap<String, String>) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, String> {
    headers
        .iter()
        .map(|(name, value)| {
            let name = http::HeaderName::try_from(name.as_str())
                .map_err(|error| format!("header name {name:?} is invalid: {error}"))?;
            let value = http::HeaderValue::try_from(value.as_str())
                .map_err(|_| format!("the value of header {name} is not a valid header value"))?;
            Ok((name, value))
        })
        .collect()
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
