//! Starts every backend the harness offers and checks it does the one thing tests rely on:
//! Prometheus scrapes the exporter, alerts reach Alertmanager, PostgreSQL answers queries.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use opsgate_testkit::{
    Alertmanager, AlertmanagerOptions, Exporter, Postgres, Prometheus, PrometheusOptions, ScrapeTarget,
};
use serde_json::Value;

/// Long enough for a loaded CI machine; scrapes and evaluations run every second.
const WAIT: Duration = Duration::from_secs(15);

const PAYMENTS_METRICS: &str = "\
# HELP http_requests_total Requests served.
# TYPE http_requests_total counter
http_requests_total{service=\"payments-api\",code=\"200\"} 100
http_requests_total{service=\"payments-api\",code=\"500\"} 7
";

/// The sample value of the series with `code` in an instant-vector result.
fn value_for_code(result: &[Value], code: &str) -> Option<String> {
    result
        .iter()
        .find(|series| series["metric"]["code"] == code)
        .and_then(|series| series["value"][1].as_str())
        .map(str::to_owned)
}

#[tokio::test]
async fn prometheus_scrapes_the_exporter_and_sees_updates() -> Result<()> {
    let exporter = Exporter::start(PAYMENTS_METRICS).await?;
    let prometheus = Prometheus::start(
        PrometheusOptions::default().scrape(ScrapeTarget::new("payments", exporter.target()).label("env", "prod")),
    )
    .await?;

    let result = prometheus.wait_for_query("http_requests_total", |result| result.len() == 2, WAIT).await?;
    assert_eq!(value_for_code(&result, "200").as_deref(), Some("100"));
    assert_eq!(value_for_code(&result, "500").as_deref(), Some("7"));
    let series = &result[0]["metric"];
    assert_eq!(series["service"], "payments-api");
    assert_eq!(series["job"], "payments");
    assert_eq!(series["env"], "prod");
    assert_eq!(series["instance"], exporter.target().as_str());

    exporter.set(PAYMENTS_METRICS.replace("} 100", "} 150"));
    prometheus
        .wait_for_query(
            "http_requests_total{code=\"200\"}",
            |result| value_for_code(result, "200").as_deref() == Some("150"),
            WAIT,
        )
        .await?;
    Ok(())
}

#[tokio::test]
async fn prometheus_alert_reaches_alertmanager() -> Result<()> {
    let alertmanager = Alertmanager::start(AlertmanagerOptions::default()).await?;
    let exporter = Exporter::start(PAYMENTS_METRICS).await?;
    let rules = r#"
groups:
  - name: payments
    rules:
      - alert: PaymentsApiErrors
        expr: http_requests_total{service="payments-api",code="500"} > 0
        for: 0s
        labels:
          severity: critical
        annotations:
          summary: "payments-api is serving errors"
          runbook_url: "https://runbooks.example.com/payments-api-errors"
"#;
    let _prometheus = Prometheus::start(
        PrometheusOptions::default()
            .scrape(ScrapeTarget::new("payments", exporter.target()))
            .rules(rules)
            .alertmanager(alertmanager.url()),
    )
    .await?;

    let alerts = alertmanager.wait_for_alerts("PaymentsApiErrors", WAIT).await?;
    let alert = alerts.first().context("no alert")?;
    assert_eq!(alert["labels"]["severity"], "critical");
    assert_eq!(alert["labels"]["service"], "payments-api");
    assert_eq!(alert["annotations"]["summary"], "payments-api is serving errors");
    assert_eq!(alert["annotations"]["runbook_url"], "https://runbooks.example.com/payments-api-errors");
    assert_eq!(alert["status"]["state"], "active");
    Ok(())
}

#[tokio::test]
async fn postgres_gives_each_test_a_database() -> Result<()> {
    let postgres = Postgres::shared().await?;
    let url = postgres.create_database("backends_test").await?;
    ensure!(url.ends_with("/backends_test"), "unexpected url {url}");

    let pool = sqlx::PgPool::connect(&url).await?;
    let one: i32 = sqlx::query_scalar("select 1").fetch_one(&pool).await?;
    assert_eq!(one, 1);
    let database: String = sqlx::query_scalar("select current_database()").fetch_one(&pool).await?;
    assert_eq!(database, "backends_test");
    pool.close().await;

    // The shared cluster is the same one on every call, and hands out distinct databases.
    let again = Postgres::shared().await?;
    assert_eq!(again.port(), postgres.port());
    let first = again.fresh_database().await?;
    let second = again.fresh_database().await?;
    assert_ne!(first, second);
    assert_eq!(again.psql("postgres", "select 1").await?.trim(), "1");
    Ok(())
}

#[tokio::test]
async fn invalid_database_name_is_rejected() -> Result<()> {
    let postgres = Postgres::shared().await?;
    let error = postgres
        .create_database("x\"; drop database postgres; --")
        .await
        .expect_err("name with quotes must be rejected");
    assert!(format!("{error}").contains("invalid database name"));
    Ok(())
}
