//! The context tools over stored events: `timeline` (what happened, filtered) and `what_changed`
//! (the changes to one service and its direct dependencies in a window: deploys, pipeline runs,
//! pushes, merges, releases, config changes and the writes opsgate executed), newest first.

use chrono::{DateTime, Utc};
use opsgate_core::{CallContext, Effect, EventKind, Row, Tool, ToolError, ToolOutput, ToolSpec, parse_arguments};
use opsgate_store::{EventQuery, Store, StoredEvent};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::catalog::CatalogHandle;

/// Events one call reads at most; the output budget then decides how many are shown.
const MAX_EVENTS: i64 = 1_000;

pub(crate) fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Both tools answer a window and the events in it (each as stored, with attributes and links).
fn events_output_schema() -> Option<Map<String, Value>> {
    Some(object(json!({
        "type": "object",
        "properties": {
            "service": {"type": "string"},
            "dependencies": {"type": "array", "items": {"type": "string"}},
            "since": {"type": "string"},
            "until": {"type": "string"},
            "items": {"type": "array", "items": {"type": "object", "properties": {
                "time": {"type": "string"}, "kind": {"enum": kind_names()}, "source": {"type": "string"},
                "service": {"type": ["string", "null"]}, "environment": {"type": ["string", "null"]},
                "summary": {"type": "string"}, "attributes": {"type": "object"},
                "links": {"type": "array", "items": {"type": "string"}}
            }}},
            "truncated": {"type": "boolean"}
        },
        "required": ["since", "until", "items"]
    })))
}

/// A read-only, idempotent tool over the event store that answers `events_output_schema`.
fn read_spec(name: &str, title: &str, description: &str, input_schema: Map<String, Value>) -> ToolSpec {
    ToolSpec {
        name: name.to_string(),
        title: title.to_string(),
        description: description.to_string(),
        input_schema,
        output_schema: events_output_schema(),
        effect: Effect::Read,
        target_kind: None,
        idempotent: true,
        open_world: false,
    }
}

pub(crate) fn kind_names() -> Vec<&'static str> {
    EventKind::ALL.iter().map(|kind| kind.as_str()).collect()
}

/// `1h`, `30m`, `2d`, `90s`, `1w` back from `now`, or an RFC 3339 time; in the store's format.
pub fn parse_time(text: &str, now: DateTime<Utc>, name: &str) -> Result<String, ToolError> {
    let text = text.trim();
    if let Some(absolute) = crate::hooks::normalize_time(text) {
        return Ok(absolute);
    }
    let duration = parse_duration(text).ok_or_else(|| {
        ToolError::InvalidArguments(format!(
            "{name} must be a duration back from now (30m, 1h, 2d, 1w) or an RFC 3339 time, not {text:?}"
        ))
    })?;
    Ok(opsgate_store::rfc3339(now - duration))
}

fn parse_duration(text: &str) -> Option<chrono::Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: i64 = number.parse().ok()?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return None,
    };
    // More than ten years back is a typo, not a question.
    (number > 0 && number <= 3_650 * 86_400 / seconds).then(|| chrono::Duration::seconds(number * seconds))
}

fn parse_kinds(kinds: &[String]) -> Result<Vec<EventKind>, ToolError> {
    kinds
        .iter()
        .map(|kind| {
            EventKind::parse(kind).ok_or_else(|| {
                ToolError::InvalidArguments(format!("unknown kind {kind:?}; kinds are {}", kind_names().join(", ")))
            })
        })
        .collect()
}

pub(crate) fn unavailable(error: opsgate_store::StoreError) -> ToolError {
    ToolError::Unavailable(format!("the event store is unavailable: {error}"))
}

/// The detail column: what changed, when the source said (the commits of a push, a pull
/// request's diff size, a deploy's state and revision).
fn detail(event: &opsgate_core::Event) -> String {
    let attributes = &event.attributes;
    let pick = |names: &[&str]| -> Vec<String> {
        names.iter().filter_map(|name| attributes.get(*name).map(|value| format!("{name} {value}"))).collect()
    };
    let mut parts = match event.kind {
        EventKind::Push => attributes
            .get("commits")
            .map(|commits| commits.lines().map(str::to_string).collect::<Vec<_>>())
            .unwrap_or_default(),
        EventKind::Merge => pick(&["diff", "sha"]),
        EventKind::Action => pick(&["arguments"]),
        _ => pick(&["state", "status", "sha", "revision"]),
    };
    parts.truncate(5);
    parts.join("; ")
}

fn event_row(stored: &StoredEvent, with_service: bool) -> Row {
    let event = &stored.event;
    let mut cells = vec![event.time.clone(), event.kind.as_str().to_string()];
    if with_service {
        cells.push(event.service.clone().unwrap_or_default());
        cells.push(event.environment.clone().unwrap_or_default());
    }
    cells.push(event.source.clone());
    cells.push(event.summary.clone());
    if !with_service {
        cells.push(detail(event));
    }
    Row { cells, item: serde_json::to_value(stored).unwrap_or(Value::Null) }
}

pub struct TimelineTool {
    spec: ToolSpec,
    store: Store,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TimelineArguments {
    service: Option<String>,
    environment: Option<String>,
    #[serde(default = "default_since")]
    since: String,
    until: Option<String>,
    #[serde(default)]
    kinds: Vec<String>,
}

fn default_since() -> String {
    "24h".to_string()
}

impl TimelineTool {
    pub fn new(store: Store) -> TimelineTool {
        let spec = read_spec(
            "timeline",
            "Timeline",
            "Events newest first: deploys, pipeline runs, pushes, merges, releases, config changes, \
                          alerts firing/resolving, executed actions, approvals. Filter by service, environment, \
                          kinds and window (since/until: 30m, 2h, 7d or RFC 3339; default since 24h).",
            object(json!({
                "type": "object",
                "properties": {
                    "service": {"type": "string"},
                    "environment": {"type": "string"},
                    "since": {"type": "string", "description": "default 24h"},
                    "until": {"type": "string", "description": "default now"},
                    "kinds": {"type": "array", "items": {"enum": kind_names()}}
                },
                "additionalProperties": false
            })),
        );
        TimelineTool { spec, store }
    }
}

#[async_trait::async_trait]
impl Tool for TimelineTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, _context: CallContext, arguments: Map<String, Value>) -> Result<ToolOutput, ToolError> {
        let arguments: TimelineArguments = parse_arguments(arguments)?;
        let now = Utc::now();
        let since = parse_time(&arguments.since, now, "since")?;
        let until = arguments.until.as_deref().map(|until| parse_time(until, now, "until")).transpose()?;
        let query = EventQuery {
            services: arguments.service.clone().into_iter().collect(),
            environment: arguments.environment.clone(),
            since: Some(since.clone()),
            until: until.clone(),
            kinds: parse_kinds(&arguments.kinds)?,
            limit: MAX_EVENTS,
        };
        let events = self.store.events(&query).await.map_err(unavailable)?;
        let scope = arguments.service.as_deref().map(|service| format!(" for {service}")).unwrap_or_default();
        let until_text = until.clone().unwrap_or_else(|| "now".to_string());
        let mut output = ToolOutput::text(format!("{} events{scope} from {since} to {until_text}", events.len()))
            .field("since", since)
            .field("until", until_text);
        if events.len() as i64 == MAX_EVENTS {
            output.footer.push(format!("only the newest {MAX_EVENTS} events were read; narrow the window"));
        }
        output.columns = ["time", "kind", "service", "env", "source", "summary"].map(str::to_string).to_vec();
        output.rows = events.iter().map(|event| event_row(event, true)).collect();
        Ok(output)
    }
}

pub struct WhatChangedTool {
    spec: ToolSpec,
    store: Store,
    /// Where a service's dependencies come from; `None` without `[catalog]`.
    catalog: Option<CatalogHandle>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WhatChangedArguments {
    service: String,
    #[serde(default = "default_window")]
    window: String,
    environment: Option<String>,
}

fn default_window() -> String {
    "1h".to_string()
}

impl WhatChangedTool {
    pub fn new(store: Store, catalog: Option<CatalogHandle>) -> WhatChangedTool {
        let spec = read_spec(
            "what_changed",
            "What changed",
            "Changes to a service and its direct dependencies (service catalog) in a window, newest first: \
                          deploys, pipeline runs, pushes (commit list), merges (diff size), releases, config changes \
                          and writes opsgate executed. window: 30m, 2h, 1d back from now, or START/END in RFC 3339 \
                          (default 1h).",
            object(json!({
                "type": "object",
                "properties": {
                    "service": {"type": "string"},
                    "window": {"type": "string", "description": "default 1h"},
                    "environment": {"type": "string"}
                },
                "required": ["service"],
                "additionalProperties": false
            })),
        );
        WhatChangedTool { spec, store, catalog }
    }

    /// The names `service`'s events may be stored under, then those of its direct dependencies
    /// (the catalog's `dependsOn`), each with the metrics name it goes by (`opsgate.dev/service`)
    /// when that differs; and a note when the dependencies could not be known.
    fn scope(&self, service: &str) -> (Vec<String>, Vec<String>, Option<String>) {
        let mut own = vec![service.to_string()];
        let Some(catalog) = &self.catalog else {
            return (
                own,
                Vec::new(),
                Some("no service catalog is configured: changes to its dependencies are not included".to_string()),
            );
        };
        let catalog = catalog.current();
        let Some(entity) = catalog.find(service) else {
            return (
                own,
                Vec::new(),
                Some(format!("{service} is not in the service catalog: changes to its dependencies are not included")),
            );
        };
        let aliases = |entity: &crate::catalog::Entity| {
            let mut names = vec![entity.name.clone()];
            names.extend(entity.metrics.as_ref().map(|metrics| metrics.service.clone()));
            names
        };
        own.extend(aliases(entity));
        let mut dependencies = Vec::new();
        for key in catalog.dependencies(&entity.entity_ref()) {
            match catalog.get(key) {
                Some(dependency) => dependencies.extend(aliases(dependency)),
                None => dependencies.push(key.name.clone()),
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        own.retain(|name| seen.insert(name.clone()));
        dependencies.retain(|name| seen.insert(name.clone()));
        (own, dependencies, None)
    }
}

#[async_trait::async_trait]
impl Tool for WhatChangedTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, _context: CallContext, arguments: Map<String, Value>) -> Result<ToolOutput, ToolError> {
        let arguments: WhatChangedArguments = parse_arguments(arguments)?;
        let now = Utc::now();
        let (since, until) = match arguments.window.split_once('/') {
            Some((start, end)) => (parse_time(start, now, "window start")?, Some(parse_time(end, now, "window end")?)),
            None => (parse_time(&arguments.window, now, "window")?, None),
        };
        let (own, dependencies, note) = self.scope(&arguments.service);
        let query = EventQuery {
            services: own.iter().chain(&dependencies).cloned().collect(),
            environment: arguments.environment.clone(),
            since: Some(since.clone()),
            until: until.clone(),
            kinds: EventKind::ALL.into_iter().filter(|kind| kind.is_change()).collect(),
            limit: MAX_EVENTS,
        };
        let events = self.store.events(&query).await.map_err(unavailable)?;
        let until_text = until.unwrap_or_else(|| "now".to_string());
        let scope = if dependencies.is_empty() {
            arguments.service.clone()
        } else {
            format!("{} and its dependencies {}", arguments.service, dependencies.join(", "))
        };
        let headline = if events.is_empty() {
            format!("no changes recorded for {scope} from {since} to {until_text}")
        } else {
            format!("{} changes to {scope} from {since} to {until_text}", events.len())
        };
        let mut output = ToolOutput::text(headline)
            .field("service", arguments.service.clone())
            .field("dependencies", dependencies.clone())
            .field("since", since)
            .field("until", until_text);
        // With more than one name queried, each row says which service it was on.
        let several = own.len() + dependencies.len() > 1;
        output.columns = if several {
            ["time", "kind", "service", "source", "summary", "detail"].map(str::to_string).to_vec()
        } else {
            ["time", "kind", "source", "summary", "detail"].map(str::to_string).to_vec()
        };
        output.rows = events
            .iter()
            .map(|event| {
                let mut row = event_row(event, false);
                if several {
                    row.cells.insert(2, event.event.service.clone().unwrap_or_default());
                }
                row
            })
            .collect();
        output.footer.extend(note);
        Ok(output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_durations_back_or_rfc3339() {
        let now =
            DateTime::parse_from_rfc3339("2026-11-21T12:00:00Z").map(|time| time.with_timezone(&Utc)).expect("time");
        assert_eq!(parse_time("90m", now, "since").ok().as_deref(), Some("2026-11-21T10:30:00.000Z"));
        assert_eq!(parse_time("1w", now, "since").ok().as_deref(), Some("2026-11-14T12:00:00.000Z"));
        assert_eq!(
            parse_time("2026-11-21T11:00:00+01:00", now, "since").ok().as_deref(),
            Some("2026-11-21T10:00:00.000Z")
        );
        for bad in ["", "h", "0h", "5y", "-1h", "yesterday", "99999999d"] {
            match parse_time(bad, now, "since") {
                Err(ToolError::InvalidArguments(message)) => assert!(message.starts_with("since must be"), "{message}"),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }

    /// `what_changed`'s detail column is the commit list of a push, a merge's diff size, or a
    /// deploy's state and revision.
    #[test]
    fn the_detail_says_what_changed() {
        let mut push = opsgate_core::Event::new("t", "github", EventKind::Push, "pushed", "d");
        push.attribute("commits", Some("4f2a9c1 Fix the retry loop\n9b1e22d Bump the client"));
        assert_eq!(detail(&push), "4f2a9c1 Fix the retry loop; 9b1e22d Bump the client");
        let mut merge = opsgate_core::Event::new("t", "github", EventKind::Merge, "merged", "d");
        merge.attribute("diff", Some("+120 -30 files 4"));
        merge.attribute("sha", Some("4f2a9c1"));
        assert_eq!(detail(&merge), "diff +120 -30 files 4; sha 4f2a9c1");
        let mut deploy = opsgate_core::Event::new("t", "argocd", EventKind::Deploy, "synced", "d");
        deploy.attribute("state", Some("success"));
        deploy.attribute("revision", Some("v1.8.0"));
        assert_eq!(detail(&deploy), "state success; revision v1.8.0");
    }

    /// With a catalog, `what_changed` covers the service's direct dependencies too (under their
    /// names and the metrics names they go by), says which in its summary, and each row says
    /// which service it was on; nothing of a service it does not depend on.
    #[tokio::test]
    async fn what_changed_includes_the_direct_dependencies_from_the_catalog() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = Store::open_sqlite(dir.path()).await?;
        let catalog_text = "\
kind: Component
metadata: {name: checkout}
spec: {dependsOn: ['component:payments', 'resource:orders-db']}
---
kind: Component
metadata:
  name: payments
  annotations: {opsgate.dev/prometheus-target: main, opsgate.dev/service: payments-api}
spec: {dependsOn: ['resource:payments-db']}
---
kind: Component
metadata: {name: auth}
";
        let (entities, problems) = crate::catalog::parse_file(catalog_text, "catalog.yaml");
        let catalog = CatalogHandle::new(crate::catalog::Catalog::build(entities, Vec::new(), problems));
        let ago = |minutes: i64| opsgate_store::rfc3339(Utc::now() - chrono::Duration::minutes(minutes));
        let mut events = Vec::new();
        for (minutes, service, delivery) in [
            (5, "checkout", "d-checkout"),
            (10, "payments-api", "d-payments-api"),
            (15, "payments", "d-payments"),
            (20, "orders-db", "d-orders-db"),
            (25, "payments-db", "d-two-steps-away"),
            (30, "auth", "d-unrelated"),
        ] {
            let mut event = opsgate_core::Event::new(
                ago(minutes),
                "github",
                EventKind::Deploy,
                format!("deployed {service}"),
                delivery,
            );
            event.service = Some(service.to_string());
            events.push(event);
        }
        store.insert_events(&events, &opsgate_store::now_rfc3339()).await?;
        let call = |tool: WhatChangedTool| async move {
            let context = CallContext::new(
                None,
                opsgate_core::OutputBudget::default(),
                std::sync::Arc::new(opsgate_core::NoClient),
            );
            let arguments = json!({"service": "checkout", "window": "1h"}).as_object().cloned().unwrap_or_default();
            tool.call(context, arguments).await
        };

        let output = call(WhatChangedTool::new(store.clone(), Some(catalog))).await?;
        let services: Vec<String> =
            output.rows.iter().map(|row| row.item["service"].as_str().unwrap_or_default().to_string()).collect();
        assert_eq!(services, ["checkout", "payments-api", "payments", "orders-db"], "newest first, nothing else");
        assert_eq!(output.columns[2], "service");
        assert_eq!(output.rows[1].cells[2], "payments-api");
        assert!(
            output.summary[0]
                .starts_with("4 changes to checkout and its dependencies payments, payments-api, orders-db from "),
            "{:?}",
            output.summary
        );
        assert_eq!(output.fields["dependencies"], json!(["payments", "payments-api", "orders-db"]));
        assert!(output.footer.is_empty(), "{:?}", output.footer);

        // Without a catalog: the service alone, and the footer says why.
        let output = call(WhatChangedTool::new(store.clone(), None)).await?;
        assert_eq!(output.rows.len(), 1);
        assert_eq!(output.columns, ["time", "kind", "source", "summary", "detail"]);
        assert_eq!(output.footer, ["no service catalog is configured: changes to its dependencies are not included"]);
        store.close().await;
        Ok(())
    }

    #[test]
    fn unknown_kinds_are_named() {
        let error = parse_kinds(&["deploy".to_string(), "deploys".to_string()]).err().map(|error| error.to_string());
        assert!(error.is_some_and(|message| message.contains("\"deploys\"") && message.contains("pipeline")));
    }
}
