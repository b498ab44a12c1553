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
//! The thread also writes the log's file ahead of SQLite. A commit that appends past the file's
//! end makes the flush that follows commit the file system's journal too (the file's size and
//! blocks changed); one that overwrites blocks already written only writes them (measured on
//! this host: 0.19 ms against 0.10 ms per flush; a median of 0.36 ms against 0.17-0.20 ms for
//! one audit record at a time, appended and flushed). SQLite never shrinks the log while the
//! database is open, and starts it again from its beginning once checkpointed, so after the
//! first time round its commits overwrite anyway; the thread makes the first time round
//! overwrite too. After each checkpoint it writes zeros past the log's end, up to twice the
//! frames the log holds plus [`AHEAD_MIN_FRAMES`] and never past the bound: 256 KB under the
//! write lock at a time (no commit appends there meanwhile), each flushed before the next (so a
//! call's flush never waits behind many megabytes of them). Zeros are no frame: SQLite reads a
//! log only up to its last valid frame. The file grows no larger than the log would under the
//! same load; an idle server's stays small.
//!
//! Durability does not depend on this thread: a committed transaction is durable once the log
//! is flushed ([`crate::sqlite::Appender::sync`]); a checkpoint only moves it into the database
//! file, flushing that before SQLite counts the pages as copied.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// The least time between two checkpoints while commits keep coming: what the commits in
/// between wrote, often the same pages again, is copied once.
pub(crate) const INTERVAL: Duration = Duration::from_millis(100);

/// Pages in the log past which the write connection checkpoints it itself: 64 MB at SQLite's
/// 4 KiB pages.
pub(crate) const LOG_BOUND_FRAMES: i64 = 16_384;

/// Frames of log the thread keeps written past the last frame, at least: 1 MB at 4 KiB pages.
pub(crate) const AHEAD_MIN_FRAMES: i64 = 256;

/// The zeros written under one hold of the write lock, and flushed before the next: a flush of
/// the log (an audited call's) that comes meanwhile waits for no more than these.
const ZEROS_PER_STEP: usize = 256 << 10;

/// The bytes of a log holding `frames` frames of `page_bytes` pages: a 32-byte header, then
/// each frame a 24-byte header and its page.
pub(crate) fn log_bytes(frames: i64, page_bytes: u64) -> u64 {
    32 + frames.unsigned_abs() * (page_bytes + 24)
}

/// The log's file, and how it is laid out.
#[derive(Debug, Clone)]
pub(crate) struct LogFile {
    /// `<database>-wal`.
    pub path: PathBuf,
    /// The frames it holds when the write connection checkpoints it itself.
    pub bound_frames: i64,
}

/// The checkpoint thread of one write connection. Stopped by [`Checkpointer::stop`] or when
/// dropped with the last clone of its appender.
#[derive(Debug)]
pub struct Checkpointer {
    /// Wakes the thread after a commit; `None` once stopped.
    kick: Mutex<Option<SyncSender<()>>>,
    /// Set by the first commit after a checkpoint started, cleared by the thread as it starts the
    /// next one: commits in between neither lock nor wake anything (waking the thread at every
    /// commit cost more than one context switch per audited call, measured).
    due: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Checkpointer {
    /// Opens a connection of its own on the database at `path` (in WAL mode already) and starts
    /// the thread, which also writes `log` ahead.
    pub fn start(path: &Path, log: LogFile, busy_timeout: Duration) -> Result<Checkpointer, rusqlite::Error> {
        let connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
        )?;
        connection.busy_timeout(busy_timeout)?;
        // Never checkpoints on its own commits (it makes none), nor on close while others run.
        connection.pragma_update(None, "wal_autocheckpoint", 0)?;
        let (kick, kicks) = mpsc::sync_channel(1);
        let due = Arc::new(AtomicBool::new(false));
        let thread_due = Arc::clone(&due);
        let thread = std::thread::Builder::new()
            .name("opsgate-checkpoint".to_string())
            .spawn(move || run(&connection, &kicks, &thread_due, &log))
            .map_err(|error| {
                rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                    Some(format!("cannot start the checkpoint thread: {error}")),
                )
            })?;
        Ok(Checkpointer { kick: Mutex::new(Some(kick)), due, thread: Mutex::new(Some(thread)) })
    }

    /// Says that a transaction was committed: a checkpoint follows within [`INTERVAL`]. Never
    /// blocks; only the first kick after a checkpoint started wakes the thread.
    pub fn kick(&self) {
        if self.due.swap(true, Ordering::AcqRel) {
            return;
        }
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

/// Waits for a commit, lets [`INTERVAL`] pass (more commits join it), checkpoints and writes the
/// log ahead; until the appender is gone. `due` is cleared before the checkpoint starts, so a
/// commit it does not see wakes the thread again.
fn run(connection: &Connection, kicks: &Receiver<()>, due: &AtomicBool, log: &LogFile) {
    let mut ahead = WriteAhead::new(log.clone());
    while kicks.recv().is_ok() {
        // Only a stop ends the wait early: commits meanwhile find `due` set and send nothing.
        match kicks.recv_timeout(INTERVAL) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            // Closing: the last connection to close checkpoints everything itself.
            Err(RecvTimeoutError::Disconnected) => return,
        }
        due.store(false, Ordering::Release);
        // (busy, frames in the log, frames copied)
        match connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get::<_, i64>(1)) {
            Ok(frames) => ahead.extend(connection, frames),
            // The pages stay in the log, which is durable; the next commit tries again.
            Err(error) => {
                tracing::warn!(%error, "checkpoint of the SQLite write-ahead log failed; retrying after the next write");
            }
        }
    }
}

/// Writes zeros past the log's end (see the module's documentation).
struct WriteAhead {
    log: LogFile,
    /// The log and the database's page size, from the first round on.
    opened: Option<(std::fs::File, u64)>,
    zeros: Vec<u8>,
    /// Set after a failure (a full disk, say): the log is then left to grow as SQLite writes it.
    stopped: bool,
}

impl WriteAhead {
    fn new(log: LogFile) -> WriteAhead {
        WriteAhead { log, opened: None, zeros: Vec::new(), stopped: false }
    }

    /// After a checkpoint that found `frames` frames in the log.
    fn extend(&mut self, connection: &Connection, frames: i64) {
        if self.stopped || frames <= 0 {
            return;
        }
        match self.try_extend(connection, frames) {
            Ok(()) => {}
            // Another process held the write lock past the busy timeout: the next round tries again.
            Err(error) if error.downcast_ref::<rusqlite::Error>().is_some_and(crate::sqlite::is_transient) => {
                tracing::debug!(%error, "the SQLite log was not written ahead this time");
            }
            Err(error) => {
                tracing::warn!(%error, log = %self.log.path.display(), "cannot write the SQLite log ahead of its commits; flushes of a growing log cost more");
                self.stopped = true;
            }
        }
    }

    fn try_extend(&mut self, connection: &Connection, frames: i64) -> Result<(), Box<dyn std::error::Error>> {
        let (file, page_bytes) = match &self.opened {
            Some(opened) => opened,
            None => {
                let page_bytes: i64 = connection.query_row("PRAGMA page_size", [], |row| row.get(0))?;
                let file = std::fs::OpenOptions::new().write(true).open(&self.log.path)?;
                self.opened.insert((file, u64::try_from(page_bytes)?))
            }
        };
        let wanted = log_bytes((2 * frames + AHEAD_MIN_FRAMES).min(self.log.bound_frames), *page_bytes);
        loop {
            // Under the write lock no commit appends, so the end read here stays the end.
            connection.execute_batch("BEGIN IMMEDIATE")?;
            let result = (|| -> std::io::Result<bool> {
                let end = file.metadata()?.len();
                if end >= wanted {
                    return Ok(false);
                }
                let n_bytes = usize::try_from(wanted - end).unwrap_or(ZEROS_PER_STEP).min(ZEROS_PER_STEP);
                self.zeros.resize(n_bytes, 0);
                file.write_all_at(&self.zeros[..n_bytes], end)?;
                Ok(true)
            })();
            connection.execute_batch("ROLLBACK")?;
            if !result? {
                return Ok(());
            }
            file.sync_data()?;
        }
    }
}
