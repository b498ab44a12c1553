//! The load generator: N tasks, each with its own keep-alive connection, sending `tools/call`
//! back to back (closed loop) through a warm-up and then a fixed measurement window. It runs on
//! its own tokio runtime, so its threads are not the server's: the two compete for the CPUs only
//! the way two processes would.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::wire::{self, Connection};

#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub address: SocketAddr,
    pub tool: &'static str,
    pub connections: usize,
    pub warmup: Duration,
    pub measure: Duration,
    pub threads: usize,
    /// Sent as `Authorization` on every request: opsgate's API key; `None` for the baseline.
    pub authorization: Option<String>,
}

#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Calls that completed inside the measurement window.
    pub n_measured: usize,
    pub calls_per_second: f64,
    pub p50: Duration,
    pub p99: Duration,
    /// Every successful call, warm-up and the calls straddling the window included: the number
    /// of audit records opsgate must have written.
    pub n_succeeded: u64,
    pub n_errors: u64,
    /// The first error seen, for the report.
    pub first_error: Option<String>,
}

impl LoadReport {
    /// A run counts only when every call succeeded and some completed inside the window; `label`
    /// names the run in the error.
    pub fn no_errors(&self, label: &str) -> Result<()> {
        if self.n_errors > 0 {
            bail!(
                "{label}: {} calls failed ({} succeeded); first error: {}",
                self.n_errors,
                self.n_succeeded,
                self.first_error.as_deref().unwrap_or("none recorded")
            );
        }
        if self.n_measured == 0 {
            bail!("{label}: no call completed inside the measurement window");
        }
        Ok(())
    }
}

pub fn run(config: &LoadConfig) -> Result<LoadReport> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.threads)
        .thread_name("opsgate-bench-load")
        .enable_all()
        .build()
        .context("starting the load generator runtime")?;
    let report = runtime.block_on(drive(config.clone()));
    // Dropping the runtime closes every client connection before the server is stopped.
    drop(runtime);
    report
}

/// What one caller (a connection here, an in-flight slot on a stdio client in `federation`) saw.
#[derive(Default)]
pub struct CallerStats {
    /// Latencies in microseconds of calls that completed inside the window.
    latencies_us: Vec<u64>,
    n_succeeded: u64,
    n_errors: u64,
    first_error: Option<String>,
}

impl CallerStats {
    pub fn error(&mut self, error: anyhow::Error) {
        self.n_errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(format!("{error:#}"));
        }
    }

    /// A checked, successful call: counted always, timed when it completed inside the window.
    pub fn success(&mut self, sent: Instant, received: Instant, window: &Window) {
        self.n_succeeded += 1;
        if received >= window.start && received <= window.end {
            self.latencies_us.push(received.duration_since(sent).as_micros() as u64);
        }
    }
}

/// The measurement window: calls completing between `start` and `end` are timed.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub start: Instant,
    pub end: Instant,
}

impl Window {
    /// Opens after `warmup` from now and stays open for `measure`.
    pub fn after(warmup: Duration, measure: Duration) -> Window {
        let start = Instant::now() + warmup;
        Window { start, end: start + measure }
    }

    pub fn measure(&self) -> Duration {
        self.end.duration_since(self.start)
    }
}

/// Every caller's figures as one report.
pub fn summarize(callers: impl IntoIterator<Item = CallerStats>, window: &Window) -> LoadReport {
    let mut latencies_us = Vec::new();
    let mut report = LoadReport {
        n_measured: 0,
        calls_per_second: 0.0,
        p50: Duration::ZERO,
        p99: Duration::ZERO,
        n_succeeded: 0,
        n_errors: 0,
        first_error: None,
    };
    for stats in callers {
        latencies_us.extend(stats.latencies_us);
        report.n_succeeded += stats.n_succeeded;
        report.n_errors += stats.n_errors;
        if report.first_error.is_none() {
            report.first_error = stats.first_error;
        }
    }
    latencies_us.sort_unstable();
    report.n_measured = latencies_us.len();
    report.calls_per_second = latencies_us.len() as f64 / window.measure().as_secs_f64();
    report.p50 = Duration::from_micros(percentile(&latencies_us, 0.50));
    report.p99 = Duration::from_micros(percentile(&latencies_us, 0.99));
    report
}

async fn drive(config: LoadConfig) -> Result<LoadReport> {
    let window = Window::after(config.warmup, config.measure);
    let meta = wire::request_meta();
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..config.connections {
        tasks.spawn(connection_loop(
            config.address,
            config.authorization.clone(),
            config.tool,
            index,
            meta.clone(),
            window,
        ));
    }
    let mut callers = Vec::with_capacity(config.connections);
    while let Some(joined) = tasks.join_next().await {
        callers.push(joined.context("a load task panicked")?);
    }
    Ok(summarize(callers, &window))
}

/// Nearest-rank percentile of sorted values; 0 for none.
pub fn percentile(sorted: &[u64], fraction: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (fraction * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Calls back to back until the window closes. A call counts toward throughput and latency when
/// it completes inside the window; the connection is opened during the warm-up, so connection
/// set-up is never measured. A transport error ends the connection: the run has failed anyway.
async fn connection_loop(
    address: SocketAddr,
    authorization: Option<String>,
    tool: &'static str,
    index: usize,
    meta: String,
    window: Window,
) -> CallerStats {
    let mut stats = CallerStats::default();
    let mut connection = match Connection::open(address).await {
        Ok(connection) => connection.with_authorization(authorization),
        Err(error) => {
            stats.error(error);
            return stats;
        }
    };
    // Each connection echoes its own text, so a response delivered to the wrong caller fails.
    let text = format!("bench connection {index}");
    let arguments = serde_json::json!({ "text": text }).to_string();
    let mut id: u64 = 0;
    while Instant::now() < window.end {
        id += 1;
        let body = wire::tools_call_body(id, tool, &arguments, &meta);
        let sent = Instant::now();
        let response = connection.post("tools/call", Some(tool), body).await;
        let received = Instant::now();
        let (status, body) = match response {
            Ok(response) => response,
            Err(error) => {
                stats.error(error);
                break;
            }
        };
        match wire::result_of(status, &body, id).and_then(|result| wire::check_echo_result(&result, &text)) {
            Ok(()) => stats.success(sent, received, &window),
            Err(error) => stats.error(error),
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{CallerStats, Window, percentile, summarize};

    #[test]
    fn percentile_is_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 0.50), 50);
        assert_eq!(percentile(&values, 0.99), 99);
        assert_eq!(percentile(&[7], 0.99), 7);
        assert_eq!(percentile(&[], 0.5), 0);
    }

    #[test]
    fn a_run_with_a_failed_call_or_none_in_the_window_does_not_count() {
        let window = Window { start: Instant::now(), end: Instant::now() + Duration::from_secs(60) };
        let mut ok = CallerStats::default();
        ok.success(window.start, window.start, &window);
        assert!(summarize([ok], &window).no_errors("run").is_ok());

        let mut failed = CallerStats::default();
        failed.success(window.start, window.start, &window);
        failed.error(anyhow::anyhow!("HTTP 503"));
        let error = summarize([failed], &window).no_errors("run").map_err(|error| error.to_string());
        assert_eq!(error, Err("run: 1 calls failed (1 succeeded); first error: HTTP 503".to_string()));

        let mut before = CallerStats::default();
        let early = window.start - Duration::from_secs(1);
        before.success(early, early, &window);
        assert!(
            summarize([before], &window).no_errors("run").is_err_and(|error| error.to_string().contains("no call"))
        );
    }
}
