//! The metric signals of `get_service_metrics`: named measures of a service (`error_rate`,
//! `latency_p99`…), each a list of PromQL templates, one per instrumentation convention.
//!
//! Services are instrumented in several ways (the Prometheus client libraries'
//! `http_requests_total`, OpenTelemetry's `http_server_request_duration_seconds`, cAdvisor's
//! `container_*`, the process collector's `process_*`), and an agent should not have to know
//! which. The tool probes which metrics exist for the service and runs the first convention that
//! has data (see `tools.rs`). Templates name their metrics in selectors `name{…}`; that is how the
//! probe learns what each convention needs.
//!
//! Placeholders: `{{selector}}` becomes `<label>="<service>"`, `{{window}}` the rate window
//! (`5m`), `{{agg}}` the aggregation across instances (`sum`, `avg`, `max`, `min`).

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::config::MetricsCatalogConfig;
use super::promql;
use crate::format;

pub(crate) const SELECTOR: &str = "{{selector}}";
pub(crate) const WINDOW: &str = "{{window}}";
pub(crate) const AGGREGATION: &str = "{{agg}}";

/// What a signal's values measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// A share between 0 and 1.
    Ratio,
    PerSecond,
    Seconds,
    Cores,
    Bytes,
    None,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Ratio => "ratio",
            Unit::PerSecond => "per_second",
            Unit::Seconds => "seconds",
            Unit::Cores => "cores",
            Unit::Bytes => "bytes",
            Unit::None => "none",
        }
    }

    /// A value as people read it: `10%`, `497.5ms`, `1.5GiB`, `12.3/s`.
    pub fn humanize(self, value: f64) -> String {
        if !value.is_finite() {
            return format::number(value);
        }
        match self {
            Unit::Ratio => format!("{}%", format::number(value * 100.0)),
            Unit::PerSecond => format!("{}/s", format::number(value)),
            Unit::Seconds => {
                let magnitude = value.abs();
                if magnitude == 0.0 || magnitude >= 1.0 {
                    format!("{}s", format::number(value))
                } else if magnitude >= 1e-3 {
                    format!("{}ms", format::number(value * 1e3))
                } else {
                    format!("{}µs", format::number(value * 1e6))
                }
            }
            Unit::Cores => format!("{} cores", format::number(value)),
            Unit::Bytes => {
                const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
                let mut scaled = value;
                let mut index = 0;
                while scaled.abs() >= 1024.0 && index + 1 < UNITS.len() {
                    scaled /= 1024.0;
                    index += 1;
                }
                format!("{}{}", format::number(scaled), UNITS[index])
            }
            Unit::None => format::number(value),
        }
    }
}

/// How the series of a service's instances combine into one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Aggregation {
    Sum,
    Avg,
    Max,
    Min,
}

impl Aggregation {
    pub fn as_str(self) -> &'static str {
        match self {
            Aggregation::Sum => "sum",
            Aggregation::Avg => "avg",
            Aggregation::Max => "max",
            Aggregation::Min => "min",
        }
    }
}

/// One way of computing a signal, for one instrumentation convention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Convention {
    /// Names the convention in outputs: `prometheus-client`, `opentelemetry`, `cadvisor`.
    pub name: String,
    pub template: String,
    /// The metrics the template selects: the convention applies when all of them exist.
    pub metrics: Vec<String>,
}

impl Convention {
    fn new(name: impl Into<String>, template: impl Into<String>) -> Convention {
        let template = template.into();
        let metrics = template_metrics(&template);
        Convention { name: name.into(), template, metrics }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signal {
    pub name: String,
    pub description: String,
    pub unit: Unit,
    pub conventions: Vec<Convention>,
    /// Used when the call names no aggregation and a template takes one.
    pub default_aggregation: Aggregation,
}

impl Signal {
    /// Only signals whose templates combine instances with `{{agg}}` take an aggregation:
    /// a ratio or a quantile is computed over all instances at once, and summing per-instance
    /// ratios would be wrong.
    pub fn takes_aggregation(&self) -> bool {
        self.conventions.iter().any(|convention| convention.template.contains(AGGREGATION))
    }

    /// Every metric any convention needs, without duplicates, in first-use order.
    pub fn metrics(&self) -> Vec<&str> {
        let mut seen = BTreeSet::new();
        self.conventions
            .iter()
            .flat_map(|convention| convention.metrics.iter())
            .filter(|metric| seen.insert(metric.as_str()))
            .map(String::as_str)
            .collect()
    }
}

/// What the placeholders of a template stand for in one call.
#[derive(Debug, Clone, Copy)]
pub struct TemplateValues<'a> {
    pub selector: &'a str,
    pub window: &'a str,
    pub aggregation: Aggregation,
}

/// Fills in a template's placeholders.
pub fn render(template: &str, values: TemplateValues<'_>) -> String {
    template
        .replace(SELECTOR, values.selector)
        .replace(WINDOW, values.window)
        .replace(AGGREGATION, values.aggregation.as_str())
}

/// The metric names a template selects (`name{…}`), found in the PromQL it renders to.
pub fn template_metrics(template: &str) -> Vec<String> {
    let rendered =
        render(template, TemplateValues { selector: "opsgate=\"\"", window: "1m", aggregation: Aggregation::Sum });
    promql::selected_metrics(&rendered)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("metric signal {name:?}: {detail}")]
    Invalid { name: String, detail: String },
}

/// The signals `get_service_metrics` knows, in the order its schema lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalCatalog {
    signals: Vec<Signal>,
}

impl Default for SignalCatalog {
    fn default() -> Self {
        SignalCatalog::builtin()
    }
}

impl SignalCatalog {
    /// The built-in signals, covering the common conventions.
    pub fn builtin() -> SignalCatalog {
        SignalCatalog { signals: builtin_signals() }
    }

    /// The built-in signals with `config` applied: overrides put their templates first (or
    /// alone, with `replace`), new names add signals.
    pub fn from_config(config: &MetricsCatalogConfig) -> Result<SignalCatalog, CatalogError> {
        let mut catalog = SignalCatalog::builtin();
        for (name, change) in &config.signals {
            let invalid = |detail: String| CatalogError::Invalid { name: name.clone(), detail };
            if name.is_empty()
                || !name.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_')
            {
                return Err(invalid("use lowercase letters, digits and _ in signal names".to_string()));
            }
            for template in &change.queries {
                if !template.contains(SELECTOR) {
                    return Err(invalid(format!(
                        "query {template:?} has no {SELECTOR}, so it cannot select a service"
                    )));
                }
            }
            let conventions: Vec<Convention> = change
                .queries
                .iter()
                .enumerate()
                .map(|(index, template)| Convention::new(format!("configured-{}", index + 1), template.clone()))
                .collect();
            match catalog.signals.iter_mut().find(|signal| &signal.name == name) {
                Some(signal) => {
                    if change.replace {
                        if conventions.is_empty() {
                            return Err(invalid("replace = true needs at least one query".to_string()));
                        }
                        signal.conventions = conventions;
                    } else {
                        signal.conventions.splice(0..0, conventions);
                    }
                    if let Some(description) = &change.description {
                        signal.description = description.clone();
                    }
                    if let Some(unit) = change.unit {
                        signal.unit = unit;
                    }
                    if let Some(aggregation) = change.default_aggregation {
                        signal.default_aggregation = aggregation;
                    }
                }
                None => {
                    let description = change
                        .description
                        .clone()
                        .ok_or_else(|| invalid("a new signal needs a description".to_string()))?;
                    let unit = change.unit.ok_or_else(|| invalid("a new signal needs a unit".to_string()))?;
                    if conventions.is_empty() {
                        return Err(invalid("a new signal needs at least one query".to_string()));
                    }
                    catalog.signals.push(Signal {
                        name: name.clone(),
                        description,
                        unit,
                        conventions,
                        default_aggregation: change.default_aggregation.unwrap_or(Aggregation::Sum),
                    });
                }
            }
        }
        Ok(catalog)
    }

    pub fn get(&self, name: &str) -> Option<&Signal> {
        self.signals.iter().find(|signal| signal.name == name)
    }

    pub fn names(&self) -> Vec<&str> {
        self.signals.iter().map(|signal| signal.name.as_str()).collect()
    }

    pub fn signals(&self) -> &[Signal] {
        &self.signals
    }
}

fn signal(name: &str, description: &str, unit: Unit, conventions: Vec<Convention>) -> Signal {
    Signal {
        name: name.to_string(),
        description: description.to_string(),
        unit,
        conventions,
        default_aggregation: Aggregation::Sum,
    }
}

/// Error share for a counter whose status label may be `code` or `status` (client libraries
/// differ). `or vector(0)`: with no 5xx series at all the share is 0, not "no data".
const PROMETHEUS_CLIENT_ERRORS: &str = "(sum(rate(http_requests_total{{{selector}},code=~\"5..\"}[{{window}}]) \
     or rate(http_requests_total{{{selector}},status=~\"5..\"}[{{window}}])) or vector(0)) \
     / sum(rate(http_requests_total{{{selector}}}[{{window}}]))";
const OTEL_ERRORS: &str = "(sum(rate(http_server_request_duration_seconds_count{{{selector}},http_response_status_code=~\"5..\"}[{{window}}])) \
     or vector(0)) / sum(rate(http_server_request_duration_seconds_count{{{selector}}}[{{window}}]))";
/// OpenTelemetry's semantic conventions before 1.21 (milliseconds, `http_status_code`).
const OTEL_LEGACY_ERRORS: &str = "(sum(rate(http_server_duration_milliseconds_count{{{selector}},http_status_code=~\"5..\"}[{{window}}])) \
     or vector(0)) / sum(rate(http_server_duration_milliseconds_count{{{selector}}}[{{window}}]))";

/// cAdvisor reports every container plus a pod-level total (`container=""`) and the pause
/// container (`POD`); counting only real containers avoids counting usage twice. Templates below
/// write `$containers` for these matchers and `$quantile` for the quantile, which keeps them
/// readable next to PromQL's own braces.
const CONTAINERS: &str = "container!=\"\",container!=\"POD\"";

fn builtin_template(template: &str) -> String {
    template.replace("$containers", CONTAINERS)
}

fn latency(quantile: &str) -> Vec<Convention> {
    [
        (
            "prometheus-client",
            "histogram_quantile($quantile, sum by (le) (rate(http_request_duration_seconds_bucket{{{selector}}}[{{window}}])))",
        ),
        (
            "opentelemetry",
            "histogram_quantile($quantile, sum by (le) (rate(http_server_request_duration_seconds_bucket{{{selector}}}[{{window}}])))",
        ),
        (
            "opentelemetry-legacy",
            "histogram_quantile($quantile, sum by (le) (rate(http_server_duration_milliseconds_bucket{{{selector}}}[{{window}}]))) / 1000",
        ),
    ]
    .into_iter()
    .map(|(name, template)| Convention::new(name, template.replace("$quantile", quantile)))
    .collect()
}

fn builtin_signals() -> Vec<Signal> {
    let mut saturation = signal(
        "saturation",
        "busiest instance's CPU use over its limit, or open fds over max, 0..1",
        Unit::Ratio,
        vec![
            Convention::new(
                "cadvisor",
                builtin_template(
                    "{{agg}}(sum by (instance, pod) (rate(container_cpu_usage_seconds_total{{{selector}},$containers}[{{window}}])) \
                     / sum by (instance, pod) (container_spec_cpu_quota{{{selector}},$containers} \
                     / container_spec_cpu_period{{{selector}},$containers}))",
                ),
            ),
            Convention::new(
                "process",
                "{{agg}}(max by (instance) (process_open_fds{{{selector}}} / process_max_fds{{{selector}}}))",
            ),
        ],
    );
    // The busiest instance is what saturates first; a sum of ratios would mean nothing.
    saturation.default_aggregation = Aggregation::Max;

    vec![
        signal(
            "request_rate",
            "requests/s",
            Unit::PerSecond,
            vec![
                Convention::new(
                    "prometheus-client",
                    "{{agg}}(sum by (instance) (rate(http_requests_total{{{selector}}}[{{window}}])))",
                ),
                Convention::new(
                    "opentelemetry",
                    "{{agg}}(sum by (instance) (rate(http_server_request_duration_seconds_count{{{selector}}}[{{window}}])))",
                ),
                Convention::new(
                    "opentelemetry-legacy",
                    "{{agg}}(sum by (instance) (rate(http_server_duration_milliseconds_count{{{selector}}}[{{window}}])))",
                ),
                Convention::new(
                    "prometheus-client-histogram",
                    "{{agg}}(sum by (instance) (rate(http_request_duration_seconds_count{{{selector}}}[{{window}}])))",
                ),
            ],
        ),
        signal(
            "error_rate",
            "share of 5xx responses, 0..1",
            Unit::Ratio,
            vec![
                Convention::new("prometheus-client", PROMETHEUS_CLIENT_ERRORS),
                Convention::new("opentelemetry", OTEL_ERRORS),
                Convention::new("opentelemetry-legacy", OTEL_LEGACY_ERRORS),
            ],
        ),
        signal("latency_p50", "median request latency, s", Unit::Seconds, latency("0.5")),
        signal("latency_p95", "p95 request latency, s", Unit::Seconds, latency("0.95")),
        signal("latency_p99", "p99 request latency, s", Unit::Seconds, latency("0.99")),
        signal(
            "cpu",
            "CPU used, cores",
            Unit::Cores,
            vec![
                Convention::new(
                    "cadvisor",
                    builtin_template(
                        "{{agg}}(sum by (instance, pod) (rate(container_cpu_usage_seconds_total{{{selector}},$containers}[{{window}}])))",
                    ),
                ),
                Convention::new(
                    "process",
                    "{{agg}}(sum by (instance) (rate(process_cpu_seconds_total{{{selector}}}[{{window}}])))",
                ),
            ],
        ),
        signal(
            "memory",
            "working set or resident memory, bytes",
            Unit::Bytes,
            vec![
                Convention::new(
                    "cadvisor",
                    builtin_template(
                        "{{agg}}(sum by (instance, pod) (container_memory_working_set_bytes{{{selector}},$containers}))",
                    ),
                ),
                Convention::new("process", "{{agg}}(sum by (instance) (process_resident_memory_bytes{{{selector}}}))"),
            ],
        ),
        saturation,
        signal(
            "availability",
            "1 - error_rate, else share of scrapes up, 0..1",
            Unit::Ratio,
            vec![
                Convention::new("prometheus-client", format!("1 - ({PROMETHEUS_CLIENT_ERRORS})")),
                Convention::new("opentelemetry", format!("1 - ({OTEL_ERRORS})")),
                Convention::new("opentelemetry-legacy", format!("1 - ({OTEL_LEGACY_ERRORS})")),
                Convention::new("up", "avg(avg_over_time(up{{{selector}}}[{{window}}]))"),
            ],
        ),
    ]
}
