//! The audit writer: one task that appends records in batches (group commit), so a call waits for
//! its own record to be durable without paying one fsync per call.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::{AuditEntry, AuditReceipt, Store, StoreError};

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

type Reply = oneshot::Sender<Result<AuditReceipt, String>>;

/// The handle calls use. Cloning is cheap; when every handle is dropped the writer drains its
/// queue, commits and stops.
#[derive(Debug, Clone)]
pub struct AuditLog {
    sender: mpsc::Sender<(AuditEntry, Reply)>,
}

impl AuditLog {
    /// Starts the writer. The returned join handle finishes after the last handle is dropped and
    /// every queued record is committed: await it at shutdown to flush.
    ///
    /// The writer is one blocking thread. On SQLite it owns the appender's connection, so a batch
    /// goes from the queue to the disk and back to its callers without crossing another task or
    /// thread: under load, every hand-off costs a scheduling delay that every caller waits for.
    /// On PostgreSQL it drives the async append on the runtime it was started from.
    pub fn spawn(store: Store, config: AuditWriterConfig) -> (AuditLog, tokio::task::JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(config.queue);
        let runtime = tokio::runtime::Handle::current();
        let task = tokio::task::spawn_blocking(move || match store {
            Store::Sqlite { appender, .. } => {
                write_loop(receiver, config.max_batch, |entries| appender.append(entries).map_err(StoreError::Sqlite))
            }
            store => {
                write_loop(receiver, config.max_batch, |entries| runtime.block_on(store.append_audit(entries.clone())))
            }
        });
        (AuditLog { sender }, task)
    }

    /// Appends one record and returns once it is committed.
    pub async fn record(&self, entry: AuditEntry) -> Result<AuditReceipt, StoreError> {
        let (reply, receive) = oneshot::channel();
        self.sender.send((entry, reply)).await.map_err(|_| StoreError::Closed)?;
        match receive.await {
            Ok(Ok(record)) => Ok(record),
            Ok(Err(message)) => Err(StoreError::Internal(message)),
            Err(_) => Err(StoreError::Closed),
        }
    }
}

/// A busy database (another process holding the write lock past the busy timeout) is worth a few
/// more tries; anything else is reported to the callers, whose calls then fail closed.
const MAX_RETRIES: u32 = 3;

fn retry_delay(attempt: u32) -> Duration {
    Duration::from_millis(50 * u64::from(attempt))
}

/// Takes whatever is queued (up to `max_batch`), appends it as one batch with `append`, retrying a
/// busy database, and answers each caller; until every sender is gone and the queue is empty.
fn write_loop(
    mut receiver: mpsc::Receiver<(AuditEntry, Reply)>,
    max_batch: usize,
    mut append: impl FnMut(&Arc<[AuditEntry]>) -> Result<Vec<AuditReceipt>, StoreError>,
) {
    let mut batch: Vec<(AuditEntry, Reply)> = Vec::with_capacity(max_batch);
    while receiver.blocking_recv_many(&mut batch, max_batch) > 0 {
        let (entries, replies): (Vec<AuditEntry>, Vec<Reply>) = batch.drain(..).unzip();
        let entries: Arc<[AuditEntry]> = entries.into();
        let mut attempt = 0;
        let result = loop {
            match append(&entries) {
                Err(error) if attempt < MAX_RETRIES && is_transient(&error) => {
                    attempt += 1;
                    tracing::warn!(%error, attempt, "audit append retried");
                    std::thread::sleep(retry_delay(attempt));
                }
                other => break other,
            }
        };
        reply_all(replies, result);
    }
}

/// Sends each caller its receipt, or the error that failed the whole batch.
fn reply_all(replies: Vec<Reply>, result: Result<Vec<AuditReceipt>, StoreError>) {
    match result {
        Ok(receipts) => {
            for (reply, receipt) in replies.into_iter().zip(receipts) {
                let _ = reply.send(Ok(receipt));
            }
        }
        Err(error) => {
            tracing::error!(%error, n_records = replies.len(), "audit append failed");
            let message = error.to_string();
            for reply in replies {
                let _ = reply.send(Err(message.clone()));
            }
        }
    }
}

fn is_transient(error: &StoreError) -> bool {
    let error = match error {
        StoreError::Query(error) => error,
        StoreError::Sqlite(error) => return crate::sqlite::is_transient(error),
        _ => return false,
    };
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
