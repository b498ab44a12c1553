//! Identity over a real socket: API keys from the store, OAuth JWTs checked against a JWKS that
//! the test serves on a loopback port with keys generated at run time (openssl), the anonymous
//! rule, refusals (401/403 with `WWW-Authenticate`, audited, nothing run), the protected-resource
//! metadata, and the client's token never passing the identity stage.

mod support;

use anyhow::Result;
use axum::extract::{Request, State};
use axum::response::IntoResponse;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use opsgate_core::Principal;
use opsgate_server::identity::{API_KEY_RECHECK, IdentityConfig};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::identity::*;

#[tokio::test]
async fn an_api_key_authenticates_a_real_client_and_its_roles_reach_the_tool() -> Result<()> {
    let (server, runs) = start(|_| IdentityConfig::default()).await?;
    let key = server.store.create_api_key("ci-bot", &["operator".to_string(), "reader".to_string()]).await?;

    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(server.url()).auth_header(key.secret.clone()),
    );
    let client = ().serve(transport).await?;
    let result = client.call_tool(CallToolRequestParams::new("whoami")).await?;
    assert_eq!(result.is_error, Some(false));
    assert_eq!(
        result.structured_content.as_ref().map(caller),
        Some(json!({"id": "key:ci-bot", "kind": "api_key", "roles": ["operator", "reader"]}))
    );
    client.cancel().await?;

    let records = server.store.audit_tail(1).await?;
    let entry = &records[0].entry;
    assert_eq!(
        (entry.principal.as_str(), entry.principal_kind.as_str(), entry.tool.as_str(), entry.outcome.as_str()),
        ("key:ci-bot", "api_key", "whoami", "ok")
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert!(!audit_text(&server).await?.contains(&key.secret[3..]), "the key never reaches the audit log");
    Ok(())
}

#[tokio::test]
async fn unknown_malformed_and_revoked_api_keys_are_refused_and_audited() -> Result<()> {
    let (server, runs) = start(|_| IdentityConfig::default()).await?;
    let key = server.store.create_api_key("deploy", &["operator".to_string()]).await?;
    let unknown = format!("og_{}", "ab".repeat(32));

    let refused = call(&server, Some(&bearer(&unknown))).await?;
    assert_eq!(refused.status, 401);
    assert_eq!(
        refused.challenge,
        "Bearer realm=\"opsgate\", error=\"invalid_token\", error_description=\"unknown API key og_abababab\""
    );
    assert_eq!(refused.body["id"], json!(7));
    assert_eq!(refused.error_message(), "unauthorized: unknown API key og_abababab");

    let malformed = call(&server, Some(&bearer("og_not-a-key"))).await?;
    assert_eq!(malformed.status, 401);
    assert!(malformed.error_message().contains("malformed API key"), "{}", malformed.error_message());

    let accepted = call(&server, Some(&bearer(&key.secret))).await?;
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    assert_eq!(accepted.whoami()["id"], json!("key:deploy"));

    // A revocation through this process's identity stage applies to the very next request.
    server.state.identity.revoke_api_key("deploy").await?;
    let revoked = call(&server, Some(&bearer(&key.secret))).await?;
    assert_eq!(revoked.status, 401);
    let message = revoked.error_message();
    assert!(
        message.starts_with("unauthorized: API key \"deploy\" (og_") && message.contains("was revoked at"),
        "{message}"
    );
    assert!(revoked.challenge.contains("error=\"invalid_token\""), "{}", revoked.challenge);

    assert_eq!(runs.load(Ordering::SeqCst), 1, "only the accepted call ran");
    let records = server.store.audit_tail(10).await?;
    let summary: Vec<(&str, &str, &str, &str, &str)> = records
        .iter()
        .map(|record| {
            let entry = &record.entry;
            (
                entry.principal.as_str(),
                entry.principal_kind.as_str(),
                entry.tool.as_str(),
                entry.decision.as_str(),
                entry.outcome.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("unauthenticated", "anonymous", "whoami", "deny", "unauthenticated"),
            ("unauthenticated", "anonymous", "whoami", "deny", "unauthenticated"),
            ("key:deploy", "api_key", "whoami", "allow", "ok"),
            ("key:deploy", "anonymous", "whoami", "deny", "unauthenticated"),
        ]
    );
    assert_eq!(records[0].entry.reason.as_deref(), Some("unknown API key og_abababab"));
    assert_eq!(records[0].entry.client.as_deref(), Some("identity-test"));
    let audit = audit_text(&server).await?;
    assert!(
        !audit.contains(&key.secret[11..]) && !audit.contains(&unknown[11..]),
        "no key beyond its prefix is logged"
    );
    assert_eq!(server.store.verify_audit().await?.first_bad, None);
    Ok(())
}

#[tokio::test]
async fn a_revocation_by_another_process_takes_effect_within_the_recheck_bound() -> Result<()> {
    let (server, _runs) = start(|_| IdentityConfig::default()).await?;
    let key = server.store.create_api_key("laptop", &[]).await?;
    assert_eq!(call(&server, Some(&bearer(&key.secret))).await?.status, 200);

    // The store, not the server's identity stage: what `opsgate keys revoke` in another process does.
    server.store.revoke_api_key("laptop").await?;
    let revoked_at = Instant::now();
    let mut status = 200;
    while status == 200 && revoked_at.elapsed() < API_KEY_RECHECK + Duration::from_secs(3) {
        status = call(&server, Some(&bearer(&key.secret))).await?.status;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 401, "still accepted {:?} after the revocation", revoked_at.elapsed());
    assert!(
        revoked_at.elapsed() <= API_KEY_RECHECK + Duration::from_secs(1),
        "the revocation took {:?}, more than the documented {API_KEY_RECHECK:?}",
        revoked_at.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn a_flood_of_unknown_keys_is_throttled_and_known_keys_keep_working() -> Result<()> {
    let (server, _runs) = start(|_| IdentityConfig::default()).await?;
    let key = server.store.create_api_key("steady", &[]).await?;
    assert_eq!(call(&server, Some(&bearer(&key.secret))).await?.status, 200);

    let random_keys: Vec<String> = (0..200u32).map(|index| format!("og_{:064x}", u128::from(index) + 1)).collect();
    let server = &server;
    let replies = futures::future::join_all(random_keys.iter().map(|random| {
        let header = bearer(random);
        async move { call(server, Some(&header)).await }
    }))
    .await;
    let mut statuses = BTreeMap::new();
    for reply in replies {
        let reply = reply?;
        *statuses.entry(reply.status).or_insert(0) += 1;
        if reply.status == 503 {
            assert_eq!(reply.retry_after.as_deref(), Some("1"));
            assert!(reply.error_message().contains("key lookups are throttled"), "{}", reply.error_message());
        }
    }
    assert!(statuses.get(&401).copied().unwrap_or(0) >= 50, "{statuses:?}");
    assert!(statuses.get(&503).copied().unwrap_or(0) > 0, "lookups were never throttled: {statuses:?}");
    assert_eq!(statuses.keys().copied().collect::<Vec<u16>>(), vec![401, 503]);
    assert_eq!(call(server, Some(&bearer(&key.secret))).await?.status, 200, "a cached key is not throttled");
    Ok(())
}

#[tokio::test]
async fn the_authorization_header_never_passes_the_identity_stage() -> Result<()> {
    let (server, _runs) = start(|_| IdentityConfig::default()).await?;
    let key = server.store.create_api_key("probe", &["reader".to_string()]).await?;

    // The identity middleware in front of a probe that stands where the MCP service stands: the
    // same `identity_stage` the `/mcp` handler runs before rmcp sees the request.
    type Seen = Arc<Mutex<Vec<(Vec<String>, Option<Principal>)>>>;
    let seen: Seen = Arc::default();
    async fn probe(State(seen): State<Seen>, request: Request) -> axum::response::Response {
        let headers = request.headers().keys().map(|name| name.as_str().to_string()).collect();
        let principal = request.extensions().get::<Principal>().cloned();
        seen.lock().map(|mut seen| seen.push((headers, principal))).ok();
        axum::Json(json!({"ok": true})).into_response()
    }
    let router = axum::Router::new()
        .route("/mcp", axum::routing::any(probe))
        .with_state(seen.clone())
        .layer(axum::middleware::from_fn_with_state(server.state.clone(), opsgate_server::http::authenticate));
    let request = http::Request::post("/mcp")
        .header("authorization", bearer(&key.secret))
        .header("x-trace", "kept")
        .body(axum::body::Body::from("{}"))?;
    let response = tower::ServiceExt::oneshot(router, request).await?;
    assert_eq!(response.status(), 200);

    let seen = seen.lock().map(|seen| seen.clone()).map_err(|_| anyhow::anyhow!("poisoned"))?;
    let (headers, principal) = &seen[0];
    assert!(headers.contains(&"x-trace".to_string()), "{headers:?}");
    assert!(!headers.contains(&"authorization".to_string()), "the token went past the identity stage: {headers:?}");
    assert_eq!(principal.as_ref().map(|principal| principal.id.as_str()), Some("key:probe"));
    Ok(())
}

// ---- anonymous access --------------------------------------------------------------------------

#[tokio::test]
async fn anonymous_access_is_allowed_until_the_first_api_key_exists() -> Result<()> {
    let (server, runs) = start(|_| IdentityConfig::default()).await?;
    let first_run = call(&server, None).await?;
    assert_eq!(first_run.status, 200, "{}", first_run.body);
    assert_eq!(first_run.whoami(), json!({"id": "anonymous", "kind": "anonymous", "roles": []}));

    server.store.create_api_key("first", &[]).await?;
    let created_at = Instant::now();
    let mut refused = call(&server, None).await?;
    while refused.status == 200 && created_at.elapsed() < API_KEY_RECHECK + Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        refused = call(&server, None).await?;
    }
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert!(created_at.elapsed() <= API_KEY_RECHECK + Duration::from_secs(1), "{:?}", created_at.elapsed());
    assert_eq!(refused.challenge, "Bearer realm=\"opsgate\"", "no error code when no credential was sent");
    assert!(refused.error_message().contains("authentication required"), "{}", refused.error_message());
    let n_runs = runs.load(Ordering::SeqCst);
    assert_eq!(call(&server, None).await?.status, 401);
    assert_eq!(runs.load(Ordering::SeqCst), n_runs);
    let records = server.store.audit_tail(1).await?;
    assert_eq!(
        (records[0].entry.principal.as_str(), records[0].entry.outcome.as_str()),
        ("unauthenticated", "unauthenticated")
    );
    Ok(())
}

#[tokio::test]
async fn allow_anonymous_overrides_the_default_either_way() -> Result<()> {
    let closed = IdentityConfig { allow_anonymous: Some(false), ..IdentityConfig::default() };
    let (server, _runs) = start(|_| closed).await?;
    assert_eq!(call(&server, None).await?.status, 401, "refused even on a first run");

    let open = IdentityConfig { allow_anonymous: Some(true), ..IdentityConfig::default() };
    let (server, _runs) = start(|_| open).await?;
    let key = server.store.create_api_key("someone", &[]).await?;
    let anonymous = call(&server, None).await?;
    assert_eq!(anonymous.status, 200);
    assert_eq!(anonymous.whoami()["id"], json!("anonymous"));
    assert_eq!(call(&server, Some(&bearer(&key.secret))).await?.whoami()["id"], json!("key:someone"));

    // With OAuth configured the default is closed, and the 401 says where to get a token.
    let jwks = JwksServer::start(json!({"keys": []})).await?;
    let (server, _runs) = start(|url| oauth_identity(&jwks, url, |_| {})).await?;
    let refused = call(&server, None).await?;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.challenge, format!("Bearer resource_metadata=\"{}{METADATA_PATH}\"", public_url(&server)));
    Ok(())
}

#[tokio::test]
async fn a_valid_jwt_is_accepted_and_its_scopes_become_roles() -> Result<()> {
    let (rsa, ec) = (TestKey::rsa("rsa-1")?, TestKey::ec("ec-1")?);
    let jwks = JwksServer::start(key_set(&[&rsa, &ec])).await?;
    let (server, runs) = start(|url| oauth_identity(&jwks, url, |_| {})).await?;

    let accepted = call(&server, Some(&bearer(&rsa.sign(&claims(&server, json!({})))?))).await?;
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    assert_eq!(accepted.whoami(), json!({"id": "oauth:alice", "kind": "oauth", "roles": ["reader", "operator"]}));

    let read_only = ec.sign(&claims(&server, json!({"sub": "bob", "scope": "opsgate:read profile"})))?;
    let accepted = call(&server, Some(&bearer(&read_only))).await?;
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    assert_eq!(accepted.whoami(), json!({"id": "oauth:bob", "kind": "oauth", "roles": ["reader"]}));

    // An audience list naming this server is fine too (RFC 7519 allows either form).
    let listed = claims(&server, json!({"aud": ["https://other.example", public_url(&server)]}));
    assert_eq!(call(&server, Some(&bearer(&rsa.sign(&listed)?))).await?.status, 200);

    assert_eq!(runs.load(Ordering::SeqCst), 3);
    assert_eq!(jwks.hits(), 1, "the JWKS was fetched once and cached");
    let records = server.store.audit_tail(3).await?;
    assert_eq!(
        (records[0].entry.principal.as_str(), records[0].entry.principal_kind.as_str()),
        ("oauth:alice", "oauth")
    );
    Ok(())
}

#[tokio::test]
async fn rejected_jwts_get_401_naming_resource_metadata_and_are_audited_with_nothing_run() -> Result<()> {
    let key = TestKey::rsa("k1")?;
    let stranger = TestKey::rsa("stranger")?;
    let jwks = JwksServer::start(key_set(&[&key])).await?;
    let (server, runs) = start(|url| oauth_identity(&jwks, url, |_| {})).await?;

    let impostor = {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("k1".to_string());
        jsonwebtoken::encode(&header, &claims(&server, json!({})), &stranger.encoding)?
    };
    let unsigned = format!(
        "{}.{}.",
        base64url(br#"{"alg":"none","typ":"JWT","kid":"k1"}"#),
        base64url(claims(&server, json!({})).to_string().as_bytes())
    );
    let hs256_with_public_key = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("k1".to_string());
        jsonwebtoken::encode(&header, &claims(&server, json!({})), &EncodingKey::from_secret(&key.public_pem))?
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("expired", key.sign(&claims(&server, json!({"exp": now() - 600})))?, "the token has expired"),
        ("not yet valid", key.sign(&claims(&server, json!({"nbf": now() + 600})))?, "the token is not valid yet"),
        (
            "wrong audience",
            key.sign(&claims(&server, json!({"aud": "https://other.example"})))?,
            "the token is not for this server",
        ),
        ("no audience", key.sign(&claims(&server, json!({"aud": null})))?, "the token has no aud claim"),
        (
            "wrong issuer",
            key.sign(&claims(&server, json!({"iss": "https://evil.example"})))?,
            "the token was not issued by https://issuer.test",
        ),
        (
            "unknown key",
            stranger.sign(&claims(&server, json!({})))?,
            "unknown signing key: the issuer's JWKS has no key \"stranger\"",
        ),
        ("known kid, other key", impostor, "the token's signature does not verify with key \"k1\""),
        ("alg none", unsigned, "the token is unsigned (alg none), which is never accepted"),
        ("HS256 with the public key", hs256_with_public_key, "the token's algorithm HS256 is not accepted"),
        ("no subject", key.sign(&claims(&server, json!({"sub": null})))?, "the token has no sub claim"),
        ("garbage", "abc.def.ghi".to_string(), "the token's JWT header is malformed"),
        ("not a JWT", "just-some-opaque-token".to_string(), "neither an opsgate API key"),
    ];
    let expected_challenge = format!("Bearer resource_metadata=\"{}{METADATA_PATH}\"", public_url(&server));
    for (name, token, expected) in &cases {
        let refused = call(&server, Some(&bearer(token))).await?;
        assert_eq!(refused.status, 401, "{name}: {}", refused.body);
        assert!(refused.challenge.starts_with(&expected_challenge), "{name}: {}", refused.challenge);
        assert!(
            refused.challenge.contains(", error=\"invalid_token\", error_description=\""),
            "{name}: {}",
            refused.challenge
        );
        assert!(refused.challenge.contains(&expected.replace('"', "'")), "{name}: {}", refused.challenge);
        assert!(refused.error_message().contains(expected), "{name}: {}", refused.error_message());
        assert!(!refused.body.to_string().contains(token.as_str()), "{name}: the token is never echoed");
    }

    assert_eq!(runs.load(Ordering::SeqCst), 0, "nothing ran");
    let records = server.store.audit_tail(100).await?;
    assert_eq!(records.len(), cases.len(), "every attempt is audited");
    for (record, (name, token, expected)) in records.iter().zip(&cases) {
        let entry = &record.entry;
        assert_eq!(
            (entry.principal.as_str(), entry.principal_kind.as_str(), entry.tool.as_str()),
            ("unauthenticated", "anonymous", "whoami"),
            "{name}"
        );
        assert_eq!((entry.decision.as_str(), entry.outcome.as_str()), ("deny", "unauthenticated"), "{name}");
        assert!(entry.reason.as_deref().unwrap_or_default().contains(expected), "{name}: {:?}", entry.reason);
        let signature = token.rsplit('.').next().unwrap_or_default();
        if signature.len() > 8 {
            assert!(!audit_text(&server).await?.contains(signature), "{name}: the token reached the audit log");
        }
    }
    Ok(())
}

#[tokio::test]
async fn key_rotation_is_picked_up_from_the_jwks() -> Result<()> {
    let (old, new) = (TestKey::rsa("2026-01")?, TestKey::ec("2026-02")?);
    let jwks = JwksServer::start(key_set(&[&old])).await?;
    let refetch = Duration::from_millis(300);
    let (server, _runs) =
        start(|url| oauth_identity(&jwks, url, |oauth| oauth.jwks_refetch_interval = refetch)).await?;
    assert_eq!(call(&server, Some(&bearer(&old.sign(&claims(&server, json!({})))?))).await?.status, 200);

    jwks.set(key_set(&[&new]));
    tokio::time::sleep(refetch).await;
    let rotated = call(&server, Some(&bearer(&new.sign(&claims(&server, json!({})))?))).await?;
    assert_eq!(rotated.status, 200, "a token with the new kid is accepted: {}", rotated.body);
    assert_eq!(jwks.hits(), 2, "the unknown kid refetched the JWKS once");

    tokio::time::sleep(refetch).await;
    let retired = call(&server, Some(&bearer(&old.sign(&claims(&server, json!({})))?))).await?;
    assert_eq!(retired.status, 401, "the retired key is gone once the JWKS no longer lists it");
    assert!(retired.error_message().contains("no key \"2026-01\""), "{}", retired.error_message());
    Ok(())
}

#[tokio::test]
async fn unknown_kids_refetch_the_jwks_at_most_once_per_interval() -> Result<()> {
    let key = TestKey::ec("k1")?;
    let jwks = JwksServer::start(key_set(&[&key])).await?;
    let (server, _runs) =
        start(|url| oauth_identity(&jwks, url, |oauth| oauth.jwks_refetch_interval = Duration::from_secs(60))).await?;
    assert_eq!(call(&server, Some(&bearer(&key.sign(&claims(&server, json!({})))?))).await?.status, 200);
    for index in 0..5 {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(format!("made-up-{index}"));
        let token = jsonwebtoken::encode(&header, &claims(&server, json!({})), &key.encoding)?;
        assert_eq!(call(&server, Some(&bearer(&token))).await?.status, 401);
    }
    assert_eq!(jwks.hits(), 1, "made-up kids do not make opsgate hammer the issuer");
    Ok(())
}

#[tokio::test]
async fn cached_keys_keep_working_while_the_jwks_is_down() -> Result<()> {
    let key = TestKey::rsa("k1")?;
    let jwks = JwksServer::start(key_set(&[&key])).await?;
    // Every request may try to refresh: the cached set is always stale and refetches are not
    // throttled, so the test sees each failed refresh.
    let (server, _runs) = start(|url| {
        oauth_identity(&jwks, url, |oauth| {
            oauth.jwks_refetch_interval = Duration::ZERO;
            oauth.jwks_max_age = Duration::ZERO;
        })
    })
    .await?;
    assert_eq!(call(&server, Some(&bearer(&key.sign(&claims(&server, json!({})))?))).await?.status, 200);

    jwks.down.store(true, Ordering::SeqCst);
    let hits_before = jwks.hits();
    let accepted = call(&server, Some(&bearer(&key.sign(&claims(&server, json!({"sub": "carol"})))?))).await?;
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    assert_eq!(accepted.whoami()["id"], json!("oauth:carol"));
    assert!(jwks.hits() > hits_before, "a refresh was tried and failed");

    let stranger = TestKey::ec("new-kid")?;
    let refused = call(&server, Some(&bearer(&stranger.sign(&claims(&server, json!({})))?))).await?;
    assert_eq!(refused.status, 401);
    assert!(refused.error_message().contains("no key \"new-kid\""), "{}", refused.error_message());
    Ok(())
}

#[tokio::test]
async fn with_no_usable_key_the_401_says_why() -> Result<()> {
    let key = TestKey::rsa("k1")?;
    // Nothing listens on this port once the probe listener is gone.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await?.local_addr()?;
    let mut unreachable = JwksServer::start(json!({})).await?;
    unreachable.url = format!("http://{closed}/jwks.json");
    let (server, _runs) = start(|url| oauth_identity(&unreachable, url, |_| {})).await?;
    let refused = call(&server, Some(&bearer(&key.sign(&claims(&server, json!({})))?))).await?;
    assert_eq!(refused.status, 401);
    assert!(
        refused
            .error_message()
            .contains(&format!("no key to check the token with: cannot fetch the JWKS from http://{closed}/jwks.json")),
        "{}",
        refused.error_message()
    );

    // A JWKS holding only an encryption key and a symmetric key has nothing to verify with.
    let mut encryption = key.jwk.clone();
    encryption["use"] = json!("enc");
    let symmetric = json!({"kty": "oct", "k": base64url(b"shared secret"), "kid": "hmac"});
    let useless = JwksServer::start(json!({"keys": [encryption, symmetric]})).await?;
    let (server, _runs) = start(|url| oauth_identity(&useless, url, |_| {})).await?;
    let refused = call(&server, Some(&bearer(&key.sign(&claims(&server, json!({})))?))).await?;
    assert_eq!(refused.status, 401);
    assert!(refused.error_message().contains("holds no usable signing key"), "{}", refused.error_message());
    Ok(())
}

#[tokio::test]
async fn a_token_without_a_required_scope_gets_403_insufficient_scope() -> Result<()> {
    let key = TestKey::ec("k1")?;
    let jwks = JwksServer::start(key_set(&[&key])).await?;
    let (server, runs) =
        start(|url| oauth_identity(&jwks, url, |oauth| oauth.required_scopes = vec!["opsgate:read".to_string()]))
            .await?;

    let token = key.sign(&claims(&server, json!({"scope": "profile email"})))?;
    let refused = call(&server, Some(&bearer(&token))).await?;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(
        refused.challenge,
        format!(
            "Bearer resource_metadata=\"{}{METADATA_PATH}\", error=\"insufficient_scope\", scope=\"opsgate:read\", \
             error_description=\"the token lacks the required scope opsgate:read\"",
            public_url(&server)
        )
    );
    assert_eq!(refused.error_message(), "forbidden: the token lacks the required scope opsgate:read");
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    let records = server.store.audit_tail(1).await?;
    let entry = &records[0].entry;
    assert_eq!(
        (entry.principal.as_str(), entry.decision.as_str(), entry.outcome.as_str()),
        ("oauth:alice", "deny", "insufficient_scope")
    );

    let scoped = key.sign(&claims(&server, json!({"scope": "opsgate:read"})))?;
    assert_eq!(call(&server, Some(&bearer(&scoped))).await?.status, 200);
    Ok(())
}

#[tokio::test]
async fn the_protected_resource_metadata_names_the_issuer_and_scopes() -> Result<()> {
    let jwks = JwksServer::start(json!({"keys": []})).await?;
    let (server, _runs) =
        start(|url| oauth_identity(&jwks, url, |oauth| oauth.required_scopes = vec!["opsgate:use".to_string()]))
            .await?;
    let response = reqwest::get(format!("{}{METADATA_PATH}", public_url(&server))).await?;
    assert_eq!(response.status(), 200, "served without credentials");
    let metadata: Value = response.json().await?;
    assert_eq!(
        metadata,
        json!({
            "resource": public_url(&server),
            "authorization_servers": [ISSUER],
            "scopes_supported": ["opsgate:read", "opsgate:use", "opsgate:write"],
            "bearer_methods_supported": ["header"],
            "resource_name": "opsgate",
        })
    );

    let (plain, _runs) = start(|_| IdentityConfig::default()).await?;
    let response = reqwest::get(format!("{}{METADATA_PATH}", public_url(&plain))).await?;
    assert_eq!(response.status(), 404, "no OAuth, no metadata");
    Ok(())
}

#[tokio::test]
async fn malformed_authorization_headers_are_refused_and_never_a_panic() -> Result<()> {
    let key = TestKey::ec("k1")?;
    let jwks = JwksServer::start(key_set(&[&key])).await?;
    let (server, runs) = start(|url| oauth_identity(&jwks, url, |_| {})).await?;

    let long_token = format!("Bearer {}", "a".repeat(9_000));
    let cases: Vec<(&str, String, &str, &str)> = vec![
        ("bare scheme", "Bearer".to_string(), "invalid_request", "carries no token"),
        ("scheme and space", "Bearer    ".to_string(), "invalid_request", "carries no token"),
        ("basic", "Basic dXNlcjpwYXNz".to_string(), "invalid_request", "only the Bearer scheme"),
        ("garbage", "garbage".to_string(), "invalid_request", "only the Bearer scheme"),
        ("two tokens", "Bearer one two".to_string(), "invalid_token", "characters no token has"),
        ("over the size limit", long_token, "invalid_request", "longer than 8192 bytes"),
    ];
    for (name, header, code, expected) in &cases {
        let refused = call(&server, Some(header)).await?;
        assert_eq!(refused.status, 401, "{name}");
        assert!(refused.challenge.contains(&format!("error=\"{code}\"")), "{name}: {}", refused.challenge);
        assert!(refused.error_message().contains(expected), "{name}: {}", refused.error_message());
    }

    let not_ascii = http_request(&server, None)
        .header("authorization", http::HeaderValue::from_bytes(b"Bearer \xff\xfe")?)
        .body("{}")
        .send()
        .await?;
    assert_eq!(not_ascii.status(), 401);
    let twice = http_request(&server, None)
        .header("authorization", "Bearer one")
        .header("authorization", "Bearer two")
        .body("{}")
        .send()
        .await?;
    assert_eq!(twice.status(), 401);
    assert!(twice.text().await?.contains("more than one Authorization header"));

    // Far over any limit: hyper may refuse it before opsgate sees it; either way, no success.
    let huge = http_request(&server, Some(&format!("Bearer {}", "b".repeat(1_000_000)))).body("{}").send().await;
    if let Ok(response) = huge {
        assert!([401, 431].contains(&response.status().as_u16()), "{}", response.status());
    }

    assert_eq!(runs.load(Ordering::SeqCst), 0);
    let health = reqwest::get(format!("{}/healthz", public_url(&server))).await?;
    assert_eq!(health.status(), 200, "the server is still up");
    let token = key.sign(&claims(&server, json!({})))?;
    assert_eq!(call(&server, Some(&bearer(&token))).await?.status, 200);
    let audit = audit_text(&server).await?;
    assert!(!audit.contains(&"a".repeat(100)), "no header value reaches the audit log");
    Ok(())
}
