//! The supervisor against real processes: a server that keeps failing is parked with the reason;
//! a stdio server that dies, also in the middle of a call, is restarted, its tools leaving the
//! registry and coming back, with list changes announced to clients, while the other servers
//! never notice; a server that never answers `initialize` times out; one that floods stderr keeps
//! serving; an HTTP upstream that goes away and comes back is used again, on either revision.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use opsgate_core::{CallContext, NoClient, OutputBudget};
use opsgate_gateway::config::{DEFAULT_CALL_TIMEOUT, DEFAULT_MAX_CONCURRENCY};
use opsgate_gateway::supervisor::CRASH_BUDGET;
use opsgate_gateway::{Catalog, Gateway, ServerConfig, ServerStatus, State, Transport};
use opsgate_server::{Change, Registry};
use opsgate_store::Store;

fn stdio_server(name: &str, command: &str, args: Vec<String>) -> ServerConfig {
    ServerConfig {
        name: name.to_string(),
        transport: Transport::Stdio { command: command.to_string(), args, env: BTreeMap::new(), cwd: None },
        source: "test".into(),
        connect_timeout: Duration::from_secs(20),
        call_timeout: DEFAULT_CALL_TIMEOUT,
        max_concurrency: DEFAULT_MAX_CONCURRENCY,
        allow_env: Vec::new(),
        effects: BTreeMap::new(),
    }
}

fn http_server(name: &str, url: String) -> ServerConfig {
    ServerConfig {
        transport: Transport::StreamableHttp { url, headers: BTreeMap::new() },
        ..stdio_server(name, "unused", Vec::new())
    }
}

/// A store for the tool pins, in a directory that lives as long as the test.
async fn pin_store() -> Result<(Store, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    Ok((Store::open_sqlite(dir.path()).await?, dir))
}

/// The only server's status once `done` holds for it (30 s at most).
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

#[tokio::test]
async fn a_server_that_keeps_failing_is_parked_with_the_reason() -> Result<()> {
    let registry = Registry::default();
    let (store, _dir) = pin_store().await?;
    let gateway = Gateway::start(
        &registry,
        &store,
        &Catalog::new(registry.changes().clone()),
        vec![stdio_server("flaky", "sh", vec!["-c".into(), "exit 3".into()])],
    );
    let status = wait_for(&gateway, "parking", |status| status.state == State::Parked).await?;
    assert_eq!(status.n_failures, CRASH_BUDGET);
    let reason = status.last_error.unwrap_or_default();
    assert!(reason.contains(&format!("parked after {CRASH_BUDGET} failures")), "{reason}");
    gateway.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_killed_stdio_server_restarts_and_its_tools_come_back() -> Result<()> {
    let marker = format!("opsgate-supervision-test-{}", std::process::id());
    let script = opsgate_testkit::mcp_server_script("server-memory")?;
    let registry = Registry::default();
    let server = stdio_server("memory", "node", vec![script.display().to_string(), marker.clone()]);
    let (store, _dir) = pin_store().await?;
    let gateway = Gateway::start(&registry, &store, &Catalog::new(registry.changes().clone()), vec![server]);
    wait_for(&gateway, "the first connect", |status| status.state == State::Ready).await?;
    assert!(registry.get("mcp__memory__read_graph").is_some());

    let mut changes = registry.changes().subscribe();
    let killed = std::process::Command::new("pkill").args(["-KILL", "-f", &marker]).status()?;
    assert!(killed.success(), "no process carried {marker}");
    let status =
        wait_for(&gateway, "the restart", |status| status.n_failures == 1 && status.state == State::Ready).await?;
    assert!(status.last_error.is_some_and(|error| error.contains("connection")), "the failure is recorded");
    assert!(registry.get("mcp__memory__read_graph").is_some(), "tools are listed again");
    // Removed when the server died, listed again after the restart: clients hear both.
    let mut n_tool_changes = 0;
    while let Ok(change) = changes.try_recv() {
        if change == Change::ToolsListChanged {
            n_tool_changes += 1;
        }
    }
    assert!(n_tool_changes >= 2, "{n_tool_changes} tool list changes announced");
    gateway.shutdown().await;
    assert!(registry.is_empty(), "shutdown takes the server's tools away");
    Ok(())
}

/// A call to `name` in `registry`, as the pipeline would make it.
async fn call(registry: &Registry, name: &str, arguments: serde_json::Value) -> Result<String> {
    let tool = registry.get(name).with_context(|| format!("{name} is not registered"))?;
    let context = CallContext::new(None, OutputBudget::default(), Arc::new(NoClient));
    let arguments = arguments.as_object().cloned().unwrap_or_default();
    let output = tool.tool.call(context, arguments).await.map_err(|error| anyhow::anyhow!("{error}"))?;
    Ok(output.summary.join("\n"))
}

/// Every status, by server name, once `done` holds for all of them (30 s at most).
async fn wait_for_all(gateway: &Gateway, what: &str, done: impl Fn(&[ServerStatus]) -> bool) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let statuses = gateway.statuses();
        if done(&statuses) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{what} did not happen within 30s: {statuses:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn status<'a>(statuses: &'a [ServerStatus], name: &str) -> Option<&'a ServerStatus> {
    statuses.iter().find(|status| status.name == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_call_fails_the_call_promptly_and_the_others_never_notice() -> Result<()> {
    let marker = format!("opsgate-mid-call-{}", std::process::id());
    let registry = Registry::default();
    let (store, _dir) = pin_store().await?;
    let everything = stdio_server(
        "everything",
        "node",
        vec![
            opsgate_testkit::mcp_server_script("server-everything")?.display().to_string(),
            "stdio".into(),
            marker.clone(),
        ],
    );
    let memory = stdio_server(
        "memory",
        "node",
        vec![opsgate_testkit::mcp_server_script("server-memory")?.display().to_string()],
    );
    let gateway =
        Gateway::start(&registry, &store, &Catalog::new(registry.changes().clone()), vec![everything, memory]);
    wait_for_all(&gateway, "both connecting", |statuses| statuses.iter().all(|status| status.state == State::Ready))
        .await?;

    let mut changes = registry.changes().subscribe();
    let long = {
        let registry = registry.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let outcome = call(
                &registry,
                "mcp__everything__trigger-long-running-operation",
                serde_json::json!({"duration": 30, "steps": 3}),
            )
            .await;
            (outcome, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = std::process::Command::new("pkill").args(["-KILL", "-f", &marker]).status()?;
    assert!(killed.success(), "no process carried {marker}");
    let (outcome, elapsed) = tokio::time::timeout(Duration::from_secs(10), long).await??;
    let error = outcome.expect_err("the call to a killed server fails");
    assert!(error.to_string().contains("everything"), "the error names the server: {error}");
    assert!(elapsed < Duration::from_secs(10), "the call failed after {elapsed:?}, not promptly");

    wait_for_all(&gateway, "the restart", |statuses| {
        status(statuses, "everything").is_some_and(|status| status.n_failures == 1 && status.state == State::Ready)
    })
    .await?;
    assert_eq!(call(&registry, "mcp__everything__echo", serde_json::json!({"message": "back"})).await?, "Echo: back");
    let mut n_tool_changes = 0;
    while let Ok(change) = changes.try_recv() {
        n_tool_changes += usize::from(change == Change::ToolsListChanged);
    }
    assert!(n_tool_changes >= 2, "{n_tool_changes} tool list changes announced");
    let statuses = gateway.statuses();
    let memory = status(&statuses, "memory").context("memory")?;
    assert_eq!((memory.state, memory.n_failures), (State::Ready, 0), "the other server never noticed");
    assert!(call(&registry, "mcp__memory__read_graph", serde_json::json!({})).await?.contains("entities"));
    gateway.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_initialize_times_out_and_one_that_floods_stderr_still_serves() -> Result<()> {
    let registry = Registry::default();
    let (store, _dir) = pin_store().await?;
    // Reads its input and never writes a byte.
    let mut silent = stdio_server("silent", "sh", vec!["-c".into(), "cat >/dev/null".into()]);
    silent.connect_timeout = Duration::from_secs(1);
    let (python, script) = opsgate_testkit::python_mcp_server()?;
    let mut flood = stdio_server("flood", &python.display().to_string(), vec![script.display().to_string()]);
    // About 7 MB a call: far beyond a pipe's buffer, so an undrained stderr would block the server.
    if let Transport::Stdio { env, .. } = &mut flood.transport {
        env.insert("RUNBOOKS_STDERR_FLOOD".into(), "100000".into());
    }
    let gateway = Gateway::start(&registry, &store, &Catalog::new(registry.changes().clone()), vec![silent, flood]);
    wait_for_all(&gateway, "one timing out, the other connecting", |statuses| {
        status(statuses, "silent").is_some_and(|status| status.n_failures >= 1)
            && status(statuses, "flood").is_some_and(|status| status.state == State::Ready)
    })
    .await?;
    let statuses = gateway.statuses();
    let silent = status(&statuses, "silent").context("silent")?;
    assert!(
        silent.last_error.as_deref().is_some_and(|error| error.contains("no answer to initialize within 1s")),
        "{silent:?}"
    );
    for _ in 0..2 {
        let runbook = tokio::time::timeout(
            Duration::from_secs(30),
            call(&registry, "mcp__flood__get_runbook", serde_json::json!({"service": "checkout"})),
        )
        .await
        .context("a call to the flooding server hung")??;
        assert!(runbook.contains("Scale the workers"), "{runbook}");
    }
    tokio::time::timeout(Duration::from_secs(15), gateway.shutdown()).await.context("shutdown hung")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_upstream_that_goes_away_fails_calls_promptly_and_serves_again_when_back() -> Result<()> {
    let mut upstream = opsgate_testkit::HttpMcpServer::everything().await?;
    let registry = Registry::default();
    let (store, _dir) = pin_store().await?;
    let mut server = http_server("remote", upstream.url());
    server.call_timeout = Duration::from_secs(10);
    let gateway = Gateway::start(&registry, &store, &Catalog::new(registry.changes().clone()), vec![server]);
    wait_for(&gateway, "the first connect", |status| status.state == State::Ready).await?;
    assert_eq!(call(&registry, "mcp__remote__echo", serde_json::json!({"message": "up"})).await?, "Echo: up");

    upstream.stop();
    fails_promptly(&registry, "mcp__remote__echo", serde_json::json!({"message": "away"}), "remote").await?;
    upstream.restart().await?;
    let back = answers_again(&gateway, &registry, "mcp__remote__echo", serde_json::json!({"message": "back"})).await?;
    assert_eq!(back, "Echo: back");
    let status = gateway.statuses().into_iter().next().context("one server")?;
    assert!(status.n_failures >= 1, "the broken connection was noticed and replaced: {status:?}");
    gateway.shutdown().await;
    Ok(())
}

/// A call to a server that is away fails within 10 s naming the server: either the call itself
/// fails on the broken connection, or the supervisor noticed first and the tool is gone.
async fn fails_promptly(registry: &Registry, tool: &str, arguments: serde_json::Value, server: &str) -> Result<()> {
    let started = std::time::Instant::now();
    let away = call(registry, tool, arguments).await.err().map(|error| error.to_string()).unwrap_or_default();
    assert!(away.contains(server), "a call to a server that is away must fail naming it: {away:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a call to a server that is away took {:?}",
        started.elapsed()
    );
    Ok(())
}

/// The text of the first call to `tool` that succeeds again, within 40 s of the server's return.
async fn answers_again(
    gateway: &Gateway,
    registry: &Registry,
    tool: &str,
    arguments: serde_json::Value,
) -> Result<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        if let Ok(text) = call(registry, tool, arguments.clone()).await {
            return Ok(text);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("calls did not work again within 40s of the server coming back: {:?}", gateway.statuses());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `get_runbook` of the Python SDK's server, as the registry names it.
const RUNBOOK: &str = "mcp__rb__get_runbook";

/// A Streamable HTTP upstream on the stateless 2026-07-28 revision (the Python SDK's server,
/// which answers in SSE) has its calls posted straight to it (`direct`), with the same results,
/// tool errors and failures as through rmcp's client, concurrently; a server that goes away is
/// noticed by the call that finds it gone and used again once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateless_http_upstream_is_called_directly_with_the_same_answers_and_failures() -> Result<()> {
    let mut upstream = opsgate_testkit::HttpMcpServer::runbooks().await?;
    let registry = Registry::default();
    let (store, _dir) = pin_store().await?;
    let gateway = Gateway::start(
        &registry,
        &store,
        &Catalog::new(registry.changes().clone()),
        vec![http_server("rb", upstream.url())],
    );
    let status = wait_for(&gateway, "the first connect", |status| status.state == State::Ready).await?;
    assert_eq!(status.protocol.as_deref(), Some("2026-07-28"), "{status:?}");
    assert!(status.direct_calls, "a stateless HTTP upstream is called directly: {status:?}");

    let runbook = call(&registry, RUNBOOK, serde_json::json!({"service": "payments-api"})).await?;
    assert!(runbook.contains("Roll back the last deploy"), "{runbook:?}");
    // The tool's own error (`isError`) comes back in the server's words (the Python SDK keeps the
    // exception's text to itself), not as a transport failure.
    let missing =
        call(&registry, RUNBOOK, serde_json::json!({"service": "billing"})).await.err().map(|error| error.to_string());
    let missing = missing.unwrap_or_default();
    assert_eq!(missing, "rb: Error executing tool get_runbook");
    // Arguments the server's schema refuses: its answer, whatever its form, is an error naming it.
    let refused = call(&registry, RUNBOOK, serde_json::json!({"service": {"nested": true}})).await;
    assert!(refused.as_ref().is_err_and(|error| error.to_string().contains("rb")), "{refused:?}");

    // Calls in parallel each get their own answer (request ids and pooled connections).
    let services = ["payments-api", "checkout"];
    let calls = (0..24).map(|index| {
        let registry = registry.clone();
        async move { (index, call(&registry, RUNBOOK, serde_json::json!({"service": services[index % 2]})).await) }
    });
    for (index, answer) in futures::future::join_all(calls).await {
        let expected = if index % 2 == 0 { "Roll back" } else { "Scale the workers" };
        assert!(answer.as_ref().is_ok_and(|text| text.contains(expected)), "call {index}: {answer:?}");
    }
    let connected = gateway.statuses().into_iter().next().context("one server")?;
    assert_eq!(connected.n_failures, 0, "nothing failed yet: {connected:?}");

    upstream.stop();
    fails_promptly(&registry, RUNBOOK, serde_json::json!({"service": "checkout"}), "rb").await?;
    // The failed call itself tells the supervisor, which connects again once the server is back.
    wait_for(&gateway, "the broken connection noticed", |status| status.n_failures >= 1).await?;
    upstream.restart().await?;
    let back = answers_again(&gateway, &registry, RUNBOOK, serde_json::json!({"service": "checkout"})).await?;
    assert!(back.contains("Scale the workers"), "{back:?}");
    gateway.shutdown().await;
    Ok(())
}
