//! opsgate-bench: measures what the project promises about speed and size and writes the figures,
//! with the command and the machine, to BENCHMARKS.md. Run it through `scripts/bench.sh`, which
//! builds everything in release mode first.
//!
//! 1. tools/call throughput and latency over Streamable HTTP, opsgate against a bare rmcp server
//!    in the same run (the ratio is the figure: absolute numbers depend on the machine);
//! 2. `opsgate stdio` start to first tools/list answer;
//! 3. idle RSS of `opsgate serve`;
//! 4. the cost of one policy decision;
//! 5. the latency and throughput the gateway adds to a call to a federated server, over
//!    Streamable HTTP and stdio, against calling that server directly in the same run;
//! 6. the operational context on SQLite and PostgreSQL: sustained CloudEvents ingestion through
//!    `/hooks/cloudevents`, and `search_context` over a million bulk-loaded events.
//!
//! `opsgate-bench --upstream stdio|http` is not a measurement: it serves section 5's upstream
//! (see `upstream`), and the benchmark starts it that way.
//!
//! Exits 1 when a measurement could not be made correctly (a failed call, an audit record
//! missing, the binary misbehaving); missing a target is reported in the file, not in the exit
//! code, because a shared machine can miss one by noise alone.

mod audit_cost;
mod binary;
mod context;
mod federation;
mod load;
mod machine;
mod policy_cost;
mod report;
mod servers;
mod upstream;
mod wire;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::context::ContextReport;
use crate::federation::FederationReport;
use crate::load::{LoadConfig, LoadReport};
use crate::report::{HttpRound, Report, Section, Setup};
use crate::servers::{AuditCount, ServerKind};

const USAGE: &str = "\
usage: opsgate-bench [options]

  --seconds N        measured seconds per server per round (default 10)
  --warmup N         warm-up seconds before each measurement (default 2)
  --rounds N         baseline/opsgate rounds; the report uses the median (default 3)
  --connections N    concurrent connections, one task each (default 32)
  --stdio-runs N     timed `opsgate stdio` starts (default 10)
  --federation-seconds N
                     measured seconds per run of the federation section (default 3; each run
                     has a 0.5 s warm-up, and --rounds rounds of 8 runs are made)
  --context-events N events bulk-loaded into each store before search_context is measured
                     (default 1000000)
  --ingest-seconds N measured seconds of webhook ingestion per store (default 10, after the
                     --warmup)
  --context-senders N
                     concurrent webhook senders, one connection each (default 16)
  --context-store STORE
                     measure the context section on sqlite or postgresql alone (default both)
  --opsgate-bin PATH the opsgate binary (default target/release/opsgate)
  --output PATH      where to write the report (default BENCHMARKS.md)
  --only SERVER      load one server (baseline or opsgate) for --seconds and print its figures,
                     writing no report: for profiling one side under `perf`
  --only federation  run only the federation section and print it, writing no report
  --only context     run only the operational-context section and print it, writing no report
  --only audit       run only the durable-audit-commit section and print it, writing no report
  --only binary      run only the stdio start-up and idle-memory sections and print them,
                     writing no report";

/// Warm-up before each federation run: every process there is already warm from the rounds
/// before (and, in the first round, from the set-up's own calls), so a short one is enough.
const FEDERATION_WARMUP: Duration = Duration::from_millis(500);
/// Concurrent callers on one stdio client in the federation section's throughput pair: a few
/// agents' worth, under the gateway's default cap of 16 calls in flight per server.
const STDIO_IN_FLIGHT: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Only {
    Server(ServerKind),
    Federation,
    Context,
    Binary,
    Audit,
}

struct Options {
    measure: Duration,
    warmup: Duration,
    rounds: usize,
    connections: usize,
    stdio_runs: usize,
    federation_measure: Duration,
    context_events: u64,
    ingest_measure: Duration,
    context_senders: usize,
    context_store: Option<context::Backend>,
    opsgate_bin: PathBuf,
    output: PathBuf,
    only: Option<Only>,
}

impl Options {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Options> {
        let mut options = Options {
            measure: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            rounds: 3,
            connections: 32,
            stdio_runs: 10,
            federation_measure: Duration::from_secs(3),
            context_events: 1_000_000,
            ingest_measure: Duration::from_secs(10),
            context_senders: 16,
            context_store: None,
            opsgate_bin: PathBuf::from("target/release/opsgate"),
            output: PathBuf::from("BENCHMARKS.md"),
            only: None,
        };
        // Hand-parsed: the flags are few, and clap belongs to the opsgate binary alone.
        while let Some(flag) = args.next() {
            let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
            let positive = |text: String| -> Result<u64> {
                match text.parse::<u64>() {
                    Ok(number) if number > 0 => Ok(number),
                    _ => bail!("{flag} takes a positive whole number, not {text:?}"),
                }
            };
            match flag.as_str() {
                "--seconds" => options.measure = Duration::from_secs(positive(value()?)?),
                "--warmup" => options.warmup = Duration::from_secs(positive(value()?)?),
                "--rounds" => options.rounds = positive(value()?)? as usize,
                "--connections" => options.connections = positive(value()?)? as usize,
                "--stdio-runs" => options.stdio_runs = positive(value()?)? as usize,
                "--federation-seconds" => options.federation_measure = Duration::from_secs(positive(value()?)?),
                "--context-events" => options.context_events = positive(value()?)?,
                "--ingest-seconds" => options.ingest_measure = Duration::from_secs(positive(value()?)?),
                "--context-senders" => options.context_senders = positive(value()?)? as usize,
                "--context-store" => {
                    options.context_store = Some(match value()?.as_str() {
                        "sqlite" => context::Backend::Sqlite,
                        "postgresql" => context::Backend::Postgres,
                        other => bail!("--context-store takes sqlite or postgresql, not {other:?}"),
                    })
                }
                "--opsgate-bin" => options.opsgate_bin = PathBuf::from(value()?),
                "--output" => options.output = PathBuf::from(value()?),
                "--only" => {
                    options.only = Some(match value()?.as_str() {
                        "baseline" => Only::Server(ServerKind::Baseline),
                        "opsgate" => Only::Server(ServerKind::Opsgate),
                        "federation" => Only::Federation,
                        "context" => Only::Context,
                        "binary" => Only::Binary,
                        "audit" => Only::Audit,
                        other => {
                            bail!("--only takes baseline, opsgate, federation, context, binary or audit, not {other:?}")
                        }
                    })
                }
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                other => bail!("unknown argument {other:?}\n{USAGE}"),
            }
        }
        Ok(options)
    }
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("--upstream") {
        let transport = args.nth(1).context("--upstream needs stdio or http")?;
        return upstream::run(&transport);
    }
    let options = Options::parse(args)?;
    // Read before any load, so the load average shows what else the machine was doing.
    let machine = machine::describe();
    let threads = machine.n_cpus;
    match options.only {
        Some(Only::Server(kind)) => return profile_one(kind, &options, threads),
        Some(Only::Federation) => {
            let federation = run_federation(&options, threads);
            let failed = federation.failed();
            println!("{}", report::render_federation_alone(&federation, &options.opsgate_bin.display().to_string()));
            if failed {
                bail!("the federation measurement failed");
            }
            return Ok(());
        }
        Some(Only::Context) => {
            let context = run_context(&options, threads);
            let failed = context_failed(&context);
            println!("{}", report::render_context_alone(&context, &options.opsgate_bin.display().to_string()));
            if failed {
                bail!("the operational-context measurement failed");
            }
            return Ok(());
        }
        Some(Only::Binary) => {
            let (stdio, rss, layout) = run_binary(&options)?;
            let bin = options.opsgate_bin.display().to_string();
            println!("{}", report::render_binary_alone(&stdio, &rss, &layout, &bin, options.stdio_runs));
            if stdio.failed() || rss.failed() {
                bail!("the start-up or idle-memory measurement failed");
            }
            return Ok(());
        }
        Some(Only::Audit) => {
            let audit = Section::from_result(audit_cost::measure());
            println!("{}", report::render_audit_alone(&audit));
            if audit.failed() {
                bail!("the audit measurement failed");
            }
            return Ok(());
        }
        None => {}
    }
    let setup = Setup {
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        // scripts/bench.sh says how it was called; run directly, the binary's own arguments do.
        command: std::env::var("OPSGATE_BENCH_COMMAND")
            .unwrap_or_else(|_| std::env::args().collect::<Vec<_>>().join(" ")),
        connections: options.connections,
        warmup: options.warmup,
        measure: options.measure,
        rounds: options.rounds,
        server_threads: threads,
        load_threads: threads,
        stdio_runs: options.stdio_runs,
        opsgate_bin: options.opsgate_bin.display().to_string(),
    };

    let mut machine = machine;
    let mut stolen = |section: &'static str, start: Option<(u64, u64)>| {
        if let Some(share) =
            start.zip(machine::cpu_and_steal_ticks()).and_then(|(start, end)| machine::stolen_share(start, end))
        {
            machine.stolen.push((section, share));
        }
    };
    let start = machine::cpu_and_steal_ticks();
    let http = Section::from_result(run_http(&options, threads));
    stolen("section 1", start);
    let policy = Section::from_result(policy_cost::measure());
    let audit = Section::from_result(audit_cost::measure());
    let (stdio, rss, layout) = run_binary(&options)?;
    let start = machine::cpu_and_steal_ticks();
    let federation = run_federation(&options, threads);
    stolen("section 5", start);
    let context = run_context(&options, threads);

    let report = Report { setup, machine, http, stdio, rss, layout, policy, audit, federation, context };
    let text = report.render();
    std::fs::write(&options.output, &text).with_context(|| format!("writing {}", options.output.display()))?;
    eprintln!("opsgate-bench: wrote {}", options.output.display());
    println!("{text}");
    if report.http.failed()
        || report.stdio.failed()
        || report.rss.failed()
        || report.policy.failed()
        || report.audit.failed()
        || report.federation.failed()
        || context_failed(&report.context)
    {
        bail!("a measurement failed; see {}", options.output.display());
    }
    Ok(())
}

/// Alternates baseline and opsgate so that both see the same drift in background load.
fn run_http(options: &Options, threads: usize) -> Result<Vec<HttpRound>> {
    let mut rounds = Vec::with_capacity(options.rounds);
    for round in 1..=options.rounds {
        let (baseline, _) = measure_server(ServerKind::Baseline, options, threads)?;
        let (opsgate, audit) = measure_server(ServerKind::Opsgate, options, threads)?;
        let audit = audit.context("opsgate reported no audit count")?;
        if !audit.chain_ok {
            bail!("round {round}: the audit chain does not verify");
        }
        if audit.n_records != opsgate.n_succeeded {
            bail!(
                "round {round}: {} successful calls but {} audit records: every call must be audited exactly once",
                opsgate.n_succeeded,
                audit.n_records
            );
        }
        let result = HttpRound { baseline, opsgate, audit };
        eprintln!("opsgate-bench: round {round}/{}: opsgate ÷ baseline = {:.2}", options.rounds, result.ratio());
        rounds.push(result);
    }
    Ok(rounds)
}

/// One server, fresh: its own runtime (so nothing from the previous run is left on its threads),
/// load from a second runtime, then shutdown and, for opsgate, the audit count.
fn measure_server(kind: ServerKind, options: &Options, threads: usize) -> Result<(LoadReport, Option<AuditCount>)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("opsgate-bench-server")
        .enable_all()
        .build()
        .context("starting the server runtime")?;
    let server = runtime.block_on(servers::start(kind)).with_context(|| format!("starting {}", kind.label()))?;
    let config = LoadConfig {
        address: server.address,
        tool: servers::ECHO,
        connections: options.connections,
        warmup: options.warmup,
        measure: options.measure,
        threads,
        authorization: server.authorization.clone(),
    };
    // Stop the server even when the load failed, then report whichever went wrong first.
    let load = load::run(&config);
    let audit = runtime.block_on(server.stop());
    runtime.shutdown_timeout(Duration::from_secs(5));
    let load = load.with_context(|| format!("load against {}", kind.label()))?;
    let audit = audit.with_context(|| format!("stopping {}", kind.label()))?;
    load.no_errors(kind.label())?;
    eprintln!(
        "opsgate-bench: {}: {:.0} calls/s, p50 {:.2} ms, p99 {:.2} ms",
        kind.label(),
        load.calls_per_second,
        load.p50.as_secs_f64() * 1e3,
        load.p99.as_secs_f64() * 1e3
    );
    Ok((load, audit))
}

/// `--only`: one server under load, with the CPU time the whole process (server, load generator
/// and audit writer) spent per call inside the measurement window: steadier than calls/s on a
/// shared machine, and what to compare between two builds.
fn profile_one(kind: ServerKind, options: &Options, threads: usize) -> Result<()> {
    let (warmup, measure) = (options.warmup, options.measure);
    let sampler = std::thread::spawn(move || {
        std::thread::sleep(warmup);
        let start = machine::process_cpu_seconds();
        std::thread::sleep(measure);
        Some(machine::process_cpu_seconds()? - start?)
    });
    let (load, _) = measure_server(kind, options, threads)?;
    let cpu = sampler.join().ok().flatten().context("reading /proc/self/stat")?;
    eprintln!(
        "opsgate-bench: {}: {:.1} µs of CPU per call ({:.2} CPU-seconds over {} calls in the window; {} calls in all)",
        kind.label(),
        cpu * 1e6 / load.n_measured.max(1) as f64,
        cpu,
        load.n_measured,
        load.n_succeeded
    );
    Ok(())
}

/// Why the sections that run the real binary (2, 3, 5 and 6) cannot: it has not been built, so
/// they are skipped, or its path does not resolve, so they fail.
enum NoBinary {
    Missing(String),
    Unresolved(String),
}

impl NoBinary {
    fn section<T>(&self) -> Section<T> {
        match self {
            NoBinary::Missing(why) => Section::Skipped(why.clone()),
            NoBinary::Unresolved(error) => Section::Failed(error.clone()),
        }
    }
}

/// `--opsgate-bin`, made absolute: each opsgate process runs in its own scratch working directory.
fn opsgate_bin(options: &Options) -> Result<PathBuf, NoBinary> {
    let bin = &options.opsgate_bin;
    if !bin.is_file() {
        let why = format!("{} does not exist (build it with `cargo build --release -p opsgate`)", bin.display());
        return Err(NoBinary::Missing(why));
    }
    std::fs::canonicalize(bin).map_err(|error| NoBinary::Unresolved(format!("resolving {}: {error}", bin.display())))
}

/// The measurements of the real binary, in each configuration; both are skipped, with the
/// reason, when it is missing, and failed when its path does not resolve.
/// The third part is the sentence on the binary's start-up layout section 3 ends with.
type BinarySections = (Section<Vec<binary::StdioReport>>, Section<Vec<binary::RssReport>>, String);

fn run_binary(options: &Options) -> Result<BinarySections> {
    let bin = &match opsgate_bin(options) {
        Ok(bin) => bin,
        Err(unavailable) => return Ok((unavailable.section(), unavailable.section(), String::new())),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the runtime for the binary measurements")?;
    let stdio = runtime.block_on(async {
        let mut reports = Vec::new();
        for config in binary::Config::ALL {
            let report = binary::stdio_startup(bin, options.stdio_runs, config).await;
            reports.push(report.with_context(|| config.label())?);
        }
        anyhow::Ok(reports)
    });
    let rss = runtime.block_on(async {
        let mut reports = Vec::new();
        for config in binary::Config::ALL {
            reports.push(binary::serve_idle_rss(bin, config).await.with_context(|| config.label())?);
        }
        anyhow::Ok(reports)
    });
    Ok((Section::from_result(stdio), Section::from_result(rss), binary::startup_layout(bin)))
}

/// Section 5, or why it could not run: it needs the opsgate binary.
fn run_federation(options: &Options, threads: usize) -> Section<FederationReport> {
    let bin = match opsgate_bin(options) {
        Ok(bin) => bin,
        Err(unavailable) => return unavailable.section(),
    };
    let settings = federation::Settings {
        connections: options.connections,
        stdio_in_flight: STDIO_IN_FLIGHT,
        warmup: FEDERATION_WARMUP,
        measure: options.federation_measure,
        rounds: options.rounds,
        threads,
    };
    Section::from_result(federation::measure(&bin, settings))
}

/// Section 6, or why it could not run: it needs the opsgate binary.
fn run_context(options: &Options, threads: usize) -> Section<ContextReport> {
    let bin = match opsgate_bin(options) {
        Ok(bin) => bin,
        Err(unavailable) => return unavailable.section(),
    };
    let settings = context::Settings {
        n_events: options.context_events,
        senders: options.context_senders,
        store: options.context_store,
        warmup: options.warmup,
        ingest: options.ingest_measure,
        threads,
    };
    Section::from_result(context::measure(&bin, settings))
}

/// Whether section 6 failed as a whole or on either backend.
fn context_failed(context: &Section<ContextReport>) -> bool {
    match context {
        Section::Measured(report) => report.failed(),
        other => other.failed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A short run of the real thing: keeps the benchmark honest while the server it measures
    /// changes under it (CI runs this; the full benchmark it does not).
    #[test]
    fn both_servers_answer_every_call_and_opsgate_audits_each_one() -> Result<()> {
        let options = Options {
            measure: Duration::from_millis(500),
            warmup: Duration::from_millis(200),
            rounds: 1,
            connections: 4,
            stdio_runs: 1,
            federation_measure: Duration::from_secs(1),
            context_events: 1,
            ingest_measure: Duration::from_secs(1),
            context_senders: 1,
            context_store: None,
            opsgate_bin: PathBuf::new(),
            output: PathBuf::new(),
            only: None,
        };
        let (baseline, audit) = measure_server(ServerKind::Baseline, &options, 2)?;
        assert!(baseline.n_measured > 0 && audit.is_none());
        let (opsgate, audit) = measure_server(ServerKind::Opsgate, &options, 2)?;
        let audit = audit.context("opsgate reports its audit count")?;
        assert!(opsgate.n_measured > 0);
        assert!(audit.chain_ok);
        assert_eq!(audit.n_records, opsgate.n_succeeded);
        Ok(())
    }

    #[test]
    fn without_the_binary_its_sections_are_skipped_and_with_it_the_path_is_absolute() -> Result<()> {
        let with_bin = |path: &str| Options::parse(["--opsgate-bin", path].map(String::from).into_iter());
        let missing = with_bin("/nonexistent/opsgate")?;
        let skipped = |section: &Section<()>| matches!(section, Section::Skipped(why) if why.contains("/nonexistent"));
        assert!(matches!(run_federation(&missing, 1), Section::Skipped(_)));
        assert!(matches!(run_context(&missing, 1), Section::Skipped(_)));
        assert!(matches!(run_binary(&missing)?, (Section::Skipped(_), Section::Skipped(_), _)));
        assert!(opsgate_bin(&missing).is_err_and(|unavailable| skipped(&unavailable.section())));
        // Tests run in the crate's directory.
        assert!(opsgate_bin(&with_bin("Cargo.toml")?).is_ok_and(|bin| bin.is_absolute() && bin.is_file()));
        Ok(())
    }

    #[test]
    fn options_reject_what_they_cannot_use() {
        let parse = |args: &[&str]| Options::parse(args.iter().map(|arg| arg.to_string()));
        assert!(parse(&["--seconds", "0"]).is_err());
        assert!(parse(&["--rounds"]).is_err());
        assert!(parse(&["--frobnicate"]).is_err());
        assert!(parse(&["--only", "nginx"]).is_err());
        assert!(parse(&["--seconds", "3", "--rounds", "5"]).is_ok_and(|options| options.rounds == 5));
        assert!(parse(&["--only", "federation"]).is_ok_and(|options| options.only == Some(Only::Federation)));
        assert!(parse(&["--only", "context"]).is_ok_and(|options| options.only == Some(Only::Context)));
        assert!(parse(&["--only", "binary"]).is_ok_and(|options| options.only == Some(Only::Binary)));
        assert!(parse(&["--only", "audit"]).is_ok_and(|options| options.only == Some(Only::Audit)));
        assert!(parse(&["--context-events", "0"]).is_err());
        assert!(parse(&["--context-store", "mysql"]).is_err());
        assert!(
            parse(&["--context-store", "postgresql"])
                .is_ok_and(|options| options.context_store == Some(context::Backend::Postgres))
        );
        assert!(parse(&["--ingest-seconds", "-1"]).is_err());
        let context = parse(&["--context-events", "100000", "--ingest-seconds", "5", "--context-senders", "8"]);
        assert!(context.is_ok_and(|options| options.context_events == 100_000
            && options.ingest_measure == Duration::from_secs(5)
            && options.context_senders == 8));
        assert!(parse(&[]).is_ok_and(|options| options.context_events == 1_000_000
            && options.ingest_measure == Duration::from_secs(10)
            && options.context_senders == 16));
    }
}
