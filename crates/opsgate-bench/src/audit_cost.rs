//! The cost of the durable audit commit, which every call pays before its response leaves: one
//! record at a time through `AuditLog::record` on a fresh SQLite store (appended, committed, the
//! log flushed), against the disk's own floor in the same directory: [`FLOOR_BYTES`] overwritten
//! in place and flushed (`fdatasync`), and appended and flushed.
//! At one call at a time group commit has nothing to group, so this is what one call waits for.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use opsgate_store::{AuditEntry, AuditLog, AuditWriterConfig, Store};

use crate::policy_cost::Percentiles;

/// Records appended untimed first (the store's first pages, the threads' first wake-ups).
pub const N_WARMUP: usize = 500;
/// Records timed, one at a time.
pub const N_RECORDS: usize = 5_000;
/// What the floors write per flush: four 4 KiB pages, about what one record adds to the SQLite
/// log (the row's page, the sequence index's, the chain head's; 3.2 pages measured).
pub const FLOOR_BYTES: usize = 16 << 10;
/// The file the overwrite floor cycles through, written and flushed before it is timed.
const OVERWRITE_FILE_BYTES: usize = 8 << 20;

#[derive(Debug, Clone, Copy)]
pub struct AuditCost {
    /// `AuditLog::record`, one at a time.
    pub record: Percentiles,
    /// [`FLOOR_BYTES`] overwritten in place, then `fdatasync`.
    pub overwrite: Percentiles,
    /// [`FLOOR_BYTES`] appended to a growing file, then `fdatasync`.
    pub append: Percentiles,
}

impl AuditCost {
    /// How many times the disk's floor (an overwrite and flush) one record costs.
    pub fn ratio(&self) -> f64 {
        self.record.p50.as_secs_f64() / self.overwrite.p50.as_secs_f64().max(1e-9)
    }
}

pub fn measure() -> Result<AuditCost> {
    let dir = tempfile::tempdir().context("creating the audit benchmark's directory")?;
    // The runtime opsgate runs its pipeline on: one worker per CPU.
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    let record = runtime.block_on(time_records(&dir.path().join("store")))?;
    let overwrite = time_flushes(&dir.path().join("overwrite"), true).context("the overwrite floor")?;
    let append = time_flushes(&dir.path().join("append"), false).context("the append floor")?;
    Ok(AuditCost { record, overwrite, append })
}

/// Times `AuditLog::record` one at a time, then verifies the chain.
async fn time_records(data_dir: &Path) -> Result<Percentiles> {
    let store = Store::open_sqlite(data_dir).await.context("opening the SQLite store")?;
    let (log, writer) = AuditLog::spawn(store.clone(), AuditWriterConfig::default());
    let arguments = r#"{"text":"bench connection 0"}"#.to_string();
    let entry = AuditEntry {
        time: opsgate_store::now_rfc3339(),
        principal: "key:bench".into(),
        principal_kind: "api_key".into(),
        client: Some("opsgate-bench".into()),
        tool: "mcp__upstream__echo".into(),
        server: Some("upstream".into()),
        target: None,
        environment: None,
        arguments_hash: opsgate_store::audit::sha256_hex(&arguments),
        arguments,
        decision: "allow".into(),
        reason: None,
        approval_id: None,
        approvers: None,
        outcome: "ok".into(),
        error: None,
        result_bytes: 120,
        duration_us: 250,
    };
    let mut samples = Vec::with_capacity(N_RECORDS);
    for i in 0..N_WARMUP + N_RECORDS {
        let started = Instant::now();
        log.record(entry.clone()).await.context("appending an audit record")?;
        if i >= N_WARMUP {
            samples.push(started.elapsed());
        }
    }
    drop(log);
    writer.await.context("the audit writer")?;
    let report = store.verify_audit().await.context("verifying the chain")?;
    let n_expected = (N_WARMUP + N_RECORDS) as u64;
    if report.first_bad.is_some() || report.n_records != n_expected {
        bail!("the audit chain holds {} records of {n_expected}, broken at {:?}", report.n_records, report.first_bad);
    }
    store.close().await;
    Ok(Percentiles::of(samples))
}

/// Times [`N_RECORDS`] writes of [`FLOOR_BYTES`], each followed by `fdatasync`: in place over a
/// file written and flushed beforehand (`overwrite`), or at the end of a growing one.
fn time_flushes(path: &Path, overwrite: bool) -> Result<Percentiles> {
    let mut file = File::options().create_new(true).read(true).write(true).open(path)?;
    let bytes = vec![0x5a_u8; FLOOR_BYTES];
    if overwrite {
        for _ in 0..OVERWRITE_FILE_BYTES / FLOOR_BYTES {
            file.write_all(&bytes)?;
        }
        file.sync_all()?;
    }
    let mut samples = Vec::with_capacity(N_RECORDS);
    let mut offset = 0;
    for i in 0..N_WARMUP + N_RECORDS {
        let started = Instant::now();
        file.write_all_at(&bytes, offset)?;
        file.sync_data()?;
        if i >= N_WARMUP {
            samples.push(started.elapsed());
        }
        offset += FLOOR_BYTES as u64;
        if overwrite && offset as usize >= OVERWRITE_FILE_BYTES {
            offset = 0;
        }
    }
    Ok(Percentiles::of(samples))
}
