//! Parsing of the `Authorization` header and of configured algorithms.

use super::*;

fn check_header(value: &[u8], expect: Result<&str, (RejectionKind, &str)>) {
    let actual = bearer_token(value).map_err(|rejection| (rejection.kind, rejection.reason));
    let expect = expect.map_err(|(kind, reason)| (kind, reason.to_string()));
    assert_eq!(actual, expect, "{}", String::from_utf8_lossy(value));
}

#[test]
fn bearer_tokens_are_read_and_anything_else_is_named() {
    check_header(b"Bearer og_abc", Ok("og_abc"));
    check_header(b"bearer eyJ.eyJ.sig", Ok("eyJ.eyJ.sig"));
    check_header(b"BEARER   a-b_c~d+e/f=", Ok("a-b_c~d+e/f="));
    let no_token = (RejectionKind::InvalidRequest, "Authorization: Bearer carries no token");
    check_header(b"Bearer", Err(no_token.clone()));
    check_header(b"Bearer   ", Err(no_token));
    let scheme =
        (RejectionKind::InvalidRequest, "only the Bearer scheme is supported: send Authorization: Bearer <token>");
    check_header(b"Basic dXNlcjpwYXNz", Err(scheme.clone()));
    check_header(b"og_abc", Err(scheme.clone()));
    check_header(b"", Err(scheme));
    check_header(
        b"Bearer a b",
        Err((RejectionKind::InvalidToken, "the bearer token contains characters no token has")),
    );
    check_header(
        b"Bearer a\"b",
        Err((RejectionKind::InvalidToken, "the bearer token contains characters no token has")),
    );
    check_header(b"Bearer \xff", Err((RejectionKind::InvalidRequest, "the Authorization header is not ASCII")));
}

#[test]
fn only_asymmetric_algorithms_can_be_configured() {
    assert_eq!(parse_algorithm("RS256"), Ok(Algorithm::RS256));
    assert_eq!(parse_algorithm("ES256"), Ok(Algorithm::ES256));
    assert_eq!(parse_algorithm("EdDSA"), Ok(Algorithm::EdDSA));
    assert_eq!(parse_algorithm("none"), Err("\"none\" is never accepted: tokens must be signed".to_string()));
    assert_eq!(parse_algorithm("NONE"), Err("\"none\" is never accepted: tokens must be signed".to_string()));
    assert!(parse_algorithm("HS256").is_err_and(|reason| reason.contains("shared-secret")));
    assert!(parse_algorithm("rs256").is_err_and(|reason| reason.starts_with("unknown algorithm \"rs256\"")));
}

#[test]
fn a_verifier_refuses_shared_secret_algorithms_set_in_code() {
    let mut oauth = OauthConfig::new("https://issuer", "https://issuer/jwks", "https://opsgate");
    oauth.algorithms.push(Algorithm::HS256);
    let error = OauthVerifier::new(oauth).err().map(|error| error.to_string()).unwrap_or_default();
    assert_eq!(error, "invalid identity configuration: identity.oauth.algorithms: HS256 is not accepted");
}
