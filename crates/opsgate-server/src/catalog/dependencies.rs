//! `get_service_dependencies`: a service's upstream (what it depends on) and downstream (who
//! depends on it) from the catalog, each with live health where the catalog names a metrics
//! target, and a Mermaid diagram of the graph.
//!
//! Health comes through `HealthSource`, which the binary implements with the Prometheus
//! connector's signal catalog (the same PromQL as `get_service_metrics`), so this crate needs no
//! connector. Services are asked concurrently (`HealthSettings::concurrency` at a time), each
//! within a short timeout; one slow target makes that service "unknown", not the call late.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use opsgate_core::{CallContext, Effect, Row, Tool, ToolError, ToolOutput, ToolSpec, parse_arguments};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::CatalogHandle;
use super::model::{Catalog, Direction, EntityRef};
use crate::context_tools::object;

/// The current values health is judged on; `None` where the metrics have no value (no traffic,
/// no such series).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ServiceSignals {
    /// Share of failed requests, 0..1.
    pub error_rate: Option<f64>,
    /// Seconds.
    pub latency_p99: Option<f64>,
}

/// Where live health comes from.
#[async_trait::async_trait]
pub trait HealthSource: Send + Sync {
    /// The current signals of `service` (the value of its service label) in the metrics
    /// instance named `target`. An error is a sentence saying why there are none.
    async fn signals(&self, target: &str, service: &str) -> Result<ServiceSignals, String>;
}

/// How health is judged and how long it may take.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthSettings {
    /// Above this error rate a service is degraded.
    pub degraded_error_rate: f64,
    /// Above this p99 latency (seconds) a service is degraded; `None`: latency alone never is.
    pub degraded_latency_p99: Option<f64>,
    /// Each service's health query is given up after this long.
    pub timeout: Duration,
    /// Health queries in flight at once.
    pub concurrency: usize,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            degraded_error_rate: 0.05,
            degraded_latency_p99: None,
            timeout: Duration::from_secs(3),
            concurrency: 8,
        }
    }
}

const MAX_DEPTH: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ok,
    Degraded,
    Unknown,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Degraded => "degraded",
            State::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Health {
    state: State,
    signals: ServiceSignals,
    note: Option<String>,
}

impl Health {
    fn unknown(note: impl Into<String>) -> Health {
        Health { state: State::Unknown, signals: ServiceSignals::default(), note: Some(note.into()) }
    }
}

/// Judges signals against the settings.
fn judge(signals: ServiceSignals, settings: &HealthSettings, what: &str) -> Health {
    let mut reasons = Vec::new();
    if let Some(rate) = signals.error_rate.filter(|rate| *rate > settings.degraded_error_rate) {
        reasons.push(format!("error rate {} above {}", percent(rate), percent(settings.degraded_error_rate)));
    }
    if let (Some(latency), Some(limit)) = (signals.latency_p99, settings.degraded_latency_p99)
        && latency > limit
    {
        reasons.push(format!("p99 {} above {}", seconds(latency), seconds(limit)));
    }
    if !reasons.is_empty() {
        return Health { state: State::Degraded, signals, note: Some(reasons.join("; ")) };
    }
    if signals.error_rate.is_none() && signals.latency_p99.is_none() {
        return Health { state: State::Unknown, signals, note: Some(format!("no current data for {what}")) };
    }
    Health { state: State::Ok, signals, note: None }
}

fn percent(ratio: f64) -> String {
    let value = ratio * 100.0;
    if (value - value.round()).abs() < 0.05 { format!("{value:.0}%") } else { format!("{value:.1}%") }
}

fn seconds(value: f64) -> String {
    if value >= 1.0 { format!("{value:.2}s") } else { format!("{:.1}ms", value * 1000.0) }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Which {
    #[default]
    Both,
    Upstream,
    Downstream,
}

impl Which {
    fn directions(self) -> &'static [Direction] {
        match self {
            Which::Both => &[Direction::Upstream, Direction::Downstream],
            Which::Upstream => &[Direction::Upstream],
            Which::Downstream => &[Direction::Downstream],
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Which::Both => "both",
            Which::Upstream => "upstream",
            Which::Downstream => "downstream",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Arguments {
    service: String,
    #[serde(default = "default_depth")]
    depth: usize,
    #[serde(default)]
    direction: Which,
}

fn default_depth() -> usize {
    1
}

pub struct GetServiceDependencies {
    spec: ToolSpec,
    catalog: CatalogHandle,
    health: Option<Arc<dyn HealthSource>>,
    settings: HealthSettings,
}

impl GetServiceDependencies {
    /// `health`: `None` when no metrics backend is configured (every health is then unknown).
    pub fn new(
        catalog: CatalogHandle,
        health: Option<Arc<dyn HealthSource>>,
        settings: HealthSettings,
    ) -> GetServiceDependencies {
        let spec = ToolSpec {
            name: "get_service_dependencies".to_string(),
            title: "Service dependencies".to_string(),
            description: "A service's dependencies from the service catalog: upstream (what it depends on) and \
                          downstream (what depends on it) to a depth, each with owner, system and live health \
                          (ok/degraded/unknown from its error rate and p99), plus a Mermaid diagram."
                .to_string(),
            input_schema: object(json!({
                "type": "object",
                "properties": {
                    "service": {"type": "string", "description": "catalog name, or an entity ref like resource:orders-db"},
                    "depth": {"type": "integer", "minimum": 1, "maximum": MAX_DEPTH, "default": 1},
                    "direction": {"enum": ["both", "upstream", "downstream"], "default": "both"}
                },
                "required": ["service"],
                "additionalProperties": false
            })),
            output_schema: Some(object(json!({
                "type": "object",
                "properties": {
                    "service": {"type": "string"},
                    "depth": {"type": "integer"},
                    "direction": {"type": "string"},
                    "mermaid": {"type": "string"},
                    "items": {"type": "array", "items": {"type": "object", "properties": {
                        "service": {"type": "string"}, "ref": {"type": "string"},
                        "direction": {"enum": ["self", "upstream", "downstream"]},
                        "distance": {"type": "integer"}, "via": {"type": ["string", "null"]},
                        "kind": {"type": "string"}, "known": {"type": "boolean"},
                        "owner": {"type": ["string", "null"]}, "system": {"type": ["string", "null"]},
                        "health": {"enum": ["ok", "degraded", "unknown"]},
                        "error_rate": {"type": ["number", "null"]}, "latency_p99": {"type": ["number", "null"]},
                        "note": {"type": ["string", "null"]}
                    }}},
                    "truncated": {"type": "boolean"}
                },
                "required": ["service", "items", "mermaid"]
            }))),
            effect: Effect::Read,
            target_kind: None,
            idempotent: true,
            open_world: true,
        };
        GetServiceDependencies { spec, catalog, health, settings }
    }

    /// Health of every entity in `entities`, asked concurrently.
    async fn health(&self, catalog: &Catalog, entities: &[EntityRef]) -> BTreeMap<EntityRef, Health> {
        let mut healths = BTreeMap::new();
        let mut queries: BTreeMap<(String, String), Vec<EntityRef>> = BTreeMap::new();
        for key in entities {
            let Some(entity) = catalog.get(key) else {
                healths.insert(key.clone(), Health::unknown("not in the catalog"));
                continue;
            };
            let Some(metrics) = &entity.metrics else {
                healths.insert(key.clone(), Health::unknown("no opsgate.dev/prometheus-target annotation"));
                continue;
            };
            if self.health.is_none() {
                healths.insert(key.clone(), Health::unknown("no Prometheus is configured"));
                continue;
            }
            queries.entry((metrics.target.clone(), metrics.service.clone())).or_default().push(key.clone());
        }
        let Some(source) = &self.health else { return healths };
        let settings = self.settings;
        let answers: Vec<((String, String), Health)> = futures::stream::iter(queries.keys().cloned())
            .map(|(target, service)| {
                let source = source.clone();
                async move {
                    let what = format!("{service} in prometheus {target}");
                    let health = match tokio::time::timeout(settings.timeout, source.signals(&target, &service)).await {
                        Ok(Ok(signals)) => judge(signals, &settings, &what),
                        Ok(Err(reason)) => Health::unknown(reason),
                        Err(_) => Health::unknown(format!("no answer for {what} within {:?}", settings.timeout)),
                    };
                    ((target, service), health)
                }
            })
            .buffer_unordered(settings.concurrency.max(1))
            .collect()
            .await;
        for (query, health) in answers {
            for key in queries.get(&query).into_iter().flatten() {
                healths.insert(key.clone(), health.clone());
            }
        }
        healths
    }
}

/// One row of the answer before health is known.
struct Node {
    entity: EntityRef,
    direction: &'static str,
    distance: usize,
    via: Option<EntityRef>,
}

#[async_trait::async_trait]
impl Tool for GetServiceDependencies {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, context: CallContext, arguments: Map<String, Value>) -> Result<ToolOutput, ToolError> {
        let arguments: Arguments = parse_arguments(arguments)?;
        if !(1..=MAX_DEPTH).contains(&arguments.depth) {
            return Err(ToolError::InvalidArguments(format!(
                "depth must be between 1 and {MAX_DEPTH}, not {}",
                arguments.depth
            )));
        }
        let catalog = self.catalog.current();
        let Some(entity) = catalog.find(&arguments.service) else {
            return Err(unknown_service(&catalog, &arguments.service));
        };
        let start = entity.entity_ref();
        let name = catalog.display_name(&start);

        let mut nodes = vec![Node { entity: start.clone(), direction: "self", distance: 0, via: None }];
        let mut edges: BTreeSet<(EntityRef, EntityRef)> = BTreeSet::new();
        let mut counts = Vec::new();
        for direction in arguments.direction.directions() {
            let reached = catalog.walk(&start, *direction, arguments.depth);
            counts.push(format!("{} {}", reached.len(), direction.as_str()));
            for step in reached {
                // Edges point from the dependent to its dependency, whichever way the walk went.
                edges.insert(match direction {
                    Direction::Upstream => (step.from.clone(), step.entity.clone()),
                    Direction::Downstream => (step.entity.clone(), step.from.clone()),
                });
                nodes.push(Node {
                    entity: step.entity,
                    direction: direction.as_str(),
                    distance: step.distance,
                    via: Some(step.from),
                });
            }
        }
        // Edges between reached entities that the walk did not take (a second path to one).
        let reached: BTreeSet<&EntityRef> = nodes.iter().map(|node| &node.entity).collect();
        for node in &nodes {
            for dependency in catalog.dependencies(&node.entity) {
                if reached.contains(dependency) {
                    edges.insert((node.entity.clone(), dependency.clone()));
                }
            }
        }

        let unique: Vec<EntityRef> = reached.iter().map(|key| (*key).clone()).collect();
        let healths = self.health(&catalog, &unique).await;
        let unknown_health = Health::unknown("not checked");
        let health_of = |key: &EntityRef| healths.get(key).unwrap_or(&unknown_health);

        let mut n_by_state: BTreeMap<&str, usize> = BTreeMap::new();
        for key in &unique {
            *n_by_state.entry(health_of(key).state.as_str()).or_default() += 1;
        }
        let own = health_of(&start);
        let mut summary = vec![format!(
            "{name} ({}): {} within depth {}; {name} itself {}{}",
            start.kind,
            counts.join(", "),
            arguments.depth,
            own.state.as_str(),
            own.note.as_deref().map(|note| format!(" ({note})")).unwrap_or_default()
        )];
        summary.push(format!(
            "health: {} degraded, {} ok, {} unknown",
            n_by_state.get("degraded").copied().unwrap_or(0),
            n_by_state.get("ok").copied().unwrap_or(0),
            n_by_state.get("unknown").copied().unwrap_or(0)
        ));

        let order: Vec<EntityRef> = nodes.iter().map(|node| node.entity.clone()).collect();
        let (diagram, n_drawn) =
            mermaid(&catalog, &order, &edges, &|key| health_of(key).clone(), context.budget.max_bytes / 4);

        let rows = nodes
            .iter()
            .map(|node| {
                let known = catalog.get(&node.entity);
                let health = health_of(&node.entity);
                let owner = known.and_then(|entity| entity.owner_short());
                let system = known.and_then(|entity| entity.system_short());
                let service = catalog.display_name(&node.entity);
                let via = node.via.as_ref().map(|via| catalog.display_name(via));
                Row {
                    cells: vec![
                        service.clone(),
                        node.direction.to_string(),
                        node.distance.to_string(),
                        node.entity.kind.clone(),
                        owner.clone().unwrap_or_default(),
                        system.clone().unwrap_or_default(),
                        health.state.as_str().to_string(),
                        health.signals.error_rate.map(percent).unwrap_or_default(),
                        health.signals.latency_p99.map(seconds).unwrap_or_default(),
                        health.note.clone().unwrap_or_default(),
                    ],
                    item: json!({
                        "service": service,
                        "ref": node.entity.to_string(),
                        "direction": node.direction,
                        "distance": node.distance,
                        "via": via,
                        "kind": node.entity.kind,
                        "known": known.is_some(),
                        "owner": owner,
                        "system": system,
                        "health": health.state.as_str(),
                        "error_rate": health.signals.error_rate,
                        "latency_p99": health.signals.latency_p99,
                        "note": health.note,
                    }),
                }
            })
            .collect();

        let mut footer = Vec::new();
        if n_drawn < unique.len() {
            footer.push(format!(
                "the diagram shows the nearest {n_drawn} of {} services (output budget); lower depth for all",
                unique.len()
            ));
        }
        footer.push(format!("```mermaid\n{diagram}```"));
        let mut output = ToolOutput { summary, rows, footer, ..ToolOutput::default() }
            .field("service", name)
            .field("depth", arguments.depth)
            .field("direction", arguments.direction.as_str())
            .field("mermaid", diagram);
        output.columns =
            ["service", "direction", "distance", "kind", "owner", "system", "health", "errors", "p99", "note"]
                .map(str::to_string)
                .to_vec();
        Ok(output)
    }
}

/// The unknown-service error, naming close matches (or a few services when none is close).
fn unknown_service(catalog: &Catalog, name: &str) -> ToolError {
    let close = catalog.close_matches(name, 5);
    let hint = if !close.is_empty() {
        format!("; did you mean {}?", close.join(", "))
    } else {
        let some: Vec<String> = catalog
            .entities()
            .filter(|entity| entity.kind != super::EntityKind::System)
            .take(10)
            .map(|entity| entity.name.clone())
            .collect();
        if some.is_empty() {
            "; the catalog is empty".to_string()
        } else {
            format!("; services include {}", some.join(", "))
        }
    };
    ToolError::InvalidArguments(format!("no service {:?} in the catalog{hint}", name.trim()))
}

/// A Mermaid node id: letters, digits and `_` only, never a keyword (`end` breaks a flowchart),
/// unique among `taken`.
fn node_id(name: &str, taken: &mut BTreeSet<String>) -> String {
    let cleaned: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    let base = format!("n_{cleaned}");
    let mut id = base.clone();
    let mut suffix = 2;
    while !taken.insert(id.clone()) {
        id = format!("{base}_{suffix}");
        suffix += 1;
    }
    id
}

/// Text inside a Mermaid `["…"]` label: quotes and angle brackets as Mermaid's entity codes.
fn label_text(text: &str) -> String {
    text.replace('"', "#quot;").replace('<', "#lt;").replace('>', "#gt;")
}

/// `graph LR` with one node per entity in `order` (nearest first) and an edge from each
/// dependent to its dependency; health as the node's class and in its label. Stops adding nodes
/// before the text passes `max_bytes`; returns the diagram and how many nodes it shows.
fn mermaid(
    catalog: &Catalog,
    order: &[EntityRef],
    edges: &BTreeSet<(EntityRef, EntityRef)>,
    health_of: &dyn Fn(&EntityRef) -> Health,
    max_bytes: usize,
) -> (String, usize) {
    const HEAD: &str = "graph LR\n";
    const TAIL: &str = "  classDef ok fill:#e6f4ea,stroke:#2e7d32\n  \
                        classDef degraded fill:#fdecea,stroke:#c62828\n  \
                        classDef unknown fill:#f1f3f4,stroke:#9e9e9e,stroke-dasharray:3\n";
    let mut taken = BTreeSet::new();
    let mut ids: BTreeMap<EntityRef, String> = BTreeMap::new();
    let mut body = String::new();
    let mut used = HEAD.len() + TAIL.len();
    for key in order {
        if ids.contains_key(key) {
            continue;
        }
        let health = health_of(key);
        let mut label = label_text(&catalog.display_name(key));
        if catalog.get(key).is_none() {
            label.push_str(" (not in catalog)");
        }
        let detail = match (health.state, health.signals.error_rate) {
            (State::Unknown, _) => "unknown".to_string(),
            (state, Some(rate)) => format!("{} · errors {}", state.as_str(), percent(rate)),
            (state, None) => state.as_str().to_string(),
        };
        // An id taken for a node that then does not fit is no loss: nothing is added after it.
        let id = node_id(&key.name, &mut taken);
        let mut lines = format!("  {id}[\"{label}<br/>{detail}\"]:::{}\n", health.state.as_str());
        for (from, to) in edges {
            let other = if from == key {
                to
            } else if to == key {
                from
            } else {
                continue;
            };
            if let Some(other_id) = ids.get(other) {
                let (from_id, to_id) = if from == key { (&id, other_id) } else { (other_id, &id) };
                lines.push_str(&format!("  {from_id} --> {to_id}\n"));
            }
        }
        if used + lines.len() > max_bytes && !ids.is_empty() {
            break;
        }
        used += lines.len();
        ids.insert(key.clone(), id);
        body.push_str(&lines);
    }
    // A dependency on itself is an edge the loop above never draws (its node is new then).
    for (from, to) in edges.iter().filter(|(from, to)| from == to) {
        if let Some(id) = ids.get(from).filter(|_| ids.contains_key(to)) {
            body.push_str(&format!("  {id} --> {id}\n"));
        }
    }
    (format!("{HEAD}{body}{TAIL}"), ids.len())
}
