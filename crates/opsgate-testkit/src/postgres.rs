//! A real PostgreSQL cluster in a temporary directory: trust authentication, TCP on loopback
//! only, durability off for speed (`start_durable` keeps it, for the benchmark). One cluster per
//! test binary (`Postgres::shared`) with a database per test is the cheap way to isolate tests.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tempfile::TempDir;
use tokio::sync::OnceCell;

use crate::free_port;
use crate::process::{Backend, PORT_ATTEMPTS, READY_TIMEOUT, Startup, find_binary, postgres_bin_dir};

/// The superuser `initdb -U` creates, whatever the OS user is.
const SUPERUSER: &str = "postgres";

/// PostgreSQL refuses to run as root; as root we run it as the first of these that exists.
/// Debian's postgresql package creates `postgres`; `nobody` exists everywhere.
const UNPRIVILEGED_USERS: [&str; 2] = ["postgres", "nobody"];

/// Environment variables that would change what `psql` connects to or how; the harness passes
/// everything explicitly and must not inherit a developer's settings.
const PSQL_ENV_REMOVE: [&str; 5] = ["PGOPTIONS", "PGSSLMODE", "PGSERVICE", "PGSERVICEFILE", "PGTARGETSESSIONATTRS"];

/// Whether a cluster flushes its commits to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// fsync, full page writes and synchronous commit off: tests.
    Off,
    /// PostgreSQL's defaults.
    Default,
}

/// A running PostgreSQL server on `127.0.0.1:<port>`.
#[derive(Debug)]
pub struct Postgres {
    // Field order matters: the process stops before its directory is deleted.
    backend: Backend,
    port: u16,
    psql: PathBuf,
    /// Numbers the databases `fresh_database` creates.
    n_databases: AtomicUsize,
    _dir: TempDir,
}

impl Postgres {
    /// Runs `initdb` into a temporary directory and starts a server on it. Takes a second or
    /// two; prefer `Postgres::shared` unless the test needs a cluster of its own.
    pub async fn start() -> Result<Postgres> {
        Postgres::launch(Durability::Off).await
    }

    /// A cluster of its own that keeps PostgreSQL's default durability (fsync, full page writes,
    /// synchronous commit): for the benchmark, whose figures must be what a deployment sees.
    pub async fn start_durable() -> Result<Postgres> {
        Postgres::launch(Durability::Default).await
    }

    /// Whether the PostgreSQL binaries are installed, or why not: for callers that can do
    /// without PostgreSQL (the benchmark reports its PostgreSQL figures as skipped).
    pub fn installed() -> Result<()> {
        postgres_bin_dir().map(|_| ())
    }

    async fn launch(durability: Durability) -> Result<Postgres> {
        let bin = postgres_bin_dir()?;
        let initdb = bin.join("initdb");
        let postgres = bin.join("postgres");
        // Debian ships psql beside the server; other layouts have it only on PATH.
        let psql = if bin.join("psql").is_file() { bin.join("psql") } else { find_binary("psql")? };
        let owner = unprivileged_owner()?;

        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            // A fresh directory per attempt: the watchdog of a failed attempt deletes its own.
            let dir = tempfile::Builder::new()
                .prefix("opsgate-postgres-")
                .tempdir()
                .context("create postgres temporary directory")?;
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                    .with_context(|| format!("chown {} to uid {uid}", dir.path().display()))?;
            }
            let data = dir.path().join("data");
            run_initdb(&initdb, &data, dir.path(), owner).await?;

            let mut command = Command::new(&postgres);
            command
                .arg("-D")
                .arg(&data)
                .arg("-p")
                .arg(port.to_string())
                .arg("-c")
                .arg("listen_addresses=127.0.0.1")
                // The socket goes into our directory: the default, /var/run/postgresql, may not
                // exist or may hold a system cluster's socket.
                .arg("-c")
                .arg(format!("unix_socket_directories={}", dir.path().display()))
                // Parallel tests each open a pool against the shared cluster; 100 runs out.
                .args(["-c", "max_connections=300"])
                // English messages, so that a port conflict can be recognised in the log.
                .env("LC_ALL", "C")
                .current_dir(dir.path());
            if durability == Durability::Off {
                // Durability is worthless for throwaway data and costs seconds per test run.
                command.args(["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]);
            }
            if let Some((uid, gid)) = owner {
                command.uid(uid).gid(gid);
            }
            // SIGQUIT is PostgreSQL's immediate shutdown: the postmaster takes its backends
            // with it, which SIGKILL would not.
            let mut backend = Backend::spawn("postgres", command, dir.path(), "QUIT")?;

            let data_directory = data.display().to_string();
            let startup = backend
                .wait_ready(|| async {
                    // Really ours and not a concurrent test's: the data directory tells.
                    let sql = "select current_setting('data_directory')";
                    matches!(
                        psql_output(&psql, port, "postgres", sql).await,
                        Ok(output) if output.trim() == data_directory
                    )
                })
                .await?;
            match startup {
                Startup::Ready => {
                    return Ok(Postgres { backend, port, psql, n_databases: AtomicUsize::new(0), _dir: dir });
                }
                Startup::PortTaken => continue,
            }
        }
        bail!("postgres: every port tried was taken ({PORT_ATTEMPTS} attempts)")
    }

    /// One cluster for the whole test binary, started on first use. Give each test its own
    /// database with `fresh_database` or `create_database`.
    ///
    /// Statics are never dropped, so this cluster outlives every test; its watchdog stops it and
    /// deletes its directory when the test binary exits (see `process.rs`).
    pub async fn shared() -> Result<&'static Postgres> {
        static SHARED: OnceCell<Postgres> = OnceCell::const_new();
        SHARED.get_or_try_init(Postgres::start).await
    }

    /// The URL of the `postgres` database as the superuser, e.g.
    /// `postgres://postgres@127.0.0.1:5432/postgres`.
    pub fn url(&self) -> String {
        self.database_url("postgres")
    }

    /// The URL of database `name` as the superuser.
    pub fn database_url(&self, name: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{name}", self.port)
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates database `name` (lowercase letters, digits and `_`) and returns its URL.
    pub async fn create_database(&self, name: &str) -> Result<String> {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            bail!("invalid database name {name:?}: use 1-63 of a-z, 0-9 and _, not starting with a digit");
        }
        self.psql("postgres", &format!("create database \"{name}\"")).await?;
        Ok(self.database_url(name))
    }

    /// Creates a database with a name unique within this cluster and returns its URL.
    pub async fn fresh_database(&self) -> Result<String> {
        let n = self.n_databases.fetch_add(1, Ordering::Relaxed);
        self.create_database(&format!("test_{n}")).await
    }

    /// Runs `sql` in `database` with `psql` and returns its unaligned, tuples-only output.
    pub async fn psql(&self, database: &str, sql: &str) -> Result<String> {
        psql_output(&self.psql, self.port, database, sql)
            .await
            .with_context(|| format!("last postgres log lines:\n{}", self.backend.log_tail()))
    }
}

async fn psql_output(psql: &Path, port: u16, database: &str, sql: &str) -> Result<String> {
    let mut command = tokio::process::Command::new(psql);
    command
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", SUPERUSER])
        .args(["-d", database, "-c", sql])
        .env("PGCONNECT_TIMEOUT", "2")
        .kill_on_drop(true);
    for name in PSQL_ENV_REMOVE {
        command.env_remove(name);
    }
    let output = tokio::time::timeout(Duration::from_secs(10), command.output())
        .await
        .with_context(|| format!("psql `{sql}` timed out"))?
        .with_context(|| format!("run {}", psql.display()))?;
    if !output.status.success() {
        bail!(
            "psql `{sql}` on port {port} failed with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

async fn run_initdb(initdb: &Path, data: &Path, dir: &Path, owner: Option<(u32, u32)>) -> Result<()> {
    let mut command = tokio::process::Command::new(initdb);
    command
        .arg("-D")
        .arg(data)
        .args(["-U", SUPERUSER, "-A", "trust", "-E", "UTF8"])
        // No locale keeps the cluster independent of what the machine has generated; no sync
        // saves seconds on throwaway data.
        .args(["--no-locale", "--no-sync"])
        .env("LC_ALL", "C")
        // initdb looks up the current directory, which root's may not allow to an
        // unprivileged user.
        .current_dir(dir)
        .kill_on_drop(true);
    if let Some((uid, gid)) = owner {
        command.uid(uid).gid(gid);
    }
    let output = tokio::time::timeout(READY_TIMEOUT, command.output())
        .await
        .context("initdb timed out")?
        .with_context(|| format!("run {}", initdb.display()))?;
    if !output.status.success() {
        bail!(
            "initdb -D {} failed with {} (every parent directory must be searchable by the \
             server's user; set TMPDIR if it is not): {}",
            data.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// The uid and gid to run the server as: none when we are not root, otherwise an unprivileged
/// user, because `initdb` and `postgres` refuse to run as root.
fn unprivileged_owner() -> Result<Option<(u32, u32)>> {
    if effective_uid()? != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").context("read /etc/passwd")?;
    for wanted in UNPRIVILEGED_USERS {
        for line in passwd.lines() {
            let fields: Vec<&str> = line.split(':').collect();
            if let [name, _, uid, gid, ..] = fields[..]
                && name == wanted
                && let (Ok(uid), Ok(gid)) = (uid.parse(), gid.parse())
            {
                return Ok(Some((uid, gid)));
            }
        }
    }
    bail!(
        "running as root and none of the users {UNPRIVILEGED_USERS:?} exists to run postgres; \
         run scripts/install-test-deps.sh"
    )
}

/// Reads the effective uid from `/proc/self/status`; std has no `geteuid` and this crate
/// forbids the `unsafe` a libc call would need.
fn effective_uid() -> Result<u32> {
    let status = std::fs::read_to_string("/proc/self/status").context("read /proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
        .context("no effective uid in /proc/self/status")
}
