//! The HTTP client for Streamable HTTP upstreams. rmcp's own default turns connection pooling
//! off, which costs every federated call a new TCP connection (a handshake, and a socket in
//! TIME_WAIT); this one keeps connections alive. Requests go out with `TCP_NODELAY`, so a reused
//! connection never waits on Nagle's algorithm against the peer's delayed ACK, and a response
//! body that is dropped unread closes its connection rather than returning it to the pool.

use std::time::Duration;

/// Redirects followed for one request.
const MAX_REDIRECTS: usize = 5;
/// How long an unused connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The process's one client for upstreams, built on first use (a gateway with only stdio
/// servers never builds it); every connection and reconnection shares its pool.
pub fn upstream_client() -> Result<reqwest::Client, String> {
    static CLIENT: std::sync::OnceLock<Result<reqwest::Client, String>> = std::sync::OnceLock::new();
    CLIENT.get_or_init(build).clone()
}

fn build() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_idle_timeout(IDLE_TIMEOUT)
        .redirect(redirect_policy())
        .build()
        .map_err(|error| format!("cannot build the HTTP client: {error}"))
}

/// Follows only 307 and 308 (which keep the method and the JSON-RPC body) to the same origin
/// (which may see the configured headers). Any other redirect comes back as the response, so
/// the error names the status and the user can configure the final URL.
fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let keeps_body = matches!(
            attempt.status(),
            reqwest::StatusCode::TEMPORARY_REDIRECT | reqwest::StatusCode::PERMANENT_REDIRECT
        );
        let first = attempt.previous().first().map(reqwest::Url::origin);
        let same_origin = first.is_some_and(|origin| origin == attempt.url().origin());
        if !keeps_body || !same_origin {
            attempt.stop()
        } else if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
        } else {
            attempt.follow()
        }
    })
}
