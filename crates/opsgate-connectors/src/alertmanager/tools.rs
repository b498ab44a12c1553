//! `get_active_alerts`: what is firing now, and for each alert the rule behind it.
//!
//! An alert alone says "HighErrorRate is firing"; an agent needs "error rate 0.1 against a
//! threshold of 0.05, rising". So after reading Alertmanager, the tool reads the alert rules of
//! the Prometheus that evaluates them (`/api/v1/rules?type=alert`), matches each alert to its
//! rule by name and labels, splits the rule's expression at its threshold (`… > 0.05`), and runs
//! the measured side as a 30-minute range query: its latest value and trend, for the series whose
//! labels the alert carries. Prometheus trouble never hides the alerts: they are shown without
//! rule details and a footer says why.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use opsgate_core::{CallContext, Effect, Row, Tool, ToolError, ToolOutput, ToolSpec, parse_arguments};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::client::{AlertmanagerClient, AlertmanagerClients, GettableAlert};
use super::silences::{ExpireSilence, ListSilences, SilenceAlert};
use crate::format;
use crate::prometheus::promql::{self, Labels, Threshold};
use crate::prometheus::series::{self, TREND_TOLERANCE};
use crate::prometheus::{
    MatrixSeries, PrometheusClient, PrometheusClients, QueryResult, Range, Rule, default_service_labels, now_unix,
    service_of,
};
use crate::schema::{input_schema, object};

/// How far back the measured side of a rule is read for its trend.
const TREND_WINDOW: Duration = Duration::from_secs(30 * 60);
const TREND_STEP_SECONDS: u64 = 30;
/// Rules enriched per call: each costs a range query, and the call has a deadline.
const MAX_RULES_ENRICHED: usize = 10;

/// Builds the Alertmanager tools. `prometheus` holds the instances whose rules explain the
/// alerts (see `AlertmanagerConfig::prometheus`) and whose service labels name their services.
pub fn alertmanager_tools(clients: Arc<AlertmanagerClients>, prometheus: Arc<PrometheusClients>) -> Vec<Arc<dyn Tool>> {
    vec![
        Arc::new(GetActiveAlerts::new(clients.clone(), prometheus.clone())),
        Arc::new(ListSilences::new(clients.clone())),
        Arc::new(SilenceAlert::new(clients.clone(), prometheus.clone())),
        Arc::new(ExpireSilence::new(clients, prometheus)),
    ]
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ActiveAlertsArgs {
    /// Only alerts whose service, job, app or service_name label is this
    #[serde(default)]
    service: Option<String>,
    /// Only this severity label, e.g. critical
    #[serde(default)]
    severity: Option<String>,
}

pub struct GetActiveAlerts {
    clients: Arc<AlertmanagerClients>,
    prometheus: Arc<PrometheusClients>,
    spec: ToolSpec,
}

impl GetActiveAlerts {
    pub fn new(clients: Arc<AlertmanagerClients>, prometheus: Arc<PrometheusClients>) -> Self {
        let spec = ToolSpec {
            name: "get_active_alerts".to_string(),
            title: "Active alerts".to_string(),
            description: "Alerts in Alertmanager now (active or silenced/inhibited) with summary, runbook_url, \
                          and the rule's expression, threshold, current value and 30m trend."
                .to_string(),
            input_schema: input_schema::<ActiveAlertsArgs>(),
            output_schema: Some(object(json!({
                "type": "object",
                "properties": {
                    "n_active": {"type": "integer"},
                    "n_suppressed": {"type": "integer"},
                    "items": {"type": "array", "items": {"type": "object", "properties": {
                        "alertname": {"type": "string"}, "severity": {"type": "string"},
                        "service": {"type": "string"}, "state": {"type": "string"},
                        "starts_at": {"type": "string"}, "summary": {"type": "string"},
                        "runbook_url": {"type": "string"}, "labels": {"type": "object"},
                        "expr": {"type": "string"}, "operator": {"type": "string"},
                        "threshold": {"type": "number"}, "value": {"type": "number"},
                        "trend": {"type": "string"}}}}
                }
            }))),
            effect: Effect::Read,
            target_kind: Some("alertmanager".to_string()),
            idempotent: true,
            open_world: true,
        };
        GetActiveAlerts { clients, prometheus, spec }
    }

    /// The Prometheus that evaluates this Alertmanager's rules: the one its configuration names,
    /// else the first configured.
    fn rules_source(&self, alertmanager: &AlertmanagerClient) -> Result<Arc<PrometheusClient>, String> {
        match alertmanager.prometheus() {
            Some(name) => self.prometheus.get(name).cloned().ok_or_else(|| {
                format!(
                    "prometheus {name:?}, named in alertmanager {}'s config, is not configured",
                    alertmanager.name()
                )
            }),
            None => self.prometheus.first().cloned().ok_or_else(|| "no prometheus is configured".to_string()),
        }
    }
}

/// Most urgent first; unknown severities after the known ones.
pub(super) fn severity_rank(severity: &str) -> u8 {
    match severity.to_ascii_lowercase().as_str() {
        "critical" | "page" | "emergency" => 0,
        "error" | "high" | "major" => 1,
        "warning" | "warn" | "medium" | "minor" => 2,
        "info" | "low" | "none" => 3,
        _ => 4,
    }
}

/// The rule an alert came from: same name, and every label the rule adds present on the alert
/// (two rules may share a name with different severities). By name alone when that is
/// unambiguous.
pub(crate) fn match_rule<'a>(rules: &[&'a Rule], alert_labels: &Labels) -> Option<&'a Rule> {
    let name = alert_labels.get("alertname")?;
    let named: Vec<&Rule> = rules.iter().copied().filter(|rule| &rule.name == name).collect();
    named
        .iter()
        .copied()
        .find(|rule| rule.labels.iter().all(|(label, value)| alert_labels.get(label) == Some(value)))
        .or_else(|| if named.len() == 1 { named.first().copied() } else { None })
}

/// What one rule contributes: its threshold and the recent values of its measured side.
struct RuleDetails<'a> {
    rule: &'a Rule,
    threshold: Option<Threshold>,
    measured: Result<Vec<MatrixSeries>, String>,
}

/// What the tool says about one alert's rule.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AlertRuleValue {
    pub value: Option<f64>,
    pub trend: Option<series::Trend>,
}

/// The current value and trend for one alert: from the measured side's series whose labels the
/// alert carries, or the only series there is when it does not contradict them; else the value Prometheus recorded on the rule's
/// alert at its last evaluation (for `x > t` that is `x`).
pub(crate) fn alert_value(rule: &Rule, measured: Option<&[MatrixSeries]>, alert_labels: &Labels) -> AlertRuleValue {
    if let Some(all_series) = measured {
        let chosen = all_series
            .iter()
            .find(|series| !series.metric.is_empty() && promql::labels_within(&series.metric, alert_labels))
            .or_else(|| match all_series {
                // The measured side aggregated the alert's labels away: its one series is the
                // overall value, unless it names another series (another service, say).
                [only] if promql::labels_compatible(&only.metric, alert_labels) => Some(only),
                _ => None,
            });
        if let Some(chosen) = chosen {
            let points = chosen.points();
            if let Some(stats) = series::stats(&points) {
                return AlertRuleValue { value: Some(stats.last), trend: series::trend(&points, TREND_TOLERANCE) };
            }
        }
    }
    let recorded = rule
        .alerts
        .iter()
        .find(|alert| &alert.labels == alert_labels)
        .and_then(|alert| alert.value.as_deref())
        .map(series::parse_value)
        .filter(|value| value.is_finite());
    AlertRuleValue { value: recorded, trend: None }
}

/// `active`, or `suppressed (silenced by 1a2b3c4d; inhibited by …)` with identifiers shortened
/// for the table.
pub(super) fn state_text(alert: &GettableAlert) -> String {
    let short =
        |ids: &[String]| ids.iter().map(|id| id.chars().take(8).collect::<String>()).collect::<Vec<_>>().join(",");
    let mut reasons = Vec::new();
    if !alert.status.silenced_by.is_empty() {
        reasons.push(format!("silenced by {}", short(&alert.status.silenced_by)));
    }
    if !alert.status.inhibited_by.is_empty() {
        reasons.push(format!("inhibited by {}", short(&alert.status.inhibited_by)));
    }
    if !alert.status.muted_by.is_empty() {
        reasons.push(format!("muted by {}", alert.status.muted_by.join(",")));
    }
    let state = if alert.status.state.is_empty() { "unknown" } else { alert.status.state.as_str() };
    if reasons.is_empty() { state.to_string() } else { format!("{state} ({})", reasons.join("; ")) }
}

/// Reads the rules and the measured sides they need. Errors become footer notes: alerts are
/// worth showing without their rules.
async fn rule_details<'a>(
    prometheus: &PrometheusClient,
    rules: &[&'a Rule],
    end: f64,
    notes: &mut Vec<String>,
) -> Vec<RuleDetails<'a>> {
    let range = Range { start: end - TREND_WINDOW.as_secs_f64(), end, step_seconds: TREND_STEP_SECONDS };
    let queries = rules.iter().map(|rule| async move {
        let threshold = promql::split_threshold(&rule.query);
        let measured = match &threshold {
            Some(threshold) => match prometheus.query_range(&threshold.measured, range).await {
                Ok(answer) => match answer.data {
                    QueryResult::Matrix(all_series) => Ok(all_series),
                    _ => Ok(Vec::new()),
                },
                Err(error) => Err(error.to_string()),
            },
            None => Err("no single threshold in the expression".to_string()),
        };
        RuleDetails { rule, threshold, measured }
    });
    let details = join_all(queries).await;
    for detail in &details {
        if let (Some(_), Err(error)) = (&detail.threshold, &detail.measured) {
            notes.push(format!("current value of {} unavailable: {error}", detail.rule.name));
        }
    }
    details
}

#[async_trait::async_trait]
impl Tool for GetActiveAlerts {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, context: CallContext, arguments: Map<String, Value>) -> Result<ToolOutput, ToolError> {
        let args: ActiveAlertsArgs = parse_arguments(arguments)?;
        let service = args.service.as_deref().map(str::trim).filter(|service| !service.is_empty());
        let severity = args.severity.as_deref().map(str::trim).filter(|severity| !severity.is_empty());
        let alertmanager = self.clients.for_target(context.target.as_ref())?;
        let prometheus = self.rules_source(alertmanager);
        let service_labels = match &prometheus {
            Ok(prometheus) => prometheus.service_labels().to_vec(),
            Err(_) => default_service_labels(),
        };

        let mut alerts: Vec<GettableAlert> = alertmanager
            .alerts()
            .await?
            .into_iter()
            .filter(|alert| service.is_none() || service_of(&alert.labels, &service_labels) == service)
            .filter(|alert| {
                severity.is_none_or(|wanted| {
                    alert.labels.get("severity").is_some_and(|actual| actual.eq_ignore_ascii_case(wanted))
                })
            })
            .collect();
        alerts.sort_by(|a, b| {
            let rank =
                |alert: &GettableAlert| severity_rank(alert.labels.get("severity").map(String::as_str).unwrap_or(""));
            rank(a).cmp(&rank(b)).then_with(|| b.starts_at.cmp(&a.starts_at))
        });

        // Rules behind the alerts, from Prometheus.
        let end = now_unix();
        let mut notes = Vec::new();
        let rules_data = match &prometheus {
            Ok(prometheus) if !alerts.is_empty() => match prometheus.alert_rules().await {
                Ok(answer) => Some(answer.data),
                Err(error) => {
                    notes.push(format!("rule details unavailable: {error}"));
                    None
                }
            },
            Ok(_) | Err(_) if alerts.is_empty() => None,
            Ok(_) => None,
            Err(reason) => {
                notes.push(format!("rule details unavailable: {reason}"));
                None
            }
        };
        let all_rules: Vec<&Rule> = rules_data
            .iter()
            .flat_map(|data| data.groups.iter())
            .flat_map(|group| group.rules.iter())
            .filter(|rule| rule.kind.is_empty() || rule.kind == "alerting")
            .collect();
        let matched: Vec<Option<&Rule>> = alerts.iter().map(|alert| match_rule(&all_rules, &alert.labels)).collect();
        let mut distinct: Vec<&Rule> = Vec::new();
        for rule in matched.iter().flatten() {
            if !distinct.iter().any(|known| std::ptr::eq(*known, *rule)) {
                distinct.push(rule);
            }
        }
        if distinct.len() > MAX_RULES_ENRICHED {
            notes.push(format!(
                "current values shown for the first {MAX_RULES_ENRICHED} of {} rules; filter by service or severity",
                distinct.len()
            ));
            distinct.truncate(MAX_RULES_ENRICHED);
        }
        let details = match &prometheus {
            Ok(prometheus) if !distinct.is_empty() => rule_details(prometheus, &distinct, end, &mut notes).await,
            _ => Vec::new(),
        };
        if rules_data.is_some() {
            let unmatched: BTreeSet<&str> = alerts
                .iter()
                .zip(&matched)
                .filter(|(_, rule)| rule.is_none())
                .filter_map(|(alert, _)| alert.labels.get("alertname").map(String::as_str))
                .collect();
            if !unmatched.is_empty() {
                let source = prometheus.as_ref().map(|client| client.name()).unwrap_or("?");
                notes.push(format!(
                    "no rule in prometheus {source} for {}",
                    unmatched.into_iter().collect::<Vec<_>>().join(", ")
                ));
            }
        }

        let now = chrono::Utc::now();
        let shown_labels: BTreeSet<&str> =
            ["alertname", "severity"].into_iter().chain(service_labels.iter().map(String::as_str)).collect();
        let mut n_active = 0;
        let mut n_suppressed = 0;
        let rows: Vec<Row> = alerts
            .iter()
            .zip(&matched)
            .map(|(alert, rule)| {
                match alert.status.state.as_str() {
                    "active" => n_active += 1,
                    "suppressed" => n_suppressed += 1,
                    _ => {}
                }
                let detail = rule.and_then(|rule| details.iter().find(|detail| std::ptr::eq(detail.rule, rule)));
                alert_row(alert, *rule, detail, &service_labels, &shown_labels, now)
            })
            .collect();

        let mut filters = Vec::new();
        if let Some(service) = service {
            filters.push(format!("service={service}"));
        }
        if let Some(severity) = severity {
            filters.push(format!("severity={severity}"));
        }
        let filters = if filters.is_empty() { String::new() } else { format!(" matching {}", filters.join(", ")) };
        let summary = if rows.is_empty() {
            format!("no alerts{filters} in alertmanager {}", alertmanager.name())
        } else {
            format!(
                "{} alerts{filters} in alertmanager {}: {n_active} active, {n_suppressed} suppressed",
                rows.len(),
                alertmanager.name()
            )
        };
        let mut footer: Vec<String> = details
            .iter()
            .map(|detail| {
                let source = prometheus.as_ref().map(|client| client.name()).unwrap_or("?");
                format!(
                    "rule {} (prometheus {source}, for {}): {}",
                    detail.rule.name,
                    format::human_duration(Duration::from_secs_f64(detail.rule.duration.max(0.0))),
                    detail.rule.query
                )
            })
            .collect();
        footer.extend(notes);
        let n_rows = rows.len();
        Ok(ToolOutput {
            summary: vec![summary],
            columns: [
                "alertname",
                "severity",
                "service",
                "state",
                "since",
                "value",
                "threshold",
                "trend",
                "summary",
                "runbook",
            ]
            .into_iter()
            .map(str::to_string)
            .collect(),
            rows,
            footer,
            ..ToolOutput::default()
        }
        .field("n_alerts", n_rows)
        .field("n_active", n_active)
        .field("n_suppressed", n_suppressed))
    }
}

fn alert_row(
    alert: &GettableAlert,
    rule: Option<&Rule>,
    detail: Option<&RuleDetails<'_>>,
    service_labels: &[String],
    shown_labels: &BTreeSet<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> Row {
    let label = |name: &str| alert.labels.get(name).map(String::as_str).unwrap_or("");
    let annotation = |name: &str| alert.annotations.get(name).map(String::as_str).unwrap_or("");
    let service = service_of(&alert.labels, service_labels).unwrap_or("");
    let starts_at = alert
        .starts_at
        .as_deref()
        .and_then(|text| chrono::DateTime::parse_from_rfc3339(text).ok())
        .map(|time| time.with_timezone(&chrono::Utc));
    let summary = if annotation("summary").is_empty() { annotation("description") } else { annotation("summary") };
    let runbook = if annotation("runbook_url").is_empty() { annotation("runbook") } else { annotation("runbook_url") };
    let other_labels: BTreeMap<&String, &String> =
        alert.labels.iter().filter(|(name, _)| !shown_labels.contains(name.as_str())).collect();

    let mut item = json!({
        "alertname": label("alertname"),
        "severity": label("severity"),
        "service": service,
        "state": alert.status.state,
        "starts_at": starts_at.map(format::rfc3339).or_else(|| alert.starts_at.clone()),
        "summary": summary,
        "runbook_url": runbook,
        "labels": other_labels,
        "fingerprint": alert.fingerprint,
    });
    if !alert.status.silenced_by.is_empty() {
        item["silenced_by"] = json!(alert.status.silenced_by);
    }
    if !alert.status.inhibited_by.is_empty() {
        item["inhibited_by"] = json!(alert.status.inhibited_by);
    }
    if let Some(description) = alert.annotations.get("description").filter(|text| text.as_str() != summary) {
        item["description"] = Value::from(description.as_str());
    }

    let (mut value_cell, mut threshold_cell, mut trend_cell) = (String::new(), String::new(), String::new());
    if let Some(rule) = rule {
        item["expr"] = Value::from(rule.query.as_str());
        let threshold = detail.and_then(|detail| detail.threshold.as_ref());
        if let Some(threshold) = threshold {
            item["operator"] = Value::from(threshold.comparison.as_str());
            item["threshold"] = Value::from(threshold.value);
            item["measured"] = Value::from(threshold.measured.as_str());
            threshold_cell = format!("{} {}", threshold.comparison.as_str(), format::number(threshold.value));
        }
        let measured = detail.and_then(|detail| detail.measured.as_ref().ok()).map(Vec::as_slice);
        let current = alert_value(rule, measured, &alert.labels);
        if let Some(value) = current.value {
            item["value"] = Value::from(value);
            value_cell = format::number(value);
            // An alert lingers after its condition clears (resolve delay, `keep_firing_for`):
            // say so rather than let "firing" and a healthy value contradict each other.
            if let Some(threshold) = threshold {
                let breaching = threshold.comparison.holds(value, threshold.value);
                item["breaching"] = Value::from(breaching);
                if !breaching {
                    value_cell.push_str(" (cleared)");
                }
            }
        }
        if let Some(trend) = current.trend {
            item["trend"] = Value::from(trend.direction.as_str());
            trend_cell = trend.describe();
        }
    }

    Row {
        cells: vec![
            label("alertname").to_string(),
            label("severity").to_string(),
            service.to_string(),
            state_text(alert),
            starts_at.map(|time| format::time_ago(time, now)).unwrap_or_default(),
            value_cell,
            threshold_cell,
            trend_cell,
            summary.to_string(),
            runbook.to_string(),
        ],
        item,
    }
}
