//! The service catalog as data: Backstage entities parsed from YAML text, the entity references
//! between them, and the dependency graph the tools and resources walk. No IO: `load.rs` reads
//! the files and hands their text here, so every rule is tested on strings.
//!
//! A file holds one or more YAML documents (`---`). Each document is checked twice: first as
//! YAML at all (a syntax error is a problem with its line, the file's other documents still
//! load), then, for the kinds the catalog uses (Component, Resource, System), as an entity (a
//! wrong type is a problem with its line and the key's path). Other kinds (API, Group, User,
//! Location, Domain, Template…) are skipped without complaint: they are valid Backstage.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use serde::{Deserialize, Serialize};

/// A runbook for the entity: a runbook id (`payments/high-error-rate`) or a URL; several are
/// separated by commas.
pub const ANNOTATION_RUNBOOK: &str = "opsgate.dev/runbook";
/// The `[connectors.prometheus.NAME]` instance that holds the entity's metrics.
pub const ANNOTATION_PROMETHEUS_TARGET: &str = "opsgate.dev/prometheus-target";
/// The value of the service label in those metrics; default: `metadata.name`.
pub const ANNOTATION_SERVICE: &str = "opsgate.dev/service";
/// Backstage's Prometheus plugin: PromQL the entity's page graphs (comma-separated). Kept and
/// shown, not run.
pub const ANNOTATION_PROMETHEUS_RULE: &str = "prometheus.io/rule";

const DEFAULT_NAMESPACE: &str = "default";

/// The kinds the catalog keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntityKind {
    Component,
    Resource,
    System,
}

impl EntityKind {
    pub const ALL: [EntityKind; 3] = [EntityKind::Component, EntityKind::Resource, EntityKind::System];

    /// Backstage compares kinds without regard to case.
    pub fn parse(text: &str) -> Option<EntityKind> {
        EntityKind::ALL.into_iter().find(|kind| kind.as_str().eq_ignore_ascii_case(text))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Component => "component",
            EntityKind::Resource => "resource",
            EntityKind::System => "system",
        }
    }
}

/// A Backstage entity reference, `[kind:][namespace/]name`, normalised to lowercase as Backstage
/// compares them. The key of every entity in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntityRef {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl EntityRef {
    pub fn new(kind: &str, namespace: &str, name: &str) -> EntityRef {
        EntityRef {
            kind: kind.to_ascii_lowercase(),
            namespace: namespace.to_ascii_lowercase(),
            name: name.to_lowercase(),
        }
    }

    /// Parses `[kind:][namespace/]name`; a missing kind is `default_kind`, a missing namespace
    /// `default`. Returns the reference and whether its kind was written.
    pub fn parse(text: &str, default_kind: &str) -> Result<(EntityRef, bool), String> {
        let text = text.trim();
        let (kind, rest) = match text.split_once(':') {
            Some((kind, rest)) => (Some(kind), rest),
            None => (None, text),
        };
        let (namespace, name) = match rest.split_once('/') {
            Some((namespace, name)) => (namespace, name),
            None => (DEFAULT_NAMESPACE, rest),
        };
        let plain =
            |part: &str| !part.is_empty() && !part.contains(|c: char| c.is_whitespace() || c == ':' || c == '/');
        if !plain(name) || !plain(namespace) || kind.is_some_and(|kind| !plain(kind)) {
            return Err(format!("{text:?} is not an entity reference ([kind:][namespace/]name)"));
        }
        Ok((EntityRef::new(kind.unwrap_or(default_kind), namespace, name), kind.is_some()))
    }

    /// How a person writes it: the kind left out when it is `usual_kind`, the namespace when
    /// it is `default` (`payments`, `resource:orders-db`, `component:billing/auth`).
    pub fn short(&self, usual_kind: &str) -> String {
        let mut text = String::new();
        if self.kind != usual_kind {
            text.push_str(&self.kind);
            text.push(':');
        }
        if self.namespace != DEFAULT_NAMESPACE {
            text.push_str(&self.namespace);
            text.push('/');
        }
        text.push_str(&self.name);
        text
    }
}

impl fmt::Display for EntityRef {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}:{}/{}", self.kind, self.namespace, self.name)
    }
}

/// Where something was read: a file and the 1-based line of its document or error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    pub file: String,
    pub line: usize,
}

impl fmt::Display for Source {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}:{}", self.file, self.line)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Something could not be read: a file, a document, an entity. The rest still loads.
    Error,
    /// Read, but suspect: a duplicate, a dependency or runbook that is not there.
    Warning,
}

/// Something wrong in the catalog's files, kept beside what loaded so `doctor` can name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CatalogProblem {
    pub file: String,
    /// 1-based; `None` when the whole file is meant (it could not be read).
    pub line: Option<usize>,
    pub message: String,
    pub severity: Severity,
}

impl CatalogProblem {
    pub fn error(file: &str, line: Option<usize>, message: impl Into<String>) -> CatalogProblem {
        CatalogProblem { file: file.to_string(), line, message: message.into(), severity: Severity::Error }
    }

    fn warning(source: &Source, message: impl Into<String>) -> CatalogProblem {
        CatalogProblem {
            file: source.file.clone(),
            line: Some(source.line),
            message: message.into(),
            severity: Severity::Warning,
        }
    }
}

impl fmt::Display for CatalogProblem {
    /// `file:line: message`, the form editors and terminals turn into a link.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(formatter, "{}:{line}: {}", self.file, self.message),
            None => write!(formatter, "{}: {}", self.file, self.message),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntityLink {
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub link_type: Option<String>,
}

/// Where an entity's metrics are: the opsgate Prometheus instance and the service label value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetricsLink {
    pub target: String,
    pub service: String,
}

/// A catalog entity as the catalog keeps it: Backstage's fields that opsgate uses, as written.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entity {
    pub kind: EntityKind,
    pub name: String,
    pub namespace: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub annotations: BTreeMap<String, String>,
    pub links: Vec<EntityLink>,
    /// `spec.owner`, as written (`team-a`, `group:default/payments-team`).
    pub owner: Option<String>,
    /// `spec.type`: `service`, `website`, `database`…
    #[serde(rename = "type")]
    pub spec_type: Option<String>,
    pub lifecycle: Option<String>,
    /// `spec.system`, as written.
    pub system: Option<String>,
    /// `spec.dependsOn`, as written; `Catalog` resolves them.
    #[serde(rename = "dependsOn")]
    pub depends_on: Vec<String>,
    #[serde(rename = "providesApis")]
    pub provides_apis: Vec<String>,
    #[serde(rename = "consumesApis")]
    pub consumes_apis: Vec<String>,
    /// Runbook ids (without the slashes around them) or URLs: the runbook annotation's entries,
    /// then links about runbooks.
    pub runbooks: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsLink>,
    #[serde(rename = "prometheusRules", skip_serializing_if = "Vec::is_empty")]
    pub prometheus_rules: Vec<String>,
    #[serde(skip)]
    pub source: Source,
}

impl Entity {
    pub fn entity_ref(&self) -> EntityRef {
        EntityRef::new(self.kind.as_str(), &self.namespace, &self.name)
    }

    /// The owner without Backstage's defaults spelt out (`group:default/team-a` ⇒ `team-a`).
    pub fn owner_short(&self) -> Option<String> {
        let owner = self.owner.as_deref()?;
        Some(EntityRef::parse(owner, "group").map(|(owner, _)| owner.short("group")).unwrap_or_else(|_| owner.into()))
    }

    /// The system without Backstage's defaults spelt out.
    pub fn system_short(&self) -> Option<String> {
        let system = self.system.as_deref()?;
        Some(
            EntityRef::parse(system, "system")
                .map(|(system, _)| system.short("system"))
                .unwrap_or_else(|_| system.into()),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing

/// An entity as written; `kind` was read already (it decides whether the document is read as
/// an entity at all), and fields opsgate does not use are ignored.
#[derive(Deserialize)]
struct RawEntity {
    metadata: RawMetadata,
    #[serde(default)]
    spec: RawSpec,
}

#[derive(Deserialize)]
struct RawMetadata {
    name: String,
    namespace: Option<String>,
    title: Option<String>,
    description: Option<String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    links: Vec<RawLink>,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Deserialize)]
struct RawLink {
    url: String,
    title: Option<String>,
    #[serde(rename = "type")]
    link_type: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSpec {
    owner: Option<String>,
    #[serde(rename = "type")]
    spec_type: Option<String>,
    lifecycle: Option<String>,
    system: Option<String>,
    #[serde(default)]
    depends_on: Vec<String>,
    #[serde(default)]
    provides_apis: Vec<String>,
    #[serde(default)]
    consumes_apis: Vec<String>,
}

/// The documents of a YAML stream with the 1-based line each starts on. serde_norway's own
/// multi-document reader does not recover after a syntax error (it returns the same error
/// forever), so the stream is split here, at `---` and `...` markers at the start of a line,
/// which YAML does not allow inside a document, block scalars included.
pub fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut documents = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    for (index, line) in text.lines().enumerate() {
        let is_marker = |marker: &str| {
            line.strip_prefix(marker).is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '#']))
        };
        if is_marker("---") || is_marker("...") {
            if !current.trim().is_empty() {
                documents.push((start, std::mem::take(&mut current)));
            }
            current.clear();
            start = index + 1;
            // `--- value` starts a document on the marker's line: keep the rest, aligned.
            let rest = &line[3..];
            if line.starts_with("---") && !rest.trim().is_empty() && !rest.trim_start().starts_with('#') {
                current.push_str("   ");
                current.push_str(rest);
            }
            current.push('\n');
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    if !current.trim().is_empty() {
        documents.push((start, current));
    }
    documents
}

/// A YAML error as a problem: its message without serde_norway's own position, and the line in
/// the file (the document's first line is `first_line`).
fn yaml_problem(file: &str, first_line: usize, error: &serde_norway::Error) -> CatalogProblem {
    let message = error.to_string();
    let message = match message.find(" at line ") {
        Some(index) if error.location().is_some() => {
            let (head, tail) = message.split_at(index);
            // Keep what follows the position (", while parsing a flow sequence…") without its
            // own position, which would be relative to the document.
            let tail = tail.split_once(", ").map(|(_, rest)| rest).unwrap_or_default();
            let tail = tail.split(" at line ").next().unwrap_or_default();
            if tail.is_empty() { head.to_string() } else { format!("{head}, {tail}") }
        }
        _ => message,
    };
    let line = error.location().map_or(first_line, |location| first_line + location.line().saturating_sub(1));
    CatalogProblem::error(file, Some(line), message)
}

/// Parses one catalog file's text. `file` is how problems name it. Returns the entities of the
/// kinds the catalog keeps, in file order, and what could not be read.
pub fn parse_file(text: &str, file: &str) -> (Vec<Entity>, Vec<CatalogProblem>) {
    let mut entities = Vec::new();
    let mut problems = Vec::new();
    for (first_line, document) in split_documents(text) {
        let value: serde_norway::Value = match serde_norway::from_str(&document) {
            Ok(value) => value,
            Err(error) => {
                problems.push(yaml_problem(file, first_line, &error));
                continue;
            }
        };
        // The first line with content, for problems about the whole document.
        let line = first_line
            + document
                .lines()
                .position(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
                .unwrap_or(0);
        let kind = match &value {
            serde_norway::Value::Null => continue,
            serde_norway::Value::Mapping(mapping) => mapping.get("kind").and_then(serde_norway::Value::as_str),
            _ => {
                problems.push(CatalogProblem::error(
                    file,
                    Some(line),
                    "a catalog entity is a mapping with apiVersion, kind, metadata and spec",
                ));
                continue;
            }
        };
        let Some(kind) = kind else {
            problems.push(CatalogProblem::error(file, Some(line), "the document has no kind"));
            continue;
        };
        let Some(kind) = EntityKind::parse(kind) else { continue };
        let raw: RawEntity = match serde_norway::from_str(&document) {
            Ok(raw) => raw,
            Err(error) => {
                problems.push(yaml_problem(file, first_line, &error));
                continue;
            }
        };
        let source = Source { file: file.to_string(), line };
        match entity(kind, raw, source) {
            Ok(entity) => entities.push(entity),
            Err(message) => problems.push(CatalogProblem::error(file, Some(line), message)),
        }
    }
    (entities, problems)
}

fn non_empty(text: Option<String>) -> Option<String> {
    text.map(|text| text.trim().to_string()).filter(|text| !text.is_empty())
}

fn comma_list(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(',').map(str::trim).filter(|item| !item.is_empty()).map(str::to_string)
}

/// A runbook as the catalog keeps it: a URL as written, an id without the slashes around it
/// (`/payments/high-error-rate/` is the runbook `payments/high-error-rate`), so that every
/// lookup of an id is a plain comparison. Trims what it is given; `None` when nothing is left,
/// so an annotation's comma-separated entries can be given to it as split.
fn runbook_entry(written: &str) -> Option<String> {
    let entry = if is_url(written) { written.trim() } else { written.trim().trim_matches('/') };
    (!entry.is_empty()).then(|| entry.to_string())
}

fn entity(kind: EntityKind, raw: RawEntity, source: Source) -> Result<Entity, String> {
    let metadata = raw.metadata;
    let name = metadata.name.trim().to_string();
    let namespace = non_empty(metadata.namespace).unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
    // The name must make a reference, since other entities point at it with one.
    EntityRef::parse(&format!("{}:{namespace}/{name}", kind.as_str()), kind.as_str())
        .map_err(|_| format!("metadata.name {name:?} in namespace {namespace:?} cannot be referred to"))?;
    let annotations = metadata.annotations;
    let mut runbooks: Vec<String> = annotations
        .get(ANNOTATION_RUNBOOK)
        .map(|value| value.split(',').filter_map(runbook_entry).collect())
        .unwrap_or_default();
    for link in &metadata.links {
        let mentions =
            |text: &Option<String>| text.as_deref().is_some_and(|text| text.to_lowercase().contains("runbook"));
        if (mentions(&link.title) || mentions(&link.link_type))
            && let Some(entry) = runbook_entry(&link.url).filter(|entry| !runbooks.contains(entry))
        {
            runbooks.push(entry);
        }
    }
    let metrics = non_empty(annotations.get(ANNOTATION_PROMETHEUS_TARGET).cloned()).map(|target| MetricsLink {
        target,
        service: non_empty(annotations.get(ANNOTATION_SERVICE).cloned()).unwrap_or_else(|| name.clone()),
    });
    let prometheus_rules =
        annotations.get(ANNOTATION_PROMETHEUS_RULE).map(|value| comma_list(value).collect()).unwrap_or_default();
    let spec = raw.spec;
    Ok(Entity {
        kind,
        name,
        namespace,
        title: non_empty(metadata.title),
        description: non_empty(metadata.description),
        tags: metadata.tags,
        links: metadata
            .links
            .into_iter()
            .map(|link| EntityLink { url: link.url, title: link.title, link_type: link.link_type })
            .collect(),
        annotations,
        owner: non_empty(spec.owner),
        spec_type: non_empty(spec.spec_type),
        lifecycle: non_empty(spec.lifecycle),
        system: non_empty(spec.system),
        depends_on: spec.depends_on,
        provides_apis: spec.provides_apis,
        consumes_apis: spec.consumes_apis,
        runbooks,
        metrics,
        prometheus_rules,
        source,
    })
}

// ---------------------------------------------------------------------------------------------
// The catalog

/// A Markdown runbook from one of the runbook directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runbook {
    /// Its path below the directory, without `.md`, with `/` separators.
    pub id: String,
    /// The first `# ` heading, else the id.
    pub title: String,
    pub text: String,
    pub source: String,
}

impl Runbook {
    pub fn new(id: String, text: String, source: String) -> Runbook {
        let title = text
            .lines()
            .find_map(|line| line.strip_prefix("# "))
            .map(|title| title.trim().to_string())
            .filter(|title| !title.is_empty())
            .unwrap_or_else(|| id.clone());
        Runbook { id, title, text, source }
    }
}

/// A runbook as an entity names it, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunbookLink {
    /// The id in the runbook directories, when it is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `opsgate://runbooks/<id>` or the URL as written.
    pub uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// Which way a dependency walk goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// What the entity depends on (its `dependsOn`, transitively).
    Upstream,
    /// What depends on the entity.
    Downstream,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Upstream => "upstream",
            Direction::Downstream => "downstream",
        }
    }
}

/// One entity a walk reached: how far, and the entity it was reached from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reached {
    pub entity: EntityRef,
    pub distance: usize,
    pub from: EntityRef,
}

/// The loaded catalog: entities by reference, their resolved dependencies both ways, the
/// runbooks, and the problems met while loading. Immutable; a reload builds a new one.
#[derive(Debug, Default)]
pub struct Catalog {
    entities: BTreeMap<EntityRef, Entity>,
    /// Resolved `dependsOn` of each entity, in the order written; targets may be unknown.
    upstream: BTreeMap<EntityRef, Vec<EntityRef>>,
    /// Who depends on each reference (known or not), in entity order.
    downstream: BTreeMap<EntityRef, Vec<EntityRef>>,
    runbooks: BTreeMap<String, Runbook>,
    problems: Vec<CatalogProblem>,
}

impl Catalog {
    /// Builds the catalog from entities in load order (a later duplicate replaces an earlier
    /// one), the runbooks and the problems found while reading; adds the problems it finds
    /// itself (duplicates, dependencies and runbooks that are not there).
    pub fn build(loaded: Vec<Entity>, runbooks: Vec<Runbook>, mut problems: Vec<CatalogProblem>) -> Catalog {
        let mut entities: BTreeMap<EntityRef, Entity> = BTreeMap::new();
        for entity in loaded {
            let key = entity.entity_ref();
            if let Some(earlier) = entities.get(&key) {
                problems.push(CatalogProblem::warning(
                    &entity.source,
                    format!("{key} is defined again; this definition replaces the one at {}", earlier.source),
                ));
            }
            entities.insert(key, entity);
        }
        let runbooks: BTreeMap<String, Runbook> =
            runbooks.into_iter().map(|runbook| (runbook.id.clone(), runbook)).collect();

        let mut upstream = BTreeMap::new();
        let mut downstream: BTreeMap<EntityRef, Vec<EntityRef>> = BTreeMap::new();
        for (key, entity) in &entities {
            let mut targets = Vec::new();
            for written in &entity.depends_on {
                let target = match EntityRef::parse(written, "component") {
                    Ok((target, kind_written)) => {
                        // Backstage wants a kind in dependsOn; without one, a resource of
                        // that name is what was meant when there is no such component.
                        let resource = EntityRef { kind: "resource".to_string(), ..target.clone() };
                        if !kind_written && !entities.contains_key(&target) && entities.contains_key(&resource) {
                            resource
                        } else {
                            target
                        }
                    }
                    Err(message) => {
                        problems
                            .push(CatalogProblem::warning(&entity.source, format!("{key} spec.dependsOn: {message}")));
                        continue;
                    }
                };
                if !entities.contains_key(&target) {
                    problems.push(CatalogProblem::warning(
                        &entity.source,
                        format!("{key} depends on {target}, which is not in the catalog"),
                    ));
                }
                if !targets.contains(&target) {
                    downstream.entry(target.clone()).or_default().push(key.clone());
                    targets.push(target);
                }
            }
            upstream.insert(key.clone(), targets);
            for runbook in &entity.runbooks {
                if !is_url(runbook) && !runbooks.contains_key(runbook) {
                    problems.push(CatalogProblem::warning(
                        &entity.source,
                        format!(
                            "{key} names runbook {runbook:?}, which is neither a URL nor in the runbook directories"
                        ),
                    ));
                }
            }
        }
        Catalog { entities, upstream, downstream, runbooks, problems }
    }

    pub fn entities(&self) -> impl Iterator<Item = &Entity> {
        self.entities.values()
    }

    pub fn get(&self, key: &EntityRef) -> Option<&Entity> {
        self.entities.get(key)
    }

    pub fn count(&self, kind: EntityKind) -> usize {
        self.entities.values().filter(|entity| entity.kind == kind).count()
    }

    pub fn problems(&self) -> &[CatalogProblem] {
        &self.problems
    }

    pub fn runbooks(&self) -> impl Iterator<Item = &Runbook> {
        self.runbooks.values()
    }

    pub fn runbook(&self, id: &str) -> Option<&Runbook> {
        self.runbooks.get(id)
    }

    /// The entity a person means by `name`: a full reference (`resource:default/orders-db`), or a
    /// bare name, preferring a component, then a resource, then a system, in the default
    /// namespace first.
    pub fn find(&self, name: &str) -> Option<&Entity> {
        let name = name.trim();
        if name.contains(':') {
            let (key, _) = EntityRef::parse(name, "component").ok()?;
            return self.entities.get(&key);
        }
        let (wanted, _) = EntityRef::parse(name, "component").ok()?;
        let explicit_namespace = name.contains('/');
        let rank = |entity: &Entity| {
            let kind = EntityKind::ALL.iter().position(|kind| *kind == entity.kind).unwrap_or(usize::MAX);
            (entity.namespace.to_ascii_lowercase() != DEFAULT_NAMESPACE, kind)
        };
        self.entities
            .iter()
            .filter(|(key, _)| key.name == wanted.name && (!explicit_namespace || key.namespace == wanted.namespace))
            .map(|(_, entity)| entity)
            .min_by_key(|entity| rank(entity))
    }

    /// Entity names close to `name`, best first, for "did you mean".
    pub fn close_matches(&self, name: &str, limit: usize) -> Vec<String> {
        let wanted = name.trim().to_lowercase();
        let mut scored: Vec<(usize, &str)> = self
            .entities
            .values()
            .filter(|entity| entity.kind != EntityKind::System)
            .filter_map(|entity| {
                let candidate = entity.name.to_lowercase();
                let distance = strsim::levenshtein(&wanted, &candidate);
                let related = candidate.contains(&wanted) || wanted.contains(&candidate);
                let close = distance <= (wanted.chars().count() / 3).max(2);
                (related || close).then_some((if related { 0 } else { distance }, entity.name.as_str()))
            })
            .collect();
        scored.sort();
        scored.dedup_by(|a, b| a.1 == b.1);
        scored.into_iter().take(limit).map(|(_, name)| name.to_string()).collect()
    }

    /// What `key` depends on (resolved, possibly unknown), in the order written.
    pub fn dependencies(&self, key: &EntityRef) -> &[EntityRef] {
        self.upstream.get(key).map(Vec::as_slice).unwrap_or_default()
    }

    /// Who depends on `key`.
    pub fn dependents(&self, key: &EntityRef) -> &[EntityRef] {
        self.downstream.get(key).map(Vec::as_slice).unwrap_or_default()
    }

    /// Breadth first from `start`, up to `depth` steps: each entity once, at its shortest
    /// distance. Unknown references are reached but not walked through (nothing is known of
    /// what they depend on).
    pub fn walk(&self, start: &EntityRef, direction: Direction, depth: usize) -> Vec<Reached> {
        let mut seen = BTreeSet::from([start.clone()]);
        let mut queue = VecDeque::from([(start.clone(), 0)]);
        let mut reached = Vec::new();
        while let Some((current, distance)) = queue.pop_front() {
            if distance == depth {
                continue;
            }
            let next = match direction {
                Direction::Upstream => self.dependencies(&current),
                Direction::Downstream => self.dependents(&current),
            };
            for entity in next {
                if seen.insert(entity.clone()) {
                    reached.push(Reached { entity: entity.clone(), distance: distance + 1, from: current.clone() });
                    queue.push_back((entity.clone(), distance + 1));
                }
            }
        }
        reached
    }

    /// The name to show for `key`: the entity's own name when it is known, else the reference
    /// without its defaults.
    pub fn display_name(&self, key: &EntityRef) -> String {
        match self.entities.get(key) {
            Some(entity) if entity.namespace.eq_ignore_ascii_case(DEFAULT_NAMESPACE) => entity.name.clone(),
            Some(entity) => format!("{}/{}", entity.namespace, entity.name),
            None => key.short("component"),
        }
    }

    /// An entity's runbooks, each resolved to a runbook here or left as its URL.
    pub fn runbook_links(&self, entity: &Entity) -> Vec<RunbookLink> {
        entity
            .runbooks
            .iter()
            .map(|written| match self.runbooks.get(written) {
                Some(runbook) if !is_url(written) => RunbookLink {
                    id: Some(runbook.id.clone()),
                    uri: super::runbook_uri(&runbook.id),
                    title: Some(runbook.title.clone()),
                },
                _ => RunbookLink { id: None, uri: written.clone(), title: None },
            })
            .collect()
    }
}

fn is_url(text: &str) -> bool {
    text.contains("://")
}
