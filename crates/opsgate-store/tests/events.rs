//! Events in the store, on SQLite and on PostgreSQL: a delivery is stored once, and reads filter
//! by window, service, environment and kind, newest first.

use anyhow::Result;
use opsgate_core::{Event, EventKind};
use opsgate_store::EventQuery;
use support::stores;

mod support;

fn event(time: &str, kind: EventKind, service: &str, delivery: &str) -> Event {
    let mut event = Event::new(time, "github", kind, format!("{kind} of {service}"), delivery);
    event.service = Some(service.to_string());
    event.environment = Some("production".to_string());
    event.attribute("sha", Some("4f2a9c1"));
    event.link(Some("https://github.com/acme/payments-api/actions/runs/1"));
    event
}

#[tokio::test]
async fn a_delivery_is_stored_once() -> Result<()> {
    for (store, _dir) in stores("events_once").await? {
        let first = event("2026-11-21T12:00:00.000Z", EventKind::Deploy, "payments-api", "d-1");
        let stored = store.insert_events(std::slice::from_ref(&first), "2026-11-21T12:00:01.000Z").await?;
        assert_eq!(stored.len(), 1);
        let mut again = first.clone();
        again.summary = "a redelivery".to_string();
        let second = event("2026-11-21T12:05:00.000Z", EventKind::Deploy, "payments-api", "d-2");
        let stored = store.insert_events(&[again, second.clone()], "2026-11-21T12:05:01.000Z").await?;
        assert_eq!(stored.iter().map(|stored| &stored.event).collect::<Vec<_>>(), vec![&second], "{}", store.backend());
        let all = store.events(&EventQuery { limit: 10, ..EventQuery::default() }).await?;
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].event, first, "{}: stored as sent, the first delivery kept", store.backend());
        // The same delivery id from another source is another event.
        let mut other = first.clone();
        other.source = "gitlab".to_string();
        assert_eq!(store.insert_events(&[other], "2026-11-21T12:06:00.000Z").await?.len(), 1);
    }
    Ok(())
}

#[tokio::test]
async fn reads_filter_by_window_service_environment_and_kind() -> Result<()> {
    for (store, _dir) in stores("events_filter").await? {
        let mut staging = event("2026-11-21T12:20:00.000Z", EventKind::Deploy, "payments-api", "s-1");
        staging.environment = Some("staging".to_string());
        let events = vec![
            event("2026-11-21T11:59:59.999Z", EventKind::Deploy, "payments-api", "early"),
            event("2026-11-21T12:00:00.000Z", EventKind::Pipeline, "payments-api", "p-1"),
            event("2026-11-21T12:10:00.000Z", EventKind::Alert, "payments-api", "a-1"),
            event("2026-11-21T12:15:00.000Z", EventKind::Deploy, "checkout", "c-1"),
            staging,
            event("2026-11-21T13:00:00.000Z", EventKind::Deploy, "payments-api", "late"),
        ];
        store.insert_events(&events, "2026-11-21T13:00:00.000Z").await?;
        let window = |services: &[&str], kinds: Vec<EventKind>, environment: Option<&str>| EventQuery {
            services: services.iter().map(|service| service.to_string()).collect(),
            environment: environment.map(str::to_string),
            since: Some("2026-11-21T12:00:00.000Z".to_string()),
            until: Some("2026-11-21T13:00:00.000Z".to_string()),
            kinds,
            limit: 100,
        };
        let ids = |found: Vec<opsgate_store::StoredEvent>| -> Vec<String> {
            found.into_iter().map(|stored| stored.event.delivery_id).collect()
        };
        let backend = store.backend();
        assert_eq!(
            ids(store.events(&window(&["payments-api"], vec![], None)).await?),
            ["s-1", "a-1", "p-1"],
            "{backend}"
        );
        assert_eq!(
            ids(store.events(&window(&["payments-api"], vec![], Some("production"))).await?),
            ["a-1", "p-1"],
            "{backend}"
        );
        assert_eq!(
            ids(store.events(&window(&["payments-api", "checkout"], vec![EventKind::Deploy], None)).await?),
            ["s-1", "c-1"],
            "{backend}"
        );
        assert_eq!(
            ids(store.events(&window(&[], vec![EventKind::Alert, EventKind::Pipeline], None)).await?),
            ["a-1", "p-1"]
        );
        let newest = store.events(&EventQuery { limit: 2, ..EventQuery::default() }).await?;
        assert_eq!(ids(newest), ["late", "s-1"], "{backend}: the limit keeps the newest");
    }
    Ok(())
}

/// Retention deletes the oldest events before a time, a batch at a time, with their search
/// documents; newer events stay, searchable.
#[tokio::test]
async fn retention_deletes_old_events_and_their_search_documents() -> Result<()> {
    for (store, _dir) in stores("events_retention").await? {
        let backend = store.backend();
        let events: Vec<Event> = (0..5)
            .map(|day| {
                event(
                    &format!("2026-11-0{}T12:00:00.000Z", day + 1),
                    EventKind::Deploy,
                    "payments-api",
                    &format!("r-{day}"),
                )
            })
            .collect();
        store.insert_events(&events, "2026-11-21T00:00:00.000Z").await?;
        let search = opsgate_store::SearchQuery { text: "deploy payments".to_string(), kinds: Vec::new(), limit: 10 };
        assert_eq!(store.search(&search).await?.hits.len(), 5, "{backend}");

        // Before Nov 4: three events, deleted two and then one.
        assert_eq!(store.delete_events_before("2026-11-04T00:00:00.000Z", 2).await?, 2, "{backend}");
        assert_eq!(store.delete_events_before("2026-11-04T00:00:00.000Z", 2).await?, 1, "{backend}");
        assert_eq!(store.delete_events_before("2026-11-04T00:00:00.000Z", 2).await?, 0, "{backend}");
        let left = store.events(&EventQuery { limit: 10, ..EventQuery::default() }).await?;
        let deliveries: Vec<&str> = left.iter().map(|stored| stored.event.delivery_id.as_str()).collect();
        assert_eq!(deliveries, vec!["r-4", "r-3"], "{backend}: the newest stay");
        let hits = store.search(&search).await?.hits;
        assert_eq!(hits.len(), 2, "{backend}: their documents went with them");
        assert!(hits.iter().all(|hit| left.iter().any(|stored| stored.id == hit.reference)), "{backend}");
    }
    Ok(())
}
