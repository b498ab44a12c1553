//! What the integration tests share: a payments-api exporter whose counters grow at known rates,
//! clients for the backends the testkit starts, and a way to call a tool as the pipeline would.

#![allow(dead_code)] // Each test binary uses a different part of this module.

use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "alertmanager")]
use opsgate_connectors::alertmanager::{AlertmanagerClient, AlertmanagerClients, AlertmanagerConfig};
use opsgate_connectors::prometheus::{PrometheusClient, PrometheusClients, PrometheusConfig};
use opsgate_core::{CallContext, NoClient, OutputBudget, Plan, Principal, Target, Tool, ToolError, ToolOutput};
use opsgate_testkit::Exporter;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// Long enough for a loaded CI machine; scrapes and evaluations run every second.
pub const WAIT: Duration = Duration::from_secs(20);

/// An alert rule over payments-api's error rate (0.1, see `ERROR_RATE`) against a 0.05
/// threshold: it fires as soon as Prometheus has two scrapes.
pub const HIGH_ERROR_RATE_RULES: &str = r#"
groups:
  - name: payments
    rules:
      - alert: HighErrorRate
        expr: sum(rate(http_requests_total{code=~"5.."}[1m])) by (service) / sum(rate(http_requests_total[1m])) by (service) > 0.05
        for: 0s
        labels:
          severity: critical
        annotations:
          summary: "payments-api is failing more than 5% of requests"
          runbook_url: "https://runbooks.example.com/payments-api/high-error-rate"
"#;

/// Every tick, payments-api serves 90 requests with 200 and 10 with 500: the error rate is 0.1
/// whatever the timing.
pub const ERROR_RATE: f64 = 0.1;
/// Every request takes between 0.25 s and 0.5 s (bucket `le="0.5"` holds them all), so
/// `histogram_quantile(0.99, …)` interpolates linearly within that bucket:
/// 0.25 + (0.5 - 0.25) × 0.99.
pub const P99_SECONDS: f64 = 0.4975;
pub const TICK: Duration = Duration::from_millis(250);
/// Requests per tick over the tick: 100 / 0.25 s.
pub const REQUEST_RATE: f64 = 400.0;

/// The exposition after `tick` ticks.
pub fn payments_exposition(tick: u64) -> String {
    let (ok, errors, all) = (90 * tick, 10 * tick, 100 * tick);
    let sum = 0.3 * all as f64;
    format!(
        "# HELP http_requests_total Requests served.\n\
         # TYPE http_requests_total counter\n\
         http_requests_total{{service=\"payments-api\",code=\"200\"}} {ok}\n\
         http_requests_total{{service=\"payments-api\",code=\"500\"}} {errors}\n\
         # HELP http_request_duration_seconds Request latency.\n\
         # TYPE http_request_duration_seconds histogram\n\
         http_request_duration_seconds_bucket{{service=\"payments-api\",le=\"0.1\"}} 0\n\
         http_request_duration_seconds_bucket{{service=\"payments-api\",le=\"0.25\"}} 0\n\
         http_request_duration_seconds_bucket{{service=\"payments-api\",le=\"0.5\"}} {all}\n\
         http_request_duration_seconds_bucket{{service=\"payments-api\",le=\"1\"}} {all}\n\
         http_request_duration_seconds_bucket{{service=\"payments-api\",le=\"+Inf\"}} {all}\n\
         http_request_duration_seconds_sum{{service=\"payments-api\"}} {sum}\n\
         http_request_duration_seconds_count{{service=\"payments-api\"}} {all}\n"
    )
}

/// The payments-api exporter and the task that advances its counters every `TICK`. Dropping it
/// stops both.
pub struct Payments {
    pub exporter: Arc<Exporter>,
    ticker: JoinHandle<()>,
}

/// Payments scraped by a real Prometheus whose HighErrorRate rule fires into a real Alertmanager,
/// returned once the alert has reached Alertmanager.
#[cfg(feature = "alertmanager")]
pub async fn firing_high_error_rate()
-> anyhow::Result<(opsgate_testkit::Alertmanager, Payments, opsgate_testkit::Prometheus)> {
    use opsgate_testkit::{Alertmanager, AlertmanagerOptions, Prometheus, PrometheusOptions, ScrapeTarget};
    let alertmanager = Alertmanager::start(AlertmanagerOptions::default()).await?;
    let payments = Payments::start().await?;
    let prometheus = Prometheus::start(
        PrometheusOptions::default()
            .scrape(ScrapeTarget::new("payments", payments.exporter.target()))
            .rules(HIGH_ERROR_RATE_RULES)
            .alertmanager(alertmanager.url()),
    )
    .await?;
    alertmanager.wait_for_alerts("HighErrorRate", WAIT).await?;
    Ok((alertmanager, payments, prometheus))
}

impl Payments {
    pub async fn start() -> anyhow::Result<Payments> {
        let exporter = Arc::new(Exporter::start(payments_exposition(0)).await?);
        let ticking = Arc::clone(&exporter);
        let ticker = tokio::spawn(async move {
            let mut interval = tokio::time::interval(TICK);
            let mut tick = 0;
            loop {
                interval.tick().await;
                tick += 1;
                ticking.set(payments_exposition(tick));
            }
        });
        Ok(Payments { exporter, ticker })
    }
}

impl Drop for Payments {
    fn drop(&mut self) {
        self.ticker.abort();
    }
}

pub fn prometheus_clients(name: &str, url: &str, timeout_seconds: u64) -> Arc<PrometheusClients> {
    let config: PrometheusConfig =
        serde_json::from_value(json!({"url": url, "environment": "test", "timeout_seconds": timeout_seconds}))
            .expect("prometheus config parses");
    let client = PrometheusClient::new(name, &config, None).expect("prometheus client builds");
    Arc::new(PrometheusClients::new(vec![client]))
}

#[cfg(feature = "alertmanager")]
pub fn alertmanager_clients(name: &str, url: &str, prometheus: &str) -> Arc<AlertmanagerClients> {
    let config: AlertmanagerConfig =
        serde_json::from_value(json!({"url": url, "environment": "test", "prometheus": prometheus}))
            .expect("alertmanager config parses");
    let client = AlertmanagerClient::new(name, &config, None).expect("alertmanager client builds");
    Arc::new(AlertmanagerClients::new(vec![client]))
}

pub fn find(tools: &[Arc<dyn Tool>], name: &str) -> Arc<dyn Tool> {
    tools.iter().find(|tool| tool.spec().name == name).cloned().unwrap_or_else(|| panic!("no tool {name}"))
}

/// The principal the tests call for: a local user with the operator role.
pub fn principal() -> Principal {
    Principal::local_user("alice", vec!["operator".to_string()])
}

/// The context the pipeline gives a tool: the target resolved, the default budget, the principal.
fn context(tool: &Arc<dyn Tool>, target: &str) -> CallContext {
    let kind = tool.spec().target_kind.clone().unwrap_or_default();
    let target = Target { name: target.to_string(), kind, environment: "test".to_string(), protected: false };
    let mut context = CallContext::new(Some(target), OutputBudget::default(), Arc::new(NoClient));
    context.principal = principal();
    context
}

/// Calls `tool` as the pipeline does, once policy has let the call through.
pub async fn call(tool: &Arc<dyn Tool>, target: &str, arguments: Value) -> Result<ToolOutput, ToolError> {
    let Value::Object(arguments) = arguments else { panic!("arguments must be an object") };
    tool.call(context(tool, target), arguments).await
}

/// Asks `tool` for its plan, as the pipeline does before policy and approval.
pub async fn plan(tool: &Arc<dyn Tool>, target: &str, arguments: Value) -> Result<Option<Plan>, ToolError> {
    let Value::Object(arguments) = arguments else { panic!("arguments must be an object") };
    tool.plan(&context(tool, target), &arguments).await
}

/// A number field of a tool's output.
pub fn number(output: &ToolOutput, field: &str) -> f64 {
    output
        .fields
        .get(field)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("no number {field} in {:?}", output.fields))
}

pub fn assert_near(actual: f64, expected: f64, tolerance: f64, what: &str) {
    assert!((actual - expected).abs() <= tolerance, "{what}: {actual} is not within {tolerance} of {expected}");
}
