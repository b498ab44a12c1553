//! Event ingestion from webhooks: `/hooks/<source>` verifies the delivery (a bearer token, a
//! shared token or an HMAC signature, per source), turns the payload into `Event`s, maps service
//! and environment, and stores them; a delivery seen before is stored once.
//!
//! One module per source, each with a `SOURCE` name and two functions: `verify` (the secret
//! against the headers, and the body too where the source signs it) and `normalize` (the body,
//! and the headers where the source puts facts there, to an `Ingest` at `now`). `hooks_api.rs`
//! calls them in that order. Normalising is pure: no IO, the time passed in.

pub mod alertmanager;
pub mod argocd;
pub mod cloudevents;
pub mod flux;
pub mod github;
pub mod gitlab;

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub use opsgate_core::{Event, EventKind, first_line, truncate_chars};

/// What a delivery became.
#[derive(Debug, Clone, PartialEq)]
pub enum Ingest {
    Events(Vec<Event>),
    /// A well-formed delivery opsgate does not keep (a `ping`, an event type it does not know,
    /// a pull request closed without merging): answered 202 with this reason.
    Ignored(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    /// The signature or token is missing or wrong: 401, nothing stored.
    #[error("{0}")]
    Unauthorized(String),
    /// The payload is not what the source sends: 400.
    #[error("{0}")]
    BadRequest(String),
}

/// A header's value as text, if present and printable.
pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok()).map(str::trim)
}

/// Checks `Authorization: Bearer <token>` against `expected`, in constant time.
pub fn verify_bearer(expected: &str, headers: &HeaderMap) -> Result<(), HookError> {
    let given = header(headers, "authorization")
        .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")))
        .ok_or_else(|| HookError::Unauthorized("missing Authorization: Bearer token".to_string()))?;
    verify_token(expected, given.trim(), "Authorization bearer token")
}

/// Compares a shared token in constant time (both sides hashed first, so the length leaks
/// nothing either). `what` names the header in the error.
pub fn verify_token(expected: &str, given: &str, what: &str) -> Result<(), HookError> {
    let expected = Sha256::digest(expected.as_bytes());
    let given = Sha256::digest(given.as_bytes());
    let difference = expected.iter().zip(given.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if difference == 0 { Ok(()) } else { Err(HookError::Unauthorized(format!("the {what} is wrong"))) }
}

/// Checks a hex HMAC-SHA256 of `body` under `secret` (constant time). `signature` may carry a
/// `sha256=` prefix, as GitHub's `X-Hub-Signature-256` and Flux's `X-Signature` do. `what`
/// names the header in the error.
pub fn verify_hmac_sha256(secret: &[u8], signature: Option<&str>, body: &[u8], what: &str) -> Result<(), HookError> {
    let signature = signature.ok_or_else(|| HookError::Unauthorized(format!("missing {what} header")))?;
    let hex_digest = signature.strip_prefix("sha256=").unwrap_or(signature);
    let given = hex::decode(hex_digest)
        .map_err(|_| HookError::Unauthorized(format!("{what} is not a hex SHA-256 signature")))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret)
        .map_err(|_| HookError::Unauthorized("the signing secret is unusable".to_string()))?;
    mac.update(body);
    mac.verify_slice(&given).map_err(|_| HookError::Unauthorized(format!("{what} does not match the body")))
}

/// A full Git commit id: 40 hex digits.
pub fn is_commit_sha(text: &str) -> bool {
    text.len() == 40 && text.bytes().all(|byte| byte.is_ascii_hexdigit())
}

/// A commit id as people write it in a summary: its first 7 characters.
pub fn short_sha(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

/// A link worth keeping on an event: an http or https URL.
pub fn is_url(text: &str) -> bool {
    text.starts_with("https://") || text.starts_with("http://")
}

/// A delivery id for sources that send none: the SHA-256 of the parts that make the event
/// unique, so a retried delivery maps to the same id.
pub fn digest_id(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    hex::encode(&hasher.finalize()[..16])
}

/// Parses a JSON body, naming the source in the error.
pub fn parse_json(body: &[u8], source: &str) -> Result<serde_json::Value, HookError> {
    serde_json::from_slice(body)
        .map_err(|error| HookError::BadRequest(format!("{source} payload is not valid JSON: {error}")))
}

/// Parses a body that must be one JSON object, naming the source in the error.
pub fn parse_object(body: &[u8], source: &str) -> Result<serde_json::Value, HookError> {
    let payload = parse_json(body, source)?;
    if !payload.is_object() {
        return Err(HookError::BadRequest(format!("{source} payload is not a JSON object")));
    }
    Ok(payload)
}

/// Any RFC 3339 time (any offset, any precision) as the store's format: UTC, milliseconds.
/// `None` for text that is not one, and for Go's zero time (`0001-01-01T00:00:00Z`), which
/// Alertmanager sends for an unset end.
pub fn normalize_time(text: &str) -> Option<String> {
    store_time(chrono::DateTime::parse_from_rfc3339(text).ok()?.with_timezone(&chrono::Utc))
}

/// A parsed time in the store's format, if it is one the store can order as text: years 2 to
/// 9999 (Go's zero time, year 1, means "unset"; other years would not be four digits).
pub fn store_time(time: chrono::DateTime<chrono::Utc>) -> Option<String> {
    (2..=9999).contains(&chrono::Datelike::year(&time)).then(|| opsgate_store::rfc3339(time))
}

/// The string at a JSON pointer, if it is one (numbers are written out).
pub fn text_at(value: &serde_json::Value, pointer: &str) -> Option<String> {
    text_of(value.pointer(pointer)?)
}

/// A JSON string, number or boolean as text; `None` for null, arrays and objects.
pub fn text_of(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(text) => Some(text.clone()),
        serde_json::Value::Number(number) => Some(number.to_string()),
        serde_json::Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// What the normalisers' tests share: the payloads under `testdata/hooks/` and small checks.
#[cfg(test)]
pub(crate) mod test_support {
    use super::{Event, HookError, Ingest};

    /// A payload from `testdata/hooks/<path>` (where each comes from: the README there).
    pub fn testdata(path: &str) -> Vec<u8> {
        let file = format!("{}/../../testdata/hooks/{path}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&file).unwrap_or_else(|error| panic!("{file}: {error}"))
    }

    /// The one event a delivery became.
    pub fn one(result: Result<Ingest, HookError>) -> Event {
        match result {
            Ok(Ingest::Events(mut events)) if events.len() == 1 => events.remove(0),
            other => panic!("expected one event, got {other:?}"),
        }
    }

    /// A JSON payload from `testdata/hooks/<path>`, changed by `edit`.
    pub fn edited(path: &str, edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let mut value: serde_json::Value = serde_json::from_slice(&testdata(path)).expect("JSON");
        edit(&mut value);
        serde_json::to_vec(&value).expect("serialise")
    }

    /// `sha256=<hex HMAC-SHA256 of body under secret>`, as GitHub and Flux sign.
    pub fn signature(secret: &str, body: &[u8]) -> String {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    pub fn attribute<'a>(event: &'a Event, name: &str) -> Option<&'a str> {
        event.attributes.get(name).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_hmac_signature_must_match_the_exact_body() {
        let body = br#"{"zen":"Design for failure."}"#;
        let good = test_support::signature("s3cret", body);
        assert_eq!(verify_hmac_sha256(b"s3cret", Some(&good), body, "X-Hub-Signature-256"), Ok(()));
        let tampered = br#"{"zen":"Design for failure!"}"#;
        assert!(matches!(
            verify_hmac_sha256(b"s3cret", Some(&good), tampered, "X-Hub-Signature-256"),
            Err(HookError::Unauthorized(_))
        ));
        assert!(verify_hmac_sha256(b"other", Some(&good), body, "X").is_err(), "another secret");
        assert!(verify_hmac_sha256(b"s3cret", None, body, "X").is_err(), "no signature");
        assert!(verify_hmac_sha256(b"s3cret", Some("sha256=zz"), body, "X").is_err(), "not hex");
    }

    #[test]
    fn tokens_compare_exactly() {
        assert_eq!(verify_token("abc", "abc", "X-Gitlab-Token"), Ok(()));
        assert!(verify_token("abc", "abcd", "X-Gitlab-Token").is_err());
        assert!(verify_token("abc", "", "X-Gitlab-Token").is_err());
        let mut headers = HeaderMap::new();
        assert!(verify_bearer("t0k", &headers).is_err(), "no header");
        headers.insert("authorization", "Bearer t0k".parse().expect("header"));
        assert_eq!(verify_bearer("t0k", &headers), Ok(()));
        headers.insert("authorization", "Basic t0k".parse().expect("header"));
        assert!(verify_bearer("t0k", &headers).is_err(), "not a bearer token");
    }

    #[test]
    fn times_become_utc_milliseconds_and_go_zero_time_is_none() {
        assert_eq!(normalize_time("2026-11-21T13:00:00+01:00").as_deref(), Some("2026-11-21T12:00:00.000Z"));
        assert_eq!(normalize_time("2026-11-21T12:00:00.123456789Z").as_deref(), Some("2026-11-21T12:00:00.123Z"));
        assert_eq!(normalize_time("0001-01-01T00:00:00Z"), None);
        assert_eq!(normalize_time("yesterday"), None);
        assert_eq!(normalize_time("9999-12-31T23:30:00-01:00"), None, "year 10000 would not sort as text");
    }
}
