//! opsgate's built-in connectors: one folder per backend, each behind a Cargo feature of the same
//! name, each shaped alike (`mod.rs`, `config.rs`, `client.rs`, `tools.rs`, `tests.rs`).
//!
//! A connector turns a backend's HTTP API into `opsgate_core::Tool`s. It knows nothing of MCP, of
//! policy or of the output budget's enforcement: the pipeline in `opsgate-server` calls the tools,
//! resolves the `target` argument to a named instance and renders the `ToolOutput` they return.
//! The binary builds the clients from configuration (resolving secret references first) and hands
//! them to `prometheus::prometheus_tools` and `alertmanager::alertmanager_tools`.

// Shared by the connectors; with none enabled there is nothing to share.
#[cfg(feature = "prometheus")]
mod format;
#[cfg(feature = "prometheus")]
mod http;
pub mod instances;
#[cfg(feature = "prometheus")]
mod schema;

#[cfg(feature = "alertmanager")]
pub mod alertmanager;
#[cfg(feature = "prometheus")]
pub mod prometheus;

#[cfg(feature = "prometheus")]
pub use http::{ConfigError, HttpError};
