//! Redaction tests: real secret shapes are masked, look-alikes survive.

use serde_json::json;

use super::*;

fn check(input: &str, expect: &str) {
    assert_eq!(Redactor::new().redact_text(input), expect, "input: {input}");
}

#[test]
fn masks_secret_shapes() {
    check("Authorization: Bearer abcdef0123456789xyz", "Authorization: Bearer ***");
    check("url postgres://app:hunter2@db:5432/x", "url postgres://app:***@db:5432/x");
    check("GITHUB_TOKEN=ghp_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "GITHUB_TOKEN=***");
    check("key AKIAIOSFODNN7EXAMPLE here", "key *** here");
    check("password: s3cr3t!", "password: ***");
    check(r#"{"api_key": "abc123"}"#, r#"{"api_key": "***"}"#);
    check(
        "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U end",
        "jwt *** end",
    );
    check("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----", "-----PRIVATE KEY ***-----");
}

#[test]
fn leaves_look_alikes_alone() {
    for text in [
        "commit 4b825dc642cb6eb9a060e54bf8d69288fbee4904",
        "id 123e4567-e89b-12d3-a456-426614174000",
        "image sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "http://prometheus:9090/api/v1/query",
        "token_count 42",
    ] {
        check(text, text);
    }
}

#[test]
fn masks_values_under_secret_keys_but_not_numbers() {
    let mut value = json!({"env": {"DB_PASSWORD": "x", "token_count": 3}, "list": ["Bearer abcdefghijk"]});
    Redactor::new().redact_value(&mut value);
    assert_eq!(value, json!({"env": {"DB_PASSWORD": "***", "token_count": 3}, "list": ["Bearer ***"]}));
}

#[test]
fn needs_redaction_agrees_with_redact_value() {
    let redactor = Redactor::new();
    for value in [
        json!({"env": {"DB_PASSWORD": "x"}}),
        json!({"list": ["Bearer abcdefghijk"]}),
        json!({"deep": [{"note": "postgres://app:hunter2@db/x"}]}),
        json!({"service": "payments-api", "token_count": 3, "commit": "4b825dc642cb6eb9a060e54bf8d69288fbee4904"}),
        json!({"password": ""}),
        json!(["plain", 1, null, true]),
    ] {
        let mut redacted = value.clone();
        redactor.redact_value(&mut redacted);
        assert_eq!(redactor.needs_redaction(&value), redacted != value, "{value}");
    }
}
