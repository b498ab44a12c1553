//! The SQLite write connection: its own rusqlite connection on the store's file, used to append
//! to the audit chain and to store events, the two writes that come in floods.
//!
//! sqlx runs every SQLite statement on a worker thread and binds each value through a command
//! channel; with 20 columns a record that costs more than the fsync it shares with the batch
//! (measured: about 17k records/s from 32 callers, where SQLite itself does three times that).
//! A plain connection with a cached prepared statement, driven from a blocking thread, removes
//! that cost. Events and their search documents take the same connection for the same reason;
//! sharing it means the two queue on a mutex rather than on SQLite's busy-wait for the write
//! lock. Everything else (reads, migrations, other tables) stays on the sqlx pool.
//!
//! Durability is split from the commit. The connection runs `synchronous=NORMAL`, so a commit
//! writes its WAL frames and returns without waiting for the disk; [`Appender::sync`] then
//! `fdatasync`s the WAL file, which makes every transaction committed before it durable: the
//! same guarantee `synchronous=FULL` gives, but one thread can commit the next batch while
//! another waits for the disk (the audit writer does exactly that; see `writer.rs`).
//!
//! The connection checkpoints the log only once it outgrows its bound: `checkpoint.rs` does, on
//! a thread of its own, so a commit does not copy the log into the database file while every
//! other write waits.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opsgate_core::histogram::Histogram;
use rusqlite::{Connection, OpenFlags, params};

use crate::StoreError;
use crate::audit::{AuditEntry, AuditReceipt, Chained};
use crate::checkpoint::{self, Checkpointer, LogFile};
use crate::events::{EventDelivery, StoredEvent};
use crate::search::SearchDocument;

const INSERT: &str = "INSERT INTO audit_log (seq, time, principal, principal_kind, client, tool, server, target, \
     environment, arguments, arguments_hash, decision, reason, approval_id, outcome, error, result_bytes, \
     duration_us, prev_hash, hash, approvers) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, \
     ?15, ?16, ?17, ?18, ?19, ?20, ?21)";

/// What `Appender::sync` keeps between flushes.
#[derive(Debug, Default)]
struct LogFlush {
    /// The log, opened once (when the appender opens, else at the first flush) and kept: Linux
    /// reports a failed write-back once to each descriptor open when it failed, so a log opened
    /// afresh after another descriptor (SQLite's checkpoint, the write-ahead) flushed it would
    /// miss the failure and vouch for records that never reached the disk.
    file: Option<std::fs::File>,
    /// The first failed flush, after which every flush fails: a later one that succeeds proves
    /// nothing (the kernel may have dropped the pages that failed, and SQLite's recovery
    /// discards every frame after a lost one), until opsgate restarts and SQLite recovers the
    /// log. Audit appends and event writes share the log, so one's failure is the other's too.
    failed: Option<String>,
}

/// One connection behind a mutex: its writes are serialised anyway (audit appends all move the
/// chain head, and SQLite has one writer at a time).
/// `None` once the store is closed.
#[derive(Debug, Clone)]
pub struct Appender {
    connection: Arc<Mutex<Option<Connection>>>,
    /// The database's write-ahead log, `<database>-wal` where SQLite put the database (through
    /// any symbolic link): what `sync` flushes.
    wal: Arc<PathBuf>,
    /// Set by `close`: only then may the log be gone.
    closed: Arc<AtomicBool>,
    /// The open log and the first failed flush, under one lock, so that checking for a failure,
    /// flushing and recording one are one step for every thread that flushes (the audit writer,
    /// its flush thread, event writes).
    flush: Arc<Mutex<LogFlush>>,
    /// Checkpoints the log on a thread of its own; the connection only past `LOG_BOUND_FRAMES` (see
    /// `checkpoint`).
    checkpointer: Arc<Checkpointer>,
    /// How long a write waits for another connection's write lock (`try_append_unsynced` does
    /// not wait at all).
    busy_timeout: Duration,
    /// How long each flush of the log took: the disk's share of every audited call's latency,
    /// on `/metrics`.
    flush_times: Arc<Histogram>,
}

impl Appender {
    /// Opens the already migrated database at `path` in WAL mode. What `append_unsynced` and
    /// `insert_events_unsynced` commit is durable after the next `sync` (`durably` runs one and
    /// then the other).
    pub fn open(path: &Path, busy_timeout: Duration) -> Result<Appender, rusqlite::Error> {
        Appender::open_with_log_bound(path, busy_timeout, checkpoint::LOG_BOUND_FRAMES)
    }

    /// `open`, with the connection checkpointing the log itself once it holds `log_bound_frames`
    /// pages.
    fn open_with_log_bound(
        path: &Path,
        busy_timeout: Duration,
        log_bound_frames: i64,
    ) -> Result<Appender, rusqlite::Error> {
        let connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
        )?;
        connection.busy_timeout(busy_timeout)?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        // Storing an event updates indexes in random places (delivery id, service): 32 MB of
        // page cache (taken only as it fills) keeps their upper levels from being read again.
        connection.pragma_update(None, "cache_size", -32_768)?;
        connection.pragma_update(None, "wal_autocheckpoint", log_bound_frames)?;
        // SQLite's own name for the file, not ours: it follows symbolic links, and so does the
        // log's place. Flushing a log at the link's side would find nothing there.
        let database = connection.path().map(PathBuf::from).unwrap_or_else(|| path.to_path_buf());
        let mut wal = database.into_os_string();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        // Opened now when SQLite has created it (it has, once any connection read the database in
        // WAL mode), so that no write-back failure after this goes unreported to `sync`.
        let flush = LogFlush { file: std::fs::File::open(&wal).ok(), failed: None };
        let checkpointer =
            Checkpointer::start(path, LogFile { path: wal.clone(), bound_frames: log_bound_frames }, busy_timeout)?;
        Ok(Appender {
            connection: Arc::new(Mutex::new(Some(connection))),
            wal: Arc::new(wal),
            closed: Arc::new(AtomicBool::new(false)),
            flush: Arc::new(Mutex::new(flush)),
            checkpointer: Arc::new(checkpointer),
            busy_timeout,
            flush_times: Arc::default(),
        })
    }

    /// Flushes the write-ahead log to disk: every transaction committed before this call is
    /// durable when it returns. The log stays open from the first flush at the latest: SQLite
    /// deletes it only when its last connection closes, and this appender's is open until `close`.
    /// Blocking.
    pub fn sync(&self) -> Result<(), StoreError> {
        let path = || self.wal.display().to_string();
        let mut flush = self.flush.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(earlier) = &flush.failed {
            let source = std::io::Error::other(format!("an earlier flush failed ({earlier}); restart opsgate"));
            return Err(StoreError::Sync { path: path(), source });
        }
        let started = Instant::now();
        let flushed = match &flush.file {
            Some(file) => file.sync_data(),
            None => std::fs::File::open(self.wal.as_path()).and_then(|file| {
                file.sync_data()?;
                flush.file = Some(file);
                Ok(())
            }),
        };
        self.flush_times.record(started.elapsed());
        match flushed {
            Ok(()) => Ok(()),
            // SQLite deletes the log only when its last connection closes, after checkpointing
            // every committed transaction into the database file and flushing that file. While
            // this appender's connection is open the log exists, so a missing one is an error.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound && self.closed.load(Ordering::Acquire) => Ok(()),
            Err(source) => {
                flush.failed = Some(source.to_string());
                Err(StoreError::Sync { path: path(), source })
            }
        }
    }

    /// How long the log's flushes took so far.
    pub fn flush_times(&self) -> &Histogram {
        &self.flush_times
    }

    /// Appends `entries` in one committed transaction after the current head and returns the
    /// stored records; they are durable after the next [`Appender::sync`]. `BEGIN IMMEDIATE`
    /// takes the write lock before the head is read, so appends from several processes on one
    /// file serialise instead of forking the chain. Blocking: call it from a blocking thread.
    pub fn append_unsynced(&self, entries: &[AuditEntry]) -> Result<Vec<AuditReceipt>, rusqlite::Error> {
        self.in_transaction(|transaction| Appender::append_in(transaction, entries))
    }

    /// `append_unsynced`, or `None` at once when the connection is in use here or another
    /// connection holds the database's write lock: for a caller that must not wait (a runtime
    /// thread), which then hands the records to a thread that may.
    pub fn try_append_unsynced(&self, entries: &[AuditEntry]) -> Option<Result<Vec<AuditReceipt>, rusqlite::Error>> {
        self.try_transaction(|transaction| Appender::append_in(transaction, entries))
    }

    fn append_in(
        transaction: &rusqlite::Transaction<'_>,
        entries: &[AuditEntry],
    ) -> Result<Vec<AuditReceipt>, rusqlite::Error> {
        {
            let n_entries = entries.len() as i64;
            let (last_seq, head_hash): (i64, String) = transaction
                .prepare_cached("UPDATE audit_head SET seq = seq + ?1 WHERE id = 1 RETURNING seq, hash")?
                .query_row([n_entries], |row| Ok((row.get(0)?, row.get(1)?)))?;
            let chained = Chained::new(last_seq - n_entries, head_hash, entries);
            {
                let mut insert = transaction.prepare_cached(INSERT)?;
                for link in chained.links() {
                    let entry = link.entry;
                    insert.execute(params![
                        link.seq,
                        entry.time,
                        entry.principal,
                        entry.principal_kind,
                        entry.client,
                        entry.tool,
                        entry.server,
                        entry.target,
                        entry.environment,
                        entry.arguments,
                        entry.arguments_hash,
                        entry.decision,
                        entry.reason,
                        entry.approval_id,
                        entry.outcome,
                        entry.error,
                        entry.result_bytes,
                        entry.duration_us,
                        link.prev_hash,
                        link.hash,
                        entry.approvers,
                    ])?;
                }
            }
            transaction
                .prepare_cached("UPDATE audit_head SET hash = ?1 WHERE id = 1")?
                .execute([chained.last_hash()])?;
            Ok(chained.receipts)
        }
    }

    /// Stores each delivery's events that are new (by source and delivery id) with their search
    /// documents, in one committed transaction; they are durable after the next
    /// [`Appender::sync`]. Returns, per delivery, the events stored. Blocking.
    pub fn insert_events_unsynced(
        &self,
        deliveries: Vec<EventDelivery>,
    ) -> Result<Vec<Vec<StoredEvent>>, rusqlite::Error> {
        self.in_transaction(|transaction| {
            let mut insert = transaction.prepare_cached(crate::events::INSERT)?;
            let mut index = transaction.prepare_cached(crate::search::UPSERT_DOCUMENT)?;
            let mut stored_groups = Vec::with_capacity(deliveries.len());
            for delivery in deliveries {
                let mut stored = Vec::new();
                for event in delivery.events {
                    let id = uuid::Uuid::now_v7().to_string();
                    let (attributes, links) = crate::events::json_columns(&event);
                    let n_inserted = insert.execute(params![
                        id,
                        event.time,
                        delivery.received_at,
                        event.source,
                        event.kind.as_str(),
                        event.service,
                        event.environment,
                        event.summary,
                        attributes,
                        links,
                        event.delivery_id,
                    ])?;
                    if n_inserted == 1 {
                        let document = SearchDocument::event(&id, &event);
                        index.execute(params![
                            document.source.as_str(),
                            document.reference,
                            document.kind,
                            document.title,
                            document.body,
                            document.time,
                            document.service,
                        ])?;
                        stored.push(StoredEvent { id, received_at: delivery.received_at.clone(), event });
                    }
                }
                stored_groups.push(stored);
            }
            Ok(stored_groups)
        })
    }

    /// Runs `write` in a transaction that holds the database's write lock from its start
    /// (`BEGIN IMMEDIATE`), and commits it when `write` succeeds.
    fn in_transaction<T>(
        &self,
        write: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, rusqlite::Error>,
    ) -> Result<T, rusqlite::Error> {
        // A poisoned lock means a panic mid-write, whose transaction SQLite rolled back when the
        // statement failed or rolls back at the next BEGIN: the connection itself is sound.
        let connection = self.connection.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(connection) = connection.as_ref() else { return Err(closed()) };
        let began = rusqlite::Transaction::new_unchecked(connection, rusqlite::TransactionBehavior::Immediate);
        self.commit_with(began, write)
    }

    /// `in_transaction`, or `None` at once when the connection is in use here or another
    /// connection holds the database's write lock: SQLite's busy handler would sleep the thread
    /// until it is let go, so its timeout is zero for the `BEGIN` alone.
    fn try_transaction<T>(
        &self,
        write: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, rusqlite::Error>,
    ) -> Option<Result<T, rusqlite::Error>> {
        let connection = match self.connection.try_lock() {
            Ok(connection) => connection,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        let Some(connection) = connection.as_ref() else { return Some(Err(closed())) };
        if let Err(error) = connection.busy_timeout(Duration::ZERO) {
            return Some(Err(error));
        }
        // Unchecked (a shared borrow), so the timeout can be restored whatever `BEGIN` did;
        // nothing nests, as the connection's lock is held.
        let began = rusqlite::Transaction::new_unchecked(connection, rusqlite::TransactionBehavior::Immediate);
        match (connection.busy_timeout(self.busy_timeout), began) {
            (Err(error), _) => Some(Err(error)),
            (Ok(()), Err(error)) if is_transient(&error) => None,
            (Ok(()), began) => Some(self.commit_with(began, write)),
        }
    }

    /// Runs `write` in the transaction `began` and commits it.
    fn commit_with<T>(
        &self,
        began: Result<rusqlite::Transaction<'_>, rusqlite::Error>,
        write: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, rusqlite::Error>,
    ) -> Result<T, rusqlite::Error> {
        let transaction = began?;
        let value = write(&transaction)?;
        transaction.commit()?;
        self.checkpointer.kick();
        Ok(value)
    }

    /// Makes every later flush fail, as a write-back error would.
    #[cfg(test)]
    pub(crate) fn fail_flushes(&self, reason: &str) {
        self.flush.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).failed = Some(reason.to_string());
    }

    /// Closes the connection (after stopping the checkpoint thread, so that the last connection
    /// to close finds the log to checkpoint); later appends fail.
    pub fn close(&self) {
        self.checkpointer.stop();
        let connection = self.connection.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        drop(connection);
        self.closed.store(true, Ordering::Release);
    }

    /// Runs `write` (one committed transaction) and then `sync` on a blocking thread: what it
    /// wrote is durable when this returns. `what` names the write in the error of a thread that
    /// failed.
    pub async fn durably<T: Send + 'static>(
        &self,
        what: &'static str,
        write: impl FnOnce(&Appender) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let appender = self.clone();
        let written = tokio::task::spawn_blocking(move || {
            let value = write(&appender).map_err(StoreError::Sqlite)?;
            appender.sync()?;
            Ok(value)
        });
        written.await.map_err(|join_error| StoreError::Internal(format!("{what} thread failed: {join_error}")))?
    }
}

fn closed() -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_MISUSE),
        Some("the store is closed".to_string()),
    )
}

/// SQLite busy or locked: another connection held the write lock past the busy timeout.
pub fn is_transient(error: &rusqlite::Error) -> bool {
    matches!(error.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store with table `t`, in WAL mode.
    fn store_with_table(dir: &Path) -> Result<PathBuf, rusqlite::Error> {
        let path = dir.join("store.db");
        let creator = Connection::open(&path)?;
        creator.pragma_update(None, "journal_mode", "WAL")?;
        creator.execute_batch("CREATE TABLE t (x BLOB)")?;
        Ok(path)
    }

    /// The size of a file, 0 when missing.
    fn size(path: &Path) -> u64 {
        std::fs::metadata(path).map(|metadata| metadata.len()).unwrap_or(0)
    }

    /// Waits up to 10 s for the file at `path` to hold `bytes`.
    fn wait_for_size(path: &Path, bytes: u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while size(path) < bytes && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Below its bound the write connection never checkpoints (its commits stay short); the
    /// checkpoint thread copies what it commits into the database file soon after.
    #[test]
    fn commits_are_checkpointed_off_the_write_connection() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = store_with_table(dir.path())?;
        let appender = Appender::open(&path, Duration::from_secs(1))?;
        let autocheckpoint: i64 =
            appender.connection.lock().map_err(|_| "poisoned")?.as_ref().ok_or("open")?.query_row(
                "PRAGMA wal_autocheckpoint",
                [],
                |row| row.get(0),
            )?;
        assert_eq!(autocheckpoint, checkpoint::LOG_BOUND_FRAMES);

        // About 2,000 pages of log, far below the bound: only the thread copies them.
        let written: u64 = 400 * 4 * 3_000;
        for _ in 0..400 {
            appender.in_transaction(|transaction| {
                for _ in 0..4 {
                    transaction.execute("INSERT INTO t VALUES (randomblob(3000))", [])?;
                }
                Ok(())
            })?;
            std::thread::sleep(Duration::from_millis(1));
        }
        wait_for_size(&path, written);
        assert!(size(&path) >= written, "checkpointed: {} of {written} bytes", size(&path));
        appender.close();
        Ok(())
    }

    /// Commits back to back never let the thread's checkpoint copy the whole log before the next
    /// one, so the log would grow without end (180 MB for 50 MB written, measured); past its
    /// bound the write connection copies the rest itself and the log starts again.
    #[test]
    fn a_flood_of_commits_keeps_the_log_near_its_bound() -> Result<(), Box<dyn std::error::Error>> {
        const BOUND_FRAMES: i64 = 256;
        let dir = tempfile::tempdir()?;
        let path = store_with_table(dir.path())?;
        let appender = Appender::open_with_log_bound(&path, Duration::from_secs(1), BOUND_FRAMES)?;
        let mut written = 0;
        let until = std::time::Instant::now() + checkpoint::INTERVAL * 10;
        while std::time::Instant::now() < until {
            appender
                .in_transaction(|transaction| transaction.execute("INSERT INTO t VALUES (randomblob(3000))", []))?;
            written += 3_000;
        }
        wait_for_size(&path, written);
        assert!(size(&path) >= written, "checkpointed: {} of {written} bytes", size(&path));
        // The bound, and what came while the thread's checkpoint kept the writer's from copying.
        let log = size(&appender.wal);
        assert!(log < written / 8, "the log holds {log} bytes of {written} written");
        appender.close();
        Ok(())
    }

    /// The checkpoint thread writes zeros past the log's last frame, up to the bound and no
    /// further, so commits overwrite instead of growing the file; a copy of the database and its
    /// log taken then (what a crash leaves) recovers every committed row, reading past no zero.
    #[test]
    fn the_log_is_written_ahead_up_to_its_bound_and_recovers_through_the_zeros()
    -> Result<(), Box<dyn std::error::Error>> {
        const BOUND_FRAMES: i64 = 300;
        let dir = tempfile::tempdir()?;
        let path = store_with_table(dir.path())?;
        let appender = Appender::open_with_log_bound(&path, Duration::from_secs(1), BOUND_FRAMES)?;
        for _ in 0..60 {
            appender
                .in_transaction(|transaction| transaction.execute("INSERT INTO t VALUES (randomblob(3000))", []))?;
        }
        // What SQLite wrote: the frames in the log (a passive checkpoint restarts nothing).
        let frames: i64 = Connection::open(&path)?.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1))?;
        assert!(frames < BOUND_FRAMES && 2 * frames + checkpoint::AHEAD_MIN_FRAMES > BOUND_FRAMES, "{frames} frames");
        let bound_bytes = checkpoint::log_bytes(BOUND_FRAMES, 4096);
        wait_for_size(&appender.wal, bound_bytes);
        std::thread::sleep(checkpoint::INTERVAL * 2);
        assert_eq!(size(&appender.wal), bound_bytes, "written ahead to the bound, not past it");
        assert!(size(&appender.wal) > checkpoint::log_bytes(frames, 4096));

        let copy = tempfile::tempdir()?;
        std::fs::copy(&path, copy.path().join("store.db"))?;
        std::fs::copy(appender.wal.as_path(), copy.path().join("store.db-wal"))?;
        let recovered = Connection::open(copy.path().join("store.db"))?;
        assert_eq!(recovered.query_row("SELECT count(*) FROM t", [], |row| row.get::<_, i64>(0))?, 60);
        assert_eq!(recovered.query_row("PRAGMA integrity_check", [], |row| row.get::<_, String>(0))?, "ok");

        // The thread let go of the write lock: commits go on.
        appender.in_transaction(|transaction| transaction.execute("INSERT INTO t VALUES (1)", []))?;
        appender.close();
        Ok(())
    }

    /// Another process holding the write lock past the busy timeout only delays the write-ahead:
    /// the next round after a later commit writes it.
    #[test]
    fn a_busy_database_delays_the_write_ahead_without_ending_it() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = store_with_table(dir.path())?;
        let appender = Appender::open(&path, Duration::from_millis(100))?;
        appender.in_transaction(|transaction| transaction.execute("INSERT INTO t VALUES (randomblob(3000))", []))?;
        let other = Connection::open(&path)?;
        other.execute_batch("BEGIN IMMEDIATE")?;
        std::thread::sleep(checkpoint::INTERVAL * 4);
        // At least the minimum ahead of the few frames written.
        let ahead_bytes = checkpoint::log_bytes(checkpoint::AHEAD_MIN_FRAMES, 4096);
        assert!(size(&appender.wal) < ahead_bytes, "written ahead while another held the write lock");
        other.execute_batch("ROLLBACK")?;

        appender.in_transaction(|transaction| transaction.execute("INSERT INTO t VALUES (1)", []))?;
        wait_for_size(&appender.wal, ahead_bytes);
        assert!(size(&appender.wal) >= ahead_bytes, "not written ahead after the lock was let go");
        appender.close();
        Ok(())
    }

    /// SQLite removes the log when its last connection closes (after a full checkpoint): a
    /// flush then has nothing left to do and must not fail the calls waiting on it. Any other
    /// failure to open the log is an error.
    #[test]
    fn a_log_sqlite_removed_counts_as_flushed() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("audit.db");
        let creator = Connection::open(&path)?;
        creator.pragma_update(None, "journal_mode", "WAL")?;
        creator.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")?;
        let appender = Appender::open(&path, Duration::from_secs(1))?;
        assert!(dir.path().join("audit.db-wal").exists());
        drop(creator);
        appender.close();
        assert!(appender.sync().is_ok());

        // A log path under a regular file cannot be opened (ENOTDIR): reported, not ignored.
        let broken = Appender { wal: Arc::new(path.join("audit.db-wal")), flush: Arc::default(), ..appender };
        assert!(matches!(broken.sync(), Err(StoreError::Sync { .. })));
        Ok(())
    }

    /// A database reached through a symbolic link has its log beside the link's target; the
    /// flush must find it there, and a log missing while the connection is open is an error,
    /// never "nothing to flush".
    #[test]
    fn the_log_is_found_through_a_symbolic_link_never_missing_while_open_and_a_failed_flush_is_final()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir(dir.path().join("real"))?;
        let target = dir.path().join("real/audit.db");
        Connection::open(&target)?.pragma_update(None, "journal_mode", "WAL")?;
        let link = dir.path().join("audit.db");
        std::os::unix::fs::symlink(&target, &link)?;
        let appender = Appender::open(&link, Duration::from_secs(1))?;
        appender
            .connection
            .lock()
            .map_err(|_| "poisoned")?
            .as_ref()
            .ok_or("open")?
            .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")?;
        assert!(dir.path().join("real/audit.db-wal").exists());
        assert!(!dir.path().join("audit.db-wal").exists());
        assert!(appender.wal.starts_with(dir.path().join("real").canonicalize()?), "{}", appender.wal.display());
        appender.sync()?;

        // A clone that flushes the wrong path (its log not yet opened) but shares the state.
        appender.flush.lock().map_err(|_| "poisoned")?.file = None;
        let wrong = Appender { wal: Arc::new(dir.path().join("audit.db-wal")), ..appender.clone() };
        assert!(matches!(wrong.sync(), Err(StoreError::Sync { .. })), "a missing log while open is not flushed");
        // The failed flush is final, for everything sharing the log: the right path fails now too.
        let later = appender.sync();
        assert!(
            matches!(&later, Err(StoreError::Sync { source, .. }) if source.to_string().contains("an earlier flush failed")),
            "{later:?}"
        );
        appender.close();
        Ok(())
    }
}
