//! opsgate's durable state over SQLite (the default, embedded) and PostgreSQL (for several
//! replicas): the audit chain, API keys, approval requests, federated tools' pins, operational events and the search index over them. One set of
//! migrations serves both (the search index, which they cannot share, is created by `search.rs`); each operation is one function that matches on the pool.

pub mod api_keys;
pub mod approvals;
pub mod audit;
mod checkpoint;
pub mod events;
pub mod memory;
pub mod notices;
pub mod pins;
pub mod search;
mod sqlite;
pub mod writer;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

pub use api_keys::{ApiKey, ApiKeyError, NewApiKey, Revocation};
pub use approvals::{Approval, ApprovalDecision, ApprovalError, ApprovalStatus, DecisionRequest, NewApproval};
pub use audit::{AuditEntry, AuditReceipt, AuditRecord, VerifyReport};
pub use events::{EventDelivery, EventQuery, StoredEvent};
pub use memory::{
    MemoryDeletion, MemoryEntity, MemoryError, MemoryGraph, MemoryObservations, MemoryRelation, NewMemoryEntity,
};
pub use notices::{Notice, Notices};
pub use pins::ToolPin;
pub use search::{DocumentSource, SearchDocument, SearchHit, SearchQuery, SearchResult};
pub use writer::{AuditLog, AuditWriterConfig};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create data directory {path}")]
    DataDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open store {location}")]
    Open {
        location: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot migrate store {location}")]
    Migrate {
        location: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error("store query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error("audit append failed: {0}")]
    Sqlite(#[source] rusqlite::Error),
    #[error("audit records not flushed to disk ({path}): {source}")]
    Sync {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Internal(String),
    #[error("audit log is closed: opsgate is shutting down")]
    Closed,
}

/// The file name of the embedded database inside the data directory.
pub const SQLITE_FILE: &str = "opsgate.db";

/// A handle to the store. Cloning is cheap (the pools are reference counted).
#[derive(Debug, Clone)]
pub enum Store {
    /// The pool serves everything but audit appends and event inserts, which go through their
    /// own connection (`sqlite.rs`).
    Sqlite {
        pool: SqlitePool,
        appender: sqlite::Appender,
    },
    Postgres(PgPool),
}

/// Runs the same statement on whichever pool the store holds. The SQL is shared, so it must be
/// the common subset of both dialects (`$1` placeholders work in both).
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            $crate::Store::Sqlite { pool: $pool, .. } => $body,
            $crate::Store::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// How long a SQLite write waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl Store {
    /// Opens (creating if needed) the SQLite store in `data_dir` and migrates it.
    pub async fn open_sqlite(data_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|source| StoreError::DataDir { path: data_dir.display().to_string(), source })?;
        let path = data_dir.join(SQLITE_FILE);
        let location = path.display().to_string();
        // WAL lets readers run beside the writer; synchronous=FULL makes every commit of this
        // pool (approvals, keys, pins, memory, runbook documents) durable. Audit appends and
        // event inserts use their own connection, whose log is flushed before callers are
        // answered (`sqlite.rs`, `writer.rs`).
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            // Searches read a few thousand rows scattered over a large file: mapped, they are
            // read where the kernel caches them instead of copied into each connection's small
            // page cache. Pages count toward resident memory only once read.
            .pragma("mmap_size", "268435456");
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open { location: location.clone(), source })?;
        MIGRATOR.run(&pool).await.map_err(|source| StoreError::Migrate { location: location.clone(), source })?;
        let appender = sqlite::Appender::open(&path, BUSY_TIMEOUT).map_err(|source| StoreError::Open {
            location: location.clone(),
            source: sqlx::Error::Configuration(Box::new(source)),
        })?;
        let store = Store::Sqlite { pool, appender };
        search::prepare(&store).await?;
        Ok(store)
    }

    /// Connects to PostgreSQL at `url` (`postgres://…`) and migrates it.
    pub async fn open_postgres(url: &str) -> Result<Store, StoreError> {
        let location = redact_url(url);
        let options = PgConnectOptions::from_str(url)
            .map_err(|source| StoreError::Open { location: location.clone(), source })?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open { location: location.clone(), source })?;
        MIGRATOR.run(&pool).await.map_err(|source| StoreError::Migrate { location, source })?;
        let store = Store::Postgres(pool);
        search::prepare(&store).await?;
        Ok(store)
    }

    /// `postgres://…` or `postgresql://…` opens PostgreSQL; anything else is a data directory.
    pub async fn open(location: &str) -> Result<Store, StoreError> {
        if location.starts_with("postgres://") || location.starts_with("postgresql://") {
            Store::open_postgres(location).await
        } else {
            Store::open_sqlite(Path::new(location)).await
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite { .. } => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// How long each flush of SQLite's write-ahead log took, the wait every audited call's
    /// durable record adds (PostgreSQL flushes inside its commit, which opsgate does not see).
    pub fn log_flush_times(&self) -> Option<&opsgate_core::histogram::Histogram> {
        match self {
            Store::Sqlite { appender, .. } => Some(appender.flush_times()),
            Store::Postgres(_) => None,
        }
    }

    /// A cheap round trip, for `doctor` and `/healthz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    pub async fn close(&self) {
        if let Store::Sqlite { appender, .. } = self {
            appender.close();
        }
        on_pool!(self, pool => pool.close().await)
    }
}

/// A stored timestamp: RFC 3339, UTC, milliseconds, `Z`. Fixed width, so text order is time order
/// (the store compares expiry times as text).
pub fn rfc3339(time: chrono::DateTime<chrono::Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Now, as the store writes it.
pub fn now_rfc3339() -> String {
    rfc3339(chrono::Utc::now())
}

/// Hides the password in a database URL so it can appear in errors and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
