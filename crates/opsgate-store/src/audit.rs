//! The audit chain: one record per call, each carrying the SHA-256 of its predecessor, so that an
//! edited, inserted or deleted row breaks the chain at a sequence number `verify` can name.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::{Store, StoreError, on_pool};

/// The hash before the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What the pipeline knows about a call when it is done. Arguments and error are already
/// redacted: nothing secret reaches this type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// RFC 3339 with milliseconds, UTC.
    pub time: String,
    pub principal: String,
    pub principal_kind: String,
    pub client: Option<String>,
    pub tool: String,
    pub server: Option<String>,
    pub target: Option<String>,
    pub environment: Option<String>,
    /// Canonical JSON of the redacted arguments.
    pub arguments: String,
    pub arguments_hash: String,
    pub decision: String,
    pub reason: Option<String>,
    pub approval_id: Option<String>,
    /// The principals who approved the call, comma-separated; only on records of approved calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvers: Option<String>,
    /// `ok`, `tool_error`, `denied`, `invalid_request`, `timeout`, `cancelled`.
    pub outcome: String,
    pub error: Option<String>,
    pub result_bytes: i64,
    pub duration_us: i64,
}

/// A stored record: the entry with its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: i64,
    #[serde(flatten)]
    pub entry: AuditEntry,
    pub prev_hash: String,
    pub hash: String,
}

/// Rows per INSERT statement on PostgreSQL. Larger statements bind slower per row in sqlx
/// (measured: 256 rows per statement cost three times as much per row as 32), and 32 rows stay far
/// under the protocol's limit of 65,535 bound parameters.
const MAX_RECORDS_PER_STATEMENT: usize = 32;

/// SHA-256 over the previous hash and every field, each length-prefixed so that no shift of
/// bytes between fields yields the same input.
pub fn record_hash(seq: i64, entry: &AuditEntry, prev_hash: &str) -> String {
    let mut hasher = Sha256::new();
    let mut field = |value: &[u8]| {
        hasher.update((value.len() as u64).to_be_bytes());
        hasher.update(value);
    };
    // Numbers hash as their decimal text.
    let mut digits = itoa::Buffer::new();
    field(prev_hash.as_bytes());
    field(digits.format(seq).as_bytes());
    field(entry.time.as_bytes());
    field(entry.principal.as_bytes());
    field(entry.principal_kind.as_bytes());
    field(optional(&entry.client));
    field(entry.tool.as_bytes());
    field(optional(&entry.server));
    field(optional(&entry.target));
    field(optional(&entry.environment));
    field(entry.arguments.as_bytes());
    field(entry.arguments_hash.as_bytes());
    field(entry.decision.as_bytes());
    field(optional(&entry.reason));
    field(optional(&entry.approval_id));
    field(entry.outcome.as_bytes());
    field(optional(&entry.error));
    field(digits.format(entry.result_bytes).as_bytes());
    field(digits.format(entry.duration_us).as_bytes());
    // Added with approvals: hashed only when present, so records written before keep verifying.
    if let Some(approvers) = &entry.approvers {
        field(approvers.as_bytes());
    }
    to_hex(&hasher.finalize())
}

/// An absent optional field hashes as one NUL byte: the format every stored chain was written
/// with, so it stays.
fn optional(value: &Option<String>) -> &[u8] {
    value.as_deref().map_or(b"\0", str::as_bytes)
}

pub fn sha256_hex(text: &str) -> String {
    to_hex(&Sha256::digest(text.as_bytes()))
}

/// Lower-case hex. Every call hashes twice, so this skips `hex::encode`'s per-character iterator.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// Where an appended record landed in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditReceipt {
    pub seq: i64,
    pub hash: String,
}

/// A batch linked after the record `head_seq` whose hash is `head_hash`, ready to insert.
pub(crate) struct Chained<'a> {
    head_hash: String,
    entries: &'a [AuditEntry],
    pub receipts: Vec<AuditReceipt>,
}

/// One record of a [`Chained`] batch, borrowed.
pub(crate) struct Link<'a> {
    pub seq: i64,
    pub entry: &'a AuditEntry,
    pub prev_hash: &'a str,
    pub hash: &'a str,
}

impl<'a> Chained<'a> {
    pub fn new(head_seq: i64, head_hash: String, entries: &'a [AuditEntry]) -> Chained<'a> {
        let mut receipts: Vec<AuditReceipt> = Vec::with_capacity(entries.len());
        for (seq, entry) in (head_seq + 1..).zip(entries) {
            let prev_hash = receipts.last().map_or(head_hash.as_str(), |receipt| receipt.hash.as_str());
            let hash = record_hash(seq, entry, prev_hash);
            receipts.push(AuditReceipt { seq, hash });
        }
        Chained { head_hash, entries, receipts }
    }

    pub fn links(&self) -> impl Iterator<Item = Link<'_>> {
        self.entries.iter().zip(&self.receipts).enumerate().map(|(index, (entry, receipt))| Link {
            seq: receipt.seq,
            entry,
            prev_hash: match index {
                0 => self.head_hash.as_str(),
                _ => self.receipts[index - 1].hash.as_str(),
            },
            hash: receipt.hash.as_str(),
        })
    }

    /// The new head's hash.
    pub fn last_hash(&self) -> &str {
        self.receipts.last().map_or(self.head_hash.as_str(), |receipt| receipt.hash.as_str())
    }
}

const INSERT_PREFIX: &str = "INSERT INTO audit_log (seq, time, principal, principal_kind, client, tool, server, \
     target, environment, arguments, arguments_hash, decision, reason, approval_id, outcome, error, result_bytes, \
     duration_us, prev_hash, hash, approvers) VALUES ";
const N_COLUMNS: usize = 21;

/// One multi-row INSERT for a batch: a single round trip to the database instead of one per
/// record, which is what lets group commit keep up with many concurrent callers.
fn insert_sql(n_records: usize) -> String {
    let mut sql = String::with_capacity(INSERT_PREFIX.len() + n_records * N_COLUMNS * 5);
    sql.push_str(INSERT_PREFIX);
    for record in 0..n_records {
        if record > 0 {
            sql.push(',');
        }
        sql.push('(');
        for column in 0..N_COLUMNS {
            if column > 0 {
                sql.push(',');
            }
            sql.push('$');
            sql.push_str(&(record * N_COLUMNS + column + 1).to_string());
        }
        sql.push(')');
    }
    sql
}

const SELECT: &str = "SELECT seq, time, principal, principal_kind, client, tool, server, target, environment, \
     arguments, arguments_hash, decision, reason, approval_id, outcome, error, result_bytes, duration_us, \
     prev_hash, hash, approvers FROM audit_log";

fn bind_link<'q, DB: sqlx::Database>(
    query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>,
    link: &Link<'q>,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>
where
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let entry = link.entry;
    query
        .bind(link.seq)
        .bind(entry.time.as_str())
        .bind(entry.principal.as_str())
        .bind(entry.principal_kind.as_str())
        .bind(entry.client.as_deref())
        .bind(entry.tool.as_str())
        .bind(entry.server.as_deref())
        .bind(entry.target.as_deref())
        .bind(entry.environment.as_deref())
        .bind(entry.arguments.as_str())
        .bind(entry.arguments_hash.as_str())
        .bind(entry.decision.as_str())
        .bind(entry.reason.as_deref())
        .bind(entry.approval_id.as_deref())
        .bind(entry.outcome.as_str())
        .bind(entry.error.as_deref())
        .bind(entry.result_bytes)
        .bind(entry.duration_us)
        .bind(link.prev_hash)
        .bind(link.hash)
        .bind(entry.approvers.as_deref())
}

fn decode_record<R: Row>(row: &R) -> Result<AuditRecord, sqlx::Error>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(AuditRecord {
        seq: row.try_get("seq")?,
        entry: AuditEntry {
            time: row.try_get("time")?,
            principal: row.try_get("principal")?,
            principal_kind: row.try_get("principal_kind")?,
            client: row.try_get("client")?,
            tool: row.try_get("tool")?,
            server: row.try_get("server")?,
            target: row.try_get("target")?,
            environment: row.try_get("environment")?,
            arguments: row.try_get("arguments")?,
            arguments_hash: row.try_get("arguments_hash")?,
            decision: row.try_get("decision")?,
            reason: row.try_get("reason")?,
            approval_id: row.try_get("approval_id")?,
            approvers: row.try_get("approvers")?,
            outcome: row.try_get("outcome")?,
            error: row.try_get("error")?,
            result_bytes: row.try_get("result_bytes")?,
            duration_us: row.try_get("duration_us")?,
        },
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

/// The outcome of `verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub n_records: u64,
    /// The first sequence number at which the chain is broken, with why.
    pub first_bad: Option<(i64, String)>,
}

impl Store {
    /// Appends `entries` as one transaction, chained after the current head, and returns the
    /// stored records. The first statement moves the head forward by the batch size and returns
    /// it: that takes the write lock (SQLite) or the head row's lock (PostgreSQL) before anything
    /// is read, so appends from several processes serialise instead of forking the chain. On
    /// PostgreSQL the rows go in as multi-row INSERTs; SQLite has its own appender (`sqlite.rs`).
    pub async fn append_audit(&self, entries: &[AuditEntry]) -> Result<Vec<AuditReceipt>, StoreError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let pool = match self {
            Store::Sqlite { appender, .. } => {
                let entries = entries.to_vec();
                return appender.durably("audit append", move |appender| appender.append_unsynced(&entries)).await;
            }
            Store::Postgres(pool) => pool,
        };
        let n_entries = entries.len() as i64;
        let mut transaction = pool.begin().await?;
        let head = sqlx::query("UPDATE audit_head SET seq = seq + $1 WHERE id = 1 RETURNING seq, hash")
            .bind(n_entries)
            .fetch_one(&mut *transaction)
            .await?;
        let last_seq: i64 = head.try_get("seq")?;
        let chained = Chained::new(last_seq - n_entries, head.try_get("hash")?, entries);
        let links: Vec<Link<'_>> = chained.links().collect();
        for chunk in links.chunks(MAX_RECORDS_PER_STATEMENT) {
            let insert = insert_sql(chunk.len());
            let mut query = sqlx::query(sqlx::AssertSqlSafe(insert.as_str()));
            for link in chunk {
                query = bind_link(query, link);
            }
            query.execute(&mut *transaction).await?;
        }
        sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1")
            .bind(chained.last_hash())
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(chained.receipts)
    }

    /// Records with `seq > after`, oldest first, at most `limit`.
    pub async fn audit_after(&self, after: i64, limit: i64) -> Result<Vec<AuditRecord>, StoreError> {
        let sql = format!("{SELECT} WHERE seq > $1 ORDER BY seq LIMIT $2");
        on_pool!(self, pool => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.as_str())).bind(after).bind(limit).fetch_all(pool).await?;
            rows.iter().map(decode_record).collect::<Result<Vec<_>, _>>().map_err(StoreError::from)
        })
    }

    /// The newest `n` records, oldest first.
    pub async fn audit_tail(&self, n: i64) -> Result<Vec<AuditRecord>, StoreError> {
        let sql = format!("{SELECT} ORDER BY seq DESC LIMIT $1");
        let mut records = on_pool!(self, pool => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.as_str())).bind(n).fetch_all(pool).await?;
            rows.iter().map(decode_record).collect::<Result<Vec<_>, _>>()?
        });
        records.reverse();
        Ok(records)
    }

    /// Walks the whole chain in pages and reports the first record that does not hold: a gap in
    /// the sequence, a `prev_hash` that is not its predecessor's hash, a hash that does not match
    /// the record's fields, or a head that points past the last record.
    pub async fn verify_audit(&self) -> Result<VerifyReport, StoreError> {
        const PAGE: i64 = 5_000;
        let mut expected_seq = 1;
        let mut prev_hash = GENESIS_HASH.to_string();
        let mut n_records = 0;
        loop {
            let page = self.audit_after(expected_seq - 1, PAGE).await?;
            let n_page = page.len();
            for record in page {
                let problem = if record.seq != expected_seq {
                    Some((expected_seq, format!("record {expected_seq} is missing (next is {})", record.seq)))
                } else if record.prev_hash != prev_hash {
                    Some((record.seq, "prev_hash does not match the previous record's hash".to_string()))
                } else if record_hash(record.seq, &record.entry, &record.prev_hash) != record.hash {
                    Some((record.seq, "hash does not match the record's contents".to_string()))
                } else {
                    None
                };
                if let Some(first_bad) = problem {
                    return Ok(VerifyReport { n_records, first_bad: Some(first_bad) });
                }
                n_records += 1;
                expected_seq += 1;
                prev_hash = record.hash;
            }
            if (n_page as i64) < PAGE {
                break;
            }
        }
        let (head_seq, head_hash): (i64, String) = on_pool!(self, pool => {
            let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_one(pool).await?;
            (head.try_get("seq")?, head.try_get("hash")?)
        });
        let last_seq = expected_seq - 1;
        let first_bad = if head_seq > last_seq {
            Some((expected_seq, format!("record {expected_seq} is missing (the chain head is at {head_seq})")))
        } else if head_seq < last_seq {
            Some((head_seq + 1, format!("record {} is past the chain head ({head_seq})", head_seq + 1)))
        } else if head_hash != prev_hash {
            Some((head_seq, "the chain head's hash does not match the last record".to_string()))
        } else {
            None
        };
        Ok(VerifyReport { n_records, first_bad })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(approvers: Option<&str>) -> AuditEntry {
        AuditEntry {
            time: "2026-11-21T10:00:00.000Z".to_string(),
            principal: "key:ci".to_string(),
            principal_kind: "api_key".to_string(),
            client: Some("claude-code".to_string()),
            tool: "silence_alert".to_string(),
            server: None,
            target: Some("prod".to_string()),
            environment: Some("production".to_string()),
            arguments: r#"{"duration":"1h"}"#.to_string(),
            arguments_hash: sha256_hex(r#"{"duration":"1h"}"#),
            decision: "approve".to_string(),
            reason: Some("protected environment".to_string()),
            approval_id: None,
            approvers: approvers.map(str::to_string),
            outcome: "ok".to_string(),
            error: None,
            result_bytes: 512,
            duration_us: -3,
        }
    }

    /// Stored chains must keep verifying: these digests were computed by the first version of
    /// `record_hash`, and any change to how a record is hashed breaks every existing audit log.
    #[test]
    fn record_hash_is_stable_across_versions() {
        assert_eq!(
            record_hash(41, &entry(None), GENESIS_HASH),
            "bd8c6ffc0c8213797308ddbd54e9bd7ee978d3c6d83c936ca7bb2c614cc485e2"
        );
        assert_eq!(
            record_hash(42, &entry(Some("alice,bob")), &"ab".repeat(32)),
            "f99f7ee4b249b4ede298c6c389f65063f66cc274572055553b113be8f296faf0"
        );
    }
}
