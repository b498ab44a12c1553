//! `tools/call` straight to a Streamable HTTP upstream that agreed on the 2026-07-28 revision.
//!
//! On that revision every request stands alone (no session: the protocol version and the
//! client's identity travel in each request's `_meta`), so a call needs no state from the
//! connection rmcp opened. rmcp's client hands each request from the caller's task to its
//! service task, then to its transport worker, then to the HTTP connection, and the answer back
//! the same way; here the caller's task posts the request itself on the shared pool (measured
//! in BENCHMARKS.md, section 5). Everything else (the handshake, listings, list changes, older
//! revisions, tools whose arguments travel as `Mcp-Param-*` headers) stays on rmcp's client.
//!
//! The request is the one rmcp would send: the same `_meta`, the same SEP-2243 headers
//! (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`) and the server's configured headers. The
//! answer may be JSON or an SSE stream; notifications in the stream are skipped (rmcp's client
//! passes them to a handler that ignores them), the response with the request's id ends it.

use std::sync::atomic::{AtomicU64, Ordering};

use http::{HeaderMap, HeaderName, HeaderValue};
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResponse, ClientJsonRpcMessage, ClientRequest, ErrorData,
    InitializeRequestParams, JsonObject, NumberOrString, ProtocolVersion, RequestMetaObject,
};
use serde_json::Value;

/// The largest answer read; a bigger one is an error (the output budget cuts far below it).
const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

/// Why a direct call failed.
#[derive(Debug, thiserror::Error)]
pub enum DirectError {
    /// The request did not reach the server or its answer did not come back: the connection
    /// is in doubt and the supervisor should connect again.
    #[error("{0}")]
    Transport(String),
    /// The server answered, with an error or with something that is not an answer.
    #[error("{0}")]
    Answer(String),
}

/// What direct calls to one upstream share: where, how to say who we are, the request ids.
#[derive(Debug)]
pub struct DirectHttp {
    client: reqwest::Client,
    url: reqwest::Url,
    /// The configured headers and the ones every request carries.
    headers: HeaderMap,
    meta: RequestMetaObject,
    next_id: AtomicU64,
}

impl DirectHttp {
    /// For an upstream at `url` with `headers` that agreed on `version` with the client that
    /// introduced itself as `client`; `None` when the revision keeps per-connection state.
    pub fn new(
        client: reqwest::Client,
        url: &str,
        headers: &[(HeaderName, HeaderValue)],
        version: &ProtocolVersion,
        client_params: &InitializeRequestParams,
    ) -> Option<DirectHttp> {
        if *version < ProtocolVersion::V_2026_07_28 {
            return None;
        }
        let url = reqwest::Url::parse(url).ok()?;
        let mut all = HeaderMap::new();
        for (name, value) in headers {
            all.insert(name.clone(), value.clone());
        }
        all.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        all.insert(http::header::ACCEPT, HeaderValue::from_static("application/json, text/event-stream"));
        all.insert(HeaderName::from_static("mcp-protocol-version"), HeaderValue::from_str(version.as_str()).ok()?);
        all.insert(HeaderName::from_static("mcp-method"), HeaderValue::from_static("tools/call"));
        let meta = RequestMetaObject::with_client_context(
            version.clone(),
            client_params.client_info.clone(),
            client_params.capabilities.clone(),
        );
        Some(DirectHttp { client, url, headers: all, meta, next_id: AtomicU64::new(1) })
    }

    /// Whether a tool can be called directly: its name travels as a bare header value and its
    /// schema promotes no argument to an `Mcp-Param-*` header (rmcp's client builds those).
    pub fn can_call(tool: &rmcp::model::Tool) -> bool {
        let name = tool.name.as_ref();
        let bare =
            !name.is_empty() && name.bytes().all(|byte| byte.is_ascii_graphic()) && !name.starts_with("=?base64?");
        bare && !opsgate_core::names_param_headers(&tool.input_schema)
    }

    /// One `tools/call` round: the server's answer, a complete result or a request for input.
    pub async fn call_tool(&self, name: &str, arguments: JsonObject) -> Result<CallToolResponse, DirectError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut request = CallToolRequest::new(CallToolRequestParams::new(name.to_string()).with_arguments(arguments));
        request.extensions.insert(self.meta.clone());
        let message =
            ClientJsonRpcMessage::request(ClientRequest::CallToolRequest(request), NumberOrString::Number(id as i64));
        let body = serde_json::to_vec(&message).map_err(|error| DirectError::Answer(error.to_string()))?;
        let mut headers = self.headers.clone();
        let name_value = HeaderValue::from_str(name).map_err(|error| DirectError::Answer(error.to_string()))?;
        headers.insert(HeaderName::from_static("mcp-name"), name_value);
        let mut response = self
            .client
            .post(self.url.clone())
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|error| DirectError::Transport(describe(error)))?;
        let status = response.status();
        let is_sse = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("text/event-stream"));
        let mut answer = Answer::new(is_sse);
        while let Some(chunk) = response.chunk().await.map_err(|error| DirectError::Transport(describe(error)))? {
            if let Some(message) = answer.push(&chunk, id)? {
                return outcome(message);
            }
        }
        if let Some(message) = answer.finish(id)? {
            return outcome(message);
        }
        let preview = String::from_utf8_lossy(&answer.buffer[..answer.buffer.len().min(200)]).into_owned();
        Err(DirectError::Answer(if status.is_success() {
            format!("the server's answer had no response to the call (HTTP {status}): {preview:?}")
        } else {
            format!("HTTP {status}: {preview:?}")
        }))
    }
}

/// A JSON-RPC response or error, turned into the call's answer. The result's `resultType` says
/// which kind it is (absent or `complete` for a finished call), so it is read as that kind
/// directly rather than tried against every result rmcp knows (which took 20 µs a call).
fn outcome(mut message: Value) -> Result<CallToolResponse, DirectError> {
    let malformed =
        |error: serde_json::Error| DirectError::Answer(format!("the server's answer is malformed: {error}"));
    if let Some(error) = message.get_mut("error") {
        let error: ErrorData = serde_json::from_value(error.take()).map_err(malformed)?;
        return Err(DirectError::Answer(rmcp::ServiceError::McpError(error).to_string()));
    }
    let result = message.get_mut("result").map(Value::take).unwrap_or(Value::Null);
    match result.get("resultType").and_then(Value::as_str) {
        None | Some("complete") => Ok(CallToolResponse::Complete(serde_json::from_value(result).map_err(malformed)?)),
        Some("input_required") => {
            Ok(CallToolResponse::InputRequired(serde_json::from_value(result).map_err(malformed)?))
        }
        Some("task") => Ok(CallToolResponse::Task(serde_json::from_value(result).map_err(malformed)?)),
        Some(other) => Err(DirectError::Answer(format!("the server answered with a result of type {other:?}"))),
    }
}

/// The answer as it arrives: one JSON body, or SSE events whose data are JSON-RPC messages.
struct Answer {
    is_sse: bool,
    buffer: Vec<u8>,
    /// How far into `buffer` SSE events have been read.
    read: usize,
}

impl Answer {
    fn new(is_sse: bool) -> Answer {
        Answer { is_sse, buffer: Vec::new(), read: 0 }
    }

    /// Adds a chunk; returns the response to request `id` once an SSE event carries it.
    fn push(&mut self, chunk: &[u8], id: u64) -> Result<Option<Value>, DirectError> {
        if self.buffer.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(DirectError::Answer(format!("the server's answer is over {MAX_ANSWER_BYTES} bytes")));
        }
        self.buffer.extend_from_slice(chunk);
        if !self.is_sse {
            return Ok(None);
        }
        while let Some(end) = event_end(&self.buffer[self.read..]) {
            let event = &self.buffer[self.read..self.read + end.0];
            self.read += end.1;
            if let Some(message) = sse_data(event).and_then(|data| response_to(&data, id)) {
                return Ok(Some(message));
            }
        }
        Ok(None)
    }

    /// At the end of the body: the response to `id`, if the body (or its last event) holds it.
    fn finish(&mut self, id: u64) -> Result<Option<Value>, DirectError> {
        if self.is_sse {
            let rest = &self.buffer[self.read..];
            return Ok(sse_data(rest).and_then(|data| response_to(&data, id)));
        }
        Ok(response_to(&self.buffer, id))
    }
}

/// Where the first SSE event in `bytes` ends: (its length, its length with the blank line).
fn event_end(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut at = 0;
    while at < bytes.len() {
        // A line ends with "\n", "\r\n" or "\r"; an empty line ends the event.
        let rest = &bytes[at..];
        let line_end = rest.iter().position(|&byte| byte == b'\n' || byte == b'\r')?;
        let mut next = at + line_end + 1;
        if rest[line_end] == b'\r' && bytes.get(next) == Some(&b'\n') {
            next += 1;
        }
        if line_end == 0 {
            return Some((at, next));
        }
        at = next;
    }
    None
}

/// The data of one SSE event: its `data:` lines joined by newlines; `None` when it has none.
fn sse_data(event: &[u8]) -> Option<Vec<u8>> {
    let mut data: Option<Vec<u8>> = None;
    for line in event.split(|&byte| byte == b'\n' || byte == b'\r') {
        let Some(value) = line.strip_prefix(b"data") else { continue };
        let value = match value.first() {
            None => value,
            Some(b':') => value[1..].strip_prefix(b" ").unwrap_or(&value[1..]),
            Some(_) => continue,
        };
        let data = data.get_or_insert_with(Vec::new);
        if !data.is_empty() {
            data.push(b'\n');
        }
        data.extend_from_slice(value);
    }
    data
}

/// `bytes` as the response (or error) to request `id`; anything else (a notification, another
/// id, not JSON) is `None`.
fn response_to(bytes: &[u8], id: u64) -> Option<Value> {
    let message: Value = serde_json::from_slice(bytes).ok()?;
    let answers = message.get("result").is_some() || message.get("error").is_some();
    let same_id = message.get("id").and_then(Value::as_u64) == Some(id);
    // An error the server could not tie to a request (no id) answers the only request asked.
    let unattributed_error = message.get("error").is_some() && message.get("id").is_none_or(Value::is_null);
    (answers && (same_id || unattributed_error)).then_some(message)
}

/// A reqwest error with its causes, which name what failed (refused, reset, timed out), without
/// the URL (a configured one may carry a credential in its query; the server's name says where).
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_are_split_on_blank_lines_of_any_line_ending() {
        assert_eq!(event_end(b"data: a\n\nrest"), Some((8, 9)));
        assert_eq!(event_end(b"data: a\r\n\r\nrest"), Some((9, 11)));
        assert_eq!(event_end(b"data: a\r\rrest"), Some((8, 9)));
        assert_eq!(event_end(b"data: a\n"), None);
        assert_eq!(sse_data(b"event: message\ndata: {\"a\":\ndata:1}\nid: 4"), Some(b"{\"a\":\n1}".to_vec()));
        assert_eq!(sse_data(b"id: 4\nretry: 100"), None);
    }

    #[test]
    fn only_the_answer_to_the_request_is_taken() {
        assert!(response_to(br#"{"jsonrpc":"2.0","id":7,"result":{}}"#, 7).is_some());
        assert!(response_to(br#"{"jsonrpc":"2.0","id":8,"result":{}}"#, 7).is_none());
        assert!(response_to(br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#, 7).is_none());
        assert!(response_to(br#"{"jsonrpc":"2.0","error":{"code":-32700,"message":"parse"}}"#, 7).is_some());
        assert!(response_to(b"not json", 7).is_none());
    }

    #[test]
    fn an_sse_answer_ends_at_the_response_after_notifications() -> Result<(), DirectError> {
        let mut answer = Answer::new(true);
        let progress = b"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":1,\"progress\":1}}\n\n";
        assert!(answer.push(progress, 3)?.is_none());
        assert!(answer.push(b"id: 2\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,", 3)?.is_none());
        let message = answer.push(b"\"result\":{\"content\":[]}}\n\n", 3)?.expect("the response");
        assert_eq!(message["id"], 3);
        Ok(())
    }

    #[test]
    fn tools_whose_arguments_travel_as_headers_or_whose_names_need_encoding_go_through_rmcp() {
        let schema = |value: Value| std::sync::Arc::new(value.as_object().cloned().unwrap_or_default());
        let plain = rmcp::model::Tool::new("echo", "", schema(serde_json::json!({"type": "object"})));
        assert!(DirectHttp::can_call(&plain));
        let promoted = serde_json::json!({"type": "object", "properties": {"region": {"type": "string", "x-mcp-header": "Region"}}});
        assert!(!DirectHttp::can_call(&rmcp::model::Tool::new("echo", "", schema(promoted))));
        assert!(!DirectHttp::can_call(&rmcp::model::Tool::new("échо", "", schema(serde_json::json!({})))));
        assert!(!DirectHttp::can_call(&rmcp::model::Tool::new("with space", "", schema(serde_json::json!({})))));
    }

    /// A server that is not there is a transport failure (the link is then broken), and its
    /// text names what failed but not the URL, whose query may hold a credential.
    #[tokio::test]
    async fn a_failed_connection_is_a_transport_error_without_the_url() -> Result<(), Box<dyn std::error::Error>> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let url = format!("http://127.0.0.1:{port}/mcp?token=s3cr3t-value");
        let client = crate::http_client::upstream_client()?;
        let params = rmcp::model::InitializeRequestParams::default();
        let direct = DirectHttp::new(client, &url, &[], &ProtocolVersion::V_2026_07_28, &params).ok_or("built")?;
        match direct.call_tool("echo", JsonObject::new()).await {
            Err(DirectError::Transport(text)) => {
                assert!(!text.contains("s3cr3t"), "{text}");
                assert!(text.to_ascii_lowercase().contains("connect"), "{text}");
            }
            other => return Err(format!("expected a transport failure, got {other:?}").into()),
        }
        // An older revision keeps per-connection state: no direct calls.
        let older = ProtocolVersion::LATEST_WITH_INITIALIZE;
        assert!(DirectHttp::new(crate::http_client::upstream_client()?, &url, &[], &older, &params).is_none());
        Ok(())
    }
}
