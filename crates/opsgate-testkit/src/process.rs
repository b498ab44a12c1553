//! Backend processes: finding binaries, spawning them under a watchdog, waiting until they are
//! ready, and reading the tail of their logs for error messages.

use std::fs::File;
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How long a backend gets to become ready. Generous for a loaded CI machine, yet short enough
/// that a broken backend fails the test instead of hanging it.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How many ports a backend tries before giving up. `free_port` races with every other process
/// on the machine, parallel tests included, so one attempt is not enough.
pub(crate) const PORT_ATTEMPTS: usize = 5;

/// How long `Drop` waits for the watchdog's signal to stop the backend before using SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// How many log lines an error message carries.
const LOG_TAIL_LINES: usize = 30;

/// The watchdog is a shell that blocks reading its stdin, a pipe whose only writer is the test
/// process. The pipe closes when the handle is dropped or when the test process ends in any way
/// (a panic that aborts, a timeout kill, Ctrl-C, or a normal exit that skips the destructors of
/// statics such as `Postgres::shared`). Then the watchdog signals the backend, waits for it to
/// go and deletes its directory. One path therefore serves both clean and unclean shutdowns.
///
/// Alternatives considered: `PR_SET_PDEATHSIG` needs `unsafe` in `pre_exec` (forbidden in this
/// workspace) and fires when the spawning *thread* exits, which for tokio's blocking pool is
/// arbitrary; polling the parent pid with `kill -0` is slower and suffers from pid reuse.
///
/// It ignores SIGINT and SIGHUP so that Ctrl-C in a terminal, which signals the whole process
/// group, does not kill it before it cleans up. `kill -0` succeeds on a zombie, so `alive` also
/// reads the process state: once the test process is gone, nobody may reap the backend promptly
/// (containers often run a PID 1 that reaps late or never). The loop gives up after 20 s in any
/// case, so the watchdog cannot outlive its purpose.
///
/// Arguments: `$1` backend pid, `$2` signal name, `$3` directory to delete.
const WATCHDOG: &str = r#"
trap '' INT HUP
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    while read -r key state _; do
        if [ "$key" = State: ]; then [ "$state" != Z ]; return; fi
    done <"/proc/$1/status" 2>/dev/null
    return 0
}
read -r _ || :
kill -s "$2" "$1" 2>/dev/null || :
n=0
while alive "$1" && [ "$n" -lt 200 ]; do
    n=$((n + 1))
    if [ "$n" -eq 100 ]; then kill -s KILL "$1" 2>/dev/null || :; fi
    sleep 0.1
done
rm -rf -- "$3"
"#;

/// A running backend process and its watchdog. Dropping it stops both.
#[derive(Debug)]
pub(crate) struct Backend {
    name: &'static str,
    child: Child,
    watchdog: Child,
    log: PathBuf,
}

/// Whether a backend came up, or lost the race for its port and should be started again.
pub(crate) enum Startup {
    Ready,
    PortTaken,
}

impl Backend {
    /// Spawns `command` with stdout and stderr appended to `<dir>/<name>.log`, and a watchdog
    /// that sends `stop_signal` (a `kill -s` name such as `KILL`) and deletes `dir` when the handle
    /// drops or the test process dies.
    pub(crate) fn spawn(name: &'static str, mut command: Command, dir: &Path, stop_signal: &str) -> Result<Backend> {
        let log = dir.join(format!("{name}.log"));
        let stderr = File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let stdout = stderr.try_clone().with_context(|| format!("clone handle of {}", log.display()))?;
        let mut child = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("spawn {name} ({:?})", command.get_program()))?;
        let watchdog = Command::new("/bin/sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("opsgate-testkit-watchdog")
            .arg(child.id().to_string())
            .arg(stop_signal)
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let watchdog = match watchdog {
            Ok(watchdog) => watchdog,
            Err(error) => {
                // Without a watchdog nobody would stop the backend; do it now.
                let _ = child.kill();
                let _ = child.wait();
                return Err(error).context("spawn the watchdog shell /bin/sh");
            }
        };
        Ok(Backend { name, child, watchdog, log })
    }

    /// Polls `check` until it returns true, the process exits, or `READY_TIMEOUT` passes.
    /// An exit caused by a port conflict is reported as `Startup::PortTaken` so the caller can
    /// retry on another port; every other failure is an error with the log tail.
    pub(crate) async fn wait_ready<F, Fut>(&mut self, mut check: F) -> Result<Startup>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if check().await {
                return Ok(Startup::Ready);
            }
            if let Some(status) = self.child.try_wait().context("poll backend process")? {
                let tail = self.log_tail();
                if tail.to_ascii_lowercase().contains("address already in use") {
                    return Ok(Startup::PortTaken);
                }
                bail!("{} exited with {status} before it was ready; last log lines:\n{tail}", self.name);
            }
            if Instant::now() >= deadline {
                bail!("{} not ready after {:?}; last log lines:\n{}", self.name, READY_TIMEOUT, self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last lines the backend wrote to stdout or stderr, for error messages.
    pub(crate) fn log_tail(&self) -> String {
        match std::fs::read_to_string(&self.log) {
            Ok(text) => {
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
            }
            Err(error) => format!("(cannot read {}: {error})", self.log.display()),
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        // Closing the watchdog's stdin is the stop signal; see `WATCHDOG`.
        drop(self.watchdog.stdin.take());
        // The backend is our child, so it stays a zombie that `kill -0` still sees until we
        // reap it here; only then does the watchdog's loop end.
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        let _ = self.watchdog.wait();
    }
}

/// Finds `name` on `PATH`.
pub(crate) fn find_binary(name: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
        .with_context(|| format!("{name} not found; run scripts/install-test-deps.sh"))
}

/// The directory holding `initdb`, `postgres` and `psql` of one PostgreSQL version. Taking all
/// three from one directory keeps the versions matched: Debian puts only `psql` (a wrapper) on
/// `PATH` and the server binaries under `/usr/lib/postgresql/<major>/bin`.
pub(crate) fn postgres_bin_dir() -> Result<PathBuf> {
    if let Ok(initdb) = find_binary("initdb") {
        let initdb = initdb.canonicalize().with_context(|| format!("resolve {}", initdb.display()))?;
        if let Some(dir) = initdb.parent() {
            return Ok(dir.to_path_buf());
        }
    }
    // Newest major version first.
    let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            is_executable(&bin.join("initdb")).then_some((major, bin))
        })
        .collect();
    candidates.sort();
    candidates.pop().map(|(_, bin)| bin).context("initdb not found; run scripts/install-test-deps.sh")
}

fn is_executable(path: &Path) -> bool {
    path.metadata().is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
}

/// Returns true when `url` answers 200. Used for the `/-/ready` endpoints.
pub(crate) async fn http_ok(client: &reqwest::Client, url: &str) -> bool {
    match client.get(url).send().await {
        Ok(response) => response.status().is_success(),
        Err(_) => false,
    }
}

/// An HTTP client for talking to the backends: short timeouts so a hung backend fails a test
/// quickly, and no proxy, since a proxy set in the environment cannot reach our loopback ports.
pub(crate) fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder().timeout(Duration::from_secs(5)).no_proxy().build().context("build HTTP client")
}

/// Formats a duration the way Prometheus and Alertmanager configuration files want it.
pub(crate) fn config_duration(duration: Duration) -> String {
    format!("{}ms", duration.as_millis().max(1))
}

/// Quotes a string for YAML. A JSON string is a valid YAML double-quoted scalar, which spares
/// this crate a YAML library for the few configuration files it writes.
pub(crate) fn yaml_string(value: &str) -> String {
    serde_json::Value::String(value.to_owned()).to_string()
}

#[cfg(test)]
mod tests;
