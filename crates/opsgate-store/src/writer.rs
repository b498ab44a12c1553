//! The audit writer: one task that appends records in batches (group commit), so a call waits for
//! its own record to be durable without paying one fsync per call.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::{AuditEntry, AuditRecord, Store, StoreError};

#[derive(Debug, Clone, Copy)]
pub struct AuditWriterConfig {
    /// The most records committed in one transaction.
    pub max_batch: usize,
    /// Requests queued before callers wait for room: backpressure instead of unbounded memory.
    pub queue: usize,
}

impl Default for AuditWriterConfig {
    fn default() -> Self {
        AuditWriterConfig { max_batch: 512, queue: 8_192 }
    }
}

type Reply = oneshot::Sender<Result<AuditRecord, String>>;

/// The handle calls use. Cloning is cheap; when every handle is dropped the writer drains its
/// queue, commits and stops.
#[derive(Debug, Clone)]
pub struct AuditLog {
    sender: mpsc::Sender<(AuditEntry, Reply)>,
}

impl AuditLog {
    /// Starts the writer task. The returned join handle finishes after the last handle is
    /// dropped and every queued record is committed: await it at shutdown to flush.
    pub fn spawn(store: Store, config: AuditWriterConfig) -> (AuditLog, tokio::task::JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(config.queue);
        let task = tokio::spawn(write_loop(store, receiver, config.max_batch));
        (AuditLog { sender }, task)
    }

    /// Appends one record and returns once it is committed.
    pub async fn record(&self, entry: AuditEntry) -> Result<AuditRecord, StoreError> {
        let (reply, receive) = oneshot::channel();
        self.sender.send((entry, reply)).await.map_err(|_| StoreError::Closed)?;
        match receive.await {
            Ok(Ok(record)) => Ok(record),
            Ok(Err(message)) => Err(StoreError::Query(sqlx::Error::Protocol(message))),
            Err(_) => Err(StoreError::Closed),
        }
    }
}

async fn write_loop(store: Store, mut receiver: mpsc::Receiver<(AuditEntry, Reply)>, max_batch: usize) {
    let mut batch: Vec<(AuditEntry, Reply)> = Vec::with_capacity(max_batch);
    while receiver.recv_many(&mut batch, max_batch).await > 0 {
        let (entries, replies): (Vec<AuditEntry>, Vec<Reply>) = batch.drain(..).unzip();
        match append_with_retry(&store, &entries).await {
            Ok(records) => {
                for (reply, record) in replies.into_iter().zip(records) {
                    let _ = reply.send(Ok(record));
                }
            }
            Err(error) => {
                tracing::error!(%error, n_records = entries.len(), "audit append failed");
                let message = error.to_string();
                for reply in replies {
                    let _ = reply.send(Err(message.clone()));
                }
            }
        }
    }
}

/// A busy database (another process holding the write lock past the busy timeout) is worth a few
/// more tries; anything else is reported to the callers, whose calls then fail closed.
async fn append_with_retry(store: &Store, entries: &[AuditEntry]) -> Result<Vec<AuditRecord>, StoreError> {
    let mut attempt = 0;
    loop {
        match store.append_audit(entries).await {
            Err(StoreError::Query(error)) if attempt < 3 && is_transient(&error) => {
                attempt += 1;
                tracing::warn!(%error, attempt, "audit append retried");
                tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
            }
            other => return other,
        }
    }
}

fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(database) => {
            let code = database.code().unwrap_or_default();
            // SQLite busy/locked; PostgreSQL serialization failure and deadlock.
            matches!(code.as_ref(), "5" | "6" | "517" | "40001" | "40P01")
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) => true,
        _ => false,
    }
}
