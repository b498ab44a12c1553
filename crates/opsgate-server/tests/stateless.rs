//! The stateless `tools/call` path (`opsgate_server::stateless`): which requests it answers
//! and which it leaves to rmcp, that a call answered either way gets the same answer, and that
//! a call whose client hangs up is cancelled and audited rather than dropped half done.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use opsgate_core::{CallContext, Effect, Principal, TaskSupport, Tool, ToolError, ToolOutput, ToolSpec};
use opsgate_server::PipelineConfig;
use opsgate_server::stateless;
use opsgate_server::surface::NoSurface;
use serde_json::{Map, Value, json};

/// Answers at once; may run as a background task.
struct Detachable(ToolSpec);

#[async_trait::async_trait]
impl Tool for Detachable {
    fn spec(&self) -> &ToolSpec {
        &self.0
    }

    async fn call(&self, _context: CallContext, _arguments: Map<String, Value>) -> Result<ToolOutput, ToolError> {
        Ok(ToolOutput::text("done"))
    }

    fn task_support(&self) -> TaskSupport {
        TaskSupport::Optional
    }
}

async fn start() -> Result<support::TestServer> {
    let routed = support::spec(
        "routed_echo",
        Effect::Read,
        None,
        json!({"text": {"type": "string"}, "region": {"type": "string", "x-mcp-header": "Region"}}),
        &["text"],
    );
    let tools: Vec<Arc<dyn Tool>> = vec![
        Arc::new(support::Echo(routed)),
        Arc::new(Detachable(support::spec("detachable", Effect::Read, None, json!({}), &[]))),
    ];
    support::start_with(PipelineConfig::default(), tools, Arc::new(NoSurface)).await
}

/// A plain 2026-07-28 `tools/call` of `echo`, as a client sends it.
struct Plain {
    headers: Vec<(&'static str, String)>,
    body: Value,
    path: &'static str,
    principal: bool,
}

impl Plain {
    fn new(server: &support::TestServer) -> Plain {
        Plain {
            headers: vec![
                ("host", server.address.to_string()),
                ("content-type", "application/json".to_string()),
                ("accept", "application/json, text/event-stream".to_string()),
                ("mcp-protocol-version", "2026-07-28".to_string()),
                ("mcp-method", "tools/call".to_string()),
                ("mcp-name", "echo".to_string()),
            ],
            body: json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
            "name": "echo", "arguments": {"text": "hi"},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientInfo": {"name": "stateless-test", "version": "1"},
                "io.modelcontextprotocol/clientCapabilities": {},
            }}}),
            path: "/mcp",
            principal: true,
        }
    }

    fn set(mut self, name: &'static str, value: &str) -> Plain {
        self.headers.retain(|(header, _)| *header != name);
        self.headers.push((name, value.to_string()));
        self
    }

    fn add(mut self, name: &'static str, value: &str) -> Plain {
        self.headers.push((name, value.to_string()));
        self
    }

    fn without(mut self, name: &'static str) -> Plain {
        self.headers.retain(|(header, _)| *header != name);
        self
    }

    fn body(mut self, edit: impl FnOnce(&mut Value)) -> Plain {
        edit(&mut self.body);
        self
    }

    fn calling(self, tool: &str) -> Plain {
        let tool = tool.to_string();
        self.set("mcp-name", &tool).body(|body| body["params"]["name"] = json!(tool))
    }

    fn answered_here(self, server: &support::TestServer) -> Result<bool> {
        let mut request = http::Request::post(self.path);
        for (name, value) in &self.headers {
            request = request.header(*name, value);
        }
        let mut request = request.body(())?;
        if self.principal {
            request.extensions_mut().insert(Principal::anonymous());
        }
        let (parts, ()) = request.into_parts();
        Ok(stateless::take(&server.state, &parts, self.body.to_string().as_bytes()).is_some())
    }
}

fn meta(key: &str, value: Value) -> impl FnOnce(&mut Value) {
    let key = key.to_string();
    move |body: &mut Value| body["params"]["_meta"][key] = value
}

#[tokio::test]
async fn a_plain_call_is_answered_here_and_anything_unusual_by_rmcp() -> Result<()> {
    let server = start().await?;
    let plain = || Plain::new(&server);
    assert!(plain().answered_here(&server)?, "the plain call");
    assert!(plain().set("host", "LOCALHOST").answered_here(&server)?, "an allowed host, any case");
    assert!(plain().set("accept", "text/event-stream,application/json").answered_here(&server)?);
    assert!(plain().set("content-type", "application/json; charset=utf-8").answered_here(&server)?);
    assert!(plain().calling("detachable").answered_here(&server)?, "a task-capable tool, client without tasks");
    assert!(
        plain()
            .body(|body| body["params"]["_meta"]
                .as_object_mut()
                .map(|meta| meta.remove("io.modelcontextprotocol/clientInfo"))
                .map(drop)
                .unwrap_or(()))
            .answered_here(&server)?,
        "clientInfo is optional"
    );

    let tasks = json!({"extensions": {"io.modelcontextprotocol/tasks": {}}});
    let base64_echo = "=?base64?ZWNobw==?=";
    let cases: Vec<(&str, Plain)> = vec![
        ("a session", plain().add("mcp-session-id", "abc")),
        ("a resumed stream", plain().add("last-event-id", "1")),
        ("a browser origin", plain().add("origin", "http://localhost:3000")),
        ("a host not allowed", plain().set("host", "evil.example:80")),
        ("no host", plain().without("host")),
        ("weighted Accept", plain().set("accept", "application/json;q=0.9, text/event-stream")),
        ("Accept without SSE", plain().set("accept", "application/json")),
        ("two Accept headers", plain().set("accept", "application/json").add("accept", "text/event-stream")),
        ("a text body", plain().set("content-type", "text/plain")),
        ("an older revision's header", plain().set("mcp-protocol-version", "2025-11-25")),
        ("no protocol header", plain().without("mcp-protocol-version")),
        ("another method's header", plain().set("mcp-method", "tools/list")),
        ("no Mcp-Name", plain().without("mcp-name")),
        ("a different Mcp-Name", plain().set("mcp-name", "sleep")),
        ("a Base64 Mcp-Name", plain().set("mcp-name", base64_echo)),
        ("two Mcp-Name headers", plain().add("mcp-name", "echo")),
        ("an Mcp-Param header", plain().add("mcp-param-region", "eu")),
        ("a tool that names Mcp-Param headers", plain().calling("routed_echo")),
        ("an unknown tool", plain().calling("no_such_tool")),
        (
            "a task-capable tool for a client with tasks",
            plain().calling("detachable").body(meta("io.modelcontextprotocol/clientCapabilities", tasks)),
        ),
        ("a progress token", plain().body(meta("progressToken", json!("p1")))),
        ("a log level", plain().body(meta("io.modelcontextprotocol/logLevel", json!("debug")))),
        (
            "an older revision in _meta",
            plain().body(meta("io.modelcontextprotocol/protocolVersion", json!("2025-11-25"))),
        ),
        (
            "no client capabilities",
            plain().body(|body| {
                body["params"]["_meta"] = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28"})
            }),
        ),
        ("another method in the body", plain().body(|body| body["method"] = json!("tools/list"))),
        ("a notification", plain().body(|body| drop(body.as_object_mut().map(|body| body.remove("id"))))),
        ("a key JSON-RPC does not define", plain().body(|body| body["extra"] = json!(1))),
        ("a parameter tools/call does not define", plain().body(|body| body["params"]["task"] = json!({"ttl": 1}))),
        ("another JSON-RPC version", plain().body(|body| body["jsonrpc"] = json!("1.0"))),
        ("a batch", plain().body(|body| *body = json!([body.clone()]))),
        ("another path", Plain { path: "/mcp/other", ..plain() }),
        ("no principal", Plain { principal: false, ..plain() }),
    ];
    for (case, request) in cases {
        assert!(!request.answered_here(&server)?, "{case} is rmcp's to answer");
    }
    Ok(())
}

/// Status and body of one POST.
async fn post(server: &support::TestServer, accept: &str, tool: &str, arguments: Value) -> Result<(u16, Value)> {
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
    "name": tool, "arguments": arguments,
    "_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    }}});
    let response = reqwest::Client::new()
        .post(server.url())
        .header("content-type", "application/json")
        .header("accept", accept)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", tool)
        .body(body.to_string())
        .send()
        .await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    Ok((status, serde_json::from_str(&text).with_context(|| format!("{status}: {text}"))?))
}

#[tokio::test]
async fn a_call_gets_the_same_answer_from_either_path() -> Result<()> {
    let server = start().await?;
    // A weight sends the same request to rmcp (see the test above).
    let (here, rmcp) = ("application/json, text/event-stream", "application/json, text/event-stream;q=1");
    let cases = [
        ("echo", json!({"text": "hi", "target": "staging", "rows": 3})),
        ("echo", json!({"text": 5})),
        ("restart_thing", json!({})),
        ("sleep", json!({"seconds": 0})),
        ("detachable", json!({})),
    ];
    for (tool, arguments) in &cases {
        let answered_here = post(&server, here, tool, (*arguments).clone()).await?;
        let answered_by_rmcp = post(&server, rmcp, tool, (*arguments).clone()).await?;
        assert_eq!(answered_here, answered_by_rmcp, "{tool} {arguments}");
        assert_eq!(answered_here.0, 200);
        assert!(answered_here.1.get("result").is_some(), "{tool}: {}", answered_here.1);
    }
    let records = server.store.audit_tail(20).await?;
    assert_eq!(records.len(), 2 * cases.len(), "each call is audited once, either way");
    let outcomes: Vec<&str> = records.iter().map(|record| record.entry.outcome.as_str()).collect();
    assert_eq!(outcomes, ["ok", "ok", "tool_error", "tool_error", "denied", "denied", "ok", "ok", "ok", "ok"]);
    Ok(())
}

#[tokio::test]
async fn a_client_that_hangs_up_cancels_its_call_which_is_audited() -> Result<()> {
    let server = start().await?;
    let started = Instant::now();
    let hung_up = tokio::time::timeout(
        Duration::from_millis(300),
        post(&server, "application/json, text/event-stream", "sleep", json!({"seconds": 30})),
    )
    .await;
    assert!(hung_up.is_err(), "the call is still running when the client gives up");
    let record = loop {
        if let Some(record) = server.store.audit_tail(1).await?.pop() {
            break record;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no audit record 10 s after the client hung up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!((record.entry.tool.as_str(), record.entry.outcome.as_str()), ("sleep", "tool_error"));
    assert!(record.entry.error.as_deref().is_some_and(|error| error.contains("cancelled")), "{:?}", record.entry.error);
    Ok(())
}
