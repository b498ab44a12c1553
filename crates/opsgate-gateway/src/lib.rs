//! Federation: other MCP servers behind opsgate. Their tools join the registry as
//! `mcp__<server>__<tool>` and every call to them goes through the same pipeline as a built-in
//! tool (identity, policy, approvals, redaction, audit with the server's name).
//!
//! - `config`: `mcp.json`, project over global.
//! - `supervisor`: one task per server (connect, list, follow changes, restart with backoff, park).
//! - `tool`: a server's tool as an opsgate `Tool`.
//! - `pin`: tool definitions pinned on first sight; a changed one is quarantined.
//! - `surface`: the servers' resources and prompts beside opsgate's own.
//! - `env`: what a stdio child inherits.
//! - `http_client`: the pooling HTTP client for Streamable HTTP upstreams.
//! - `direct`: `tools/call` posted straight to an upstream on the stateless revision.

pub mod config;
mod direct;
pub mod env;
mod http_client;
pub mod pin;
pub mod supervisor;
pub mod surface;
pub mod tool;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use opsgate_server::Registry;
use opsgate_store::Store;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use config::{Loaded, Problem, ServerConfig, Transport};
pub use pin::Quarantined;
pub use supervisor::{ServerStatus, State};
pub use surface::{Catalog, FederatedSurface};

/// The running federation: a supervisor per configured server.
pub struct Gateway {
    statuses: supervisor::Statuses,
    /// The longest connect timeout of its servers: how long `settle` waits at most.
    longest_connect: Duration,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl Gateway {
    /// Starts a supervisor for each server and returns at once; tools appear in `registry` as
    /// their servers connect, checked against their pins in `store`, and their resources and
    /// prompts in `catalog`.
    pub fn start(registry: &Registry, store: &Store, catalog: &Catalog, servers: Vec<ServerConfig>) -> Gateway {
        let statuses: supervisor::Statuses = Arc::new(Mutex::new(BTreeMap::new()));
        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let longest_connect = servers.iter().map(|server| server.connect_timeout).max().unwrap_or_default();
        for server in servers {
            statuses.lock().unwrap_or_else(PoisonError::into_inner).insert(
                server.name.clone(),
                ServerStatus {
                    name: server.name.clone(),
                    source: server.source.clone(),
                    transport: server.transport.label(),
                    state: State::Connecting,
                    n_tools: 0,
                    last_error: None,
                    connect_latency: None,
                    n_failures: 0,
                    protocol: None,
                    direct_calls: false,
                    quarantined: Vec::new(),
                },
            );
            let shared = supervisor::Shared {
                registry: registry.clone(),
                store: store.clone(),
                catalog: catalog.clone(),
                statuses: statuses.clone(),
                shutdown: shutdown.clone(),
            };
            tasks.spawn(supervisor::supervise(server, shared));
        }
        Gateway { statuses, longest_connect, shutdown, tasks }
    }

    /// Every server's status, by name.
    pub fn statuses(&self) -> Vec<ServerStatus> {
        self.statuses.lock().unwrap_or_else(PoisonError::into_inner).values().cloned().collect()
    }

    /// Waits until every server has connected or failed once (at most the longest connect
    /// timeout): what a one-shot command calling a federated tool waits for.
    pub async fn settle(&self) {
        let deadline = tokio::time::Instant::now() + self.longest_connect + Duration::from_millis(100);
        while tokio::time::Instant::now() < deadline {
            if self.statuses().iter().all(ServerStatus::settled) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops every supervisor: connections are closed and stdio children end.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}
