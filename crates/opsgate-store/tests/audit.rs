//! Audit chain tests, each run on SQLite and on PostgreSQL: records chain, group commit keeps
//! order under concurrency, and `verify_audit` names the first edited or deleted record.

use anyhow::Result;
use opsgate_store::{AuditEntry, AuditLog, AuditWriterConfig, Store};
use support::stores;

mod support;

fn entry(index: usize) -> AuditEntry {
    AuditEntry {
        time: format!("2026-11-21T10:00:{:02}.000Z", index % 60),
        principal: "user:alice".to_string(),
        principal_kind: "local_user".to_string(),
        client: Some("test".to_string()),
        tool: "query_metrics".to_string(),
        server: None,
        target: Some("prod".to_string()),
        environment: Some("production".to_string()),
        arguments: format!("{{\"promql\":\"up{index}\"}}"),
        arguments_hash: format!("{index:064}"),
        decision: "allow".to_string(),
        reason: None,
        approval_id: None,
        approvers: None,
        outcome: "ok".to_string(),
        error: None,
        result_bytes: 10,
        duration_us: 100,
    }
}

async fn execute(store: &Store, sql: &'static str) -> Result<()> {
    match store {
        Store::Sqlite { pool, .. } => sqlx::query(sql).execute(pool).await.map(|_| ())?,
        Store::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(|_| ())?,
    }
    Ok(())
}

#[tokio::test]
async fn records_chain_and_verify_intact() -> Result<()> {
    for (store, _dir) in stores("chain_intact").await? {
        let records = store.append_audit(&[entry(1), entry(2)]).await?;
        let more = store.append_audit(&[entry(3)]).await?;
        assert_eq!(records.iter().chain(&more).map(|record| record.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
        let stored = store.audit_tail(3).await?;
        let hashes: Vec<&str> = records.iter().chain(&more).map(|receipt| receipt.hash.as_str()).collect();
        assert_eq!(stored.iter().map(|record| record.hash.as_str()).collect::<Vec<_>>(), hashes);
        assert_eq!((stored[1].prev_hash.as_str(), stored[2].prev_hash.as_str()), (hashes[0], hashes[1]));
        let report = store.verify_audit().await?;
        assert_eq!(report.first_bad, None, "{}", store.backend());
        assert_eq!(report.n_records, 3);
        assert_eq!(store.audit_tail(2).await?.iter().map(|record| record.seq).collect::<Vec<_>>(), vec![2, 3]);
    }
    Ok(())
}

#[tokio::test]
async fn verify_names_the_first_edited_record() -> Result<()> {
    for (store, _dir) in stores("chain_edited").await? {
        store.append_audit(&(1..=5).map(entry).collect::<Vec<_>>()).await?;
        execute(&store, "UPDATE audit_log SET decision = 'deny' WHERE seq = 3").await?;
        let report = store.verify_audit().await?;
        let (seq, why) = report.first_bad.expect("tampering detected");
        assert_eq!(seq, 3, "{}: {why}", store.backend());
        assert!(why.contains("hash does not match"), "{why}");
    }
    Ok(())
}

#[tokio::test]
async fn verify_names_a_deleted_record_in_the_middle_and_at_the_end() -> Result<()> {
    for (store, _dir) in stores("chain_deleted").await? {
        store.append_audit(&(1..=5).map(entry).collect::<Vec<_>>()).await?;
        execute(&store, "DELETE FROM audit_log WHERE seq = 5").await?;
        assert_eq!(store.verify_audit().await?.first_bad.map(|(seq, _)| seq), Some(5), "{}", store.backend());
        execute(&store, "DELETE FROM audit_log WHERE seq = 2").await?;
        let (seq, why) = store.verify_audit().await?.first_bad.expect("deletion detected");
        assert_eq!(seq, 2, "{}: {why}", store.backend());
        assert!(why.contains("missing"), "{why}");
    }
    Ok(())
}

#[tokio::test]
async fn group_commit_keeps_one_chain_under_concurrent_callers() -> Result<()> {
    for (store, _dir) in stores("chain_concurrent").await? {
        let (log, writer) = AuditLog::spawn(store.clone(), AuditWriterConfig::default());
        let mut calls = Vec::new();
        for index in 0..200 {
            let log = log.clone();
            calls.push(tokio::spawn(async move { log.record(entry(index)).await }));
        }
        let mut seqs = Vec::new();
        for call in calls {
            seqs.push(call.await??.seq);
        }
        drop(log);
        writer.await?;
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=200).collect::<Vec<i64>>(), "{}", store.backend());
        let report = store.verify_audit().await?;
        assert_eq!((report.n_records, report.first_bad), (200, None));
    }
    Ok(())
}

#[tokio::test]
async fn two_stores_on_one_postgres_database_share_one_chain() -> Result<()> {
    let url = opsgate_testkit::Postgres::shared().await?.create_database("chain_two_writers").await?;
    let first = Store::open_postgres(&url).await?;
    let second = Store::open_postgres(&url).await?;
    let mut calls = Vec::new();
    for index in 0..40 {
        let store = if index % 2 == 0 { first.clone() } else { second.clone() };
        calls.push(tokio::spawn(async move { store.append_audit(&[entry(index)]).await }));
    }
    for call in calls {
        call.await??;
    }
    let report = first.verify_audit().await?;
    assert_eq!((report.n_records, report.first_bad), (40, None));
    Ok(())
}

#[tokio::test]
async fn a_batch_larger_than_one_statement_chains_across_statements() -> Result<()> {
    for (store, _dir) in stores("chain_large_batch").await? {
        let records = store.append_audit(&(0..1_100).map(entry).collect::<Vec<_>>()).await?;
        assert_eq!(records.last().map(|record| record.seq), Some(1_100));
        let report = store.verify_audit().await?;
        assert_eq!((report.n_records, report.first_bad), (1_100, None), "{}", store.backend());
    }
    Ok(())
}

/// Lone records (committed on the caller's thread on SQLite) and queued ones from many callers at
/// once form one chain with no gap or repeat, on both backends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lone_and_queued_records_form_one_chain() -> Result<()> {
    for (store, _dir) in stores("chain_alone").await? {
        let (log, writer) = AuditLog::spawn(store.clone(), AuditWriterConfig::default());
        // One at a time first (on SQLite committed on this thread, nothing else being written),
        // then lone and queued ones at once.
        let mut seqs = Vec::new();
        for index in 0..20 {
            seqs.push(log.record_alone(entry(index)).await?.seq);
        }
        let mut calls = Vec::new();
        for index in 20..220 {
            let log = log.clone();
            calls.push(tokio::spawn(async move {
                if index % 2 == 0 { log.record_alone(entry(index)).await } else { log.record(entry(index)).await }
            }));
        }
        for call in calls {
            seqs.push(call.await??.seq);
        }
        drop(log);
        writer.await?;
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=220).collect::<Vec<i64>>(), "{}", store.backend());
        let report = store.verify_audit().await?;
        assert_eq!((report.n_records, report.first_bad), (220, None), "{}", store.backend());
    }
    Ok(())
}

/// A lone record never holds the runtime's thread while another process has the database's write
/// lock (SQLite would sleep it in its busy handler for up to the busy timeout): it goes to the
/// writer, which waits for the lock on its own thread, and lands once the lock is let go. On a
/// current-thread runtime a blocked thread would also stop the timer below.
#[tokio::test(flavor = "current_thread")]
async fn a_lone_record_never_waits_for_another_connections_write_lock_on_the_runtime() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open_sqlite(dir.path()).await?;
    let (log, writer) = AuditLog::spawn(store.clone(), AuditWriterConfig::default());
    assert_eq!(log.record_alone(entry(0)).await?.seq, 1);

    let other = rusqlite::Connection::open(dir.path().join(opsgate_store::SQLITE_FILE))?;
    other.execute_batch("BEGIN IMMEDIATE")?;
    let pending = tokio::spawn({
        let log = log.clone();
        async move { log.record_alone(entry(1)).await }
    });
    let started = std::time::Instant::now();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let slept = started.elapsed();
    assert!(slept < std::time::Duration::from_millis(1_500), "the runtime's thread was held for {slept:?}");
    assert!(!pending.is_finished(), "recorded while another connection held the write lock");
    other.execute_batch("COMMIT")?;
    let receipt = tokio::time::timeout(std::time::Duration::from_secs(15), pending).await???;
    assert_eq!(receipt.seq, 2);
    drop(log);
    writer.await?;
    let report = store.verify_audit().await?;
    assert_eq!((report.n_records, report.first_bad), (2, None));
    Ok(())
}
