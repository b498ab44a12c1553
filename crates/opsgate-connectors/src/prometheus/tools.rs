//! The Prometheus tools: `get_service_metrics`, `query_metrics`, `list_metrics` and
//! `get_alert_history`.
//!
//! How `get_service_metrics` finds a service's data (the design in one place):
//!
//! 1. **Probe.** For each configured service label (`service`, `job`, `app`, `service_name` by
//!    default), one request asks Prometheus which of the signal's metrics have series with that
//!    label equal to the service during the period: `/api/v1/label/__name__/values` with
//!    `match[]={<label>="<service>",__name__=~"<metric>|…"}`. The probes run concurrently; the
//!    first label in configured order with any convention whose metrics all exist wins. This is
//!    cheap (an index lookup, no samples read) and sees series that existed earlier in the period
//!    but not now.
//! 2. **Run.** The matching conventions run in catalog order as range queries; the first that
//!    returns data is the answer. A convention can match and still return nothing (no traffic,
//!    no 5xx label), which is why the next one is tried.
//! 3. **Report.** Current value, min/avg/max, trend, a downsampled series sized to the output
//!    budget, and the PromQL that ran. With no data, the message lists what was tried.
//!
//! The rate window is a twelfth of the period (5m for 1h), at least 1m; the step gives at most
//! about 60 points.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use opsgate_core::{CallContext, Effect, OutputBudget, Row, Tool, ToolError, ToolOutput, ToolSpec, parse_arguments};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::catalog::{Aggregation, Convention, Signal, SignalCatalog, TemplateValues, Unit, render};
use super::client::{MatrixSeries, PrometheusClient, PrometheusClients, QueryResult, Range};
use super::promql::{self, Labels};
use super::series::{self, Point, Stats, TREND_TOLERANCE};
use crate::format;
use crate::schema::{input_schema, object, set_description, set_enum};

/// The most points a series shows: enough to see a shape, few enough to leave most of the
/// budget for everything else.
const MAX_POINTS: usize = 60;
/// What one point costs in the rendered output (a table line and a JSON item), roughly.
const BYTES_PER_POINT: usize = 80;
/// Periods beyond this are refused: the step would be hours and the answer meaningless.
const MAX_PERIOD: Duration = Duration::from_secs(90 * 86_400);
const MIN_PERIOD: Duration = Duration::from_secs(60);
/// Prometheus refuses range queries with more points than this per series.
const PROMETHEUS_MAX_POINTS: u64 = 11_000;

/// Builds the Prometheus tools. The binary calls this once with every configured instance; the
/// tools pick the instance the pipeline resolved from the `target` argument.
pub fn prometheus_tools(clients: Arc<PrometheusClients>, catalog: SignalCatalog) -> Vec<Arc<dyn Tool>> {
    vec![
        Arc::new(GetServiceMetrics::new(Arc::clone(&clients), catalog)),
        Arc::new(QueryMetrics::new(Arc::clone(&clients))),
        Arc::new(ListMetrics::new(Arc::clone(&clients))),
        Arc::new(GetAlertHistory::new(clients)),
    ]
}

fn spec(name: &str, title: &str, description: &str, input: Map<String, Value>, output: Value) -> ToolSpec {
    ToolSpec {
        name: name.to_string(),
        title: title.to_string(),
        description: description.to_string(),
        input_schema: input,
        output_schema: Some(object(output)),
        effect: Effect::Read,
        target_kind: Some("prometheus".to_string()),
        idempotent: true,
        open_world: true,
    }
}

/// How many points of a series fit comfortably in `budget`: about a third of it.
pub(crate) fn max_points(budget: OutputBudget) -> usize {
    (budget.max_bytes / 3 / BYTES_PER_POINT).clamp(10, MAX_POINTS)
}

pub(crate) fn now_unix() -> f64 {
    chrono::Utc::now().timestamp_millis() as f64 / 1000.0
}

/// Parses a `period`-like argument, bounded so the query stays sensible.
pub(crate) fn parse_period(argument: &str, text: &str) -> Result<Duration, ToolError> {
    let period =
        format::parse_duration(text).map_err(|error| ToolError::InvalidArguments(format!("{argument}: {error}")))?;
    if period < MIN_PERIOD || period > MAX_PERIOD {
        return Err(ToolError::InvalidArguments(format!(
            "{argument}: {text:?} is outside 1m..90d; use e.g. 15m, 1h, 24h, 7d"
        )));
    }
    Ok(period)
}

/// The step that gives at most `n_points` points over `period`, in whole seconds.
pub(crate) fn step_for(period: Duration, n_points: usize) -> u64 {
    period.as_secs().div_ceil(n_points.max(1) as u64).max(1)
}

/// The rate window for a period: a twelfth of it (5m for 1h), at least 1m so that it spans
/// several scrapes at common intervals.
pub(crate) fn rate_window(period: Duration) -> u64 {
    (period.as_secs() / 12).max(60)
}

fn point_row(point: Point, unit: Unit) -> Row {
    let time = format::unix_time(point.time);
    Row {
        cells: vec![time.map(format::short_time).unwrap_or_else(|| point.time.to_string()), unit.humanize(point.value)],
        item: json!({
            "time": time.map(format::rfc3339).unwrap_or_else(|| point.time.to_string()),
            "value": point.value,
        }),
    }
}

/// The headline numbers as structured fields; `trend` and `change` only when there are enough
/// points for one.
fn stats_fields(output: ToolOutput, stats: &Stats, points: &[Point]) -> ToolOutput {
    let mut output =
        output.field("current", stats.last).field("min", stats.min).field("avg", stats.avg).field("max", stats.max);
    if let Some(trend) = series::trend(points, TREND_TOLERANCE) {
        output = output.field("trend", trend.direction.as_str());
        if let Some(relative) = trend.relative {
            output = output.field("change", relative);
        }
    }
    output
}

/// `now 10%; min 9.8%, avg 10%, max 10.2%; trend flat (+0.4%)`.
fn stats_line(stats: &Stats, points: &[Point], unit: Unit) -> String {
    let trend =
        series::trend(points, TREND_TOLERANCE).map(|trend| trend.describe()).unwrap_or_else(|| "n/a".to_string());
    format!(
        "now {}; min {}, avg {}, max {}; trend {trend}",
        unit.humanize(stats.last),
        unit.humanize(stats.min),
        unit.humanize(stats.avg),
        unit.humanize(stats.max)
    )
}

/// A note when the latest sample is older than two steps: "now" would otherwise mislead.
fn staleness_note(stats: &Stats, end: f64, step_seconds: u64) -> Option<String> {
    let age = end - stats.last_time;
    (age > 2.0 * step_seconds as f64).then(|| {
        let when = format::unix_time(stats.last_time);
        let now = format::unix_time(end);
        match (when, now) {
            (Some(when), Some(now)) => {
                format!("no data since {}; \"now\" is the last value seen", format::time_ago(when, now))
            }
            _ => "the last value is old".to_string(),
        }
    })
}

fn warnings_footer(warnings: &[String]) -> Vec<String> {
    warnings.iter().map(|warning| format!("prometheus warning: {warning}")).collect()
}

// ---------------------------------------------------------------------------------------------
// get_service_metrics

/// Arguments of `get_service_metrics`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ServiceMetricsArgs {
    /// Service name, as in its service, job, app or service_name label
    service: String,
    metric: String,
    /// Lookback, e.g. 15m, 1h, 24h, 7d
    #[serde(default = "default_period")]
    period: String,
    /// How instances combine, for request_rate, cpu, memory, saturation
    #[serde(default)]
    aggregation: Option<Aggregation>,
}

fn default_period() -> String {
    "1h".to_string()
}

pub struct GetServiceMetrics {
    clients: Arc<PrometheusClients>,
    catalog: SignalCatalog,
    spec: ToolSpec,
}

impl GetServiceMetrics {
    pub fn new(clients: Arc<PrometheusClients>, catalog: SignalCatalog) -> Self {
        let mut input = input_schema::<ServiceMetricsArgs>();
        let names = catalog.names();
        set_enum(&mut input, "metric", &names);
        let signals: Vec<String> =
            catalog.signals().iter().map(|signal| format!("{}: {}", signal.name, signal.description)).collect();
        set_description(&mut input, "metric", signals.join("; "));
        let spec = spec(
            "get_service_metrics",
            "Service metrics",
            "A service's metric over a period: current, min/avg/max, trend and a downsampled series. \
             Finds the service's label and metric convention itself; shows the PromQL it ran.",
            input,
            json!({
                "type": "object",
                "properties": {
                    "service": {"type": "string"},
                    "metric": {"type": "string"},
                    "unit": {"type": "string"},
                    "current": {"type": "number"},
                    "min": {"type": "number"},
                    "avg": {"type": "number"},
                    "max": {"type": "number"},
                    "trend": {"enum": ["rising", "falling", "flat"]},
                    "promql": {"type": "string"},
                    "items": {"type": "array", "items": {"type": "object", "properties": {
                        "time": {"type": "string"}, "value": {"type": "number"}}}}
                }
            }),
        );
        GetServiceMetrics { clients, catalog, spec }
    }
}

/// What the probe found: the label that names the service and the conventions whose metrics
/// exist under it, in catalog order.
struct Found<'a> {
    label: String,
    conventions: Vec<&'a Convention>,
}

/// Step 1 of the design above.
async fn probe<'a>(
    client: &PrometheusClient,
    signal: &'a Signal,
    service: &str,
    range: (f64, f64),
) -> Result<Option<Found<'a>>, ToolError> {
    let metrics = signal.metrics();
    if metrics.is_empty() {
        // Templates that select no metric by name cannot be probed; run them all under the
        // first label.
        return Ok(client
            .service_labels()
            .first()
            .map(|label| Found { label: label.clone(), conventions: signal.conventions.iter().collect() }));
    }
    let names = promql::quote(&metrics.join("|"));
    let requests = client.service_labels().iter().map(|label| {
        let matcher = format!("{{{},__name__=~{names}}}", promql::matcher(label, service));
        async move { client.label_values("__name__", &[matcher], Some(range)).await }
    });
    let answers = join_all(requests).await;
    for (label, answer) in client.service_labels().iter().zip(answers) {
        let present: BTreeSet<String> = answer?.data.into_iter().collect();
        let conventions: Vec<&Convention> = signal
            .conventions
            .iter()
            .filter(|convention| convention.metrics.iter().all(|metric| present.contains(metric)))
            .collect();
        if !conventions.is_empty() {
            return Ok(Some(Found { label: label.clone(), conventions }));
        }
    }
    Ok(None)
}

#[async_trait::async_trait]
impl Tool for GetServiceMetrics {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, context: CallContext, arguments: Map<String, Value>) -> Result<ToolOutput, ToolError> {
        let args: ServiceMetricsArgs = parse_arguments(arguments)?;
        let service = args.service.trim();
        if service.is_empty() {
            return Err(ToolError::InvalidArguments("service must not be empty".to_string()));
        }
        let signal = self.catalog.get(&args.metric).ok_or_else(|| {
            ToolError::InvalidArguments(format!(
                "unknown metric {:?}; use one of: {}",
                args.metric,
                self.catalog.names().join(", ")
            ))
        })?;
        let aggregation = match args.aggregation {
            Some(aggregation) if !signal.takes_aggregation() => {
                return Err(ToolError::InvalidArguments(format!(
                    "{} is computed over all instances at once and takes no aggregation (got {}); \
                     leave aggregation out",
                    signal.name,
                    aggregation.as_str()
                )));
            }
            Some(aggregation) => aggregation,
            None => signal.default_aggregation,
        };
        let period = parse_period("period", &args.period)?;
        let client = self.clients.for_target(context.target.as_ref())?;

        let n_points = max_points(context.budget);
        let step_seconds = step_for(period, n_points);
        let window = format::promql_duration(rate_window(period));
        let end = now_unix();
        let range = Range { start: end - period.as_secs_f64(), end, step_seconds };

        let base = ToolOutput::default()
            .field("service", service)
            .field("metric", signal.name.as_str())
            .field("unit", signal.unit.as_str())
            .field("period", args.period.as_str());

        let Some(found) = probe(client, signal, service, (range.start, range.end)).await? else {
            let labels = client.service_labels().join(", ");
            let message = format!(
                "no data for {service} {}: no series of {} has a label {labels} equal to {:?} in the last {}. \
                 Check the service name (list_metrics or query_metrics show what exists).",
                signal.name,
                signal.metrics().join(", "),
                service,
                args.period
            );
            let tried: Vec<&str> = signal.conventions.iter().map(|convention| convention.name.as_str()).collect();
            return Ok(ToolOutput { summary: vec![message], ..base }.field("found", false).field("tried", tried));
        };

        let selector = promql::matcher(&found.label, service);
        let values = TemplateValues { selector: &selector, window: &window, aggregation };
        let mut tried = Vec::new();
        for convention in &found.conventions {
            let query = render(&convention.template, values);
            let answer = client.query_range(&query, range).await.map_err(|error| error.into_tool_error())?;
            let all_series = match answer.data {
                QueryResult::Matrix(all_series) => all_series,
                // A template that is not a range-able expression; treat as no data.
                _ => Vec::new(),
            };
            let n_series = all_series.len();
            let Some((series, stats)) =
                all_series.into_iter().find_map(|series| series::stats(&series.points()).map(|stats| (series, stats)))
            else {
                tried.push(format!("{}: {query}", convention.name));
                continue;
            };
            let points = series.points();
            let mut summary = vec![format!(
                "{service} {} ({}) over {}: {}",
                signal.name,
                signal.description,
                args.period,
                stats_line(&stats, &points, signal.unit)
            )];
            summary.extend(staleness_note(&stats, end, step_seconds));
            let mut footer = vec![format!(
                "promql ({}, label {}, step {}, window {window}): {query}",
                convention.name,
                found.label,
                format::promql_duration(step_seconds)
            )];
            if n_series > 1 {
                footer.push(format!(
                    "the query returned {n_series} series; showing {}",
                    promql::format_series(&series.metric, &Labels::new())
                ));
            }
            footer.extend(warnings_footer(&answer.warnings));
            let rows =
                series::downsample(&points, n_points).into_iter().map(|point| point_row(point, signal.unit)).collect();
            let output =
                ToolOutput { summary, columns: vec!["time".to_string(), "value".to_string()], rows, footer, ..base };
            return Ok(stats_fields(output, &stats, &points)
                .field("convention", convention.name.as_str())
                .field("service_label", found.label.as_str())
                .field("step_seconds", step_seconds)
                .field("promql", query));
        }

        let message = format!(
            "no data for {service} {} in the last {}: {}={:?} has series of {}, but the queries returned nothing \
             (no traffic in the period?). Tried: {}",
            signal.name,
            args.period,
            found.label,
            service,
            found
                .conventions
                .iter()
                .flat_map(|convention| convention.metrics.iter().map(String::as_str))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
                .join(", "),
            tried.join("; ")
        );
        Ok(ToolOutput { summary: vec![message], ..base }.field("found", false).field("tried", tried))
    }
}

/// How far back the probe of `current_value` looks for a service's series, and the rate window
/// of its query: a health check is about now, so a short window, wide enough for a few scrapes.
const CURRENT_WINDOW: Duration = Duration::from_secs(5 * 60);

/// A signal's value now, as a health check reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct CurrentValue {
    pub value: f64,
    pub unit: Unit,
    /// The convention that answered and the PromQL that ran.
    pub convention: String,
    pub promql: String,
}

/// The current value of `signal` for `service`: `get_service_metrics`' probe over the last five
/// minutes, then its matching conventions in catalog order as instant queries, the first with a
/// finite value answering. `None` when no series has the service's label, or none has a value
/// now (no traffic). The catalog's health checks use this, so health and `get_service_metrics`
/// read the same PromQL.
pub async fn current_value(
    client: &PrometheusClient,
    catalog: &SignalCatalog,
    signal: &str,
    service: &str,
) -> Result<Option<CurrentValue>, ToolError> {
    let signal = catalog.get(signal).ok_or_else(|| {
        ToolError::Internal(format!("unknown metric signal {signal:?}; signals are {}", catalog.names().join(", ")))
    })?;
    let end = now_unix();
    let Some(found) = probe(client, signal, service, (end - CURRENT_WINDOW.as_secs_f64(), end)).await? else {
        return Ok(None);
    };
    let selector = promql::matcher(&found.label, service);
    let window = format::promql_duration(CURRENT_WINDOW.as_secs());
    let values = TemplateValues { selector: &selector, window: &window, aggregation: signal.default_aggregation };
    for convention in &found.conventions {
        let query = render(&convention.template, values);
        let answer = client.query(&query).await.map_err(|error| error.into_tool_error())?;
        let value = match answer.data {
            QueryResult::Vector(samples) => samples
                .iter()
                .filter_map(|sample| sample.value.as_ref())
                .map(|sample| sample.point().value)
                .find(|value| value.is_finite()),
            QueryResult::Scalar(sample) => Some(sample.point().value).filter(|value| value.is_finite()),
            _ => None,
        };
        if let Some(value) = value {
            return Ok(Some(CurrentValue {
                value,
                unit: signal.unit,
                convention: convention.name.clone(),
                promql: query,
            }));
        }
    }
    Ok(None)
}

// ---------------------------------------------------------------------------------------------
// query_metrics

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct QueryArgs {
    /// PromQL expression
    promql: String,
    /// Range query over this lookback (e.g. 1h); omit for an instant query
    #[serde(default)]
    period: Option<String>,
    /// Range resolution, e.g. 30s; default gives about 60 points
    #[serde(default)]
    step: Option<String>,
}

pub struct QueryMetrics {
    clients: Arc<PrometheusClients>,
    spec: ToolSpec,
}

impl QueryMetrics {
    pub fn new(clients: Arc<PrometheusClients>) -> Self {
        let spec = spec(
            "query_metrics",
            "Query metrics (PromQL)",
            "Run PromQL: an instant query, or with period a range query summarised per series \
             (last, min/avg/max, trend, sparse points).",
            input_schema::<QueryArgs>(),
            json!({
                "type": "object",
                "properties": {
                    "result_type": {"enum": ["vector", "matrix", "scalar", "string"]},
                    "common_labels": {"type": "object"},
                    "promql": {"type": "string"},
                    "items": {"type": "array", "items": {"type": "object", "properties": {
                        "labels": {"type": "object"}, "value": {"type": "number"}, "last": {"type": "number"},
                        "min": {"type": "number"}, "avg": {"type": "number"}, "max": {"type": "number"},
                        "trend": {"type": "string"}, "points": {"type": "array"}}}}
                }
            }),
        );
        QueryMetrics { clients, spec }
    }
}

#[async_trait::async_trait]
impl Tool for QueryMetrics {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, context: CallContext, arguments: Map<String, Value>) -> Result<ToolOutput, ToolError> {
        let args: QueryArgs = parse_arguments(arguments)?;
        let query = args.promql.trim();
        if query.is_empty() {
            return Err(ToolError::InvalidArguments("promql must not be empty".to_string()));
        }
        let client = self.clients.for_target(context.target.as_ref())?;
        let n_points = max_points(context.budget);
        let (answer, range) = match &args.period {
            None => {
                if args.step.is_some() {
                    return Err(ToolError::InvalidArguments(
                        "step needs a period; without one the query is an instant query".to_string(),
                    ));
                }
                (client.query(query).await, None)
            }
            Some(period_text) => {
                let period = parse_period("period", period_text)?;
                let step_seconds = match &args.step {
                    None => step_for(period, n_points),
                    Some(step) => {
                        let step = format::parse_duration(step)
                            .map_err(|error| ToolError::InvalidArguments(format!("step: {error}")))?;
                        step.as_secs().max(1)
                    }
                };
                if period.as_secs() / step_seconds > PROMETHEUS_MAX_POINTS {
                    return Err(ToolError::InvalidArguments(format!(
                        "period {period_text} at step {step_seconds}s is more than {PROMETHEUS_MAX_POINTS} points; use a larger step"
                    )));
                }
                let end = now_unix();
                let range = Range { start: end - period.as_secs_f64(), end, step_seconds };
                (client.query_range(query, range).await, Some((range, period_text.clone())))
            }
        };
        let answer = answer.map_err(|error| error.into_tool_error())?;
        let mut footer = vec![match &range {
            None => format!("promql (instant): {query}"),
            Some((range, period)) => {
                format!("promql (range {period}, step {}): {query}", format::promql_duration(range.step_seconds))
            }
        }];
        footer.extend(warnings_footer(&answer.warnings));
        let output = match answer.data {
            QueryResult::Vector(samples) => vector_output(samples),
            QueryResult::Matrix(all_series) => matrix_output(all_series, n_points, Unit::None),
            QueryResult::Scalar(sample) | QueryResult::String(sample) => {
                let kind = if sample.1.parse::<f64>().is_ok() { "scalar" } else { "string" };
                ToolOutput::text(format!("{kind}: {}", sample.1)).field("result_type", kind).field(
                    "value",
                    sample.1.parse::<f64>().map(Value::from).unwrap_or_else(|_| Value::String(sample.1.clone())),
                )
            }
        };
        let mut output = output.field("promql", query);
        output.footer.extend(footer);
        Ok(output)
    }
}

fn common_labels_line(common: &Labels) -> Option<String> {
    (!common.is_empty()).then(|| format!("common labels: {}", promql::format_series(common, &Labels::new())))
}

fn vector_output(samples: Vec<super::client::VectorSample>) -> ToolOutput {
    let common = promql::common_labels(samples.iter().map(|sample| &sample.metric));
    let mut summary = vec![format!("{} series", samples.len())];
    summary.extend(common_labels_line(&common));
    let rows = samples
        .iter()
        .map(|sample| {
            let value = sample.value.as_ref().map(|raw| raw.point().value);
            let distinct = promql::without_labels(&sample.metric, &common.keys().map(String::as_str).collect());
            Row {
                cells: vec![
                    promql::format_series(&sample.metric, &common),
                    value.map(format::number).unwrap_or_else(|| "(histogram)".to_string()),
                ],
                item: json!({"labels": distinct, "value": value}),
            }
        })
        .collect();
    ToolOutput { summary, columns: vec!["series".to_string(), "value".to_string()], rows, ..ToolOutput::default() }
        .field("result_type", "vector")
        .field("common_labels", json!(common))
}

/// A range result: one series is shown point by point like `get_service_metrics`; several are
/// summarised one row each, with a share of the point budget each.
pub(crate) fn matrix_output(all_series: Vec<MatrixSeries>, n_points: usize, unit: Unit) -> ToolOutput {
    if let [single] = all_series.as_slice() {
        let points = single.points();
        let name = promql::format_series(&single.metric, &Labels::new());
        let Some(stats) = series::stats(&points) else {
            return ToolOutput::text(format!("1 series, no finite values: {name}")).field("result_type", "matrix");
        };
        let output = ToolOutput {
            summary: vec![format!("1 series: {name}"), stats_line(&stats, &points, unit)],
            columns: vec!["time".to_string(), "value".to_string()],
            rows: series::downsample(&points, n_points).into_iter().map(|point| point_row(point, unit)).collect(),
            ..ToolOutput::default()
        };
        return stats_fields(output, &stats, &points)
            .field("result_type", "matrix")
            .field("labels", json!(single.metric));
    }

    let common = promql::common_labels(all_series.iter().map(|series| &series.metric));
    let common_keys: BTreeSet<&str> = common.keys().map(String::as_str).collect();
    // Points only when each series gets a few; otherwise the stats say enough.
    let points_each = n_points / all_series.len().max(1);
    let mut summary = vec![format!("{} series", all_series.len())];
    summary.extend(common_labels_line(&common));
    let rows = all_series
        .iter()
        .map(|one| {
            let points = one.points();
            let distinct = promql::without_labels(&one.metric, &common_keys);
            let name = promql::format_series(&one.metric, &common);
            match series::stats(&points) {
                None => Row {
                    cells: vec![
                        name,
                        "-".to_string(),
                        "-".to_string(),
                        "-".to_string(),
                        "-".to_string(),
                        "-".to_string(),
                    ],
                    item: json!({"labels": distinct}),
                },
                Some(stats) => {
                    let trend = series::trend(&points, TREND_TOLERANCE);
                    let mut item = json!({
                        "labels": distinct,
                        "last": stats.last,
                        "min": stats.min,
                        "avg": stats.avg,
                        "max": stats.max,
                        "trend": trend.map(|trend| trend.direction.as_str()).unwrap_or("flat"),
                    });
                    if points_each >= 3 {
                        let sparse: Vec<Value> = series::downsample(&points, points_each)
                            .into_iter()
                            .map(|point| json!([point.time, point.value]))
                            .collect();
                        item["points"] = Value::Array(sparse);
                    }
                    Row {
                        cells: vec![
                            name,
                            unit.humanize(stats.last),
                            unit.humanize(stats.min),
                            unit.humanize(stats.avg),
                            unit.humanize(stats.max),
                            trend.map(|trend| trend.describe()).unwrap_or_else(|| "n/a".to_string()),
                        ],
                        item,
                    }
                }
            }
        })
        .collect();
    ToolOutput {
        summary,
        columns: ["series", "last", "min", "avg", "max", "trend"].into_iter().map(str::to_string).collect(),
        rows,
        ..ToolOutput::default()
    }
    .field("result_type", "matrix")
    .field("common_labels", json!(common))
}

// ---------------------------------------------------------------------------------------------
// list_metrics

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ListArgs {
    /// Substring or regex of metric names (case-insensitive), or a series selector like {job="api"}
    #[serde(default, rename = "match")]
    pattern: Option<String>,
}

pub struct ListMetrics {
    clients: Arc<PrometheusClients>,
    spec: ToolSpec,
}

impl ListMetrics {
    pub fn new(clients: Arc<PrometheusClients>) -> Self {
        let spec = spec(
            "list_metrics",
            "List metrics",
            "Metric names with type and help, filtered by substring, regex or series selector.",
            input_schema::<ListArgs>(),
            json!({
                "type": "object",
                "properties": {
                    "n_metrics": {"type": "integer"},
                    "items": {"type": "array", "items": {"type": "object", "properties": {
                        "name": {"type": "string"}, "type": {"type": "string"}, "help": {"type": "string"}}}}
                }
            }),
        );
        ListMetrics { clients, spec }
    }
}

/// The `match[]` selector for a `list_metrics` pattern: a selector passes through; anything
/// else is a case-insensitive regex searched anywhere in the name (so a plain word is a
/// substring), which Prometheus evaluates.
pub(crate) fn list_selector(pattern: &str) -> String {
    if pattern.contains('{') {
        pattern.to_string()
    } else {
        format!("{{__name__=~{}}}", promql::quote(&format!("(?i).*(?:{pattern}).*")))
    }
}

#[async_trait::async_trait]
impl Tool for ListMetrics {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, context: CallContext, arguments: Map<String, Value>) -> Result<ToolOutput, ToolError> {
        let args: ListArgs = parse_arguments(arguments)?;
        let client = self.clients.for_target(context.target.as_ref())?;
        let pattern = args.pattern.as_deref().map(str::trim).filter(|pattern| !pattern.is_empty());
        let matchers: Vec<String> = pattern.map(list_selector).into_iter().collect();
        let (names, metadata) = futures::join!(client.label_values("__name__", &matchers, None), client.metadata());
        let names = names.map_err(|error| error.into_tool_error())?;
        let mut footer = warnings_footer(&names.warnings);
        let metadata = match metadata {
            Ok(answer) => answer.data,
            Err(error) => {
                footer.push(format!("types and help unavailable: {error}"));
                Default::default()
            }
        };
        let rows: Vec<Row> = names
            .data
            .iter()
            .map(|name| {
                let meta = metadata.get(name).and_then(|entries| entries.first());
                let kind = meta.map(|meta| meta.kind.as_str()).unwrap_or("");
                let help = meta.map(|meta| meta.help.as_str()).unwrap_or("");
                let mut item = json!({"name": name, "type": kind, "help": help});
                if let Some(unit) = meta.map(|meta| meta.unit.as_str()).filter(|unit| !unit.is_empty()) {
                    item["unit"] = Value::from(unit);
                }
                Row { cells: vec![name.clone(), kind.to_string(), help.to_string()], item }
            })
            .collect();
        let summary = match pattern {
            Some(pattern) => format!("{} metrics match {pattern:?}", rows.len()),
            None => format!("{} metrics", rows.len()),
        };
        if let Some(matcher) = matchers.first() {
            footer.push(format!("match[]: {matcher}"));
        }
        let n_metrics = rows.len();
        Ok(ToolOutput {
            summary: vec![summary],
            columns: vec!["name".to_string(), "type".to_string(), "help".to_string()],
            rows,
            footer,
            ..ToolOutput::default()
        }
        .field("n_metrics", n_metrics))
    }
}

// ---------------------------------------------------------------------------------------------
// get_alert_history

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct AlertHistoryArgs {
    /// Only alerts whose service, job, app or service_name label is this
    #[serde(default)]
    service: Option<String>,
    /// Lookback, e.g. 24h, 7d
    #[serde(default = "default_history_period")]
    period: String,
}

fn default_history_period() -> String {
    "24h".to_string()
}

/// Steps per series in the history query: fine enough for minutes over a day, small enough that
/// many alerts still make a modest response.
const HISTORY_STEPS: usize = 720;

pub struct GetAlertHistory {
    clients: Arc<PrometheusClients>,
    spec: ToolSpec,
}

impl GetAlertHistory {
    pub fn new(clients: Arc<PrometheusClients>) -> Self {
        let spec = spec(
            "get_alert_history",
            "Alert history",
            "Alerts that fired in a period (from Prometheus' ALERTS series): first/last seen, \
             time firing, episodes, whether still firing.",
            input_schema::<AlertHistoryArgs>(),
            json!({
                "type": "object",
                "properties": {
                    "n_alerts": {"type": "integer"},
                    "items": {"type": "array", "items": {"type": "object", "properties": {
                        "alertname": {"type": "string"}, "severity": {"type": "string"},
                        "service": {"type": "string"}, "first_seen": {"type": "string"},
                        "last_seen": {"type": "string"}, "firing_seconds": {"type": "number"},
                        "episodes": {"type": "integer"}, "firing_now": {"type": "boolean"},
                        "labels": {"type": "object"}}}}
                }
            }),
        );
        GetAlertHistory { clients, spec }
    }
}

/// One alert's firing history, from its `ALERTS{alertstate="firing"}` samples.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Firing {
    pub first_seen: f64,
    pub last_seen: f64,
    pub firing_seconds: f64,
    pub episodes: usize,
    pub firing_now: bool,
}

/// Reads a firing history off range-query samples taken every `step_seconds` up to
/// `last_evaluation`: each sample stands for one step of firing, a gap of more than a step
/// starts a new episode.
pub(crate) fn firing_history(points: &[Point], step_seconds: u64, last_evaluation: f64) -> Option<Firing> {
    let times: Vec<f64> = points.iter().filter(|point| point.value.is_finite()).map(|point| point.time).collect();
    let (&first_seen, &last_seen) = (times.first()?, times.last()?);
    let step = step_seconds as f64;
    let episodes = 1 + times.windows(2).filter(|pair| pair[1] - pair[0] > step * 1.5).count();
    Some(Firing {
        first_seen,
        last_seen,
        firing_seconds: times.len() as f64 * step,
        episodes,
        firing_now: last_seen >= last_evaluation - step * 0.5,
    })
}

/// The first of `labels` (service, job, app, service_name) an alert carries.
pub(crate) fn service_of<'a>(labels: &'a Labels, service_labels: &[String]) -> Option<&'a str> {
    service_labels.iter().find_map(|label| labels.get(label)).map(String::as_str)
}

#[async_trait::async_trait]
impl Tool for GetAlertHistory {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, context: CallContext, arguments: Map<String, Value>) -> Result<ToolOutput, ToolError> {
        let args: AlertHistoryArgs = parse_arguments(arguments)?;
        let service = args.service.as_deref().map(str::trim).filter(|service| !service.is_empty());
        let period = parse_period("period", &args.period)?;
        let client = self.clients.for_target(context.target.as_ref())?;

        let step_seconds = step_for(period, HISTORY_STEPS);
        let end = now_unix();
        let range = Range { start: end - period.as_secs_f64(), end, step_seconds };
        let last_evaluation =
            range.start + ((range.end - range.start) / step_seconds as f64).floor() * step_seconds as f64;
        let query = "ALERTS{alertstate=\"firing\"}";
        let since_query = format!("min_over_time(ALERTS_FOR_STATE[{}])", format::promql_duration(period.as_secs()));
        let (history, since) = futures::join!(client.query_range(query, range), client.query(&since_query));
        let history = history.map_err(|error| error.into_tool_error())?;
        // ALERTS_FOR_STATE only adds "active since"; without it the history still stands.
        let active_since: BTreeMap<Labels, f64> = match since.map(|answer| answer.data) {
            Ok(QueryResult::Vector(samples)) => samples
                .into_iter()
                .filter_map(|sample| {
                    let value = sample.value?.point().value;
                    let mut labels = sample.metric;
                    labels.remove("__name__");
                    value.is_finite().then_some((labels, value))
                })
                .collect(),
            _ => BTreeMap::new(),
        };

        let all_series = match history.data {
            QueryResult::Matrix(all_series) => all_series,
            _ => Vec::new(),
        };
        let service_labels = client.service_labels();
        let mut alerts: Vec<(Labels, Firing)> = all_series
            .into_iter()
            .filter(|series| service.is_none() || service_of(&series.metric, service_labels) == service)
            .filter_map(|series| {
                let mut firing = firing_history(&series.points(), step_seconds, last_evaluation)?;
                let mut labels = series.metric;
                labels.remove("__name__");
                labels.remove("alertstate");
                // Samples only say "firing at this step"; the alert cannot have fired longer
                // than since it became active, which ALERTS_FOR_STATE knows to the second.
                if let Some(since) = active_since.get(&labels) {
                    firing.firing_seconds = firing.firing_seconds.min((end - since).max(0.0));
                }
                Some((labels, firing))
            })
            .collect();
        alerts.sort_by(|(_, a), (_, b)| b.firing_now.cmp(&a.firing_now).then(b.last_seen.total_cmp(&a.last_seen)));

        let now = format::unix_time(end);
        let shown_labels: BTreeSet<&str> =
            ["alertname", "severity"].into_iter().chain(service_labels.iter().map(String::as_str)).collect();
        let rows: Vec<Row> = alerts
            .iter()
            .map(|(labels, firing)| {
                let alertname = labels.get("alertname").map(String::as_str).unwrap_or("");
                let severity = labels.get("severity").map(String::as_str).unwrap_or("");
                let alert_service = service_of(labels, service_labels).unwrap_or("");
                let other = promql::without_labels(labels, &shown_labels);
                let first = format::unix_time(firing.first_seen);
                let last = format::unix_time(firing.last_seen);
                let since = active_since.get(labels).copied().and_then(format::unix_time);
                let cell_time = |time: Option<chrono::DateTime<chrono::Utc>>| match (time, now) {
                    (Some(time), Some(now)) => format::time_ago(time, now),
                    _ => "?".to_string(),
                };
                let mut item = json!({
                    "alertname": alertname,
                    "severity": severity,
                    "service": alert_service,
                    "first_seen": first.map(format::rfc3339),
                    "last_seen": last.map(format::rfc3339),
                    "firing_seconds": firing.firing_seconds,
                    "episodes": firing.episodes,
                    "firing_now": firing.firing_now,
                    "labels": other,
                });
                if let Some(since) = since {
                    item["active_since"] = Value::from(format::rfc3339(since));
                }
                Row {
                    cells: vec![
                        alertname.to_string(),
                        severity.to_string(),
                        alert_service.to_string(),
                        cell_time(first),
                        if firing.firing_now { "firing now".to_string() } else { cell_time(last) },
                        format::human_duration(Duration::from_secs_f64(firing.firing_seconds.max(0.0))),
                        firing.episodes.to_string(),
                        if other.is_empty() { String::new() } else { promql::format_series(&other, &Labels::new()) },
                    ],
                    item,
                }
            })
            .collect();

        let n_firing = alerts.iter().filter(|(_, firing)| firing.firing_now).count();
        let scope = service.map(|service| format!(" for {service}")).unwrap_or_default();
        let summary = if rows.is_empty() {
            format!("no alerts fired{scope} in the last {}", args.period)
        } else {
            format!(
                "{} alerts fired{scope} in the last {} ({n_firing} still firing); times are to the step, {}",
                rows.len(),
                args.period,
                format::promql_duration(step_seconds)
            )
        };
        let mut footer =
            vec![format!("promql (range {}, step {}): {query}", args.period, format::promql_duration(step_seconds))];
        footer.extend(warnings_footer(&history.warnings));
        let n_alerts = rows.len();
        Ok(ToolOutput {
            summary: vec![summary],
            columns: ["alertname", "severity", "service", "first_seen", "last_seen", "firing", "episodes", "labels"]
                .into_iter()
                .map(str::to_string)
                .collect(),
            rows,
            footer,
            ..ToolOutput::default()
        }
        .field("n_alerts", n_alerts))
    }
}
