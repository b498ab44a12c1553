//! Alertmanager: the alerts firing now, each with the rule behind it (expression, threshold,
//! current value and recent trend) read from the Prometheus that evaluates it; and silences,
//! opsgate's first writes.
//!
//! Files: `config.rs` (one instance's configuration), `client.rs` (API v2, its alert and silence
//! types), `tools.rs` (`get_active_alerts`), `matcher.rs` (Alertmanager's matcher syntax, checked
//! before a silence is sent), `silences.rs` (`list_silences`, and the writes `silence_alert` and
//! `expire_silence` with their plans). Alert history is a Prometheus tool
//! (`prometheus::GetAlertHistory`): it reads Prometheus' `ALERTS` series.

mod client;
mod config;
mod matcher;
mod silences;
mod tools;

pub use client::{
    AlertStatus, AlertmanagerClient, AlertmanagerClients, ApiMatcher, GettableAlert, GettableSilence, PostableSilence,
    SilenceStatus, check_prometheus_links,
};
pub use config::AlertmanagerConfig;
pub use matcher::{MatchOp, Matcher};
pub use silences::{ExpireSilence, ListSilences, MAX_SILENCE_DURATION, SilenceAlert};
pub use tools::{GetActiveAlerts, alertmanager_tools};

#[cfg(test)]
mod tests;
