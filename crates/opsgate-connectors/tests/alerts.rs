//! The alert tools against a real Prometheus evaluating a HighErrorRate rule over payments-api
//! (error rate 0.1 against a 0.05 threshold) and sending it to a real Alertmanager.

mod support;

use std::time::{Duration, Instant};

use anyhow::Result;
use opsgate_connectors::alertmanager::alertmanager_tools;
use opsgate_connectors::prometheus::{SignalCatalog, prometheus_tools};
use opsgate_core::{OutputBudget, ToolError};
use serde_json::json;
use support::{ERROR_RATE, assert_near, call, find};

#[tokio::test]
async fn a_firing_alert_shows_its_runbook_threshold_and_current_value() -> Result<()> {
    let (alertmanager, _payments, prometheus) = support::firing_high_error_rate().await?;

    let prometheus_clients = support::prometheus_clients("local", &prometheus.url(), 5);
    let tools = alertmanager_tools(
        support::alertmanager_clients("main", &alertmanager.url(), "local"),
        prometheus_clients.clone(),
    );
    let active = find(&tools, "get_active_alerts");

    let output = call(&active, "main", json!({})).await?;
    assert_eq!(output.rows.len(), 1, "{:?}", output.summary);
    assert_eq!(output.summary, ["1 alerts in alertmanager main: 1 active, 0 suppressed"]);
    let alert = &output.rows[0].item;
    assert_eq!(alert["alertname"], "HighErrorRate");
    assert_eq!(alert["severity"], "critical");
    assert_eq!(alert["service"], "payments-api");
    assert_eq!(alert["state"], "active");
    assert_eq!(alert["runbook_url"], "https://runbooks.example.com/payments-api/high-error-rate");
    assert_eq!(alert["summary"], "payments-api is failing more than 5% of requests");
    assert_eq!(alert["operator"], ">");
    assert_eq!(alert["threshold"], 0.05);
    assert_near(alert["value"].as_f64().unwrap_or(f64::NAN), ERROR_RATE, 0.005, "current value");
    assert_eq!(alert["breaching"], true);
    // No trend assertion: seconds after the first scrape, the 30-minute window at a 30 s step
    // holds one or two points, too few for a trend (the unit tests cover trend selection).
    let cells = &output.rows[0].cells;
    assert_eq!(cells[6], "> 0.05");
    let rendered = output.clone().render(0, OutputBudget::default());
    assert!(
        rendered.text.contains("rule HighErrorRate (prometheus local, for 0s): sum by (service) (rate(http_requests_total{code=~\"5..\"}[1m]))"),
        "{}",
        rendered.text
    );

    let critical = call(&active, "main", json!({"service": "payments-api", "severity": "CRITICAL"})).await?;
    assert_eq!(critical.rows.len(), 1);
    let warnings = call(&active, "main", json!({"severity": "warning"})).await?;
    assert_eq!(warnings.summary, ["no alerts matching severity=warning in alertmanager main"]);

    let history_tools = prometheus_tools(prometheus_clients, SignalCatalog::builtin());
    let history = call(&find(&history_tools, "get_alert_history"), "local", json!({"period": "5m"})).await?;
    assert_eq!(history.rows.len(), 1, "{:?}", history.summary);
    let fired = &history.rows[0].item;
    assert_eq!(fired["alertname"], "HighErrorRate");
    assert_eq!(fired["severity"], "critical");
    assert_eq!(fired["service"], "payments-api");
    assert_eq!(fired["firing_now"], true);
    assert_eq!(fired["episodes"], 1);
    assert!(fired["active_since"].is_string(), "{fired}");
    let other = call(&find(&history_tools, "get_alert_history"), "local", json!({"service": "checkout"})).await?;
    assert_eq!(other.summary, ["no alerts fired for checkout in the last 24h"]);
    Ok(())
}

#[tokio::test]
async fn alerts_without_prometheus_still_show_and_an_unreachable_alertmanager_is_unavailable() -> Result<()> {
    let port = opsgate_testkit::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let tools = alertmanager_tools(
        support::alertmanager_clients("main", &url, "local"),
        support::prometheus_clients("local", &url, 5),
    );
    let started = Instant::now();
    let result = call(&find(&tools, "get_active_alerts"), "main", json!({})).await;
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    match result {
        Err(ToolError::Unavailable(message)) => {
            assert_eq!(message, format!("alertmanager main at {url} is unreachable: connection refused"));
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    Ok(())
}
