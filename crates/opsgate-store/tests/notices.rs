//! Notices reach every listener on the store: within the process on SQLite, and across
//! processes (here: two pools on one database) on PostgreSQL, through LISTEN/NOTIFY.

use std::time::Duration;

use anyhow::{Context, Result};
use opsgate_store::{Notice, Notices, Store};
use support::stores;

mod support;

async fn next(receiver: &mut tokio::sync::broadcast::Receiver<Notice>) -> Result<Notice> {
    Ok(tokio::time::timeout(Duration::from_secs(10), receiver.recv()).await.context("no notice within 10 s")??)
}

#[tokio::test]
async fn a_notice_reaches_the_listeners_of_the_store() -> Result<()> {
    for (store, _dir) in stores("notices_local").await? {
        let notices = Notices::new(store.clone());
        let mut receiver = notices.subscribe();
        // Give a PostgreSQL listener time to LISTEN before the first NOTIFY.
        tokio::time::sleep(Duration::from_millis(300)).await;
        notices.publish(Notice::Events { services: vec!["b".to_string(), "a".to_string(), "b".to_string()] }).await;
        assert_eq!(
            next(&mut receiver).await?,
            Notice::Events { services: vec!["a".to_string(), "b".to_string()] },
            "{}: sorted, each service once",
            store.backend()
        );
        // A notice about no service is not sent.
        notices.publish(Notice::Events { services: Vec::new() }).await;
        notices.publish(Notice::Approval { id: "apr_1".to_string() }).await;
        assert_eq!(next(&mut receiver).await?, Notice::Approval { id: "apr_1".to_string() });

        // Forty services of 500 characters (the longest an event's service may be) are more than
        // one PostgreSQL payload holds: they arrive in several notices, none lost.
        let long: Vec<String> = (0..40).map(|n| format!("{n:02}{}", "s".repeat(498))).collect();
        notices.publish(Notice::Events { services: long.clone() }).await;
        let mut heard = Vec::new();
        let mut n_notices = 0;
        while heard.len() < long.len() {
            match next(&mut receiver).await? {
                Notice::Events { services } => heard.extend(services),
                other => anyhow::bail!("{}: unexpected {other:?}", store.backend()),
            }
            n_notices += 1;
        }
        assert_eq!(heard, long, "{}", store.backend());
        assert!(n_notices > 1, "{}: split into several notices", store.backend());
    }
    Ok(())
}

#[tokio::test]
async fn on_postgres_a_notice_crosses_to_another_process_on_the_same_database() -> Result<()> {
    let url = opsgate_testkit::Postgres::shared().await?.create_database("notices_shared").await?;
    let (first, second) = (Store::open(&url).await?, Store::open(&url).await?);
    let listening = Notices::new(first.clone());
    assert!(listening.crosses_processes());
    let mut receiver = listening.subscribe();
    tokio::time::sleep(Duration::from_millis(300)).await;
    Notices::new(second.clone()).publish(Notice::Approval { id: "apr_2".to_string() }).await;
    assert_eq!(next(&mut receiver).await?, Notice::Approval { id: "apr_2".to_string() });
    first.close().await;
    second.close().await;
    Ok(())
}
