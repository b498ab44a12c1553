//! Notices: "events about these services were stored", "this approval request changed". Every
//! opsgate process on one store hears every notice, its own included, so a client subscribed
//! through one process learns of an event ingested through another, and an agent waiting on
//! an approval wakes when a human decides it anywhere.
//!
//! On PostgreSQL a notice is a `NOTIFY` on one channel, heard through `LISTEN` on a connection
//! of the pool (`PgListener`), which reconnects when the connection drops; notices sent while it
//! was down are lost, so listeners treat a notice as a hint to look, never as the only way to
//! learn something. On SQLite, one process owns the store and notices stay inside it.

use std::sync::{Arc, Once};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::Store;

/// The PostgreSQL channel every opsgate process listens on.
pub const CHANNEL: &str = "opsgate_notices";

/// The most bytes of service names (as JSON strings) in one notice: PostgreSQL caps a payload
/// at 8,000 bytes, and the rest of a notice is a few dozen.
const MAX_SERVICES_BYTES: usize = 7_000;

/// Notices a slow listener may fall behind by before it is told it lagged.
const CAPACITY: usize = 1_024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "notice", rename_all = "snake_case")]
pub enum Notice {
    /// New events about these services were stored.
    Events { services: Vec<String> },
    /// An approval request was decided, expired, executed or failed.
    Approval { id: String },
}

/// Cheap to clone; every clone publishes to, and listens on, the same notices.
#[derive(Debug, Clone)]
pub struct Notices {
    store: Store,
    sender: broadcast::Sender<Notice>,
    /// Starts the PostgreSQL listener on the first `subscribe`: a one-shot command that only
    /// publishes never holds a listening connection.
    listening: Arc<Once>,
}

impl Notices {
    pub fn new(store: Store) -> Notices {
        Notices { store, sender: broadcast::channel(CAPACITY).0, listening: Arc::new(Once::new()) }
    }

    /// Whether notices reach other processes (PostgreSQL), or only this one (SQLite).
    pub fn crosses_processes(&self) -> bool {
        matches!(self.store, Store::Postgres(_))
    }

    /// Sends `notice` to every listener of every process on this store. Never fails the
    /// caller: a notice that cannot be sent is logged, and listeners poll as well. Services are
    /// named once each, in order; a long list goes in several notices, each under PostgreSQL's
    /// payload cap. A notice about no service is not sent.
    pub async fn publish(&self, notice: Notice) {
        match notice {
            Notice::Events { mut services } => {
                services.sort();
                services.dedup();
                let mut chunk: Vec<String> = Vec::new();
                let mut chunk_bytes = 0;
                for service in services {
                    let bytes = serde_json::to_string(&service).map(|text| text.len() + 1).unwrap_or_default();
                    if !chunk.is_empty() && chunk_bytes + bytes > MAX_SERVICES_BYTES {
                        self.send(Notice::Events { services: std::mem::take(&mut chunk) }).await;
                        chunk_bytes = 0;
                    }
                    chunk_bytes += bytes;
                    chunk.push(service);
                }
                if !chunk.is_empty() {
                    self.send(Notice::Events { services: chunk }).await;
                }
            }
            notice => self.send(notice).await,
        }
    }

    async fn send(&self, notice: Notice) {
        match &self.store {
            Store::Sqlite { .. } => {
                let _ = self.sender.send(notice);
            }
            Store::Postgres(pool) => {
                let payload = serde_json::to_string(&notice).unwrap_or_default();
                let sent = sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(&payload).execute(pool).await;
                if let Err(error) = sent {
                    tracing::warn!(%error, "could not send a notice to the other opsgate processes");
                }
            }
        }
    }

    /// Every notice from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        let receiver = self.sender.subscribe();
        if let Store::Postgres(pool) = &self.store {
            let (pool, sender) = (pool.clone(), self.sender.clone());
            self.listening.call_once(|| {
                tokio::spawn(listen(pool, sender));
            });
        }
        receiver
    }
}

/// Passes the channel's notifications to `sender` until the pool closes, reconnecting as
/// needed.
async fn listen(pool: sqlx::PgPool, sender: broadcast::Sender<Notice>) {
    loop {
        let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(sqlx::Error::PoolClosed) => return,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for notices; retrying in 1 s");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(error) = listener.listen(CHANNEL).await {
            tracing::warn!(%error, "cannot listen for notices; retrying in 1 s");
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            continue;
        }
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => match serde_json::from_str::<Notice>(notification.payload()) {
                    Ok(notice) => {
                        let _ = sender.send(notice);
                    }
                    Err(error) => tracing::warn!(%error, payload = notification.payload(), "an unreadable notice"),
                },
                // The connection dropped; the next `try_recv` reconnects and listens again.
                Ok(None) => tracing::warn!("the notice connection dropped; notices sent meanwhile are lost"),
                Err(sqlx::Error::PoolClosed) => return,
                Err(error) => {
                    tracing::warn!(%error, "listening for notices failed; reconnecting in 1 s");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    break;
                }
            }
        }
    }
}
