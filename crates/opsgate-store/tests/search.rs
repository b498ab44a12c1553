//! Full-text search on SQLite (FTS5) and PostgreSQL (tsvector): events are indexed as they are
//! stored, runbooks are replaced as a set, results are ranked, filtered by kind, and a query
//! with no document holding every word falls back to any word.

use anyhow::Result;
use opsgate_core::{Event, EventKind};
use opsgate_store::{DocumentSource, MemoryObservations, NewMemoryEntity, SearchDocument, SearchQuery, Store};
use support::stores;

mod support;

fn event(time: &str, kind: EventKind, service: &str, summary: &str, delivery: &str) -> Event {
    let mut event = Event::new(time, "github", kind, summary, delivery);
    event.service = Some(service.to_string());
    event.environment = Some("production".to_string());
    event
}

fn query(text: &str, kinds: &[&str]) -> SearchQuery {
    SearchQuery { text: text.to_string(), kinds: kinds.iter().map(|kind| kind.to_string()).collect(), limit: 10 }
}

async fn seed(store: &Store) -> Result<()> {
    let mut rollback = event(
        "2026-11-21T12:00:00.000Z",
        EventKind::Deploy,
        "payments-api",
        "Rolled back payments-api to v41 after checkout errors",
        "d-1",
    );
    rollback.attribute("revision", Some("v41"));
    let events = vec![
        rollback,
        event("2026-11-21T11:00:00.000Z", EventKind::Deploy, "payments-api", "Deployed payments-api v42", "d-2"),
        event("2026-11-21T11:30:00.000Z", EventKind::Alert, "checkout", "FIRING PaymentsErrorRate on checkout", "a-1"),
        event("2026-11-21T10:00:00.000Z", EventKind::Pipeline, "search", "Nightly build of search passed", "p-1"),
    ];
    store.insert_events(&events, "2026-11-21T12:00:01.000Z").await?;
    Ok(())
}

#[tokio::test]
async fn events_are_found_by_their_words_ranked_and_filtered_by_kind() -> Result<()> {
    for (store, _dir) in stores("search_events").await? {
        let backend = store.backend();
        seed(&store).await?;
        // Stemmed: "deploys" finds "Deployed" in a title and the kind `deploy` in a body; the
        // title weighs more.
        let result = store.search(&query("payments deploys", &[])).await?;
        assert!(result.all_words, "{backend}");
        let titles: Vec<&str> = result.hits.iter().map(|hit| hit.title.as_str()).collect();
        assert_eq!(
            titles,
            vec!["Deployed payments-api v42", "Rolled back payments-api to v41 after checkout errors"],
            "{backend}: {result:?}"
        );
        let hit = &result.hits[0];
        assert_eq!(
            (hit.source, hit.kind.as_str(), hit.service.as_deref()),
            (DocumentSource::Event, "deploy", Some("payments-api"))
        );
        assert!(hit.score > 0.0, "{backend}: {hit:?}");

        // Two matches, both by title, and nothing else.
        let result = store.search(&query("checkout", &[])).await?;
        let mut titles: Vec<&str> = result.hits.iter().map(|hit| hit.title.as_str()).collect();
        titles.sort_unstable();
        assert_eq!(
            titles,
            vec!["FIRING PaymentsErrorRate on checkout", "Rolled back payments-api to v41 after checkout errors"],
            "{backend}"
        );

        // Kinds filter.
        let result = store.search(&query("checkout", &["alert"])).await?;
        let titles: Vec<&str> = result.hits.iter().map(|hit| hit.title.as_str()).collect();
        assert_eq!(titles, vec!["FIRING PaymentsErrorRate on checkout"], "{backend}");
        assert!(store.search(&query("checkout", &["pipeline"])).await?.hits.is_empty(), "{backend}");

        // No document holds both words: any word, said so.
        let result = store.search(&query("nightly rolled", &[])).await?;
        assert!(!result.all_words, "{backend}");
        assert_eq!(result.hits.len(), 2, "{backend}: {result:?}");

        // The snippet marks the matched word.
        let result = store.search(&query("v41", &[])).await?;
        assert_eq!(result.hits.len(), 1, "{backend}");
        assert!(result.hits[0].snippet.contains("[v41]"), "{backend}: {:?}", result.hits[0].snippet);

        // Query syntax of either index is just words here.
        for hostile in ["\"payments\" OR *", "payments:* & !", "NEAR(a b)", "{title} : x", "'; DROP TABLE events; --"] {
            store.search(&query(hostile, &[])).await?;
        }
        // Stop words alone (PostgreSQL indexes none; no document here holds them either): nothing
        // to match, and no error.
        assert!(store.search(&query("the was", &[])).await?.hits.is_empty(), "{backend}");
        assert!(store.search(&query(" -- ", &[])).await?.hits.is_empty());
    }
    Ok(())
}

/// Events are ranked among the newest matches; runbooks and memory whatever their age, and first
/// among equals. A runbook written before thousands of events that hold its word as it does (once,
/// in the title) is still found, and first: newest first alone would bury it under the events.
#[tokio::test]
async fn a_runbook_is_ranked_however_many_newer_events_match() -> Result<()> {
    for (store, _dir) in stores("search_lasting").await? {
        let backend = store.backend();
        store
            .replace_documents(
                DocumentSource::Runbook,
                &[SearchDocument {
                    source: DocumentSource::Runbook,
                    reference: "payments/rollback".to_string(),
                    kind: "runbook".to_string(),
                    title: "Payments rollback".to_string(),
                    body: "Roll back with argocd.".to_string(),
                    time: "2026-01-01T00:00:00.000Z".to_string(),
                    service: Some("payments-api".to_string()),
                }],
            )
            .await?;
        let n_events = opsgate_store::search::RANK_WINDOW as usize + 100;
        let events: Vec<Event> = (0..n_events)
            .map(|index| {
                event(
                    "2026-11-21T12:00:00.000Z",
                    EventKind::Deploy,
                    "payments-api",
                    &format!("Payments rollback to v{index}"),
                    &format!("d-{index}"),
                )
            })
            .collect();
        store.insert_events(&events, "2026-11-21T12:00:01.000Z").await?;

        let result = store.search(&query("rollback", &[])).await?;
        assert_eq!(result.hits.len(), 10, "{backend}");
        assert_eq!(result.hits[0].reference, "payments/rollback", "{backend}: {:?}", result.hits[0]);
        assert_eq!(result.hits[0].score, result.hits[1].score, "{backend}: equals, the runbook first");
        assert!(result.hits[1..].iter().all(|hit| hit.source == DocumentSource::Event), "{backend}");
        let result = store.search(&query("rollback payments", &["runbook"])).await?;
        assert_eq!(result.hits.len(), 1, "{backend}");
        let result = store.search(&query("rollback", &["deploy"])).await?;
        assert_eq!(result.hits.len(), 10, "{backend}");
        assert!(result.hits.iter().all(|hit| hit.kind == "deploy"), "{backend}: {:?}", result.hits);
    }
    Ok(())
}

#[tokio::test]
async fn runbooks_are_replaced_as_a_set() -> Result<()> {
    for (store, _dir) in stores("search_runbooks").await? {
        let backend = store.backend();
        seed(&store).await?;
        let runbook = |id: &str, title: &str, body: &str| SearchDocument {
            source: DocumentSource::Runbook,
            reference: id.to_string(),
            kind: "runbook".to_string(),
            title: title.to_string(),
            body: body.to_string(),
            time: "2026-11-01T00:00:00.000Z".to_string(),
            service: Some("payments-api".to_string()),
        };
        store
            .replace_documents(
                DocumentSource::Runbook,
                &[
                    runbook(
                        "payments/high-error-rate",
                        "Payments high error rate",
                        "Check the card processor status page.",
                    ),
                    runbook("payments/rollback", "Rolling back payments", "Use argocd app rollback."),
                ],
            )
            .await?;
        let result = store.search(&query("processor", &[])).await?;
        assert_eq!(
            result.hits.iter().map(|hit| hit.reference.as_str()).collect::<Vec<_>>(),
            vec!["payments/high-error-rate"],
            "{backend}"
        );
        // Runbooks and events rank together; "runbook" filters to runbooks.
        let result = store.search(&query("rollback", &["runbook"])).await?;
        assert_eq!(
            result.hits.iter().map(|hit| hit.reference.as_str()).collect::<Vec<_>>(),
            vec!["payments/rollback"],
            "{backend}"
        );

        store
            .replace_documents(
                DocumentSource::Runbook,
                &[runbook("payments/rollback", "Rolling back payments", "Use flux.")],
            )
            .await?;
        assert!(
            store.search(&query("processor", &[])).await?.hits.is_empty(),
            "{backend}: the removed runbook is gone"
        );
        assert!(store.search(&query("argocd", &[])).await?.hits.is_empty(), "{backend}: the old text is gone");
        assert_eq!(store.search(&query("flux", &[])).await?.hits.len(), 1, "{backend}: the new text is found");
        // Events are untouched.
        assert_eq!(store.search(&query("nightly", &[])).await?.hits.len(), 1, "{backend}");
    }
    Ok(())
}

#[tokio::test]
async fn memory_entities_are_indexed_as_they_change() -> Result<()> {
    for (store, _dir) in stores("search_memory").await? {
        let backend = store.backend();
        seed(&store).await?;
        let found = |text: &'static str| {
            let store = store.clone();
            async move {
                let result = store.search(&query(text, &["memory"])).await?;
                anyhow::Ok(result.hits.into_iter().map(|hit| hit.reference).collect::<Vec<_>>())
            }
        };
        store
            .create_memory_entities(
                &[NewMemoryEntity {
                    name: "payments-db".to_string(),
                    entity_type: "database".to_string(),
                    observations: vec!["Failover to the replica takes about 40 seconds".to_string()],
                }],
                "alice",
            )
            .await?;
        assert_eq!(found("failover replica").await?, vec!["payments-db"], "{backend}");
        assert_eq!(found("database").await?, vec!["payments-db"], "{backend}: the type is searchable");

        let addition = MemoryObservations {
            entity: "payments-db".to_string(),
            contents: vec!["Vacuum runs nightly at 02:00 UTC".to_string()],
        };
        store.add_memory_observations(std::slice::from_ref(&addition), "bob").await?;
        assert_eq!(found("vacuum").await?, vec!["payments-db"], "{backend}: a new observation");
        store.delete_memory_observations(&[addition]).await?;
        assert!(found("vacuum").await?.is_empty(), "{backend}: a deleted observation");
        assert_eq!(found("failover").await?, vec!["payments-db"], "{backend}: the rest stays");

        store.delete_memory_entities(&["payments-db".to_string()]).await?;
        assert!(found("failover").await?.is_empty(), "{backend}: a deleted entity");
        assert_eq!(store.search(&query("nightly", &[])).await?.hits.len(), 1, "{backend}: events untouched");
    }
    Ok(())
}

/// The window is the newest matches in the order they were written, wherever their ids fall:
/// PostgreSQL asks blocks of ids in turn (fine ones of 4,096 documents near the newest, coarse
/// ones of 131,072 beyond), so here the ids are pushed past those boundaries between writes.
/// Older events that would rank higher stay out of the window; events only an old coarse block
/// holds are still found, by kind too, and by any word.
#[tokio::test]
async fn the_window_is_the_newest_matches_across_blocks_of_ids() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let postgres_url = opsgate_testkit::Postgres::shared().await?.create_database("search_blocks").await?;
    let postgres_pool = sqlx::PgPool::connect(&postgres_url).await?;
    let stores = [Store::open_sqlite(dir.path()).await?, Store::open_postgres(&postgres_url).await?];
    for store in stores {
        let backend = store.backend();
        let next_id_after = |id: i64| {
            let (store, pool) = (store.clone(), postgres_pool.clone());
            async move {
                if let Store::Postgres(_) = store {
                    sqlx::query("SELECT setval(pg_get_serial_sequence('search_documents', 'id'), $1)")
                        .bind(id)
                        .execute(&pool)
                        .await?;
                }
                anyhow::Ok(())
            }
        };
        let deploys = |first: usize, n: usize, summary: &'static str| -> Vec<Event> {
            (first..first + n)
                .map(|index| {
                    let summary = summary.replace("{index}", &index.to_string());
                    event(
                        "2026-11-21T12:00:00.000Z",
                        EventKind::Deploy,
                        "payments-api",
                        &summary,
                        &format!("d-{index}"),
                    )
                })
                .collect()
        };
        let received = "2026-11-21T12:00:01.000Z";
        // Coarse block 0.
        store.insert_events(&deploys(0, 100, "Rollback rollback rollback payments v{index}"), received).await?;
        store.insert_events(&deploys(100, 3, "Zeppelin launch {index}"), received).await?;
        // Fine block 34 in coarse block 1, then fine block 73 in coarse block 2.
        next_id_after(140_000).await?;
        store.insert_events(&deploys(1_000, 500, "Payments rollback to v{index}"), received).await?;
        next_id_after(300_000).await?;
        store.insert_events(&deploys(2_000, 500, "Payments rollback to v{index}"), received).await?;

        let result = store.search(&query("rollback", &[])).await?;
        let titles: Vec<&str> = result.hits.iter().map(|hit| hit.title.as_str()).collect();
        assert_eq!(titles.len(), 10, "{backend}");
        assert!(titles.iter().all(|title| title.starts_with("Payments rollback to v")), "{backend}: {titles:?}");
        assert_eq!(titles[0], "Payments rollback to v2499", "{backend}: equals, the newest first");

        let zeppelins = |kinds: &'static [&'static str]| {
            let store = store.clone();
            async move { anyhow::Ok(store.search(&query("zeppelin", kinds)).await?.hits.len()) }
        };
        assert_eq!(zeppelins(&[]).await?, 3, "{backend}");
        assert_eq!(zeppelins(&["deploy"]).await?, 3, "{backend}");
        assert_eq!(zeppelins(&["alert", "runbook"]).await?, 0, "{backend}");
        let result = store.search(&query("zeppelin airship", &["deploy"])).await?;
        assert!(!result.all_words, "{backend}");
        assert_eq!(result.hits.len(), 3, "{backend}");
    }
    Ok(())
}

/// A PostgreSQL store written before documents had ids and the blocks index (its table and
/// indexes as they were then) is brought up to date when it opens, and its documents are found.
#[tokio::test]
async fn an_earlier_postgres_search_table_is_brought_up_to_date() -> Result<()> {
    let url = opsgate_testkit::Postgres::shared().await?.create_database("search_upgrade").await?;
    let pool = sqlx::PgPool::connect(&url).await?;
    let earlier = [
        "CREATE TABLE search_documents (source TEXT NOT NULL, ref TEXT NOT NULL, kind TEXT NOT NULL,
            title TEXT NOT NULL, body TEXT NOT NULL, time TEXT NOT NULL, service TEXT,
            words tsvector GENERATED ALWAYS AS
                (setweight(to_tsvector('english', title), 'A') || setweight(to_tsvector('english', body), 'B')) STORED,
            PRIMARY KEY (source, ref))",
        "CREATE INDEX search_documents_words ON search_documents USING GIN (words)",
        "CREATE INDEX search_documents_time ON search_documents (time)",
        "INSERT INTO search_documents (source, ref, kind, title, body, time, service) VALUES
            ('event', 'e-1', 'deploy', 'Deployed payments-api v7', 'payments-api', '2026-11-01T00:00:00.000Z', 'payments-api'),
            ('event', 'e-2', 'alert', 'FIRING HighErrorRate on payments-api', 'payments-api', '2026-11-02T00:00:00.000Z', 'payments-api')",
    ];
    for statement in earlier {
        sqlx::query(statement).execute(&pool).await?;
    }
    let store = Store::open_postgres(&url).await?;
    let result = store.search(&query("payments", &[])).await?;
    let references: Vec<&str> = result.hits.iter().map(|hit| hit.reference.as_str()).collect();
    assert_eq!(references, vec!["e-2", "e-1"], "numbered in the table's order, the later first");
    assert_eq!(store.search(&query("payments", &["deploy"])).await?.hits.len(), 1);
    let indexes: Vec<String> =
        sqlx::query_scalar("SELECT indexname FROM pg_indexes WHERE tablename = 'search_documents' ORDER BY indexname")
            .fetch_all(&pool)
            .await?;
    assert_eq!(
        indexes,
        vec![
            "search_documents_blocks",
            "search_documents_id",
            "search_documents_lasting_words",
            "search_documents_pkey"
        ]
    );
    // New documents continue the numbering.
    store
        .insert_events(
            &[event("2026-11-03T00:00:00.000Z", EventKind::Deploy, "payments-api", "Deployed payments-api v8", "d-9")],
            "2026-11-03T00:00:01.000Z",
        )
        .await?;
    let result = store.search(&query("payments deployed", &[])).await?;
    assert_eq!(result.hits[0].title, "Deployed payments-api v8");
    Ok(())
}
