//! Secret redaction for tool outputs, arguments and audit records. Patterns match the shapes of
//! real credentials; values that merely look random (git SHAs, UUIDs, digests) are left alone
//! because agents need them.

use regex::{Regex, RegexSet};
use serde_json::Value;

pub const MASK: &str = "***";

/// A compiled set of secret patterns. Build once, share everywhere.
pub struct Redactor {
    /// All patterns in one automaton: one pass tells whether a text needs any replacement, which
    /// is the common case to make cheap (nearly every text has no secret).
    any: RegexSet,
    patterns: Vec<(Regex, &'static str)>,
    secret_key: Regex,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Redactor").field("patterns", &self.patterns.len()).finish()
    }
}

/// Words that make a name a secret's (`DB_PASSWORD`, `api_key`, `clientSecret`), case-insensitive:
/// one list for `name=value` in text and for keys of JSON objects, so the two cannot drift.
macro_rules! secret_names {
    () => {
        "token|secret|passw(?:or)?d|api[_-]?key|access[_-]?key|account[_-]?key|private[_-]?key|client[_-]?secret"
    };
}

/// Environment-style names ending in `_KEY` (`SIGNING_KEY`, `STRIPE_KEY`): upper case only, so that
/// `cache_key` or `primary_key` survive.
macro_rules! env_key_name {
    () => {
        "[A-Z0-9_]*_KEY"
    };
}

/// Each pattern with the replacement that keeps the non-secret context (`$1`) readable.
const PATTERNS: &[(&str, &str)] = &[
    // PEM private keys, whole block.
    (r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----", "-----PRIVATE KEY ***-----"),
    // Authorization headers and bearer tokens. After `token` the credential must hold a digit,
    // so that prose such as "token validation failed" survives; after `Bearer` or `Basic`
    // anything of 8 characters or more is taken for one.
    (r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9\-._~+/]{8,}=*", "$1$2***"),
    (
        r"(?i)\b(token)(\s+)(?:[A-Za-z0-9\-._~+/]*[0-9][A-Za-z0-9\-._~+/]{6,}|[A-Za-z0-9\-._~+/]{6,}[0-9][A-Za-z0-9\-._~+/]*)=*",
        "$1$2***",
    ),
    // JSON Web Tokens.
    (r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*", "***"),
    // Passwords in URLs: scheme://user:password@host.
    (r"([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^@/\s]+@", "$1***@"),
    // NAME_TOKEN=value, api_key: value, "password": "value" and friends.
    (concat!(r#"(?i)([A-Za-z0-9_.-]*(?:"#, secret_names!(), r#")["']?\s*[=:]\s*["']?)[^\s"',;&}]+"#), "$1***"),
    // SIGNING_KEY=…, STRIPE_KEY: … (see `env_key_name`).
    (concat!(r"(\b", env_key_name!(), r#"["']?\s*[=:]\s*["']?)[^\s"',;&}]+"#), "$1***"),
    // Cloud and SaaS keys with fixed prefixes.
    (r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", "***"),
    (r"\bgh[pousr]_[A-Za-z0-9]{30,}\b", "***"),
    (r"\bgithub_pat_[A-Za-z0-9_]{40,}\b", "***"),
    (r"\bglpat-[A-Za-z0-9_-]{20,}\b", "***"),
    (r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b", "***"),
    (r"\bsk-[A-Za-z0-9_-]{20,}\b", "***"),
    (r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}\b", "***"),
    (r"\bnpm_[A-Za-z0-9]{36}\b", "***"),
    (r"\bhvs\.[A-Za-z0-9_-]{20,}\b", "***"),
    (r"(https://hooks\.slack\.com/services/)[A-Za-z0-9/]+", "$1***"),
    (r"\bAIza[0-9A-Za-z_-]{35}\b", "***"),
];

impl Default for Redactor {
    fn default() -> Self {
        Self::new()
    }
}

/// A key or variable name that says its value is a secret. Keys also name headers and cookies,
/// whose whole value is the secret.
#[allow(clippy::expect_used)] // A constant pattern, covered by the tests below.
static SECRET_KEY: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
    Regex::new(concat!("(?i:", secret_names!(), "|credential|authorization|cookie)|^", env_key_name!(), "$"))
        .expect("secret key pattern compiles")
});

/// Whether a name (a JSON key, an environment variable) says its value is a secret: the rule
/// that masks JSON values by key, shared with whatever else must recognise secrets by name (a
/// federated server's environment), so the two cannot drift apart.
pub fn is_secret_name(name: &str) -> bool {
    SECRET_KEY.is_match(name)
}

impl Redactor {
    #[allow(clippy::expect_used)] // The patterns are constants covered by the tests below.
    pub fn new() -> Self {
        let patterns = PATTERNS
            .iter()
            .map(|(pattern, replacement)| (Regex::new(pattern).expect("redaction pattern compiles"), *replacement))
            .collect();
        let secret_key = SECRET_KEY.clone();
        let any = RegexSet::new(PATTERNS.iter().map(|(pattern, _)| *pattern)).expect("redaction patterns compile");
        Redactor { any, patterns, secret_key }
    }

    /// Masks every secret in `text`; returns the text unchanged (and unallocated) when there is
    /// none.
    pub fn redact_text<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        let mut current = std::borrow::Cow::Borrowed(text);
        if !self.any.is_match(text) {
            return current;
        }
        for (pattern, replacement) in &self.patterns {
            if pattern.is_match(&current) {
                current = std::borrow::Cow::Owned(pattern.replace_all(&current, *replacement).into_owned());
            }
        }
        current
    }

    /// Whether `redact_value` would change anything in `value`; cheaper than redacting a copy.
    pub fn needs_redaction(&self, value: &Value) -> bool {
        match value {
            Value::String(text) => self.any.is_match(text),
            Value::Array(items) => items.iter().any(|item| self.needs_redaction(item)),
            Value::Object(map) => {
                let secret_object = is_kubernetes_secret(map);
                map.iter().any(|(key, item)| {
                    (secret_object && is_secret_data(key) && has_unmasked_string(item))
                        || (self.secret_key.is_match(key) && is_scalar_secret(item))
                        || self.needs_redaction(item)
                })
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => false,
        }
    }

    /// Masks secrets inside a JSON value in place: string values by pattern, and whole values
    /// under keys that name a secret (`password`, `apiKey`, `X_TOKEN`). A Kubernetes Secret
    /// (`"kind": "Secret"`) keeps its keys but loses every value under `data` and `stringData`.
    pub fn redact_value(&self, value: &mut Value) {
        match value {
            Value::String(text) => {
                if let std::borrow::Cow::Owned(redacted) = self.redact_text(text) {
                    *text = redacted;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|item| self.redact_value(item)),
            Value::Object(map) => {
                let secret_object = is_kubernetes_secret(map);
                for (key, item) in map.iter_mut() {
                    if secret_object && is_secret_data(key) {
                        mask_strings(item);
                    } else if self.secret_key.is_match(key) && is_scalar_secret(item) {
                        *item = Value::String(MASK.to_string());
                    } else {
                        self.redact_value(item);
                    }
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
}

/// A Kubernetes Secret, as the API returns it (`kind` and `apiVersion: v1`).
fn is_kubernetes_secret(map: &serde_json::Map<String, Value>) -> bool {
    map.get("kind").and_then(Value::as_str) == Some("Secret")
        && map.get("apiVersion").and_then(Value::as_str).is_none_or(|version| version == "v1")
}

fn is_secret_data(key: &str) -> bool {
    key == "data" || key == "stringData"
}

/// Every non-empty string inside `value` becomes the mask.
fn mask_strings(value: &mut Value) {
    match value {
        Value::String(text) if !text.is_empty() => *text = MASK.to_string(),
        Value::Array(items) => items.iter_mut().for_each(mask_strings),
        Value::Object(map) => map.values_mut().for_each(mask_strings),
        _ => {}
    }
}

fn has_unmasked_string(value: &Value) -> bool {
    match value {
        Value::String(text) => !text.is_empty() && text != MASK,
        Value::Array(items) => items.iter().any(has_unmasked_string),
        Value::Object(map) => map.values().any(has_unmasked_string),
        _ => false,
    }
}

/// A key such as `token_count` may hold a number: only strings are secrets.
fn is_scalar_secret(value: &Value) -> bool {
    matches!(value, Value::String(text) if !text.is_empty() && text != MASK)
}

#[cfg(test)]
mod tests;
