//! A Streamable HTTP upstream on the stateless 2026-07-28 revision (the Python SDK's server,
//! which answers in SSE): its calls are posted straight to it (`direct`), with the same
//! results, tool errors and failures as through rmcp's client, concurrently, and a server that
//! goes away is noticed by the call that finds it gone and used again once it is back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use opsgate_core::{CallContext, NoClient, OutputBudget};
use opsgate_gateway::config::{DEFAULT_CALL_TIMEOUT, DEFAULT_MAX_CONCURRENCY};
use opsgate_gateway::{Catalog, Gateway, ServerConfig, ServerStatus, State, Transport};
use opsgate_server::Registry;
use opsgate_store::Store;
use serde_json::json;

const TOOL: &str = "mcp__rb__get_runbook";

fn http_server(url: String) -> ServerConfig {
    ServerConfig {
        name: "rb".to_string(),
        transport: Transport::StreamableHttp { url, headers: BTreeMap::new() },
        source: "test".into(),
        connect_timeout: Duration::from_secs(20),
        call_timeout: DEFAULT_CALL_TIMEOUT,
        max_concurrency: DEFAULT_MAX_CONCURRENCY,
        allow_env: Vec::new(),
        effects: BTreeMap::new(),
    }
}

async fn call(registry: &Registry, arguments: serde_json::Value) -> Result<String> {
    let tool = registry.get(TOOL).with_context(|| format!("{TOOL} is not registered"))?;
    let context = CallContext::new(None, OutputBudget::default(), Arc::new(NoClient));
    let arguments = arguments.as_object().cloned().unwrap_or_default();
    let output = tool.tool.call(context, arguments).await.map_err(|error| anyhow::anyhow!("{error}"))?;
    Ok(output.summary.join("\n"))
}

async fn wait_for(gateway: &Gateway, what: &str, done: impl Fn(&ServerStatus) -> bool) -> Result<ServerStatus> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = gateway.statuses().into_iter().next().context("one server")?;
        if done(&status) {
            return Ok(status);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{what} did not happen within 30s: {status:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateless_http_upstream_is_called_directly_with_the_same_answers_and_failures() -> Result<()> {
    let mut upstream = opsgate_testkit::HttpMcpServer::runbooks().await?;
    let registry = Registry::default();
    let dir = tempfile::tempdir()?;
    let store = Store::open_sqlite(dir.path()).await?;
    let gateway =
        Gateway::start(&registry, &store, &Catalog::new(registry.changes().clone()), vec![http_server(upstream.url())]);
    let status = wait_for(&gateway, "the first connect", |status| status.state == State::Ready).await?;
    assert_eq!(status.protocol.as_deref(), Some("2026-07-28"), "{status:?}");
    assert!(status.direct_calls, "a stateless HTTP upstream is called directly: {status:?}");

    let runbook = call(&registry, json!({"service": "payments-api"})).await?;
    assert!(runbook.contains("Roll back the last deploy"), "{runbook:?}");
    // The tool's own error (`isError`) comes back in the server's words (the Python SDK keeps the
    // exception's text to itself), not as a transport failure.
    let missing = call(&registry, json!({"service": "billing"})).await.err().map(|error| error.to_string());
    let missing = missing.unwrap_or_default();
    assert_eq!(missing, "rb: Error executing tool get_runbook");
    // Arguments the server's schema refuses: its answer, whatever its form, is an error naming it.
    let refused = call(&registry, json!({"service": {"nested": true}})).await;
    assert!(refused.as_ref().is_err_and(|error| error.to_string().contains("rb")), "{refused:?}");

    // Calls in parallel each get their own answer (request ids and pooled connections).
    let services = ["payments-api", "checkout"];
    let calls = (0..24).map(|index| {
        let registry = registry.clone();
        async move { (index, call(&registry, json!({"service": services[index % 2]})).await) }
    });
    for (index, answer) in futures::future::join_all(calls).await {
        let expected = if index % 2 == 0 { "Roll back" } else { "Scale the workers" };
        assert!(answer.as_ref().is_ok_and(|text| text.contains(expected)), "call {index}: {answer:?}");
    }
    let connected = gateway.statuses().into_iter().next().context("one server")?;
    assert_eq!(connected.n_failures, 0, "nothing failed yet: {connected:?}");

    upstream.stop();
    let started = std::time::Instant::now();
    let away = call(&registry, json!({"service": "checkout"})).await.err().map(|error| error.to_string());
    let away = away.unwrap_or_default();
    assert!(away.contains("rb"), "a call to a server that is away must fail naming it: {away:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a call to a server that is away took {:?}",
        started.elapsed()
    );
    // The failed call itself tells the supervisor, which connects again once the server is back.
    wait_for(&gateway, "the broken connection noticed", |status| status.n_failures >= 1).await?;
    upstream.restart().await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        if let Ok(text) = call(&registry, json!({"service": "checkout"})).await {
            assert!(text.contains("Scale the workers"), "{text:?}");
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("calls did not work again within 40s of the server coming back: {:?}", gateway.statuses());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    gateway.shutdown().await;
    Ok(())
}
