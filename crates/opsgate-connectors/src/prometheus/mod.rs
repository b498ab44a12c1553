//! Prometheus (and compatible servers: Thanos, Mimir, VictoriaMetrics): service metrics by
//! named signal, raw PromQL, metric discovery and alert history.
//!
//! Files: `config.rs` (one instance's configuration, the signal catalog's overrides),
//! `client.rs` (the HTTP API and its response types), `tools.rs` (the tools), and three
//! helpers the tools share with the Alertmanager connector: `catalog.rs` (signals → PromQL
//! templates), `promql.rs` (quoting, series labels, splitting a rule at its threshold) and
//! `series.rs` (stats, trend, downsampling).

mod catalog;
mod client;
mod config;
pub(crate) mod promql;
pub(crate) mod series;
mod tools;

pub use catalog::{Aggregation, CatalogError, Convention, Signal, SignalCatalog, Unit};
pub use client::{
    Answer, MatrixSeries, MetricMetadata, PrometheusClient, PrometheusClients, PrometheusError, QueryResult, Range,
    RawSample, Rule, RuleAlert, RuleGroup, RulesData, VectorSample,
};
pub use config::{MetricsCatalogConfig, PrometheusConfig, SignalOverride, default_service_labels};
pub use tools::{
    CurrentValue, GetAlertHistory, GetServiceMetrics, ListMetrics, QueryMetrics, current_value, prometheus_tools,
};

#[cfg(feature = "alertmanager")]
pub(crate) use tools::{now_unix, service_of};

#[cfg(test)]
mod tests;
