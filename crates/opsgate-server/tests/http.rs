//! End-to-end tests of the HTTP surface over a real socket: MCP in both protocol revisions, the
//! pipeline's stages (target, policy, timeout, budget, audit), and bad input at the edge.

mod support;

use std::time::Duration;

use anyhow::Result;
use opsgate_server::PipelineConfig;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::{Value, json};

fn arguments(value: Value) -> serde_json::Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

async fn client(url: &str) -> Result<rmcp::service::RunningService<rmcp::RoleClient, ()>> {
    Ok(().serve(StreamableHttpClientTransport::from_uri(url.to_string())).await?)
}

#[tokio::test]
async fn tools_list_hides_writes_and_calls_are_audited() -> Result<()> {
    let server = support::start(PipelineConfig::default()).await?;
    let client = client(&server.url()).await?;

    let tools = client.list_all_tools().await?;
    let names: Vec<&str> = tools.iter().map(|tool| tool.name.as_ref()).collect();
    assert_eq!(names, vec!["echo", "sleep"], "the write tool is never callable, so it is not listed");
    let echo = &tools[0];
    assert_eq!(echo.input_schema["properties"]["target"]["enum"], json!(["staging", "prod"]));
    assert_eq!(echo.annotations.as_ref().and_then(|annotations| annotations.read_only_hint), Some(true));

    let result = client
        .call_tool(
            CallToolRequestParams::new("echo").with_arguments(arguments(json!({"text": "hi", "target": "prod"}))),
        )
        .await?;
    assert_eq!(result.is_error, Some(false));
    assert_eq!(result.structured_content.as_ref().map(|value| value["target"].clone()), Some(json!("prod")));

    let denied = client.call_tool(CallToolRequestParams::new("restart_thing")).await?;
    assert_eq!(denied.is_error, Some(true));
    let text = serde_json::to_string(&denied.content)?;
    assert!(text.contains("denied by policy") && text.contains("restart_thing is a write tool"), "{text}");
    assert_eq!(server.write_runs.load(std::sync::atomic::Ordering::SeqCst), 0, "the write never ran");

    let unknown = client.call_tool(CallToolRequestParams::new("no_such_tool")).await;
    let error = unknown.expect_err("unknown tool is a protocol error").to_string();
    assert!(error.contains("no_such_tool"), "{error}");

    let records = server.store.audit_tail(10).await?;
    let summary: Vec<(String, String, String)> = records
        .iter()
        .map(|record| (record.entry.tool.clone(), record.entry.decision.clone(), record.entry.outcome.clone()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("echo".to_string(), "allow".to_string(), "ok".to_string()),
            ("restart_thing".to_string(), "deny".to_string(), "denied".to_string()),
            ("no_such_tool".to_string(), "none".to_string(), "unknown_tool".to_string()),
        ]
    );
    assert_eq!(records[0].entry.target.as_deref(), Some("prod"));
    assert_eq!(records[0].entry.environment.as_deref(), Some("production"));
    assert_eq!(server.store.verify_audit().await?.first_bad, None);
    client.cancel().await?;
    Ok(())
}

#[tokio::test]
async fn bad_arguments_and_unknown_targets_are_tool_errors_that_say_what_to_change() -> Result<()> {
    let server = support::start(PipelineConfig::default()).await?;
    let client = client(&server.url()).await?;
    let cases = [
        (json!({}), "missing field `text`"),
        (json!({"text": 5}), "invalid type: integer `5`, expected a string"),
        (json!({"text": "x", "extra": 1}), "unknown field `extra`"),
        (json!({"text": "x", "target": "nowhere"}), "unknown echo target \"nowhere\"; known targets: staging, prod"),
        (json!({"text": "x", "cursor": "garbage"}), "cursor \"garbage\" is not one this tool returned"),
    ];
    for (input, expect) in cases {
        let result =
            client.call_tool(CallToolRequestParams::new("echo").with_arguments(arguments(input.clone()))).await?;
        assert_eq!(result.is_error, Some(true), "{input}");
        let text = serde_json::to_value(&result.content)?[0]["text"].as_str().unwrap_or_default().to_string();
        assert!(text.contains(expect), "{input}: {text}");
    }
    let records = server.store.audit_tail(10).await?;
    assert_eq!(records.len(), 5);
    assert!(records.iter().all(|record| record.entry.outcome == "tool_error"));
    client.cancel().await?;
    Ok(())
}

#[tokio::test]
async fn outputs_over_budget_are_cut_with_a_cursor_that_fetches_the_rest() -> Result<()> {
    let config =
        PipelineConfig { budget: opsgate_core::OutputBudget { max_bytes: 2_000 }, ..PipelineConfig::default() };
    let server = support::start(config).await?;
    let client = client(&server.url()).await?;
    let first = client
        .call_tool(CallToolRequestParams::new("echo").with_arguments(arguments(json!({"text": "t", "rows": 500}))))
        .await?;
    let structured = first.structured_content.clone().unwrap_or_default();
    assert_eq!(structured["truncated"], json!(true));
    let cursor = structured["next_cursor"].as_str().unwrap_or_default().to_string();
    let n_first = structured["items"].as_array().map(Vec::len).unwrap_or(0);
    assert!(n_first > 10 && n_first < 500, "{n_first}");
    let second = client
        .call_tool(
            CallToolRequestParams::new("echo")
                .with_arguments(arguments(json!({"text": "t", "rows": 500, "cursor": cursor}))),
        )
        .await?;
    let structured = second.structured_content.unwrap_or_default();
    assert_eq!(structured["items"][0], json!({"n": n_first}));
    client.cancel().await?;
    Ok(())
}

#[tokio::test]
async fn a_slow_tool_is_cut_off_by_the_call_timeout() -> Result<()> {
    let config = PipelineConfig { call_timeout: Duration::from_millis(200), ..PipelineConfig::default() };
    let server = support::start(config).await?;
    let client = client(&server.url()).await?;
    let started = std::time::Instant::now();
    let result =
        client.call_tool(CallToolRequestParams::new("sleep").with_arguments(arguments(json!({"seconds": 30})))).await?;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(result.is_error, Some(true));
    assert!(serde_json::to_string(&result.content)?.contains("timed out after 0.2s"));
    assert_eq!(server.store.audit_tail(1).await?[0].entry.outcome, "tool_error");
    client.cancel().await?;
    Ok(())
}

/// Raw HTTP: what a broken or hostile client sends.
#[tokio::test]
async fn bad_http_input_gets_clear_errors() -> Result<()> {
    let server = support::start(PipelineConfig::default()).await?;
    let http = reqwest::Client::new();
    let post = |body: String| {
        http.post(server.url())
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .body(body)
    };

    let malformed = post("{not json".to_string()).send().await?;
    let status = malformed.status();
    let headers = format!("{:?}", malformed.headers());
    let text = malformed.text().await?;
    assert_eq!(status, 400, "{headers} {text}");
    let malformed: Value = serde_json::from_str(&text)?;
    assert_eq!(malformed["error"]["code"], json!(-32700), "{malformed}");

    let oversized =
        post(format!("{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"pad\":\"{}\"}}", "x".repeat(100_000)))
            .send()
            .await?;
    assert_eq!(oversized.status(), 413);

    let evil_origin = post(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#.to_string())
        .header("origin", "https://evil.example.com")
        .send()
        .await?;
    assert_eq!(evil_origin.status(), 403);

    let rebinding = post(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#.to_string())
        .header("host", "attacker.example.com")
        .send()
        .await?;
    assert_eq!(rebinding.status(), 403);

    let health: Value = http.get(format!("http://{}/healthz", server.address)).send().await?.json().await?;
    assert_eq!(health, json!({"status": "ok", "store": "sqlite"}));
    Ok(())
}

/// The 2025-11-25 era: initialize, a session id, then calls on the session.
#[tokio::test]
async fn the_2025_11_25_session_handshake_works_on_the_same_endpoint() -> Result<()> {
    let server = support::start(PipelineConfig::default()).await?;
    let http = reqwest::Client::new();
    let initialize = http
        .post(server.url())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "legacy", "version": "1"}}})
            .to_string(),
        )
        .send()
        .await?;
    assert_eq!(initialize.status(), 200);
    let session = initialize.headers().get("mcp-session-id").and_then(|value| value.to_str().ok()).map(str::to_string);
    let session = session.expect("a session id");
    let body = initialize.text().await?;
    assert!(body.contains("\"protocolVersion\":\"2025-11-25\""), "{body}");

    let legacy = |body: Value| {
        http.post(server.url())
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .header("mcp-session-id", session.clone())
            .body(body.to_string())
    };
    let initialized = legacy(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).send().await?;
    assert_eq!(initialized.status(), 202);
    let call = legacy(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "legacy"}}}))
    .send()
    .await?;
    let body = call.text().await?;
    assert!(body.contains("echo: legacy (target staging)"), "{body}");
    let records = server.store.audit_tail(1).await?;
    assert_eq!(records[0].entry.client.as_deref(), Some("legacy"));
    Ok(())
}

#[tokio::test]
async fn metrics_count_calls_by_tool_decision_and_outcome() -> Result<()> {
    let server = support::start(PipelineConfig::default()).await?;
    let client = client(&server.url()).await?;
    client.call_tool(CallToolRequestParams::new("echo").with_arguments(arguments(json!({"text": "a"})))).await?;
    client.call_tool(CallToolRequestParams::new("restart_thing")).await?;
    let metrics = reqwest::get(format!("http://{}/metrics", server.address)).await?.text().await?;
    assert!(
        metrics.contains("opsgate_tool_calls_total{tool=\"echo\",decision=\"allow\",outcome=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("opsgate_tool_calls_total{tool=\"restart_thing\",decision=\"deny\",outcome=\"denied\"} 1")
    );
    assert!(metrics.contains("opsgate_tool_call_duration_seconds_count 2"));
    // Each call's record waited for a flush of the SQLite store's log, and each flush is timed.
    let flushes = metrics
        .lines()
        .find_map(|line| line.strip_prefix("opsgate_store_log_flush_seconds_count "))
        .and_then(|count| count.parse::<u64>().ok());
    assert!(flushes.is_some_and(|count| count >= 2), "{metrics}");
    client.cancel().await?;
    Ok(())
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_call_finish_and_audits_it() -> Result<()> {
    let server = support::start(PipelineConfig::default()).await?;
    let client = client(&server.url()).await?;
    let call = tokio::spawn(async move {
        let result = client
            .call_tool(CallToolRequestParams::new("sleep").with_arguments(arguments(json!({"seconds": 0.5}))))
            .await;
        (client, result)
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    server.shutdown.cancel();
    let (_client, result) = call.await?;
    let result = result?;
    assert_eq!(result.is_error, Some(false));
    tokio::time::timeout(Duration::from_secs(10), server.server).await???;
    let records = server.store.audit_tail(1).await?;
    assert_eq!((records[0].entry.tool.as_str(), records[0].entry.outcome.as_str()), ("sleep", "ok"));
    Ok(())
}

/// The audit record must be durable before a response leaves: when it cannot be written, the
/// tool's result is withheld rather than returned unaudited.
#[tokio::test]
async fn a_result_is_withheld_when_its_audit_record_cannot_be_written() -> Result<()> {
    let server = support::start(PipelineConfig::default()).await?;
    let client = client(&server.url()).await?;
    server.store.close().await;
    let result = client
        .call_tool(CallToolRequestParams::new("echo").with_arguments(arguments(json!({"text": "secret result"}))))
        .await?;
    assert_eq!(result.is_error, Some(true));
    let text = serde_json::to_value(&result.content)?[0]["text"].as_str().unwrap_or_default().to_string();
    assert!(text.contains("audit log could not be written") && text.contains("withheld"), "{text}");
    assert!(!text.contains("secret result"), "{text}");
    client.cancel().await?;
    Ok(())
}

#[tokio::test]
async fn read_only_mode_keeps_writes_listed_saying_they_are_disabled_and_denies_them() -> Result<()> {
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    let config = PipelineConfig { read_only: true, ..PipelineConfig::default() };
    let identity = |_: &str| opsgate_server::IdentityConfig::default();
    let server = support::start_with_identity(
        config,
        Vec::new(),
        std::sync::Arc::new(opsgate_server::surface::NoSurface),
        identity,
    )
    .await?;
    // An operator could call the write tool were it not for read-only mode.
    let key = server.store.create_api_key("ops", &["operator".to_string()]).await?;
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(server.url()).auth_header(key.secret.clone()),
    );
    let client = ().serve(transport).await?;
    let tools = client.list_all_tools().await?;
    let description = |name: &str| {
        tools.iter().find(|tool| tool.name == name).and_then(|tool| tool.description.as_deref().map(str::to_string))
    };
    let write = description("restart_thing").expect("the write tool stays listed");
    assert!(write.starts_with("[disabled: opsgate is in read-only mode"), "{write}");
    let read = description("echo").expect("echo is listed");
    assert!(!read.contains("read-only mode"), "{read}");

    let denied = client.call_tool(CallToolRequestParams::new("restart_thing")).await?;
    assert_eq!(denied.is_error, Some(true));
    assert!(serde_json::to_string(&denied.content)?.contains("read-only"));
    assert_eq!(server.write_runs.load(std::sync::atomic::Ordering::SeqCst), 0);
    client.cancel().await?;
    Ok(())
}
