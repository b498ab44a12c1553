//! opsgate's own metrics in the Prometheus text format: calls by tool, decision and outcome, and
//! a latency histogram. Hand-rolled because the set is small and the hot path must stay cheap.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Histogram bucket bounds in seconds.
const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// Call counts of one tool by (decision, outcome).
type CountsByResult = HashMap<(&'static str, &'static str), u64>;

#[derive(Debug, Default)]
pub struct Metrics {
    /// Counts by tool, then by (decision, outcome): the hot path looks a tool up by `&str` and
    /// allocates only the first time it sees one.
    calls: Mutex<HashMap<String, CountsByResult>>,
    bucket_counts: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
    /// Calls between entering the pipeline and their audited response; shutdown waits for zero.
    in_flight: AtomicU64,
}

/// Counts a call as in flight until dropped.
pub struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Metrics {
    pub fn record_call(&self, tool: &str, decision: &'static str, outcome: &'static str, elapsed: Duration) {
        if let Ok(mut calls) = self.calls.lock() {
            let by_tool = match calls.get_mut(tool) {
                Some(by_tool) => by_tool,
                None => calls.entry(tool.to_string()).or_default(),
            };
            *by_tool.entry((decision, outcome)).or_default() += 1;
        }
        let seconds = elapsed.as_secs_f64();
        for (bound, count) in BUCKETS.iter().zip(&self.bucket_counts) {
            if seconds <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn enter(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self)
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// The exposition text for `/metrics`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP opsgate_tool_calls_total Tool calls by tool, policy decision and outcome.");
        let _ = writeln!(out, "# TYPE opsgate_tool_calls_total counter");
        if let Ok(calls) = self.calls.lock() {
            let mut rows: Vec<_> = calls
                .iter()
                .flat_map(|(tool, counts)| {
                    counts.iter().map(move |((decision, outcome), count)| (tool, decision, outcome, count))
                })
                .collect();
            rows.sort();
            for (tool, decision, outcome, count) in rows {
                let _ = writeln!(
                    out,
                    "opsgate_tool_calls_total{{tool=\"{}\",decision=\"{}\",outcome=\"{}\"}} {count}",
                    escape(tool),
                    escape(decision),
                    escape(outcome)
                );
            }
        }
        let _ = writeln!(out, "# HELP opsgate_tool_call_duration_seconds Time from request to audited response.");
        let _ = writeln!(out, "# TYPE opsgate_tool_call_duration_seconds histogram");
        for (bound, count) in BUCKETS.iter().zip(&self.bucket_counts) {
            let _ = writeln!(
                out,
                "opsgate_tool_call_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        let total = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(out, "opsgate_tool_call_duration_seconds_bucket{{le=\"+Inf\"}} {total}");
        let sum = self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "opsgate_tool_call_duration_seconds_sum {sum}");
        let _ = writeln!(out, "opsgate_tool_call_duration_seconds_count {total}");
        let _ = writeln!(out, "# HELP opsgate_tool_calls_in_flight Tool calls not yet answered.");
        let _ = writeln!(out, "# TYPE opsgate_tool_calls_in_flight gauge");
        let _ = writeln!(out, "opsgate_tool_calls_in_flight {}", self.in_flight());
        out
    }
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
