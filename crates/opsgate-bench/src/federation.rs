//! Section 5: what the gateway adds to a call to a federated server. One upstream, the bare
//! `echo` server run as `opsgate-bench --upstream …` (see `upstream`), is called directly as
//! `echo` and through opsgate as `mcp__up__echo`, over Streamable HTTP (`opsgate serve`, which
//! connects to the upstream's URL) and over stdio (`opsgate stdio`, which starts its own upstream
//! child), in alternating runs of the same rounds.
//!
//! Every process starts once and serves every round, so a run times calls, not start-ups; the
//! process idle in a run (opsgate, during a direct run) costs nothing but memory. Through opsgate
//! every call passes the whole pipeline as a user's would: an API key over HTTP, the local user
//! over stdio, the default policy (the upstream marks `echo` read-only, so it is a read), and the
//! durable SQLite audit log, whose record count is checked against the successful calls at the end.

use std::path::Path;
use std::process::Stdio;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rmcp::RoleClient;
use rmcp::model::ProtocolVersion;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, Peer, RunningService};
use rmcp::transport::TokioChildProcess;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::binary::{self, Config, Sandbox};
use crate::load::{self, CallerStats, LoadConfig, LoadReport, Window};
use crate::servers::ECHO;
use crate::upstream;

/// The upstream's name in `mcp.json`, and so the prefix of its tools behind opsgate.
const SERVER: &str = "up";
/// `echo` as opsgate names it, `mcp__up__echo`.
pub static FEDERATED_ECHO: LazyLock<String> = LazyLock::new(|| opsgate_core::federated_name(SERVER, ECHO));

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Http,
    Stdio,
}

impl Transport {
    pub fn label(self) -> &'static str {
        match self {
            Transport::Http => "Streamable HTTP",
            Transport::Stdio => "stdio",
        }
    }
}

/// One comparison: a transport and how many calls are in flight at once (HTTP connections, or
/// concurrent callers sharing one stdio client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair {
    pub transport: Transport,
    pub in_flight: usize,
}

/// The same pair measured directly and through opsgate, one right after the other.
pub struct PairRun {
    pub pair: Pair,
    pub direct: LoadReport,
    pub through: LoadReport,
    /// Over Streamable HTTP, the mean time one flush of opsgate's audit log took during the run
    /// through it (from its `/metrics`); every call waits for one. `opsgate stdio` has no
    /// `/metrics`.
    pub through_flush: Option<Duration>,
}

impl PairRun {
    /// Through minus direct, in milliseconds: negative when noise made the direct run slower.
    pub fn added_p50_ms(&self) -> f64 {
        (self.through.p50.as_secs_f64() - self.direct.p50.as_secs_f64()) * 1e3
    }

    pub fn added_p99_ms(&self) -> f64 {
        (self.through.p99.as_secs_f64() - self.direct.p99.as_secs_f64()) * 1e3
    }

    /// Through opsgate's calls per second over direct calls per second.
    pub fn ratio(&self) -> f64 {
        if self.direct.calls_per_second > 0.0 {
            self.through.calls_per_second / self.direct.calls_per_second
        } else {
            0.0
        }
    }
}

/// The audit log of one opsgate after the runs through it.
#[derive(Debug, Clone, Copy)]
pub struct AuditCheck {
    /// Successful calls through opsgate, warm-ups included.
    pub n_calls: u64,
    /// Records in its log; the chain verified (otherwise the measurement failed).
    pub n_records: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// HTTP connections of the throughput pair (section 1's default).
    pub connections: usize,
    /// Concurrent callers on one stdio client in the throughput pair.
    pub stdio_in_flight: usize,
    pub warmup: Duration,
    pub measure: Duration,
    pub rounds: usize,
    /// Worker threads of the load generator and of the stdio clients' runtime.
    pub threads: usize,
}

impl Settings {
    /// Each pair once (a throughput pair of one connection is the latency pair).
    pub fn pairs(&self) -> Vec<Pair> {
        let mut pairs = vec![
            Pair { transport: Transport::Http, in_flight: 1 },
            Pair { transport: Transport::Http, in_flight: self.connections },
            Pair { transport: Transport::Stdio, in_flight: 1 },
            Pair { transport: Transport::Stdio, in_flight: self.stdio_in_flight },
        ];
        pairs.dedup();
        pairs
    }
}

pub struct FederationReport {
    pub settings: Settings,
    /// Per round, one run of each of `settings.pairs()`, in that order.
    pub rounds: Vec<Vec<PairRun>>,
    pub http_audit: AuditCheck,
    pub stdio_audit: AuditCheck,
}

impl FederationReport {
    /// Every round's run of `pair`.
    pub fn runs_of(&self, pair: Pair) -> impl Iterator<Item = &PairRun> {
        self.rounds.iter().flatten().filter(move |run| run.pair == pair)
    }
}

/// Runs the section. `opsgate_bin` must be absolute (opsgate runs in a scratch directory).
pub fn measure(opsgate_bin: &Path, settings: Settings) -> Result<FederationReport> {
    // The upstream is this very binary in its `--upstream` mode.
    let upstream_exe = std::env::current_exe().context("locating opsgate-bench itself")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.threads)
        .thread_name("opsgate-bench-client")
        .enable_all()
        .build()
        .context("starting the runtime for the federation clients")?;
    // rmcp's child-process transport stops its child from a task spawned in `Drop`, so whatever
    // holds one must be dropped inside the runtime, also when a run fails. The HTTP load
    // generator's own runtime can still start: entering only sets the current handle.
    let _context = runtime.enter();
    let http = runtime.block_on(HttpSetup::start(opsgate_bin, &upstream_exe)).context("setting up the HTTP pair")?;
    let stdio = runtime.block_on(StdioSetup::start(opsgate_bin, &upstream_exe)).context("setting up the stdio pair")?;

    let mut rounds = Vec::with_capacity(settings.rounds);
    let (mut n_http_through, mut n_stdio_through) = (0, 0);
    for round in 1..=settings.rounds {
        let mut runs = Vec::new();
        for pair in settings.pairs() {
            let mut through_flush = None;
            let mut run = |route: Route| -> Result<LoadReport> {
                match pair.transport {
                    Transport::Http => match route {
                        Route::Direct => http.load(&settings, pair, route),
                        Route::Through => {
                            let before = runtime.block_on(http.flush_totals())?;
                            let report = http.load(&settings, pair, route)?;
                            through_flush = mean_flush(before, runtime.block_on(http.flush_totals())?);
                            Ok(report)
                        }
                    },
                    Transport::Stdio => {
                        let (peer, tool) = match route {
                            Route::Direct => (stdio.direct.peer(), ECHO),
                            Route::Through => (stdio.through.peer(), FEDERATED_ECHO.as_str()),
                        };
                        runtime.block_on(stdio_load(peer, tool, pair.in_flight, &settings))
                    }
                }
            };
            // Direct first in odd rounds, through opsgate first in even ones, so that drift on
            // the machine does not always favour the same side.
            let (direct, through) = if round % 2 == 1 {
                let direct = run(Route::Direct)?;
                (direct, run(Route::Through)?)
            } else {
                let through = run(Route::Through)?;
                (run(Route::Direct)?, through)
            };
            let label = format!("{} with {} in flight", pair.transport.label(), pair.in_flight);
            direct.no_errors(&format!("{label}, direct"))?;
            through.no_errors(&format!("{label}, through opsgate"))?;
            match pair.transport {
                Transport::Http => n_http_through += through.n_succeeded,
                Transport::Stdio => n_stdio_through += through.n_succeeded,
            }
            let run = PairRun { pair, direct, through, through_flush };
            eprintln!(
                "opsgate-bench: federation round {round}/{}: {label}: p50 {:.3} → {:.3} ms (+{:.3}), {:.0} → {:.0} calls/s (×{:.2})",
                settings.rounds,
                run.direct.p50.as_secs_f64() * 1e3,
                run.through.p50.as_secs_f64() * 1e3,
                run.added_p50_ms(),
                run.direct.calls_per_second,
                run.through.calls_per_second,
                run.ratio()
            );
            runs.push(run);
        }
        rounds.push(runs);
    }

    let http_audit = runtime.block_on(http.finish(opsgate_bin, n_http_through)).context("opsgate serve's audit log")?;
    let stdio_audit =
        runtime.block_on(stdio.finish(opsgate_bin, n_stdio_through)).context("opsgate stdio's audit log")?;
    Ok(FederationReport { settings, rounds, http_audit, stdio_audit })
}

/// Which side of a pair a run calls.
#[derive(Debug, Clone, Copy)]
enum Route {
    Direct,
    Through,
}

/// The HTTP pair: the upstream on its own port, and `opsgate serve` federating it.
struct HttpSetup {
    /// Kept for its stdin: the upstream ends when it closes.
    upstream: Child,
    upstream_address: std::net::SocketAddr,
    opsgate: Child,
    opsgate_address: std::net::SocketAddr,
    sandbox: Sandbox,
    /// `Bearer og_…` for a key with role operator: anonymous access is off, as in section 1.
    authorization: String,
}

impl HttpSetup {
    async fn start(bin: &Path, upstream_exe: &Path) -> Result<HttpSetup> {
        let mut upstream = Command::new(upstream_exe)
            .args(["--upstream", upstream::HTTP])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {} --upstream {}", upstream_exe.display(), upstream::HTTP))?;
        let stdout = upstream.stdout.take().context("the upstream's stdout is not piped")?;
        let line = tokio::time::timeout(Duration::from_secs(10), BufReader::new(stdout).lines().next_line())
            .await
            .context("the upstream printed no address within 10 s")?
            .context("reading the upstream's stdout")?
            .context("the upstream closed stdout before printing its address")?;
        let upstream_address: std::net::SocketAddr =
            line.trim().parse().with_context(|| format!("the upstream printed {line:?}, not an address"))?;

        let sandbox = Sandbox::new(Config::None)?;
        let url = format!("http://{upstream_address}/mcp");
        write_mcp_json(&sandbox, json!({"servers": {SERVER: {"transport": "streamable-http", "url": url}}}))?;
        let key = create_api_key(bin, &sandbox).await?;
        let opsgate_address = binary::free_loopback_address()?;
        let listen = opsgate_address.to_string();
        let mut command = sandbox.command(bin, &["serve", "--listen", &listen])?;
        command.stdin(Stdio::null()).stdout(Stdio::null());
        let mut opsgate = command.spawn().with_context(|| format!("spawning {}", bin.display()))?;
        let authorization = format!("Bearer {key}");
        binary::wait_until_serving(
            &mut opsgate,
            &sandbox,
            opsgate_address,
            Some(authorization.clone()),
            Some(FEDERATED_ECHO.as_str()),
        )
        .await
        .context("waiting for opsgate serve to list the federated echo")?;
        Ok(HttpSetup { upstream, upstream_address, opsgate, opsgate_address, sandbox, authorization })
    }

    /// Section 1's load generator against the upstream, or against opsgate.
    fn load(&self, settings: &Settings, pair: Pair, route: Route) -> Result<LoadReport> {
        let (address, tool, authorization) = match route {
            Route::Direct => (self.upstream_address, ECHO, None),
            Route::Through => (self.opsgate_address, FEDERATED_ECHO.as_str(), Some(self.authorization.clone())),
        };
        load::run(&LoadConfig {
            address,
            tool,
            connections: pair.in_flight,
            warmup: settings.warmup,
            measure: settings.measure,
            threads: settings.threads,
            authorization,
        })
    }

    /// How many times opsgate has flushed its audit log so far, and for how long in all, from
    /// `opsgate_store_log_flush_seconds` on its `/metrics`.
    async fn flush_totals(&self) -> Result<FlushTotals> {
        let mut connection = crate::wire::Connection::open(self.opsgate_address).await?;
        let (status, body) = connection.get("/metrics").await.context("reading opsgate's /metrics")?;
        if !status.is_success() {
            bail!("opsgate's /metrics answered HTTP {status}");
        }
        let text = String::from_utf8_lossy(&body);
        let value = |name: &str| -> Result<f64> {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
                .with_context(|| format!("opsgate's /metrics has no {name}"))
        };
        Ok(FlushTotals {
            count: value("opsgate_store_log_flush_seconds_count")? as u64,
            seconds: value("opsgate_store_log_flush_seconds_sum")?,
        })
    }

    async fn finish(mut self, bin: &Path, n_calls: u64) -> Result<AuditCheck> {
        // Each record was committed before its call was answered: stopping abruptly loses none.
        self.opsgate.kill().await.context("stopping opsgate serve")?;
        let check = audit_check(bin, &self.sandbox, n_calls).await;
        drop(self.upstream.stdin.take());
        let _ = self.upstream.kill().await;
        check
    }
}

/// Flushes of opsgate's audit log so far.
#[derive(Debug, Clone, Copy)]
struct FlushTotals {
    count: u64,
    seconds: f64,
}

/// The mean flush between two readings; `None` when none happened.
fn mean_flush(before: FlushTotals, after: FlushTotals) -> Option<Duration> {
    let count = after.count.checked_sub(before.count).filter(|&count| count > 0)?;
    Some(Duration::from_secs_f64((after.seconds - before.seconds).max(0.0) / count as f64))
}

/// How the stdio clients start: the newest revision first, as opsgate's own upstream client
/// does, so that every stdio hop speaks the same revision (2026-07-28 with this upstream).
fn lifecycle() -> ClientLifecycleMode {
    ClientLifecycleMode::Auto {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        legacy_version: Some(ProtocolVersion::LATEST_WITH_INITIALIZE),
    }
}

/// The stdio pair: an MCP client of the upstream it started, and one of `opsgate stdio`, which
/// starts its own upstream.
struct StdioSetup {
    direct: RunningService<RoleClient, ()>,
    through: RunningService<RoleClient, ()>,
    sandbox: Sandbox,
}

impl StdioSetup {
    async fn start(bin: &Path, upstream_exe: &Path) -> Result<StdioSetup> {
        let mut command = Command::new(upstream_exe);
        command.args(["--upstream", upstream::STDIO]);
        let (transport, _) = TokioChildProcess::builder(command)
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("spawning {} --upstream {}", upstream_exe.display(), upstream::STDIO))?;
        let direct =
            ().serve_with_lifecycle(transport, lifecycle()).await.context("MCP handshake with the stdio upstream")?;
        wait_until_listed(direct.peer(), ECHO).await.context("the stdio upstream")?;

        let sandbox = Sandbox::new(Config::None)?;
        let upstream_command = upstream_exe.to_str().context("opsgate-bench's path is not UTF-8")?;
        write_mcp_json(
            &sandbox,
            json!({"servers": {SERVER: {"transport": "stdio", "command": upstream_command, "args": ["--upstream", upstream::STDIO]}}}),
        )?;
        let command = sandbox.command(bin, &["stdio"])?;
        let (transport, _) = TokioChildProcess::builder(command)
            .stderr(sandbox.log_file()?)
            .spawn()
            .with_context(|| format!("spawning {} stdio", bin.display()))?;
        let through = match ().serve_with_lifecycle(transport, lifecycle()).await {
            Ok(through) => through,
            Err(error) => bail!("MCP handshake with opsgate stdio: {error}; stderr:\n{}", sandbox.log_tail()),
        };
        if let Err(error) = wait_until_listed(through.peer(), &FEDERATED_ECHO).await {
            return Err(error.context(format!("opsgate stdio; stderr:\n{}", sandbox.log_tail())));
        }
        Ok(StdioSetup { direct, through, sandbox })
    }

    async fn finish(self, bin: &Path, n_calls: u64) -> Result<AuditCheck> {
        // Closing stdin is how a client says goodbye: opsgate stops its upstream and exits.
        let _ = self.direct.cancel().await;
        let _ = self.through.cancel().await;
        audit_check(bin, &self.sandbox, n_calls).await
    }
}

/// `.opsgate/mcp.json` in the sandbox, the project file opsgate reads from its working directory
/// (the sandbox's own XDG config home has no global one).
fn write_mcp_json(sandbox: &Sandbox, servers: Value) -> Result<()> {
    let dir = sandbox.dir().join(".opsgate");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("mcp.json");
    std::fs::write(&path, servers.to_string()).with_context(|| format!("writing {}", path.display()))
}

/// `opsgate keys create` in the sandbox's data directory; returns the key.
pub async fn create_api_key(bin: &Path, sandbox: &Sandbox) -> Result<String> {
    let mut command = sandbox.command(bin, &["keys", "create", "--name", "bench", "--roles", "operator"])?;
    let output = command.stdin(Stdio::null()).output().await.context("running opsgate keys create")?;
    let key = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !output.status.success() || !key.starts_with("og_") {
        bail!("opsgate keys create failed ({}); stderr:\n{}", output.status, sandbox.log_tail());
    }
    Ok(key)
}

/// `opsgate audit verify` on the sandbox's data directory: the chain must verify and hold one
/// record per successful call.
async fn audit_check(bin: &Path, sandbox: &Sandbox, n_calls: u64) -> Result<AuditCheck> {
    let mut command = sandbox.command(bin, &["audit", "verify"])?;
    let output = command.stdin(Stdio::null()).output().await.context("running opsgate audit verify")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let n_records = stdout
        .trim()
        .strip_prefix("audit chain intact: ")
        .and_then(|rest| rest.strip_suffix(" records"))
        .and_then(|count| count.parse::<u64>().ok());
    let Some(n_records) = n_records.filter(|_| output.status.success()) else {
        bail!(
            "opsgate audit verify did not report an intact chain ({}): {stdout}{}",
            output.status,
            sandbox.log_tail()
        );
    };
    if n_records != n_calls {
        bail!("{n_calls} successful calls but {n_records} audit records: every call must be audited exactly once");
    }
    Ok(AuditCheck { n_calls, n_records })
}

/// Lists tools until `name` is there: a federated tool appears once opsgate's upstream connected.
async fn wait_until_listed(peer: &Peer<RoleClient>, name: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let tools = peer.list_all_tools().await.context("tools/list")?;
        if tools.iter().any(|tool| tool.name == name) {
            return Ok(());
        }
        if Instant::now() > deadline {
            let names: Vec<&str> = tools.iter().map(|tool| tool.name.as_ref()).collect();
            bail!("{name} was not listed within 20 s: {names:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `in_flight` callers sharing one stdio client, each calling back to back (closed loop) with
/// its own text, through the warm-up and the window; the same accounting as the HTTP load.
async fn stdio_load(
    peer: &Peer<RoleClient>,
    tool: &'static str,
    in_flight: usize,
    settings: &Settings,
) -> Result<LoadReport> {
    let window = Window::after(settings.warmup, settings.measure);
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..in_flight {
        let peer = peer.clone();
        tasks.spawn(async move {
            let text = format!("bench caller {index}");
            let mut arguments = Map::new();
            arguments.insert("text".to_string(), Value::String(text.clone()));
            let mut stats = CallerStats::default();
            while Instant::now() < window.end {
                let params = CallToolRequestParams::new(tool).with_arguments(arguments.clone());
                let sent = Instant::now();
                let result = peer.call_tool(params).await;
                let received = Instant::now();
                match result.context("tools/call failed").and_then(|result| check_echo(&result, &text)) {
                    Ok(()) => stats.success(sent, received, &window),
                    // The run has failed; calling on would only repeat the error.
                    Err(error) => {
                        stats.error(error);
                        break;
                    }
                }
            }
            stats
        });
    }
    let mut callers = Vec::with_capacity(in_flight);
    while let Some(joined) = tasks.join_next().await {
        callers.push(joined.context("a stdio caller panicked")?);
    }
    Ok(load::summarize(callers, &window))
}

/// A success whose first content block is the text sent.
fn check_echo(result: &CallToolResult, expected: &str) -> Result<()> {
    if result.is_error == Some(true) {
        bail!("tool returned an error: {:?}", result.content);
    }
    let text = result.content.first().and_then(|block| block.as_text()).map(|block| block.text.as_str());
    if text != Some(expected) {
        bail!("expected the text {expected:?}, got {:?}", result.content);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rmcp::ServiceExt;

    use super::*;
    use crate::servers::BareEcho;

    /// The stdio load and its checks against the upstream's server over an in-memory pipe: every
    /// call answered and counted, and a wrong text is an error.
    #[test]
    fn stdio_load_checks_every_answer() -> Result<()> {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        runtime.block_on(async {
            let (client_end, server_end) = tokio::io::duplex(64 * 1024);
            let server = tokio::spawn(async move {
                let service = BareEcho.serve(server_end).await?;
                service.waiting().await?;
                anyhow::Ok(())
            });
            let client = ().serve(client_end).await?;
            wait_until_listed(client.peer(), ECHO).await?;
            let settings = Settings {
                connections: 1,
                stdio_in_flight: 2,
                warmup: Duration::from_millis(50),
                measure: Duration::from_millis(300),
                rounds: 1,
                threads: 2,
            };
            let report = stdio_load(client.peer(), ECHO, 2, &settings).await?;
            assert_eq!(report.n_errors, 0, "{:?}", report.first_error);
            assert!(report.n_measured > 0 && report.n_succeeded >= report.n_measured as u64);
            assert!(report.p50 <= report.p99);
            let answer = client
                .peer()
                .call_tool(
                    CallToolRequestParams::new(ECHO)
                        .with_arguments(json!({"text": "hi"}).as_object().cloned().context("an object")?),
                )
                .await?;
            check_echo(&answer, "hi")?;
            assert!(check_echo(&answer, "other").is_err());
            client.cancel().await?;
            server.await??;
            anyhow::Ok(())
        })
    }

    #[test]
    fn added_latency_is_through_minus_direct() {
        let report = |p50_us, p99_us, calls_per_second| LoadReport {
            n_measured: 1,
            calls_per_second,
            p50: Duration::from_micros(p50_us),
            p99: Duration::from_micros(p99_us),
            n_succeeded: 1,
            n_errors: 0,
            first_error: None,
        };
        let run = PairRun {
            pair: Pair { transport: Transport::Http, in_flight: 1 },
            direct: report(100, 300, 8000.0),
            through: report(250, 700, 4000.0),
            through_flush: None,
        };
        assert!((run.added_p50_ms() - 0.15).abs() < 1e-9);
        assert!((run.added_p99_ms() - 0.4).abs() < 1e-9);
        assert!((run.ratio() - 0.5).abs() < 1e-9);
    }

    #[test]
    fn the_mean_flush_is_taken_between_two_readings() {
        let before = FlushTotals { count: 10, seconds: 0.002 };
        let after = FlushTotals { count: 14, seconds: 0.004 };
        assert_eq!(mean_flush(before, after), Some(Duration::from_micros(500)));
        assert_eq!(mean_flush(before, before), None);
    }
}
