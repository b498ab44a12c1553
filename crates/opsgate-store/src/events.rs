//! Operational events: stored once per delivery, read back by time window, service, environment
//! and kind, newest first.

use opsgate_core::{Event, EventKind};
use serde::Serialize;
use sqlx::Row;

use crate::search::SearchDocument;
use crate::{Store, StoreError, on_pool};

/// An event as stored: the event and where it landed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredEvent {
    /// The store's id (a UUIDv7: time-ordered).
    pub id: String,
    /// When opsgate received it.
    pub received_at: String,
    #[serde(flatten)]
    pub event: Event,
}

/// Which events to read. Empty lists and `None` match everything.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Any of these services.
    pub services: Vec<String>,
    pub environment: Option<String>,
    /// From this time on (inclusive), RFC 3339 in the store's format.
    pub since: Option<String>,
    /// Before this time (exclusive).
    pub until: Option<String>,
    /// Any of these kinds.
    pub kinds: Vec<EventKind>,
    /// The most events returned; the newest are kept.
    pub limit: i64,
}

/// The columns of `events`, in the order `INSERT` binds them.
macro_rules! columns {
    () => {
        "id, time, received_at, source, kind, service, environment, summary, attributes, links, delivery_id"
    };
}

const COLUMNS: &str = columns!();

/// Stores one event unless its delivery is stored already (one row affected when it was new).
/// Both dialects, and both SQLite drivers, take it.
pub(crate) const INSERT: &str = concat!(
    "INSERT INTO events (",
    columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (source, delivery_id) DO NOTHING"
);

/// One delivery's events and when opsgate received them: what
/// [`Store::insert_event_groups`] stores.
#[derive(Debug, Clone, PartialEq)]
pub struct EventDelivery {
    pub events: Vec<Event>,
    pub received_at: String,
}

/// An event's attributes and links as stored: JSON text.
pub(crate) fn json_columns(event: &Event) -> (String, String) {
    let attributes = serde_json::to_string(&event.attributes).unwrap_or_else(|_| "{}".to_string());
    let links = serde_json::to_string(&event.links).unwrap_or_else(|_| "[]".to_string());
    (attributes, links)
}

fn decode_event<R: Row>(row: &R) -> Result<StoredEvent, StoreError>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let kind: String = row.try_get("kind")?;
    let attributes: String = row.try_get("attributes")?;
    let links: String = row.try_get("links")?;
    let corrupt = |what: &str, detail: String| StoreError::Internal(format!("stored event has a bad {what}: {detail}"));
    Ok(StoredEvent {
        id: row.try_get("id")?,
        received_at: row.try_get("received_at")?,
        event: Event {
            time: row.try_get("time")?,
            source: row.try_get("source")?,
            kind: EventKind::parse(&kind).ok_or_else(|| corrupt("kind", kind.clone()))?,
            service: row.try_get("service")?,
            environment: row.try_get("environment")?,
            summary: row.try_get("summary")?,
            attributes: serde_json::from_str(&attributes).map_err(|error| corrupt("attributes", error.to_string()))?,
            links: serde_json::from_str(&links).map_err(|error| corrupt("links", error.to_string()))?,
            delivery_id: row.try_get("delivery_id")?,
        },
    })
}

impl Store {
    /// Stores `events` in one transaction, each unless its delivery (`source`, `delivery_id`)
    /// is stored already. Returns the events that were new, as stored, in the order given.
    pub async fn insert_events(&self, events: &[Event], received_at: &str) -> Result<Vec<StoredEvent>, StoreError> {
        let delivery = EventDelivery { events: events.to_vec(), received_at: received_at.to_string() };
        let mut stored = self.insert_event_groups(vec![delivery]).await?;
        Ok(stored.pop().unwrap_or_default())
    }

    /// Stores several deliveries' events, with their search documents, in one transaction (one
    /// commit, one flush to disk, for all of them): what lets concurrent webhook deliveries
    /// share the cost of durability. Durable when it returns. Returns, per delivery, the events
    /// that were new, in the order given. A delivery repeated in a later group, or within one,
    /// is stored once, where it first appears.
    ///
    /// On SQLite the rows go through the store's own write connection on a blocking thread,
    /// like audit appends (see `sqlite.rs`): two cached statements per event, where sqlx
    /// handed every statement and every value to its worker thread and back.
    pub async fn insert_event_groups(
        &self,
        deliveries: Vec<EventDelivery>,
    ) -> Result<Vec<Vec<StoredEvent>>, StoreError> {
        match self {
            Store::Sqlite { appender, .. } => {
                appender.durably("event insert", move |appender| appender.insert_events_unsynced(deliveries)).await
            }
            Store::Postgres(pool) => {
                let mut transaction = pool.begin().await?;
                let mut stored_groups = Vec::with_capacity(deliveries.len());
                for delivery in deliveries {
                    let mut stored = Vec::new();
                    for event in delivery.events {
                        let id = uuid::Uuid::now_v7().to_string();
                        let (attributes, links) = json_columns(&event);
                        let result = sqlx::query(INSERT)
                            .bind(&id)
                            .bind(&event.time)
                            .bind(&delivery.received_at)
                            .bind(&event.source)
                            .bind(event.kind.as_str())
                            .bind(&event.service)
                            .bind(&event.environment)
                            .bind(&event.summary)
                            .bind(&attributes)
                            .bind(&links)
                            .bind(&event.delivery_id)
                            .execute(&mut *transaction)
                            .await?;
                        if result.rows_affected() == 1 {
                            crate::search::upsert_documents(&mut transaction, &[SearchDocument::event(&id, &event)])
                                .await?;
                            stored.push(StoredEvent { id, received_at: delivery.received_at.clone(), event });
                        }
                    }
                    stored_groups.push(stored);
                }
                transaction.commit().await?;
                Ok(stored_groups)
            }
        }
    }

    /// Events matching `query`, newest first (by event time, then id).
    pub async fn events(&self, query: &EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        let mut conditions: Vec<String> = Vec::new();
        let mut values: Vec<String> = Vec::new();
        fn placeholder(value: String, values: &mut Vec<String>) -> String {
            values.push(value);
            format!("${}", values.len() + 1)
        }
        if !query.services.is_empty() {
            let list: Vec<String> =
                query.services.iter().map(|service| placeholder(service.clone(), &mut values)).collect();
            conditions.push(format!("service IN ({})", list.join(", ")));
        }
        if let Some(environment) = &query.environment {
            conditions.push(format!("environment = {}", placeholder(environment.clone(), &mut values)));
        }
        if let Some(since) = &query.since {
            conditions.push(format!("time >= {}", placeholder(since.clone(), &mut values)));
        }
        if let Some(until) = &query.until {
            conditions.push(format!("time < {}", placeholder(until.clone(), &mut values)));
        }
        if !query.kinds.is_empty() {
            let list: Vec<String> =
                query.kinds.iter().map(|kind| placeholder(kind.as_str().to_string(), &mut values)).collect();
            conditions.push(format!("kind IN ({})", list.join(", ")));
        }
        let filter = if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
        // $1 is the limit; the filter's values follow from $2.
        let sql = format!("SELECT {COLUMNS} FROM events {filter} ORDER BY time DESC, id DESC LIMIT $1");
        let events = on_pool!(self, pool => {
            let mut statement = sqlx::query(sqlx::AssertSqlSafe(sql.as_str())).bind(query.limit);
            for value in &values {
                statement = statement.bind(value);
            }
            statement.fetch_all(pool).await?.iter().map(decode_event).collect::<Result<Vec<_>, _>>()?
        });
        Ok(events)
    }

    /// Deletes up to `limit` of the oldest events from before `before`, with their search
    /// documents, in one transaction; returns how many. Small batches keep each transaction
    /// short, so retention never holds the store's write lock for long.
    pub async fn delete_events_before(&self, before: &str, limit: i64) -> Result<u64, StoreError> {
        let deleted = on_pool!(self, pool => {
            let mut transaction = pool.begin().await?;
            let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM events WHERE time < $1 ORDER BY time LIMIT $2")
                .bind(before)
                .bind(limit)
                .fetch_all(&mut *transaction)
                .await?;
            let mut deleted = 0;
            for id in &ids {
                sqlx::query("DELETE FROM search_documents WHERE source = 'event' AND ref = $1")
                    .bind(id)
                    .execute(&mut *transaction)
                    .await?;
                deleted += sqlx::query("DELETE FROM events WHERE id = $1").bind(id).execute(&mut *transaction).await?.rows_affected();
            }
            transaction.commit().await?;
            deleted
        });
        Ok(deleted)
    }
}
