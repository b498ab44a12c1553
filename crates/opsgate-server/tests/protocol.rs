//! End-to-end tests of what the MCP handler does beside plain calls, over raw 2026-07-28 HTTP:
//! input-required rounds (sealed state, audit per round), background tasks (detach, park on a
//! question, cancel, audit when done), missing client capabilities, panicking tools,
//! `subscriptions/listen` fed by the registry's change feed, and per-request log levels.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use opsgate_core::{
    CallContext, ClientCapability, InputRequest, TaskSupport, Tool, ToolError, ToolOutput, ToolSpec, parse_arguments,
};
use opsgate_server::surface::NoSurface;
use opsgate_server::{Change, PipelineConfig};
use serde::Deserialize;
use serde_json::{Map, Value, json};

// ---- tools ------------------------------------------------------------------------------------

/// Asks for a confirmation and reports what it got, with the state it handed out.
struct Confirm(ToolSpec);

#[derive(Deserialize)]
struct ConfirmArguments {
    file: String,
}

#[async_trait::async_trait]
impl Tool for Confirm {
    fn spec(&self) -> &ToolSpec {
        &self.0
    }

    async fn call(&self, context: CallContext, arguments: Map<String, Value>) -> Result<ToolOutput, ToolError> {
        let arguments: ConfirmArguments = parse_arguments(arguments)?;
        let question = InputRequest::elicitation(
            format!("Delete {}?", arguments.file),
            json!({"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}),
        );
        let state = json!({"file": arguments.file});
        let answers = context.ask(BTreeMap::from([("confirm".to_string(), question)]), Some(state)).await?;
        let ok = answers["confirm"]["content"]["ok"].as_bool().unwrap_or(false);
        let state = context.input.state.clone().unwrap_or(Value::Null);
        Ok(ToolOutput::text(format!("ok={ok} state={state}")))
    }
}

/// Needs the client's model.
struct Sample(ToolSpec);

#[async_trait::async_trait]
impl Tool for Sample {
    fn spec(&self) -> &ToolSpec {
        &self.0
    }

    async fn call(&self, context: CallContext, _arguments: Map<String, Value>) -> Result<ToolOutput, ToolError> {
        let answers = context.ask(BTreeMap::from([("q".to_string(), InputRequest::sampling("hi", 10))]), None).await?;
        Ok(ToolOutput::text(answers["q"].to_string()))
    }
}

/// Breaks.
struct Panics(ToolSpec, bool);

#[async_trait::async_trait]
impl Tool for Panics {
    fn spec(&self) -> &ToolSpec {
        &self.0
    }

    async fn call(&self, context: CallContext, _arguments: Map<String, Value>) -> Result<ToolOutput, ToolError> {
        context.client.detach().await;
        panic!("a bug in a tool");
    }

    fn task_support(&self) -> TaskSupport {
        if self.1 { TaskSupport::Optional } else { TaskSupport::Forbidden }
    }
}

/// Detaches, optionally asks a question from the task, then sleeps and answers.
struct Background(ToolSpec, TaskSupport);

#[derive(Deserialize)]
struct BackgroundArguments {
    millis: u64,
    #[serde(default)]
    ask: bool,
}

#[async_trait::async_trait]
impl Tool for Background {
    fn spec(&self) -> &ToolSpec {
        &self.0
    }

    async fn call(&self, context: CallContext, arguments: Map<String, Value>) -> Result<ToolOutput, ToolError> {
        let arguments: BackgroundArguments = parse_arguments(arguments)?;
        context.client.detach().await;
        let mut answer = Value::Null;
        if arguments.ask {
            let question = InputRequest::elicitation("go on?", json!({"type": "object", "properties": {}}));
            let answers = context.ask(BTreeMap::from([("go".to_string(), question)]), None).await?;
            answer = answers["go"].clone();
        }
        tokio::time::sleep(Duration::from_millis(arguments.millis)).await;
        Ok(ToolOutput::text(format!("slept {}ms, answer {answer}", arguments.millis)))
    }

    fn task_support(&self) -> TaskSupport {
        self.1
    }
}

/// Logs at info and at error.
struct Logs(ToolSpec);

#[async_trait::async_trait]
impl Tool for Logs {
    fn spec(&self) -> &ToolSpec {
        &self.0
    }

    async fn call(&self, context: CallContext, _arguments: Map<String, Value>) -> Result<ToolOutput, ToolError> {
        context.client.log("info", None, json!("an info line")).await;
        context.client.log("error", None, json!("an error line")).await;
        Ok(ToolOutput::text("logged"))
    }
}

fn tools() -> Vec<Arc<dyn Tool>> {
    use opsgate_core::Effect::Read;
    let none = json!({});
    let background = json!({"millis": {"type": "integer"}, "ask": {"type": "boolean"}});
    vec![
        Arc::new(Confirm(support::spec("confirm", Read, None, json!({"file": {"type": "string"}}), &["file"]))),
        Arc::new(Sample(support::spec("sample", Read, None, none.clone(), &[]))),
        Arc::new(Panics(support::spec("panics", Read, None, none.clone(), &[]), false)),
        Arc::new(Panics(support::spec("panics_in_task", Read, None, none.clone(), &[]), true)),
        Arc::new(Background(
            support::spec("background", Read, None, background.clone(), &["millis"]),
            TaskSupport::Optional,
        )),
        Arc::new(Background(
            support::spec("only_background", Read, None, background, &["millis"]),
            TaskSupport::Required,
        )),
        Arc::new(Logs(support::spec("logs", Read, None, none, &[]))),
    ]
}

async fn start() -> Result<support::TestServer> {
    support::start_with(PipelineConfig::default(), tools(), Arc::new(NoSurface)).await
}

// ---- a raw 2026-07-28 client ------------------------------------------------------------------

const TASKS: &str = "io.modelcontextprotocol/tasks";

fn all_capabilities() -> Value {
    json!({"elicitation": {}, "sampling": {}, "roots": {}, "extensions": {TASKS: {}}})
}

fn no_tasks() -> Value {
    json!({"elicitation": {}, "sampling": {}})
}

/// One stateless request: headers and `_meta` as the 2026-07-28 wire wants them.
fn post(
    server: &support::TestServer,
    id: u64,
    method: &str,
    mut params: Value,
    capabilities: &Value,
) -> reqwest::RequestBuilder {
    let mut meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "protocol-test", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": capabilities,
    });
    if let Some(extra) = params.get("_meta").and_then(Value::as_object) {
        for (key, value) in extra {
            meta[key] = value.clone();
        }
    }
    params["_meta"] = meta;
    let name = ["name", "uri", "taskId"].iter().find_map(|key| params.get(*key).and_then(Value::as_str));
    let mut request = reqwest::Client::new()
        .post(server.url())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method);
    if let Some(name) = name {
        request = request.header("mcp-name", name);
    }
    request.body(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string())
}

/// Every JSON-RPC message in a response body, JSON or SSE.
fn messages(body: &str) -> Result<Vec<Value>> {
    if body.trim_start().starts_with('{') {
        return Ok(vec![serde_json::from_str(body)?]);
    }
    body.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(str::trim)
        .filter(|data| !data.is_empty())
        .map(|data| serde_json::from_str(data).context("an SSE data line that is not JSON"))
        .collect()
}

/// Sends one request and returns the HTTP status, the response to it and what came before.
async fn rpc(
    server: &support::TestServer,
    method: &str,
    params: Value,
    capabilities: &Value,
) -> Result<(u16, Value, Vec<Value>)> {
    let response = post(server, 7, method, params, capabilities).send().await?;
    let status = response.status().as_u16();
    let mut all = messages(&response.text().await?)?;
    let Some(position) = all.iter().position(|message| message.get("id") == Some(&json!(7))) else {
        bail!("no response to {method} in {all:?}");
    };
    let answer = all.remove(position);
    Ok((status, answer, all))
}

async fn call(server: &support::TestServer, params: Value, capabilities: &Value) -> Result<Value> {
    let (_, answer, _) = rpc(server, "tools/call", params, capabilities).await?;
    Ok(answer)
}

fn text(answer: &Value) -> String {
    answer["result"]["content"][0]["text"].as_str().unwrap_or_default().to_string()
}

async fn audit(server: &support::TestServer, n: i64) -> Result<Vec<(String, String)>> {
    let records = server.store.audit_tail(n).await?;
    Ok(records.into_iter().map(|record| (record.entry.tool, record.entry.outcome)).collect())
}

/// Polls `tasks/get` until the task is terminal.
async fn settle(server: &support::TestServer, task_id: &str) -> Result<Value> {
    for _ in 0..100 {
        let (_, answer, _) = rpc(server, "tasks/get", json!({"taskId": task_id}), &all_capabilities()).await?;
        let status = answer["result"]["status"].as_str().unwrap_or_default().to_string();
        if ["completed", "failed", "cancelled"].contains(&status.as_str()) {
            return Ok(answer["result"].clone());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("task {task_id} did not settle")
}

// ---- input-required rounds --------------------------------------------------------------------

#[tokio::test]
async fn an_input_required_round_trip_carries_sealed_state_and_each_round_is_audited() -> Result<()> {
    let server = start().await?;
    let first = call(&server, json!({"name": "confirm", "arguments": {"file": "a.txt"}}), &no_tasks()).await?;
    let result = &first["result"];
    assert_eq!(result["resultType"], json!("input_required"), "{first}");
    assert_eq!(result["inputRequests"]["confirm"]["method"], json!("elicitation/create"), "{first}");
    assert_eq!(result["inputRequests"]["confirm"]["params"]["message"], json!("Delete a.txt?"));
    let state = result["requestState"].as_str().context("a request state")?.to_string();

    let retry = json!({
        "name": "confirm",
        "arguments": {"file": "a.txt"},
        "inputResponses": {"confirm": {"action": "accept", "content": {"ok": true}}},
        "requestState": state,
    });
    let second = call(&server, retry.clone(), &no_tasks()).await?;
    assert_eq!(text(&second), r#"ok=true state={"file":"a.txt"}"#, "{second}");

    // A forged state, and a genuine one replayed with other arguments, are both refused.
    let mut tampered = retry.clone();
    tampered["requestState"] = json!(format!("{state}x"));
    let mut replayed = retry;
    replayed["arguments"] = json!({"file": "b.txt"});
    for attempt in [tampered, replayed] {
        let answer = call(&server, attempt, &no_tasks()).await?;
        assert_eq!(answer["error"]["code"], json!(-32602), "{answer}");
    }

    let outcomes = audit(&server, 4).await?;
    let expected = ["input_required", "ok", "invalid_request", "invalid_request"];
    assert_eq!(outcomes, expected.map(|outcome| ("confirm".to_string(), outcome.to_string())));
    let records = server.store.audit_tail(4).await?;
    assert_eq!(records[0].entry.error.as_deref(), Some("asked the client: confirm (elicitation/create)"));
    Ok(())
}

#[tokio::test]
async fn an_answer_that_is_not_an_object_is_asked_again() -> Result<()> {
    let server = start().await?;
    let params = json!({"name": "confirm", "arguments": {"file": "a"}, "inputResponses": {"confirm": 12345}});
    let answer = call(&server, params, &no_tasks()).await?;
    assert_eq!(answer["result"]["resultType"], json!("input_required"), "{answer}");
    Ok(())
}

#[tokio::test]
async fn a_call_that_needs_an_undeclared_capability_is_refused_with_what_is_missing() -> Result<()> {
    let server = start().await?;
    let (status, answer, _) =
        rpc(&server, "tools/call", json!({"name": "sample", "arguments": {}}), &json!({})).await?;
    assert_eq!(status, 400);
    assert_eq!(answer["error"]["code"], json!(-32021), "{answer}");
    assert_eq!(answer["error"]["data"]["requiredCapabilities"], json!({"sampling": {}}));

    let (_, answer, _) =
        rpc(&server, "tools/call", json!({"name": "only_background", "arguments": {"millis": 1}}), &no_tasks()).await?;
    assert_eq!(answer["error"]["data"]["requiredCapabilities"], json!({"extensions": {TASKS: {}}}), "{answer}");
    assert_eq!(
        audit(&server, 2).await?,
        vec![
            ("sample".to_string(), "missing_capability".to_string()),
            ("only_background".to_string(), "missing_capability".to_string())
        ]
    );
    assert_eq!(ClientCapability::Sampling.as_str(), "sampling");
    Ok(())
}

#[tokio::test]
async fn a_panicking_tool_is_an_internal_error_and_still_audited() -> Result<()> {
    let server = start().await?;
    let answer = call(&server, json!({"name": "panics", "arguments": {}}), &no_tasks()).await?;
    assert_eq!(answer["error"]["code"], json!(-32603), "{answer}");
    assert!(!answer.to_string().contains("a bug in a tool"), "panic details stay in the log: {answer}");

    let created = call(&server, json!({"name": "panics_in_task", "arguments": {}}), &all_capabilities()).await?;
    let task_id = created["result"]["taskId"].as_str().context("a task")?.to_string();
    let task = settle(&server, &task_id).await?;
    assert_eq!(task["status"], json!("failed"), "{task}");
    assert_eq!(task["error"]["code"], json!(-32603), "{task}");
    assert_eq!(
        audit(&server, 2).await?,
        vec![
            ("panics".to_string(), "internal_error".to_string()),
            ("panics_in_task".to_string(), "internal_error".to_string())
        ]
    );
    Ok(())
}

// ---- tasks ------------------------------------------------------------------------------------

#[tokio::test]
async fn a_detached_call_becomes_a_task_and_is_audited_when_it_completes() -> Result<()> {
    let server = start().await?;
    let created =
        call(&server, json!({"name": "background", "arguments": {"millis": 300}}), &all_capabilities()).await?;
    assert_eq!(created["result"]["resultType"], json!("task"), "{created}");
    let task_id = created["result"]["taskId"].as_str().context("a task id")?.to_string();
    // Not audited yet: the call is still running.
    assert!(server.store.audit_tail(1).await?.is_empty());

    let task = settle(&server, &task_id).await?;
    assert_eq!(task["status"], json!("completed"), "{task}");
    assert_eq!(task["result"]["content"][0]["text"], json!("slept 300ms, answer null"));
    assert_eq!(audit(&server, 1).await?, vec![("background".to_string(), "ok".to_string())]);

    // Without the tasks capability the same tool answers while the client waits.
    let direct = call(&server, json!({"name": "background", "arguments": {"millis": 1}}), &no_tasks()).await?;
    assert_eq!(text(&direct), "slept 1ms, answer null", "{direct}");
    Ok(())
}

#[tokio::test]
async fn a_task_parks_on_a_question_until_tasks_update_answers_it() -> Result<()> {
    let server = start().await?;
    let created =
        call(&server, json!({"name": "background", "arguments": {"millis": 1, "ask": true}}), &all_capabilities())
            .await?;
    let task_id = created["result"]["taskId"].as_str().context("a task id")?.to_string();
    let mut parked = Value::Null;
    for _ in 0..50 {
        let (_, answer, _) = rpc(&server, "tasks/get", json!({"taskId": task_id}), &all_capabilities()).await?;
        parked = answer["result"].clone();
        if parked["status"] == json!("input_required") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(parked["status"], json!("input_required"), "{parked}");
    assert_eq!(parked["inputRequests"]["go"]["method"], json!("elicitation/create"), "{parked}");

    let update = json!({"taskId": task_id, "inputResponses": {"go": {"action": "accept", "content": {}}}});
    let (_, ack, _) = rpc(&server, "tasks/update", update, &all_capabilities()).await?;
    assert_eq!(ack["result"]["resultType"], json!("complete"), "{ack}");
    let task = settle(&server, &task_id).await?;
    assert_eq!(task["result"]["content"][0]["text"], json!(r#"slept 1ms, answer {"action":"accept","content":{}}"#));
    Ok(())
}

#[tokio::test]
async fn a_cancelled_task_settles_as_cancelled_and_its_call_is_audited() -> Result<()> {
    let server = start().await?;
    let created =
        call(&server, json!({"name": "background", "arguments": {"millis": 60000}}), &all_capabilities()).await?;
    let task_id = created["result"]["taskId"].as_str().context("a task id")?.to_string();
    let (_, ack, _) = rpc(&server, "tasks/cancel", json!({"taskId": task_id}), &all_capabilities()).await?;
    assert_eq!(ack["result"]["resultType"], json!("complete"), "{ack}");
    let task = settle(&server, &task_id).await?;
    assert_eq!(task["status"], json!("cancelled"), "{task}");
    let records = server.store.audit_tail(1).await?;
    assert_eq!((records[0].entry.tool.as_str(), records[0].entry.outcome.as_str()), ("background", "tool_error"));
    assert_eq!(records[0].entry.error.as_deref(), Some("background was cancelled by the client"));

    let (_, unknown, _) = rpc(&server, "tasks/get", json!({"taskId": "no-such-task"}), &all_capabilities()).await?;
    assert_eq!(unknown["error"]["code"], json!(-32602), "{unknown}");
    Ok(())
}

#[tokio::test]
async fn shutdown_cancels_background_calls_that_outlive_the_grace_period_and_audits_them() -> Result<()> {
    let server = start().await?;
    let created =
        call(&server, json!({"name": "background", "arguments": {"millis": 600000}}), &all_capabilities()).await?;
    assert_eq!(created["result"]["resultType"], json!("task"), "{created}");
    server.shutdown.cancel();
    // The test harness gives in-flight calls 5 s; the task is then cancelled, not waited for.
    tokio::time::timeout(Duration::from_secs(15), server.server).await???;
    let records = server.store.audit_tail(1).await?;
    assert_eq!(records[0].entry.error.as_deref(), Some("background was cancelled by the client"));
    Ok(())
}

// ---- notifications ----------------------------------------------------------------------------

/// Reads SSE frames from `response` until `wanted` more have arrived or the time is up.
async fn frames_until(response: &mut reqwest::Response, wanted: usize, within: Duration) -> Result<Vec<Value>> {
    let mut buffer = String::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        // Only whole events: a chunk may end in the middle of one.
        let complete = buffer.rfind("\n\n").map_or("", |end| &buffer[..end]);
        let frames = messages(complete)?;
        if frames.len() >= wanted {
            return Ok(frames);
        }
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Err(_) | Ok(Ok(None)) => return Ok(frames),
            Ok(Ok(Some(chunk))) => buffer.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(Err(error)) => return Err(error.into()),
        }
    }
}

#[tokio::test]
async fn listen_streams_announced_changes_that_match_the_filter() -> Result<()> {
    let server = start().await?;
    let listen =
        |filter: Value| post(&server, 7, "subscriptions/listen", json!({"notifications": filter}), &no_tasks());
    let mut tools_stream = listen(json!({"toolsListChanged": true})).send().await?;
    let mut prompts_stream = listen(json!({"promptsListChanged": true})).send().await?;
    let acknowledged = frames_until(&mut tools_stream, 1, Duration::from_secs(5)).await?;
    assert_eq!(acknowledged[0]["method"], json!("notifications/subscriptions/acknowledged"), "{acknowledged:?}");
    frames_until(&mut prompts_stream, 1, Duration::from_secs(5)).await?;

    server.changes.publish(Change::ToolsListChanged);
    let frames = frames_until(&mut tools_stream, 1, Duration::from_secs(5)).await?;
    assert_eq!(frames.first().map(|frame| frame["method"].clone()), Some(json!("notifications/tools/list_changed")));
    assert_eq!(frames[0]["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], json!(7), "{frames:?}");
    let frames = frames_until(&mut prompts_stream, 1, Duration::from_millis(300)).await?;
    assert!(frames.is_empty(), "a prompts-only stream hears nothing of tools: {frames:?}");
    Ok(())
}

#[tokio::test]
async fn logs_reach_a_2026_client_only_at_the_level_its_request_asks_for() -> Result<()> {
    let server = start().await?;
    let (_, _, before) = rpc(&server, "tools/call", json!({"name": "logs", "arguments": {}}), &no_tasks()).await?;
    assert!(before.is_empty(), "no level asked, no logs: {before:?}");
    let params = json!({"name": "logs", "arguments": {}, "_meta": {"io.modelcontextprotocol/logLevel": "warning"}});
    let (_, answer, before) = rpc(&server, "tools/call", params, &no_tasks()).await?;
    assert_eq!(text(&answer), "logged");
    let logged: Vec<&Value> = before.iter().map(|message| &message["params"]["data"]).collect();
    assert_eq!(logged, vec![&json!("an error line")], "{before:?}");
    Ok(())
}

// ---- a 2025-11-25 session ---------------------------------------------------------------------

/// A session client that answers elicitations and reports list changes.
#[derive(Clone)]
struct SessionClient {
    notices: tokio::sync::mpsc::UnboundedSender<&'static str>,
}

impl rmcp::ClientHandler for SessionClient {
    fn get_info(&self) -> rmcp::model::ClientConfig {
        let mut config = rmcp::model::ClientConfig::default();
        config.protocol_version = rmcp::model::ProtocolVersion::V_2025_11_25;
        config.capabilities = rmcp::model::ClientCapabilities::builder().enable_elicitation().build();
        config
    }

    async fn create_elicitation(
        &self,
        _request: rmcp::model::ElicitRequestParams,
        _context: rmcp::service::RequestContext<rmcp::RoleClient>,
    ) -> Result<rmcp::model::ElicitResult, rmcp::ErrorData> {
        Ok(rmcp::model::ElicitResult::new(rmcp::model::ElicitationAction::Accept).with_content(json!({"ok": true})))
    }

    async fn on_tool_list_changed(&self, _context: rmcp::service::NotificationContext<rmcp::RoleClient>) {
        let _ = self.notices.send("tools");
    }
}

#[tokio::test]
async fn a_session_is_asked_mid_call_and_hears_of_changes_on_its_stream() -> Result<()> {
    use rmcp::ServiceExt;
    let server = start().await?;
    let (notices, mut heard) = tokio::sync::mpsc::unbounded_channel();
    let transport = rmcp::transport::StreamableHttpClientTransport::from_uri(server.url());
    let client = SessionClient { notices }.serve(transport).await?;

    let arguments = json!({"file": "a.txt"}).as_object().cloned().unwrap_or_default();
    let result = client.call_tool(rmcp::model::CallToolRequestParams::new("confirm").with_arguments(arguments)).await?;
    let text = serde_json::to_value(&result.content)?[0]["text"].clone();
    assert_eq!(text, json!("ok=true state=null"), "asked mid-call: no round, no state");
    assert_eq!(audit(&server, 5).await?, vec![("confirm".to_string(), "ok".to_string())]);

    // The session's forwarder starts when the server sees `initialized`; announce until heard.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        server.changes.publish(Change::ToolsListChanged);
        match tokio::time::timeout(Duration::from_millis(100), heard.recv()).await {
            Ok(Some(notice)) => {
                assert_eq!(notice, "tools");
                break;
            }
            _ if tokio::time::Instant::now() > deadline => bail!("the session never heard of the change"),
            _ => {}
        }
    }
    client.cancel().await?;
    Ok(())
}
