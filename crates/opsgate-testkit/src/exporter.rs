//! A scrape target whose `/metrics` text the test sets and changes at will, so Prometheus holds
//! series with known values.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, PoisonError, RwLock};

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::task::JoinHandle;

/// An in-process HTTP server on `127.0.0.1:<ephemeral>` that serves `GET /metrics`.
///
/// It runs on the tokio runtime that started it; dropping it stops the server.
#[derive(Debug)]
pub struct Exporter {
    addr: SocketAddr,
    /// Shared with the handler so `set` takes effect on the next scrape, without a restart.
    text: Arc<RwLock<String>>,
    server: JoinHandle<()>,
}

impl Exporter {
    /// Starts serving `text`, which should be Prometheus text exposition format, e.g.
    /// `"http_requests_total{code=\"200\"} 100\n"`.
    pub async fn start(text: impl Into<String>) -> Result<Exporter> {
        let text = Arc::new(RwLock::new(text.into()));
        let listener =
            tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.context("bind exporter to 127.0.0.1:0")?;
        let addr = listener.local_addr().context("exporter local address")?;
        let app = Router::new().route("/metrics", get(metrics)).with_state(Arc::clone(&text));
        let server = tokio::spawn(async move {
            // The listener is bound, so `serve` fails only if accepting fails, which ends the
            // server; Prometheus then records the target as down, and the test sees that.
            let _ = axum::serve(listener, app).await;
        });
        Ok(Exporter { addr, text, server })
    }

    /// Replaces the exposition served from the next scrape on.
    pub fn set(&self, text: impl Into<String>) {
        *self.text.write().unwrap_or_else(PoisonError::into_inner) = text.into();
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address in the `host:port` form of a Prometheus scrape target.
    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    /// The full URL of the metrics endpoint.
    pub fn url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn metrics(State(text): State<Arc<RwLock<String>>>) -> impl IntoResponse {
    let body = text.read().unwrap_or_else(PoisonError::into_inner).clone();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body)
}
