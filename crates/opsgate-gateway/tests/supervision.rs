//! The supervisor against real processes: a server that keeps failing is parked with the reason,
//! and a stdio server that dies is restarted, its tools leaving the registry and coming back,
//! with list changes announced to clients.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
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
    assert!(registry.is_empty());
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
