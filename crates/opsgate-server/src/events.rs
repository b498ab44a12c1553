//! Where events enter the store: webhooks and the pipeline hand them to `EventSink::ingest`,
//! which maps service and environment through the configured rules and stores each delivery
//! once.

use opsgate_core::{Event, EventKind};
use opsgate_store::{AuditEntry, EventDelivery, Notice, Notices, Store, StoreError, StoredEvent};
use regex::Regex;
use tokio::sync::{mpsc, oneshot};

/// Sets an event's service and/or environment when one of its attributes matches.
///
/// `attribute` names a key of the event's attributes, or `service` / `environment` (what the
/// source's normaliser chose). A match sets `service` and `environment` from the pattern's
/// named groups of those names, else from the rule's fixed values.
#[derive(Debug, Clone)]
pub struct MappingRule {
    /// Only events from this source; `None` for every source.
    pub source: Option<String>,
    pub attribute: String,
    pub pattern: Regex,
    pub service: Option<String>,
    pub environment: Option<String>,
}

impl MappingRule {
    /// A rule from configuration; the error says what is wrong with it.
    pub fn new(
        source: Option<String>,
        attribute: String,
        pattern: &str,
        service: Option<String>,
        environment: Option<String>,
    ) -> Result<MappingRule, String> {
        if attribute.trim().is_empty() {
            return Err("attribute must name an event attribute (or service / environment)".to_string());
        }
        let pattern =
            Regex::new(pattern).map_err(|error| format!("pattern is not a valid regular expression: {error}"))?;
        let names: Vec<&str> = pattern.capture_names().flatten().collect();
        let sets_service = service.is_some() || names.contains(&"service");
        let sets_environment = environment.is_some() || names.contains(&"environment");
        if !sets_service && !sets_environment {
            return Err(
                "sets nothing: give service and/or environment, or name a group (?P<service>…) or (?P<environment>…) \
                 in the pattern"
                    .to_string(),
            );
        }
        Ok(MappingRule { source, attribute, pattern, service, environment })
    }

    /// What this rule sets on `event`: (service, environment), either `None` when it does not
    /// say or does not match.
    fn apply(&self, event: &Event) -> (Option<String>, Option<String>) {
        if self.source.as_ref().is_some_and(|source| *source != event.source) {
            return (None, None);
        }
        let value = match self.attribute.as_str() {
            "service" => event.service.as_deref(),
            "environment" => event.environment.as_deref(),
            name => event.attributes.get(name).map(String::as_str),
        };
        let Some(captures) = value.and_then(|value| self.pattern.captures(value)) else {
            return (None, None);
        };
        let group =
            |name: &str| captures.name(name).map(|found| found.as_str().to_string()).filter(|text| !text.is_empty());
        (group("service").or_else(|| self.service.clone()), group("environment").or_else(|| self.environment.clone()))
    }
}

/// Applies `rules` in order: for service and for environment separately, the first rule that
/// sets it wins; the normaliser's choice stands when none does.
pub fn map_event(rules: &[MappingRule], event: &mut Event) {
    let (mut service, mut environment) = (None, None);
    for rule in rules {
        let (rule_service, rule_environment) = rule.apply(event);
        service = service.or(rule_service);
        environment = environment.or(rule_environment);
        if service.is_some() && environment.is_some() {
            break;
        }
    }
    if service.is_some() {
        event.service = service;
    }
    if environment.is_some() {
        event.environment = environment;
    }
}

/// What an ingest stored: the new events, and how many were deliveries seen before.
#[derive(Debug, Clone)]
pub struct Ingested {
    pub stored: Vec<StoredEvent>,
    pub n_duplicates: usize,
}

#[derive(Debug, Clone)]
pub struct EventSink {
    store: Store,
    rules: std::sync::Arc<Vec<MappingRule>>,
    /// Told which services new events are about, for subscribers of `opsgate://services/{name}`.
    notices: Notices,
    /// The writer task's queue, started by the first ingest (see `write_batches`).
    writer: std::sync::Arc<std::sync::OnceLock<mpsc::Sender<Pending>>>,
}

/// One delivery's events waiting for the writer, and where its outcome goes.
struct Pending {
    delivery: EventDelivery,
    reply: oneshot::Sender<Result<Vec<StoredEvent>, String>>,
}

/// Deliveries that may wait for the writer; more wait for room.
const WRITER_QUEUE: usize = 1_024;
/// The most events one transaction takes.
const MAX_BATCH_EVENTS: usize = 2_000;

/// Stores deliveries in batches: whatever queued while the last transaction committed goes in
/// the next one, so concurrent deliveries share one commit and one flush to disk instead of
/// queueing for the store's write lock one by one. A failed transaction fails every delivery in
/// it (their senders retry); none is half stored.
async fn write_batches(store: Store, notices: Notices, mut queue: mpsc::Receiver<Pending>) {
    while let Some(first) = queue.recv().await {
        let mut n_events = first.delivery.events.len();
        let mut batch = vec![first];
        while n_events < MAX_BATCH_EVENTS {
            let Ok(pending) = queue.try_recv() else { break };
            n_events += pending.delivery.events.len();
            batch.push(pending);
        }
        let (deliveries, replies): (Vec<EventDelivery>, Vec<_>) =
            batch.into_iter().map(|pending| (pending.delivery, pending.reply)).unzip();
        match store.insert_event_groups(deliveries).await {
            Ok(stored) => {
                // One notice for the batch, after its deliveries are answered.
                let services: Vec<String> =
                    stored.iter().flatten().filter_map(|stored| stored.event.service.clone()).collect();
                for (reply, stored) in replies.into_iter().zip(stored) {
                    let _ = reply.send(Ok(stored));
                }
                // Not awaited here: on PostgreSQL a notice is a round trip the next batch need
                // not wait for.
                let notices = notices.clone();
                tokio::spawn(async move { notices.publish(Notice::Events { services }).await });
            }
            Err(error) => {
                let message = error.to_string();
                for reply in replies {
                    let _ = reply.send(Err(message.clone()));
                }
            }
        }
    }
}

impl EventSink {
    pub fn new(store: Store, rules: Vec<MappingRule>) -> EventSink {
        EventSink {
            notices: Notices::new(store.clone()),
            store,
            rules: std::sync::Arc::new(rules),
            writer: std::sync::Arc::default(),
        }
    }

    /// Announces through `notices` (shared with whoever forwards them to subscribers).
    pub fn with_notices(mut self, notices: Notices) -> EventSink {
        self.notices = notices;
        self
    }

    /// Bounds, maps and stores `events`, each delivery once; the services of the new ones are
    /// announced through the notices.
    pub async fn ingest(&self, mut events: Vec<Event>) -> Result<Ingested, StoreError> {
        for event in &mut events {
            event.bound();
            map_event(&self.rules, event);
        }
        let n_events = events.len();
        let stored = self.write(events).await?;
        Ok(Ingested { n_duplicates: n_events - stored.len(), stored })
    }

    /// Hands `events` to the writer task and waits until they are committed.
    async fn write(&self, events: Vec<Event>) -> Result<Vec<StoredEvent>, StoreError> {
        let writer = self.writer.get_or_init(|| {
            let (sender, queue) = mpsc::channel(WRITER_QUEUE);
            tokio::spawn(write_batches(self.store.clone(), self.notices.clone(), queue));
            sender
        });
        let (reply, outcome) = oneshot::channel();
        let pending = Pending { delivery: EventDelivery { events, received_at: opsgate_store::now_rfc3339() }, reply };
        let gone = || StoreError::Internal("the event writer stopped".to_string());
        writer.send(pending).await.map_err(|_| gone())?;
        outcome.await.map_err(|_| gone())?.map_err(StoreError::Internal)
    }
}

/// How long notices are gathered before their services are announced: a burst of deliveries
/// about one service becomes one update, not one per event.
const COALESCE: std::time::Duration = std::time::Duration::from_millis(200);

/// Announces each service that new events touched (in this process or, on PostgreSQL, in any
/// process on the store) as an update of its resource on `changes`, which the MCP handler
/// passes on to the clients subscribed to it. Runs until the notices stop.
pub async fn announce_service_updates(notices: Notices, changes: crate::ChangeFeed) {
    use tokio::sync::broadcast::error::RecvError;
    let mut receiver = notices.subscribe();
    loop {
        let mut services = std::collections::BTreeSet::new();
        match receiver.recv().await {
            Ok(Notice::Events { services: touched }) => services.extend(touched),
            Ok(_) => continue,
            Err(RecvError::Lagged(n_missed)) => {
                tracing::warn!(n_missed, "fell behind the event notices; some service updates were not announced");
                continue;
            }
            Err(RecvError::Closed) => return,
        }
        let deadline = tokio::time::Instant::now() + COALESCE;
        while let Ok(Ok(notice)) = tokio::time::timeout_at(deadline, receiver.recv()).await {
            if let Notice::Events { services: touched } = notice {
                services.extend(touched);
            }
        }
        for service in services {
            changes.publish(crate::Change::ResourceUpdated { uri: crate::catalog::service_uri(&service) });
        }
    }
}

/// Events opsgate makes itself carry this source.
pub const OPSGATE_SOURCE: &str = "opsgate";

/// The event of an executed write, from its audit record (whose arguments are already redacted)
/// and the first line of its result. Its delivery id comes from the audit record's sequence
/// number once the record is written (`audit_delivery_id`).
pub fn action_event(audit: &AuditEntry, result_text: &str) -> Event {
    let target = audit.target.as_deref().map(|target| format!(" on {target}")).unwrap_or_default();
    let mut summary = format!("{} ran {}{target}", audit.principal, audit.tool);
    let result = opsgate_core::first_line(result_text, 160);
    if !result.is_empty() {
        summary.push_str(": ");
        summary.push_str(&result);
    }
    let arguments: serde_json::Value = serde_json::from_str(&audit.arguments).unwrap_or_default();
    let mut event = Event::new(audit.time.clone(), OPSGATE_SOURCE, EventKind::Action, summary, String::new());
    event.service = service_in_arguments(&arguments);
    event.environment = audit.environment.clone();
    event.attribute("tool", Some(audit.tool.as_str()));
    event.attribute("principal", Some(audit.principal.as_str()));
    event.attribute("target", audit.target.as_deref());
    event.attribute("approval_id", audit.approval_id.as_deref());
    event.attribute("approvers", audit.approvers.as_deref());
    event.attribute("arguments", Some(opsgate_core::first_line(&audit.arguments, 500)));
    event
}

/// The delivery id of an event opsgate made from the audit record `seq`: one event per record.
pub fn audit_delivery_id(seq: i64) -> String {
    format!("audit:{seq}")
}

/// The service a call is about, read from its arguments: a `service` argument, else a
/// `service="name"` (or `=`, `=~` with a literal name) label matcher in any string argument,
/// as in `silence_alert`'s matchers.
pub fn service_in_arguments(arguments: &serde_json::Value) -> Option<String> {
    if let Some(service) = arguments.get("service").and_then(serde_json::Value::as_str) {
        return Some(service.to_string());
    }
    let mut strings = Vec::new();
    collect_strings(arguments, &mut strings);
    strings.into_iter().find_map(|text| {
        let rest = text.trim().strip_prefix("service")?.trim_start();
        let rest = rest.strip_prefix("=~").or_else(|| rest.strip_prefix('='))?.trim();
        let name = rest.trim_matches('"');
        let literal = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        literal.then(|| name.to_string())
    })
}

fn collect_strings<'a>(value: &'a serde_json::Value, into: &mut Vec<&'a str>) {
    match value {
        serde_json::Value::String(text) => into.push(text),
        serde_json::Value::Array(items) => items.iter().for_each(|item| collect_strings(item, into)),
        serde_json::Value::Object(map) => map.values().for_each(|item| collect_strings(item, into)),
        _ => {}
    }
}

/// A human's decision on an approval request, as an event about the request's service; its
/// delivery id, like an action's, comes from its audit record.
pub fn approval_event(
    time: &str,
    principal: &str,
    request: &opsgate_store::NewApproval,
    approve: bool,
    status: &str,
) -> Event {
    let verb = if approve { "approved" } else { "rejected" };
    let summary = format!("{principal} {verb} {} request {} (now {status})", request.tool, request.id);
    let arguments: serde_json::Value = serde_json::from_str(&request.arguments).unwrap_or_default();
    let mut event = Event::new(time, OPSGATE_SOURCE, EventKind::Approval, summary, String::new());
    event.service = service_in_arguments(&arguments);
    event.environment = request.environment.clone();
    event.attribute("approval_id", Some(request.id.clone()));
    event.attribute("tool", Some(request.tool.clone()));
    event.attribute("requester", Some(request.requester.clone()));
    event.attribute("decided_by", Some(principal));
    event.attribute("decision", Some(verb));
    event.attribute("status", Some(status));
    event.attribute("target", request.target.clone());
    event
}

#[cfg(test)]
mod tests {
    use opsgate_core::EventKind;

    use super::*;

    fn rule(
        source: Option<&str>,
        attribute: &str,
        pattern: &str,
        service: Option<&str>,
        environment: Option<&str>,
    ) -> MappingRule {
        MappingRule {
            source: source.map(str::to_string),
            attribute: attribute.to_string(),
            pattern: Regex::new(pattern).expect("test pattern"),
            service: service.map(str::to_string),
            environment: environment.map(str::to_string),
        }
    }

    fn push(repository: &str) -> Event {
        let mut event = Event::new("2026-11-21T12:00:00.000Z", "github", EventKind::Push, "pushed", "d");
        event.service = Some("payments".to_string());
        event.attribute("repository", Some(repository));
        event.attribute("branch", Some("main"));
        event
    }

    #[test]
    fn named_groups_and_fixed_values_set_service_and_environment_first_rule_wins() {
        let rules = vec![
            rule(Some("gitlab"), "repository", ".*", Some("never"), None),
            rule(Some("github"), "repository", r"^acme/(?P<service>[a-z-]+)-svc$", None, None),
            rule(None, "branch", "^main$", None, Some("production")),
            rule(None, "branch", ".*", Some("ignored"), Some("ignored")),
        ];
        let mut event = push("acme/payments-api-svc");
        map_event(&rules, &mut event);
        assert_eq!(event.service.as_deref(), Some("payments-api"), "the github rule, not the gitlab one");
        assert_eq!(event.environment.as_deref(), Some("production"));

        let mut unmatched = push("other/thing");
        map_event(&rules[..3], &mut unmatched);
        assert_eq!(unmatched.service.as_deref(), Some("payments"), "the normaliser's choice stands");
    }

    #[test]
    fn the_service_comes_from_a_service_argument_or_a_literal_matcher() {
        let found = |arguments: serde_json::Value| service_in_arguments(&arguments);
        assert_eq!(found(serde_json::json!({"service": "checkout"})).as_deref(), Some("checkout"));
        let matchers = serde_json::json!({"matchers": ["alertname=HighErrorRate", "service=\"payments-api\""]});
        assert_eq!(found(matchers).as_deref(), Some("payments-api"));
        assert_eq!(
            found(serde_json::json!({"matchers": ["service=~\"pay.*\""]})),
            None,
            "a pattern names no one service"
        );
        assert_eq!(found(serde_json::json!({"matchers": ["servicename=x"]})), None);
    }

    #[test]
    fn a_rule_can_rename_the_normalisers_service() {
        let rules = vec![rule(None, "service", "^payments$", Some("payments-api"), None)];
        let mut event = push("acme/payments");
        map_event(&rules, &mut event);
        assert_eq!(event.service.as_deref(), Some("payments-api"));
        assert_eq!(event.environment, None);
    }

    /// Concurrent deliveries share transactions, and each still learns exactly what of its own
    /// was stored: a delivery sent twice at once is stored once, and one of the two hears so.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_deliveries_are_stored_in_batches_each_once() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|error| StoreError::Internal(error.to_string()))?;
        let store = Store::open_sqlite(dir.path()).await?;
        let sink = EventSink::new(store.clone(), Vec::new());
        let mut notices = sink.notices.subscribe();
        let deliveries = (0..200).map(|n| {
            let sink = sink.clone();
            // Deliveries 0..100 and 100..200 carry the same ids: each is sent twice at once.
            let delivery = format!("d-{}", n % 100);
            tokio::spawn(async move {
                let mut event =
                    Event::new("2026-11-21T12:00:00.000Z", "github", EventKind::Deploy, "deployed", delivery);
                event.service = Some(format!("service-{}", n % 7));
                sink.ingest(vec![event]).await
            })
        });
        let mut n_stored = 0;
        let mut n_duplicates = 0;
        for delivery in deliveries.collect::<Vec<_>>() {
            let ingested = delivery.await.map_err(|error| StoreError::Internal(error.to_string()))??;
            n_stored += ingested.stored.len();
            n_duplicates += ingested.n_duplicates;
        }
        assert_eq!((n_stored, n_duplicates), (100, 100));
        let all = store.events(&opsgate_store::EventQuery { limit: 1_000, ..Default::default() }).await?;
        assert_eq!(all.len(), 100);
        // Announced once a batch is answered, a notice a batch: every service, and nothing else.
        let expected: std::collections::BTreeSet<String> = (0..7).map(|n| format!("service-{n}")).collect();
        let mut announced = std::collections::BTreeSet::new();
        while announced != expected {
            match tokio::time::timeout(std::time::Duration::from_secs(5), notices.recv()).await {
                Ok(Ok(Notice::Events { services })) => announced.extend(services),
                other => panic!("announced {announced:?} of {expected:?}, then {other:?}"),
            }
        }
        Ok(())
    }
}
