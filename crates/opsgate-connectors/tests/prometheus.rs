//! The Prometheus tools against a real Prometheus scraping a payments-api exporter whose error
//! rate (0.1) and p99 latency (0.4975 s) are known by construction; and against Prometheus
//! instances that are down or too slow.

mod support;

use std::time::{Duration, Instant};

use anyhow::Result;
use opsgate_connectors::prometheus::{SignalCatalog, current_value, prometheus_tools};
use opsgate_core::{OutputBudget, ToolError};
use opsgate_testkit::{Prometheus, PrometheusOptions, ScrapeTarget};
use serde_json::json;
use support::{ERROR_RATE, P99_SECONDS, Payments, REQUEST_RATE, WAIT, assert_near, call, find, number};

/// Prometheus scraping payments-api every second, once two scrapes have landed (a rate needs
/// two samples).
async fn payments_prometheus() -> Result<(Payments, Prometheus)> {
    let payments = Payments::start().await?;
    let prometheus = Prometheus::start(
        PrometheusOptions::default().scrape(ScrapeTarget::new("payments", payments.exporter.target())),
    )
    .await?;
    prometheus.wait_for_query("sum(rate(http_requests_total[1m])) > 0", |result| !result.is_empty(), WAIT).await?;
    Ok((payments, prometheus))
}

#[tokio::test]
async fn service_metrics_match_the_known_error_rate_latency_and_request_rate() -> Result<()> {
    let (_payments, prometheus) = payments_prometheus().await?;
    let tools = prometheus_tools(support::prometheus_clients("local", &prometheus.url(), 5), SignalCatalog::builtin());
    let tool = find(&tools, "get_service_metrics");

    let errors =
        call(&tool, "local", json!({"service": "payments-api", "metric": "error_rate", "period": "5m"})).await?;
    assert_near(number(&errors, "current"), ERROR_RATE, 0.005, "error_rate");
    assert_near(number(&errors, "max"), ERROR_RATE, 0.005, "max error_rate");
    assert_eq!(errors.fields["convention"], "prometheus-client");
    assert_eq!(errors.fields["service_label"], "service");
    assert_eq!(errors.fields["unit"], "ratio");
    let promql = errors.fields["promql"].as_str().unwrap_or_default();
    assert!(promql.contains("http_requests_total{service=\"payments-api\",code=~\"5..\"}[1m]"), "{promql}");
    assert!(!errors.rows.is_empty() && errors.rows.len() <= 60, "{} points", errors.rows.len());
    assert!(
        errors.summary[0].starts_with("payments-api error_rate (share of 5xx responses, 0..1) over 5m: now 10%"),
        "{:?}",
        errors.summary
    );
    let rendered = errors.clone().render(0, OutputBudget::default());
    assert!(!rendered.truncated, "a series fits the default budget");
    assert!(
        rendered.text.contains("promql (prometheus-client, label service, step 5s, window 1m): "),
        "{}",
        rendered.text
    );

    let p99 = call(&tool, "local", json!({"service": "payments-api", "metric": "latency_p99", "period": "5m"})).await?;
    assert_near(number(&p99, "current"), P99_SECONDS, 0.001, "latency_p99");
    assert_eq!(p99.fields["unit"], "seconds");

    let rate =
        call(&tool, "local", json!({"service": "payments-api", "metric": "request_rate", "period": "5m"})).await?;
    // rate() divides by its whole window (1m) while the series is younger than that, so seconds
    // into the test the rate is a fraction of the 400/s the exporter serves; ratios (error rate,
    // quantiles) cancel this out, a bare rate does not. Ticks are timer-driven, hence the margin.
    let current_rate = number(&rate, "current");
    assert!(current_rate > 0.0 && current_rate <= REQUEST_RATE * 1.2, "request_rate {current_rate}");
    let max_rate = call(
        &tool,
        "local",
        json!({"service": "payments-api", "metric": "request_rate", "period": "5m", "aggregation": "max"}),
    )
    .await?;
    assert!(max_rate.fields["promql"].as_str().is_some_and(|promql| promql.starts_with("max(")));
    Ok(())
}

/// The catalog's health checks read a signal's value now through `current_value`: the same
/// probe and PromQL as `get_service_metrics`, as an instant query.
#[tokio::test]
async fn current_value_reads_the_known_error_rate_and_p99_and_none_for_an_unknown_service() -> Result<()> {
    let (_payments, prometheus) = payments_prometheus().await?;
    let clients = support::prometheus_clients("local", &prometheus.url(), 5);
    let client = clients.get("local").cloned().ok_or_else(|| anyhow::anyhow!("no client"))?;
    let catalog = SignalCatalog::builtin();
    let errors = current_value(&client, &catalog, "error_rate", "payments-api").await?;
    let errors = errors.ok_or_else(|| anyhow::anyhow!("no error_rate"))?;
    assert_near(errors.value, ERROR_RATE, 0.005, "error_rate now");
    assert_eq!(errors.convention, "prometheus-client");
    assert!(errors.promql.contains("[5m]"), "{}", errors.promql);
    let p99 = current_value(&client, &catalog, "latency_p99", "payments-api").await?;
    assert_near(p99.map(|p99| p99.value).unwrap_or_default(), P99_SECONDS, 0.001, "latency_p99 now");
    assert_eq!(current_value(&client, &catalog, "error_rate", "checkout").await?, None);
    let unknown = current_value(&client, &catalog, "no_such_signal", "payments-api").await;
    assert!(matches!(unknown, Err(ToolError::Internal(message)) if message.contains("no_such_signal")));
    Ok(())
}

#[tokio::test]
async fn service_metrics_fall_back_to_the_job_label_and_say_what_was_tried() -> Result<()> {
    let (_payments, prometheus) = payments_prometheus().await?;
    let tools = prometheus_tools(support::prometheus_clients("local", &prometheus.url(), 5), SignalCatalog::builtin());
    let tool = find(&tools, "get_service_metrics");

    // No series has service="payments"; the scrape job is called that.
    let by_job = call(&tool, "local", json!({"service": "payments", "metric": "error_rate", "period": "5m"})).await?;
    assert_eq!(by_job.fields["service_label"], "job");
    assert_near(number(&by_job, "current"), ERROR_RATE, 0.005, "error_rate by job");

    let missing = call(&tool, "local", json!({"service": "checkout", "metric": "error_rate", "period": "5m"})).await?;
    assert_eq!(missing.fields["found"], false);
    assert!(missing.rows.is_empty());
    let message = &missing.summary[0];
    assert!(
        message.starts_with("no data for checkout error_rate: no series of http_requests_total, http_server_request_duration_seconds_count, http_server_duration_milliseconds_count has a label service, job, app, service_name equal to \"checkout\""),
        "{message}"
    );
    assert_eq!(missing.fields["tried"], json!(["prometheus-client", "opentelemetry", "opentelemetry-legacy"]));

    // The series exist but the convention yields nothing: memory is not exported at all, cpu
    // neither; saturation likewise. All three say which metrics they looked for.
    let memory = call(&tool, "local", json!({"service": "payments-api", "metric": "memory"})).await?;
    assert!(
        memory.summary[0].contains("container_memory_working_set_bytes, process_resident_memory_bytes"),
        "{:?}",
        memory.summary
    );
    Ok(())
}

#[tokio::test]
async fn query_and_list_metrics_and_bad_promql() -> Result<()> {
    let (_payments, prometheus) = payments_prometheus().await?;
    let tools = prometheus_tools(support::prometheus_clients("local", &prometheus.url(), 5), SignalCatalog::builtin());
    let query = find(&tools, "query_metrics");

    let instant = call(&query, "local", json!({"promql": "sum by (code) (http_requests_total)"})).await?;
    assert_eq!(instant.fields["result_type"], "vector");
    assert_eq!(instant.rows.len(), 2);
    let series: Vec<&str> = instant.rows.iter().map(|row| row.cells[0].as_str()).collect();
    assert!(series.contains(&"{code=\"500\"}"), "{series:?}");

    let range = call(&query, "local", json!({"promql": "rate(http_requests_total[1m])", "period": "5m"})).await?;
    assert_eq!(range.fields["result_type"], "matrix");
    assert_eq!(range.columns, ["series", "last", "min", "avg", "max", "trend"]);
    assert_eq!(range.rows.len(), 2);
    assert_eq!(range.fields["common_labels"]["service"], "payments-api");
    assert!(range.footer.iter().any(|line| line == "promql (range 5m, step 5s): rate(http_requests_total[1m])"));

    let scalar = call(
        &query,
        "local",
        json!({"promql": "scalar(sum(http_requests_total{code=\"500\"})) / scalar(sum(http_requests_total))"}),
    )
    .await?;
    assert_eq!(scalar.fields["result_type"], "scalar");

    match call(&query, "local", json!({"promql": "sum(rate(http_requests_total[1m])"})).await {
        Err(ToolError::Backend(message)) => {
            assert!(message.starts_with("prometheus local rejected the query (bad_data): "), "{message}");
            assert!(message.contains("parse error"), "{message}");
            assert!(message.ends_with("fix the PromQL at the position shown (line:column)"), "{message}");
        }
        other => panic!("expected a backend error, got {other:?}"),
    }

    let list = find(&tools, "list_metrics");
    let listed = call(&list, "local", json!({"match": "HTTP_request"})).await?;
    let names: Vec<&str> = listed.rows.iter().map(|row| row.cells[0].as_str()).collect();
    assert_eq!(
        names,
        [
            "http_request_duration_seconds_bucket",
            "http_request_duration_seconds_count",
            "http_request_duration_seconds_sum",
            "http_requests_total"
        ]
    );
    let requests = listed.rows.iter().find(|row| row.cells[0] == "http_requests_total").map(|row| &row.item);
    assert_eq!(requests, Some(&json!({"name": "http_requests_total", "type": "counter", "help": "Requests served."})));
    let by_selector =
        call(&list, "local", json!({"match": "{job=\"payments\",__name__=~\"http_requests_.*\"}"})).await?;
    assert_eq!(by_selector.rows.len(), 1);
    let everything = call(&list, "local", json!({})).await?;
    assert!(everything.rows.len() > 4, "also Prometheus' own scrape metrics (up, scrape_*)");
    Ok(())
}

#[tokio::test]
async fn an_unreachable_prometheus_is_unavailable_promptly() -> Result<()> {
    // Nothing listens on a port that was free a moment ago.
    let port = opsgate_testkit::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let tools = prometheus_tools(support::prometheus_clients("prod-eu", &url, 5), SignalCatalog::builtin());
    let started = Instant::now();
    let result = call(&find(&tools, "query_metrics"), "prod-eu", json!({"promql": "up"})).await;
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    match result {
        Err(ToolError::Unavailable(message)) => {
            assert_eq!(message, format!("prometheus prod-eu at {url} is unreachable: connection refused"));
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    let result = call(&find(&tools, "get_service_metrics"), "prod-eu", json!({"service": "x", "metric": "cpu"})).await;
    assert!(matches!(result, Err(ToolError::Unavailable(_))), "{result:?}");
    Ok(())
}

#[tokio::test]
async fn a_slow_prometheus_is_cut_off_by_the_timeout() -> Result<()> {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let tools = prometheus_tools(support::prometheus_clients("slow", &url, 1), SignalCatalog::builtin());
    let started = Instant::now();
    let result = call(&find(&tools, "query_metrics"), "slow", json!({"promql": "up"})).await;
    let elapsed = started.elapsed();
    hold.abort();
    assert!(elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(3), "took {elapsed:?}");
    match result {
        Err(ToolError::Unavailable(message)) => {
            assert!(message.starts_with(&format!("prometheus slow at {url} did not answer within 1s")), "{message}");
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    Ok(())
}
