//! API key verification with a cache, because every request of an API-key client pays for it:
//! a key seen in the last `recheck` interval costs one SHA-256 and one map lookup.
//!
//! - Known keys (active or revoked) are cached by the SHA-256 of the key. An entry older than
//!   `recheck` is checked against the store again before it is trusted, so a revocation made
//!   elsewhere takes effect within that bound; `mark_revoked` makes one made here immediate.
//! - Unknown keys are remembered for `UNKNOWN_TTL`, and store lookups for keys not in the cache
//!   are rate-limited, so a flood of random keys cannot turn into a flood of queries.
//! - Only well-formed keys (`og_` and 64 hex digits) are ever looked up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use opsgate_core::{Principal, PrincipalKind};
use opsgate_store::Store;
use opsgate_store::api_keys::{digest_hex, display_prefix, is_well_formed, key_digest};

use super::Rejection;
use crate::limits::TokenBucket;

/// How long a key the store does not know is answered from memory.
const UNKNOWN_TTL: Duration = Duration::from_secs(60);
/// The most unknown keys remembered; past this the memory is cleared and refilled.
const MAX_UNKNOWN: usize = 10_000;
/// Store lookups for keys not in the cache: a burst of this many, then `LOOKUPS_PER_SECOND`.
const LOOKUP_BURST: f64 = 50.0;
const LOOKUPS_PER_SECOND: f64 = 20.0;

type Digest = [u8; 32];

struct CachedKey {
    name: String,
    principal: Principal,
    revoked_at: Option<String>,
    checked_at: Instant,
}

impl CachedKey {
    fn outcome(&self, token: &str) -> Result<Principal, Rejection> {
        match &self.revoked_at {
            None => Ok(self.principal.clone()),
            Some(at) => Err(Rejection::invalid_token(format!(
                "API key {:?} ({}) was revoked at {at}",
                self.name,
                display_prefix(token)
            ))
            .for_principal(self.principal.id.clone())),
        }
    }
}

pub(super) struct ApiKeyCache {
    recheck: Duration,
    known: RwLock<HashMap<Digest, Arc<CachedKey>>>,
    unknown: Mutex<HashMap<Digest, Instant>>,
    lookups: Mutex<TokenBucket>,
    /// Held while one request asks the store: a key going stale under load is looked up once,
    /// not once per concurrent request.
    asking: tokio::sync::Mutex<()>,
}

impl ApiKeyCache {
    pub(super) fn new(recheck: Duration) -> Self {
        ApiKeyCache {
            recheck,
            known: RwLock::default(),
            unknown: Mutex::default(),
            lookups: Mutex::new(TokenBucket::new(LOOKUP_BURST, LOOKUPS_PER_SECOND)),
            asking: tokio::sync::Mutex::default(),
        }
    }

    pub(super) async fn verify(&self, store: &Store, token: &str) -> Result<Principal, Rejection> {
        if !is_well_formed(token) {
            return Err(Rejection::invalid_token("malformed API key: expected og_ and 64 hex digits"));
        }
        let digest = key_digest(token);
        if let Some(outcome) = self.answer_from_memory(&digest, token) {
            return outcome;
        }
        let _asking = self.asking.lock().await;
        // Another request may have looked this key up while this one waited.
        if let Some(outcome) = self.answer_from_memory(&digest, token) {
            return outcome;
        }
        let stale = self.known.read().unwrap_or_else(PoisonError::into_inner).contains_key(&digest);
        if !stale && self.lookups.lock().unwrap_or_else(PoisonError::into_inner).take().is_err() {
            tracing::warn!(prefix = display_prefix(token), "API key lookups throttled: too many unknown keys");
            return Err(Rejection::unavailable(
                "too many unknown API keys were presented; key lookups are throttled, retry in a second",
            ));
        }
        let found = store.api_key_by_hash(&digest_hex(&digest)).await.map_err(|error| {
            tracing::warn!(%error, "cannot look up an API key");
            Rejection::unavailable("cannot check the API key: the store is unreachable")
        })?;
        match found {
            None => {
                self.known.write().unwrap_or_else(PoisonError::into_inner).remove(&digest);
                self.remember_unknown(digest);
                Err(unknown(token))
            }
            Some(key) => {
                let cached = Arc::new(CachedKey {
                    principal: Principal {
                        id: format!("key:{}", key.name),
                        kind: PrincipalKind::ApiKey,
                        roles: key.roles,
                    },
                    name: key.name,
                    revoked_at: key.revoked_at,
                    checked_at: Instant::now(),
                });
                let outcome = cached.outcome(token);
                self.known.write().unwrap_or_else(PoisonError::into_inner).insert(digest, cached);
                outcome
            }
        }
    }

    /// The answer for a key checked recently enough, if there is one.
    fn answer_from_memory(&self, digest: &Digest, token: &str) -> Option<Result<Principal, Rejection>> {
        if let Some(cached) = self.known.read().unwrap_or_else(PoisonError::into_inner).get(digest) {
            // Revoked keys stay revoked: nothing un-revokes a key, so they need no recheck.
            if cached.revoked_at.is_some() || cached.checked_at.elapsed() < self.recheck {
                return Some(cached.outcome(token));
            }
            return None;
        }
        let unknown_since = self.unknown.lock().unwrap_or_else(PoisonError::into_inner).get(digest).copied();
        match unknown_since {
            Some(since) if since.elapsed() < UNKNOWN_TTL => Some(Err(unknown(token))),
            _ => None,
        }
    }

    fn remember_unknown(&self, digest: Digest) {
        let mut unknown = self.unknown.lock().unwrap_or_else(PoisonError::into_inner);
        if unknown.len() >= MAX_UNKNOWN {
            unknown.retain(|_, since| since.elapsed() < UNKNOWN_TTL);
            if unknown.len() >= MAX_UNKNOWN {
                unknown.clear();
            }
        }
        unknown.insert(digest, Instant::now());
    }

    /// Marks every cached key named `name` revoked, effective for the next request.
    pub(super) fn mark_revoked(&self, name: &str, at: &str) {
        let mut known = self.known.write().unwrap_or_else(PoisonError::into_inner);
        for cached in known.values_mut() {
            if cached.name == name && cached.revoked_at.is_none() {
                *cached = Arc::new(CachedKey {
                    name: cached.name.clone(),
                    principal: cached.principal.clone(),
                    revoked_at: Some(at.to_string()),
                    checked_at: Instant::now(),
                });
            }
        }
    }
}

fn unknown(token: &str) -> Rejection {
    Rejection::invalid_token(format!("unknown API key {}", display_prefix(token)))
}
