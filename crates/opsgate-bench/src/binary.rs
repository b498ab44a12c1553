//! Measurements of the real `opsgate` binary as users run it: how long `opsgate stdio` takes from
//! spawn to answering its first `tools/list`, and how much memory an idle `opsgate serve` holds.
//!
//! Each run gets a fresh temporary directory as working directory, data directory and XDG config
//! and data homes, so neither the user's own config nor their store is picked up. Both are
//! measured twice: with no config file (no backends, so no tools), and with the README's example
//! (one Prometheus, one Alertmanager), whose `tools/list` is the real tool set. The example's URLs
//! point at the discard port on loopback, where nothing listens: start-up does not contact
//! backends, and nothing here calls a tool.
//!
//! `Sandbox`, `free_loopback_address` and `wait_until_serving` also serve the federation section,
//! which runs opsgate in a sandbox whose `.opsgate/mcp.json` names the upstream, and the
//! operational-context section, whose sandbox has a config file of its own.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use crate::wire::{self, Connection};

/// How opsgate is configured for a measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Config {
    /// No config file at all: the zero-configuration start the README promises.
    None,
    /// The README's example: one Prometheus and one Alertmanager instance.
    Example,
}

impl Config {
    pub const ALL: [Config; 2] = [Config::None, Config::Example];

    pub fn label(self) -> &'static str {
        match self {
            Config::None => "no config file (no backends)",
            Config::Example => "README example config (Prometheus + Alertmanager)",
        }
    }

    /// For the summary table, where the full label does not fit.
    pub fn short_label(self) -> &'static str {
        match self {
            Config::None => "no config",
            Config::Example => "example config",
        }
    }
}

/// A scratch home for one opsgate process (or several sharing one data directory).
pub struct Sandbox {
    dir: tempfile::TempDir,
    /// Whether `opsgate.toml` exists, and so is passed with `--config`.
    config_file: bool,
}

impl Sandbox {
    pub fn new(config: Config) -> Result<Sandbox> {
        match config {
            Config::None => Sandbox::create(None),
            Config::Example => Sandbox::create(Some(EXAMPLE_CONFIG)),
        }
    }

    /// A sandbox whose `opsgate.toml` is `config`.
    pub fn with_config_file(config: &str) -> Result<Sandbox> {
        Sandbox::create(Some(config))
    }

    fn create(config: Option<&str>) -> Result<Sandbox> {
        let dir = tempfile::tempdir().context("creating a temporary directory for opsgate")?;
        for sub in ["data", "xdg-config", "xdg-data"] {
            std::fs::create_dir_all(dir.path().join(sub))?;
        }
        let sandbox = Sandbox { dir, config_file: config.is_some() };
        if let Some(config) = config {
            std::fs::write(sandbox.config_path(), config).context("writing opsgate.toml")?;
        }
        Ok(sandbox)
    }

    /// The working directory of every process started here: `.opsgate/mcp.json` goes in it.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("opsgate.toml")
    }

    /// The data directory every process started here uses: the SQLite store lives in it.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("opsgate.log")
    }

    /// opsgate's log, appended to by every process started here.
    pub fn log_file(&self) -> Result<std::fs::File> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .context("opening opsgate's log file")
    }

    /// `opsgate [--config FILE] --data-dir DIR <args>`: the global flags go before the
    /// subcommand, where clap accepts them whether or not they are declared global.
    pub fn command(&self, bin: &Path, args: &[&str]) -> Result<Command> {
        let mut command = Command::new(bin);
        if self.config_file {
            command.arg("--config").arg(self.config_path());
        }
        command
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(args)
            .current_dir(self.dir.path())
            .env("XDG_CONFIG_HOME", self.dir.path().join("xdg-config"))
            .env("XDG_DATA_HOME", self.dir.path().join("xdg-data"))
            .env_remove("OPSGATE_CONFIG")
            .env_remove("OPSGATE_STORE")
            .env_remove("OPSGATE_LISTEN")
            .env_remove("OPSGATE_DATA_DIR")
            .stderr(self.log_file()?)
            .kill_on_drop(true);
        Ok(command)
    }

    /// The end of opsgate's stderr, to explain a failure.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }
}

/// The README's example configuration, with backends nobody can reach; scripts/startup-order.sh
/// starts opsgate with the same file.
const EXAMPLE_CONFIG: &str = include_str!("../example-config.toml");

#[derive(Debug, Clone)]
pub struct StdioReport {
    pub config: Config,
    pub runs: Vec<Duration>,
    pub median: Duration,
    pub n_tools: usize,
}

/// Spawns `opsgate stdio` `n_runs` times (after one untimed run that creates the store and brings
/// the binary into the page cache) and times spawn → `tools/list` response line.
pub async fn stdio_startup(bin: &Path, n_runs: usize, config: Config) -> Result<StdioReport> {
    let sandbox = Sandbox::new(config)?;
    let (_, n_tools) = stdio_once(bin, &sandbox).await.context("untimed first run")?;
    let mut runs = Vec::with_capacity(n_runs);
    for run in 1..=n_runs {
        let (elapsed, _) = stdio_once(bin, &sandbox).await.with_context(|| format!("run {run}"))?;
        runs.push(elapsed);
    }
    let mut sorted = runs.clone();
    sorted.sort();
    // The lower median for an even count: a real run, not an average of two.
    let median = sorted.get(sorted.len().saturating_sub(1) / 2).copied().unwrap_or_default();
    Ok(StdioReport { config, runs, median, n_tools })
}

async fn stdio_once(bin: &Path, sandbox: &Sandbox) -> Result<(Duration, usize)> {
    let mut command = sandbox.command(bin, &["stdio"])?;
    command.stdin(Stdio::piped()).stdout(Stdio::piped());
    let started = Instant::now();
    let mut child = command.spawn().with_context(|| format!("spawning {}", bin.display()))?;
    let outcome = tokio::time::timeout(Duration::from_secs(10), talk_stdio(&mut child)).await;
    let elapsed = started.elapsed();
    // Closing stdin is how an MCP client says goodbye; give opsgate a moment to exit cleanly.
    drop(child.stdin.take());
    if tokio::time::timeout(Duration::from_secs(5), child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
    match outcome {
        Ok(Ok(n_tools)) => Ok((elapsed, n_tools)),
        Ok(Err(error)) => Err(error.context(format!("opsgate stderr:\n{}", sandbox.log_tail()))),
        Err(_) => bail!("no tools/list answer within 10 s; opsgate stderr:\n{}", sandbox.log_tail()),
    }
}

/// Writes the 2025-11-25 handshake and `tools/list` at once, as clients do, and reads stdout
/// until the `tools/list` response. Returns how many tools it listed.
async fn talk_stdio(child: &mut Child) -> Result<usize> {
    let client_info = json!({"name": "opsgate-bench", "version": env!("CARGO_PKG_VERSION")});
    let messages = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
               "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": client_info}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}),
    ];
    let mut input = String::new();
    for message in &messages {
        input.push_str(&message.to_string());
        input.push('\n');
    }
    let stdin = child.stdin.as_mut().context("opsgate's stdin is not piped")?;
    stdin.write_all(input.as_bytes()).await.context("writing to opsgate's stdin")?;
    stdin.flush().await?;
    let stdout = child.stdout.take().context("opsgate's stdout is not piped")?;
    let mut lines = BufReader::new(stdout).lines();
    while let Some(line) = lines.next_line().await.context("reading opsgate's stdout")? {
        let message: Value =
            serde_json::from_str(&line).with_context(|| format!("stdout carried a non-JSON line: {line}"))?;
        if message.get("id") != Some(&json!(2)) {
            continue;
        }
        let tools = message.pointer("/result/tools").and_then(Value::as_array);
        return match tools {
            Some(tools) => Ok(tools.len()),
            None => bail!("tools/list did not return tools: {message}"),
        };
    }
    bail!("opsgate closed stdout before answering tools/list")
}

#[derive(Debug, Clone, Copy)]
pub struct RssReport {
    pub config: Config,
    pub rss_bytes: u64,
    /// The part of `rss_bytes` that is the process's own memory (heap, stacks)...
    pub anon_bytes: u64,
    /// ...and the part that is mapped file pages, mostly the binary's own code and constants.
    pub file_bytes: u64,
    /// The peak resident set since start, for context.
    pub hwm_bytes: u64,
    pub n_tools: usize,
}

/// How long an idle server is left alone after its first `tools/list` before memory is read.
const SETTLE: Duration = Duration::from_secs(1);

/// Starts `opsgate serve` on a free loopback port, waits until it answers `tools/list` (2026-07-28
/// wire), lets it settle and reads VmRSS and VmHWM from /proc.
pub async fn serve_idle_rss(bin: &Path, config: Config) -> Result<RssReport> {
    let sandbox = Sandbox::new(config)?;
    let address = free_loopback_address()?;
    let listen = address.to_string();
    let mut command = sandbox.command(bin, &["serve", "--listen", &listen])?;
    command.stdin(Stdio::null()).stdout(Stdio::null());
    let mut child = command.spawn().with_context(|| format!("spawning {}", bin.display()))?;
    let pid = child.id().context("opsgate exited at once")?;
    let n_tools = wait_until_serving(&mut child, &sandbox, address, None, None).await?;
    tokio::time::sleep(SETTLE).await;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("reading /proc/PID/status")?;
    let rss_bytes = proc_status_kib(&status, "VmRSS:").context("VmRSS missing from /proc/PID/status")? * 1024;
    let anon_bytes = proc_status_kib(&status, "RssAnon:").unwrap_or(0) * 1024;
    let file_bytes = proc_status_kib(&status, "RssFile:").unwrap_or(0) * 1024;
    let hwm_bytes = proc_status_kib(&status, "VmHWM:").unwrap_or(0) * 1024;
    child.kill().await.context("stopping opsgate serve")?;
    Ok(RssReport { config, rss_bytes, anon_bytes, file_bytes, hwm_bytes, n_tools })
}

/// The start-up layout file the release link of `opsgate` follows (crates/opsgate/build.rs).
const STARTUP_ORDER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../opsgate/startup-order.txt");

/// One sentence for section 3 on `bin`'s start-up layout: how many of the functions
/// `startup-order.txt` lists it defines (most, while the file is current; few after a dependency,
/// feature or toolchain change renamed them, and then idle memory grows back until
/// `scripts/startup-order.sh` is run), and whether its link placed them at the front of `.text`
/// (not when crates/opsgate/build.rs left the layout out, which it warns of).
pub fn startup_layout(bin: &Path) -> String {
    let figures = std::fs::read_to_string(STARTUP_ORDER)
        .map_err(|error| format!("reading crates/opsgate/startup-order.txt: {error}"))
        .and_then(|listed| Ok(LayoutFigures::of(&listed, &defined_functions(bin)?)));
    let LayoutFigures { n_listed, n_found, n_in_front } = match figures {
        Ok(figures) => figures,
        Err(why) => return format!("Start-up layout not checked: {why}."),
    };
    format!(
        "Start-up layout: the binary defines {n_found} of the {n_listed} functions \
         crates/opsgate/startup-order.txt lists, and {n_in_front} of its first {n_found} functions in \
         address order are listed ones: near {n_found} when the release link placed the list at the \
         front of `.text` (crates/opsgate/build.rs), a small share of it when not. When the first \
         figure falls (a dependency, feature or toolchain change renames functions), \
         `scripts/startup-order.sh` writes the file again."
    )
}

/// `nm --defined-only --numeric-sort` of `bin`: its symbols in address order.
fn defined_functions(bin: &Path) -> Result<String, String> {
    let output = std::process::Command::new("nm")
        .args(["--defined-only", "--numeric-sort"])
        .arg(bin)
        .output()
        .map_err(|error| format!("running nm: {error}"))?;
    if !output.status.success() {
        return Err(format!("nm failed: {}", String::from_utf8_lossy(&output.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[derive(Debug, PartialEq, Eq)]
struct LayoutFigures {
    /// Names in the list.
    n_listed: usize,
    /// Listed names the binary defines, each once however often it is defined.
    n_found: usize,
    /// How many of the binary's first `n_found` functions, in address order, are listed.
    n_in_front: usize,
}

impl LayoutFigures {
    /// From the list (one name a line, `#` comments) and `nm --numeric-sort` output
    /// ("ADDRESS TYPE NAME" lines, code being `t` or `T`).
    fn of(list: &str, nm: &str) -> LayoutFigures {
        let listed: HashSet<&str> = list.lines().filter(|line| !line.starts_with('#') && !line.is_empty()).collect();
        let functions: Vec<&str> = nm
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let (_, kind, name) = (fields.next()?, fields.next()?, fields.next()?);
                matches!(kind, "t" | "T").then_some(name)
            })
            .collect();
        // A name can be defined more than once (file-local C functions, LLVM's promoted locals).
        let n_found = functions.iter().filter(|name| listed.contains(*name)).collect::<HashSet<_>>().len();
        let n_in_front = functions.iter().take(n_found).filter(|name| listed.contains(*name)).count();
        LayoutFigures { n_listed: listed.len(), n_found, n_in_front }
    }
}

/// A port the kernel just handed out and released: `--listen 127.0.0.1:0` would work too, but
/// then the benchmark would have to learn the port from opsgate's log.
pub fn free_loopback_address() -> Result<SocketAddr> {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(probe.local_addr()?)
}

/// Polls `tools/list` (2026-07-28 wire) on a starting `opsgate serve` until it answers and, with
/// `wanted`, lists that tool (a federated one appears once its server has connected). Returns how
/// many tools it listed.
pub async fn wait_until_serving(
    child: &mut Child,
    sandbox: &Sandbox,
    address: SocketAddr,
    authorization: Option<String>,
    wanted: Option<&str>,
) -> Result<usize> {
    let meta = wire::request_meta();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("opsgate serve exited with {status}; stderr:\n{}", sandbox.log_tail());
        }
        let attempt = async {
            let connection = Connection::open(address).await?;
            let mut connection = connection.with_authorization(authorization.clone());
            let (status, body) = connection.post("tools/list", None, wire::tools_list_body(1, &meta)).await?;
            let result = wire::result_of(status, &body, 1)?;
            let tools = result.get("tools").and_then(Value::as_array).context("tools/list returned no tools")?;
            let listed = |name: &str| tools.iter().any(|tool| tool.get("name").and_then(Value::as_str) == Some(name));
            match wanted {
                Some(wanted) if !listed(wanted) => bail!("{wanted} is not listed yet"),
                _ => Ok(tools.len()),
            }
        };
        match attempt.await {
            Ok(n_tools) => return Ok(n_tools),
            Err(error) if Instant::now() > deadline => {
                return Err(error.context(format!("opsgate serve never got ready; stderr:\n{}", sandbox.log_tail())));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// A `Key:   1234 kB` line of /proc/PID/status, in KiB.
fn proc_status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::{LayoutFigures, proc_status_kib};

    #[test]
    fn layout_figures_count_each_listed_name_once_and_look_at_the_front_of_the_code() {
        let list = "# header\nstart\nserve\nidle\nnot_built\n";
        // `start` is defined twice (a file-local function of two objects); `main` is not listed
        // and sits among the listed ones; data symbols (`d`) do not count.
        let laid_out = "10 t start\n20 T serve\n30 t main\n40 t start\n50 T idle\n60 d serve_table\n70 T other\n";
        assert_eq!(LayoutFigures::of(list, laid_out), LayoutFigures { n_listed: 4, n_found: 3, n_in_front: 2 });
        let spread = "10 T other\n20 t main\n30 T more\n40 t serve\n50 t start\n60 t idle\n";
        assert_eq!(LayoutFigures::of(list, spread), LayoutFigures { n_listed: 4, n_found: 3, n_in_front: 0 });
    }

    #[test]
    fn reads_kib_from_proc_status() {
        let status = "Name:\topsgate\nVmHWM:\t   20480 kB\nVmRSS:\t   12345 kB\n";
        assert_eq!(proc_status_kib(status, "VmRSS:"), Some(12345));
        assert_eq!(proc_status_kib(status, "VmHWM:"), Some(20480));
        assert_eq!(proc_status_kib(status, "VmSwap:"), None);
    }
}
