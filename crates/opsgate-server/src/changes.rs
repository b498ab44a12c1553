//! The change feed: anything that alters what the server exposes (a downstream server's tools
//! came and went, a resource was rewritten) announces it here, and the MCP handler forwards it to
//! every client listening (`subscriptions/listen` in 2026-07-28, the session stream in 2025-11-25).

use tokio::sync::broadcast;

/// One announcement. Deliberately coarse: clients re-list on a `*ListChanged`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    ToolsListChanged,
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated { uri: String },
}

/// Cheap to clone; every clone publishes to the same listeners.
#[derive(Debug, Clone)]
pub struct ChangeFeed {
    sender: broadcast::Sender<Change>,
}

/// Changes are rare and listeners drain them at once; a listener that still falls this far behind
/// is told it lagged and re-announces every list (see `OpsgateMcp::listen`).
const FEED_CAPACITY: usize = 64;

impl Default for ChangeFeed {
    fn default() -> Self {
        ChangeFeed { sender: broadcast::channel(FEED_CAPACITY).0 }
    }
}

impl ChangeFeed {
    /// Announces `change` to everyone listening now; with no listener it goes nowhere, which is
    /// right: a client that connects later lists afresh anyway.
    pub fn publish(&self, change: Change) {
        let n_listeners = self.sender.send(change).unwrap_or(0);
        tracing::debug!(n_listeners, "change announced");
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.sender.subscribe()
    }
}
