//! The one test harness: starts real backends (Prometheus, Alertmanager, PostgreSQL) and a
//! scrapeable fake exporter on loopback ports, for integration tests, and finds the real MCP
//! servers the federation tests run.
//!
//! Every handle owns its process and its temporary directory; dropping the handle stops the
//! process and deletes the directory. A watchdog (see `process.rs`) does the same when the test
//! binary dies without running destructors, so crashed or interrupted test runs leave nothing
//! behind. `start` functions return only once the backend answers, or an error carrying the tail
//! of the backend's log.
//!
//! The binaries come from Debian packages; `scripts/install-test-deps.sh` installs them.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use opsgate_testkit::{Exporter, Prometheus, PrometheusOptions, ScrapeTarget};
//! use std::time::Duration;
//!
//! let exporter = Exporter::start("up_total 1\n").await?;
//! let prometheus = Prometheus::start(
//!     PrometheusOptions::default().scrape(ScrapeTarget::new("app", exporter.target())),
//! )
//! .await?;
//! prometheus
//!     .wait_for_query("up_total", |result| !result.is_empty(), Duration::from_secs(10))
//!     .await?;
//! # Ok(())
//! # }
//! ```

mod alertmanager;
mod exporter;
mod mcp_servers;
mod postgres;
mod process;
mod prometheus;

pub use alertmanager::{Alertmanager, AlertmanagerOptions};
pub use exporter::Exporter;
pub use mcp_servers::{HttpMcpServer, mcp_server_script, python_mcp_server};
pub use postgres::Postgres;
pub use prometheus::{Prometheus, PrometheusOptions, ScrapeTarget};

use std::net::{Ipv4Addr, TcpListener};

/// Returns a TCP port on 127.0.0.1 that was free a moment ago.
///
/// Another process can take the port before the caller binds it; the backends here therefore
/// retry on "address already in use". Code that binds its own listener should bind
/// `127.0.0.1:0` instead and read the port back.
///
/// # Panics
///
/// When the loopback interface cannot bind any port, which means no test here can run either.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("bind 127.0.0.1:0 to find a free port")
}
