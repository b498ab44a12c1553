//! The audit writer: appends records in batches (group commit), so a call waits for its own record
//! to be durable without paying one fsync per call.

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
    /// SQLite: the write connection, on which `record_alone` commits and flushes on the caller's
    /// thread.
    alone: Option<crate::sqlite::Appender>,
}

impl AuditLog {
    /// Starts the writer. The returned join handle finishes after the last handle is dropped and
    /// every queued record is committed: await it at shutdown to flush.
    ///
    /// On SQLite the writer is two blocking threads in a pipeline. The first owns the appender's
    /// connection: it takes what is queued and commits it as one batch, without waiting for the
    /// disk. The second flushes the write-ahead log and only then answers the callers of every
    /// batch committed before the flush. So under load the next batch is inserted while the
    /// previous one waits for the disk, and one flush covers every batch that committed
    /// meanwhile. When nothing else is queued there is nothing to overlap: the first thread
    /// flushes and answers itself, which spares the call a hand-over between threads. No record
    /// is acknowledged before it is on disk.
    ///
    /// On PostgreSQL one thread drives the async append (which commits durably) on the runtime it
    /// was started from.
    pub fn spawn(store: Store, config: AuditWriterConfig) -> (AuditLog, tokio::task::JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(config.queue);
        let alone = match &store {
            Store::Sqlite { appender, .. } => Some(appender.clone()),
            _ => None,
        };
        let runtime = tokio::runtime::Handle::current();
        let task = tokio::task::spawn_blocking(move || match store {
            Store::Sqlite { appender, .. } => {
                let (committed, to_flush) = std::sync::mpsc::channel::<Committed>();
                let flusher = appender.clone();
                let flushing = runtime.spawn_blocking(move || flush_loop(|| flusher.sync(), &to_flush));
                write_loop(
                    receiver,
                    config.max_batch,
                    |entries| appender.append_unsynced(entries).map_err(StoreError::Sqlite),
                    |replies, result, queue_empty| {
                        deliver_committed(replies, result, queue_empty, || appender.sync(), &committed);
                    },
                );
                drop(committed);
                if runtime.block_on(flushing).is_err() {
                    tracing::error!("the audit flush thread panicked");
                }
            }
            store => write_loop(
                receiver,
                config.max_batch,
                |entries| runtime.block_on(store.append_audit(entries)),
                |replies, result, _| reply_all(replies, result),
            ),
        });
        (AuditLog { sender, alone }, task)
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

    /// `record`, for a call with no other call in flight. There is no batch for it to join
    /// then, and handing the record to the writer thread and the receipt back costs a thread
    /// wake-up each way on top of the flush (about 45 µs of the 0.25 ms a lone call waited for
    /// its record, measured in the federation benchmark). So on SQLite, when nothing is queued
    /// for the writer and the write connection and the database's write lock are free at once,
    /// the record is appended and the log flushed on this thread, which it blocks for that long
    /// (a fraction of a millisecond; never for a lock); otherwise the writer takes it. Under
    /// load this would take a runtime thread from the other calls for every flush, and lose the
    /// group commit, so busy callers use `record`.
    pub async fn record_alone(&self, entry: AuditEntry) -> Result<AuditReceipt, StoreError> {
        if let Some(appender) = &self.alone
            && self.sender.capacity() == self.sender.max_capacity()
            && let Some(appended) = appender.try_append_unsynced(std::slice::from_ref(&entry))
        {
            let receipts = appended.map_err(StoreError::Sqlite)?;
            // Acknowledged only once the log holding it is on disk, like every other record.
            appender.sync()?;
            return receipts
                .into_iter()
                .next()
                .ok_or_else(|| StoreError::Internal("the append returned no receipt".to_string()));
        }
        self.record(entry).await
    }
}

/// A busy database (another process holding the write lock past the busy timeout) is worth a few
/// more tries; anything else is reported to the callers, whose calls then fail closed.
const MAX_RETRIES: u32 = 3;

fn retry_delay(attempt: u32) -> Duration {
    Duration::from_millis(50 * u64::from(attempt))
}

/// Takes whatever is queued (up to `max_batch`), appends it as one batch with `append`, retrying a
/// busy database, and hands the callers and the outcome to `deliver`, saying whether the queue
/// was empty after the append; until every sender is gone and the queue is empty.
fn write_loop(
    mut receiver: mpsc::Receiver<(AuditEntry, Reply)>,
    max_batch: usize,
    mut append: impl FnMut(&[AuditEntry]) -> Result<Vec<AuditReceipt>, StoreError>,
    mut deliver: impl FnMut(Vec<Reply>, Result<Vec<AuditReceipt>, StoreError>, bool),
) {
    let mut batch: Vec<(AuditEntry, Reply)> = Vec::with_capacity(max_batch);
    let mut entries: Vec<AuditEntry> = Vec::with_capacity(max_batch);
    while receiver.blocking_recv_many(&mut batch, max_batch) > 0 {
        let mut replies = Vec::with_capacity(batch.len());
        for (entry, reply) in batch.drain(..) {
            entries.push(entry);
            replies.push(reply);
        }
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
        entries.clear();
        deliver(replies, result, receiver.is_empty());
    }
}

/// Callers of one committed batch and where their records landed, waiting for a flush.
type Committed = (Vec<Reply>, Vec<AuditReceipt>);

/// What the SQLite writer does with a batch it appended: when nothing else is queued it flushes
/// (`sync`) and answers the callers itself, as there is no next batch to insert meanwhile;
/// otherwise the flush thread (`to_flush`) does. A failed append is answered at once.
fn deliver_committed(
    replies: Vec<Reply>,
    result: Result<Vec<AuditReceipt>, StoreError>,
    queue_empty: bool,
    sync: impl FnOnce() -> Result<(), StoreError>,
    to_flush: &std::sync::mpsc::Sender<Committed>,
) {
    match result {
        // The flush also covers whatever the flush thread holds; that thread still answers its
        // own callers after its own flush. A failed flush is final here too: `Appender::sync`
        // fails every later one.
        Ok(receipts) if queue_empty => reply_all(replies, sync().map(|()| receipts)),
        Ok(receipts) => {
            if let Err(std::sync::mpsc::SendError((replies, _))) = to_flush.send((replies, receipts)) {
                // The flush thread is gone (it panicked): nothing can vouch for these records,
                // so their calls fail closed.
                reply_all(replies, Err(StoreError::Internal("the audit flush thread stopped".to_string())));
            }
        }
        Err(error) => reply_all(replies, Err(error)),
    }
}

/// Waits for committed batches, flushes the write-ahead log once (`sync`) for all of those that
/// arrived meanwhile, then answers their callers; until the writer is gone and everything is
/// answered.
///
/// A failed flush is final: after it, a later flush that succeeds proves nothing (the kernel may
/// have dropped the pages that failed, and SQLite's recovery discards every frame after a lost
/// one), so every later batch fails too, until opsgate restarts and SQLite recovers the log.
fn flush_loop(mut sync: impl FnMut() -> Result<(), StoreError>, committed: &std::sync::mpsc::Receiver<Committed>) {
    let mut pending: Vec<Committed> = Vec::new();
    let mut failed: Option<String> = None;
    while let Ok(first) = committed.recv() {
        pending.push(first);
        pending.extend(committed.try_iter());
        if failed.is_none()
            && let Err(error) = sync()
        {
            tracing::error!(%error, "the audit log could not be flushed; every later call fails until opsgate restarts");
            failed = Some(error.to_string());
        }
        for (replies, receipts) in pending.drain(..) {
            let result = match &failed {
                None => Ok(receipts),
                Some(error) => {
                    Err(StoreError::Internal(format!("the audit log is not durable since a flush failed: {error}")))
                }
            };
            reply_all(replies, result);
        }
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

#[cfg(test)]
mod tests {
    use std::sync::mpsc as std_mpsc;

    use super::*;

    /// A committed batch of one record, and where its caller's answer arrives.
    fn batch(seq: i64) -> (Committed, oneshot::Receiver<Result<AuditReceipt, String>>) {
        let (reply, answer) = oneshot::channel();
        ((vec![reply], vec![AuditReceipt { seq, hash: format!("h{seq}") }]), answer)
    }

    #[test]
    fn callers_are_answered_only_after_the_flush_and_a_failed_flush_fails_every_later_batch() {
        let (committed, to_flush) = std_mpsc::channel::<Committed>();
        let (flush_started, flushes) = std_mpsc::channel::<()>();
        let (release, released) = std_mpsc::channel::<Result<(), StoreError>>();
        let flusher = std::thread::spawn(move || {
            flush_loop(
                || {
                    let _ = flush_started.send(());
                    released.recv().unwrap_or(Ok(()))
                },
                &to_flush,
            )
        });

        // No answer while the flush is still under way.
        let (first, mut first_answer) = batch(1);
        committed.send(first).expect("send");
        flushes.recv().expect("a flush started");
        std::thread::sleep(Duration::from_millis(50));
        assert!(first_answer.try_recv().is_err(), "answered before the flush returned");
        release.send(Ok(())).expect("release");
        assert_eq!(first_answer.blocking_recv().expect("answered").expect("ok").seq, 1);

        // A failed flush fails its batch, and every batch after it, even when flushing works again.
        let (second, second_answer) = batch(2);
        committed.send(second).expect("send");
        flushes.recv().expect("a flush started");
        release.send(Err(StoreError::Internal("EIO".to_string()))).expect("release");
        assert!(second_answer.blocking_recv().expect("answered").is_err());
        let (third, third_answer) = batch(3);
        committed.send(third).expect("send");
        let third = third_answer.blocking_recv().expect("answered");
        assert!(third.as_ref().is_err_and(|error| error.contains("not durable")), "{third:?}");
        assert!(flushes.try_recv().is_err(), "no flush is attempted after a failed one");
        drop(committed);
        flusher.join().expect("the flush thread ends when the writer is gone");
    }

    #[test]
    fn the_writer_flushes_itself_only_when_nothing_is_queued_and_never_answers_before_the_flush() {
        let (to_flush, flushed) = std_mpsc::channel::<Committed>();
        let ((replies, receipts), mut answer) = batch(1);
        let mut synced = false;
        deliver_committed(
            replies,
            Ok(receipts),
            true,
            || {
                synced = true;
                Ok(())
            },
            &to_flush,
        );
        assert!(synced, "an idle writer flushes itself");
        assert_eq!(answer.try_recv().expect("answered").expect("ok").seq, 1);
        assert!(flushed.try_recv().is_err(), "nothing handed to the flush thread");

        // A failed flush fails the batch.
        let ((replies, receipts), mut answer) = batch(2);
        deliver_committed(replies, Ok(receipts), true, || Err(StoreError::Internal("EIO".to_string())), &to_flush);
        assert!(answer.try_recv().expect("answered").is_err());

        // With more queued, the flush thread gets the batch, unanswered.
        let ((replies, receipts), mut answer) = batch(3);
        deliver_committed(replies, Ok(receipts), false, || panic!("the writer must not flush"), &to_flush);
        assert!(answer.try_recv().is_err(), "answered before any flush");
        let (replies, receipts) = flushed.try_recv().expect("handed over");
        assert_eq!(receipts[0].seq, 3);

        // A flush thread that is gone fails the batch closed.
        drop(flushed);
        deliver_committed(replies, Ok(receipts), false, || Ok(()), &to_flush);
        assert!(answer.try_recv().expect("answered").is_err());
    }

    /// A lone record is answered only after the log holding it is flushed: with flushes failing
    /// its caller gets the error, as a queued record's caller would, never a receipt.
    #[tokio::test]
    async fn a_lone_record_is_answered_only_after_its_flush() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Store::open_sqlite(dir.path()).await?;
        let Store::Sqlite { appender, .. } = &store else { return Err("not SQLite".into()) };
        let (log, writer) = AuditLog::spawn(store.clone(), AuditWriterConfig::default());
        let text = |value: &str| value.to_string();
        let entry = AuditEntry {
            time: text("2026-11-22T10:00:00.000Z"),
            principal: text("user:alice"),
            principal_kind: text("local_user"),
            client: None,
            tool: text("query_metrics"),
            server: None,
            target: None,
            environment: None,
            arguments: text("{}"),
            arguments_hash: "0".repeat(64),
            decision: text("allow"),
            reason: None,
            approval_id: None,
            approvers: None,
            outcome: text("ok"),
            error: None,
            result_bytes: 0,
            duration_us: 1,
        };
        assert_eq!(log.record_alone(entry.clone()).await?.seq, 1);
        appender.fail_flushes("injected");
        let failed = log.record_alone(entry).await;
        assert!(
            matches!(&failed, Err(StoreError::Sync { source, .. }) if source.to_string().contains("injected")),
            "{failed:?}"
        );
        drop(log);
        writer.await?;
        Ok(())
    }
}
