//! Agent memory through the real binary over MCP: an agent builds a knowledge graph with the
//! server-memory tools, another principal reads, searches and opens it, it survives a restart, a
//! delete cascades, bad input and read-only mode are refused, and every call is audited.

use std::path::Path;
use std::process::Output;

use anyhow::Result;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use serde_json::{Value, json};

mod support;
use support::{Client, Served, key};

/// `opsgate --config <config> ARGS`.
fn opsgate(data_dir: &Path, config: &Path, args: &[&str]) -> Result<Output> {
    let mut full = vec!["--config", config.to_str().unwrap_or_default()];
    full.extend_from_slice(args);
    support::opsgate(data_dir, &full)
}

async fn call(client: &Client, tool: &str, arguments: Value) -> Result<CallToolResult> {
    let arguments = arguments.as_object().cloned().unwrap_or_default();
    Ok(client.call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(arguments)).await?)
}

/// Calls `tool` and returns its structured content, failing on an error result.
async fn structured(client: &Client, tool: &str, arguments: Value) -> Result<Value> {
    let result = call(client, tool, arguments).await?;
    anyhow::ensure!(result.is_error != Some(true), "{tool} failed: {}", text(&result));
    Ok(result.structured_content.unwrap_or(Value::Null))
}

fn text(result: &CallToolResult) -> String {
    serde_json::to_value(&result.content).unwrap_or_default()[0]["text"].as_str().unwrap_or_default().to_string()
}

fn names(graph: &Value) -> Vec<&str> {
    graph["entities"].as_array().into_iter().flatten().filter_map(|entity| entity["name"].as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_share_a_memory_graph_that_survives_a_restart_and_every_call_is_audited() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("opsgate.toml");
    std::fs::write(&config, "")?;
    let agent_key = key(dir.path(), &config, "agent", "operator")?;
    let reader_key = key(dir.path(), &config, "reader", "reader")?;

    // An agent builds the graph with server-memory's arguments and gets its result shapes.
    let served = Served::start(&config, dir.path(), opsgate_testkit::free_port(), &[]).await?;
    let agent = served.client(&agent_key).await?;
    let created = structured(
        &agent,
        "create_entities",
        json!({"entities": [
            {"name": "payments-api", "entityType": "service", "observations": ["owned by team-payments"]},
            {"name": "postgres-main", "entityType": "database", "observations": ["primary in eu-west-1"]},
            {"name": "checkout", "entityType": "service", "observations": []}
        ]}),
    )
    .await?;
    assert_eq!(names(&created), ["payments-api", "postgres-main", "checkout"], "{created}");
    assert_eq!(created["entities"][0]["observations"], json!(["owned by team-payments"]), "{created}");
    let again = structured(
        &agent,
        "create_entities",
        json!({"entities": [{"name": "checkout", "entityType": "service", "observations": []}]}),
    )
    .await?;
    assert_eq!(again["entities"], json!([]), "a taken name is skipped: {again}");
    let relations = structured(
        &agent,
        "create_relations",
        json!({"relations": [
            {"from": "payments-api", "to": "postgres-main", "relationType": "depends_on"},
            {"from": "checkout", "to": "payments-api", "relationType": "calls"},
            {"from": "checkout", "to": "payments-api", "relationType": "calls"}
        ]}),
    )
    .await?;
    assert_eq!(relations["relations"].as_array().map(Vec::len), Some(2), "{relations}");
    let added = structured(
        &agent,
        "add_observations",
        json!({"observations": [{"entityName": "payments-api", "contents": ["owned by team-payments", "p99 latency 120ms"]}]}),
    )
    .await?;
    assert_eq!(
        added["results"],
        json!([{"entityName": "payments-api", "addedObservations": ["p99 latency 120ms"]}]),
        "{added}"
    );

    // Bad input is a tool error that names the item; an unknown entity adds nothing.
    let bad = call(
        &agent,
        "create_entities",
        json!({"entities": [{"name": "a", "entityType": "service", "observations": []}, {"name": " ", "entityType": "service", "observations": []}]}),
    )
    .await?;
    assert_eq!(bad.is_error, Some(true));
    assert!(text(&bad).contains("entities[1].name is empty"), "{}", text(&bad));
    let unknown = call(
        &agent,
        "add_observations",
        json!({"observations": [
            {"entityName": "checkout", "contents": ["not added"]},
            {"entityName": "ghost", "contents": ["boo"]}
        ]}),
    )
    .await?;
    assert_eq!(unknown.is_error, Some(true));
    assert!(text(&unknown).contains("observations[1].entityName \"ghost\" is not an entity"), "{}", text(&unknown));

    // Another principal reads, searches and opens what the agent wrote, but may not write.
    let reader = served.client(&reader_key).await?;
    let graph = structured(&reader, "read_graph", json!({})).await?;
    assert_eq!(names(&graph), ["payments-api", "postgres-main", "checkout"], "{graph}");
    assert_eq!(graph["entities"][2]["observations"], json!([]), "nothing of the refused call: {graph}");
    assert_eq!(graph["relations"].as_array().map(Vec::len), Some(2), "{graph}");
    assert_eq!(graph["truncated"], json!(false));
    let found = structured(&reader, "search_nodes", json!({"query": "EU-WEST"})).await?;
    assert_eq!(names(&found), ["postgres-main"], "{found}");
    assert_eq!(
        found["relations"],
        json!([{"from": "payments-api", "to": "postgres-main", "relationType": "depends_on"}]),
        "{found}"
    );
    let opened = structured(&reader, "open_nodes", json!({"names": ["payments-api", "ghost"]})).await?;
    assert_eq!(names(&opened), ["payments-api"], "{opened}");
    assert_eq!(
        opened["entities"][0]["observations"],
        json!(["owned by team-payments", "p99 latency 120ms"]),
        "{opened}"
    );
    // Tools are listed by what the caller may do: all nine for the agent, the reads for the reader.
    let listed = |tools: Vec<rmcp::model::Tool>| -> Vec<String> {
        let memory = [
            "create_entities",
            "create_relations",
            "add_observations",
            "delete_entities",
            "delete_observations",
            "delete_relations",
            "read_graph",
            "search_nodes",
            "open_nodes",
        ];
        tools.into_iter().map(|tool| tool.name.to_string()).filter(|name| memory.contains(&name.as_str())).collect()
    };
    assert_eq!(listed(agent.list_all_tools().await?).len(), 9);
    assert_eq!(listed(reader.list_all_tools().await?), ["read_graph", "search_nodes", "open_nodes"]);
    let refused = call(&reader, "delete_entities", json!({"entityNames": ["payments-api"]})).await?;
    assert_eq!(refused.is_error, Some(true));
    assert!(text(&refused).contains("denied by policy"), "{}", text(&refused));
    agent.cancel().await?;
    reader.cancel().await?;
    served.stop().await?;

    // After a restart the graph is still there; deleting an entity takes its relations along.
    let served = Served::start(&config, dir.path(), opsgate_testkit::free_port(), &[]).await?;
    let reader = served.client(&reader_key).await?;
    let graph = structured(&reader, "read_graph", json!({})).await?;
    assert_eq!(names(&graph), ["payments-api", "postgres-main", "checkout"], "{graph}");
    let agent = served.client(&agent_key).await?;
    let deleted = structured(&agent, "delete_entities", json!({"entityNames": ["payments-api"]})).await?;
    assert_eq!(deleted["success"], json!(true), "{deleted}");
    assert_eq!(deleted["message"], json!("deleted 1 entity with 2 observations and 2 relations"), "{deleted}");
    let graph = structured(&reader, "read_graph", json!({})).await?;
    assert_eq!(names(&graph), ["postgres-main", "checkout"], "{graph}");
    assert_eq!(graph["relations"], json!([]), "{graph}");
    agent.cancel().await?;
    reader.cancel().await?;
    served.stop().await?;

    // Read-only: the write is denied and stores nothing.
    let served = Served::start(&config, dir.path(), opsgate_testkit::free_port(), &["--read-only"]).await?;
    let agent = served.client(&agent_key).await?;
    let denied = call(
        &agent,
        "create_entities",
        json!({"entities": [{"name": "kafka-main", "entityType": "queue", "observations": []}]}),
    )
    .await?;
    assert_eq!(denied.is_error, Some(true));
    assert!(text(&denied).contains("read-only mode"), "{}", text(&denied));
    let opened = structured(&agent, "open_nodes", json!({"names": ["kafka-main"]})).await?;
    assert_eq!(opened["entities"], json!([]), "{opened}");
    agent.cancel().await?;
    served.stop().await?;

    // Every call is in the audit log under its tool's name and its caller.
    let export = opsgate(dir.path(), &config, &["audit", "export"])?;
    let trail: Vec<String> = String::from_utf8_lossy(&export.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|record| record["tool"] != "tools/list")
        .map(|record| {
            format!(
                "{} {} {}",
                record["principal"].as_str().unwrap_or_default(),
                record["tool"].as_str().unwrap_or_default(),
                record["outcome"].as_str().unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        trail,
        [
            "key:agent create_entities ok",
            "key:agent create_entities ok",
            "key:agent create_relations ok",
            "key:agent add_observations ok",
            "key:agent create_entities tool_error",
            "key:agent add_observations tool_error",
            "key:reader read_graph ok",
            "key:reader search_nodes ok",
            "key:reader open_nodes ok",
            "key:reader delete_entities denied",
            "key:reader read_graph ok",
            "key:agent delete_entities ok",
            "key:reader read_graph ok",
            "key:agent create_entities denied",
            "key:agent open_nodes ok",
        ],
        "{trail:#?}"
    );
    let verify = opsgate(dir.path(), &config, &["audit", "verify"])?;
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));

    // The store says who wrote what.
    let store = opsgate_store::Store::open_sqlite(dir.path()).await?;
    let graph = store.memory_graph(10).await?;
    assert!(graph.entities.iter().all(|entity| entity.created_by == "key:agent"), "{graph:?}");
    store.close().await;
    Ok(())
}
