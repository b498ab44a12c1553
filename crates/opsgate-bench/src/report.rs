//! BENCHMARKS.md: the header (date, command, machine), a summary against the targets, and one
//! section per measurement with every round, so a reader can judge the noise themselves.

use std::fmt::Write;
use std::time::Duration;

use crate::audit_cost::{AuditCost, FLOOR_BYTES, N_RECORDS, N_WARMUP};
use crate::binary::{RssReport, StdioReport};
use crate::context::{Backend, BackendRun, ContextReport};
use crate::federation::{FederationReport, Pair, PairRun, Transport};
use crate::load::LoadReport;
use crate::machine::Machine;
use crate::policy_cost::{N_DECISIONS, PolicyCost};
use crate::servers::AuditCount;

/// opsgate must keep at least this share of the bare SDK's throughput.
pub const RATIO_TARGET: f64 = 0.7;
pub const STDIO_TARGET: Duration = Duration::from_millis(50);
/// 30 MB in the strict decimal sense (10^6 bytes), the smaller reading of the target.
pub const RSS_TARGET_BYTES: u64 = 30_000_000;
/// What the gateway may add to the median federated call at one connection, in milliseconds.
pub const ADDED_P50_TARGET_MS: f64 = 0.3;
/// Sustained webhook ingestion on SQLite, in events stored per second.
pub const INGEST_TARGET: f64 = 5_000.0;
/// `search_context` over the bulk-loaded events, on either backend.
pub const SEARCH_P99_TARGET: Duration = Duration::from_millis(20);

/// A measurement that ran, could not run here, or ran and failed.
pub enum Section<T> {
    Measured(T),
    Skipped(String),
    Failed(String),
}

impl<T> Section<T> {
    /// A measurement's result: its figures, or the whole error chain for the report.
    pub fn from_result(result: anyhow::Result<T>) -> Self {
        match result {
            Ok(figures) => Section::Measured(figures),
            Err(error) => Section::Failed(format!("{error:#}")),
        }
    }

    pub fn failed(&self) -> bool {
        matches!(self, Section::Failed(_))
    }

    /// The summary row's "result | verdict" cells: `measured` renders figures, the other states
    /// say why there are none.
    fn summary(&self, measured: impl FnOnce(&T) -> String) -> String {
        match self {
            Section::Measured(figures) => measured(figures),
            Section::Skipped(why) => format!("not measured: {why} | skipped"),
            Section::Failed(_) => "failed, see below | **FAIL**".to_string(),
        }
    }

    /// The figures, or `None` after writing why there are none into the section's body.
    fn figures_or_note(&self, out: &mut String) -> Option<&T> {
        match self {
            Section::Measured(figures) => Some(figures),
            Section::Skipped(why) => {
                let _ = writeln!(out, "Not measured: {why}\n");
                None
            }
            Section::Failed(error) => {
                let _ = writeln!(out, "**Failed:**\n\n```text\n{error}\n```\n");
                None
            }
        }
    }
}

pub struct HttpRound {
    pub baseline: LoadReport,
    pub opsgate: LoadReport,
    pub audit: AuditCount,
}

impl HttpRound {
    pub fn ratio(&self) -> f64 {
        if self.baseline.calls_per_second > 0.0 {
            self.opsgate.calls_per_second / self.baseline.calls_per_second
        } else {
            0.0
        }
    }
}

/// How the run was set up, as the report describes it.
pub struct Setup {
    pub date: String,
    pub command: String,
    pub connections: usize,
    pub warmup: Duration,
    pub measure: Duration,
    pub rounds: usize,
    pub server_threads: usize,
    pub load_threads: usize,
    pub stdio_runs: usize,
    pub opsgate_bin: String,
}

pub struct Report {
    pub setup: Setup,
    pub machine: Machine,
    pub http: Section<Vec<HttpRound>>,
    pub stdio: Section<Vec<StdioReport>>,
    pub rss: Section<Vec<RssReport>>,
    /// What `binary::startup_layout` says of the measured binary; empty when there is none.
    pub layout: String,
    pub policy: Section<PolicyCost>,
    pub audit: Section<AuditCost>,
    pub federation: Section<FederationReport>,
    pub context: Section<ContextReport>,
}

/// The middle value (the lower of the two middle ones for an even count): always a value that
/// was actually measured.
pub fn median<T: Copy + PartialOrd>(values: impl IntoIterator<Item = T>) -> Option<T> {
    let mut values: Vec<T> = values.into_iter().collect();
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    values.get(values.len().saturating_sub(1) / 2).copied()
}

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1e3)
}

fn micros(duration: Duration) -> String {
    format!("{:.1} µs", duration.as_secs_f64() * 1e6)
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// A difference in milliseconds, signed: noise can make the direct side the slower one.
fn added_ms(milliseconds: f64) -> String {
    format!("{milliseconds:+.3} ms")
}

fn verdict(pass: bool) -> &'static str {
    if pass { "pass" } else { "**FAIL**" }
}

impl Report {
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.render_header(&mut out);
        self.render_summary(&mut out);
        self.render_http(&mut out);
        render_stdio(&mut out, &self.stdio, &self.setup.opsgate_bin, self.setup.stdio_runs);
        render_rss(&mut out, &self.rss, &self.layout, &self.setup.opsgate_bin);
        self.render_policy(&mut out);
        render_federation(&mut out, &self.federation, &self.setup.opsgate_bin);
        render_context(&mut out, &self.context, &self.setup.opsgate_bin);
        render_audit(&mut out, &self.audit);
        out
    }

    fn render_header(&self, out: &mut String) {
        let setup = &self.setup;
        let machine = &self.machine;
        let _ = writeln!(out, "# Benchmarks\n");
        let _ = writeln!(
            out,
            "Written by the benchmark itself; do not edit by hand. To refresh it, run `scripts/bench.sh` \
             (release build of `opsgate` and `opsgate-bench`, then the benchmark, which takes about \
             fifteen minutes with the defaults, most of it loading a million events into each store for \
             section 6).\n"
        );
        let _ = writeln!(out, "| | |\n| --- | --- |");
        let _ = writeln!(out, "| date | {} |", setup.date);
        let _ = writeln!(out, "| command | `{}` |", setup.command);
        let _ = writeln!(out, "| commit | {} |", machine.commit);
        let _ = writeln!(out, "| CPUs (nproc) | {} |", machine.n_cpus);
        let _ = writeln!(out, "| CPU model | {} |", machine.cpu_model);
        let _ = writeln!(out, "| memory | {} |", machine.memory);
        let _ = writeln!(out, "| kernel | {} |", machine.kernel);
        let _ = writeln!(out, "| rustc | {} |", machine.rustc);
        let _ = writeln!(out, "| load average at start (1, 5, 15 min) | {} |", machine.load_average);
        if !machine.stolen.is_empty() {
            let stolen: Vec<String> =
                machine.stolen.iter().map(|(section, share)| format!("{section}: {:.0}%", share * 100.0)).collect();
            let _ = writeln!(
                out,
                "| CPU time the hypervisor gave other guests (steal) while measured | {} |",
                stolen.join(", ")
            );
        }
        let _ = writeln!(out);
    }

    fn render_summary(&self, out: &mut String) {
        let _ = writeln!(out, "## Summary\n");
        let _ = writeln!(out, "| measurement | target | result | verdict |\n| --- | --- | --- | --- |");
        let ratio_row = self.http.summary(|rounds| {
            let ratio = median(rounds.iter().map(HttpRound::ratio)).unwrap_or(0.0);
            format!("{ratio:.2} | {}", verdict(ratio >= RATIO_TARGET))
        });
        let _ = writeln!(
            out,
            "| tools/call throughput, opsgate ÷ bare rmcp (median of rounds) | ≥ {RATIO_TARGET:.2} | {ratio_row} |"
        );
        // Every configuration must meet the target; the row shows each.
        let stdio_row = self.stdio.summary(|reports| {
            let results: Vec<String> = reports
                .iter()
                .map(|report| format!("{} ({})", ms(report.median), report.config.short_label()))
                .collect();
            let pass = reports.iter().all(|report| report.median < STDIO_TARGET);
            format!("{} | {}", results.join("; "), verdict(pass))
        });
        let _ = writeln!(
            out,
            "| `opsgate stdio` start to first tools/list answer (median of {}) | < {} | {stdio_row} |",
            self.setup.stdio_runs,
            ms(STDIO_TARGET)
        );
        let rss_row = self.rss.summary(|reports| {
            let results: Vec<String> = reports
                .iter()
                .map(|report| format!("{} ({})", megabytes(report.rss_bytes), report.config.short_label()))
                .collect();
            let pass = reports.iter().all(|report| report.rss_bytes < RSS_TARGET_BYTES);
            format!("{} | {}", results.join("; "), verdict(pass))
        });
        let _ = writeln!(out, "| idle RSS of `opsgate serve` | < {} | {rss_row} |", megabytes(RSS_TARGET_BYTES));
        let policy_row = self.policy.summary(|cost| {
            format!(
                "p50 {}, p99 {} from the cache; p50 {}, p99 {} evaluated | reported",
                micros(cost.cached.p50),
                micros(cost.cached.p99),
                micros(cost.evaluated.p50),
                micros(cost.evaluated.p99)
            )
        });
        let _ = writeln!(out, "| policy decision per call, default bundle | (reported) | {policy_row} |");
        let audit_row = self.audit.summary(|cost| {
            format!(
                "p50 {}, p99 {} ({:.1}× the disk's overwrite and flush) | reported",
                micros(cost.record.p50),
                micros(cost.record.p99),
                cost.ratio()
            )
        });
        let _ = writeln!(out, "| durable audit commit, one record at a time | (reported) | {audit_row} |");
        for transport in [Transport::Http, Transport::Stdio] {
            let row = self.federation.summary(|federation| federation_summary(federation, transport));
            let _ = writeln!(
                out,
                "| federated tools/call over {}: latency opsgate adds at one connection, p50 (median of rounds) | \
                 ≤ {ADDED_P50_TARGET_MS:.2} ms | {row} |",
                transport.label()
            );
        }
        for row in context_summary_rows(&self.context) {
            let _ = writeln!(out, "{row}");
        }
        let _ = writeln!(out);
    }

    fn render_policy(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "## 4. Policy decision cost
"
        );
        let _ = writeln!(
            out,
            "The decision the pipeline asks for on each of the benchmark's calls (principal `key:bench` with \
             role operator, the read tool `echo`, no target), {N_DECISIONS} times in a row on one thread, each \
             timed on its own. *Evaluated*: regorus evaluates the default bundle every time, as it does for a \
             policy that reads per-call facts such as `input.time`. *From the cache*: the default bundle reads \
             nothing that changes per call, so the pipeline serves repeated decisions from its cache \
             (docs/policy.md, Cost); this is what section 1's opsgate pays.\n"
        );
        let Some(cost) = self.policy.figures_or_note(out) else { return };
        let _ = writeln!(out, "| mode | p50 | p99 |\n| --- | ---: | ---: |");
        let _ = writeln!(out, "| evaluated | {} | {} |", micros(cost.evaluated.p50), micros(cost.evaluated.p99));
        let _ = writeln!(out, "| from the cache | {} | {} |", micros(cost.cached.p50), micros(cost.cached.p99));
        let _ = writeln!(out);
    }

    fn render_http(&self, out: &mut String) {
        let setup = &self.setup;
        let _ = writeln!(out, "## 1. tools/call over Streamable HTTP (2026-07-28, stateless, JSON responses)\n");
        let _ = writeln!(
            out,
            "Both servers run in the benchmark process, one after the other, on the same axum serve loop and \
             a loopback port, each on its own tokio runtime ({server} worker threads, as many as the `opsgate` binary \
             starts here). The load generator runs on a separate tokio runtime ({load} worker threads): its threads \
             are not the server's, but on this machine both share the same {cpus} CPUs, so the absolute \
             figures are lower than a server alone would reach. The ratio is what to read: both servers pay \
             the same client cost in the same run.\n",
            server = setup.server_threads,
            load = setup.load_threads,
            cpus = self.machine.n_cpus,
        );
        let _ = writeln!(
            out,
            "- **bare rmcp (baseline)**: rmcp 3.9.0 `StreamableHttpService` with `LocalSessionManager`, \
             `json_response` on, the same allowed hosts and body limit as opsgate, and one `echo` tool written \
             directly in a `ServerHandler` (no opsgate code).\n\
             - **opsgate**: `opsgate_server::http::app` with API-key identity (every request carries \
             `Authorization: Bearer og_…` for a key with role operator; anonymous access is off), the full \
             `Pipeline` (rate limits, target resolution, the default Rego policy bundle, timeout, redaction, \
             output budget) and a durable SQLite audit log (WAL, group commit, the WAL flushed before callers are answered) in a \
             temporary directory; the same `echo` registered as an `opsgate_core::Tool` (`Effect::Read`). The \
             baseline gets no `Authorization` header.\n\
             - **load**: {connections} tasks, each with its own HTTP/1.1 keep-alive connection (hyper), sending \
             `tools/call` back to back with the `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` headers and \
             the `io.modelcontextprotocol/*` `_meta`. Every response is checked (HTTP 200, matching id, \
             `isError` not set, the echoed text); a single error fails the benchmark.\n\
             - **timing**: {warmup} s warm-up, then {measure} s measured; a call counts when it completes inside \
             the window. Latency is from sending the request to having the whole response body. Rounds \
             alternate baseline and opsgate ({rounds} rounds); the verdict uses the median of the per-round \
             ratios, which cancels most of the drift in what else the machine is doing.\n",
            connections = setup.connections,
            warmup = setup.warmup.as_secs(),
            measure = setup.measure.as_secs(),
            rounds = setup.rounds,
        );
        let Some(rounds) = self.http.figures_or_note(out) else { return };
        let _ = writeln!(
            out,
            "| round | server | calls/s | p50 | p99 | calls in window | opsgate ÷ baseline |\n\
             | --- | --- | ---: | ---: | ---: | ---: | ---: |"
        );
        for (index, round) in rounds.iter().enumerate() {
            for (server, load, ratio) in [
                ("bare rmcp", &round.baseline, String::new()),
                ("opsgate", &round.opsgate, format!("{:.2}", round.ratio())),
            ] {
                let _ = writeln!(
                    out,
                    "| {} | {server} | {:.0} | {} | {} | {} | {ratio} |",
                    index + 1,
                    load.calls_per_second,
                    ms(load.p50),
                    ms(load.p99),
                    load.n_measured
                );
            }
        }
        let ratio = median(rounds.iter().map(HttpRound::ratio)).unwrap_or(0.0);
        median_row(out, "bare rmcp", rounds, |round| &round.baseline, String::new());
        median_row(out, "opsgate", rounds, |round| &round.opsgate, format!("**{ratio:.2}**"));
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Medians are taken per column. Audit check: after each opsgate run the audit chain was verified end \
             to end and its record count compared with the successful calls the load generator saw (warm-up \
             included):\n"
        );
        let _ = writeln!(out, "| round | successful calls | audit records | chain |\n| --- | ---: | ---: | --- |");
        for (index, round) in rounds.iter().enumerate() {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                index + 1,
                round.opsgate.n_succeeded,
                round.audit.n_records,
                if round.audit.chain_ok { "verified" } else { "**broken**" }
            );
        }
        let _ = writeln!(out);
    }
}

/// The federation figures one summary row shows for `transport`: the added latency at one
/// connection against the target, and both throughput ratios.
fn federation_summary(federation: &FederationReport, transport: Transport) -> String {
    let pairs: Vec<Pair> = federation.settings.pairs().into_iter().filter(|pair| pair.transport == transport).collect();
    let Some(single) = pairs.iter().find(|pair| pair.in_flight == 1) else {
        return "no run at one connection | **FAIL**".to_string();
    };
    let medians = PairMedians::of(federation, *single);
    let ratios: Vec<String> = pairs
        .iter()
        .map(|pair| format!("×{:.2} at {}", PairMedians::of(federation, *pair).ratio, in_flight_label(*pair)))
        .collect();
    format!(
        "{} (p99 {}){}; throughput through ÷ direct {} | {}",
        added_ms(medians.added_p50_ms),
        added_ms(medians.added_p99_ms),
        flush_clause(medians.through_flush),
        ratios.join(", "),
        verdict(medians.added_p50_ms <= ADDED_P50_TARGET_MS)
    )
}

/// ", of which …": the mean audit-log flush each call through opsgate waited for, when known.
fn flush_clause(flush: Option<Duration>) -> String {
    flush.map_or_else(String::new, |flush| format!(", of which the audit log's flush {} (mean)", ms3(flush)))
}

fn in_flight_label(pair: Pair) -> String {
    match (pair.transport, pair.in_flight) {
        (Transport::Http, 1) => "1 connection".to_string(),
        (Transport::Http, n) => format!("{n} connections"),
        (Transport::Stdio, 1) => "1 call in flight".to_string(),
        (Transport::Stdio, n) => format!("{n} calls in flight"),
    }
}

/// The medians over rounds of one pair. The added latencies and the ratio are medians of the
/// per-round differences and ratios (each from two runs back to back), so they need not equal
/// the difference or ratio of the medians beside them.
struct PairMedians {
    direct_p50: Duration,
    through_p50: Duration,
    added_p50_ms: f64,
    direct_p99: Duration,
    through_p99: Duration,
    added_p99_ms: f64,
    direct_calls: f64,
    through_calls: f64,
    ratio: f64,
    /// The mean flush of opsgate's audit log in the runs through it (HTTP only).
    through_flush: Option<Duration>,
}

impl PairMedians {
    fn of(federation: &FederationReport, pair: Pair) -> PairMedians {
        let runs: Vec<&PairRun> = federation.runs_of(pair).collect();
        let pick = |value: fn(&PairRun) -> f64| median(runs.iter().map(|run| value(run))).unwrap_or(0.0);
        let pick_time = |value: fn(&PairRun) -> Duration| median(runs.iter().map(|run| value(run))).unwrap_or_default();
        PairMedians {
            direct_p50: pick_time(|run| run.direct.p50),
            through_p50: pick_time(|run| run.through.p50),
            added_p50_ms: pick(PairRun::added_p50_ms),
            direct_p99: pick_time(|run| run.direct.p99),
            through_p99: pick_time(|run| run.through.p99),
            added_p99_ms: pick(PairRun::added_p99_ms),
            direct_calls: pick(|run| run.direct.calls_per_second),
            through_calls: pick(|run| run.through.calls_per_second),
            ratio: pick(PairRun::ratio),
            through_flush: median(runs.iter().filter_map(|run| run.through_flush)),
        }
    }
}

/// `--only binary`: sections 2 and 3 alone, for work on start-up time and idle memory.
pub fn render_binary_alone(
    stdio: &Section<Vec<StdioReport>>,
    rss: &Section<Vec<RssReport>>,
    layout: &str,
    opsgate_bin: &str,
    stdio_runs: usize,
) -> String {
    let mut out = String::new();
    render_stdio(&mut out, stdio, opsgate_bin, stdio_runs);
    render_rss(&mut out, rss, layout, opsgate_bin);
    out
}

fn render_stdio(out: &mut String, stdio: &Section<Vec<StdioReport>>, opsgate_bin: &str, stdio_runs: usize) {
    let _ = writeln!(out, "## 2. `opsgate stdio`: start to first tools/list answer\n");
    let _ = writeln!(
        out,
        "Spawns `{bin} [--config TMP/opsgate.toml] --data-dir TMP stdio` in a fresh temporary working \
         directory with its own XDG homes, once with no config file (no backends, so no tools) and once \
         with the README's example config (one Prometheus, one Alertmanager: the real tool set) whose \
         URLs point at a closed loopback port; start-up does not contact backends. The benchmark writes \
         `initialize` (2025-11-25), `notifications/initialized` and `tools/list` to its stdin at once, \
         and times spawn → the `tools/list` response line on stdout. One untimed run first creates the \
         store and brings the binary into the page cache; then {n} timed runs against that data \
         directory, as a user's second and later starts would be.\n",
        bin = opsgate_bin,
        n = stdio_runs,
    );
    let Some(reports) = stdio.figures_or_note(out) else { return };
    let _ = writeln!(
        out,
        "| configuration | tools listed | median | min | max | runs (ms) | target | verdict |\n\
         | --- | ---: | ---: | ---: | ---: | --- | --- | --- |"
    );
    for report in reports {
        let runs: Vec<String> = report.runs.iter().map(|run| format!("{:.1}", run.as_secs_f64() * 1e3)).collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | < {} | {} |",
            report.config.label(),
            report.n_tools,
            ms(report.median),
            ms(report.runs.iter().min().copied().unwrap_or_default()),
            ms(report.runs.iter().max().copied().unwrap_or_default()),
            runs.join(", "),
            ms(STDIO_TARGET),
            verdict(report.median < STDIO_TARGET)
        );
    }
    let _ = writeln!(out);
}

fn render_rss(out: &mut String, rss: &Section<Vec<RssReport>>, layout: &str, opsgate_bin: &str) {
    let _ = writeln!(out, "## 3. Idle memory of `opsgate serve`\n");
    let _ = writeln!(
        out,
        "Spawns `{bin} [--config TMP/opsgate.toml] --data-dir TMP serve --listen 127.0.0.1:PORT` on a \
         free port, in the same two configurations as above, waits until it answers one `tools/list` \
         (2026-07-28 wire), waits 1 s more, and reads `VmRSS` (and the peak, `VmHWM`) from \
         `/proc/PID/status`. VmRSS is the sum of the process's own memory (`RssAnon`: heap, stacks) \
         and the file pages it has mapped (`RssFile`: mostly the binary's code and constants, shared \
         with the page cache). MB here is 10^6 bytes.\n",
        bin = opsgate_bin,
    );
    let Some(reports) = rss.figures_or_note(out) else { return };
    let _ = writeln!(
        out,
        "| configuration | tools listed | VmRSS | RssAnon | RssFile | VmHWM (peak) | target | verdict |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |"
    );
    for report in reports {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | < {} | {} |",
            report.config.label(),
            report.n_tools,
            megabytes(report.rss_bytes),
            megabytes(report.anon_bytes),
            megabytes(report.file_bytes),
            megabytes(report.hwm_bytes),
            megabytes(RSS_TARGET_BYTES),
            verdict(report.rss_bytes < RSS_TARGET_BYTES)
        );
    }
    let _ = writeln!(out);
    if !layout.is_empty() {
        let _ = writeln!(out, "{layout}\n");
    }
}

/// Section 5 alone, for `--only federation`.
pub fn render_federation_alone(federation: &Section<FederationReport>, opsgate_bin: &str) -> String {
    let mut out = String::new();
    render_federation(&mut out, federation, opsgate_bin);
    out
}

fn ms3(duration: Duration) -> String {
    format!("{:.3} ms", duration.as_secs_f64() * 1e3)
}

fn render_federation(out: &mut String, federation: &Section<FederationReport>, opsgate_bin: &str) {
    let _ = writeln!(out, "## 5. Federation: what opsgate adds to a call to a federated server\n");
    let settings = match federation {
        Section::Measured(report) => Some(report.settings),
        _ => None,
    };
    let connections = settings.map_or("N".to_string(), |settings| settings.connections.to_string());
    let callers = settings.map_or("N".to_string(), |settings| settings.stdio_in_flight.to_string());
    let _ = writeln!(
        out,
        "One upstream MCP server, section 1's bare rmcp `echo` server (annotated `readOnlyHint: true`) run as a \
         process of its own (`opsgate-bench --upstream http|stdio`, multi-threaded tokio runtime), is called \
         directly as `echo` and through opsgate as `{federated}`, in the same run. Every process starts once, \
         before the first round, and serves every round; in each round each pair runs direct and through \
         opsgate back to back, direct first in odd rounds and through opsgate first in even ones. Every hop \
         speaks MCP 2026-07-28: the load generator sends its stateless wire, and the stdio clients, like \
         opsgate's own client of the upstream, negotiate it (`server/discover`). Through opsgate each call passes the whole pipeline as a user's would: identity, \
         the default policy (the annotation makes the call a read), rate limits, redaction, the output budget \
         and the durable SQLite audit log, then opsgate's rmcp client to the upstream.\n",
        federated = crate::federation::FEDERATED_ECHO.as_str()
    );
    let _ = writeln!(
        out,
        "- **Streamable HTTP**: the upstream serves `/mcp` on a loopback port with section 1's baseline \
         settings. `{opsgate_bin} serve --listen 127.0.0.1:PORT` runs in a scratch directory whose \
         `.opsgate/mcp.json` is `{{\"servers\": {{\"up\": {{\"transport\": \"streamable-http\", \"url\": \
         \"http://127.0.0.1:UPSTREAM/mcp\"}}}}}}`, with its own data directory and one API key (role operator, \
         so anonymous access is off). Section 1's load generator (2026-07-28 stateless wire, one HTTP/1.1 \
         keep-alive connection per task) calls the upstream directly, then opsgate with \
         `Authorization: Bearer og_…`.\n\
         - **stdio**: the benchmark's rmcp client spawns `opsgate-bench --upstream stdio` itself, and spawns \
         `{opsgate_bin} stdio` (the local user, role operator) in a scratch directory whose `.opsgate/mcp.json` \
         has opsgate start the same command as its child. Concurrent callers share one client.\n\
         - **runs**: one call in flight, the case the target is about, and a throughput pair with {connections} \
         HTTP connections (section 1's count) or {callers} stdio callers. opsgate lets at most 16 calls per \
         federated server be in flight by default (`max_concurrency`), so with more connections the rest wait \
         for a slot inside opsgate; that default is what is measured. Each caller calls back to back with \
         its own text; 0.5 s warm-up, then {measure} measured per run; rounds: {rounds}.\n\
         - **checks**: every response must be a success carrying the caller's text; one error fails the \
         benchmark. At the end each opsgate's audit chain is verified with `opsgate audit verify`, and its \
         record count must equal the successful calls made through it.\n\
         - **figures**: *added* is through minus direct in the same round (negative when noise slowed the \
         direct run); *through ÷ direct* is calls per second. The tables give the median over rounds of \
         each column; the added latencies and the ratio are medians of the per-round values, so they need not \
         equal the difference or ratio of the medians beside them. *Audit log flush* is the mean time one \
         flush of `opsgate serve`'s audit log took during a run through it, from `opsgate_store_log_flush_seconds` \
         on its `/metrics` before and after the run: the disk's part of what each call waits for (`opsgate \
         stdio` serves no `/metrics`).\n",
        measure = settings.map_or("N s".to_string(), |settings| format!("{} s", settings.measure.as_secs())),
        rounds = settings.map_or("N".to_string(), |settings| settings.rounds.to_string()),
    );
    let Some(report) = federation.figures_or_note(out) else { return };
    let _ = writeln!(
        out,
        "| transport | in flight | p50 direct | p50 through | **added p50** | p99 direct | p99 through | added p99 | \
         calls/s direct | calls/s through | **through ÷ direct** |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for pair in report.settings.pairs() {
        let medians = PairMedians::of(report, pair);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | **{}** | {} | {} | {} | {:.0} | {:.0} | **{:.2}** |",
            pair.transport.label(),
            in_flight_label(pair),
            ms3(medians.direct_p50),
            ms3(medians.through_p50),
            added_ms(medians.added_p50_ms),
            ms3(medians.direct_p99),
            ms3(medians.through_p99),
            added_ms(medians.added_p99_ms),
            medians.direct_calls,
            medians.through_calls,
            medians.ratio
        );
    }
    let _ = writeln!(out);
    for transport in [Transport::Http, Transport::Stdio] {
        let pairs = report.settings.pairs();
        let single = pairs.iter().find(|pair| pair.transport == transport && pair.in_flight == 1);
        if let Some(single) = single {
            let medians = PairMedians::of(report, *single);
            let added = medians.added_p50_ms;
            let _ = writeln!(
                out,
                "- {} at one connection: opsgate adds {}{} to the median call (target ≤ {ADDED_P50_TARGET_MS:.2} ms): \
                 {}.",
                transport.label(),
                added_ms(added),
                flush_clause(medians.through_flush),
                verdict(added <= ADDED_P50_TARGET_MS)
            );
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "Every run:\n");
    let _ = writeln!(
        out,
        "| round | transport | in flight | calls/s direct | calls/s through | p50 direct | p50 through | \
         p99 direct | p99 through | added p50 | through ÷ direct | audit log flush, mean |\n\
         | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for (index, runs) in report.rounds.iter().enumerate() {
        for run in runs {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {:.2} | {} |",
                index + 1,
                run.pair.transport.label(),
                in_flight_label(run.pair),
                run.direct.calls_per_second,
                run.through.calls_per_second,
                ms3(run.direct.p50),
                ms3(run.through.p50),
                ms3(run.direct.p99),
                ms3(run.through.p99),
                added_ms(run.added_p50_ms()),
                run.ratio(),
                run.through_flush.map_or_else(|| "–".to_string(), ms3)
            );
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Audit check (warm-ups included; the chain verified end to end):\n\n\
         | opsgate | successful calls through it | audit records | chain |\n| --- | ---: | ---: | --- |"
    );
    for (label, audit) in [("`serve` (Streamable HTTP)", report.http_audit), ("`stdio`", report.stdio_audit)] {
        let _ = writeln!(out, "| {label} | {} | {} | verified |", audit.n_calls, audit.n_records);
    }
    let _ = writeln!(out);
}

/// Thousands separated by commas: `1,000,000`.
fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn seconds(duration: Duration) -> String {
    format!("{:.1} s", duration.as_secs_f64())
}

/// The summary's rows for section 6: ingestion and search on each backend.
fn context_summary_rows(context: &Section<ContextReport>) -> Vec<String> {
    let n_events = match context {
        Section::Measured(report) => thousands(report.settings.n_events),
        _ => "N".to_string(),
    };
    let mut rows = Vec::new();
    for backend in Backend::ALL {
        let row = context.summary(|report| {
            report.backend(backend).summary(|run| {
                let figures = format!(
                    "{:.0} events/s (delivery p50 {}, p99 {})",
                    run.ingest.calls_per_second,
                    ms(run.ingest.p50),
                    ms(run.ingest.p99)
                );
                match backend {
                    Backend::Sqlite => format!("{figures} | {}", verdict(run.ingest.calls_per_second >= INGEST_TARGET)),
                    Backend::Postgres => format!("{figures} | reported"),
                }
            })
        });
        let target = match backend {
            Backend::Sqlite => format!("≥ {} events/s", thousands(INGEST_TARGET as u64)),
            Backend::Postgres => "(reported)".to_string(),
        };
        rows.push(format!(
            "| operational context on {}: sustained CloudEvents ingestion through `/hooks/cloudevents` | {target} | {row} |",
            backend.label()
        ));
    }
    for backend in Backend::ALL {
        let row = context.summary(|report| {
            report.backend(backend).summary(|run| {
                format!(
                    "p99 {} (p50 {}, max {}) | {}",
                    ms(run.search.p99),
                    ms(run.search.p50),
                    ms(run.search.max),
                    verdict(run.search.p99 <= SEARCH_P99_TARGET)
                )
            })
        });
        rows.push(format!(
            "| operational context on {}: `search_context` over {n_events} events, p99 | ≤ {} | {row} |",
            backend.label(),
            ms(SEARCH_P99_TARGET)
        ));
    }
    rows
}

/// Section 6 alone, for `--only context`.
pub fn render_context_alone(context: &Section<ContextReport>, opsgate_bin: &str) -> String {
    let mut out = String::new();
    for row in context_summary_rows(context) {
        let _ = writeln!(out, "{row}");
    }
    let _ = writeln!(out);
    render_context(&mut out, context, opsgate_bin);
    out
}

fn render_context(out: &mut String, context: &Section<ContextReport>, opsgate_bin: &str) {
    let settings = match context {
        Section::Measured(report) => Some(report.settings),
        _ => None,
    };
    let n_events = settings.map_or("N".to_string(), |settings| thousands(settings.n_events));
    let _ = writeln!(
        out,
        "## 6. Operational context: webhook ingestion, and search over {n_events} events
"
    );
    let _ = writeln!(
        out,
        "Each backend in turn: SQLite in a scratch data directory, then PostgreSQL in a cluster the benchmark \
         starts for itself with `initdb` on a loopback port (the test harness's, `opsgate_testkit::Postgres`, \
         here with PostgreSQL's default durability: fsync, full page writes and synchronous commit on; other \
         settings are initdb's defaults). Both stores live on the same disk as the rest of the run.\n\n\
         - **bulk load** (set-up, not a target): {n_events} generated events go into a fresh store through \
         `Store::insert_events`, {batch} per call (one transaction each, with their search documents). The \
         generator is a seeded PRNG, so every run and both backends hold the same events: about 200 services \
         (some far busier than others), 8 environments, every event kind in a busy platform's proportions \
         (pipeline runs 30%, alerts 25%, deploys 18%, merges 10%, …), about thirty kinds of summary (deploys, \
         rollbacks, Argo CD syncs, pipeline runs passed or failed with suite and test names, alerts firing and \
         resolved such as HighErrorRate, PodCrashLooping, OOMKilled, DiskPressure, LatencyHigh, merges with PR \
         titles, config changes, feature flags, scaling, secret rotations, releases, executed actions, \
         approvals), attributes (sha, version, actor, status, repository…) and links, spread over the {span_days} days \
         before the run in the order they would have arrived.\n\
         - **search**: `{opsgate_bin} serve` on that store (`[events] retention_days = 0`, so nothing is \
         deleted under the benchmark) is called over Streamable HTTP (2026-07-28, stateless, with an API key \
         of role operator) from one client, one call after another: the {n_queries} queries below in turn, \
         {warmup} rounds untimed, then {rounds} rounds timed ({n_calls} calls), `limit` {limit}. Each call is the \
         whole of what an agent waits for: HTTP, identity, policy, `Store::search`, the output budget and the \
         durable audit record. Every call must succeed (`isError` not set). *store alone* is the median of \
         {store_runs} runs of the same `Store::search` in the benchmark's own process before opsgate started: \
         the query's share of the call.\n\
         - **ingestion**: then, on the same store and opsgate, {senders} senders (one HTTP/1.1 keep-alive \
         connection each) POST one structured-mode CloudEvent per request to `/hooks/cloudevents` with the \
         configured bearer token, back to back: deploys as CDEvents `service.deployed`, pipeline runs as \
         `pipelinerun.finished`, merges as `change.merged`, the rest as plain CloudEvents whose data names the \
         service and environment; each with a new id and the time it was sent. {warmup_s} warm-up, then \
         {ingest} measured; *events/s* counts the deliveries answered 202 with one event stored inside the \
         window, and latency is from sending to having the whole answer. Afterwards opsgate is stopped and \
         the store must hold exactly as many events from the run as deliveries were answered stored (warm-up \
         included), or the measurement fails.\n",
        n_queries = match context {
            Section::Measured(report) => report.cases.len().to_string(),
            _ => "N".to_string(),
        },
        batch = thousands(crate::context::BATCH),
        span_days = crate::context::SPAN_DAYS,
        limit = crate::context::SEARCH_LIMIT,
        warmup = crate::context::SEARCH_WARMUP_ROUNDS,
        rounds = crate::context::SEARCH_ROUNDS,
        n_calls = match context {
            Section::Measured(report) => (report.cases.len() * crate::context::SEARCH_ROUNDS).to_string(),
            _ => "N".to_string(),
        },
        store_runs = crate::context::STORE_RUNS,
        senders = settings.map_or("N".to_string(), |settings| settings.senders.to_string()),
        warmup_s = settings.map_or("N s".to_string(), |settings| seconds(settings.warmup)),
        ingest = settings.map_or("N s".to_string(), |settings| seconds(settings.ingest)),
    );
    let Some(report) = context.figures_or_note(out) else { return };
    let _ = writeln!(
        out,
        "| backend | bulk load | events/s | delivery p50 | delivery p99 | stored (202) / in the store | \
         search p50 | **search p99** | search max | verdicts |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    );
    for backend in Backend::ALL {
        match report.backend(backend) {
            Section::Measured(run) => {
                let ingest_verdict = match backend {
                    Backend::Sqlite => format!(
                        "ingestion ≥ {}: {}",
                        thousands(INGEST_TARGET as u64),
                        verdict(run.ingest.calls_per_second >= INGEST_TARGET)
                    ),
                    Backend::Postgres => "ingestion: reported".to_string(),
                };
                let _ = writeln!(
                    out,
                    "| {} | {} ({:.0} events/s) | **{:.0}** | {} | {} | {} / {} | {} | **{}** | {} | {ingest_verdict}; \
                     search p99 ≤ {}: {} |",
                    backend.label(),
                    seconds(run.bulk_load),
                    run.loaded_per_second(),
                    run.ingest.calls_per_second,
                    ms(run.ingest.p50),
                    ms(run.ingest.p99),
                    run.ingest.n_succeeded,
                    run.n_ingested_stored,
                    ms(run.search.p50),
                    ms(run.search.p99),
                    ms(run.search.max),
                    ms(SEARCH_P99_TARGET),
                    verdict(run.search.p99 <= SEARCH_P99_TARGET)
                );
            }
            Section::Skipped(why) => {
                let _ = writeln!(out, "| {} | not measured: {why} | | | | | | | | skipped |", backend.label());
            }
            Section::Failed(_) => {
                let _ = writeln!(out, "| {} | failed, see below | | | | | | | | **FAIL** |", backend.label());
            }
        }
    }
    let _ = writeln!(out);
    for backend in Backend::ALL {
        if let Section::Failed(error) = report.backend(backend) {
            let _ = writeln!(out, "**{} failed:**\n\n```text\n{error}\n```\n", backend.label());
        }
    }
    render_context_cpu(out, report);
    render_context_queries(out, report);
}

/// Where the CPUs went in each timed window: what limits a figure on a shared machine.
fn render_context_cpu(out: &mut String, report: &ContextReport) {
    let mut rows = Vec::new();
    for backend in Backend::ALL {
        let Section::Measured(run) = report.backend(backend) else { continue };
        let windows = [
            ("search", run.search.cpu, run.search.n_calls, "call"),
            ("ingestion", run.ingest_cpu, run.ingest.n_measured, "delivery"),
        ];
        for (window, cpu, n_operations, operation) in windows {
            let Some(cpu) = cpu else { continue };
            rows.push(format!(
                "| {} | {window} ({}) | {:.2} | {:.2} | {:.2} | {:.2} | {} per {operation} |",
                backend.label(),
                seconds(Duration::from_secs_f64(cpu.seconds)),
                cpu.opsgate,
                cpu.bench,
                cpu.machine,
                cpu.iowait,
                micros(cpu.opsgate_per(n_operations))
            ));
        }
    }
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "Where the CPUs went in each timed window (CPUs busy on average, of the machine's {}; *whole machine* \
         counts everything running on it, other work included; *IO wait* is time CPUs sat idle waiting for \
         the disk):\n\n\
         | backend | window | opsgate | benchmark (client) | whole machine | IO wait | opsgate CPU |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: |",
        report.settings.threads
    );
    for row in rows {
        let _ = writeln!(out, "{row}");
    }
    let _ = writeln!(out);
}

/// Per query: what it found and how long it took on each backend, so that a slow query shape
/// stands out.
fn render_context_queries(out: &mut String, report: &ContextReport) {
    let runs: Vec<Option<&BackendRun>> = Backend::ALL
        .iter()
        .map(|backend| match report.backend(*backend) {
            Section::Measured(run) => Some(run),
            _ => None,
        })
        .collect();
    if runs.iter().all(Option::is_none) {
        return;
    }
    let _ = writeln!(
        out,
        "Per query (*hits*: items returned, at most {}; * marks a query no document fully matched, ranked on \
         any of its words; p50 and max over its {} timed calls through opsgate):\n",
        crate::context::SEARCH_LIMIT,
        crate::context::SEARCH_ROUNDS
    );
    let mut header = "| query | kinds |".to_string();
    let mut rule = "| --- | --- |".to_string();
    for backend in Backend::ALL {
        let label = backend.label();
        header.push_str(&format!(" hits {label} | p50 {label} | store alone {label} | max {label} |"));
        rule.push_str(" ---: | ---: | ---: | ---: |");
    }
    let _ = writeln!(out, "{header}\n{rule}");
    for (index, case) in report.cases.iter().enumerate() {
        let kinds = if case.kinds.is_empty() { "all".to_string() } else { case.kinds.join(", ") };
        let mut row = format!("| `{}` | {kinds} |", case.query);
        for run in &runs {
            match run.and_then(|run| run.search.cases.get(index)) {
                Some(figures) => row.push_str(&format!(
                    " {}{} | {} | {} | {} |",
                    figures.n_hits,
                    if figures.all_words { "" } else { "*" },
                    ms(figures.p50),
                    ms(figures.store_p50),
                    ms(figures.max)
                )),
                None => row.push_str(" – | – | – | – |"),
            }
        }
        let _ = writeln!(out, "{row}");
    }
    let _ = writeln!(out);
}

/// The per-column medians of one server's rounds.
fn median_row(
    out: &mut String,
    server: &str,
    rounds: &[HttpRound],
    pick: impl Fn(&HttpRound) -> &LoadReport,
    ratio: String,
) {
    let calls = median(rounds.iter().map(|round| pick(round).calls_per_second)).unwrap_or(0.0);
    let p50 = median(rounds.iter().map(|round| pick(round).p50)).unwrap_or_default();
    let p99 = median(rounds.iter().map(|round| pick(round).p99)).unwrap_or_default();
    let n_measured = median(rounds.iter().map(|round| pick(round).n_measured)).unwrap_or(0);
    let _ = writeln!(
        out,
        "| **median** | {server} | **{calls:.0}** | **{}** | **{}** | {n_measured} | {ratio} |",
        ms(p50),
        ms(p99)
    );
}

/// Section 7 on its own, for `--only audit`.
pub fn render_audit_alone(audit: &Section<AuditCost>) -> String {
    let mut out = String::new();
    render_audit(&mut out, audit);
    out
}

fn render_audit(out: &mut String, audit: &Section<AuditCost>) {
    let _ = writeln!(out, "## 7. The durable audit commit\n");
    let _ = writeln!(
        out,
        "What every call waits for before its response leaves, with nothing to share it with: \
         `AuditLog::record` on a fresh SQLite store, {N_RECORDS} records one at a time (after {N_WARMUP} untimed), \
         each appended, committed and the log flushed; the chain verified afterwards. Against the disk's \
         floor in the same directory: {} KiB (about what one record adds to the log) written and \
         flushed with `fdatasync`, {N_RECORDS} times, in place over blocks already written (what the \
         log's write-ahead gives SQLite's commits) and at the end of a growing file.\n",
        FLOOR_BYTES >> 10
    );
    let Some(cost) = audit.figures_or_note(out) else { return };
    let _ = writeln!(out, "| what | p50 | p99 |\n| --- | ---: | ---: |");
    let _ = writeln!(
        out,
        "| audit record, appended and flushed | {} | {} |",
        micros(cost.record.p50),
        micros(cost.record.p99)
    );
    let _ = writeln!(
        out,
        "| disk: overwrite and flush | {} | {} |",
        micros(cost.overwrite.p50),
        micros(cost.overwrite.p99)
    );
    let _ = writeln!(out, "| disk: append and flush | {} | {} |", micros(cost.append.p50), micros(cost.append.p99));
    let _ = writeln!(out, "\nOne record costs {:.1}× the disk's overwrite and flush at the median.\n", cost.ratio());
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Section, median, render_federation_alone, thousands};
    use crate::federation::{AuditCheck, FederationReport, Pair, PairRun, Settings, Transport};
    use crate::load::LoadReport;

    #[test]
    fn median_is_a_measured_value() {
        assert_eq!(median([3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median([4, 1, 3, 2]), Some(2));
        assert_eq!(median(Vec::<u8>::new()), None);
    }

    /// Section 5 puts the median over rounds of the mean audit-log flush beside the added
    /// latency over HTTP, each round's in its row, and nothing for stdio, which has no `/metrics`.
    #[test]
    fn the_federation_section_shows_the_audit_log_flush_where_it_was_read() {
        let report = |p50_us| LoadReport {
            n_measured: 1,
            calls_per_second: 1000.0,
            p50: Duration::from_micros(p50_us),
            p99: Duration::from_micros(p50_us * 2),
            n_succeeded: 1,
            n_errors: 0,
            first_error: None,
        };
        let http = Pair { transport: Transport::Http, in_flight: 1 };
        let stdio = Pair { transport: Transport::Stdio, in_flight: 1 };
        let round = |flush_us| {
            vec![
                PairRun {
                    pair: http,
                    direct: report(100),
                    through: report(900),
                    through_flush: Some(Duration::from_micros(flush_us)),
                },
                PairRun { pair: stdio, direct: report(100), through: report(500), through_flush: None },
            ]
        };
        let settings = Settings {
            connections: 1,
            stdio_in_flight: 1,
            warmup: Duration::ZERO,
            measure: Duration::from_secs(1),
            rounds: 3,
            threads: 1,
        };
        let audit = AuditCheck { n_calls: 6, n_records: 6 };
        let federation = FederationReport {
            settings,
            rounds: vec![round(250), round(400), round(1_000)],
            http_audit: audit,
            stdio_audit: audit,
        };
        let out = render_federation_alone(&Section::Measured(federation), "opsgate");
        assert!(
            out.contains("- Streamable HTTP at one connection: opsgate adds +0.800 ms, of which the audit log's flush 0.400 ms (mean) to the median call"),
            "{out}"
        );
        assert!(out.contains("- stdio at one connection: opsgate adds +0.400 ms to the median call"), "{out}");
        assert!(out.contains("| 3 | Streamable HTTP | 1 connection |") && out.contains("| 1.000 ms |\n"), "{out}");
        assert!(out.contains("| 3 | stdio | 1 call in flight |") && out.contains("| – |\n"), "{out}");
    }

    #[test]
    fn thousands_are_separated_by_commas() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(5_000), "5,000");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(thousands(12_345_678), "12,345,678");
    }
}
