//! OAuth 2.1 resource server: bearer JWTs signed by the issuer, verified against the issuer's
//! JWKS. Checked: the algorithm (an allow-list of asymmetric ones; `none` and shared-secret
//! algorithms can never be configured), the signature by the key the header's `kid` names, `iss`,
//! `aud` (RFC 8707: the token must be for this server), `exp` and `nbf` with a leeway, and the
//! required scopes. Scopes map to roles.
//!
//! The JWKS is fetched on first use and kept. A token naming a `kid` the cached set lacks
//! triggers a refetch (at most one per `jwks_refetch_interval`), which is how key rotation is
//! picked up; the set is also refreshed when older than `jwks_max_age`. A failed fetch keeps the
//! cached keys, so an issuer outage does not lock out tokens signed with keys already known.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{AlgorithmFamily, DecodingKey, Header, Validation};
use opsgate_core::{Principal, PrincipalKind};
use serde_json::{Map, Value};

pub use jsonwebtoken::Algorithm;

use super::{IdentityError, Rejection, RejectionKind};

/// The algorithms accepted when the configuration names none.
pub const DEFAULT_ALGORITHMS: [Algorithm; 2] = [Algorithm::RS256, Algorithm::ES256];

/// A JWKS larger than this is refused: real ones are a few kilobytes.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct OauthConfig {
    /// The `iss` every token must carry.
    pub issuer: String,
    pub jwks_url: String,
    /// Accepted `aud` values; a token must name one. The first is this server's resource
    /// identifier in the protected-resource metadata.
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    /// The claim holding the token's scopes: a space-separated string (`scope`, RFC 9068) or a
    /// list of strings (`scp`).
    pub scopes_claim: String,
    /// Roles granted by each scope.
    pub roles: BTreeMap<String, Vec<String>>,
    /// Scopes every token must have; a valid token without one gets 403 `insufficient_scope`.
    pub required_scopes: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// Advertised in the protected-resource metadata; the issuer by default.
    pub authorization_servers: Vec<String>,
    /// The least time between two JWKS fetches: an unknown `kid` refetches no more often.
    pub jwks_refetch_interval: Duration,
    /// Cached keys older than this are refreshed (keeping them if the refresh fails).
    pub jwks_max_age: Duration,
    pub jwks_timeout: Duration,
}

impl OauthConfig {
    /// Settings with the defaults for everything but the issuer, its JWKS and the audience.
    pub fn new(issuer: impl Into<String>, jwks_url: impl Into<String>, audience: impl Into<String>) -> Self {
        let issuer = issuer.into();
        OauthConfig {
            authorization_servers: vec![issuer.clone()],
            issuer,
            jwks_url: jwks_url.into(),
            audiences: vec![audience.into()],
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            scopes_claim: "scope".to_string(),
            roles: BTreeMap::new(),
            required_scopes: Vec::new(),
            leeway: Duration::from_secs(60),
            jwks_refetch_interval: Duration::from_secs(10),
            jwks_max_age: Duration::from_secs(15 * 60),
            jwks_timeout: Duration::from_secs(5),
        }
    }

    /// Scopes worth advertising: those that grant roles, and those required.
    pub fn scopes_supported(&self) -> Vec<String> {
        let mut scopes: Vec<String> = self.roles.keys().chain(&self.required_scopes).cloned().collect();
        scopes.sort();
        scopes.dedup();
        scopes
    }

    /// The RFC 9728 protected-resource metadata document.
    pub fn protected_resource_metadata(&self) -> Value {
        serde_json::json!({
            "resource": self.audiences.first(),
            "authorization_servers": self.authorization_servers,
            "scopes_supported": self.scopes_supported(),
            "bearer_methods_supported": ["header"],
            "resource_name": "opsgate",
        })
    }
}

/// An algorithm name from the configuration. `none` and the shared-secret HS* algorithms are
/// refused: a resource server checks the issuer's public keys and holds no secret to share.
pub fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    if name.eq_ignore_ascii_case("none") {
        return Err("\"none\" is never accepted: tokens must be signed".to_string());
    }
    match Algorithm::from_str(name) {
        Ok(algorithm) if algorithm.family() == AlgorithmFamily::Hmac => Err(format!(
            "{name} is a shared-secret algorithm; a resource server verifies the issuer's public keys \
             (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA)"
        )),
        Ok(algorithm) => Ok(algorithm),
        Err(_) => Err(format!(
            "unknown algorithm {name:?}; use RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA"
        )),
    }
}

/// One key from the JWKS, with the algorithms it may verify.
struct VerifyingKey {
    kid: Option<String>,
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
}

struct KeySet {
    keys: Vec<VerifyingKey>,
    fetched_at: Instant,
}

impl KeySet {
    /// The key for a token: the one its `kid` names, or with no `kid`, the only key for its
    /// algorithm.
    fn find(&self, kid: Option<&str>, algorithm: Algorithm) -> Found<'_> {
        match kid {
            Some(kid) => match self.keys.iter().find(|key| key.kid.as_deref() == Some(kid)) {
                Some(key) if key.algorithms.contains(&algorithm) => Found::Key(key),
                Some(_) => Found::WrongAlgorithm,
                None => Found::Missing,
            },
            None => {
                let mut candidates = self.keys.iter().filter(|key| key.algorithms.contains(&algorithm));
                match (candidates.next(), candidates.next()) {
                    (Some(key), None) => Found::Key(key),
                    (None, _) => Found::Missing,
                    (Some(_), Some(_)) => Found::Ambiguous,
                }
            }
        }
    }
}

enum Found<'a> {
    Key(&'a VerifyingKey),
    Missing,
    WrongAlgorithm,
    Ambiguous,
}

pub(super) struct OauthVerifier {
    config: OauthConfig,
    /// Built on first use: creating a TLS client loads the CA store, which start-up need not pay.
    client: OnceLock<Result<reqwest::Client, String>>,
    keys: RwLock<Option<Arc<KeySet>>>,
    /// The last fetch attempt; held while fetching, so one request fetches and the rest wait.
    fetch: tokio::sync::Mutex<Option<Instant>>,
    /// Why the last fetch failed, for the 401 of a token no cached key can check.
    last_error: Mutex<Option<String>>,
}

impl OauthVerifier {
    pub(super) fn new(config: OauthConfig) -> Result<Self, IdentityError> {
        if config.algorithms.is_empty() {
            return Err(IdentityError::Config("identity.oauth.algorithms is empty".to_string()));
        }
        if let Some(algorithm) = config.algorithms.iter().find(|algorithm| algorithm.family() == AlgorithmFamily::Hmac)
        {
            return Err(IdentityError::Config(format!("identity.oauth.algorithms: {algorithm:?} is not accepted")));
        }
        if config.audiences.is_empty() {
            return Err(IdentityError::Config("identity.oauth.audience is empty".to_string()));
        }
        Ok(OauthVerifier {
            config,
            client: OnceLock::new(),
            keys: RwLock::new(None),
            fetch: tokio::sync::Mutex::new(None),
            last_error: Mutex::new(None),
        })
    }

    pub(super) fn config(&self) -> &OauthConfig {
        &self.config
    }

    pub(super) async fn verify(&self, token: &str) -> Result<Principal, Rejection> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| Rejection::invalid_token(describe_bad_header(token)))?;
        if !self.config.algorithms.contains(&header.alg) {
            return Err(Rejection::invalid_token(format!(
                "the token's algorithm {:?} is not accepted (accepted: {})",
                header.alg,
                self.config.algorithms.iter().map(|algorithm| format!("{algorithm:?}")).collect::<Vec<_>>().join(", ")
            )));
        }
        let kid = header.kid.as_deref().map(printable);
        let key_name = kid.as_deref().map(|kid| format!("key {kid:?}")).unwrap_or_else(|| "the key".to_string());
        let keys = self.keys_for(&header).await?;
        let key = match keys.find(header.kid.as_deref(), header.alg) {
            Found::Key(key) => key,
            Found::WrongAlgorithm => {
                return Err(Rejection::invalid_token(format!(
                    "{key_name} of the issuer's JWKS is not for {:?}",
                    header.alg
                )));
            }
            Found::Ambiguous => {
                return Err(Rejection::invalid_token(
                    "the token names no kid and the issuer's JWKS holds several keys for its algorithm",
                ));
            }
            Found::Missing => {
                return Err(Rejection::invalid_token(match &kid {
                    Some(kid) => format!("unknown signing key: the issuer's JWKS has no key {kid:?}"),
                    None => "unknown signing key: the issuer's JWKS has no key for the token's algorithm".to_string(),
                }));
            }
        };

        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&self.config.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = self.config.leeway.as_secs();
        let claims = match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation) {
            Ok(data) => data.claims,
            Err(error) => return Err(Rejection::invalid_token(self.describe(error.kind(), &key_name))),
        };

        let subject = match claims.get("sub") {
            Some(Value::String(subject)) if !subject.is_empty() => subject.clone(),
            _ => return Err(Rejection::invalid_token("the token's sub claim is not a non-empty string")),
        };
        let principal_id = format!("oauth:{subject}");
        let scopes = scopes(claims.get(&self.config.scopes_claim));
        let missing: Vec<&str> = self
            .config
            .required_scopes
            .iter()
            .filter(|required| !scopes.contains(required))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            let scope = self.config.required_scopes.join(" ");
            return Err(Rejection {
                kind: RejectionKind::InsufficientScope { scope },
                reason: format!("the token lacks the required scope {}", missing.join(", ")),
                principal: Some(principal_id),
            });
        }
        let mut roles: Vec<String> = Vec::new();
        for scope in &scopes {
            for role in self.config.roles.get(scope).into_iter().flatten() {
                if !roles.contains(role) {
                    roles.push(role.clone());
                }
            }
        }
        Ok(Principal { id: principal_id, kind: PrincipalKind::Oauth, roles })
    }

    fn describe(&self, kind: &jsonwebtoken::errors::ErrorKind, key_name: &str) -> String {
        use jsonwebtoken::errors::ErrorKind;
        match kind {
            ErrorKind::ExpiredSignature => "the token has expired".to_string(),
            ErrorKind::ImmatureSignature => "the token is not valid yet (its nbf is in the future)".to_string(),
            ErrorKind::InvalidAudience => format!(
                "the token is not for this server: its aud does not include {}",
                self.config.audiences.join(" or ")
            ),
            ErrorKind::InvalidIssuer => format!("the token was not issued by {}", self.config.issuer),
            ErrorKind::InvalidSignature => format!("the token's signature does not verify with {key_name}"),
            ErrorKind::MissingRequiredClaim(claim) => format!("the token has no {} claim", printable(claim)),
            ErrorKind::InvalidClaimFormat(claim) => format!("the token's {} claim is malformed", printable(claim)),
            ErrorKind::InvalidAlgorithm => format!("the token's algorithm does not match {key_name}"),
            ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
                "the token is malformed".to_string()
            }
            _ => "the token is invalid".to_string(),
        }
    }

    /// The key set to check a token with: the cached one, fetched or refreshed when needed.
    async fn keys_for(&self, header: &Header) -> Result<Arc<KeySet>, Rejection> {
        let current = self.keys.read().unwrap_or_else(PoisonError::into_inner).clone();
        let keys = match current {
            None => {
                self.refetch(true).await;
                self.keys.read().unwrap_or_else(PoisonError::into_inner).clone()
            }
            Some(keys) if keys.fetched_at.elapsed() >= self.config.jwks_max_age => {
                // Stale: one request refreshes while the others carry on with the cached set.
                self.refetch(false).await;
                self.keys.read().unwrap_or_else(PoisonError::into_inner).clone()
            }
            Some(keys) => Some(keys),
        };
        let keys = match keys {
            Some(keys) if matches!(keys.find(header.kid.as_deref(), header.alg), Found::Missing) => {
                // Perhaps the issuer rotated its keys: look again (rate-limited).
                self.refetch(true).await;
                self.keys.read().unwrap_or_else(PoisonError::into_inner).clone().unwrap_or(keys)
            }
            Some(keys) => keys,
            None => {
                let why = self.last_error.lock().unwrap_or_else(PoisonError::into_inner).clone();
                return Err(Rejection::invalid_token(format!(
                    "no key to check the token with: {}",
                    why.unwrap_or_else(|| "the issuer's JWKS has not been fetched yet".to_string())
                )));
            }
        };
        Ok(keys)
    }

    /// Fetches the JWKS unless one was fetched (or tried) within the refetch interval. With
    /// `wait` false, returns at once if another request is already fetching.
    async fn refetch(&self, wait: bool) {
        let mut last_attempt = if wait {
            self.fetch.lock().await
        } else {
            match self.fetch.try_lock() {
                Ok(guard) => guard,
                Err(_) => return,
            }
        };
        if last_attempt.is_some_and(|at| at.elapsed() < self.config.jwks_refetch_interval) {
            return;
        }
        *last_attempt = Some(Instant::now());
        match self.fetch_jwks().await {
            Ok(keys) => {
                tracing::info!(url = %self.config.jwks_url, n_keys = keys.keys.len(), "fetched the issuer's JWKS");
                *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(keys));
                *self.last_error.lock().unwrap_or_else(PoisonError::into_inner) = None;
            }
            Err(error) => {
                tracing::warn!(url = %self.config.jwks_url, %error, "cannot fetch the issuer's JWKS; keeping cached keys");
                *self.last_error.lock().unwrap_or_else(PoisonError::into_inner) = Some(error);
            }
        }
    }

    async fn fetch_jwks(&self) -> Result<KeySet, String> {
        let url = &self.config.jwks_url;
        let client = self
            .client
            .get_or_init(|| {
                reqwest::Client::builder()
                    .timeout(self.config.jwks_timeout)
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|error| format!("cannot build an HTTP client: {error}"))
            })
            .as_ref()
            .map_err(Clone::clone)?;
        let mut response =
            client.get(url).send().await.map_err(|error| format!("cannot fetch the JWKS from {url}: {error}"))?;
        if !response.status().is_success() {
            return Err(format!("the JWKS at {url} answered {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) =
            response.chunk().await.map_err(|error| format!("cannot read the JWKS from {url}: {error}"))?
        {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!("the JWKS at {url} is larger than {MAX_JWKS_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        let document: Value =
            serde_json::from_slice(&body).map_err(|error| format!("the JWKS at {url} is not JSON: {error}"))?;
        let Some(entries) = document.get("keys").and_then(Value::as_array) else {
            return Err(format!("the JWKS at {url} has no keys list"));
        };
        let keys: Vec<VerifyingKey> = entries.iter().filter_map(|entry| self.usable_key(entry)).collect();
        if keys.is_empty() {
            return Err(format!("the JWKS at {url} holds no usable signing key"));
        }
        Ok(KeySet { keys, fetched_at: Instant::now() })
    }

    /// A JWKS entry as a key this server may verify with, or `None` for keys meant for
    /// something else (encryption, symmetric, an algorithm not accepted here).
    fn usable_key(&self, entry: &Value) -> Option<VerifyingKey> {
        let jwk: Jwk = serde_json::from_value(entry.clone()).ok()?;
        if matches!(&jwk.common.public_key_use, Some(usage) if *usage != PublicKeyUse::Signature) {
            return None;
        }
        let by_key_type: Vec<Algorithm> = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => AlgorithmFamily::Rsa.algorithms().to_vec(),
            AlgorithmParameters::EllipticCurve(parameters) => match parameters.curve {
                EllipticCurve::P256 => vec![Algorithm::ES256],
                EllipticCurve::P384 => vec![Algorithm::ES384],
                _ => return None,
            },
            AlgorithmParameters::OctetKeyPair(parameters) if parameters.curve == EllipticCurve::Ed25519 => {
                vec![Algorithm::EdDSA]
            }
            _ => return None,
        };
        let algorithms: Vec<Algorithm> = match &jwk.common.key_algorithm {
            Some(declared) => {
                let declared = Algorithm::from_str(&declared.to_string()).ok()?;
                by_key_type.into_iter().filter(|algorithm| *algorithm == declared).collect()
            }
            None => by_key_type,
        };
        let algorithms: Vec<Algorithm> =
            algorithms.into_iter().filter(|algorithm| self.config.algorithms.contains(algorithm)).collect();
        if algorithms.is_empty() {
            return None;
        }
        let key = DecodingKey::from_jwk(&jwk).ok()?;
        Some(VerifyingKey { kid: jwk.common.key_id.clone(), algorithms, key })
    }
}

/// Why a token's header could not be read, naming `alg: none` and unknown algorithms.
fn describe_bad_header(token: &str) -> String {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return "the bearer token is neither an opsgate API key (og_...) nor a JWT".to_string();
    };
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header.trim_end_matches('='));
    let algorithm = decoded
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .and_then(|header| header.get("alg").and_then(Value::as_str).map(printable));
    match algorithm {
        Some(algorithm) if algorithm.eq_ignore_ascii_case("none") => {
            "the token is unsigned (alg none), which is never accepted".to_string()
        }
        Some(algorithm) => format!("the token's algorithm {algorithm:?} is not supported"),
        None => "the token's JWT header is malformed".to_string(),
    }
}

/// Text from a token, cut short and stripped of anything but plain characters before it goes
/// into a response header, a log or the audit record.
fn printable(text: &str) -> String {
    text.chars()
        .filter(|character| character.is_ascii_graphic() && *character != '"' && *character != '\\')
        .take(64)
        .collect()
}

/// The scopes in a claim: a space-separated string or a list of strings.
fn scopes(claim: Option<&Value>) -> Vec<String> {
    match claim {
        Some(Value::String(text)) => text.split_whitespace().map(str::to_string).collect(),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => Vec::new(),
    }
}
