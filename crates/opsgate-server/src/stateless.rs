//! `tools/call` on the 2026-07-28 stateless wire, answered here rather than by rmcp's Streamable
//! HTTP service.
//!
//! rmcp serves each stateless request through a one-shot transport and a service around it: it
//! serialises the parsed message back into a JSON value to check the SEP-2243 headers against
//! it, spawns the service loop and the handler as tasks of their own, and hands the answer back
//! through a channel. A call needs none of that: it is the pipeline's. So the common case, a POST
//! whose body is one `tools/call` carrying its protocol version (2026-07-28) and client
//! capabilities in `_meta`, with the headers that revision requires and nothing that needs
//! rmcp's machinery, is parsed once here and sent to the pipeline directly.
//!
//! This path answers only what rmcp would answer the same way. Every check here is one rmcp
//! makes, or a stricter one, and whatever does not pass goes to rmcp untouched, errors included:
//! a session id, an `Origin` (browsers), weighted `Accept` entries, `Mcp-Param-*` headers or a
//! tool whose schema names them, a progress token or log level (they need the response stream), a
//! call that may become a background task, an unknown or quarantined tool. The answer is rmcp's
//! own message type, serialised and given the HTTP status as rmcp does.

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use opsgate_core::{Principal, TaskSupport};
use rmcp::model::{
    CallToolRequestMethod, CallToolRequestParams, ClientCapabilities, ErrorCode, InputResponses, JsonObject,
    JsonRpcVersion2_0, ProtocolVersion, RequestId, RequestMetaObject, ServerJsonRpcMessage, ServerResult,
};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::http::AppState;
use crate::mcp::{PreparedCall, call_response, unrequested_channel};
use crate::registry::RegisteredTool;

/// A `tools/call` this path answers.
pub struct StatelessCall {
    id: RequestId,
    principal: Principal,
    client: Option<String>,
    capabilities: ClientCapabilities,
    params: CallToolRequestParams,
    /// The tool called, as `take` found it in the registry.
    registered: RegisteredTool,
}

/// The call in `body` when this path may answer it (see the module's documentation), else
/// `None` and rmcp answers. `parts` are the request's after the identity stage. Public so that
/// tests can tell which requests take which path.
pub fn take(state: &AppState, parts: &Parts, body: &[u8]) -> Option<StatelessCall> {
    let headers = &parts.headers;
    if parts.uri.path() != "/mcp" || parts.uri.authority().is_some() {
        return None;
    }
    let refers_elsewhere = ["mcp-session-id", "last-event-id", "origin"].iter().any(|name| headers.contains_key(*name));
    if refers_elsewhere || headers.keys().any(|name| name.as_str().starts_with("mcp-param-")) {
        return None;
    }
    if !host_is_allowed(sole(headers, header::HOST.as_str())?, &state.http.allowed_hosts)
        || !accepts_json_and_sse(sole(headers, header::ACCEPT.as_str())?)
        || !essence_is(sole(headers, header::CONTENT_TYPE.as_str())?, "application/json")
        || sole(headers, "mcp-protocol-version")? != ProtocolVersion::V_2026_07_28.as_str()
        || sole(headers, "mcp-method")? != "tools/call"
    {
        return None;
    }
    let name_header = sole(headers, "mcp-name")?;
    let WireCall { id, mut params, .. } = serde_json::from_slice::<WireCall>(body).ok()?;
    let meta = RequestMetaObject::from(params.meta.take().unwrap_or_default());
    let current = meta.protocol_version().is_some_and(|version| version == ProtocolVersion::V_2026_07_28);
    if !current || meta.get_progress_token().is_some() || meta.contains_key("io.modelcontextprotocol/logLevel") {
        return None;
    }
    let capabilities = meta.client_capabilities()?;
    let client = meta.client_info().map(|info| info.name);
    // Base64-wrapped names (`=?base64?…?=`) are rmcp's to decode.
    if name_header.starts_with("=?") || name_header != params.name {
        return None;
    }
    let registered = state.mcp.pipeline.registry().get(&params.name)?;
    let may_detach = registered.tool.task_support() != TaskSupport::Forbidden && capabilities.supports_tasks();
    if registered.quarantine.is_some() || registered.param_headers || may_detach {
        return None;
    }
    let principal = parts.extensions.get::<Principal>()?.clone();
    Some(StatelessCall { id, principal, client, capabilities, params: params.into_call_params(), registered })
}

/// The body this path takes: one `tools/call` request, read straight into the values rmcp's
/// `ClientJsonRpcMessage` would hold. rmcp's own parse first reads the whole message to learn
/// its kind, then buffers it to try each kind of request through flattened fields: about a
/// tenth of a call's CPU under load (measured with `perf` in section 1 of BENCHMARKS.md). Every
/// field is one rmcp reads, with rmcp's types for the version, id and method; a key it does not
/// know, a repeated one or another method fails this parse, and rmcp answers the request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireCall {
    #[allow(dead_code, reason = "checked by parsing: only \"2.0\" is read")]
    jsonrpc: JsonRpcVersion2_0,
    id: RequestId,
    #[allow(dead_code, reason = "checked by parsing: only \"tools/call\" is read")]
    method: CallToolRequestMethod,
    params: WireParams,
}

/// `CallToolRequestParams` with its `_meta`, which rmcp moves into the request's extensions.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct WireParams {
    #[serde(rename = "_meta")]
    meta: Option<JsonObject>,
    name: String,
    arguments: Option<JsonObject>,
    input_responses: Option<InputResponses>,
    request_state: Option<String>,
}

impl WireParams {
    /// The parameters as rmcp hands them to a handler: without `_meta`.
    fn into_call_params(self) -> CallToolRequestParams {
        let WireParams { meta: _, name, arguments, input_responses, request_state } = self;
        let mut params = CallToolRequestParams::new(name);
        params.arguments = arguments;
        params.input_responses = input_responses;
        params.request_state = request_state;
        params
    }
}

/// Runs the call through the pipeline and answers it. The call runs as a task of its own, so
/// that a client that hangs up cancels it (the pipeline ends it and audits it) rather than
/// dropping it half done; so does shutdown once its grace period is over.
pub(crate) async fn answer(state: &AppState, call: StatelessCall) -> Response {
    let StatelessCall { id, principal, client, capabilities, params, registered } = call;
    let cancel = CancellationToken::new();
    let prepared = PreparedCall::new(
        Some(&registered),
        principal,
        client,
        Some(&capabilities),
        params,
        unrequested_channel(Some(capabilities.clone())),
        cancel.clone(),
    );
    let pipeline = state.mcp.pipeline.clone();
    // `take` left calls that may become tasks to rmcp, with the tool this call was prepared from.
    let PreparedCall { call, round, with_structured, task_capable: _ } = prepared;
    let mut running =
        tokio::spawn(async move { call_response(pipeline.call_round(call, round).await, with_structured) });
    let hung_up = cancel.clone().drop_guard();
    let joined = tokio::select! {
        joined = &mut running => joined,
        () = state.streams.cancelled() => {
            cancel.cancel();
            running.await
        }
    };
    hung_up.disarm();
    let message = match joined {
        Ok(Ok(response)) => ServerJsonRpcMessage::response(ServerResult::from(response), id),
        Ok(Err(error)) => ServerJsonRpcMessage::error(error, Some(id)),
        Err(failed) => {
            tracing::error!(error = %failed, "a stateless tools/call task failed");
            ServerJsonRpcMessage::error(
                rmcp::ErrorData::internal_error("the call failed inside opsgate", None),
                Some(id),
            )
        }
    };
    respond(message)
}

/// The message as rmcp sends a terminal JSON answer, with rmcp's status for its error code.
fn respond(message: ServerJsonRpcMessage) -> Response {
    let status = match &message {
        ServerJsonRpcMessage::Error(error) => match error.error.code {
            ErrorCode::UNSUPPORTED_PROTOCOL_VERSION
            | ErrorCode::MISSING_REQUIRED_CLIENT_CAPABILITY
            | ErrorCode::HEADER_MISMATCH => StatusCode::BAD_REQUEST,
            ErrorCode::METHOD_NOT_FOUND => StatusCode::NOT_FOUND,
            _ => StatusCode::OK,
        },
        _ => StatusCode::OK,
    };
    match serde_json::to_vec(&message) {
        Ok(body) => (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], Bytes::from(body))
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "a tools/call answer could not be serialised");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// The one value of `name`, as text; `None` when it is absent, repeated or not visible ASCII.
fn sole<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut values = headers.get_all(name).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    value.to_str().ok()
}

/// Whether `value`'s media type, parameters aside, is `media_type`.
fn essence_is(value: &str, media_type: &str) -> bool {
    value.split(';').next().is_some_and(|essence| essence.trim().eq_ignore_ascii_case(media_type))
}

/// Whether an `Accept` value names both `application/json` and `text/event-stream`. Quoted
/// parameters and weights (`q=`) are rmcp's to weigh: with either, the answer is no.
fn accepts_json_and_sse(value: &str) -> bool {
    if value.contains('"') {
        return false;
    }
    let (mut json, mut sse) = (false, false);
    for entry in value.split(',') {
        let mut pieces = entry.split(';');
        let essence = pieces.next().unwrap_or_default().trim();
        if pieces.any(|parameter| parameter.trim_start().get(..2).is_some_and(|key| key.eq_ignore_ascii_case("q="))) {
            return false;
        }
        json |= essence.eq_ignore_ascii_case("application/json");
        sse |= essence.eq_ignore_ascii_case("text/event-stream");
    }
    json && sse
}

/// rmcp's DNS-rebinding check of the `Host` header: the host (without brackets, any case) is
/// one of `allowed`, on any port when the allowed entry names none. An empty list allows all.
fn host_is_allowed(host: &str, allowed: &[String]) -> bool {
    let Ok(host) = host.parse::<http::uri::Authority>() else { return false };
    let (name, port) = (normalize_host(host.host()), host.port_u16());
    allowed.is_empty()
        || allowed.iter().any(|entry| {
            let entry = entry.trim();
            let (entry_name, entry_port) = match entry.parse::<http::uri::Authority>() {
                Ok(authority) => (normalize_host(authority.host()), authority.port_u16()),
                Err(_) => (normalize_host(entry), None),
            };
            !entry.is_empty() && entry_name == name && entry_port.is_none_or(|entry_port| port == Some(entry_port))
        })
}

fn normalize_host(host: &str) -> String {
    host.trim_matches('[').trim_matches(']').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever this path reads from a body, rmcp reads the same from it: the id, the parameters
    /// the handler gets and the `_meta`. Bodies it does not read are rmcp's whatever they hold.
    #[test]
    fn a_body_read_here_is_what_rmcp_reads() {
        let meta = r#"{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#;
        let read_here = [
            format!(
                r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"hi"}},"_meta":{meta}}}}}"#
            ),
            format!(
                r#"{{"params":{{"_meta":{meta},"name":"echo"}},"method":"tools/call","id":"a-1","jsonrpc":"2.0"}}"#
            ),
            format!(
                r#"{{"jsonrpc":"2.0","id":-3,"method":"tools/call","params":{{"name":"q","arguments":{{"n":18446744073709551615,"f":1.5e300,"s":"\u00e9\ud83d\ude00","deep":[[{{"a":null}}]]}},"_meta":{meta}}}}}"#
            ),
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"w","arguments":null,"inputResponses":{{"r1":{{"action":"accept"}}}},"requestState":"opaque","_meta":{meta}}}}}"#
            ),
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"w","_meta":null}}"#.to_string(),
        ];
        for body in &read_here {
            let here = serde_json::from_str::<WireCall>(body).unwrap_or_else(|error| panic!("{body}: {error}"));
            let Ok(rmcp::model::ClientJsonRpcMessage::Request(theirs)) =
                serde_json::from_str::<rmcp::model::ClientJsonRpcMessage>(body)
            else {
                panic!("rmcp does not read {body} as a request");
            };
            let rmcp::model::ClientRequest::CallToolRequest(call) = theirs.request else {
                panic!("rmcp reads {body} as another request");
            };
            let WireCall { id, mut params, .. } = here;
            let meta = RequestMetaObject::from(params.meta.take().unwrap_or_default());
            assert_eq!(id, theirs.id, "{body}");
            assert_eq!(meta, call.extensions.get::<RequestMetaObject>().cloned().unwrap_or_default(), "{body}");
            assert_eq!(params.into_call_params(), call.params, "{body}");
        }
        let not_read_here = [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/call","params":{"name":"a"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"name":"a"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"},"result":{}}"#,
            r#"{"jsonrpc":"2.0","id":1.5,"method":"tools/call","params":{"name":"a"}}"#,
            r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"a"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":[1]}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}} trailing"#,
        ];
        for body in not_read_here {
            assert!(serde_json::from_str::<WireCall>(body).is_err(), "{body} is rmcp's to read");
        }
    }

    #[test]
    fn accept_needs_both_types_and_no_weights() {
        assert!(accepts_json_and_sse("application/json, text/event-stream"));
        assert!(accepts_json_and_sse("text/event-stream,Application/JSON"));
        assert!(!accepts_json_and_sse("application/json"));
        assert!(!accepts_json_and_sse("application/json, text/event-stream;q=0"));
        assert!(!accepts_json_and_sse("application/json;Q=0.5, text/event-stream"));
        assert!(!accepts_json_and_sse("application/json, text/event-stream;x=\"a,b\""));
    }

    #[test]
    fn hosts_match_as_rmcp_matches_them() {
        let allowed = vec!["localhost".to_string(), "::1".to_string(), "example.com:8443".to_string()];
        assert!(host_is_allowed("localhost:7420", &allowed));
        assert!(host_is_allowed("LOCALHOST", &allowed));
        assert!(host_is_allowed("[::1]:7420", &allowed));
        assert!(host_is_allowed("example.com:8443", &allowed));
        assert!(!host_is_allowed("example.com:80", &allowed));
        assert!(!host_is_allowed("example.com", &allowed));
        assert!(!host_is_allowed("evil.test:7420", &allowed));
        assert!(!host_is_allowed("local host", &allowed));
        assert!(host_is_allowed("anything:1", &[]));
    }
}
