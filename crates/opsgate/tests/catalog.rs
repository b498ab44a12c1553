//! The service catalog end to end: `doctor` on a catalog with a broken file, and
//! `get_service_dependencies` with live health from a real Prometheus scraping an exporter whose
//! error rate is known, the catalog's resources over stdio, and a reload after an edit.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ReadResourceRequestParams};
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_opsgate");

mod support;
use support::{opsgate, stderr, stdout};

/// `testdata/catalog`, copied below `dir` as `catalog/`, so a test can break or edit it.
fn copy_catalog(dir: &Path) -> Result<PathBuf> {
    fn copy(from: &Path, to: &Path) -> Result<()> {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            let target = to.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                copy(&entry.path(), &target)?;
            } else {
                std::fs::copy(entry.path(), target)?;
            }
        }
        Ok(())
    }
    let catalog = dir.join("catalog");
    copy(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/catalog"), &catalog)?;
    Ok(catalog)
}

/// A config whose `[catalog]` paths are relative to it, plus `extra` TOML.
fn write_config(dir: &Path, extra: &str) -> Result<PathBuf> {
    let path = dir.join("opsgate.toml");
    std::fs::write(&path, format!("[catalog]\npaths = [\"catalog\"]\nrunbooks = [\"catalog/runbooks\"]\n{extra}"))?;
    Ok(path)
}

#[test]
fn doctor_counts_the_catalog_and_names_the_file_and_line_of_each_problem() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let catalog = copy_catalog(dir.path())?;
    let config = write_config(dir.path(), "")?;
    let config = config.to_str().unwrap_or_default();

    let doctor = opsgate(dir.path(), &["--config", config, "doctor"])?;
    let out = stdout(&doctor);
    assert!(doctor.status.success(), "warnings alone do not fail doctor:\n{out}{}", stderr(&doctor));
    assert!(out.contains("catalog   ok    4 components, 1 resource, 2 systems, 2 runbooks\n"), "{out}");
    let checkout = catalog.join("checkout/catalog-info.yaml");
    assert!(
        out.contains(&format!(
            "catalog   warn  {}:1: component:default/checkout depends on resource:default/orders-db, which is not in \
             the catalog\n",
            checkout.display()
        )),
        "{out}"
    );
    assert!(
        out.contains("opsgate.dev/prometheus-target \"main\" is not a configured prometheus instance"),
        "the annotation names an instance this config lacks:\n{out}"
    );

    // A file that does not parse: named with its line, the rest still counted, doctor fails.
    let broken = catalog.join("broken.yaml");
    std::fs::write(
        &broken,
        "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: [oops\nspec: {}\n",
    )?;
    let doctor = opsgate(dir.path(), &["--config", config, "doctor"])?;
    let out = stdout(&doctor);
    assert_eq!(doctor.status.code(), Some(1), "{out}");
    assert!(out.contains("catalog   FAIL  4 components, 1 resource, 2 systems, 2 runbooks\n"), "{out}");
    let line = out.lines().find(|line| line.contains("broken.yaml")).unwrap_or_default();
    assert!(line.starts_with(&format!("catalog   FAIL  {}:5: ", broken.display())), "{out}");
    Ok(())
}

/// Every tick, payments-api serves 90 requests with 200 and 10 with 500 (an error rate of 0.1),
/// each between 0.25 s and 0.5 s (p99 0.4975 s, interpolated in the `le="0.5"` bucket).
fn payments_exposition(tick: u64) -> String {
    let (ok, errors, all) = (90 * tick, 10 * tick, 100 * tick);
    format!(
        "http_requests_total{{service=\"payments-api\",code=\"200\"}} {ok}\n\
         http_requests_total{{service=\"payments-api\",code=\"500\"}} {errors}\n\
         http_request_duration_seconds_bucket{{service=\"payments-api\",le=\"0.25\"}} 0\n\
         http_request_duration_seconds_bucket{{service=\"payments-api\",le=\"0.5\"}} {all}\n\
         http_request_duration_seconds_bucket{{service=\"payments-api\",le=\"+Inf\"}} {all}\n\
         http_request_duration_seconds_count{{service=\"payments-api\"}} {all}\n"
    )
}

/// A real Prometheus scraping the payments-api exporter, once it has a rate to show.
async fn payments_prometheus()
-> Result<(Arc<opsgate_testkit::Exporter>, tokio::task::JoinHandle<()>, opsgate_testkit::Prometheus)> {
    let exporter = Arc::new(opsgate_testkit::Exporter::start(payments_exposition(0)).await?);
    let ticking = exporter.clone();
    let ticker = tokio::spawn(async move {
        for tick in 1.. {
            ticking.set(payments_exposition(tick));
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    let prometheus = opsgate_testkit::Prometheus::start(
        opsgate_testkit::PrometheusOptions::default()
            .scrape(opsgate_testkit::ScrapeTarget::new("payments", exporter.target())),
    )
    .await?;
    prometheus
        .wait_for_query("sum(rate(http_requests_total[1m])) > 0", |result| !result.is_empty(), Duration::from_secs(30))
        .await?;
    Ok((exporter, ticker, prometheus))
}

fn near(value: &Value, expected: f64, tolerance: f64) -> bool {
    value.as_f64().is_some_and(|value| (value - expected).abs() <= tolerance)
}

/// Must-show: checkout depends on payments (metrics in a real Prometheus, error rate 10%) and
/// payments on payments-db (no metrics target). `get_service_dependencies(checkout, depth 2)`
/// shows payments degraded with its real error rate and p99, payments-db unknown, and a Mermaid
/// diagram with both edges; `what_changed` names the dependencies it covered.
#[tokio::test]
async fn dependencies_show_live_health_from_a_real_prometheus_and_a_mermaid_diagram() -> Result<()> {
    let (_exporter, ticker, prometheus) = payments_prometheus().await?;
    let dir = tempfile::tempdir()?;
    copy_catalog(dir.path())?;
    // A generous health timeout: a loaded CI machine must not turn payments "unknown".
    let config = write_config(
        dir.path(),
        &format!("health_timeout_seconds = 20\n[connectors.prometheus.main]\nurl = \"{}\"\n", prometheus.url()),
    )?;
    let config = config.to_str().unwrap_or_default();
    let call = |args: &[&str]| {
        let mut full = vec!["--config", config, "call", "get_service_dependencies"];
        full.extend_from_slice(args);
        opsgate(dir.path(), &full)
    };

    let output = call(&["--arg", "service=checkout", "--arg", "depth:=2", "--json"])?;
    assert!(output.status.success(), "{}{}", stdout(&output), stderr(&output));
    let answer: Value = serde_json::from_str(&stdout(&output))?;
    let items = answer["items"].as_array().cloned().unwrap_or_default();
    let row = |service: &str| items.iter().find(|item| item["service"] == service).cloned().unwrap_or(Value::Null);

    let payments = row("payments");
    assert_eq!(payments["direction"], "upstream");
    assert_eq!(payments["distance"], 1);
    assert_eq!(payments["health"], "degraded", "{payments}");
    assert!(near(&payments["error_rate"], 0.1, 0.005), "{payments}");
    assert!(near(&payments["latency_p99"], 0.4975, 0.001), "{payments}");
    assert_eq!(payments["note"], "error rate 10% above 5%");
    let database = row("payments-db");
    assert_eq!((database["distance"].as_u64(), database["health"].as_str()), (Some(2), Some("unknown")), "{database}");
    assert_eq!(database["note"], "no opsgate.dev/prometheus-target annotation");
    // checkout has a target, but no series carries service="checkout".
    assert_eq!(row("checkout")["health"], "unknown");
    assert_eq!(row("checkout")["note"], "no current data for checkout in prometheus main");
    assert_eq!(row("storefront")["direction"], "downstream");

    let diagram = answer["mermaid"].as_str().unwrap_or_default();
    for line in [
        "  n_checkout --> n_payments",
        "  n_payments --> n_payments_db",
        "  n_payments[\"payments<br/>degraded · errors 10%\"]:::degraded",
        "  n_payments_db[\"payments-db<br/>unknown\"]:::unknown",
    ] {
        assert!(diagram.lines().any(|candidate| candidate == line), "no {line:?} in\n{diagram}");
    }

    // As text: the table, then the diagram at the end.
    let output = call(&["--arg", "service=checkout", "--arg", "depth:=2"])?;
    let table = stdout(&output);
    assert!(table.trim_end().ends_with("```"), "{table}");
    assert!(table.contains("```mermaid\ngraph LR\n"), "{table}");
    assert!(
        table.lines().any(|line| line.starts_with("payments ") && line.contains("degraded") && line.contains("10%")),
        "{table}"
    );

    // A misspelt service: an error naming the close matches.
    let output = call(&["--arg", "service=paymnts"])?;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("no service \"paymnts\" in the catalog; did you mean payments"),
        "{}",
        stderr(&output)
    );

    let output =
        opsgate(dir.path(), &["--config", config, "call", "what_changed", "--arg", "service=payments", "--json"])?;
    let changed: Value = serde_json::from_str(&stdout(&output))?;
    assert_eq!(changed["dependencies"], json!(["payments-db"]), "{changed}");
    ticker.abort();
    Ok(())
}

/// The catalog's resources over stdio: the service list, one service, a runbook; after an edit
/// of a catalog file the running server serves the new catalog, and a broken edit keeps the
/// other files' services.
#[tokio::test]
async fn resources_serve_the_catalog_and_follow_an_edit() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let catalog = copy_catalog(dir.path())?;
    let config = write_config(dir.path(), "")?;
    let data_dir = dir.path().to_path_buf();
    let transport = TokioChildProcess::new(tokio::process::Command::new(BIN).configure(|command| {
        command.arg("--config").arg(&config).arg("--data-dir").arg(&data_dir).arg("stdio").stderr(Stdio::null());
    }))?;
    let client = ().serve(transport).await.context("handshake with opsgate stdio")?;

    let read = |uri: &str| {
        let request = ReadResourceRequestParams::new(uri);
        let client = &client;
        async move {
            let result = client.read_resource(request).await?;
            let contents = serde_json::to_value(&result.contents)?;
            anyhow::Ok((
                contents[0]["text"].as_str().unwrap_or_default().to_string(),
                contents[0]["mimeType"].as_str().unwrap_or_default().to_string(),
            ))
        }
    };
    let uris: Vec<String> =
        client.list_all_resources().await?.into_iter().map(|resource| resource.uri.clone()).collect();
    assert!(
        uris.contains(&"opsgate://services".to_string()) && uris.contains(&"opsgate://runbooks/checkout".to_string()),
        "{uris:?}"
    );
    let templates: Vec<String> =
        client.list_all_resource_templates().await?.into_iter().map(|template| template.uri_template.clone()).collect();
    assert_eq!(templates, ["opsgate://services/{name}", "opsgate://runbooks/{id}"]);

    let (list, mime) = read("opsgate://services").await?;
    assert_eq!(mime, "application/json");
    let list: Value = serde_json::from_str(&list)?;
    let names: Vec<&str> = list.as_array().into_iter().flatten().filter_map(|item| item["name"].as_str()).collect();
    assert_eq!(names, ["auth", "checkout", "payments", "storefront", "payments-db", "payments-platform", "shop"]);

    let (checkout, _) = read("opsgate://services/checkout").await?;
    let checkout: Value = serde_json::from_str(&checkout)?;
    let depends: Vec<&str> =
        checkout["dependsOn"].as_array().into_iter().flatten().filter_map(|item| item["name"].as_str()).collect();
    assert_eq!(depends, ["payments", "auth", "resource:orders-db"]);
    assert_eq!(checkout["dependents"][0]["name"], "storefront");
    assert_eq!(checkout["recentEvents"], json!([]));
    let (runbook, mime) = read("opsgate://runbooks/payments/high-error-rate").await?;
    assert_eq!(mime, "text/markdown");
    assert!(runbook.starts_with("# Payments: high error rate"), "{runbook}");

    // An edit: auth gains a dependency; the server reloads within its 2 s interval.
    let auth = catalog.join("identity/catalog-info.yaml");
    let edited = std::fs::read_to_string(&auth)?.replace(
        "  owner: default/team-identity\n",
        "  owner: default/team-identity\n  dependsOn: ['resource:payments-db']\n",
    );
    std::fs::write(&auth, edited)?;
    let mut reloaded = false;
    for _ in 0..50 {
        let (detail, _) = read("opsgate://services/auth").await?;
        let detail: Value = serde_json::from_str(&detail)?;
        if detail["dependsOn"][0]["name"] == "payments-db" {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(reloaded, "the edit was not served within 10 s");

    // A broken edit: that file's services are gone, the others stay.
    std::fs::write(&auth, "kind: Component\nmetadata:\n  name: [auth\n")?;
    let mut gone = false;
    for _ in 0..50 {
        if read("opsgate://services/auth").await.is_err() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(gone, "the broken file was not reloaded");
    assert!(read("opsgate://services/payments").await.is_ok(), "the other files' services stay");

    let called = client
        .call_tool(CallToolRequestParams::new("get_service_dependencies").with_arguments(
            json!({"service": "payments", "direction": "downstream"}).as_object().cloned().unwrap_or_default(),
        ))
        .await?;
    assert_eq!(called.is_error, Some(false));
    let structured = called.structured_content.clone().unwrap_or(Value::Null);
    assert_eq!(structured["items"][1]["service"], "checkout", "{structured}");
    client.cancel().await?;
    Ok(())
}

/// `search_context` finds the catalog's runbooks: a runbook is found by words of its text, with its
/// service and the URI to read it; once its file is gone, it is no longer found.
#[test]
fn search_context_finds_runbooks_and_forgets_deleted_ones() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let catalog = copy_catalog(dir.path())?;
    let config = write_config(dir.path(), "")?;
    let config = config.to_str().unwrap_or_default();
    let search = |query: &str| -> Result<Value> {
        let output = opsgate(dir.path(), &["--config", config, "call", "search_context", "--arg", query, "--json"])?;
        anyhow::ensure!(output.status.success(), "{}{}", stdout(&output), stderr(&output));
        Ok(serde_json::from_slice(&output.stdout)?)
    };
    let found = search("query=5xx roll back")?;
    let items = found["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 1, "{found}");
    assert_eq!(items[0]["source"], "runbook");
    assert_eq!(items[0]["reference"], "payments/high-error-rate");
    assert_eq!(items[0]["title"], "Payments: high error rate");
    assert_eq!(items[0]["service"], "payments", "the entity whose annotation names it: {found}");
    assert_eq!(items[0]["open"], "opsgate://runbooks/payments/high-error-rate");

    std::fs::remove_file(catalog.join("runbooks/payments/high-error-rate.md"))?;
    let found = search("query=5xx roll back")?;
    assert_eq!(found["items"], json!([]), "{found}");
    Ok(())
}
