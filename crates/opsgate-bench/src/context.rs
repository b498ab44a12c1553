//! Section 6: the operational context at scale, on SQLite and on PostgreSQL. Per backend:
//!
//! 1. **bulk load** (set-up, timed but not a target): `--context-events` generated events go
//!    into a fresh store through `Store::insert_events`, 5,000 per call, as if received over 90
//!    days (`Generator`: a seeded PRNG, so every run and both backends hold the same events);
//! 2. **search**: `Store::search` alone for each query of a fixed mix (`search_cases`), then
//!    `opsgate serve` on that store and `search_context` called over Streamable HTTP (2026-07-28,
//!    an API key, the whole pipeline and its durable audit record) from one client, one call
//!    after another, every query of the mix in turn;
//! 3. **ingestion**: `--context-senders` concurrent senders, one keep-alive connection each,
//!    POST one structured-mode CloudEvent per request to `/hooks/cloudevents` (bearer token)
//!    through a warm-up and `--ingest-seconds`; afterwards, with opsgate stopped, the store must
//!    hold exactly as many new events as deliveries were answered 202 with `stored: 1`.
//!
//! PostgreSQL is a throwaway cluster of the benchmark's own (`opsgate_testkit::Postgres`, with
//! PostgreSQL's default durability); without its binaries that half is skipped, not failed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use opsgate_core::{Event, EventKind};
use opsgate_store::{EventQuery, SearchQuery, Store};
use opsgate_testkit::Postgres;
use serde_json::{Value, json};

use crate::binary::{self, Sandbox};
use crate::federation::create_api_key;
use crate::load::{self, CallerStats, LoadReport, Window};
use crate::machine;
use crate::report::Section;
use crate::wire::{self, Connection};

/// The bulk-loaded events fall in this many days before the run started.
pub const SPAN_DAYS: i64 = 90;
/// The generator's seed: any constant, so that every run holds the same events.
const SEED: u64 = 0x6f70_7367_6174_6531;
/// Events per `Store::insert_events` call in the bulk load.
pub const BATCH: u64 = 5_000;
const HOOK_PATH: &str = "/hooks/cloudevents";
const CLOUDEVENTS_JSON: &str = "application/cloudevents+json";
const SEARCH_TOOL: &str = "search_context";
/// Passed on every search, by the tool and to the store alone alike (the tool's default).
pub const SEARCH_LIMIT: i64 = 10;
/// Untimed rounds over the query mix before the measured ones.
pub const SEARCH_WARMUP_ROUNDS: usize = 2;
/// Measured rounds over the query mix, each query once per round.
pub const SEARCH_ROUNDS: usize = 30;
/// Timed runs of each query against the store alone, after one untimed run.
pub const STORE_RUNS: usize = 10;
/// The bearer token CloudEvents senders present; the sandbox is thrown away after the run.
const HOOK_TOKEN: &str = "opsgate-bench-cloudevents-token";

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Events bulk-loaded into each store before the search.
    pub n_events: u64,
    /// Concurrent CloudEvents senders, one connection each.
    pub senders: usize,
    /// Measure this store alone; `None`: both.
    pub store: Option<Backend>,
    pub warmup: Duration,
    /// The ingestion's measurement window.
    pub ingest: Duration,
    /// Worker threads of the benchmark's client runtime.
    pub threads: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub const ALL: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

    pub fn label(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

pub struct ContextReport {
    pub settings: Settings,
    pub cases: Vec<SearchCase>,
    pub sqlite: Section<BackendRun>,
    pub postgres: Section<BackendRun>,
}

impl ContextReport {
    pub fn backend(&self, backend: Backend) -> &Section<BackendRun> {
        match backend {
            Backend::Sqlite => &self.sqlite,
            Backend::Postgres => &self.postgres,
        }
    }

    pub fn failed(&self) -> bool {
        self.sqlite.failed() || self.postgres.failed()
    }
}

/// One backend's figures.
pub struct BackendRun {
    /// Events in the store when it was searched.
    pub n_loaded: u64,
    pub bulk_load: Duration,
    pub search: SearchFigures,
    pub ingest: LoadReport,
    /// New events the store held after the ingestion: `ingest.n_succeeded`, or the run failed.
    pub n_ingested_stored: u64,
    /// Where the CPUs went during the ingestion window; `None` when /proc could not be read.
    pub ingest_cpu: Option<CpuUse>,
}

/// The CPUs busy, on average, over a window: opsgate, the benchmark itself (the load), and the
/// whole machine (everything on it, other people's work included), and the machine's IO wait.
/// A shared machine's figures mean little without them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuUse {
    pub seconds: f64,
    pub opsgate: f64,
    pub bench: f64,
    pub machine: f64,
    pub iowait: f64,
}

impl CpuUse {
    /// opsgate's CPU time per operation, for `n_operations` in the window.
    pub fn opsgate_per(&self, n_operations: usize) -> Duration {
        Duration::from_secs_f64(self.opsgate * self.seconds / n_operations.max(1) as f64)
    }
}

/// Cumulative CPU times at one instant, to subtract.
struct CpuSample {
    at: Instant,
    opsgate: f64,
    bench: f64,
    machine: f64,
    iowait: f64,
}

impl CpuSample {
    fn take(opsgate_pid: u32) -> Option<CpuSample> {
        let (machine, iowait) = machine::machine_cpu_seconds()?;
        Some(CpuSample {
            at: Instant::now(),
            opsgate: machine::pid_cpu_seconds(opsgate_pid)?,
            bench: machine::process_cpu_seconds()?,
            machine,
            iowait,
        })
    }

    fn until(&self, later: &CpuSample) -> CpuUse {
        let seconds = later.at.duration_since(self.at).as_secs_f64().max(1e-9);
        CpuUse {
            seconds,
            opsgate: (later.opsgate - self.opsgate) / seconds,
            bench: (later.bench - self.bench) / seconds,
            machine: (later.machine - self.machine) / seconds,
            iowait: (later.iowait - self.iowait) / seconds,
        }
    }
}

impl BackendRun {
    pub fn loaded_per_second(&self) -> f64 {
        self.n_loaded as f64 / self.bulk_load.as_secs_f64().max(1e-9)
    }
}

pub struct SearchFigures {
    /// Measured `search_context` calls.
    pub n_calls: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// Per query, in the order of `ContextReport::cases`.
    pub cases: Vec<CaseFigures>,
    /// Where the CPUs went during the timed rounds.
    pub cpu: Option<CpuUse>,
}

pub struct CaseFigures {
    /// Items the tool returned (at most `SEARCH_LIMIT`).
    pub n_hits: usize,
    /// `false` when no document held every word and the tool fell back to any of them.
    pub all_words: bool,
    pub p50: Duration,
    pub max: Duration,
    /// The median of `Store::search` alone, in the benchmark's process: the query's share of
    /// the call, without HTTP, the pipeline and the audit record.
    pub store_p50: Duration,
}

/// One query of the mix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchCase {
    pub query: String,
    pub kinds: Vec<&'static str>,
}

impl SearchCase {
    fn new(query: impl Into<String>, kinds: &[&'static str]) -> SearchCase {
        SearchCase { query: query.into(), kinds: kinds.to_vec() }
    }

    /// The `search_context` arguments, as JSON.
    fn arguments(&self) -> String {
        let mut arguments = json!({"query": self.query, "limit": SEARCH_LIMIT});
        if !self.kinds.is_empty() {
            arguments["kinds"] = json!(self.kinds);
        }
        arguments.to_string()
    }

    fn store_query(&self) -> SearchQuery {
        SearchQuery {
            text: self.query.clone(),
            kinds: self.kinds.iter().map(|kind| kind.to_string()).collect(),
            limit: SEARCH_LIMIT,
        }
    }

    /// `"payments rollback"`, or `"OOMKilled" (alert)` with kinds.
    pub fn label(&self) -> String {
        if self.kinds.is_empty() {
            format!("{:?}", self.query)
        } else {
            format!("{:?} ({})", self.query, self.kinds.join(", "))
        }
    }
}

/// Runs the section: SQLite, then PostgreSQL when it is installed. `opsgate_bin` must be
/// absolute (opsgate runs in a scratch directory).
pub fn measure(opsgate_bin: &Path, settings: Settings) -> Result<ContextReport> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.threads)
        .thread_name("opsgate-bench-context")
        .enable_all()
        .build()
        .context("starting the runtime for the context section")?;
    let generator = Generator::new(settings.n_events, Utc::now());
    let cases = search_cases(&generator);
    let left_out = |backend: Backend| settings.store.is_some_and(|store| store != backend);
    let not_asked = || Section::Skipped("left out by --context-store".to_string());
    let sqlite = if left_out(Backend::Sqlite) {
        not_asked()
    } else {
        Section::from_result(
            runtime
                .block_on(run_backend(opsgate_bin, Backend::Sqlite, None, &generator, &cases, settings))
                .context("SQLite"),
        )
    };
    let postgres = match Postgres::installed() {
        _ if left_out(Backend::Postgres) => not_asked(),
        Err(error) => Section::Skipped(format!("the PostgreSQL binaries are not installed here ({error:#})")),
        Ok(()) => Section::from_result(
            runtime
                .block_on(async {
                    let cluster = Postgres::start_durable().await.context("starting a PostgreSQL cluster")?;
                    let url = cluster.create_database("opsgate_bench").await?;
                    run_backend(opsgate_bin, Backend::Postgres, Some(url), &generator, &cases, settings).await
                })
                .context("PostgreSQL"),
        ),
    };
    Ok(ContextReport { settings, cases, sqlite, postgres })
}

/// The three steps on one store: `postgres` is its URL, else the store is SQLite in the sandbox.
async fn run_backend(
    bin: &Path,
    backend: Backend,
    postgres: Option<String>,
    generator: &Generator,
    cases: &[SearchCase],
    settings: Settings,
) -> Result<BackendRun> {
    let label = backend.label();
    // The token lives outside the sandbox because the sandbox's config names its path.
    let token_file = tempfile::NamedTempFile::new().context("creating the hook token file")?;
    std::fs::write(token_file.path(), HOOK_TOKEN).context("writing the hook token file")?;
    let sandbox = Sandbox::with_config_file(&config_text(token_file.path(), postgres.as_deref()))?;
    let location = postgres.clone().unwrap_or_else(|| sandbox.data_dir().display().to_string());

    let store = Store::open(&location).await.with_context(|| format!("opening the {label} store"))?;
    let bulk_load = bulk_load(&store, generator, label).await?;
    let store_p50s = time_store_searches(&store, cases).await?;
    store.close().await;

    let key = create_api_key(bin, &sandbox).await?;
    let authorization = format!("Bearer {key}");
    let address = binary::free_loopback_address()?;
    let listen = address.to_string();
    let mut command = sandbox.command(bin, &["serve", "--listen", &listen])?;
    command.stdin(Stdio::null()).stdout(Stdio::null());
    // Killed on drop, so an early return below stops it too.
    let mut opsgate = command.spawn().with_context(|| format!("spawning {}", bin.display()))?;
    let pid = opsgate.id().context("opsgate exited at once")?;
    binary::wait_until_serving(&mut opsgate, &sandbox, address, Some(authorization.clone()), Some(SEARCH_TOOL))
        .await
        .context("waiting for opsgate serve to list search_context")?;

    let opsgate_log = |error: anyhow::Error| error.context(format!("opsgate stderr:\n{}", sandbox.log_tail()));
    let search = search_load(address, &authorization, cases, &store_p50s, pid).await.map_err(opsgate_log)?;
    eprintln!(
        "opsgate-bench: context: {label}: search_context p50 {:.2} ms, p99 {:.2} ms over {} calls{}",
        search.p50.as_secs_f64() * 1e3,
        search.p99.as_secs_f64() * 1e3,
        search.n_calls,
        cpu_note(search.cpu)
    );

    // Every ingested event happens at or after this time; every bulk-loaded one before it.
    let since = opsgate_store::now_rfc3339();
    let ingest = ingest_load(address, generator.n_events, settings, pid).await;
    // Each stored event was committed before its 202 left: stopping abruptly loses none.
    opsgate.kill().await.context("stopping opsgate serve")?;
    let (ingest, ingest_cpu) = ingest.map_err(opsgate_log)?;
    ingest.no_errors("ingestion").map_err(opsgate_log)?;
    let store = Store::open(&location).await.with_context(|| format!("opening the {label} store again"))?;
    // One more than expected, so that a surplus shows as well as a shortfall.
    let ingested = EventQuery { since: Some(since), limit: ingest.n_succeeded as i64 + 1, ..Default::default() };
    let n_ingested_stored = store.events(&ingested).await.context("counting the ingested events")?.len() as u64;
    store.close().await;
    if n_ingested_stored != ingest.n_succeeded {
        bail!(
            "{} deliveries were answered 202 stored, but the store holds {n_ingested_stored} new events",
            ingest.n_succeeded
        );
    }
    eprintln!(
        "opsgate-bench: context: {label}: ingestion {:.0} events/s, p50 {:.2} ms, p99 {:.2} ms; {} stored, {} in the store{}",
        ingest.calls_per_second,
        ingest.p50.as_secs_f64() * 1e3,
        ingest.p99.as_secs_f64() * 1e3,
        ingest.n_succeeded,
        n_ingested_stored,
        cpu_note(ingest_cpu)
    );
    Ok(BackendRun { n_loaded: generator.n_events, bulk_load, search, ingest, n_ingested_stored, ingest_cpu })
}

/// `; CPUs busy: opsgate 1.20, benchmark 0.40, machine 1.95, IO wait 0.02`, for progress lines.
fn cpu_note(cpu: Option<CpuUse>) -> String {
    cpu.map(|cpu| {
        format!(
            "; CPUs busy: opsgate {:.2}, benchmark {:.2}, machine {:.2}, IO wait {:.2}",
            cpu.opsgate, cpu.bench, cpu.machine, cpu.iowait
        )
    })
    .unwrap_or_default()
}

/// opsgate.toml: the CloudEvents hook on, the PostgreSQL store when there is one, and no
/// retention.
fn config_text(token_file: &Path, postgres: Option<&str>) -> String {
    // A JSON string is a TOML basic string.
    let quoted = |text: &str| Value::String(text.to_string()).to_string();
    let mut text = String::new();
    if let Some(url) = postgres {
        text.push_str(&format!("[server]\nstore = {}\n\n", quoted(url)));
    }
    text.push_str(&format!(
        "[hooks.cloudevents]\nsecret = {}\n\n\
         # The bulk-loaded events reach 90 days back from the start of the run: the default retention\n\
         # (90 days) would start deleting the oldest of them while the benchmark reads them.\n\
         [events]\nretention_days = 0\n",
        quoted(&format!("file:{}", token_file.display()))
    ));
    text
}

/// Loads every event of `generator` in batches; returns how long it took.
async fn bulk_load(store: &Store, generator: &Generator, label: &str) -> Result<Duration> {
    /// How often progress is printed: a million events take minutes.
    const PROGRESS: u64 = 100_000;
    let started = Instant::now();
    let received_at = opsgate_store::now_rfc3339();
    let mut next_progress = PROGRESS;
    let mut first = 0;
    while first < generator.n_events {
        let end = (first + BATCH).min(generator.n_events);
        let events: Vec<Event> = (first..end).map(|index| generator.event(index)).collect();
        let stored = store
            .insert_events(&events, &received_at)
            .await
            .with_context(|| format!("bulk-loading events {first}..{end}"))?;
        if stored.len() != events.len() {
            bail!(
                "events {first}..{end}: {} of {} stored; their delivery ids must be unique",
                stored.len(),
                events.len()
            );
        }
        first = end;
        if first >= next_progress || first == generator.n_events {
            eprintln!(
                "opsgate-bench: context: {label}: loaded {first}/{} events in {:.1} s",
                generator.n_events,
                started.elapsed().as_secs_f64()
            );
            next_progress += PROGRESS;
        }
    }
    Ok(started.elapsed())
}

/// The median of `STORE_RUNS` runs of each case against the store alone.
async fn time_store_searches(store: &Store, cases: &[SearchCase]) -> Result<Vec<Duration>> {
    let mut medians = Vec::with_capacity(cases.len());
    for case in cases {
        let query = case.store_query();
        store.search(&query).await.with_context(|| format!("Store::search {}", case.label()))?;
        let mut runs = Vec::with_capacity(STORE_RUNS);
        for _ in 0..STORE_RUNS {
            let started = Instant::now();
            store.search(&query).await.with_context(|| format!("Store::search {}", case.label()))?;
            runs.push(started.elapsed().as_micros() as u64);
        }
        runs.sort_unstable();
        medians.push(Duration::from_micros(load::percentile(&runs, 0.5)));
    }
    Ok(medians)
}

/// `search_context` from one client, one call after another: the query mix in turn, first
/// untimed, then `SEARCH_ROUNDS` times timed. Any failed call fails the measurement.
async fn search_load(
    address: SocketAddr,
    authorization: &str,
    cases: &[SearchCase],
    store_p50s: &[Duration],
    opsgate_pid: u32,
) -> Result<SearchFigures> {
    let meta = wire::request_meta();
    let connection = Connection::open(address).await?;
    let mut connection = connection.with_authorization(Some(authorization.to_string()));
    // Each case's arguments are the same every round: serialised once.
    let arguments: Vec<String> = cases.iter().map(SearchCase::arguments).collect();
    let mut latencies_us: Vec<Vec<u64>> = vec![Vec::with_capacity(SEARCH_ROUNDS); cases.len()];
    let mut outcomes: Vec<(usize, bool)> = vec![(0, true); cases.len()];
    let mut id = 0;
    let mut cpu_start = None;
    for round in 0..SEARCH_WARMUP_ROUNDS + SEARCH_ROUNDS {
        if round == SEARCH_WARMUP_ROUNDS {
            cpu_start = CpuSample::take(opsgate_pid);
        }
        for (index, case) in cases.iter().enumerate() {
            id += 1;
            let body = wire::tools_call_body(id, SEARCH_TOOL, &arguments[index], &meta);
            let sent = Instant::now();
            let (status, response) = connection
                .post("tools/call", Some(SEARCH_TOOL), body)
                .await
                .with_context(|| format!("search_context {}", case.label()))?;
            let elapsed = sent.elapsed();
            let result = wire::result_of(status, &response, id)
                .and_then(|result| search_outcome(&result))
                .with_context(|| format!("search_context {}", case.label()))?;
            outcomes[index] = result;
            if round >= SEARCH_WARMUP_ROUNDS {
                latencies_us[index].push(elapsed.as_micros() as u64);
            }
        }
    }
    let cpu = cpu_start.zip(CpuSample::take(opsgate_pid)).map(|(start, end)| start.until(&end));
    let mut all: Vec<u64> = latencies_us.iter().flatten().copied().collect();
    all.sort_unstable();
    let micros = |value: u64| Duration::from_micros(value);
    let cases = latencies_us
        .iter_mut()
        .zip(outcomes)
        .zip(store_p50s)
        .map(|((latencies, (n_hits, all_words)), store_p50)| {
            latencies.sort_unstable();
            CaseFigures {
                n_hits,
                all_words,
                p50: micros(load::percentile(latencies, 0.5)),
                max: micros(latencies.last().copied().unwrap_or_default()),
                store_p50: *store_p50,
            }
        })
        .collect();
    Ok(SearchFigures {
        n_calls: all.len(),
        p50: micros(load::percentile(&all, 0.5)),
        p99: micros(load::percentile(&all, 0.99)),
        max: micros(all.last().copied().unwrap_or_default()),
        cases,
        cpu,
    })
}

/// How many items a `search_context` result holds and whether every word matched; an error
/// result (`isError`) or one without its structured content is an error here.
fn search_outcome(result: &Value) -> Result<(usize, bool)> {
    if result.get("isError") == Some(&Value::Bool(true)) {
        bail!("the tool returned an error: {result}");
    }
    let structured = result.get("structuredContent").context("the result has no structuredContent")?;
    let n_hits = structured.get("items").and_then(Value::as_array).map_or(0, Vec::len);
    let all_words = structured.get("all_words").and_then(Value::as_bool).context("the result has no all_words")?;
    Ok((n_hits, all_words))
}

/// `settings.senders` connections POSTing CloudEvents back to back through the warm-up and the
/// window. Delivery numbers start at `first_index`, past the bulk-loaded events, so that every
/// delivery id is new. Also returns where the CPUs went inside the window.
async fn ingest_load(
    address: SocketAddr,
    first_index: u64,
    settings: Settings,
    opsgate_pid: u32,
) -> Result<(LoadReport, Option<CpuUse>)> {
    let window = Window::after(settings.warmup, settings.ingest);
    let sampler = tokio::spawn(async move {
        tokio::time::sleep_until(window.start.into()).await;
        let start = CpuSample::take(opsgate_pid);
        tokio::time::sleep_until(window.end.into()).await;
        Some(start?.until(&CpuSample::take(opsgate_pid)?))
    });
    let mut tasks = tokio::task::JoinSet::new();
    for sender in 0..settings.senders {
        tasks.spawn(sender_loop(address, first_index, sender, settings.senders, window));
    }
    let mut senders = Vec::with_capacity(settings.senders);
    while let Some(joined) = tasks.join_next().await {
        senders.push(joined.context("a sender panicked")?);
    }
    let cpu = sampler.await.context("the CPU sampler panicked")?;
    Ok((load::summarize(senders, &window), cpu))
}

/// One sender: deliveries `first_index + sender`, then every `n_senders`-th after it, each
/// happening now. A delivery counts when it is answered 202 with one event stored.
async fn sender_loop(
    address: SocketAddr,
    first_index: u64,
    sender: usize,
    n_senders: usize,
    window: Window,
) -> CallerStats {
    let mut stats = CallerStats::default();
    let mut connection = match Connection::open(address).await {
        Ok(connection) => connection.with_authorization(Some(format!("Bearer {HOOK_TOKEN}"))),
        Err(error) => {
            stats.error(error);
            return stats;
        }
    };
    let mut index = first_index + sender as u64;
    while Instant::now() < window.end {
        let body = cloudevent(index, &opsgate_store::now_rfc3339());
        index += n_senders as u64;
        let sent = Instant::now();
        let response = connection.post_to(HOOK_PATH, CLOUDEVENTS_JSON, body).await;
        let received = Instant::now();
        match response.and_then(|(status, body)| check_stored(status, &body)) {
            Ok(()) => stats.success(sent, received, &window),
            // The run has failed; sending on would only repeat the error.
            Err(error) => {
                stats.error(error);
                break;
            }
        }
    }
    stats
}

/// A delivery answered 202 with `"stored": 1`.
fn check_stored(status: http::StatusCode, body: &[u8]) -> Result<()> {
    if status != http::StatusCode::ACCEPTED {
        bail!("HTTP {status}: {}", String::from_utf8_lossy(body));
    }
    let answer: Value = serde_json::from_slice(body)
        .with_context(|| format!("the 202 body is not JSON: {}", String::from_utf8_lossy(body)))?;
    if answer.get("stored") != Some(&json!(1)) {
        bail!("202 without one event stored: {answer}");
    }
    Ok(())
}

/// The query mix: rare and common words, several words, with and without kinds, a service, a
/// commit, a test name, and a query no document fully matches (the tool then ranks documents
/// with any of its words).
pub fn search_cases(generator: &Generator) -> Vec<SearchCase> {
    vec![
        SearchCase::new("payments rollback", &[]),
        SearchCase::new("OOMKilled checkout", &[]),
        SearchCase::new("HighErrorRate", &[]),
        SearchCase::new("pipeline failed integration tests", &[]),
        SearchCase::new("ledger-consumer", &[]),
        SearchCase::new(generator.short_sha_in_summaries(), &[]),
        SearchCase::new("deployed production", &["deploy"]),
        SearchCase::new("OOMKilled", &["alert"]),
        SearchCase::new("DiskPressure resolved", &[]),
        SearchCase::new("timeout", &[]),
        SearchCase::new("canary promoted prod-eu", &[]),
        SearchCase::new("feature flag new-checkout-flow", &[]),
        SearchCase::new("LatencyHigh search-api", &[]),
        SearchCase::new("PodCrashLooping FIRING", &["alert"]),
        SearchCase::new("merged retry", &["merge"]),
        SearchCase::new("billing credentials rotated", &[]),
        SearchCase::new("test_refund_idempotency timed out", &[]),
        SearchCase::new("approved restart_deployment", &["approval"]),
        SearchCase::new("ImagePullBackOff", &[]),
        SearchCase::new("payments zeppelin", &[]),
    ]
}

/// splitmix64: small, fast and plenty for varied test data.
struct Rng(u64);

impl Rng {
    /// The generator of event `index`: each event has its own, so event `index` is the same
    /// whatever was made before it.
    fn for_index(index: u64) -> Rng {
        let mut rng = Rng(SEED ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03));
        rng.next();
        rng
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// 0 to `n - 1`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    fn hex(&mut self, n_digits: usize) -> String {
        let mut text = String::with_capacity(n_digits + 16);
        while text.len() < n_digits {
            text.push_str(&format!("{:016x}", self.next()));
        }
        text.truncate(n_digits);
        text
    }
}

const SERVICE_PREFIXES: [&str; 20] = [
    "payments",
    "checkout",
    "cart",
    "search",
    "catalog",
    "inventory",
    "orders",
    "shipping",
    "billing",
    "auth",
    "accounts",
    "notifications",
    "email",
    "recommendations",
    "pricing",
    "reviews",
    "ledger",
    "fraud",
    "media",
    "analytics",
];
const SERVICE_SUFFIXES: [&str; 10] =
    ["api", "worker", "web", "consumer", "scheduler", "gateway", "cache", "indexer", "exporter", "migrator"];
const ENVIRONMENTS: [&str; 8] = ["production", "staging", "dev", "canary", "prod-eu", "prod-us", "qa", "perf"];
const ALERTS: [&str; 10] = [
    "HighErrorRate",
    "PodCrashLooping",
    "OOMKilled",
    "DiskPressure",
    "LatencyHigh",
    "CPUThrottlingHigh",
    "KubePodNotReady",
    "TargetDown",
    "HighMemoryUsage",
    "CertificateExpiring",
];
const TEST_SUITES: [&str; 6] = ["integration", "unit", "e2e", "contract", "smoke", "load"];
const TEST_NAMES: [&str; 16] = [
    "test_refund_idempotency",
    "test_checkout_applies_coupon",
    "test_retry_on_timeout",
    "test_ledger_balances",
    "test_login_rate_limit",
    "test_search_pagination",
    "test_webhook_signature",
    "test_cart_merge_on_login",
    "test_inventory_reservation",
    "test_email_unsubscribe",
    "test_price_rounding",
    "test_fraud_score_threshold",
    "test_order_cancellation",
    "test_token_refresh",
    "test_schema_migration",
    "test_cache_invalidation",
];
const PR_VERBS: [&str; 12] =
    ["Fix", "Add", "Remove", "Refactor", "Bump", "Update", "Speed up", "Handle", "Retry", "Log", "Document", "Revert"];
const PR_OBJECTS: [&str; 16] = [
    "retry loop in the payment client",
    "timeout for upstream calls",
    "null check in the order parser",
    "metrics for cache hits",
    "dependency tokio to 1.48",
    "flaky integration test",
    "rate limiter burst size",
    "database connection pool size",
    "error message for invalid coupons",
    "graceful shutdown on SIGTERM",
    "N+1 query in order history",
    "feature flag for the new checkout",
    "logging of webhook failures",
    "memory leak in the image resizer",
    "dead letter queue handling",
    "TLS certificate reload",
];
const AUTHORS: [&str; 20] = [
    "alice", "bob", "chen", "dmitri", "emma", "farah", "gustavo", "hana", "ivan", "jonas", "kemi", "lucia", "mateo",
    "nora", "omar", "priya", "quentin", "rosa", "sven", "tariq",
];
const CONFIG_KEYS: [&str; 8] = [
    "max_connections",
    "request_timeout_ms",
    "log_level",
    "cache_ttl_seconds",
    "worker_threads",
    "retry_budget",
    "batch_size",
    "rate_limit_per_second",
];
const FLAGS: [&str; 8] = [
    "new-checkout-flow",
    "async-refunds",
    "search-v2-ranking",
    "one-click-reorder",
    "dark-mode",
    "smart-retries",
    "edge-caching",
    "bulk-export",
];
const MODULES: [&str; 6] = [
    "src/client.rs",
    "src/handlers/orders.rs",
    "pkg/api/server.go",
    "app/models/user.rb",
    "lib/pricing.ex",
    "src/main/java/com/acme/Ledger.java",
];
/// Kinds in the proportions of a busy platform: mostly pipeline runs, alerts and deploys.
const KIND_WEIGHTS: [(EventKind, u64); 10] = [
    (EventKind::Deploy, 180),
    (EventKind::Pipeline, 300),
    (EventKind::Alert, 250),
    (EventKind::Merge, 100),
    (EventKind::Config, 70),
    (EventKind::Release, 30),
    (EventKind::Push, 40),
    (EventKind::Action, 15),
    (EventKind::Approval, 10),
    (EventKind::Other, 5),
];

/// The events of the benchmark: `n_events` of them, event `index` always the same, their times
/// increasing with the index (give or take a minute, as deliveries arrive) over the 90 days
/// before `end`.
pub struct Generator {
    pub n_events: u64,
    start_ms: i64,
    span_ms: i64,
}

impl Generator {
    pub fn new(n_events: u64, end: DateTime<Utc>) -> Generator {
        let span_ms = SPAN_DAYS * 86_400_000;
        Generator { n_events, start_ms: end.timestamp_millis() - span_ms, span_ms }
    }

    pub fn event(&self, index: u64) -> Event {
        let mut rng = Rng::for_index(!index);
        let share = (i128::from(self.span_ms) * i128::from(index) / i128::from(self.n_events.max(1))) as i64;
        let offset = (share + rng.below(60_000) as i64).min(self.span_ms - 1);
        let time = DateTime::from_timestamp_millis(self.start_ms + offset).unwrap_or_default();
        describe(index, opsgate_store::rfc3339(time))
    }

    /// A short commit hash that some event's summary carries, from the middle of the events:
    /// the "paste a sha" query, which matches a handful of documents.
    fn short_sha_in_summaries(&self) -> String {
        (self.n_events / 2..self.n_events)
            .map(|index| self.event(index))
            .find_map(|event| {
                let short = event.attributes.get("sha")?.get(..7)?.to_string();
                event.summary.contains(&short).then_some(short)
            })
            .unwrap_or_else(|| "sha".to_string())
    }
}

/// The service of an event: 200 names, the first ones far busier than the last.
fn service_name(rng: &mut Rng) -> String {
    let index = rng.below(200).min(rng.below(200)) as usize;
    format!("{}-{}", SERVICE_PREFIXES[index % 20], SERVICE_SUFFIXES[index / 20])
}

fn version(rng: &mut Rng) -> String {
    format!("v{}.{}.{}", 1 + rng.below(5), rng.below(30), rng.below(20))
}

/// Event `index`, happening at `time`: one of about thirty kinds of summary, with the
/// attributes and links its source would send.
fn describe(index: u64, time: String) -> Event {
    let mut rng = Rng::for_index(index);
    let mut pick_kind = rng.below(1_000);
    let mut kind = EventKind::Other;
    for (candidate, weight) in KIND_WEIGHTS {
        if pick_kind < weight {
            kind = candidate;
            break;
        }
        pick_kind -= weight;
    }
    let service = service_name(&mut rng);
    let environment = rng.pick(&ENVIRONMENTS);
    let sha = rng.hex(40);
    let short = sha[..7].to_string();
    let version = version(&mut rng);
    let author = rng.pick(&AUTHORS);
    let alert = rng.pick(&ALERTS);
    let number = 1_000 + rng.below(90_000);
    let variant = rng.below(100);
    let repository = format!("acme/{service}");
    let mut attributes: Vec<(&str, String)> = Vec::new();
    let mut link = None;
    let mut with_environment = true;
    let (source, summary) = match kind {
        EventKind::Deploy => {
            attributes.extend([("sha", sha.clone()), ("version", version.clone()), ("actor", author.to_string())]);
            let source = rng.pick(&["argocd", "github", "flux"]);
            let summary = match variant {
                0..50 => format!("Deployed {service} {version} to {environment}"),
                50..58 => {
                    let previous = format!("v{}.{}.{}", 1 + rng.below(5), rng.below(30), rng.below(20));
                    attributes.push(("previous_version", previous.clone()));
                    format!("Rolled back {service} from {version} to {previous} in {environment} after {alert}")
                }
                58..83 => {
                    attributes.push(("revision", short.clone()));
                    format!("Argo CD synced {service} to revision {short} in {environment}")
                }
                83..93 => format!("Canary of {service} {version} promoted to 100% in {environment}"),
                _ => format!("Deployment of {service} {version} to {environment} failed: ImagePullBackOff"),
            };
            (source, summary)
        }
        EventKind::Pipeline => {
            with_environment = false;
            let suite = rng.pick(&TEST_SUITES);
            let test = rng.pick(&TEST_NAMES);
            let (status, summary) = match variant {
                0..45 => ("passed", format!("Pipeline #{number} for {service} passed on main ({short})")),
                45..65 => ("failed", format!("Pipeline #{number} for {service} failed: {suite} tests failed ({test})")),
                65..73 => (
                    "failed",
                    format!("Build of {service} at {short} failed: compilation error in {}", rng.pick(&MODULES)),
                ),
                73..93 => (
                    "succeeded",
                    format!("Workflow ci.yml on {service} succeeded in {}m {}s", 2 + rng.below(20), rng.below(60)),
                ),
                _ => ("failed", format!("Nightly {suite} tests for {service} failed: {test} timed out")),
            };
            attributes.extend([
                ("sha", sha.clone()),
                ("status", status.to_string()),
                ("pipeline_id", number.to_string()),
                ("repository", repository.clone()),
                ("branch", "main".to_string()),
                ("actor", author.to_string()),
            ]);
            link = Some(format!("https://ci.acme.io/{repository}/pipelines/{number}"));
            (rng.pick(&["github", "gitlab"]), summary)
        }
        EventKind::Alert => {
            let (alert, status, summary) = match variant {
                0..35 => (alert, "firing", format!("[FIRING] {alert} on {service} in {environment}")),
                35..70 => (alert, "resolved", format!("[RESOLVED] {alert} on {service} in {environment}")),
                70..80 => (
                    "HighErrorRate",
                    "firing",
                    format!(
                        "[FIRING] HighErrorRate: {service} error rate {}.{}% above 5% in {environment}",
                        5 + rng.below(40),
                        rng.below(10)
                    ),
                ),
                80..90 => (alert, "firing", format!("PagerDuty incident #{number} triggered for {service}: {alert}")),
                _ => (
                    alert,
                    "firing",
                    format!("[FIRING] {alert} for pod {service}-{}-{} in {environment}", &sha[7..17], &sha[17..22]),
                ),
            };
            let severity = rng.pick(&["critical", "warning", "page"]);
            attributes.extend([
                ("alertname", alert.to_string()),
                ("status", status.to_string()),
                ("severity", severity.to_string()),
                ("fingerprint", sha[..16].to_string()),
            ]);
            link = Some(format!("https://prometheus.acme.io/graph?g0.expr=ALERTS%7Balertname%3D%22{alert}%22%7D"));
            ("alertmanager", summary)
        }
        EventKind::Merge => {
            with_environment = false;
            let title = format!("{} {}", rng.pick(&PR_VERBS), rng.pick(&PR_OBJECTS));
            attributes.extend([
                ("sha", sha.clone()),
                ("number", number.to_string()),
                ("author", author.to_string()),
                ("repository", repository.clone()),
            ]);
            if variant < 70 {
                link = Some(format!("https://github.com/{repository}/pull/{number}"));
                ("github", format!("Merged PR #{number} into {service}: {title}"))
            } else {
                ("gitlab", format!("Merged !{number} in {service}: {title} ({author})"))
            }
        }
        EventKind::Config => {
            attributes.push(("actor", author.to_string()));
            let summary = match variant {
                0..40 => {
                    let key = rng.pick(&CONFIG_KEYS);
                    attributes.push(("key", key.to_string()));
                    format!("Config change on {service} in {environment}: {key} set to {}", 1 + rng.below(500))
                }
                40..65 => {
                    let flag = rng.pick(&FLAGS);
                    attributes.push(("flag", flag.to_string()));
                    format!(
                        "Feature flag {flag} enabled for {}% of {service} users in {environment}",
                        5 * (1 + rng.below(20))
                    )
                }
                65..90 => {
                    let from = 2 + rng.below(10);
                    format!("Scaled {service} in {environment} from {from} to {} replicas", from + 1 + rng.below(10))
                }
                _ => format!("Secret {service}-db-credentials rotated in {environment}"),
            };
            (rng.pick(&["flux", "cloudevents"]), summary)
        }
        EventKind::Release => {
            with_environment = false;
            attributes.extend([("sha", sha.clone()), ("version", version.clone()), ("repository", repository.clone())]);
            let summary = if variant < 50 {
                format!("Released {service} {version}")
            } else {
                format!("Published image registry.acme.io/{service}:{version}")
            };
            ("github", summary)
        }
        EventKind::Push => {
            with_environment = false;
            let n_commits = 1 + rng.below(12);
            attributes.extend([
                ("sha", sha.clone()),
                ("author", author.to_string()),
                ("commits", n_commits.to_string()),
            ]);
            (rng.pick(&["github", "gitlab"]), format!("{author} pushed {n_commits} commits to {service}/main"))
        }
        EventKind::Action => {
            let (tool, summary) = if variant < 50 {
                (
                    "silence_alert",
                    format!("key:oncall ran silence_alert on alertmanager:prod: silenced {alert} on {service} for 2h"),
                )
            } else {
                ("restart_deployment", format!("key:{author} ran restart_deployment on {service} in {environment}"))
            };
            attributes.extend([("tool", tool.to_string()), ("principal", format!("key:{author}"))]);
            ("opsgate", summary)
        }
        EventKind::Approval => {
            let (decision, summary) = if variant < 70 {
                ("approved", format!("{author} approved restart_deployment on {service} in {environment}"))
            } else {
                ("rejected", format!("{author} rejected rollback of {service} in {environment}"))
            };
            attributes.extend([("decision", decision.to_string()), ("approver", author.to_string())]);
            ("opsgate", summary)
        }
        EventKind::Other => {
            with_environment = false;
            let summary = if variant < 50 {
                format!("Certificate for {service}.acme.io renews in {} days", 1 + rng.below(30))
            } else {
                format!("Backup of {service} database completed in {}m", 1 + rng.below(90))
            };
            ("cloudevents", summary)
        }
    };
    let mut event = Event::new(time, source, kind, summary, format!("bench-{index}"));
    event.service = Some(service);
    if with_environment {
        event.environment = Some(environment.to_string());
    }
    event.attributes =
        attributes.into_iter().map(|(name, value)| (name.to_string(), value)).collect::<BTreeMap<_, _>>();
    event.link(link);
    event
}

/// Delivery `index` of the ingestion as a structured-mode CloudEvent: the generator's event of
/// that index, happening at `time`. Deploys, pipeline runs and merges are CDEvents, the rest
/// plain CloudEvents whose data names the service and environment.
pub fn cloudevent(index: u64, time: &str) -> String {
    let event = describe(index, time.to_string());
    let id = format!("ingest-{index}");
    let source = format!("/bench/{}", event.source);
    let service = event.service.as_deref().unwrap_or_default();
    let environment = event.environment.as_deref().unwrap_or("production");
    let attribute = |name: &str| event.attributes.get(name).map(String::as_str).unwrap_or_default();
    let cdevent = |kind: &str, subject: Value| {
        json!({
            "context": {"version": "0.4.1", "id": id, "source": source, "type": kind, "timestamp": time},
            "subject": subject,
        })
    };
    let (kind, data) = match event.kind {
        EventKind::Deploy => {
            let kind = "dev.cdevents.service.deployed.0.1.1";
            let subject = json!({
                "id": format!("service/{service}"),
                "source": source,
                "content": {
                    "environment": {"id": environment},
                    "artifactId": format!("pkg:oci/{service}@sha256:{}", attribute("sha")),
                },
            });
            (kind, cdevent(kind, subject))
        }
        EventKind::Pipeline => {
            let kind = "dev.cdevents.pipelinerun.finished.0.1.1";
            let outcome = if attribute("status") == "failed" { "failure" } else { "success" };
            let mut content = json!({
                "pipelineName": format!("{service} ci"),
                "outcome": outcome,
                "url": event.links.first(),
            });
            if outcome == "failure" {
                content["errors"] = json!(event.summary);
            }
            let subject = json!({"id": format!("pipelinerun-{index}"), "source": source, "content": content});
            (kind, cdevent(kind, subject))
        }
        EventKind::Merge => {
            let kind = "dev.cdevents.change.merged.0.1.2";
            let subject = json!({
                "id": format!("change-{}", attribute("number")),
                "source": source,
                "content": {"repository": {"id": attribute("repository")}, "description": event.summary},
            });
            (kind, cdevent(kind, subject))
        }
        other => {
            let kind = match other {
                EventKind::Alert if attribute("status") == "resolved" => "org.prometheus.alert.resolved",
                EventKind::Alert => "org.prometheus.alert.firing",
                EventKind::Config => "com.acme.config.changed",
                EventKind::Release => "com.acme.release.published",
                EventKind::Push => "com.acme.git.pushed",
                EventKind::Action => "com.acme.runbook.executed",
                EventKind::Approval => "com.acme.approval.decided",
                _ => "com.acme.maintenance.completed",
            };
            let mut data = json!({"service": service, "environment": environment, "summary": event.summary});
            for (name, value) in &event.attributes {
                data[name] = json!(value);
            }
            if let Some(url) = event.links.first() {
                data["url"] = json!(url);
            }
            (kind, data)
        }
    };
    json!({
        "specversion": "1.0",
        "id": id,
        "source": source,
        "type": kind,
        "time": time,
        "subject": service,
        "datacontenttype": "application/json",
        "data": data,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use axum::http::HeaderMap;
    use opsgate_server::hooks::{Ingest, cloudevents};

    use super::*;

    fn end() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-21T12:00:00Z").map(|time| time.with_timezone(&Utc)).unwrap_or_default()
    }

    #[test]
    fn the_generator_is_deterministic() {
        let (first, second) = (Generator::new(10_000, end()), Generator::new(10_000, end()));
        for index in [0, 1, 2, 4_999, 9_999] {
            assert_eq!(first.event(index), second.event(index), "event {index}");
        }
        assert_ne!(first.event(1), first.event(2));
        assert_eq!(cloudevent(12, "2026-11-21T12:00:00.000Z"), cloudevent(12, "2026-11-21T12:00:00.000Z"));
        assert_eq!(search_cases(&first), search_cases(&second));
    }

    #[test]
    fn the_generator_makes_varied_bounded_events_in_time_order() {
        let n_events = 20_000;
        let generator = Generator::new(n_events, end());
        let events: Vec<Event> = (0..n_events).map(|index| generator.event(index)).collect();
        let distinct = |field: fn(&Event) -> Option<String>| events.iter().filter_map(field).collect::<BTreeSet<_>>();
        assert!(distinct(|event| event.service.clone()).len() >= 190, "about 200 services");
        assert_eq!(distinct(|event| event.environment.clone()).len(), ENVIRONMENTS.len());
        assert_eq!(distinct(|event| Some(event.kind.as_str().to_string())).len(), EventKind::ALL.len());
        // The summary's words before its first name or number tell the template apart.
        let shapes = distinct(|event| {
            let words: Vec<&str> = event.summary.split_whitespace().take(2).collect();
            Some(words.join(" ").chars().filter(|c| c.is_alphabetic() || *c == ' ').collect())
        });
        assert!(shapes.len() >= 25, "{} templates: {shapes:?}", shapes.len());
        for alert in ALERTS {
            assert!(events.iter().any(|event| event.summary.contains(alert)), "{alert}");
        }
        let deliveries = distinct(|event| Some(event.delivery_id.clone()));
        assert_eq!(deliveries.len(), events.len(), "delivery ids are unique");
        let (start, end) =
            (opsgate_store::rfc3339(end() - chrono::Duration::days(SPAN_DAYS)), opsgate_store::rfc3339(end()));
        for event in &events {
            assert!(event.time >= start && event.time < end, "{} outside the span", event.time);
            let mut bounded = event.clone();
            bounded.bound();
            assert_eq!(&bounded, event, "generated events are within the store's bounds");
        }
        // Later events are later, give or take the minute of jitter.
        assert!(events[n_events as usize / 2].time < events[n_events as usize - 1].time);
        assert!(events[0].time < events[n_events as usize / 2].time);
    }

    #[test]
    fn every_query_has_words_and_the_sha_query_finds_its_commit() {
        let generator = Generator::new(5_000, end());
        let cases = search_cases(&generator);
        assert!(cases.len() >= 20);
        for case in &cases {
            assert!(!opsgate_store::search::query_words(&case.query).is_empty(), "{}", case.label());
            let arguments: Value = serde_json::from_str(&case.arguments()).unwrap_or_default();
            assert_eq!(arguments["query"], json!(case.query));
            assert_eq!(arguments.get("kinds").is_some(), !case.kinds.is_empty());
        }
        let sha = &cases[5].query;
        assert_eq!(sha.len(), 7);
        assert!((0..5_000).any(|index| generator.event(index).summary.contains(sha.as_str())));
    }

    /// The deliveries are what `/hooks/cloudevents` accepts, and name the service of the event
    /// they were made from.
    #[test]
    fn ingestion_deliveries_normalise_to_events_of_their_service() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", http::HeaderValue::from_static(CLOUDEVENTS_JSON));
        let now = "2026-11-21T12:00:00.000Z";
        let mut kinds = BTreeSet::new();
        for index in 0..2_000 {
            let body = cloudevent(index, now);
            let events = match cloudevents::normalize(&headers, body.as_bytes(), now) {
                Ok(Ingest::Events(events)) => events,
                other => panic!("delivery {index} gave {other:?}: {body}"),
            };
            let [event] = events.as_slice() else { panic!("delivery {index} is not one event") };
            let expected = describe(index, now.to_string());
            assert_eq!(event.service, expected.service, "{body}");
            assert_eq!(event.time, now);
            assert_eq!(event.delivery_id, format!("/bench/{}|ingest-{index}", expected.source));
            kinds.insert(event.kind);
        }
        for kind in [EventKind::Deploy, EventKind::Pipeline, EventKind::Merge, EventKind::Alert, EventKind::Config] {
            assert!(kinds.contains(&kind), "{kind} among {kinds:?}");
        }
    }

    #[test]
    fn a_search_result_counts_its_items_and_an_error_fails() -> Result<()> {
        let result = json!({"content": [], "structuredContent": {"query": "x", "all_words": false, "items": [{}, {}]}});
        assert_eq!(search_outcome(&result)?, (2, false));
        let empty = json!({"structuredContent": {"query": "x", "all_words": true, "items": []}});
        assert_eq!(search_outcome(&empty)?, (0, true));
        assert!(search_outcome(&json!({"isError": true, "content": []})).is_err());
        assert!(search_outcome(&json!({"content": []})).is_err(), "no structured content");
        Ok(())
    }

    #[test]
    fn only_a_202_with_one_event_stored_counts() {
        use http::StatusCode;
        assert!(check_stored(StatusCode::ACCEPTED, br#"{"stored":1,"duplicates":0,"ids":["x"]}"#).is_ok());
        assert!(check_stored(StatusCode::ACCEPTED, br#"{"stored":0,"duplicates":1,"ids":[]}"#).is_err());
        assert!(check_stored(StatusCode::SERVICE_UNAVAILABLE, br#"{"error":"retry"}"#).is_err());
        assert!(check_stored(StatusCode::ACCEPTED, b"not json").is_err());
    }

    #[test]
    fn the_config_turns_the_hook_on_and_retention_off() -> Result<()> {
        let sqlite = config_text(Path::new("/tmp/token"), None);
        let parsed: toml::Table = sqlite.parse()?;
        assert_eq!(parsed["hooks"]["cloudevents"]["secret"].as_str(), Some("file:/tmp/token"));
        assert_eq!(parsed["events"]["retention_days"].as_integer(), Some(0));
        assert!(parsed.get("server").is_none());
        let postgres: toml::Table =
            config_text(Path::new("/tmp/token"), Some("postgres://u@127.0.0.1:5/db")).parse()?;
        assert_eq!(postgres["server"]["store"].as_str(), Some("postgres://u@127.0.0.1:5/db"));
        Ok(())
    }
}
