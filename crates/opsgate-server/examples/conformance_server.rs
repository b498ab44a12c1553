//! The MCP conformance suite's fixture server, built the way `opsgate serve` is: every fixture
//! tool is an opsgate `Tool` in the `Registry`, every call goes through `Pipeline::call` (and is
//! audited, in SQLite in a temporary directory), resources and prompts come from a `Surface`, and
//! `opsgate_server::http::run` serves `/mcp` for both protocol revisions.
//!
//! ```text
//! cargo run --example conformance_server -p opsgate-server -- 127.0.0.1:0
//! ```
//!
//! The first line on stdout is `listening on http://HOST:PORT/mcp`, so a script can bind port 0
//! and read the port back. Logs go to stderr (`RUST_LOG` filters them). SIGINT or SIGTERM shuts
//! down gracefully and prints the audit chain's size and integrity on stderr.

// Helper modules live in a folder named after the example; an example's root file looks for
// modules beside itself, hence the paths.
#[path = "conformance_server/content.rs"]
mod content;
#[path = "conformance_server/fixture.rs"]
mod fixture;
#[path = "conformance_server/input.rs"]
mod input;
#[path = "conformance_server/surface.rs"]
mod surface;
#[path = "conformance_server/tasks.rs"]
mod tasks;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use opsgate_server::http::{AppState, HttpConfig};
use opsgate_server::metrics::Metrics;
use opsgate_server::{Identity, IdentityConfig, McpState, Pipeline, PipelineConfig, Registry, TargetCatalog};
use opsgate_store::{AuditLog, AuditWriterConfig, Store};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();

    let mut arguments = std::env::args().skip(1);
    let (Some(address), None) = (arguments.next(), arguments.next()) else {
        anyhow::bail!("usage: conformance_server LISTEN_ADDRESS (for example 127.0.0.1:0)");
    };
    let address: SocketAddr =
        address.parse().with_context(|| format!("listen address {address:?} is not HOST:PORT"))?;

    let data_dir = tempfile::tempdir().context("creating a temporary directory for the audit store")?;
    let store = Store::open_sqlite(data_dir.path()).await.context("opening the audit store")?;
    let (audit, audit_writer) = AuditLog::spawn(store.clone(), AuditWriterConfig::default());

    let mut registry = Registry::new(TargetCatalog::default());
    let changes = registry.changes().clone();
    let fixtures = content::tools(&changes).into_iter().chain(input::tools()).chain(tasks::tools());
    for tool in fixtures {
        registry.register(tool).context("registering the fixture tools")?;
    }
    let pipeline = Pipeline::new(Arc::new(registry), audit, PipelineConfig::default(), Arc::new(Metrics::default()));
    let mcp = Arc::new(McpState {
        pipeline: Arc::new(pipeline),
        surface: Arc::new(surface::FixtureSurface),
        server_name: "opsgate-conformance-fixture".to_string(),
        instructions: Some("The MCP conformance suite's fixture, served by opsgate's pipeline.".to_string()),
    });

    let listener = tokio::net::TcpListener::bind(address).await.with_context(|| format!("binding {address}"))?;
    let bound = listener.local_addr()?;
    // The suite connects without credentials: the default identity lets it in while the store
    // holds no API key.
    let identity = Identity::new(IdentityConfig::default(), store.clone()).context("identity")?;
    let state = AppState {
        mcp,
        store: store.clone(),
        http: HttpConfig::for_listen_address(bound),
        identity: Arc::new(identity),
        streams: CancellationToken::new(),
        hooks: None,
    };
    {
        // A script waits for this line; say it only once the socket accepts connections.
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on http://{bound}/mcp")?;
        stdout.flush()?;
    }

    opsgate_server::http::run(listener, state, shutdown_signal()).await.context("serving HTTP")?;

    // Every call's record was committed before its response; report what the chain holds, so a
    // script can see that the suite's calls all went through the pipeline.
    let report = store.verify_audit().await.context("verifying the audit chain")?;
    match report.first_bad {
        None => eprintln!("audit: {} records, chain intact", report.n_records),
        Some((seq, why)) => eprintln!("audit: {} records, chain BROKEN at {seq}: {why}", report.n_records),
    }
    audit_writer.abort();
    store.close().await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM, whichever comes first.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; stop with SIGINT");
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
