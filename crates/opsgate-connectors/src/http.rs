//! HTTP plumbing shared by the connectors: one way to build a client for a named backend
//! instance, to read a body without trusting its size, and to say why a request failed in words
//! an agent can act on (which instance, which URL, refused or slow).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode, Url};

/// No backend answer we use is anywhere near this; a bigger one means a runaway query, and
/// reading it whole would only spend memory on a result that cannot fit the output budget anyway.
pub(crate) const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// How much of an unexpected error body goes into a message: enough to recognise a proxy's
/// error page, not enough to flood the agent's context.
const MAX_ERROR_BODY_CHARS: usize = 300;

/// The environment of an instance whose configuration names none.
pub(crate) fn default_environment() -> String {
    "default".to_string()
}

/// Long enough for a heavy query on a loaded server, short enough that an agent is not left
/// waiting on a dead one.
pub(crate) fn default_timeout_seconds() -> u64 {
    10
}

/// A configuration that cannot work, found when the client is built rather than on first call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{kind} {name}: url {url:?} is invalid: {detail}")]
    Url { kind: &'static str, name: String, url: String, detail: String },
    #[error("{kind} {name}: header {header:?} is invalid: {detail}")]
    Header { kind: &'static str, name: String, header: String, detail: String },
    #[error("{kind} {name}: the bearer token is not a valid header value")]
    BearerToken { kind: &'static str, name: String },
    #[error("{kind} {name}: timeout_seconds must be at least 1")]
    Timeout { kind: &'static str, name: String },
    #[error("{kind} {name}: {detail}")]
    Other { kind: &'static str, name: String, detail: String },
}

/// Why a request to a backend failed. Every message names the instance and its URL (without
/// credentials).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("{kind} {name} at {url} is unreachable: {detail}")]
    Unreachable { kind: &'static str, name: String, url: String, detail: String },
    #[error(
        "{kind} {name} at {url} did not answer within {seconds}s (its timeout_seconds); \
         it is overloaded or the request is too expensive: narrow the period or add label filters"
    )]
    Timeout { kind: &'static str, name: String, url: String, seconds: u64 },
    #[error("{kind} {name} at {url} returned HTTP {status}: {body}")]
    Status { kind: &'static str, name: String, url: String, status: u16, body: String },
    #[error("{kind} {name} at {url} sent more than {limit} bytes; narrow the request")]
    TooLarge { kind: &'static str, name: String, url: String, limit: usize },
    #[error("{kind} {name} at {url} sent a response opsgate cannot read: {detail}")]
    Decode { kind: &'static str, name: String, url: String, detail: String },
}

impl HttpError {
    /// True when the backend is down, unreachable or too slow, as opposed to answering with an
    /// error: the agent should try later or elsewhere rather than change its request.
    pub fn is_unavailable(&self) -> bool {
        match self {
            HttpError::Unreachable { .. } | HttpError::Timeout { .. } => true,
            HttpError::Status { status, .. } => *status >= 500,
            HttpError::TooLarge { .. } | HttpError::Decode { .. } => false,
        }
    }
}

impl From<HttpError> for opsgate_core::ToolError {
    fn from(error: HttpError) -> Self {
        if error.is_unavailable() {
            opsgate_core::ToolError::Unavailable(error.to_string())
        } else {
            opsgate_core::ToolError::Backend(error.to_string())
        }
    }
}

/// A named backend instance reachable over HTTP: its base URL, its timeout, and a client that
/// sends its headers (credentials included) on every request.
///
/// `Debug` shows the name and the URL only: the headers may hold a bearer token.
#[derive(Clone)]
pub(crate) struct Endpoint {
    kind: &'static str,
    name: String,
    /// The base URL as configured, with any trailing `/` removed, so paths append cleanly.
    base: String,
    /// The base URL as messages show it: without a password.
    display_url: String,
    timeout: Duration,
    /// Built on first use: creating a TLS-capable client loads the system's CA certificates,
    /// which costs tens of milliseconds per instance, and start-up (the time to the first
    /// `tools/list`) should not pay it for backends a session may never call.
    client: Arc<OnceLock<reqwest::Client>>,
    default_headers: HeaderMap,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Endpoint")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("url", &self.display_url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What an endpoint needs from a connector's configuration.
pub(crate) struct EndpointSettings<'a> {
    pub kind: &'static str,
    pub name: &'a str,
    pub url: &'a str,
    pub timeout_seconds: u64,
    pub headers: &'a BTreeMap<String, String>,
    pub bearer_token: Option<String>,
}

impl Endpoint {
    pub(crate) fn new(settings: EndpointSettings<'_>) -> Result<Endpoint, ConfigError> {
        let EndpointSettings { kind, name, url, timeout_seconds, headers, bearer_token } = settings;
        let parsed = Url::parse(url).map_err(|error| ConfigError::Url {
            kind,
            name: name.to_string(),
            url: url.to_string(),
            detail: error.to_string(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ConfigError::Url {
                kind,
                name: name.to_string(),
                url: url.to_string(),
                detail: "the scheme must be http or https".to_string(),
            });
        }
        if timeout_seconds == 0 {
            return Err(ConfigError::Timeout { kind, name: name.to_string() });
        }
        let mut display = parsed.clone();
        if display.password().is_some() {
            // Cannot fail for http(s) URLs, which have a host; if it did, the password would stay,
            // so fall back to dropping the whole user-info.
            if display.set_password(Some("***")).is_err() {
                let _ = display.set_username("");
            }
        }
        let display_url = display.as_str().trim_end_matches('/').to_string();

        let mut default_headers = HeaderMap::new();
        for (header, value) in headers {
            let header_name = HeaderName::from_bytes(header.as_bytes()).map_err(|error| ConfigError::Header {
                kind,
                name: name.to_string(),
                header: header.clone(),
                detail: error.to_string(),
            })?;
            let mut header_value = HeaderValue::from_str(value).map_err(|error| ConfigError::Header {
                kind,
                name: name.to_string(),
                header: header.clone(),
                detail: error.to_string(),
            })?;
            // Configured headers often carry tenant ids or API keys; keep them out of any debug
            // output of the request.
            header_value.set_sensitive(true);
            default_headers.insert(header_name, header_value);
        }
        if let Some(token) = bearer_token {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| ConfigError::BearerToken { kind, name: name.to_string() })?;
            value.set_sensitive(true);
            default_headers.insert(AUTHORIZATION, value);
        }

        let timeout = Duration::from_secs(timeout_seconds);
        Ok(Endpoint {
            kind,
            name: name.to_string(),
            base: url.trim_end_matches('/').to_string(),
            display_url,
            timeout,
            client: Arc::default(),
            default_headers,
        })
    }

    fn client(&self) -> Result<&reqwest::Client, HttpError> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let client = reqwest::Client::builder()
            .default_headers(self.default_headers.clone())
            .connect_timeout(self.timeout)
            .user_agent(concat!("opsgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| HttpError::Unreachable {
                kind: self.kind,
                name: self.name.clone(),
                url: self.display_url.clone(),
                detail: format!("cannot build the HTTP client: {error}"),
            })?;
        // Two first calls may race; either client is fine and the loser is dropped.
        Ok(self.client.get_or_init(|| client))
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The base URL without credentials, as messages show it.
    pub(crate) fn display_url(&self) -> &str {
        &self.display_url
    }

    /// `GET base + path` with `query`, cut by the timeout. Returns the status and the body, read
    /// up to `MAX_BODY_BYTES`: the caller decides what a non-2xx status means, because some
    /// APIs (Prometheus) explain their errors in the body.
    pub(crate) async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<(StatusCode, Vec<u8>), HttpError> {
        self.send(Method::GET, path, query, None).await
    }

    /// A request with `method` and an optional JSON body; otherwise as `get`. Writes go through
    /// here too, and are never retried: a timed-out write may or may not have happened, and only
    /// the caller knows how to find out.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        json: Option<&serde_json::Value>,
    ) -> Result<(StatusCode, Vec<u8>), HttpError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.client()?.request(method.clone(), &url).query(query).timeout(self.timeout);
        if let Some(json) = json {
            request = request.json(json);
        }
        let mut response = request.send().await.map_err(|error| self.transport_error(&error))?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|error| self.transport_error(&error))? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(HttpError::TooLarge {
                    kind: self.kind,
                    name: self.name.clone(),
                    url: self.display_url.clone(),
                    limit: MAX_BODY_BYTES,
                });
            }
            body.extend_from_slice(&chunk);
        }
        tracing::debug!(backend = self.kind, instance = %self.name, %method, %path, status = status.as_u16(), bytes = body.len(), "backend request");
        Ok((status, body))
    }

    /// `get`, then JSON-decode a 2xx body into `T`; any other status is an error carrying the
    /// start of the body. (Prometheus explains errors in its body and reads it itself.)
    #[cfg_attr(not(feature = "alertmanager"), allow(dead_code))]
    pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, HttpError> {
        let (status, body) = self.get(path, query).await?;
        if !status.is_success() {
            return Err(self.status_error(status, &body));
        }
        serde_json::from_slice(&body).map_err(|error| self.decode_error(&error.to_string()))
    }

    pub(crate) fn status_error(&self, status: StatusCode, body: &[u8]) -> HttpError {
        HttpError::Status {
            kind: self.kind,
            name: self.name.clone(),
            url: self.display_url.clone(),
            status: status.as_u16(),
            body: error_body(body),
        }
    }

    pub(crate) fn decode_error(&self, detail: &str) -> HttpError {
        HttpError::Decode {
            kind: self.kind,
            name: self.name.clone(),
            url: self.display_url.clone(),
            detail: detail.to_string(),
        }
    }

    fn transport_error(&self, error: &reqwest::Error) -> HttpError {
        if error.is_timeout() {
            return HttpError::Timeout {
                kind: self.kind,
                name: self.name.clone(),
                url: self.display_url.clone(),
                seconds: self.timeout.as_secs(),
            };
        }
        HttpError::Unreachable {
            kind: self.kind,
            name: self.name.clone(),
            url: self.display_url.clone(),
            detail: transport_detail(error),
        }
    }
}

/// The innermost cause of a transport failure, which is the useful part: reqwest's own message
/// only says "error sending request for url (…)", and repeats the URL the caller already shows.
pub(crate) fn transport_detail(error: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    if let Some(io) = cause.downcast_ref::<std::io::Error>() {
        let plain = match io.kind() {
            std::io::ErrorKind::ConnectionRefused => Some("connection refused"),
            std::io::ErrorKind::ConnectionReset => Some("connection reset"),
            std::io::ErrorKind::ConnectionAborted => Some("connection aborted"),
            std::io::ErrorKind::HostUnreachable => Some("host unreachable"),
            std::io::ErrorKind::NetworkUnreachable => Some("network unreachable"),
            std::io::ErrorKind::UnexpectedEof => Some("connection closed before a response"),
            _ => None,
        };
        if let Some(plain) = plain {
            return plain.to_string();
        }
    }
    let text = cause.to_string();
    if text.is_empty() { error.to_string() } else { text }
}

/// The start of an error body, on one line.
pub(crate) fn error_body(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() <= MAX_ERROR_BODY_CHARS {
        return if text.is_empty() { "(empty body)".to_string() } else { text };
    }
    let mut cut: String = text.chars().take(MAX_ERROR_BODY_CHARS).collect();
    cut.push('…');
    cut
}
