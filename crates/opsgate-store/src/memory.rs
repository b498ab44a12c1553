//! Agent memory: a knowledge graph of named entities, observations about them and relations
//! between them, with the semantics of the reference server-memory (its tools are mirrored by
//! `opsgate-server`'s `memory_tools.rs`). Every mutation is one transaction, so whatever else must
//! follow a change (a search index) can join it there.

use sha2::{Digest, Sha256};

use crate::{Store, StoreError, now_rfc3339, on_pool};

/// An entity as stored: its observations in the order they were added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryEntity {
    pub name: String,
    pub entity_type: String,
    pub observations: Vec<String>,
    pub created_at: String,
    /// The principal id that created it.
    pub created_by: String,
    /// When an observation was last added or deleted (or `created_at`).
    pub updated_at: String,
}

/// A directed relation between two entity names, in active voice: `payments-api` `depends_on`
/// `postgres-main`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MemoryRelation {
    pub from: String,
    pub to: String,
    pub relation_type: String,
}

/// An entity to create, with its first observations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMemoryEntity {
    pub name: String,
    pub entity_type: String,
    pub observations: Vec<String>,
}

/// Observations of one entity, to add or to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryObservations {
    pub entity: String,
    pub contents: Vec<String>,
}

/// What a graph read found, entities and relations each in insertion order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryGraph {
    pub entities: Vec<MemoryEntity>,
    pub relations: Vec<MemoryRelation>,
    /// More entities or relations matched than the limit let through.
    pub truncated: bool,
}

/// What `delete_memory_entities` removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryDeletion {
    pub n_entities: u64,
    pub n_observations: u64,
    pub n_relations: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// `add_memory_observations` names an entity that does not exist; nothing was added.
    #[error("no entity named {0:?}")]
    UnknownEntity(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for MemoryError {
    fn from(error: sqlx::Error) -> Self {
        MemoryError::Store(StoreError::Query(error))
    }
}

/// Which entities a graph read returns.
enum Selection<'a> {
    All,
    /// A LIKE pattern, already escaped and lowercased.
    Matching(String),
    Named(&'a [String]),
}

/// `$first, $first+1, …` for `n` values.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n).map(|index| format!("${index}")).collect::<Vec<_>>().join(", ")
}

fn content_hash(content: &str) -> String {
    hex::encode(Sha256::digest(content.as_bytes()))
}

/// `query` as a LIKE pattern that matches it anywhere, its `%`, `_` and `\` taken literally (the
/// statements say `ESCAPE '\'`, which both dialects read as one backslash).
fn contains_pattern(query: &str) -> String {
    let mut pattern = String::with_capacity(query.len() + 2);
    pattern.push('%');
    for character in query.to_lowercase().chars() {
        if matches!(character, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(character);
    }
    pattern.push('%');
    pattern
}

/// Stores each of `contents` as an observation of `entity`, which must exist, unless it has that
/// observation already; inside the caller's transaction. Returns those stored, in order.
async fn insert_observations<'c, DB>(
    transaction: &mut sqlx::Transaction<'c, DB>,
    entity: &str,
    contents: &[String],
    now: &str,
    created_by: &str,
) -> Result<Vec<String>, sqlx::Error>
where
    DB: sqlx::Database,
    <DB as sqlx::Database>::Arguments: sqlx::IntoArguments<DB>,
    for<'t> &'t mut <DB as sqlx::Database>::Connection: sqlx::Executor<'t, Database = DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> (String,): sqlx::FromRow<'r, DB::Row>,
{
    let mut inserted = Vec::new();
    for content in contents {
        let id = uuid::Uuid::now_v7().to_string();
        let hash = content_hash(content);
        // A row comes back only when the observation was new (both dialects take `RETURNING`).
        let row: Option<(String,)> = sqlx::query_as(
            "INSERT INTO memory_observations (id, entity, content, content_hash, created_at, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (entity, content_hash) DO NOTHING RETURNING id",
        )
        .bind(id.as_str())
        .bind(entity)
        .bind(content.as_str())
        .bind(hash.as_str())
        .bind(now)
        .bind(created_by)
        .fetch_optional(&mut **transaction)
        .await?;
        if row.is_some() {
            inserted.push(content.clone());
        }
    }
    Ok(inserted)
}

impl Store {
    /// Creates the entities whose names are not taken (earlier in the same list counts), with
    /// their observations, in one transaction. Returns the entities created, in the order given,
    /// each with its observations once.
    pub async fn create_memory_entities(
        &self,
        entities: &[NewMemoryEntity],
        created_by: &str,
    ) -> Result<Vec<MemoryEntity>, StoreError> {
        let now = now_rfc3339();
        let mut created = Vec::new();
        on_pool!(self, pool => {
            let mut transaction = pool.begin().await?;
            for entity in entities {
                let inserted = sqlx::query(
                    "INSERT INTO memory_entities (id, name, entity_type, created_at, created_by, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $4) ON CONFLICT (name) DO NOTHING",
                )
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(&entity.name)
                .bind(&entity.entity_type)
                .bind(&now)
                .bind(created_by)
                .execute(&mut *transaction)
                .await?;
                if inserted.rows_affected() == 0 {
                    continue;
                }
                let observations =
                    insert_observations(&mut transaction, &entity.name, &entity.observations, &now, created_by).await?;
                created.push(MemoryEntity {
                    name: entity.name.clone(),
                    entity_type: entity.entity_type.clone(),
                    observations,
                    created_at: now.clone(),
                    created_by: created_by.to_string(),
                    updated_at: now.clone(),
                });
            }
            let names: Vec<String> = created.iter().map(|entity: &MemoryEntity| entity.name.clone()).collect();
            crate::search::reindex_memory(&mut transaction, &names).await?;
            transaction.commit().await?;
        });
        Ok(created)
    }

    /// Creates the relations not stored yet, in one transaction; their ends need not exist.
    /// Returns the relations created, in the order given.
    pub async fn create_memory_relations(
        &self,
        relations: &[MemoryRelation],
        created_by: &str,
    ) -> Result<Vec<MemoryRelation>, StoreError> {
        let now = now_rfc3339();
        let mut created = Vec::new();
        on_pool!(self, pool => {
            let mut transaction = pool.begin().await?;
            for relation in relations {
                let inserted = sqlx::query(
                    "INSERT INTO memory_relations (id, from_entity, to_entity, relation_type, created_at, created_by) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (from_entity, to_entity, relation_type) DO NOTHING",
                )
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(&relation.from)
                .bind(&relation.to)
                .bind(&relation.relation_type)
                .bind(&now)
                .bind(created_by)
                .execute(&mut *transaction)
                .await?;
                if inserted.rows_affected() == 1 {
                    created.push(relation.clone());
                }
            }
            transaction.commit().await?;
        });
        Ok(created)
    }

    /// Adds observations to existing entities in one transaction, skipping those an entity has.
    /// Returns, per item given, the observations added. An unknown entity fails the whole call
    /// and nothing is added.
    pub async fn add_memory_observations(
        &self,
        additions: &[MemoryObservations],
        created_by: &str,
    ) -> Result<Vec<MemoryObservations>, MemoryError> {
        let now = now_rfc3339();
        let mut results = Vec::new();
        on_pool!(self, pool => {
            let mut transaction = pool.begin().await?;
            for addition in additions {
                // A write first: it checks that the entity exists and takes the write lock
                // (SQLite) or the row lock (PostgreSQL) before anything is read, so a concurrent
                // delete of the entity waits for this transaction.
                let found = sqlx::query("UPDATE memory_entities SET updated_at = updated_at WHERE name = $1")
                    .bind(&addition.entity)
                    .execute(&mut *transaction)
                    .await?;
                if found.rows_affected() == 0 {
                    return Err(MemoryError::UnknownEntity(addition.entity.clone()));
                }
                let added =
                    insert_observations(&mut transaction, &addition.entity, &addition.contents, &now, created_by).await?;
                if !added.is_empty() {
                    sqlx::query("UPDATE memory_entities SET updated_at = $1 WHERE name = $2")
                        .bind(&now)
                        .bind(&addition.entity)
                        .execute(&mut *transaction)
                        .await?;
                }
                results.push(MemoryObservations { entity: addition.entity.clone(), contents: added });
            }
            let names: Vec<String> = results.iter().filter(|added: &&MemoryObservations| !added.contents.is_empty()).map(|added| added.entity.clone()).collect();
            crate::search::reindex_memory(&mut transaction, &names).await?;
            transaction.commit().await?;
        });
        Ok(results)
    }

    /// Deletes the named entities with their observations and every relation to or from them,
    /// in one transaction. Unknown names are skipped.
    pub async fn delete_memory_entities(&self, names: &[String]) -> Result<MemoryDeletion, StoreError> {
        let mut deletion = MemoryDeletion::default();
        on_pool!(self, pool => {
            let mut transaction = pool.begin().await?;
            for name in names {
                // Child rows first: both stores enforce the observations' foreign key (the SQLite
                // pool turns `foreign_keys` on), and the schema does not cascade.
                deletion.n_observations += sqlx::query("DELETE FROM memory_observations WHERE entity = $1")
                    .bind(name)
                    .execute(&mut *transaction)
                    .await?
                    .rows_affected();
                deletion.n_relations +=
                    sqlx::query("DELETE FROM memory_relations WHERE from_entity = $1 OR to_entity = $1")
                        .bind(name)
                        .execute(&mut *transaction)
                        .await?
                        .rows_affected();
                deletion.n_entities += sqlx::query("DELETE FROM memory_entities WHERE name = $1")
                    .bind(name)
                    .execute(&mut *transaction)
                    .await?
                    .rows_affected();
            }
            crate::search::reindex_memory(&mut transaction, names).await?;
            transaction.commit().await?;
        });
        Ok(deletion)
    }

    /// Deletes the given observations in one transaction; unknown entities and observations are
    /// skipped. Returns how many were deleted.
    pub async fn delete_memory_observations(&self, deletions: &[MemoryObservations]) -> Result<u64, StoreError> {
        let now = now_rfc3339();
        let mut n_deleted = 0;
        // Only an entity that lost an observation is indexed again.
        let mut changed = Vec::new();
        on_pool!(self, pool => {
            let mut transaction = pool.begin().await?;
            for deletion in deletions {
                let mut n_of_entity = 0;
                for content in &deletion.contents {
                    n_of_entity += sqlx::query("DELETE FROM memory_observations WHERE entity = $1 AND content_hash = $2")
                        .bind(&deletion.entity)
                        .bind(content_hash(content))
                        .execute(&mut *transaction)
                        .await?
                        .rows_affected();
                }
                if n_of_entity > 0 {
                    sqlx::query("UPDATE memory_entities SET updated_at = $1 WHERE name = $2")
                        .bind(&now)
                        .bind(&deletion.entity)
                        .execute(&mut *transaction)
                        .await?;
                    changed.push(deletion.entity.clone());
                }
                n_deleted += n_of_entity;
            }
            crate::search::reindex_memory(&mut transaction, &changed).await?;
            transaction.commit().await?;
        });
        Ok(n_deleted)
    }

    /// Deletes the given relations in one transaction; unknown ones are skipped. Returns how
    /// many were deleted.
    pub async fn delete_memory_relations(&self, relations: &[MemoryRelation]) -> Result<u64, StoreError> {
        let mut n_deleted = 0;
        on_pool!(self, pool => {
            let mut transaction = pool.begin().await?;
            for relation in relations {
                n_deleted += sqlx::query(
                    "DELETE FROM memory_relations WHERE from_entity = $1 AND to_entity = $2 AND relation_type = $3",
                )
                .bind(&relation.from)
                .bind(&relation.to)
                .bind(&relation.relation_type)
                .execute(&mut *transaction)
                .await?
                .rows_affected();
            }
            transaction.commit().await?;
        });
        Ok(n_deleted)
    }

    /// The whole graph: the first `limit` entities and the first `limit` relations.
    pub async fn memory_graph(&self, limit: i64) -> Result<MemoryGraph, StoreError> {
        self.read_memory(Selection::All, limit).await
    }

    /// The first `limit` entities whose name, type or an observation contains `query`, ignoring
    /// case, with the relations to or from them (at most `limit`). An empty query matches
    /// everything, as server-memory's does. Case is folded by `LOWER`, which SQLite applies to
    /// ASCII letters only.
    pub async fn search_memory(&self, query: &str, limit: i64) -> Result<MemoryGraph, StoreError> {
        self.read_memory(Selection::Matching(contains_pattern(query)), limit).await
    }

    /// The named entities that exist (at most `limit`), with the relations to or from them (at
    /// most `limit`).
    pub async fn open_memory_nodes(&self, names: &[String], limit: i64) -> Result<MemoryGraph, StoreError> {
        if names.is_empty() {
            return Ok(MemoryGraph::default());
        }
        self.read_memory(Selection::Named(names), limit).await
    }

    async fn read_memory(&self, selection: Selection<'_>, limit: i64) -> Result<MemoryGraph, StoreError> {
        const ENTITY_COLUMNS: &str = "name, entity_type, created_at, created_by, updated_at";
        // $1 is the limit (one more than asked, to tell whether there was more).
        let entities_sql = match &selection {
            Selection::All => format!("SELECT {ENTITY_COLUMNS} FROM memory_entities ORDER BY id LIMIT $1"),
            Selection::Matching(_) => format!(
                "SELECT {ENTITY_COLUMNS} FROM memory_entities e WHERE LOWER(e.name) LIKE LOWER($2) ESCAPE '\\' \
                 OR LOWER(e.entity_type) LIKE LOWER($2) ESCAPE '\\' \
                 OR EXISTS (SELECT 1 FROM memory_observations o WHERE o.entity = e.name \
                            AND LOWER(o.content) LIKE LOWER($2) ESCAPE '\\') \
                 ORDER BY e.id LIMIT $1"
            ),
            Selection::Named(names) => format!(
                "SELECT {ENTITY_COLUMNS} FROM memory_entities WHERE name IN ({}) ORDER BY id LIMIT $1",
                placeholders(2, names.len())
            ),
        };
        let values: Vec<String> = match &selection {
            Selection::All => Vec::new(),
            Selection::Matching(pattern) => vec![pattern.clone()],
            Selection::Named(names) => names.to_vec(),
        };
        let fetch = limit.saturating_add(1);
        let (rows, observations, relations) = on_pool!(self, pool => {
            let mut transaction = pool.begin().await?;
            let mut statement =
                sqlx::query_as::<_, (String, String, String, String, String)>(sqlx::AssertSqlSafe(entities_sql.as_str()))
                    .bind(fetch);
            for value in &values {
                statement = statement.bind(value);
            }
            let rows = statement.fetch_all(&mut *transaction).await?;
            let names: Vec<&String> = rows.iter().take(limit.max(0) as usize).map(|row| &row.0).collect();
            let observations = if names.is_empty() {
                Vec::new()
            } else {
                let sql = format!(
                    "SELECT entity, content FROM memory_observations WHERE entity IN ({}) ORDER BY id",
                    placeholders(1, names.len())
                );
                let mut statement = sqlx::query_as::<_, (String, String)>(sqlx::AssertSqlSafe(sql.as_str()));
                for name in &names {
                    statement = statement.bind(*name);
                }
                statement.fetch_all(&mut *transaction).await?
            };
            let relations = match &selection {
                Selection::All => {
                    sqlx::query_as::<_, (String, String, String)>(
                        "SELECT from_entity, to_entity, relation_type FROM memory_relations ORDER BY id LIMIT $1",
                    )
                    .bind(fetch)
                    .fetch_all(&mut *transaction)
                    .await?
                }
                _ if names.is_empty() => Vec::new(),
                _ => {
                    // Relations with at least one end among the entities found, as server-memory
                    // answers, so a node's connections show without reading the whole graph.
                    let list = placeholders(2, names.len());
                    let sql = format!(
                        "SELECT from_entity, to_entity, relation_type FROM memory_relations \
                         WHERE from_entity IN ({list}) OR to_entity IN ({list}) ORDER BY id LIMIT $1"
                    );
                    let mut statement =
                        sqlx::query_as::<_, (String, String, String)>(sqlx::AssertSqlSafe(sql.as_str())).bind(fetch);
                    for name in &names {
                        statement = statement.bind(*name);
                    }
                    statement.fetch_all(&mut *transaction).await?
                }
            };
            transaction.commit().await?;
            (rows, observations, relations)
        });
        let limit = limit.max(0) as usize;
        let truncated = rows.len() > limit || relations.len() > limit;
        let mut entities: Vec<MemoryEntity> = rows
            .into_iter()
            .take(limit)
            .map(|(name, entity_type, created_at, created_by, updated_at)| MemoryEntity {
                name,
                entity_type,
                observations: Vec::new(),
                created_at,
                created_by,
                updated_at,
            })
            .collect();
        let position: std::collections::HashMap<String, usize> =
            entities.iter().enumerate().map(|(index, entity)| (entity.name.clone(), index)).collect();
        for (entity, content) in observations {
            if let Some(index) = position.get(&entity) {
                entities[*index].observations.push(content);
            }
        }
        let relations = relations
            .into_iter()
            .take(limit)
            .map(|(from, to, relation_type)| MemoryRelation { from, to, relation_type })
            .collect();
        Ok(MemoryGraph { entities, relations, truncated })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_patterns_take_wildcards_literally() {
        assert_eq!(contains_pattern("Payments_API"), "%payments\\_api%");
        assert_eq!(contains_pattern("100%"), "%100\\%%");
        assert_eq!(contains_pattern("a\\b"), "%a\\\\b%");
        assert_eq!(contains_pattern(""), "%%");
    }

    #[test]
    fn placeholders_number_from_the_first() {
        assert_eq!(placeholders(2, 3), "$2, $3, $4");
    }
}
