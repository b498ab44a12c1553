//! The catalog as MCP resources: `opsgate://services` (every entity, one line of facts each),
//! `opsgate://services/{name}` (one service: metadata, owners, dependencies both ways,
//! runbooks, its 20 newest events; a service only events name is its events alone) and
//! `opsgate://runbooks/{id}` (a runbook's Markdown).
//! Runbooks are also listed one by one, so a client can show them without a template.

use std::sync::Arc;

use opsgate_policy::redact::Redactor;
use opsgate_store::{EventQuery, Store};
use rmcp::ErrorData;
use rmcp::model::{
    CompleteRequestParams, CompleteResult, CompletionInfo, ReadResourceRequestParams, ReadResourceResult, Reference,
    Resource, ResourceContents, ResourceTemplate,
};
use serde_json::{Value, json};

use super::model::{Catalog, Entity, EntityRef};
use super::{CatalogHandle, RUNBOOK_URI_TEMPLATE, SERVICE_URI_TEMPLATE, SERVICES_URI, runbook_uri};
use crate::surface::Surface;

/// Events a service's resource shows.
const RECENT_EVENTS: i64 = 20;

pub struct CatalogSurface {
    catalog: CatalogHandle,
    store: Store,
    /// The pipeline's: runbooks and events are text people wrote, and may hold a secret.
    redactor: Arc<Redactor>,
}

impl CatalogSurface {
    pub fn new(catalog: CatalogHandle, store: Store, redactor: Arc<Redactor>) -> CatalogSurface {
        CatalogSurface { catalog, store, redactor }
    }

    fn json_contents(&self, uri: &str, mut value: Value) -> ReadResourceResult {
        self.redactor.redact_value(&mut value);
        let text = serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string());
        ReadResourceResult::new(vec![ResourceContents::text(text, uri).with_mime_type("application/json")])
    }

    /// One service: what the catalog knows of it and its newest events. A service the catalog
    /// does not know but events name (or any, without a catalog) is its events alone.
    async fn service(&self, uri: &str, name: &str) -> Result<ReadResourceResult, ErrorData> {
        let catalog = self.catalog.current();
        let entity = catalog.find(name);
        let service = entity.map_or_else(|| name.to_string(), |entity| entity.name.clone());
        let query = EventQuery { services: vec![service.clone()], limit: RECENT_EVENTS, ..EventQuery::default() };
        let events = self.store.events(&query).await.map_err(|error| {
            tracing::warn!(%error, %service, "recent events of a service could not be read");
            error
        });
        let mut detail = match entity {
            Some(entity) => service_detail(&catalog, entity),
            None if events.as_ref().is_ok_and(|events| !events.is_empty()) => {
                json!({"name": service, "inCatalog": false})
            }
            None => {
                let close = catalog.close_matches(name, 5);
                let hint =
                    if close.is_empty() { String::new() } else { format!("; did you mean {}?", close.join(", ")) };
                let data = json!({"uri": uri});
                let message = format!("no service {name:?} in the catalog or the events{hint}");
                return Err(ErrorData::resource_not_found(message, Some(data)));
            }
        };
        match events {
            Ok(events) => detail["recentEvents"] = serde_json::to_value(events).unwrap_or(Value::Null),
            Err(_) => {
                detail["recentEvents"] = Value::Null;
                detail["recentEventsError"] = json!("the event store is unavailable");
            }
        }
        Ok(self.json_contents(uri, detail))
    }
}

/// A reference as its kind's usual short form, with whether the catalog knows it.
fn reference(catalog: &Catalog, key: &EntityRef) -> Value {
    json!({"name": catalog.display_name(key), "kind": key.kind, "ref": key.to_string(), "known": catalog.get(key).is_some()})
}

/// One line of facts per entity, for the list.
fn service_summary(catalog: &Catalog, entity: &Entity) -> Value {
    let key = entity.entity_ref();
    let depends_on: Vec<String> = catalog.dependencies(&key).iter().map(|key| catalog.display_name(key)).collect();
    let runbooks: Vec<String> = catalog.runbook_links(entity).into_iter().map(|link| link.uri).collect();
    json!({
        "name": catalog.display_name(&key),
        "kind": entity.kind,
        "owner": entity.owner_short(),
        "system": entity.system_short(),
        "lifecycle": entity.lifecycle,
        "type": entity.spec_type,
        "dependsOn": depends_on,
        "runbooks": runbooks,
        "uri": super::service_uri(&catalog.display_name(&key)),
    })
}

/// Everything the catalog knows of one entity.
fn service_detail(catalog: &Catalog, entity: &Entity) -> Value {
    let key = entity.entity_ref();
    let mut detail = serde_json::to_value(entity).unwrap_or_else(|_| json!({}));
    detail["ref"] = json!(key.to_string());
    detail["owner"] = json!(entity.owner_short());
    detail["ownerRef"] = json!(entity.owner);
    detail["system"] = json!(entity.system_short());
    detail["dependsOn"] = catalog.dependencies(&key).iter().map(|key| reference(catalog, key)).collect();
    detail["dependents"] = catalog.dependents(&key).iter().map(|key| reference(catalog, key)).collect();
    detail["runbooks"] = serde_json::to_value(catalog.runbook_links(entity)).unwrap_or(Value::Null);
    detail["source"] = json!(entity.source.to_string());
    detail
}

/// Candidates that start with `typed` first, then those that contain it; at most what one
/// completion may carry.
fn complete_from<'a>(candidates: impl Iterator<Item = &'a str>, typed: &str) -> Vec<String> {
    let typed = typed.to_lowercase();
    let candidates: Vec<&str> = candidates.collect();
    let mut values: Vec<String> = candidates
        .iter()
        .filter(|candidate| candidate.to_lowercase().starts_with(&typed))
        .map(|candidate| candidate.to_string())
        .collect();
    values.extend(
        candidates
            .iter()
            .filter(|candidate| {
                let lower = candidate.to_lowercase();
                !lower.starts_with(&typed) && lower.contains(&typed)
            })
            .map(|candidate| candidate.to_string()),
    );
    let mut seen = std::collections::BTreeSet::new();
    values.retain(|value| seen.insert(value.clone()));
    values.truncate(CompletionInfo::MAX_VALUES);
    values
}

#[async_trait::async_trait]
impl Surface for CatalogSurface {
    fn resources(&self) -> Vec<Resource> {
        let catalog = self.catalog.current();
        let mut resources = vec![
            Resource::new(SERVICES_URI, "services")
                .with_title("Service catalog")
                .with_description(
                    "Every service, resource and system: kind, owner, system, lifecycle, dependencies, runbooks",
                )
                .with_mime_type("application/json"),
        ];
        resources.extend(catalog.runbooks().map(|runbook| {
            Resource::new(runbook_uri(&runbook.id), format!("runbook {}", runbook.id))
                .with_title(runbook.title.clone())
                .with_mime_type("text/markdown")
        }));
        resources
    }

    fn resource_templates(&self) -> Vec<ResourceTemplate> {
        vec![
            ResourceTemplate::new(SERVICE_URI_TEMPLATE, "service")
                .with_title("Service")
                .with_description(
                    "One service from the catalog: metadata, owner, dependencies up and down, runbooks and its 20 \
                     newest events",
                )
                .with_mime_type("application/json"),
            ResourceTemplate::new(RUNBOOK_URI_TEMPLATE, "runbook")
                .with_title("Runbook")
                .with_description("A runbook's Markdown; the id is its path in the runbook directory")
                .with_mime_type("text/markdown"),
        ]
    }

    async fn read_resource(&self, request: ReadResourceRequestParams) -> Result<ReadResourceResult, ErrorData> {
        let uri = request.uri.as_str();
        if uri == SERVICES_URI {
            let catalog = self.catalog.current();
            let list: Vec<Value> = catalog.entities().map(|entity| service_summary(&catalog, entity)).collect();
            return Ok(self.json_contents(uri, Value::Array(list)));
        }
        if let Some(name) = uri.strip_prefix(SERVICES_URI).and_then(|rest| rest.strip_prefix('/')) {
            return self.service(uri, name).await;
        }
        if let Some(id) = uri.strip_prefix("opsgate://runbooks/") {
            let catalog = self.catalog.current();
            let Some(runbook) = catalog.runbook(id.trim_matches('/')) else {
                let data = json!({"uri": uri});
                return Err(ErrorData::resource_not_found(format!("no runbook {id:?}"), Some(data)));
            };
            let text = self.redactor.redact_text(&runbook.text).into_owned();
            return Ok(ReadResourceResult::new(vec![
                ResourceContents::text(text, uri).with_mime_type("text/markdown"),
            ]));
        }
        let data = json!({"uri": uri});
        Err(ErrorData::resource_not_found(format!("no resource {uri}"), Some(data)))
    }

    async fn complete(&self, request: CompleteRequestParams) -> Result<CompleteResult, ErrorData> {
        let catalog = self.catalog.current();
        let typed = request.argument.value.as_str();
        let values = match (&request.r#ref, request.argument.name.as_str()) {
            (Reference::Resource(template), "name") if template.uri == SERVICE_URI_TEMPLATE => {
                complete_from(catalog.entities().map(|entity| entity.name.as_str()), typed)
            }
            (Reference::Resource(template), "id") if template.uri == RUNBOOK_URI_TEMPLATE => {
                complete_from(catalog.runbooks().map(|runbook| runbook.id.as_str()), typed)
            }
            _ => Vec::new(),
        };
        let completion = CompletionInfo::new(values).map_err(|message| ErrorData::internal_error(message, None))?;
        Ok(CompleteResult::new(completion))
    }

    /// Clients may subscribe to `opsgate://services` and to one service: a catalog reload
    /// announces the resources it changed (`load::watch`). A new event touching a service is
    /// to be announced with that service's `service_uri` by whoever stores it.
    fn subscribable(&self) -> bool {
        true
    }
}
