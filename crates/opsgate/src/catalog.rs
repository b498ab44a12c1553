//! The service catalog's wiring: the Prometheus connector as the health source of
//! `get_service_dependencies`, the catalog's watcher, and `doctor`'s catalog lines.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use opsgate_connectors::prometheus::{PrometheusClients, SignalCatalog, current_value};
use opsgate_server::catalog::{Catalog, CatalogHandle, EntityKind, HealthSource, ServiceSignals, Severity};

use crate::config::{CatalogSettings, RuntimeConfig};

/// How often the catalog's files are looked at for changes (as the policy files are).
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// Health from the configured Prometheus instances: a service's current `error_rate` and
/// `latency_p99`, read with the same signal catalog and PromQL as `get_service_metrics`.
pub struct PrometheusHealth {
    clients: Arc<PrometheusClients>,
    signals: SignalCatalog,
}

impl PrometheusHealth {
    pub fn new(clients: Arc<PrometheusClients>, signals: SignalCatalog) -> PrometheusHealth {
        PrometheusHealth { clients, signals }
    }
}

#[async_trait::async_trait]
impl HealthSource for PrometheusHealth {
    async fn signals(&self, target: &str, service: &str) -> Result<ServiceSignals, String> {
        let client =
            self.clients.get(target).ok_or_else(|| format!("no prometheus instance named {target:?} is configured"))?;
        let (errors, latency) = tokio::join!(
            current_value(client, &self.signals, "error_rate", service),
            current_value(client, &self.signals, "latency_p99", service)
        );
        match (errors, latency) {
            (Err(error), _) | (_, Err(error)) => Err(error.to_string()),
            (Ok(errors), Ok(latency)) => Ok(ServiceSignals {
                error_rate: errors.map(|value| value.value),
                latency_p99: latency.map(|value| value.value),
            }),
        }
    }
}

/// The catalog as loaded, and what its watcher needs to start from it.
pub struct LoadedCatalog {
    pub handle: CatalogHandle,
    sources: opsgate_server::catalog::CatalogSources,
    /// The files as they were when they were read: an edit after that counts as a change.
    loaded: opsgate_server::catalog::Fingerprint,
}

/// Loads the catalog the settings name (problems are logged, never fatal).
pub async fn load(settings: &CatalogSettings) -> LoadedCatalog {
    let (catalog, loaded) = opsgate_server::catalog::load_async(settings.sources.clone()).await;
    for problem in catalog.problems() {
        tracing::warn!(%problem, "service catalog");
    }
    LoadedCatalog { handle: CatalogHandle::new(catalog), sources: settings.sources.clone(), loaded }
}

impl LoadedCatalog {
    /// Indexes the runbooks as loaded for `search_context` in `store`, replacing what was
    /// indexed: by the commands that may search, before they do, so they search what the files
    /// say now (a write to the store the other commands are spared).
    pub async fn index_runbooks(&self, store: &opsgate_store::Store) {
        opsgate_server::catalog::index_runbooks(store, &self.handle.current()).await;
    }

    /// Starts the watcher: it reloads the catalog when its files change, announces changed
    /// resources on `changes` and indexes the runbooks again in `store`. For the commands that
    /// keep running.
    pub fn watch(
        &self,
        changes: opsgate_server::ChangeFeed,
        store: &opsgate_store::Store,
    ) -> tokio::task::JoinHandle<()> {
        opsgate_server::catalog::watch(
            self.handle.clone(),
            self.sources.clone(),
            self.loaded.clone(),
            RELOAD_INTERVAL,
            Some(changes),
            Some(store.clone()),
        )
    }
}

/// `doctor`'s lines about the catalog: what loaded, then every problem as `file:line: message`
/// (errors FAIL, warnings warn). Returns how many errors there were.
pub async fn doctor(config: &RuntimeConfig, stdout: &mut impl Write) -> anyhow::Result<usize> {
    let Some(settings) = &config.catalog else { return Ok(0) };
    let (catalog, _) = opsgate_server::catalog::load_async(settings.sources.clone()).await;
    writeln!(stdout, "catalog   {}  {}", if has_errors(&catalog) { "FAIL" } else { "ok  " }, counts(&catalog))?;
    let mut n_errors = 0;
    for problem in catalog.problems() {
        let status = match problem.severity {
            Severity::Error => {
                n_errors += 1;
                "FAIL"
            }
            Severity::Warning => "warn",
        };
        writeln!(stdout, "catalog   {status}  {problem}")?;
    }
    for entity in catalog.entities() {
        if let Some(metrics) = &entity.metrics
            && !config.prometheus.contains_key(&metrics.target)
        {
            writeln!(
                stdout,
                "catalog   warn  {}: opsgate.dev/prometheus-target {:?} is not a configured prometheus instance; its \
                 health will be unknown",
                entity.source, metrics.target
            )?;
        }
    }
    Ok(n_errors)
}

fn has_errors(catalog: &Catalog) -> bool {
    catalog.problems().iter().any(|problem| problem.severity == Severity::Error)
}

/// `4 components, 1 resource, 2 systems, 2 runbooks`.
fn counts(catalog: &Catalog) -> String {
    let plural = |n: usize, one: &str| if n == 1 { format!("1 {one}") } else { format!("{n} {one}s") };
    let mut parts: Vec<String> =
        EntityKind::ALL.iter().map(|kind| plural(catalog.count(*kind), kind.as_str())).collect();
    parts.push(plural(catalog.runbooks().count(), "runbook"));
    parts.join(", ")
}
