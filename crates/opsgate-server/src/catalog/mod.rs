//! The service catalog: services, owners, dependencies and runbooks from Backstage
//! `catalog-info.yaml` files, with live health where a metrics target exists.
//!
//! Files: `model.rs` (entities, references, the dependency graph; parsing is pure), `load.rs`
//! (reading files and runbook directories, the polling watcher), `dependencies.rs` (the
//! `get_service_dependencies` tool, its health checks and Mermaid diagram), `surface.rs` (the
//! `opsgate://services` and `opsgate://runbooks` resources).
//!
//! The catalog in force is an immutable `Catalog` behind a `CatalogHandle`: readers take the
//! current `Arc` and keep a consistent view for the whole call while a reload swaps in the next.

mod dependencies;
mod load;
mod model;
mod surface;

use std::sync::{Arc, PoisonError, RwLock};

pub use dependencies::{GetServiceDependencies, HealthSettings, HealthSource, ServiceSignals};
pub use load::{CatalogSources, Fingerprint, load_async, watch};
pub use model::{
    ANNOTATION_PROMETHEUS_RULE, ANNOTATION_PROMETHEUS_TARGET, ANNOTATION_RUNBOOK, ANNOTATION_SERVICE, Catalog,
    CatalogProblem, Direction, Entity, EntityKind, EntityLink, EntityRef, MetricsLink, Reached, Runbook, RunbookLink,
    Severity, Source, parse_file, split_documents,
};
pub use surface::CatalogSurface;

/// The list of services, as a resource.
pub const SERVICES_URI: &str = "opsgate://services";
/// One service's resource: `opsgate://services/{name}`.
pub const SERVICE_URI_TEMPLATE: &str = "opsgate://services/{name}";
/// One runbook's resource: `opsgate://runbooks/{id}`; ids may contain `/`.
pub const RUNBOOK_URI_TEMPLATE: &str = "opsgate://runbooks/{id}";

/// The URI of a service's resource, which subscribers of that service watch: announce
/// `Change::ResourceUpdated` with it when something about the service changes (a new event).
pub fn service_uri(name: &str) -> String {
    format!("{SERVICES_URI}/{name}")
}

/// The URI of a runbook's resource.
pub fn runbook_uri(id: &str) -> String {
    format!("opsgate://runbooks/{id}")
}

/// The most characters of a runbook that are indexed; a runbook is a page, not a manual.
const MAX_RUNBOOK_INDEXED_CHARS: usize = 100_000;

/// Indexes the catalog's runbooks for `search_context`, replacing the runbooks indexed before
/// (so a deleted runbook is no longer found). A runbook's service is the first entity that links
/// to it. Failures are logged: search is then stale, nothing else is affected.
pub async fn index_runbooks(store: &opsgate_store::Store, catalog: &Catalog) {
    let now = opsgate_store::now_rfc3339();
    let documents: Vec<opsgate_store::SearchDocument> = catalog
        .runbooks()
        .map(|runbook| opsgate_store::SearchDocument {
            source: opsgate_store::DocumentSource::Runbook,
            reference: runbook.id.clone(),
            kind: "runbook".to_string(),
            title: runbook.title.clone(),
            body: opsgate_core::truncate_chars(&runbook.text, MAX_RUNBOOK_INDEXED_CHARS),
            time: now.clone(),
            service: catalog
                .entities()
                .find(|entity| entity.runbooks.contains(&runbook.id))
                .map(|entity| entity.name.clone()),
        })
        .collect();
    if let Err(error) = store.replace_documents(opsgate_store::DocumentSource::Runbook, &documents).await {
        tracing::warn!(%error, "could not index the runbooks for search_context");
    }
}

/// The catalog in force. Cheap to clone; every clone sees the same catalog and its reloads.
#[derive(Clone, Default)]
pub struct CatalogHandle {
    current: Arc<RwLock<Arc<Catalog>>>,
}

impl CatalogHandle {
    pub fn new(catalog: Catalog) -> CatalogHandle {
        CatalogHandle { current: Arc::new(RwLock::new(Arc::new(catalog))) }
    }

    /// The catalog now; keep it for the whole of one answer, so it is consistent.
    pub fn current(&self) -> Arc<Catalog> {
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Swaps `catalog` in; returns the one it replaced.
    pub fn replace(&self, catalog: Arc<Catalog>) -> Arc<Catalog> {
        std::mem::replace(&mut *self.current.write().unwrap_or_else(PoisonError::into_inner), catalog)
    }
}

#[cfg(test)]
mod tests;
