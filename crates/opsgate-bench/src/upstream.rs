//! The federation benchmark's upstream: `opsgate-bench --upstream stdio|http` serves the bare
//! `echo` server (`servers::BareEcho`) as a process of its own, the way a fast Rust MCP server
//! runs behind opsgate. The benchmark calls it directly and through opsgate, which starts it
//! (stdio) or connects to it (HTTP) from `.opsgate/mcp.json`.
//!
//! - `stdio`: MCP over stdin/stdout, through rmcp's non-blocking pipe transport; ends when stdin
//!   closes.
//! - `http`: Streamable HTTP at `/mcp` on a free loopback port, with the same settings as the
//!   baseline of section 1 (JSON responses, sessions for clients that initialize). The address is
//!   the first line on stdout; the server ends when stdin closes.

use anyhow::{Context, Result, bail};
use opsgate_server::http::HttpConfig;
use rmcp::ServiceExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::servers::{self, BareEcho};

pub const STDIO: &str = "stdio";
pub const HTTP: &str = "http";

pub fn run(transport: &str) -> Result<()> {
    // What `#[tokio::main]` builds, as a typical rmcp server has: one worker per CPU.
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async {
        match transport {
            STDIO => serve_stdio().await,
            HTTP => serve_http().await,
            other => bail!("--upstream takes {STDIO} or {HTTP}, not {other:?}"),
        }
    })
}

async fn serve_stdio() -> Result<()> {
    let service = BareEcho.serve(rmcp::transport::stdio_pipes()).await.context("MCP handshake on stdio")?;
    service.waiting().await.context("the stdio service failed")?;
    Ok(())
}

async fn serve_http() -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await.context("binding a loopback port")?;
    let address = listener.local_addr()?;
    let router = servers::baseline_app(&HttpConfig::for_listen_address(address));
    let mut stdout = tokio::io::stdout();
    stdout.write_all(format!("{address}\n").as_bytes()).await.context("writing the address to stdout")?;
    stdout.flush().await?;
    // Not a graceful shutdown: that would wait for opsgate's keep-alive connections to close.
    tokio::select! {
        served = axum::serve(listener, router) => served.context("serving HTTP"),
        () = stdin_closed() => Ok(()),
    }
}

/// Resolves when the parent closes our stdin (or exits).
async fn stdin_closed() {
    let mut stdin = tokio::io::stdin();
    let mut buffer = [0u8; 64];
    while let Ok(1..) = stdin.read(&mut buffer).await {}
}
