//! Federation end to end: `opsgate stdio` with a project `.opsgate/mcp.json` naming real MCP
//! servers from the npm registry (see `opsgate_testkit::mcp_server_script`), and an MCP client
//! that lists and calls their tools through opsgate.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use opsgate_testkit::mcp_server_script;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_opsgate");

/// The fake GitHub token the Python test server puts in its on-call resource and triage prompt.
const FAKE_TOKEN: &str = "ghp_16C7e42F292c6912E7710c838347Ae178B4a";

fn text_of(result: &rmcp::model::CallToolResult) -> String {
    serde_json::to_value(&result.content).unwrap_or_default()[0]["text"].as_str().unwrap_or_default().to_string()
}

fn arguments(value: Value) -> serde_json::Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

/// Calls `name` with `arguments` through `client`.
async fn call(
    client: &rmcp::service::RunningService<rmcp::RoleClient, ()>,
    name: &str,
    arguments: Value,
) -> Result<rmcp::model::CallToolResult> {
    let params = CallToolRequestParams::new(name.to_string()).with_arguments(self::arguments(arguments));
    Ok(client.call_tool(params).await?)
}

/// Every audit record in `data_dir` as `tool@server:outcome`.
fn audit_summary(data_dir: &Path, project: &Path) -> Result<Vec<String>> {
    let export =
        Command::new(BIN).args(["audit", "export", "--data-dir"]).arg(data_dir).current_dir(project).output()?;
    Ok(String::from_utf8_lossy(&export.stdout)
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
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_lists_calls_and_reads_across_federated_servers_and_every_call_is_audited() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let project = dir.path().join("project");
    std::fs::create_dir_all(project.join(".opsgate"))?;
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files)?;
    std::fs::write(files.join("notes.txt"), "payments-api deploys on Tuesdays\n")?;
    let http_everything = opsgate_testkit::HttpMcpServer::everything().await?;
    let (python, runbooks) = opsgate_testkit::python_mcp_server()?;
    let config = json!({"mcpServers": {
        "everything": {"command": "node", "args": [mcp_server_script("server-everything")?, "stdio"]},
        "everything-http": {"url": http_everything.url()},
        // A project entry replaces the global one of the same name.
        "memory": {"transport": "stdio", "command": "node", "args": [mcp_server_script("server-memory")?],
                   "env": {"MEMORY_FILE_PATH": dir.path().join("memory.jsonl")}},
        "files": {"command": "node", "args": [mcp_server_script("server-filesystem")?, &files]},
        "runbooks": {"command": python, "args": [runbooks]},
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
    let wanted = [
        "mcp__everything__echo",
        "mcp__everything-http__echo",
        "mcp__memory__read_graph",
        "mcp__memory__create_entities",
        "mcp__files__read_text_file",
        "mcp__runbooks__get_runbook",
    ];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let names = loop {
        let names: Vec<String> = client.list_all_tools().await?.into_iter().map(|tool| tool.name.to_string()).collect();
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

    let echo = call(&client, "mcp__everything__echo", json!({"message": "hi"})).await?;
    assert_eq!(echo.is_error, Some(false), "{echo:?}");
    assert_eq!(text_of(&echo), "Echo: hi");
    let echo = call(&client, "mcp__everything-http__echo", json!({"message": "over http"})).await?;
    assert_eq!(text_of(&echo), "Echo: over http", "{echo:?}");

    let created = call(
        &client,
        "mcp__memory__create_entities",
        json!({
            "entities": [{"name": "payments-api", "entityType": "service", "observations": ["owned by team-pay"]}]
        }),
    )
    .await?;
    assert_eq!(created.is_error, Some(false), "{created:?}");
    let graph = call(&client, "mcp__memory__read_graph", json!({})).await?;
    assert!(text_of(&graph).contains("owned by team-pay"), "{}", text_of(&graph));

    let notes = call(&client, "mcp__files__read_text_file", json!({"path": files.join("notes.txt")})).await?;
    assert!(text_of(&notes).contains("deploys on Tuesdays"), "{notes:?}");
    let runbook = call(&client, "mcp__runbooks__get_runbook", json!({"service": "payments-api"})).await?;
    assert!(text_of(&runbook).contains("Roll back the last deploy"), "{runbook:?}");

    // The server's own validation error comes back as a tool error, not a crash.
    let bad = call(&client, "mcp__everything__echo", json!({"message": 42})).await?;
    assert_eq!(bad.is_error, Some(true), "{bad:?}");

    // Resources: names take the server's prefix, URIs stay the server's own and read through.
    let resources = client.list_all_resources().await?;
    let index = resources.iter().find(|resource| resource.name == "mcp__runbooks__index").context("runbooks index")?;
    assert_eq!(index.uri, "runbooks://index");
    let read = client.read_resource(rmcp::model::ReadResourceRequestParams::new("runbooks://index")).await?;
    assert!(serde_json::to_string(&read.contents)?.contains("payments-api"), "{read:?}");
    let document = resources
        .iter()
        .find(|resource| resource.name.starts_with("mcp__everything__") && resource.uri.starts_with("demo://"))
        .with_context(|| format!("a server-everything resource in {resources:?}"))?;
    let read = client.read_resource(rmcp::model::ReadResourceRequestParams::new(document.uri.clone())).await?;
    assert!(!read.contents.is_empty(), "{read:?}");
    // A URI no server listed goes to the server whose template it fits.
    let templated = "demo://resource/dynamic/text/7";
    let read = client.read_resource(rmcp::model::ReadResourceRequestParams::new(templated)).await?;
    assert!(serde_json::to_string(&read.contents)?.contains("Resource 7"), "{read:?}");
    // Secrets in a server's text are masked on the way through.
    let read = client.read_resource(rmcp::model::ReadResourceRequestParams::new("runbooks://oncall")).await?;
    let oncall = serde_json::to_string(&read.contents)?;
    assert!(oncall.contains("pager.example") && !oncall.contains(FAKE_TOKEN), "{oncall}");

    // Prompts: prefixed names, got from their server.
    let prompts: Vec<String> = client.list_all_prompts().await?.into_iter().map(|prompt| prompt.name).collect();
    for name in ["mcp__runbooks__triage", "mcp__everything__simple-prompt", "mcp__everything-http__simple-prompt"] {
        assert!(prompts.iter().any(|prompt| prompt == name), "{name} in {prompts:?}");
    }
    let mut triage = rmcp::model::GetPromptRequestParams::new("mcp__runbooks__triage");
    triage.arguments = Some(arguments(json!({"service": "checkout"})));
    let triage = serde_json::to_string(&client.get_prompt(triage).await?.messages)?;
    assert!(triage.contains("incident on checkout") && !triage.contains(FAKE_TOKEN), "{triage}");
    assert!(triage.contains("runbooks://oncall") && triage.contains("pager.example"), "the embedded page: {triage}");
    let unknown = client.get_prompt(rmcp::model::GetPromptRequestParams::new("mcp__runbooks__nope")).await;
    assert!(unknown.is_err(), "{unknown:?}");
    client.cancel().await?;

    assert_eq!(
        audit_summary(&data_dir, &project)?,
        [
            "mcp__everything__echo@everything:ok",
            "mcp__everything-http__echo@everything-http:ok",
            "mcp__memory__create_entities@memory:ok",
            "mcp__memory__read_graph@memory:ok",
            "mcp__files__read_text_file@files:ok",
            "mcp__runbooks__get_runbook@runbooks:ok",
            "mcp__everything__echo@everything:tool_error",
        ]
    );
    Ok(())
}

/// `opsgate` in `project` (data in `project/data`, no global `mcp.json`) as the local user
/// `user`, with `config`.
fn opsgate_as(project: &Path, user: &str, config: &Path, args: &[&str]) -> Result<Output> {
    Ok(Command::new(BIN)
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(project.join("data"))
        .args(args)
        .current_dir(project)
        .env("XDG_CONFIG_HOME", project.join("no-global-config"))
        .env("USER", user)
        .env_remove("OPSGATE_CONFIG")
        .output()?)
}

/// A federated write that policy sends to humans waits for approval, and the approver's
/// `opsgate approvals approve` runs it, reaching the server from the CLI process.
#[test]
fn a_federated_write_runs_once_another_user_approves_it_from_the_cli() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let project = dir.path().join("project");
    std::fs::create_dir_all(project.join(".opsgate"))?;
    let memory_file = dir.path().join("memory.jsonl");
    let servers = json!({"mcpServers": {"memory": {
        "command": "node", "args": [mcp_server_script("server-memory")?], "env": {"MEMORY_FILE_PATH": memory_file}
    }}});
    std::fs::write(project.join(".opsgate/mcp.json"), servers.to_string())?;
    std::fs::write(
        project.join("memory.rego"),
        "package opsgate\n\napproval contains {\"approvals_required\": 1, \"approver_roles\": [\"approver\"], \
         \"reason\": \"memory is shared\"} if {\n\tinput.tool.server == \"memory\"\n\tinput.tool.effect != \"read\"\n}\n",
    )?;
    let config_for = |roles: &str| -> Result<std::path::PathBuf> {
        let path = project.join(format!("{roles}.toml"));
        std::fs::write(&path, format!("[identity]\nlocal_roles = [{roles:?}]\n[policy]\nfiles = [\"memory.rego\"]\n"))?;
        Ok(path)
    };
    let (operator, approver) = (config_for("operator")?, config_for("approver")?);

    let entities = r#"entities:=[{"name":"payments-api","entityType":"service","observations":["owned by team-pay"]}]"#;
    let requested = opsgate_as(
        &project,
        "alice",
        &operator,
        &["call", "mcp__memory__create_entities", "--json", "--arg", entities],
    )?;
    let pending: Value = serde_json::from_slice(&requested.stdout)
        .with_context(|| format!("call output: {}", String::from_utf8_lossy(&requested.stderr)))?;
    assert_eq!(pending["status"], "pending_approval", "{pending}");
    let id = pending["approval_id"].as_str().context("approval id")?.to_string();
    assert!(!memory_file.exists() || !std::fs::read_to_string(&memory_file)?.contains("payments-api"));

    let approved = opsgate_as(&project, "bob", &approver, &["approvals", "approve", &id])?;
    let stdout = String::from_utf8_lossy(&approved.stdout);
    assert!(approved.status.success(), "{stdout}{}", String::from_utf8_lossy(&approved.stderr));
    assert!(stdout.contains("executed by user:bob"), "{stdout}");
    assert!(std::fs::read_to_string(&memory_file)?.contains("owned by team-pay"));
    Ok(())
}
