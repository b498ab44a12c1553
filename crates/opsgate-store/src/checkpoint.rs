//! Checkpoints of the SQLite write-ahead log, off the write path.
//!
//! SQLite's automatic checkpoint runs inside the commit that takes the log past 1,000 pages:
//! that commit copies every page the log holds into the database file and flushes it, while
//! holding the write connection every audit append and event batch waits on (measured under
//! webhook ingestion: a tenth of the writer's CPU, and a flush of the database file on top). This
//! thread of its own, on its own connection, checkpoints instead: a little after commits arrive,
//! at most every [`INTERVAL`], without the write lock (`PASSIVE`), so the writer goes on
//! committing while pages are copied. When the writer finds the log wholly copied at its next
//! write, SQLite starts the log again from its beginning.
//!
//! A steady flood of writes keeps the log from being wholly copied at that moment: the writer
//! commits again while the thread copies (measured: 180 MB of log for 50 MB written back to back
//! in a second, where a `RESTART` checkpoint, which waits for the write lock, never got it). So
//! the write connection keeps SQLite's automatic checkpoint, raised to [`LOG_BOUND_FRAMES`] pages:
//! past that, its own commit copies what the thread has not yet, and its next transaction starts
//! the log again. Below it, the writer never checkpoints.
//!
//! Durability does not depend on this thread: a committed transaction is durable once the log
//! is flushed ([`crate::sqlite::Appender::sync`]); a checkpoint only moves it into the database
//! file, flushing that before SQLite counts the pages as copied.

use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

/// The least time between two checkpoints while commits keep coming: what the commits in
/// between wrote, often the same pages again, is copied once.
pub(crate) const INTERVAL: Duration = Duration::from_millis(100);

/// Pages in the log past which the write connection checkpoints it itself: 64 MB at SQLite's
/// 4 KiB pages.
pub(crate) const LOG_BOUND_FRAMES: i64 = 16_384;

/// The checkpoint thread of one write connection. Stopped by [`Checkpointer::stop`] or when
/// dropped with the last clone of its appender.
#[derive(Debug)]
pub struct Checkpointer {
    /// Wakes the thread after a commit; `None` once stopped.
    kick: Mutex<Option<SyncSender<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Checkpointer {
    /// Opens a connection of its own on the database at `path` (in WAL mode already) and starts
    /// the thread.
    pub fn start(path: &Path, busy_timeout: Duration) -> Result<Checkpointer, rusqlite::Error> {
        let connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
        )?;
        connection.busy_timeout(busy_timeout)?;
        // Never checkpoints on its own commits (it makes none), nor on close while others run.
        connection.pragma_update(None, "wal_autocheckpoint", 0)?;
        let (kick, kicks) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("opsgate-checkpoint".to_string())
            .spawn(move || run(&connection, &kicks))
            .map_err(|error| {
                rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                    Some(format!("cannot start the checkpoint thread: {error}")),
                )
            })?;
        Ok(Checkpointer { kick: Mutex::new(Some(kick)), thread: Mutex::new(Some(thread)) })
    }

    /// Says that a transaction was committed: a checkpoint follows within [`INTERVAL`]. Never
    /// blocks; kicks before the thread wakes count as one.
    pub fn kick(&self) {
        if let Some(kick) = self.kick.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            let _ = kick.try_send(());
        }
    }

    /// Stops the thread and closes its connection; returns once both are done.
    pub fn stop(&self) {
        drop(self.kick.lock().unwrap_or_else(PoisonError::into_inner).take());
        if let Some(thread) = self.thread.lock().unwrap_or_else(PoisonError::into_inner).take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits for a commit, lets [`INTERVAL`] pass (more commits join it), checkpoints; until the
/// appender is gone.
fn run(connection: &Connection, kicks: &Receiver<()>) {
    while kicks.recv().is_ok() {
        let due = Instant::now() + INTERVAL;
        loop {
            match kicks.recv_timeout(due.saturating_duration_since(Instant::now())) {
                Ok(()) => continue,
                Err(RecvTimeoutError::Timeout) => break,
                // Closing: the last connection to close checkpoints everything itself.
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        if let Err(error) = connection.execute_batch("PRAGMA wal_checkpoint(PASSIVE)") {
            // The pages stay in the log, which is durable; the next commit tries again.
            tracing::warn!(%error, "checkpoint of the SQLite write-ahead log failed; retrying after the next write");
        }
    }
}
