//! Alertmanager: the alerts firing now, each with the rule behind it (expression, threshold,
//! current value and recent trend) read from the Prometheus that evaluates it.
//!
//! Files: `config.rs` (one instance's configuration), `client.rs` (API v2 and its alert type),
//! `tools.rs` (`get_active_alerts`). Alert history is a Prometheus tool
//! (`prometheus::GetAlertHistory`): it reads Prometheus' `ALERTS` series.

mod client;
mod config;
mod tools;

pub use client::{AlertStatus, AlertmanagerClient, AlertmanagerClients, GettableAlert, check_prometheus_links};
pub use config::AlertmanagerConfig;
pub use tools::{GetActiveAlerts, alertmanager_tools};

#[cfg(test)]
mod tests;
