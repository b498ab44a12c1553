//! Federation end to end: `opsgate stdio` with a project `.opsgate/mcp.json` naming real MCP
//! servers from the npm registry (installed into `.tools/mcp-servers` by `scripts/test.sh`), and
//! an MCP client that lists and calls their tools through opsgate.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_opsgate");

/// The installed package's entry point; missing means `scripts/test.sh` did not run its install.
fn server_script(package: &str) -> Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = root.join(".tools/mcp-servers/node_modules/@modelcontextprotocol").join(package).join("dist/index.js");
    if !script.exists() {
        bail!("{} is missing: run scripts/test.sh, which installs the MCP servers the tests use", script.display());
    }
    Ok(script)
}

fn text_of(result: &rmcp::model::CallToolResult) -> String {
    serde_json::to_value(&result.content).unwrap_or_default()[0]["text"].as_str().unwrap_or_default().to_string()
}

fn arguments(value: Value) -> serde_json::Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_lists_and_calls_federated_servers_and_every_call_is_audited() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let project = dir.path().join("project");
    std::fs::create_dir_all(project.join(".opsgate"))?;
    let config = json!({"mcpServers": {
        "everything": {"command": "node", "args": [server_script("server-everything")?, "stdio"]},
        // A project entry replaces the global one of the same name.
        "memory": {"transport": "stdio", "command": "node", "args": [server_script("server-memory")?],
                   "env": {"MEMORY_FILE_PATH": dir.path().join("memory.jsonl")}},
        // A server that cannot start never keeps the others from working.
        "ghost": {"command": dir.path().join("no-such-server")},
    }});
    std::fs::write(project.join(".opsgate/mcp.json"), serde_json::to_string_pretty(&config)?)?;
    let global = dir.path().join("config/opsgate/mcp.json");
    std::fs::create_dir_all(global.parent().context("parent")?)?;
    std::fs::write(&global, r#"{"mcpServers": {"memory": {"command": "false"}}}"#)?;
    let data_dir = dir.path().join("data");

    let transport = TokioChildProcess::new(tokio::process::Command::new(BIN).configure(|command| {
        command
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("stdio")
            .current_dir(&project)
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .env_remove("OPSGATE_CONFIG")
            .stderr(Stdio::null());
    }))?;
    let client = ().serve(transport).await.context("handshake with opsgate stdio")?;

    // Federated tools appear as their servers connect.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let names = loop {
        let names: Vec<String> = client.list_all_tools().await?.into_iter().map(|tool| tool.name.to_string()).collect();
        let wanted = ["mcp__everything__echo", "mcp__memory__read_graph", "mcp__memory__create_entities"];
        if wanted.iter().all(|name| names.iter().any(|listed| listed == name)) {
            break names;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("federated tools did not appear within 60s: {names:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(names.iter().any(|name| name == "approval_status"), "built-in tools stay listed: {names:?}");
    assert!(!names.iter().any(|name| name.starts_with("mcp__ghost__")), "{names:?}");

    let echo = client
        .call_tool(
            CallToolRequestParams::new("mcp__everything__echo").with_arguments(arguments(json!({"message": "hi"}))),
        )
        .await?;
    assert_eq!(echo.is_error, Some(false), "{echo:?}");
    assert_eq!(text_of(&echo), "Echo: hi");

    let created = client
        .call_tool(CallToolRequestParams::new("mcp__memory__create_entities").with_arguments(arguments(json!({
            "entities": [{"name": "payments-api", "entityType": "service", "observations": ["owned by team-pay"]}]
        }))))
        .await?;
    assert_eq!(created.is_error, Some(false), "{created:?}");
    let graph = client.call_tool(CallToolRequestParams::new("mcp__memory__read_graph")).await?;
    assert!(text_of(&graph).contains("owned by team-pay"), "{}", text_of(&graph));

    // The server's own validation error comes back as a tool error, not a crash.
    let bad = client
        .call_tool(
            CallToolRequestParams::new("mcp__everything__echo").with_arguments(arguments(json!({"message": 42}))),
        )
        .await?;
    assert_eq!(bad.is_error, Some(true), "{bad:?}");
    client.cancel().await?;

    let export = Command::new(BIN)
        .args(["audit", "export", "--data-dir"])
        .arg(&data_dir)
        .current_dir(&project)
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .output()?;
    let records: Vec<String> = String::from_utf8_lossy(&export.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|record| {
            format!(
                "{}@{}:{}",
                record["tool"].as_str().unwrap_or_default(),
                record["server"].as_str().unwrap_or("-"),
                record["outcome"].as_str().unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        records,
        [
            "mcp__everything__echo@everything:ok",
            "mcp__memory__create_entities@memory:ok",
            "mcp__memory__read_graph@memory:ok",
            "mcp__everything__echo@everything:tool_error",
        ]
    );
    Ok(())
}
