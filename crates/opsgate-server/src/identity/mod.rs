//! Who an HTTP caller is. `Authorization: Bearer og_…` is an opsgate API key (`api_keys.rs`);
//! any other bearer token is an OAuth 2.1 access token, a JWT checked against the issuer's JWKS
//! (`oauth.rs`); no credential at all is the anonymous principal, when the configuration allows
//! it. The HTTP middleware (`http::authenticate`) turns a `Rejection` into the 401/403 with
//! `WWW-Authenticate` and writes the audit record; nothing here touches HTTP responses.

mod api_keys;
pub mod oauth;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::HeaderMap;
use opsgate_core::Principal;
use opsgate_store::{Revocation, Store, StoreError};

pub use oauth::{Algorithm, OauthConfig, parse_algorithm};

use self::api_keys::ApiKeyCache;
use self::oauth::OauthVerifier;

/// How long a verified API key is trusted before it is checked against the store again: the
/// bound on how late a revocation made by another process (`opsgate keys revoke`, another
/// replica) takes effect. A revocation through this process's `Identity` takes effect at once.
pub const API_KEY_RECHECK: Duration = Duration::from_secs(5);

/// Longer `Authorization` headers are refused before any parsing: no key or JWT needs this much.
pub const MAX_AUTHORIZATION_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// `Some(true)`: requests without credentials are served as the anonymous principal;
    /// `Some(false)`: they get 401. `None` (the default): anonymous access is allowed only while
    /// OAuth is not configured and no API key was ever created, so a first run works without
    /// setup and creating the first key closes the door.
    pub allow_anonymous: Option<bool>,
    pub oauth: Option<OauthConfig>,
    /// See [`API_KEY_RECHECK`].
    pub api_key_recheck: Duration,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig { allow_anonymous: None, oauth: None, api_key_recheck: API_KEY_RECHECK }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("invalid identity configuration: {0}")]
    Config(String),
}

/// Why a request was not let in. `reason` is safe to show the client and to log: it never holds
/// the token, at most an API key's public prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub kind: RejectionKind,
    pub reason: String,
    /// Who the credential named, when that is known although it was refused: `key:NAME` for a
    /// revoked key, `oauth:SUB` for a token without a required scope.
    pub principal: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RejectionKind {
    /// No credential, and anonymous access is off: 401 without an error code (RFC 6750 §3.1).
    MissingCredentials,
    /// The `Authorization` header is not `Bearer <token>`: 401 `invalid_request`.
    InvalidRequest,
    /// A token was presented and refused: 401 `invalid_token`.
    InvalidToken,
    /// A valid token without a scope this server requires: 403 `insufficient_scope`.
    InsufficientScope { scope: String },
    /// The credential cannot be checked right now (store unreachable, lookups throttled): 503.
    Unavailable,
}

impl RejectionKind {
    /// The RFC 6750 error code, if the response carries one.
    pub fn error_code(&self) -> Option<&'static str> {
        match self {
            RejectionKind::MissingCredentials | RejectionKind::Unavailable => None,
            RejectionKind::InvalidRequest => Some("invalid_request"),
            RejectionKind::InvalidToken => Some("invalid_token"),
            RejectionKind::InsufficientScope { .. } => Some("insufficient_scope"),
        }
    }
}

impl Rejection {
    fn new(kind: RejectionKind, reason: impl Into<String>) -> Self {
        Rejection { kind, reason: reason.into(), principal: None }
    }

    pub(crate) fn invalid_token(reason: impl Into<String>) -> Self {
        Rejection::new(RejectionKind::InvalidToken, reason)
    }

    pub(crate) fn unavailable(reason: impl Into<String>) -> Self {
        Rejection::new(RejectionKind::Unavailable, reason)
    }

    fn invalid_request(reason: impl Into<String>) -> Self {
        Rejection::new(RejectionKind::InvalidRequest, reason)
    }

    pub(crate) fn for_principal(mut self, principal: String) -> Self {
        self.principal = Some(principal);
        self
    }
}

/// The identity stage for HTTP, shared by every request.
pub struct Identity {
    store: Store,
    allow_anonymous: Option<bool>,
    api_keys: ApiKeyCache,
    oauth: Option<OauthVerifier>,
    keys_exist: KeysExist,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Identity")
            .field("allow_anonymous", &self.allow_anonymous)
            .field("oauth", &self.oauth.is_some())
            .finish_non_exhaustive()
    }
}

impl Identity {
    pub fn new(config: IdentityConfig, store: Store) -> Result<Identity, IdentityError> {
        let oauth = config.oauth.map(OauthVerifier::new).transpose()?;
        Ok(Identity {
            store,
            allow_anonymous: config.allow_anonymous,
            api_keys: ApiKeyCache::new(config.api_key_recheck),
            oauth,
            keys_exist: KeysExist::new(config.api_key_recheck),
        })
    }

    /// The OAuth settings, when OAuth is configured.
    pub fn oauth(&self) -> Option<&OauthConfig> {
        self.oauth.as_ref().map(OauthVerifier::config)
    }

    /// Who sent a request with these headers, or why it is refused.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, Rejection> {
        let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
        let Some(value) = values.next() else {
            return self.anonymous().await;
        };
        if values.next().is_some() {
            return Err(Rejection::invalid_request("more than one Authorization header"));
        }
        if value.len() > MAX_AUTHORIZATION_BYTES {
            return Err(Rejection::invalid_request(format!(
                "the Authorization header is longer than {MAX_AUTHORIZATION_BYTES} bytes"
            )));
        }
        let token = bearer_token(value.as_bytes())?;
        if token.starts_with(opsgate_store::api_keys::KEY_PREFIX) {
            return self.api_keys.verify(&self.store, token).await;
        }
        match &self.oauth {
            Some(oauth) => oauth.verify(token).await,
            None => Err(Rejection::invalid_token(
                "the bearer token is not an opsgate API key (og_...) and OAuth is not configured on this server",
            )),
        }
    }

    /// Revokes the API key `name` in the store and in this process's cache at once.
    pub async fn revoke_api_key(&self, name: &str) -> Result<Revocation, StoreError> {
        let revocation = self.store.revoke_api_key(name).await?;
        if let Revocation::Revoked { at } | Revocation::AlreadyRevoked { at } = &revocation {
            self.api_keys.mark_revoked(name, at);
        }
        Ok(revocation)
    }

    async fn anonymous(&self) -> Result<Principal, Rejection> {
        let allowed = match self.allow_anonymous {
            Some(allowed) => allowed,
            None if self.oauth.is_some() => false,
            None => !self.keys_exist.check(&self.store).await?,
        };
        if allowed {
            Ok(Principal::anonymous())
        } else {
            Err(Rejection::new(
                RejectionKind::MissingCredentials,
                "authentication required: send Authorization: Bearer <API key or OAuth access token>",
            ))
        }
    }
}

/// The token of `Bearer <token>`. The scheme is case-insensitive (RFC 7235); the token is
/// RFC 6750's `b64token`, so anything with spaces or control characters in it is refused.
fn bearer_token(value: &[u8]) -> Result<&str, Rejection> {
    let text = std::str::from_utf8(value)
        .ok()
        .filter(|text| text.is_ascii())
        .ok_or_else(|| Rejection::invalid_request("the Authorization header is not ASCII"))?;
    let (scheme, rest) = text.trim().split_once(' ').unwrap_or((text.trim(), ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Rejection::invalid_request(
            "only the Bearer scheme is supported: send Authorization: Bearer <token>",
        ));
    }
    let token = rest.trim_start_matches(' ');
    if token.is_empty() {
        return Err(Rejection::invalid_request("Authorization: Bearer carries no token"));
    }
    let is_b64token = token
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'='));
    if !is_b64token {
        return Err(Rejection::invalid_token("the bearer token contains characters no token has"));
    }
    Ok(token)
}

/// Whether any API key exists, for the default anonymous rule. Once one does, that never
/// changes (revoked keys keep their rows), so only "none yet" is rechecked, at most once per
/// interval, by one request at a time.
struct KeysExist {
    recheck: Duration,
    /// Sticky: set once a key was seen.
    found: AtomicBool,
    /// When the store last said there were none.
    checked_at: Mutex<Option<Instant>>,
    /// Held while one request asks the store, so that many requests do not ask at once.
    asking: tokio::sync::Mutex<()>,
}

impl KeysExist {
    fn new(recheck: Duration) -> Self {
        KeysExist { recheck, found: AtomicBool::new(false), checked_at: Mutex::new(None), asking: Default::default() }
    }

    fn known(&self) -> Option<bool> {
        if self.found.load(Ordering::Acquire) {
            return Some(true);
        }
        let checked_at = *self.checked_at.lock().unwrap_or_else(PoisonError::into_inner);
        checked_at.filter(|at| at.elapsed() < self.recheck).map(|_| false)
    }

    async fn check(&self, store: &Store) -> Result<bool, Rejection> {
        if let Some(known) = self.known() {
            return Ok(known);
        }
        let _asking = self.asking.lock().await;
        if let Some(known) = self.known() {
            return Ok(known);
        }
        let found = store.any_api_keys().await.map_err(|error| {
            tracing::warn!(%error, "cannot check for API keys; refusing anonymous access");
            Rejection::unavailable("cannot check credentials: the store is unreachable")
        })?;
        if found {
            self.found.store(true, Ordering::Release);
        } else {
            *self.checked_at.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests;
