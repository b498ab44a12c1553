//! Unit tests of the Alertmanager connector's pure logic: parsing alerts in the real API v2
//! format, matching alerts to their rules, choosing the current value, state text,
//! configuration, and the tool spec.

use std::sync::Arc;

use serde_json::{Value, json};

use super::client::GettableAlert;
use super::tools::{alert_value, match_rule};
use super::{AlertmanagerClient, AlertmanagerClients, AlertmanagerConfig, alertmanager_tools, check_prometheus_links};
use crate::prometheus::promql::Labels;
use crate::prometheus::series::Direction;
use crate::prometheus::{
    MatrixSeries, PrometheusClient, PrometheusClients, PrometheusConfig, RawSample, Rule, RulesData,
};

/// `GET /api/v2/alerts` from Alertmanager 0.25: one active alert, one silenced.
const ALERTS: &str = r#"[
  {"annotations":{"runbook_url":"https://runbooks.example.com/payments-api-errors","summary":"payments-api is serving errors"},
   "endsAt":"2024-05-01T12:09:00.000Z","fingerprint":"5f1b6f7a2c1e0d3a","receivers":[{"name":"default"}],
   "startsAt":"2024-05-01T12:00:00.500Z","status":{"inhibitedBy":[],"silencedBy":[],"state":"active"},
   "updatedAt":"2024-05-01T12:05:00.000Z","generatorURL":"http://prometheus:9090/graph?g0.expr=...",
   "labels":{"alertname":"HighErrorRate","service":"payments-api","severity":"critical"}},
  {"annotations":{"summary":"disk almost full"},"endsAt":"2024-05-01T12:09:00.000Z","fingerprint":"0a0b0c0d0e0f1011",
   "receivers":[{"name":"default"}],"startsAt":"2024-05-01T11:00:00.000Z",
   "status":{"inhibitedBy":[],"silencedBy":["8c3d2a1e-5b6f-4c7d-9e8f-0a1b2c3d4e5f"],"state":"suppressed"},
   "updatedAt":"2024-05-01T12:05:00.000Z","labels":{"alertname":"DiskFull","instance":"db-1:9100","severity":"warning"}}
]"#;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect()
}

fn rules() -> RulesData {
    serde_json::from_value(json!({"groups": [{"name": "payments", "file": "rules.yml", "interval": 1, "rules": [
        {"type": "alerting", "name": "HighErrorRate", "duration": 0,
         "query": "sum by (service) (rate(http_requests_total{code=~\"5..\"}[1m])) / sum by (service) (rate(http_requests_total[1m])) > 0.05",
         "labels": {"severity": "critical"},
         "alerts": [{"labels": {"alertname": "HighErrorRate", "service": "payments-api", "severity": "critical"},
                     "state": "firing", "activeAt": "2024-05-01T12:00:00.5Z", "value": "1e-01"}]},
        {"type": "alerting", "name": "HighErrorRate", "duration": 300, "query": "x > 0.01", "labels": {"severity": "warning"}},
        {"type": "alerting", "name": "DiskFull", "duration": 60, "query": "disk_free < 0.1"}
    ]}]}))
    .expect("rules parse")
}

#[test]
fn parses_alerts_in_the_api_v2_format() {
    let alerts: Vec<GettableAlert> = serde_json::from_str(ALERTS).expect("alerts parse");
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts[0].labels["alertname"], "HighErrorRate");
    assert_eq!(alerts[0].annotations["runbook_url"], "https://runbooks.example.com/payments-api-errors");
    assert_eq!(alerts[0].status.state, "active");
    assert_eq!(alerts[0].starts_at.as_deref(), Some("2024-05-01T12:00:00.500Z"));
    assert_eq!(alerts[1].status.silenced_by, ["8c3d2a1e-5b6f-4c7d-9e8f-0a1b2c3d4e5f"]);
    assert!(alerts[1].status.muted_by.is_empty(), "mutedBy is optional");
}

#[test]
fn alerts_match_their_rule_by_name_and_labels() {
    let data = rules();
    let all: Vec<&Rule> = data.groups.iter().flat_map(|group| group.rules.iter()).collect();
    let critical = labels(&[("alertname", "HighErrorRate"), ("service", "payments-api"), ("severity", "critical")]);
    let warning = labels(&[("alertname", "HighErrorRate"), ("severity", "warning")]);
    assert_eq!(match_rule(&all, &critical).map(|rule| rule.duration), Some(0.0));
    assert_eq!(match_rule(&all, &warning).map(|rule| rule.duration), Some(300.0));
    // Two rules share the name and neither fits: ambiguous, so none.
    assert_eq!(match_rule(&all, &labels(&[("alertname", "HighErrorRate"), ("severity", "info")])), None);
    // One rule of that name: taken even when its labels were relabelled away.
    assert!(match_rule(&all, &labels(&[("alertname", "DiskFull")])).is_some());
    assert_eq!(match_rule(&all, &labels(&[("alertname", "Unknown")])), None);
}

fn series(metric: &[(&str, &str)], values: &[f64]) -> MatrixSeries {
    MatrixSeries {
        metric: labels(metric),
        values: values
            .iter()
            .enumerate()
            .map(|(index, value)| RawSample(index as f64 * 30.0, value.to_string()))
            .collect(),
    }
}

#[test]
fn the_current_value_comes_from_the_series_the_alert_carries() {
    let data = rules();
    let rule = &data.groups[0].rules[0];
    let alert = labels(&[("alertname", "HighErrorRate"), ("service", "payments-api"), ("severity", "critical")]);
    let measured = vec![
        series(&[("service", "checkout")], &[0.5, 0.5, 0.5]),
        series(&[("service", "payments-api")], &[0.06, 0.08, 0.1, 0.1, 0.12, 0.12]),
    ];
    let value = alert_value(rule, Some(&measured), &alert);
    assert_eq!(value.value, Some(0.12));
    assert_eq!(value.trend.map(|trend| trend.direction), Some(Direction::Rising));

    // A single series without matching labels (the measured side aggregated them away) is the
    // overall value.
    let overall = vec![series(&[], &[0.1, 0.1])];
    assert_eq!(alert_value(rule, Some(&overall), &alert).value, Some(0.1));

    // Without the measured side, the value Prometheus recorded on the rule's alert.
    assert_eq!(alert_value(rule, None, &alert).value, Some(0.1));
    let other = labels(&[("alertname", "HighErrorRate"), ("service", "other"), ("severity", "critical")]);
    assert_eq!(alert_value(rule, Some(&measured[..1]), &other).value, None, "checkout's value is not other's");
}

fn alertmanager_config(value: Value) -> AlertmanagerConfig {
    serde_json::from_value(value).expect("config parses")
}

#[test]
fn config_has_defaults_and_refuses_unknown_keys() {
    let config = alertmanager_config(json!({"url": "http://alertmanager:9093"}));
    assert_eq!(
        (config.environment.as_str(), config.timeout_seconds, config.prometheus.as_deref()),
        ("default", 10, None)
    );
    let unknown =
        serde_json::from_value::<AlertmanagerConfig>(json!({"url": "http://a", "prometheus_url": "http://p"}));
    assert!(unknown.is_err());
    let mut with_secret = alertmanager_config(json!({"url": "http://a", "headers": {"X-Token": "abc123"}}));
    with_secret.bearer_token = Some("inline".to_string());
    let shown = format!("{with_secret:?}");
    assert!(!shown.contains("abc123") && !shown.contains("inline"), "{shown}");
}

fn prometheus(name: &str) -> PrometheusClient {
    let config: PrometheusConfig = serde_json::from_value(json!({"url": "http://127.0.0.1:9"})).expect("config parses");
    PrometheusClient::new(name, &config, None).expect("client builds")
}

#[test]
fn prometheus_links_are_checked_at_start_up() {
    let linked = alertmanager_config(json!({"url": "http://127.0.0.1:9", "prometheus": "prod-eu"}));
    let alertmanagers =
        AlertmanagerClients::new(vec![AlertmanagerClient::new("main", &linked, None).expect("client builds")]);
    assert!(check_prometheus_links(&alertmanagers, &PrometheusClients::new(vec![prometheus("prod-eu")])).is_ok());
    let error = check_prometheus_links(&alertmanagers, &PrometheusClients::new(vec![prometheus("staging")]))
        .expect_err("prod-eu is not configured");
    assert_eq!(
        error.to_string(),
        "alertmanager main: prometheus = \"prod-eu\" is not a configured prometheus instance (configured: staging)"
    );
}

#[test]
fn the_tool_spec_is_valid_and_short() {
    let config = alertmanager_config(json!({"url": "http://127.0.0.1:9"}));
    let clients =
        AlertmanagerClients::new(vec![AlertmanagerClient::new("main", &config, None).expect("client builds")]);
    let tools = alertmanager_tools(Arc::new(clients), Arc::new(PrometheusClients::default()));
    let spec = tools[0].spec();
    assert_eq!(spec.name, "get_active_alerts");
    assert_eq!(spec.target_kind.as_deref(), Some("alertmanager"));
    assert!(spec.description.len() <= 200, "{} bytes", spec.description.len());
    assert_eq!(spec.input_schema["additionalProperties"], false);
    assert_eq!(spec.input_schema["properties"].as_object().map(|properties| properties.len()), Some(2));
}
