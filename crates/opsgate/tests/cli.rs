//! The binary end to end: `call`, `audit`, `stdio`, `serve`, `init`, `doctor` and bad config, run
//! as a user would run them, against a real Prometheus and Alertmanager where tools need one.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_opsgate");

mod support;
use support::{Served, opsgate, stderr, stdout};

fn write_config(dir: &Path, text: &str) -> Result<std::path::PathBuf> {
    let path = dir.join("opsgate.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

#[test]
fn invalid_config_refuses_to_start_naming_file_key_and_reason() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = write_config(dir.path(), "[server]\nlisten = \"127.0.0.1:0\"\ncall_timeout = 5\n")?;
    let output = opsgate(dir.path(), &["--config", config.to_str().unwrap_or_default(), "serve"])?;
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("opsgate.toml") && message.contains("unknown field `call_timeout`"), "{message}");
    assert!(message.contains("line 3"), "{message}");
    Ok(())
}

#[test]
fn call_audits_every_outcome_and_verify_names_the_first_tampered_record() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let unknown = opsgate(dir.path(), &["call", "no_such_tool"])?;
    assert_eq!(unknown.status.code(), Some(1));
    assert!(stderr(&unknown).contains("unknown tool \"no_such_tool\""), "{}", stderr(&unknown));
    let bad_arg = opsgate(dir.path(), &["call", "x", "--arg", "novalue"])?;
    assert!(stderr(&bad_arg).contains("--arg novalue: write key=value or key:=json"), "{}", stderr(&bad_arg));
    for _ in 0..3 {
        opsgate(dir.path(), &["call", "no_such_tool", "--arg", "password=hunter2"])?;
    }

    let verify = opsgate(dir.path(), &["audit", "verify"])?;
    assert!(verify.status.success(), "{}", stdout(&verify));
    assert_eq!(stdout(&verify).trim(), "audit chain intact: 4 records");

    let export = opsgate(dir.path(), &["audit", "export", "--format", "jsonl"])?;
    let records: Vec<Value> = stdout(&export).lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    assert_eq!(records.len(), 4);
    assert_eq!(records[1]["arguments"], json!("{\"password\":\"***\"}"), "secrets never reach the audit log");
    assert!(!stdout(&export).contains("hunter2"));
    assert_eq!(records[1]["prev_hash"], records[0]["hash"]);

    let tail = opsgate(dir.path(), &["audit", "tail", "-n", "2"])?;
    assert_eq!(stdout(&tail).lines().count(), 2);

    // Edit record 2 behind opsgate's back, then delete record 4.
    let database = dir.path().join("opsgate.db");
    let edit = Command::new("python3")
        .arg("-c")
        .arg("import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(sys.argv[2]); c.commit()")
        .arg(&database)
        .arg("UPDATE audit_log SET principal = 'user:mallory' WHERE seq = 2")
        .status()?;
    assert!(edit.success());
    let verify = opsgate(dir.path(), &["audit", "verify"])?;
    assert_eq!(verify.status.code(), Some(1));
    assert!(stdout(&verify).starts_with("audit chain broken at record 2:"), "{}", stdout(&verify));
    Ok(())
}

#[tokio::test]
async fn audit_verify_on_postgres_detects_a_deleted_record() -> Result<()> {
    let postgres = opsgate_testkit::Postgres::shared().await?;
    let url = postgres.create_database("cli_verify").await?;
    let dir = tempfile::tempdir()?;
    for _ in 0..3 {
        opsgate(dir.path(), &["--store", &url, "call", "no_such_tool"])?;
    }
    let verify = opsgate(dir.path(), &["--store", &url, "audit", "verify"])?;
    assert_eq!(stdout(&verify).trim(), "audit chain intact: 3 records", "{}", stderr(&verify));
    postgres.psql("cli_verify", "DELETE FROM audit_log WHERE seq = 2").await?;
    let verify = opsgate(dir.path(), &["--store", &url, "audit", "verify"])?;
    assert_eq!(verify.status.code(), Some(1));
    assert!(stdout(&verify).starts_with("audit chain broken at record 2: record 2 is missing"), "{}", stdout(&verify));
    Ok(())
}

#[test]
fn init_writes_a_starter_that_doctor_accepts() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let init = opsgate(dir.path(), &["init"])?;
    assert!(init.status.success(), "{}", stderr(&init));
    let again = opsgate(dir.path(), &["init"])?;
    assert!(stderr(&again).contains("already exists; pass --force"), "{}", stderr(&again));
    let doctor = opsgate(dir.path(), &["doctor"])?;
    assert!(doctor.status.success(), "{}\n{}", stdout(&doctor), stderr(&doctor));
    assert!(stdout(&doctor).contains("store     ok    sqlite"), "{}", stdout(&doctor));
    Ok(())
}

/// A Prometheus scraping an exporter with a known error ratio, and an Alertmanager it alerts.
async fn backends() -> Result<(opsgate_testkit::Exporter, opsgate_testkit::Prometheus, opsgate_testkit::Alertmanager)> {
    let exporter = opsgate_testkit::Exporter::start(series(0)).await?;
    let alertmanager = opsgate_testkit::Alertmanager::start(opsgate_testkit::AlertmanagerOptions::default()).await?;
    let rules = r#"groups:
- name: payments
  rules:
  - alert: HighErrorRate
    expr: sum(rate(http_requests_total{code=~"5.."}[1m])) by (service) / sum(rate(http_requests_total[1m])) by (service) > 0.05
    for: 0s
    labels: {severity: critical}
    annotations: {summary: "payments-api error rate above 5%", runbook_url: "https://runbooks.example.com/high-error-rate"}
"#;
    let prometheus = alerting_prometheus(&exporter, rules, &alertmanager).await?;
    Ok((exporter, prometheus, alertmanager))
}

/// A Prometheus scraping `exporter` as job `payments`, evaluating `rules` and alerting
/// `alertmanager`.
async fn alerting_prometheus(
    exporter: &opsgate_testkit::Exporter,
    rules: &str,
    alertmanager: &opsgate_testkit::Alertmanager,
) -> Result<opsgate_testkit::Prometheus> {
    opsgate_testkit::Prometheus::start(
        opsgate_testkit::PrometheusOptions::default()
            .scrape(opsgate_testkit::ScrapeTarget::new("payments", exporter.target()))
            .rules(rules)
            .alertmanager(alertmanager.url()),
    )
    .await
}

/// 10% of requests fail: 90 ok and 10 errors per tick.
fn series(tick: u64) -> String {
    format!(
        "http_requests_total{{service=\"payments-api\",code=\"200\"}} {}\nhttp_requests_total{{service=\"payments-api\",code=\"500\"}} {}\n",
        90 * tick,
        10 * tick
    )
}

#[tokio::test]
async fn stdio_serves_tools_from_a_real_prometheus_and_alertmanager() -> Result<()> {
    let (exporter, prometheus, alertmanager) = backends().await?;
    let ticker = {
        let exporter = std::sync::Arc::new(exporter);
        let handle = exporter.clone();
        tokio::spawn(async move {
            for tick in 1..400 {
                handle.set(series(tick));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        exporter
    };
    alertmanager.wait_for_alerts("HighErrorRate", Duration::from_secs(45)).await?;

    let dir = tempfile::tempdir()?;
    let config = write_config(
        dir.path(),
        &format!(
            "[connectors.prometheus.local]\nurl = \"{}\"\nenvironment = \"test\"\n\
             [connectors.alertmanager.local]\nurl = \"{}\"\nenvironment = \"test\"\n",
            prometheus.url(),
            alertmanager.url()
        ),
    )?;
    let data_dir = dir.path().to_path_buf();
    let transport = TokioChildProcess::new(tokio::process::Command::new(BIN).configure(|command| {
        command.arg("--config").arg(&config).arg("--data-dir").arg(&data_dir).arg("stdio").stderr(Stdio::null());
    }))?;
    let client = ().serve(transport).await.context("handshake with opsgate stdio")?;
    let names: Vec<String> = client.list_all_tools().await?.into_iter().map(|tool| tool.name.to_string()).collect();
    for expected in ["get_service_metrics", "query_metrics", "list_metrics", "get_active_alerts", "get_alert_history"] {
        assert!(names.iter().any(|name| name == expected), "{expected} missing from {names:?}");
    }

    let alerts = client
        .call_tool(
            CallToolRequestParams::new("get_active_alerts")
                .with_arguments(json!({"service": "payments-api"}).as_object().cloned().unwrap_or_default()),
        )
        .await?;
    let text = serde_json::to_value(&alerts.content)?[0]["text"].as_str().unwrap_or_default().to_string();
    assert_eq!(alerts.is_error, Some(false), "{text}");
    assert!(text.contains("HighErrorRate") && text.contains("https://runbooks.example.com/high-error-rate"), "{text}");

    let missing_target = client
        .call_tool(
            CallToolRequestParams::new("query_metrics")
                .with_arguments(json!({"promql": "up", "target": "prod"}).as_object().cloned().unwrap_or_default()),
        )
        .await?;
    assert_eq!(missing_target.is_error, Some(true));
    client.cancel().await?;
    drop(ticker);

    let export = opsgate(dir.path(), &["audit", "export"])?;
    let tools: Vec<String> = stdout(&export)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|record| {
            format!(
                "{}:{}",
                record["tool"].as_str().unwrap_or_default(),
                record["outcome"].as_str().unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(tools, vec!["get_active_alerts:ok", "query_metrics:tool_error"]);
    Ok(())
}

#[test]
fn an_unreachable_prometheus_is_a_prompt_clear_error_and_audited() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let port = opsgate_testkit::free_port();
    let config =
        write_config(dir.path(), &format!("[connectors.prometheus.down]\nurl = \"http://127.0.0.1:{port}\"\n"))?;
    let started = std::time::Instant::now();
    let output = opsgate(
        dir.path(),
        &["--config", config.to_str().unwrap_or_default(), "call", "query_metrics", "--arg", "promql=up"],
    )?;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("down") && message.contains(&format!("127.0.0.1:{port}")), "{message}");
    let export = opsgate(dir.path(), &["audit", "export"])?;
    assert!(stdout(&export).contains("\"outcome\":\"tool_error\""), "{}", stdout(&export));

    let doctor = opsgate(dir.path(), &["--config", config.to_str().unwrap_or_default(), "doctor"])?;
    assert_eq!(doctor.status.code(), Some(1), "doctor fails when a backend is down");
    let report = stdout(&doctor);
    assert!(report.contains(&format!("prometheus   FAIL  down at http://127.0.0.1:{port}")), "{report}");
    assert!(report.contains("get_service_metrics"), "doctor still lists the tools: {report}");
    Ok(())
}

#[tokio::test]
async fn serve_answers_health_and_stops_cleanly_on_sigterm() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let port = opsgate_testkit::free_port();
    let mut child = tokio::process::Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .current_dir(dir.path())
        .stderr(Stdio::null())
        .spawn()?;
    let health = format!("http://127.0.0.1:{port}/healthz");
    let mut healthy = false;
    for _ in 0..100 {
        if let Ok(response) = reqwest::get(&health).await
            && response.status().is_success()
        {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(healthy, "opsgate serve never answered /healthz");
    let pid = child.id().context("child pid")?;
    Command::new("kill").args(["-TERM", &pid.to_string()]).status()?;
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait()).await??;
    assert!(status.success(), "{status}");
    Ok(())
}

#[test]
fn keys_are_shown_once_listed_without_the_key_and_revoked_by_name() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let empty = opsgate(dir.path(), &["keys", "list"])?;
    assert!(stdout(&empty).starts_with("no API keys; create one with"), "{}", stdout(&empty));

    let created = opsgate(dir.path(), &["keys", "create", "--name", "ci-bot", "--roles", "operator,reader"])?;
    assert!(created.status.success(), "{}", stderr(&created));
    let key = stdout(&created).trim().to_string();
    assert!(key.starts_with("og_") && key.len() == 67, "stdout is the key alone: {key}");
    let note = stderr(&created);
    assert!(note.contains("created API key \"ci-bot\" with roles [operator, reader]"), "{note}");
    assert!(note.contains("shown only this once and cannot be shown again"), "{note}");
    assert!(note.contains("requests without credentials are refused"), "the first key closes anonymous access: {note}");

    let created = opsgate(dir.path(), &["keys", "create", "--name", "laptop", "--json"])?;
    let document: Value = serde_json::from_str(&stdout(&created))?;
    assert_eq!(document["roles"], json!([]));
    let second_key = document["key"].as_str().unwrap_or_default().to_string();
    assert_eq!(document["prefix"].as_str(), second_key.get(..11));
    assert!(!stderr(&created).contains("requests without credentials"), "only the first key says so");

    let duplicate = opsgate(dir.path(), &["keys", "create", "--name", "ci-bot"])?;
    assert_eq!(duplicate.status.code(), Some(1));
    assert!(stderr(&duplicate).contains("an API key named \"ci-bot\" already exists"), "{}", stderr(&duplicate));
    let invalid = opsgate(dir.path(), &["keys", "create", "--name", "has space"])?;
    assert!(stderr(&invalid).contains("invalid API key name \"has space\""), "{}", stderr(&invalid));

    let list = stdout(&opsgate(dir.path(), &["keys", "list"])?);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 3, "{list}");
    assert!(lines[0].starts_with("NAME    PREFIX       ROLES            CREATED"), "{list}");
    assert!(lines[1].starts_with(&format!("ci-bot  {}  operator,reader  ", &key[..11])), "{list}");
    assert!(lines[1].ends_with("  -"), "not revoked: {list}");
    assert!(!list.contains(&key[11..]) && !list.contains(&second_key[11..]), "keys are never listed");

    let revoke = opsgate(dir.path(), &["keys", "revoke", "ci-bot"])?;
    assert!(revoke.status.success());
    assert!(stdout(&revoke).starts_with("revoked API key \"ci-bot\" at "), "{}", stdout(&revoke));
    let again = opsgate(dir.path(), &["keys", "revoke", "ci-bot"])?;
    assert!(again.status.success());
    assert!(stdout(&again).starts_with("API key \"ci-bot\" was already revoked at "), "{}", stdout(&again));
    let unknown = opsgate(dir.path(), &["keys", "revoke", "ghost"])?;
    assert_eq!(unknown.status.code(), Some(1));
    assert!(stderr(&unknown).contains("no API key named \"ghost\""), "{}", stderr(&unknown));

    let listed: Value = serde_json::from_str(&stdout(&opsgate(dir.path(), &["keys", "list", "--json"])?))?;
    assert_eq!(listed[0]["name"], json!("ci-bot"));
    assert!(listed[0]["revoked_at"].is_string(), "{listed}");
    assert_eq!(listed[1]["revoked_at"], json!(null));
    assert!(!listed.to_string().contains(&second_key[11..]));
    Ok(())
}

/// `opsgate serve` with a key in the store and OAuth configured: no credential is a 401 pointing
/// at the metadata, the key gets in, and the refusal is in the audit log.
#[tokio::test]
async fn serve_refuses_requests_without_credentials_once_identity_is_set_up() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let port = opsgate_testkit::free_port();
    let public_url = format!("http://127.0.0.1:{port}");
    let config = write_config(
        dir.path(),
        &format!(
            "[server]\npublic_url = \"{public_url}\"\n\
             [identity.oauth]\nissuer = \"https://issuer.test\"\njwks_url = \"http://127.0.0.1:9/jwks.json\"\n\
             [identity.oauth.roles]\n\"opsgate:read\" = [\"reader\"]\n"
        ),
    )?;
    let config = config.to_str().unwrap_or_default().to_string();
    let created = opsgate(dir.path(), &["--config", &config, "keys", "create", "--name", "agent"])?;
    let key = stdout(&created).trim().to_string();
    let served = Served::start(Path::new(&config), dir.path(), port, &[]).await?;

    let list_tools = |authorization: Option<&str>| {
        let mut request = reqwest::Client::new()
            .post(format!("{public_url}/mcp"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/list");
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        request.body(
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientInfo": {"name": "cli-test", "version": "1"},
                "io.modelcontextprotocol/clientCapabilities": {}}}})
            .to_string(),
        )
    };
    let refused = list_tools(None).send().await?;
    assert_eq!(refused.status(), 401);
    let challenge = refused.headers().get("www-authenticate").and_then(|value| value.to_str().ok()).unwrap_or_default();
    assert_eq!(challenge, format!("Bearer resource_metadata=\"{public_url}/.well-known/oauth-protected-resource\""));
    let accepted = list_tools(Some(&format!("Bearer {key}"))).send().await?;
    assert_eq!(accepted.status(), 200, "{}", accepted.text().await?);
    let metadata: Value =
        reqwest::get(format!("{public_url}/.well-known/oauth-protected-resource")).await?.json().await?;
    assert_eq!(metadata["resource"], json!(public_url));
    assert_eq!(metadata["scopes_supported"], json!(["opsgate:read"]));

    served.stop().await?;
    let tail = stdout(&opsgate(dir.path(), &["--config", &config, "audit", "tail"])?);
    assert!(tail.contains("unauthenticated  tools/list  deny  unauthenticated"), "{tail}");
    assert!(!tail.contains(&key[11..]));
    Ok(())
}

fn structured(result: &rmcp::model::CallToolResult) -> Value {
    result.structured_content.clone().unwrap_or(Value::Null)
}

/// The approval round trip against a real Alertmanager: an agent (API key, role operator) asks
/// to silence a firing alert in a protected environment; the call waits; opsgate is restarted;
/// a human (the local user, role approver) approves from the CLI; the silence then exists in
/// Alertmanager, `approval_status` returns the call's result, and the audit log holds the
/// request, the approval and the execution in one verified chain.
#[tokio::test]
async fn a_protected_silence_waits_for_a_human_across_a_restart_then_runs_once() -> Result<()> {
    let (exporter, prometheus, alertmanager) = backends().await?;
    let exporter = std::sync::Arc::new(exporter);
    let ticker = {
        let handle = exporter.clone();
        tokio::spawn(async move {
            for tick in 1..600 {
                handle.set(series(tick));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    alertmanager.wait_for_alerts("HighErrorRate", Duration::from_secs(45)).await?;

    let dir = tempfile::tempdir()?;
    let config = write_config(
        dir.path(),
        &format!(
            "[identity]\nlocal_roles = [\"approver\"]\n\
             [connectors.prometheus.prod]\nurl = \"{}\"\nenvironment = \"production\"\n\
             [connectors.alertmanager.prod]\nurl = \"{}\"\nenvironment = \"production\"\nprometheus = \"prod\"\n\
             [[environments]]\nname = \"production\"\nprotected = true\n",
            prometheus.url(),
            alertmanager.url()
        ),
    )?;
    let with_config = |args: &[&str]| -> Result<Output> {
        let mut full = vec!["--config", config.to_str().unwrap_or_default()];
        full.extend_from_slice(args);
        opsgate(dir.path(), &full)
    };
    let key = support::key(dir.path(), &config, "agent", "operator")?;
    let bystander = support::key(dir.path(), &config, "bystander", "reader")?;

    // The agent's request: pending, with the plan naming the firing alert.
    let port = opsgate_testkit::free_port();
    let served = Served::start(&config, dir.path(), port, &[]).await?;
    let client = served.client(&key).await?;
    let arguments =
        json!({"matchers": ["alertname=HighErrorRate"], "duration": "1h", "comment": "e2e: deploy in progress"});
    let pending = client
        .call_tool(
            CallToolRequestParams::new("silence_alert")
                .with_arguments(arguments.as_object().cloned().unwrap_or_default()),
        )
        .await?;
    let pending_fields = structured(&pending);
    assert_eq!(pending.is_error, Some(false), "{pending_fields}");
    assert_eq!(pending_fields["status"], "pending_approval", "{pending_fields}");
    assert_eq!(pending_fields["plan"]["blast_radius"], 1, "{pending_fields}");
    let id = pending_fields["approval_id"].as_str().unwrap_or_default().to_string();
    let silences_url = format!("{}/api/v2/silences", alertmanager.url());
    let silences: Value = reqwest::get(&silences_url).await?.json().await?;
    assert_eq!(silences.as_array().map(Vec::len), Some(0), "nothing may run before approval: {silences}");

    // Over the HTTP API the agent sees its request, and cannot approve it itself.
    let api = served.url.replace("/mcp", "/api/v1/approvals");
    let http = reqwest::Client::new();
    let listed: Value = http.get(&api).bearer_auth(&key).send().await?.json().await?;
    assert_eq!(listed["approvals"][0]["id"], id.as_str(), "{listed}");
    assert_eq!(listed["approvals"][0]["status"], "pending", "{listed}");
    let anonymous = http.get(&api).send().await?;
    assert_eq!(anonymous.status(), 401, "the API authenticates like /mcp");
    let own = http.post(format!("{api}/{id}/approve")).bearer_auth(&key).send().await?;
    assert_eq!(own.status(), 403);
    let refusal: Value = own.json().await?;
    assert!(
        refusal["error"].as_str().unwrap_or_default().contains("cannot approve or reject their own request"),
        "{refusal}"
    );
    // A principal who neither asked nor may approve does not see the request.
    let unseen: Value = http.get(&api).bearer_auth(&bystander).send().await?.json().await?;
    assert_eq!(unseen["approvals"], json!([]), "{unseen}");
    let unseen = http.get(format!("{api}/{id}")).bearer_auth(&bystander).send().await?;
    assert_eq!(unseen.status(), 403);
    client.cancel().await?;
    served.stop().await?;

    // A human approves while opsgate is down; the request survived in the store.
    let listed = with_config(&["approvals", "list"])?;
    assert!(stdout(&listed).contains(&id), "{}", stdout(&listed));
    let shown = stdout(&with_config(&["approvals", "show", &id])?);
    for expected in [
        "status     pending",
        "tool       silence_alert",
        "requester  key:agent",
        "plan       silence 1 alert",
        "e2e: deploy in progress",
    ] {
        assert!(shown.contains(expected), "{expected:?} missing from {shown}");
    }
    let unknown = with_config(&["approvals", "list", "--status", "waiting"])?;
    assert!(stderr(&unknown).contains("unknown status \"waiting\""), "{}", stderr(&unknown));
    let approved = with_config(&["approvals", "approve", &id, "--comment", "ok for the deploy"])?;
    assert!(approved.status.success(), "{}{}", stdout(&approved), stderr(&approved));
    assert!(stdout(&approved).contains("executed"), "{}", stdout(&approved));
    let again = with_config(&["approvals", "approve", &id])?;
    assert_eq!(again.status.code(), Some(1), "a second approval must be refused");

    // The silence exists, made for the agent, once.
    let silences: Value = reqwest::get(&silences_url).await?.json().await?;
    let active: Vec<&Value> =
        silences.as_array().into_iter().flatten().filter(|silence| silence["status"]["state"] == "active").collect();
    assert_eq!(active.len(), 1, "{silences}");
    assert_eq!(active[0]["createdBy"], "opsgate:key:agent");
    assert_eq!(active[0]["comment"], "e2e: deploy in progress");

    // The restarted server answers the agent's approval_status with the call's result.
    let served = Served::start(&config, dir.path(), port, &[]).await?;
    let client = served.client(&key).await?;
    let status = client
        .call_tool(
            CallToolRequestParams::new("approval_status")
                .with_arguments(json!({"id": id, "wait_seconds": 5}).as_object().cloned().unwrap_or_default()),
        )
        .await?;
    let status_fields = structured(&status);
    assert_eq!(status_fields["status"], "executed", "{:?}", status.content);
    let silence_id = active[0]["id"].as_str().unwrap_or_default();
    assert!(status_fields["result"].to_string().contains(silence_id), "{status_fields}");
    client.cancel().await?;
    served.stop().await?;
    ticker.abort();

    // Audit: request, approval, execution; chained and verified.
    let verify = with_config(&["audit", "verify"])?;
    assert!(verify.status.success(), "{}{}", stdout(&verify), stderr(&verify));
    let records: Vec<Value> = stdout(&with_config(&["audit", "export"])?)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .filter(|record: &Value| record["approval_id"] == id.as_str())
        .collect();
    let trail: Vec<String> = records
        .iter()
        .map(|record| {
            format!(
                "{}:{}:{}",
                record["principal"].as_str().unwrap_or_default(),
                record["tool"].as_str().unwrap_or_default(),
                record["outcome"].as_str().unwrap_or_default()
            )
        })
        .collect();
    let local = records.get(2).and_then(|record| record["principal"].as_str()).unwrap_or_default().to_string();
    assert!(local.starts_with("user:"), "{trail:?}");
    assert_eq!(
        trail,
        [
            "key:agent:silence_alert:pending_approval".to_string(),
            "key:agent:approvals/approve:refused".to_string(),
            format!("{local}:approvals/approve:approved"),
            "key:agent:silence_alert:ok".to_string(),
            format!("{local}:approvals/approve:refused"),
        ],
        "{trail:?}"
    );
    assert_eq!(records[3]["approvers"], local.as_str());

    // Events: the human's decision and the write it let run, newest first; the agent's refused
    // self-approval is no event.
    let events = call_text(dir.path(), &config, &["timeline", "--arg", "kinds:=[\"approval\",\"action\"]", "--json"])?;
    let events: Value = serde_json::from_str(&events)?;
    let items = events["items"].as_array().cloned().unwrap_or_default();
    let kinds: Vec<&str> = items.iter().filter_map(|item| item["kind"].as_str()).collect();
    assert_eq!(kinds, ["action", "approval"], "{events}");
    assert_eq!(items[0]["attributes"]["approval_id"], id.as_str(), "{events}");
    assert_eq!(items[0]["attributes"]["approvers"], local.as_str(), "{events}");
    assert_eq!(items[0]["environment"], "production", "{events}");
    assert_eq!(items[1]["attributes"]["decided_by"], local.as_str(), "{events}");
    assert_eq!(items[1]["attributes"]["status"], "approved", "{events}");
    Ok(())
}

#[test]
fn policy_test_runs_the_test_rules_and_policy_eval_prints_the_decision() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let passed = opsgate(dir.path(), &["policy", "test"])?;
    assert!(passed.status.success(), "{}{}", stdout(&passed), stderr(&passed));
    assert!(stdout(&passed).contains("PASS data.opsgate_test.test_"), "{}", stdout(&passed));
    assert!(stdout(&passed).trim_end().ends_with(" passed, 0 failed"), "{}", stdout(&passed));

    // A user file's failing test_ rule fails the command and is named.
    std::fs::write(dir.path().join("extra.rego"), "package opsgate\n\ntest_what_we_forgot if { false }\n")?;
    std::fs::write(dir.path().join("opsgate.toml"), "[policy]\nfiles = [\"extra.rego\"]\n")?;
    let config = dir.path().join("opsgate.toml").display().to_string();
    let failed = opsgate(dir.path(), &["--config", &config, "policy", "test"])?;
    assert!(!failed.status.success());
    assert!(stdout(&failed).contains("FAIL data.opsgate.test_what_we_forgot"), "{}", stdout(&failed));
    assert!(stdout(&failed).trim_end().ends_with(" passed, 1 failed"), "{}", stdout(&failed));

    // A write in a protected environment waits for one approver.
    let input = json!({
        "version": 1,
        "principal": {"id": "key:ci", "kind": "api_key", "roles": ["operator"]},
        "tool": {"name": "silence_alert", "effect": "write", "annotations": {}},
        "arguments": {"duration": "1h"},
        "target": {"name": "prod", "environment": "production", "protected": true},
        "blast_radius": 1,
        "read_only": false,
        "time": "2026-11-21T10:00:00Z",
    });
    std::fs::write(dir.path().join("input.json"), input.to_string())?;
    let evaluated = opsgate(dir.path(), &["policy", "eval", "--input", "input.json"])?;
    assert!(evaluated.status.success(), "{}", stderr(&evaluated));
    let decision: Value = serde_json::from_str(&stdout(&evaluated))?;
    assert_eq!(decision["decision"], "approve", "{decision}");
    assert_eq!(decision["approvals_required"], 1, "{decision}");
    assert!(
        decision["approver_roles"].as_array().is_some_and(|roles| roles.contains(&json!("approver"))),
        "{decision}"
    );

    let not_json = opsgate(dir.path(), &["policy", "eval", "--input", "opsgate.toml"])?;
    assert!(!not_json.status.success());
    assert!(stderr(&not_json).contains("is not JSON"), "{}", stderr(&not_json));
    Ok(())
}

/// `opsgate call TOOL --arg …` against `config`, its text output.
fn call_text(dir: &Path, config: &Path, args: &[&str]) -> Result<String> {
    let mut full = vec!["--config", config.to_str().unwrap_or_default(), "call"];
    full.extend_from_slice(args);
    let output = opsgate(dir, &full)?;
    anyhow::ensure!(output.status.success(), "opsgate call {args:?}: {}{}", stdout(&output), stderr(&output));
    Ok(stdout(&output))
}

/// Polls `timeline` until its text contains `needle`.
async fn wait_for_timeline(dir: &Path, config: &Path, needle: &str, timeout: Duration) -> Result<String> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let text = call_text(dir, config, &["timeline", "--arg", "service=payments-api", "--arg", "since=1h"])?;
        if text.contains(needle) {
            return Ok(text);
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "no {needle:?} in the timeline after {timeout:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Must-show: a real Prometheus rule fires, the real Alertmanager posts to `/hooks/alertmanager`
/// with its bearer token, and `timeline` shows the alert firing, then resolving once the
/// signal is back to normal. A delivery with a wrong token is refused and stores nothing.
#[tokio::test]
async fn alertmanager_webhooks_put_an_alert_firing_and_resolving_on_the_timeline() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let token = "am-hook-0123456789";
    std::fs::write(dir.path().join("am-token"), token)?;
    let config = write_config(
        dir.path(),
        &format!("[hooks.alertmanager]\nsecret = \"file:{}\"\n", dir.path().join("am-token").display()),
    )?;
    let port = opsgate_testkit::free_port();
    let served = Served::start(&config, dir.path(), port, &[]).await?;
    let hook = format!("http://127.0.0.1:{port}/hooks/alertmanager");

    let refused = reqwest::Client::new().post(&hook).bearer_auth("wrong").body(r#"{"alerts":[]}"#).send().await?;
    assert_eq!(refused.status(), reqwest::StatusCode::UNAUTHORIZED);

    let ratio = |value: f64| format!("payments_error_ratio{{service=\"payments-api\",env=\"staging\"}} {value}\n");
    let exporter = opsgate_testkit::Exporter::start(ratio(0.2)).await?;
    let alertmanager = opsgate_testkit::Alertmanager::start(
        opsgate_testkit::AlertmanagerOptions::default().webhook(&hook).webhook_bearer(token),
    )
    .await?;
    let rules = r#"groups:
- name: payments
  rules:
  - alert: PaymentsErrors
    expr: payments_error_ratio > 0.05
    for: 0s
    labels: {severity: critical}
    annotations: {summary: "payments-api errors above 5%"}
"#;
    let _prometheus = alerting_prometheus(&exporter, rules, &alertmanager).await?;

    let firing = wait_for_timeline(dir.path(), &config, "FIRING PaymentsErrors", Duration::from_secs(60)).await?;
    assert!(firing.contains("(critical): payments-api errors above 5%"), "{firing}");
    assert!(firing.contains("staging"), "the env label is the environment: {firing}");
    exporter.set(ratio(0.0));
    let both = wait_for_timeline(dir.path(), &config, "RESOLVED PaymentsErrors", Duration::from_secs(60)).await?;
    let resolved_at = both.find("RESOLVED PaymentsErrors").unwrap_or_default();
    let firing_at = both.find("FIRING PaymentsErrors").unwrap_or_default();
    assert!(resolved_at < firing_at, "newest first: the resolution above the firing\n{both}");
    assert_eq!(both.matches("FIRING PaymentsErrors").count(), 1, "one firing event however often it was sent\n{both}");

    let alerts = call_text(dir.path(), &config, &["timeline", "--arg", "kinds:=[\"alert\"]", "--json"])?;
    let alerts: Value = serde_json::from_str(&alerts)?;
    let items = alerts["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 2, "{alerts}");
    assert!(items.iter().all(|item| item["source"] == "alertmanager" && item["service"] == "payments-api"), "{alerts}");

    // The same history is searchable: every word must match, so only the resolution does.
    let found =
        call_text(dir.path(), &config, &["search_context", "--arg", "query=payments errors resolved", "--json"])?;
    let found: Value = serde_json::from_str(&found)?;
    let items = found["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 1, "{found}");
    assert!(items[0]["title"].as_str().is_some_and(|title| title.starts_with("RESOLVED PaymentsErrors")), "{found}");
    assert_eq!(
        (&items[0]["kind"], &items[0]["source"], &found["all_words"]),
        (&json!("alert"), &json!("event"), &json!(true))
    );
    let refused = opsgate(
        dir.path(),
        &["--config", config.to_str().unwrap_or_default(), "call", "search_context", "--arg", "query=--"],
    )?;
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("query has no words to search for"), "{}", stderr(&refused));
    served.stop().await
}

/// POSTs `body` to the GitHub hook `hook` as delivery `delivery` of `event`, with `signature` as
/// its `X-Hub-Signature-256`.
async fn post_github(
    hook: &str,
    event: &str,
    delivery: &str,
    signature: &str,
    body: String,
) -> reqwest::Result<reqwest::Response> {
    reqwest::Client::new()
        .post(hook)
        .header("X-GitHub-Event", event)
        .header("X-GitHub-Delivery", delivery)
        .header("X-Hub-Signature-256", signature)
        .body(body)
        .send()
        .await
}

fn github_signature(secret: &str, body: &str) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Must-show: `what_changed` for a service returns the deploy, the pipeline run and the silence
/// opsgate executed in its window, newest first, and nothing from before the window or about
/// another service. GitHub deliveries are signed; a tampered one is refused and stores nothing.
#[tokio::test]
async fn what_changed_returns_the_deploy_the_pipeline_run_and_the_executed_silence_in_the_window() -> Result<()> {
    let alertmanager = opsgate_testkit::Alertmanager::start(opsgate_testkit::AlertmanagerOptions::default()).await?;
    let dir = tempfile::tempdir()?;
    let secret = "gh-webhook-secret";
    std::fs::write(dir.path().join("gh-secret"), secret)?;
    let config = write_config(
        dir.path(),
        &format!(
            "[hooks.github]\nsecret = \"file:{}\"\n\
             [connectors.alertmanager.staging]\nurl = \"{}\"\nenvironment = \"staging\"\n",
            dir.path().join("gh-secret").display(),
            alertmanager.url()
        ),
    )?;
    let key = support::key(dir.path(), &config, "agent", "operator")?;
    let port = opsgate_testkit::free_port();
    let served = Served::start(&config, dir.path(), port, &[]).await?;
    let hook = format!("http://127.0.0.1:{port}/hooks/github");
    let ago = |minutes: i64| {
        (chrono::Utc::now() - chrono::Duration::minutes(minutes)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let deployment_status = |repository: &str, minutes: i64, environment: &str| {
        json!({
            "action": "created",
            "deployment_status": {"state": "success", "created_at": ago(minutes), "target_url": "https://ci.example/deploy/1"},
            "deployment": {"id": 42, "sha": "4f2a9c1e0b7d", "ref": "v1.8.0", "environment": environment, "created_at": ago(minutes + 1)},
            "repository": {"name": repository, "full_name": format!("acme/{repository}")},
            "sender": {"login": "deploy-bot"}
        })
    };
    let workflow_run = json!({
        "action": "completed",
        "workflow_run": {"id": 7, "name": "CI", "run_number": 311, "head_branch": "main", "head_sha": "4f2a9c1e0b7d",
                         "status": "completed", "conclusion": "success", "event": "push",
                         "run_started_at": ago(12), "updated_at": ago(8), "html_url": "https://github.com/acme/payments-api/actions/runs/7"},
        "repository": {"name": "payments-api", "full_name": "acme/payments-api"},
        "sender": {"login": "dev"}
    });
    let deliveries = [
        ("deployment_status", "d-in-window", deployment_status("payments-api", 5, "staging")),
        ("workflow_run", "d-pipeline", workflow_run),
        ("deployment_status", "d-too-old", deployment_status("payments-api", 180, "staging")),
        ("deployment_status", "d-other-service", deployment_status("checkout", 5, "staging")),
    ];
    for (event, delivery, payload) in &deliveries {
        let body = payload.to_string();
        let response = post_github(&hook, event, delivery, &github_signature(secret, &body), body).await?;
        assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED, "{delivery}: {}", response.text().await?);
    }
    // Signed as delivered, then edited in transit.
    let signed = deliveries[0].2.to_string();
    let tampered = signed.replace("v1.8.0", "v6.6.6");
    let refused =
        post_github(&hook, "deployment_status", "d-tampered", &github_signature(secret, &signed), tampered).await?;
    assert_eq!(refused.status(), reqwest::StatusCode::UNAUTHORIZED);

    // The agent silences the service's alerts in staging (not protected: it runs at once).
    let client = served.client(&key).await?;
    let arguments = json!({"matchers": ["alertname=PaymentsErrors", "service=\"payments-api\""], "duration": "30m",
                           "comment": "rolling back v1.8.0"});
    let silenced = client
        .call_tool(
            CallToolRequestParams::new("silence_alert")
                .with_arguments(arguments.as_object().cloned().unwrap_or_default()),
        )
        .await?;
    assert_eq!(silenced.is_error, Some(false), "{}", structured(&silenced));

    let changed = client
        .call_tool(CallToolRequestParams::new("what_changed").with_arguments(
            json!({"service": "payments-api", "window": "1h"}).as_object().cloned().unwrap_or_default(),
        ))
        .await?;
    let fields = structured(&changed);
    assert_eq!(changed.is_error, Some(false), "{fields}");
    let items = fields["items"].as_array().cloned().unwrap_or_default();
    let kinds: Vec<&str> = items.iter().filter_map(|item| item["kind"].as_str()).collect();
    assert_eq!(kinds, ["action", "deploy", "pipeline"], "newest first, nothing else: {fields}");
    assert!(items[0]["summary"].as_str().is_some_and(|summary| summary.contains("silence_alert")), "{fields}");
    assert_eq!(items[0]["source"], "opsgate");
    assert_eq!(items[1]["attributes"]["ref"], "v1.8.0", "the signed delivery, not the tampered one: {fields}");
    assert!(
        items.iter().all(|item| item["delivery_id"] != "d-too-old" && item["service"] == "payments-api"),
        "{fields}"
    );
    served.stop().await
}

/// A 2025-11-25 session that reports the resources it hears were updated.
#[derive(Clone)]
struct SubscribedClient {
    updated: tokio::sync::mpsc::UnboundedSender<String>,
}

impl rmcp::ClientHandler for SubscribedClient {
    fn get_info(&self) -> rmcp::model::ClientConfig {
        let mut config = rmcp::model::ClientConfig::default();
        config.protocol_version = rmcp::model::ProtocolVersion::V_2025_11_25;
        config
    }

    async fn on_resource_updated(
        &self,
        params: rmcp::model::ResourceUpdatedNotificationParam,
        _context: rmcp::service::NotificationContext<rmcp::RoleClient>,
    ) {
        let _ = self.updated.send(params.uri);
    }
}

/// Must-show: two opsgate processes share one PostgreSQL store. A client subscribed to a
/// service through process A hears of an event about that service ingested through process B
/// (B's insert, NOTIFY, A's LISTEN, A's change feed, the client's session), and not of events
/// about other services; A's timeline shows B's event.
#[tokio::test]
async fn a_client_subscribed_through_one_process_hears_of_an_event_ingested_through_another() -> Result<()> {
    let url = opsgate_testkit::Postgres::shared().await?.create_database("two_processes").await?;
    let dir = tempfile::tempdir()?;
    let secret = "gh-webhook-secret";
    std::fs::write(dir.path().join("gh-secret"), secret)?;
    let config = write_config(
        dir.path(),
        &format!(
            "[server]\nstore = \"{url}\"\n[hooks.github]\nsecret = \"file:{}\"\n",
            dir.path().join("gh-secret").display()
        ),
    )?;
    let key = support::key(dir.path(), &config, "agent", "viewer")?;
    let (port_a, port_b) = (opsgate_testkit::free_port(), opsgate_testkit::free_port());
    let (dir_a, dir_b) = (dir.path().join("a"), dir.path().join("b"));
    let process_a = Served::start(&config, &dir_a, port_a, &[]).await?;
    let process_b = Served::start(&config, &dir_b, port_b, &[]).await?;

    let (updated, mut heard) = tokio::sync::mpsc::unbounded_channel();
    let client = process_a.client_with(SubscribedClient { updated }, &key).await?;
    // resources/subscribe is how a 2025-11-25 session subscribes (deprecated only for 2026-07-28).
    #[allow(deprecated)]
    client.subscribe(rmcp::model::SubscribeRequestParams::new("opsgate://services/payments-api")).await?;

    let deliver = |repository: &'static str, delivery: &'static str| {
        let hook = format!("http://127.0.0.1:{port_b}/hooks/github");
        async move {
            let body = json!({
                "action": "created",
                "deployment_status": {"state": "success", "created_at": chrono::Utc::now().to_rfc3339()},
                "deployment": {"id": 1, "sha": "4f2a9c1e0b7d", "ref": "v2.0.0", "environment": "production"},
                "repository": {"name": repository, "full_name": format!("acme/{repository}")},
                "sender": {"login": "deploy-bot"}
            })
            .to_string();
            let response =
                post_github(&hook, "deployment_status", delivery, &github_signature(secret, &body), body).await?;
            anyhow::ensure!(response.status() == reqwest::StatusCode::ACCEPTED, "{}", response.text().await?);
            anyhow::Ok(())
        }
    };
    // Another service's event is not this subscription's business; then the subscribed one's.
    deliver("checkout", "other-1").await?;
    deliver("payments-api", "d-1").await?;
    let uri = tokio::time::timeout(Duration::from_secs(15), heard.recv())
        .await
        .context("process A never announced the event process B ingested")?;
    assert_eq!(uri.as_deref(), Some("opsgate://services/payments-api"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(heard.try_recv().is_err(), "only the subscribed service is announced");

    let timeline =
        client
            .call_tool(CallToolRequestParams::new("timeline").with_arguments(
                json!({"service": "payments-api", "since": "1h"}).as_object().cloned().unwrap_or_default(),
            ))
            .await?;
    let items = structured(&timeline)["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 1, "{}", structured(&timeline));
    assert_eq!(items[0]["attributes"]["ref"], "v2.0.0");
    client.cancel().await?;
    process_a.stop().await?;
    process_b.stop().await
}
