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

/// A name the text rules treat as a secret's is one as a JSON key too: the two lists are one.
#[test]
fn secret_names_are_masked_alike_in_text_and_as_json_keys() {
    let redactor = Redactor::new();
    let value = "Zx9-signing-material";
    for name in ["JWT_SIGNING_KEY", "AccountKey", "account_key", "client_secret", "clientSecret", "DB_PASSWORD"] {
        let text = format!("{name}={value}");
        assert!(!redactor.redact_text(&text).contains(value), "{text}");
        let mut object = json!({ name: value });
        redactor.redact_value(&mut object);
        assert_eq!(object, json!({ name: MASK }), "{name} as a JSON key");
    }
    for name in ["cache_key", "primary_key"] {
        let mut object = json!({ name: "user:42" });
        redactor.redact_value(&mut object);
        assert_eq!(object, json!({ name: "user:42" }), "{name} is not a secret's name");
    }
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

/// Lines of a corpus file, without comments and blank lines, with `\n` turned into line breaks.
fn corpus(text: &'static str) -> impl Iterator<Item = String> {
    text.lines().filter(|line| !line.is_empty() && !line.starts_with('#')).map(|line| line.replace("\\n", "\n"))
}

/// testdata/redaction/secrets.txt: realistic secrets in vendor formats, in the text around
/// them that logs, URLs, configs and headers put them in. Each must be masked.
#[test]
fn masks_every_secret_of_the_corpus() {
    let redactor = Redactor::new();
    let mut n_checked = 0;
    for line in corpus(include_str!("../../testdata/redaction/secrets.txt")) {
        let Some((secret, text)) = line.split_once('\t') else {
            panic!("corpus line without a tab between secret and text: {line:?}");
        };
        assert!(text.contains(secret), "corpus line whose text lacks its secret: {line:?}");
        let redacted = redactor.redact_text(text);
        assert!(!redacted.contains(secret), "secret survived: {text:?} -> {redacted:?}");
        assert!(redacted.contains(MASK), "no mask in {redacted:?}");
        // The same text as a JSON string value, the way tool outputs and arguments carry it.
        let mut value = json!({"log": [text]});
        assert!(redactor.needs_redaction(&value), "needs_redaction missed {text:?}");
        redactor.redact_value(&mut value);
        assert!(!value.to_string().contains(secret), "secret survived in JSON: {value}");
        n_checked += 1;
    }
    assert!(n_checked >= 30, "the corpus shrank to {n_checked} secrets");
}

/// testdata/redaction/lookalikes.txt: git SHAs, UUIDs, checksums, image digests, trace ids and
/// words that sit next to secrets in prose. Each must come through unchanged.
#[test]
fn leaves_every_look_alike_of_the_corpus() {
    let redactor = Redactor::new();
    let mut n_checked = 0;
    for text in corpus(include_str!("../../testdata/redaction/lookalikes.txt")) {
        assert_eq!(redactor.redact_text(&text), text.as_str());
        let value = json!({"log": text});
        assert!(!redactor.needs_redaction(&value), "needs_redaction flagged {text:?}");
        n_checked += 1;
    }
    assert!(n_checked >= 25, "the corpus shrank to {n_checked} look-alikes");
}

#[test]
fn masks_the_data_of_a_kubernetes_secret_but_keeps_its_keys_and_metadata() {
    let redactor = Redactor::new();
    let mut secret = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "payments-db", "namespace": "payments"},
        "type": "Opaque",
        "data": {"username": "cGF5bWVudHM=", "tls.crt": "LS0tLS1CRUdJTi"},
        "stringData": {"config.yaml": "host: db\nport: 5432"},
    });
    assert!(redactor.needs_redaction(&secret));
    redactor.redact_value(&mut secret);
    assert_eq!(secret["data"], json!({"username": MASK, "tls.crt": MASK}));
    assert_eq!(secret["stringData"], json!({"config.yaml": MASK}));
    assert_eq!(secret["metadata"]["name"], "payments-db");
    assert!(!redactor.needs_redaction(&secret), "a redacted Secret needs nothing more");

    // A ConfigMap's data is not secret.
    let config_map = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"LOG_LEVEL": "info"}});
    assert!(!redactor.needs_redaction(&config_map));
}
