//! Identity fixtures shared by `identity.rs` and `attacks.rs`: a tool that says who called it, an
//! opsgate app with an identity configuration, RSA keys made with openssl, a JWKS server on a
//! loopback port, and tokens.

use super::TestServer;
use anyhow::{Context, Result, bail};
use axum::extract::State;
use axum::response::IntoResponse;
use base64::Engine;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use opsgate_core::{CallContext, Effect, Tool, ToolError, ToolOutput, ToolSpec};
use opsgate_server::PipelineConfig;
use opsgate_server::identity::{IdentityConfig, OauthConfig};
use opsgate_server::surface::NoSurface;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub const ISSUER: &str = "https://issuer.test";
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

// ---- a tool that says who called it and counts its runs ----------------------------------------

pub struct WhoAmI(pub ToolSpec, pub Arc<AtomicUsize>);

#[async_trait::async_trait]
impl Tool for WhoAmI {
    fn spec(&self) -> &ToolSpec {
        &self.0
    }

    async fn call(&self, context: CallContext, _arguments: Map<String, Value>) -> Result<ToolOutput, ToolError> {
        self.1.fetch_add(1, Ordering::SeqCst);
        let principal = context.principal;
        Ok(ToolOutput {
            summary: vec![format!("you are {}", principal.id)],
            fields: Map::from_iter([
                ("id".to_string(), json!(principal.id)),
                ("kind".to_string(), json!(principal.kind.as_str())),
                ("roles".to_string(), json!(principal.roles)),
            ]),
            ..ToolOutput::default()
        })
    }
}

/// A server with the `whoami` tool; returns it and the tool's run counter.
pub async fn start(identity: impl FnOnce(&str) -> IdentityConfig) -> Result<(TestServer, Arc<AtomicUsize>)> {
    let runs = Arc::new(AtomicUsize::new(0));
    let whoami = super::spec("whoami", Effect::Read, None, json!({}), &[]);
    let tools: Vec<Arc<dyn Tool>> = vec![Arc::new(WhoAmI(whoami, runs.clone()))];
    let server = super::start_with_identity(PipelineConfig::default(), tools, Arc::new(NoSurface), identity).await?;
    Ok((server, runs))
}

/// The principal fields of a `whoami` result's structured content.
pub fn caller(structured: &Value) -> Value {
    json!({"id": structured["id"], "kind": structured["kind"], "roles": structured["roles"]})
}

// ---- raw 2026-07-28 requests -------------------------------------------------------------------

pub struct Reply {
    pub status: u16,
    pub challenge: String,
    pub retry_after: Option<String>,
    pub body: Value,
}

impl Reply {
    /// Who `whoami` said called it.
    pub fn whoami(&self) -> Value {
        caller(&self.body["result"]["structuredContent"])
    }

    pub fn error_message(&self) -> String {
        self.body["error"]["message"].as_str().unwrap_or_default().to_string()
    }
}

/// `tools/call whoami` with `authorization` as the header, if any.
pub async fn call(server: &TestServer, authorization: Option<&str>) -> Result<Reply> {
    let mut request = http_request(server, authorization);
    request = request.body(
        json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "whoami", "arguments": {},
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "identity-test", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {},
        }}})
        .to_string(),
    );
    reply(request.send().await?).await
}

pub fn http_request(server: &TestServer, authorization: Option<&str>) -> reqwest::RequestBuilder {
    let mut request = reqwest::Client::new()
        .post(server.url())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "whoami");
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    request
}

pub async fn reply(response: reqwest::Response) -> Result<Reply> {
    let status = response.status().as_u16();
    let header = |name: &str| response.headers().get(name).and_then(|value| value.to_str().ok()).map(str::to_string);
    let challenge = header("www-authenticate").unwrap_or_default();
    let retry_after = header("retry-after");
    let text = response.text().await?;
    let body = serde_json::from_str(&text).with_context(|| format!("status {status}, body {text}"))?;
    Ok(Reply { status, challenge, retry_after, body })
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Every audit record as JSON text, to check that no token ever reached the log.
pub async fn audit_text(server: &TestServer) -> Result<String> {
    Ok(serde_json::to_string(&server.store.audit_tail(10_000).await?)?)
}

// ---- API keys ----------------------------------------------------------------------------------

// ---- OAuth: keys, a JWKS server, tokens --------------------------------------------------------

pub fn openssl(args: &[&str]) -> Result<Vec<u8>> {
    let output = std::process::Command::new("openssl").args(args).output().context("running openssl")?;
    if !output.status.success() {
        bail!("openssl {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(output.stdout)
}

/// A signing key generated for this run, with its public JWK.
pub struct TestKey {
    pub kid: String,
    pub algorithm: Algorithm,
    pub encoding: EncodingKey,
    pub jwk: Value,
    pub public_pem: Vec<u8>,
}

impl TestKey {
    pub fn rsa(kid: &str) -> Result<TestKey> {
        let pem = openssl(&["genrsa", "-traditional", "2048"])?;
        TestKey::from_pem(kid, Algorithm::RS256, &pem, EncodingKey::from_rsa_pem(&pem)?)
    }

    pub fn ec(kid: &str) -> Result<TestKey> {
        let pem = openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"])?;
        TestKey::from_pem(kid, Algorithm::ES256, &pem, EncodingKey::from_ec_pem(&pem)?)
    }

    pub fn from_pem(kid: &str, algorithm: Algorithm, pem: &[u8], encoding: EncodingKey) -> Result<TestKey> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("key.pem");
        std::fs::write(&path, pem)?;
        let public_pem = openssl(&["pkey", "-in", path.to_str().unwrap_or_default(), "-pubout"])?;
        let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&encoding, algorithm)?)?;
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        Ok(TestKey { kid: kid.to_string(), algorithm, encoding, jwk, public_pem })
    }

    pub fn sign(&self, claims: &Value) -> Result<String> {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &self.encoding)?)
    }
}

pub fn key_set(keys: &[&TestKey]) -> Value {
    json!({"keys": keys.iter().map(|key| key.jwk.clone()).collect::<Vec<_>>()})
}

/// A JWKS endpoint on a loopback port whose document, availability and hit count the test
/// controls.
pub struct JwksServer {
    pub url: String,
    pub document: Arc<Mutex<Value>>,
    pub down: Arc<AtomicBool>,
    pub hits: Arc<AtomicUsize>,
    pub task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
pub struct JwksState {
    pub document: Arc<Mutex<Value>>,
    pub down: Arc<AtomicBool>,
    pub hits: Arc<AtomicUsize>,
}

impl JwksServer {
    pub async fn start(document: Value) -> Result<JwksServer> {
        let state = JwksState { document: Arc::new(Mutex::new(document)), down: Arc::default(), hits: Arc::default() };
        async fn serve(State(state): State<JwksState>) -> axum::response::Response {
            state.hits.fetch_add(1, Ordering::SeqCst);
            if state.down.load(Ordering::SeqCst) {
                return (http::StatusCode::SERVICE_UNAVAILABLE, "down for maintenance").into_response();
            }
            let document = state.document.lock().map(|document| document.clone()).unwrap_or_default();
            axum::Json(document).into_response()
        }
        let router = axum::Router::new().route("/jwks.json", axum::routing::get(serve)).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/jwks.json", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(JwksServer { url, document: state.document, down: state.down, hits: state.hits, task })
    }

    pub fn set(&self, document: Value) {
        if let Ok(mut current) = self.document.lock() {
            *current = document;
        }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn public_url(server: &TestServer) -> String {
    format!("http://{}", server.address)
}

/// OAuth against `jwks`, audience the server's URL, two scopes mapped to roles.
pub fn oauth_identity(jwks: &JwksServer, public_url: &str, configure: impl FnOnce(&mut OauthConfig)) -> IdentityConfig {
    let mut oauth = OauthConfig::new(ISSUER, jwks.url.clone(), public_url);
    oauth.roles = BTreeMap::from([
        ("opsgate:read".to_string(), vec!["reader".to_string()]),
        ("opsgate:write".to_string(), vec!["operator".to_string(), "reader".to_string()]),
    ]);
    configure(&mut oauth);
    IdentityConfig { oauth: Some(oauth), ..IdentityConfig::default() }
}

pub fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

/// Good claims for `server`, with `changes` applied (a null removes a claim).
pub fn claims(server: &TestServer, changes: Value) -> Value {
    let mut claims = json!({
        "iss": ISSUER,
        "aud": public_url(server),
        "sub": "alice",
        "iat": now(),
        "exp": now() + 300,
        "scope": "opsgate:read opsgate:write",
    });
    for (key, value) in changes.as_object().cloned().unwrap_or_default() {
        if value.is_null() {
            claims.as_object_mut().map(|claims| claims.remove(&key));
        } else {
            claims[key] = value;
        }
    }
    claims
}

pub fn base64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
