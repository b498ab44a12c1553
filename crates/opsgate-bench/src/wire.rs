//! The client side of the 2026-07-28 stateless Streamable HTTP wire, as the benchmark speaks it:
//! one HTTP/1.1 keep-alive connection per caller, raw JSON-RPC bodies with the per-request
//! `_meta`, and the `MCP-Protocol-Version` / `Mcp-Method` / `Mcp-Name` headers.

use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, HOST};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

pub const PROTOCOL_VERSION: &str = "2026-07-28";

/// One open connection. Requests on it go one after another, as a single MCP client's would.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    host: String,
    /// The credential the server expects (`Bearer og_…` for opsgate), if any.
    authorization: Option<String>,
}

impl Connection {
    pub async fn open(address: SocketAddr) -> Result<Connection> {
        let stream = TcpStream::connect(address).await.with_context(|| format!("connecting to {address}"))?;
        // Requests are small and answered one at a time: Nagle's algorithm would only add delay.
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .with_context(|| format!("HTTP handshake with {address}"))?;
        // The connection future drives the socket; when it ends (server closed, error) the next
        // request on `sender` fails and reports it, so its own result adds nothing.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Connection { sender, host: address.to_string(), authorization: None })
    }

    /// Sends `Authorization: <value>` with every request from now on.
    pub fn with_authorization(mut self, value: Option<String>) -> Connection {
        self.authorization = value;
        self
    }

    /// POSTs one JSON-RPC request to `/mcp` and returns the status and the whole body.
    pub async fn post(&mut self, method: &str, name: Option<&str>, body: String) -> Result<(StatusCode, Bytes)> {
        let mut request = Request::post("/mcp")
            .header(HOST, self.host.as_str())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, text/event-stream")
            .header("mcp-protocol-version", PROTOCOL_VERSION)
            .header("mcp-method", method);
        if let Some(name) = name {
            request = request.header("mcp-name", name);
        }
        self.send(request, body).await
    }

    /// POSTs `body` as `content_type` to `path`, which is not MCP (a webhook), and returns the
    /// status and the whole body.
    pub async fn post_to(&mut self, path: &str, content_type: &str, body: String) -> Result<(StatusCode, Bytes)> {
        let request = Request::post(path).header(HOST, self.host.as_str()).header(CONTENT_TYPE, content_type);
        self.send(request, body).await
    }

    /// GETs `path` and returns the status and the whole body.
    pub async fn get(&mut self, path: &str) -> Result<(StatusCode, Bytes)> {
        let request = Request::get(path).header(HOST, self.host.as_str());
        self.send(request, String::new()).await
    }

    /// Adds the connection's `Authorization`, sends, and reads the whole response.
    async fn send(&mut self, mut request: http::request::Builder, body: String) -> Result<(StatusCode, Bytes)> {
        if let Some(authorization) = &self.authorization {
            request = request.header(http::header::AUTHORIZATION, authorization.as_str());
        }
        let request = request.body(Full::new(Bytes::from(body))).context("building the request")?;
        self.sender.ready().await.context("connection closed")?;
        let response = self.sender.send_request(request).await.context("sending the request")?;
        let status = response.status();
        let body = response.into_body().collect().await.context("reading the response body")?.to_bytes();
        Ok((status, body))
    }
}

/// The `_meta` every 2026-07-28 request carries in place of the old initialize handshake,
/// serialised once: it is the same for every request.
pub fn request_meta() -> String {
    json!({
        "io.modelcontextprotocol/protocolVersion": PROTOCOL_VERSION,
        "io.modelcontextprotocol/clientInfo": {"name": "opsgate-bench", "version": env!("CARGO_PKG_VERSION")},
        "io.modelcontextprotocol/clientCapabilities": {},
    })
    .to_string()
}

/// A `tools/call` body. `meta` is `request_meta()`; `arguments` is a JSON object.
pub fn tools_call_body(id: u64, tool: &str, arguments: &str, meta: &str) -> String {
    let tool = Value::String(tool.to_string());
    let params = format!(r#"{{"name":{tool},"arguments":{arguments},"_meta":{meta}}}"#);
    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{params}}}"#)
}

pub fn tools_list_body(id: u64, meta: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list","params":{{"_meta":{meta}}}}}"#)
}

/// The `result` of a JSON-RPC response with this `id`, or why the response is not one.
pub fn result_of(status: StatusCode, body: &[u8], id: u64) -> Result<Value> {
    if status != StatusCode::OK {
        bail!("HTTP {status}: {}", String::from_utf8_lossy(body));
    }
    let mut message: Value = serde_json::from_slice(body)
        .with_context(|| format!("response is not JSON: {}", String::from_utf8_lossy(body)))?;
    if message.get("id") != Some(&json!(id)) {
        bail!("response has the wrong id (expected {id}): {message}");
    }
    match message.get_mut("result") {
        Some(result) => Ok(result.take()),
        None => bail!("response is not a result: {message}"),
    }
}

/// Checks that a `tools/call` result is a success whose first text block is `expected`.
pub fn check_echo_result(result: &Value, expected: &str) -> Result<()> {
    if result.get("isError") == Some(&Value::Bool(true)) {
        bail!("tool returned an error: {result}");
    }
    let text = result.pointer("/content/0/text").and_then(Value::as_str);
    if text != Some(expected) {
        bail!("expected the text {expected:?}, got {result}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use http::StatusCode;
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn tools_call_body_carries_the_2026_meta() -> Result<()> {
        let body: Value = serde_json::from_str(&tools_call_body(7, "echo", r#"{"text":"hi"}"#, &request_meta()))?;
        assert_eq!(body["id"], json!(7));
        assert_eq!(body["method"], json!("tools/call"));
        assert_eq!(body["params"]["name"], json!("echo"));
        assert_eq!(body["params"]["arguments"], json!({"text": "hi"}));
        assert_eq!(body["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"], json!(PROTOCOL_VERSION));
        assert!(body["params"]["_meta"]["io.modelcontextprotocol/clientInfo"]["name"].is_string());
        assert!(body["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"].is_object());
        Ok(())
    }

    #[test]
    fn only_the_expected_echo_counts_as_success() -> Result<()> {
        let ok = br#"{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"hi"}]}}"#;
        check_echo_result(&result_of(StatusCode::OK, ok, 3)?, "hi")?;
        assert!(result_of(StatusCode::OK, ok, 4).is_err(), "wrong id");
        assert!(result_of(StatusCode::BAD_REQUEST, ok, 3).is_err(), "HTTP error");
        assert!(check_echo_result(&result_of(StatusCode::OK, ok, 3)?, "other").is_err(), "wrong text");
        let tool_error =
            br#"{"jsonrpc":"2.0","id":3,"result":{"isError":true,"content":[{"type":"text","text":"hi"}]}}"#;
        assert!(check_echo_result(&result_of(StatusCode::OK, tool_error, 3)?, "hi").is_err(), "isError");
        let rpc_error = br#"{"jsonrpc":"2.0","id":3,"error":{"code":-32602,"message":"no"}}"#;
        assert!(result_of(StatusCode::OK, rpc_error, 3).is_err(), "JSON-RPC error");
        Ok(())
    }
}
