//! opsgate's own metrics in the Prometheus text format: calls by tool, decision and outcome, and
//! a latency histogram. Hand-rolled because the set is small and the hot path must stay cheap.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opsgate_core::histogram::Histogram;

/// Call counts of one tool by (decision, outcome).
type CountsByResult = HashMap<(&'static str, &'static str), u64>;

#[derive(Debug, Default)]
pub struct Metrics {
    /// Counts by tool, then by (decision, outcome): the hot path looks a tool up by `&str` and
    /// allocates only the first time it sees one.
    calls: Mutex<HashMap<String, CountsByResult>>,
    latency: Histogram,
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
        self.latency.record(elapsed);
    }

    pub fn enter(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self)
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// The exposition text for `/metrics`, with the store's log flush times when it has them.
    pub fn render(&self, log_flushes: Option<&Histogram>) -> String {
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
        self.latency.render("opsgate_tool_call_duration_seconds", "Time from request to audited response.", &mut out);
        if let Some(flushes) = log_flushes {
            flushes.render(
                "opsgate_store_log_flush_seconds",
                "Time each flush of the store's write-ahead log took; every audited call waits for one.",
                &mut out,
            );
        }
        let _ = writeln!(out, "# HELP opsgate_tool_calls_in_flight Tool calls not yet answered.");
        let _ = writeln!(out, "# TYPE opsgate_tool_calls_in_flight gauge");
        let _ = writeln!(out, "opsgate_tool_calls_in_flight {}", self.in_flight());
        out
    }
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
