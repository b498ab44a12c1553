//! Full-text search over what opsgate knows: events, runbooks and memory, one ranked list.
//!
//! Every searchable thing is a document in `search_documents` (source, reference, kind, title,
//! body, time, service), written in the same transaction as the thing itself. The index is the
//! one part of the schema the two databases cannot share, so it is created here, after the
//! migrations, with statements that are idempotent:
//!
//! - SQLite: an FTS5 table over the documents (external content, kept in step by triggers),
//!   Porter-stemmed.
//! - PostgreSQL: a stored `tsvector` column (English stemming, title weighted above body); events
//!   under a GIN index of their words and kind tagged with blocks of document ids (see
//!   [`postgres_indexes`]), runbooks and memory under a GIN index of their own.
//!
//! A query is the words of the text, all required (a word is a run of letters and digits, so
//! `payments-api` is `payments` and `api`, as both indexes split it); when no document has every
//! word, the documents with any of them are ranked instead, and the result says so.
//!
//! Ranking every match of a common word in a million events costs more than an agent should
//! wait, so events are ranked among the newest [`RANK_WINDOW`] matches, newest as written (the
//! documents' ids grow in that order); runbooks and memory, few and lasting, are ranked whatever
//! their age, through an index of their own. Among equal scores runbooks and memory come first,
//! then the newest.
//!
//! - SQLite scores a document by its title's matches of the query's words, at most as many as
//!   the query has words (so a title repeating one word scores like one holding two; counting
//!   distinct words would cost a pass over each candidate's markers). FTS5's BM25 would read
//!   every document of every word to weigh them (tens of milliseconds for a common word in a
//!   million events, however small the window); marking the title's words costs a few
//!   microseconds per candidate. Snippets are cut from the hits alone (`snippet.rs`).
//! - PostgreSQL scores with `ts_rank` (title above body) and cuts snippets with `ts_headline`;
//!   the window's matches carry their ids and words through the ranking, and only the best are
//!   read whole.

use std::sync::LazyLock;

use opsgate_core::Event;
use serde::Serialize;
use sqlx::Row;

use crate::{Store, StoreError, on_pool};

mod snippet;

/// The most matching documents that are ranked, newest first; see the module comment.
pub const RANK_WINDOW: i64 = 1_000;

/// The most words of a query that are used.
const MAX_WORDS: usize = 16;

/// Where a document came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentSource {
    Event,
    Runbook,
    Memory,
}

impl DocumentSource {
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentSource::Event => "event",
            DocumentSource::Runbook => "runbook",
            DocumentSource::Memory => "memory",
        }
    }

    fn parse(text: &str) -> Option<DocumentSource> {
        [DocumentSource::Event, DocumentSource::Runbook, DocumentSource::Memory]
            .into_iter()
            .find(|source| source.as_str() == text)
    }
}

/// One searchable thing. `reference` names it within its source (an event's id, a runbook's id,
/// an entity's name); `kind` is the event's kind, `runbook` or `memory`.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchDocument {
    pub source: DocumentSource,
    pub reference: String,
    pub kind: String,
    pub title: String,
    pub body: String,
    pub time: String,
    pub service: Option<String>,
}

impl SearchDocument {
    /// An event as a document: its summary the title; service, environment, source, kind and
    /// attributes the body.
    pub fn event(id: &str, event: &Event) -> SearchDocument {
        let mut body: Vec<&str> = Vec::new();
        body.extend(event.service.as_deref());
        body.extend(event.environment.as_deref());
        body.push(&event.source);
        body.push(event.kind.as_str());
        let attributes: Vec<String> = event.attributes.iter().map(|(name, value)| format!("{name} {value}")).collect();
        body.extend(attributes.iter().map(String::as_str));
        SearchDocument {
            source: DocumentSource::Event,
            reference: id.to_string(),
            kind: event.kind.as_str().to_string(),
            title: event.summary.clone(),
            body: body.join("\n"),
            time: event.time.clone(),
            service: event.service.clone(),
        }
    }
}

/// What to look for.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    pub text: String,
    /// Any of these kinds (event kinds, `runbook`, `memory`); empty matches all.
    pub kinds: Vec<String>,
    pub limit: i64,
}

/// One ranked document. `score` is higher for a better match, comparable within one result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchHit {
    pub source: DocumentSource,
    pub reference: String,
    pub kind: String,
    pub title: String,
    pub time: String,
    pub service: Option<String>,
    /// The body around the matched words, the words in `[` `]`.
    pub snippet: String,
    pub score: f64,
}

/// The ranked documents, and how the words were matched.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchResult {
    pub hits: Vec<SearchHit>,
    /// The words searched for, as the index saw them.
    pub words: Vec<String>,
    /// `false` when no document held every word and the hits hold any of them.
    pub all_words: bool,
}

/// The words of `text`: runs of letters and digits, lowercased, each once, at most `MAX_WORDS`.
pub fn query_words(text: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for word in text.split(|c: char| !c.is_alphanumeric()).filter(|word| !word.is_empty()) {
        let word = word.to_lowercase();
        if !words.contains(&word) {
            words.push(word);
        }
        if words.len() == MAX_WORDS {
            break;
        }
    }
    words
}

/// Creates the index if it is not there. Run after the migrations, on every open.
pub(crate) async fn prepare(store: &Store) -> Result<(), StoreError> {
    match store {
        Store::Sqlite { pool, .. } => {
            for statement in sqlite_schema() {
                sqlx::query(sqlx::AssertSqlSafe(statement)).execute(pool).await?;
            }
        }
        Store::Postgres(pool) => {
            // Two processes opening one database at once would race on CREATE ... IF NOT EXISTS;
            // a transaction-scoped advisory lock serialises them.
            let mut transaction = pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock(7120342)").execute(&mut *transaction).await?;
            for statement in postgres_schema() {
                sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&mut *transaction).await?;
            }
            transaction.commit().await?;
        }
    }
    Ok(())
}

/// A document's columns in both dialects; each adds its keys (and PostgreSQL its words).
const DOCUMENT_COLUMNS: &str = "source TEXT NOT NULL, ref TEXT NOT NULL, kind TEXT NOT NULL, title TEXT NOT NULL, \
     body TEXT NOT NULL, time TEXT NOT NULL, service TEXT";

/// The documents, and two FTS5 indexes over them (external content, kept in step by triggers):
/// `search_fts` over every document, and `search_lasting_fts` over runbooks and memory alone, so
/// that they are ranked whatever their age without walking every event that shares their words.
fn sqlite_schema() -> Vec<String> {
    let mut schema = vec![format!(
        "CREATE TABLE IF NOT EXISTS search_documents (id INTEGER PRIMARY KEY, {DOCUMENT_COLUMNS}, UNIQUE (source, ref))"
    )];
    schema.extend(sqlite_fts_index("search_fts", "search_documents", None));
    schema.extend(sqlite_fts_index("search_lasting_fts", "search_lasting", Some("source <> 'event'")));
    schema
}

/// An FTS5 index `table` over the documents (those where `only` holds, if given), and the
/// triggers, named `{triggers}_insert` and so on, that keep it in step.
fn sqlite_fts_index(table: &str, triggers: &str, only: Option<&str>) -> [String; 4] {
    let when = |row: &str| only.map(|only| format!("WHEN {row}.{only} ")).unwrap_or_default();
    let add = format!("INSERT INTO {table} (rowid, title, body, kind) VALUES (new.id, new.title, new.body, new.kind);");
    let remove = format!(
        "INSERT INTO {table} ({table}, rowid, title, body, kind) VALUES ('delete', old.id, old.title, old.body, old.kind);"
    );
    [
        format!(
            "CREATE VIRTUAL TABLE IF NOT EXISTS {table} USING fts5(title, body, kind, content = 'search_documents', \
             content_rowid = 'id', tokenize = 'porter unicode61 remove_diacritics 2')"
        ),
        format!(
            "CREATE TRIGGER IF NOT EXISTS {triggers}_insert AFTER INSERT ON search_documents {}BEGIN {add} END",
            when("new")
        ),
        format!(
            "CREATE TRIGGER IF NOT EXISTS {triggers}_delete AFTER DELETE ON search_documents {}BEGIN {remove} END",
            when("old")
        ),
        format!(
            "CREATE TRIGGER IF NOT EXISTS {triggers}_update AFTER UPDATE ON search_documents {}BEGIN {remove} {add} END",
            when("old")
        ),
    ]
}

/// The documents with their weighted words and an id in the order they were written; the blocks
/// index over events and the GIN over runbooks and memory (see [`postgres_indexes`]).
fn postgres_schema() -> Vec<String> {
    let mut schema = vec![
        format!(
            "CREATE TABLE IF NOT EXISTS search_documents (id BIGINT GENERATED BY DEFAULT AS IDENTITY, {DOCUMENT_COLUMNS},
                words tsvector GENERATED ALWAYS AS
                    (setweight(to_tsvector('english', title), 'A') || setweight(to_tsvector('english', body), 'B')) STORED,
                PRIMARY KEY (source, ref))"
        ),
        // Stores written before the id: their documents are numbered in the table's order. Asked
        // first, because ALTER TABLE locks the table even when the column is there.
        "DO $$ BEGIN
            IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                           WHERE table_schema = current_schema() AND table_name = 'search_documents' AND column_name = 'id')
            THEN ALTER TABLE search_documents ADD COLUMN id BIGINT GENERATED BY DEFAULT AS IDENTITY;
            END IF;
        END $$"
            .to_string(),
    ];
    schema.extend(postgres_indexes());
    schema
}

/// How many low bits of a document id a fine block leaves out: blocks of 4,096 documents.
const FINE_BLOCK_BITS: u32 = 12;

/// The same for a coarse block: 131,072 documents, 32 fine blocks.
const COARSE_BLOCK_BITS: u32 = 17;

/// The blocks index's list of entries not yet sorted into it, in kB (PostgreSQL's least; its
/// default is 4,096). GIN adds a document's entries to that list and sorts them in when it is
/// full, which is cheap for writes, but every lookup reads the whole list, and a search makes
/// dozens of lookups: with a 4 MB list one rare word's search took 15-20 ms, 0.6 ms once the
/// list was sorted in. Inserts cost about 40 µs more a document at 64 kB.
const PENDING_LIST_KB: u32 = 64;

/// The function the blocks index is built on. Its name carries a version: an index holds what
/// the function returned when each row was written, so a changed body needs a new name.
const BLOCKS_FUNCTION: &str = "opsgate_search_blocks_v1";

/// PostgreSQL's GIN finds every document holding a word but cannot hand them over newest first,
/// so "the newest matches" would mean reading every match (a common word has hundreds of
/// thousands) or walking the newest documents one by one until enough match (a rare word walks
/// the whole table). Instead each event is indexed under its words and its kind tagged with the
/// block of ids it falls in, fine and coarse (`payment/a240`, `@deploy/b7`), and a search asks
/// the newest blocks in turn (see [`newest_events_sql`]): each lookup reads that block's
/// matches alone.
fn postgres_indexes() -> Vec<String> {
    vec![
        "CREATE UNIQUE INDEX IF NOT EXISTS search_documents_id ON search_documents (id)".to_string(),
        // Created when missing rather than replaced at every open: a replacement rewrites the
        // catalog and makes every other process on the store plan its searches again.
        format!(
            "DO $do$ BEGIN
                IF to_regprocedure('{BLOCKS_FUNCTION}(tsvector, text, bigint)') IS NULL THEN
                    CREATE FUNCTION {BLOCKS_FUNCTION}(words tsvector, kind text, id bigint) RETURNS tsvector
                        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
                        SELECT array_to_tsvector(ARRAY(
                            SELECT term || block
                            FROM unnest(tsvector_to_array(words) || ('@' || kind)) term,
                                 (VALUES ('/a' || (id >> {FINE_BLOCK_BITS})), ('/b' || (id >> {COARSE_BLOCK_BITS})))
                                 blocks (block)))
                    $fn$;
                END IF;
            END $do$"
        ),
        format!(
            "CREATE INDEX IF NOT EXISTS search_documents_blocks ON search_documents
                USING GIN ({BLOCKS_FUNCTION}(words, kind, id)) WITH (gin_pending_list_limit = {PENDING_LIST_KB})
                WHERE source = 'event'"
        ),
        // Runbooks and memory, searched whatever their age.
        "CREATE INDEX IF NOT EXISTS search_documents_lasting_words ON search_documents USING GIN (words)
            WHERE source <> 'event'"
            .to_string(),
        // Earlier stores' indexes, which the blocks replace.
        "DROP INDEX IF EXISTS search_documents_words".to_string(),
        "DROP INDEX IF EXISTS search_documents_time".to_string(),
    ]
}

/// A lexeme inside a tsquery literal, from the SQL expression `text`: `prefix`, then `text` with
/// its backslashes and quotes escaped, then `/` and the SQL expression `block` when given.
fn tsquery_term(text: &str, prefix: &str, block: Option<&str>) -> String {
    let block = block.map(|block| format!(" || '/' || {block}")).unwrap_or_default();
    format!(r"'''{prefix}' || replace(replace({text}, '\', '\\'), '''', ''''''){block} || ''''")
}

/// The query's terms, as the common table expressions `terms (lexemes)` and `query (query)`:
/// the lexemes of `$1` (the query's words separated by spaces) as the index saw them (English
/// stems, no stop words), and those lexemes joined by `$2` (` & ` or ` | `), for matching and
/// ranking.
fn query_terms_sql() -> String {
    let lexeme = tsquery_term("lexeme", "", None);
    format!(
        "terms AS MATERIALIZED (
            SELECT array_agg(lexeme) AS lexemes FROM unnest(tsvector_to_array(to_tsvector('english', $1))) lexeme
        ), query AS MATERIALIZED (
            SELECT ('(' || (SELECT string_agg({lexeme}, $2) FROM unnest(terms.lexemes) lexeme) || ')')::tsquery AS query
            FROM terms
        )"
    )
}

/// The newest event matches of `terms` (see [`query_terms_sql`]), at most [`RANK_WINDOW`], as
/// `(id, words)`: `$3` the kinds (empty for all), `$4` whether events are searched at all.
///
/// The blocks are asked newest first: the fine blocks down to the start of the coarse block
/// before the newest one (32 to 64 fine blocks, so that a word common enough to fill the window
/// there never reaches a coarse block, where it would match thousands), then the coarse blocks.
/// The lookups run one after another and stop when the window is full. A block's query is the
/// query's lexemes joined by `$2`, each tagged with the block, and the kinds likewise, any of
/// them.
fn newest_events_sql() -> String {
    let lexeme = tsquery_term("lexeme", "", Some("block"));
    let kind = tsquery_term("kind", "@", Some("block"));
    format!(
        "SELECT found.id, found.words FROM (
            SELECT n, ('(' || (SELECT string_agg({lexeme}, $2) FROM unnest(terms.lexemes) lexeme) || ')'
                || coalesce(' & (' || (SELECT string_agg({kind}, ' | ') FROM unnest($3::text[]) kind) || ')', ''))::tsquery
                AS query
            FROM terms,
                 (SELECT max(id) AS id FROM search_documents) top,
                 LATERAL (
                    SELECT n, 'a' || block AS block
                    FROM generate_series(top.id >> {FINE_BLOCK_BITS},
                        greatest(((top.id >> {COARSE_BLOCK_BITS}) - 1) << {coarse_in_fine}, 0), -1)
                        WITH ORDINALITY fine (block, n)
                    UNION ALL
                    SELECT {coarse_after} + n, 'b' || block
                    FROM generate_series((top.id >> {COARSE_BLOCK_BITS}) - 2, 0, -1) WITH ORDINALITY coarse (block, n)
                 ) blocks
            WHERE $4
            ORDER BY n
        ) step, LATERAL (
            SELECT d.id, d.words FROM search_documents d
            WHERE d.source = 'event' AND {BLOCKS_FUNCTION}(d.words, d.kind, d.id) @@ step.query
        ) found
        ORDER BY step.n, found.id DESC LIMIT {RANK_WINDOW}",
        coarse_in_fine = COARSE_BLOCK_BITS - FINE_BLOCK_BITS,
        // Every coarse step after every fine one.
        coarse_after = 1_i64 << 40,
    )
}

/// Writes a document, replacing any with the same source and reference. Both dialects take this
/// upsert; the update keeps the SQLite row id, so its triggers replace the indexed words in place.
pub(crate) const UPSERT_DOCUMENT: &str = "INSERT INTO search_documents (source, ref, kind, title, body, time, service) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (source, ref) DO UPDATE SET kind = excluded.kind, \
     title = excluded.title, body = excluded.body, time = excluded.time, service = excluded.service";

/// Writes `documents` (replacing any with the same source and reference) inside `transaction`.
pub(crate) async fn upsert_documents<'c, DB>(
    transaction: &mut sqlx::Transaction<'c, DB>,
    documents: &[SearchDocument],
) -> Result<(), StoreError>
where
    DB: sqlx::Database,
    for<'q> <DB as sqlx::Database>::Arguments: sqlx::IntoArguments<DB>,
    for<'t> &'t mut <DB as sqlx::Database>::Connection: sqlx::Executor<'t, Database = DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    for document in documents {
        sqlx::query(UPSERT_DOCUMENT)
            .bind(document.source.as_str())
            .bind(document.reference.as_str())
            .bind(document.kind.as_str())
            .bind(document.title.as_str())
            .bind(document.body.as_str())
            .bind(document.time.as_str())
            .bind(document.service.as_deref())
            .execute(&mut **transaction)
            .await?;
    }
    Ok(())
}

/// Indexes the named memory entities again as they now are, inside the transaction that changed
/// them: one document per entity, its name the title, its type and observations the body. An
/// entity that is gone loses its document.
pub(crate) async fn reindex_memory<'c, DB>(
    transaction: &mut sqlx::Transaction<'c, DB>,
    names: &[String],
) -> Result<(), StoreError>
where
    DB: sqlx::Database,
    for<'q> <DB as sqlx::Database>::Arguments: sqlx::IntoArguments<DB>,
    for<'t> &'t mut <DB as sqlx::Database>::Connection: sqlx::Executor<'t, Database = DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> (String, String): sqlx::FromRow<'r, DB::Row>,
    for<'r> (String,): sqlx::FromRow<'r, DB::Row>,
{
    for name in names {
        let entity: Option<(String, String)> =
            sqlx::query_as("SELECT entity_type, updated_at FROM memory_entities WHERE name = $1")
                .bind(name.as_str())
                .fetch_optional(&mut **transaction)
                .await?;
        let Some((entity_type, updated_at)) = entity else {
            sqlx::query("DELETE FROM search_documents WHERE source = $1 AND ref = $2")
                .bind(DocumentSource::Memory.as_str())
                .bind(name.as_str())
                .execute(&mut **transaction)
                .await?;
            continue;
        };
        let observations: Vec<(String,)> =
            sqlx::query_as("SELECT content FROM memory_observations WHERE entity = $1 ORDER BY id")
                .bind(name.as_str())
                .fetch_all(&mut **transaction)
                .await?;
        let mut body = vec![entity_type];
        body.extend(observations.into_iter().map(|(content,)| content));
        let document = SearchDocument {
            source: DocumentSource::Memory,
            reference: name.clone(),
            kind: DocumentSource::Memory.as_str().to_string(),
            title: name.clone(),
            body: body.join("\n"),
            time: updated_at,
            service: None,
        };
        upsert_documents(transaction, std::slice::from_ref(&document)).await?;
    }
    Ok(())
}

impl Store {
    /// Replaces every document of `source` with `documents` in one transaction: how runbooks,
    /// read from files, are indexed again after a reload.
    pub async fn replace_documents(
        &self,
        source: DocumentSource,
        documents: &[SearchDocument],
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            let mut transaction = pool.begin().await?;
            sqlx::query("DELETE FROM search_documents WHERE source = $1")
                .bind(source.as_str())
                .execute(&mut *transaction)
                .await?;
            upsert_documents(&mut transaction, documents).await?;
            transaction.commit().await?;
        });
        Ok(())
    }

    /// The documents that best match `query`, best first. An empty query (no words) is an error
    /// for the caller to name; here it finds nothing.
    pub async fn search(&self, query: &SearchQuery) -> Result<SearchResult, StoreError> {
        let words = query_words(&query.text);
        if words.is_empty() || query.limit <= 0 {
            return Ok(SearchResult { hits: Vec::new(), words, all_words: true });
        }
        let hits = self.search_words(&words, true, query).await?;
        if !hits.is_empty() || words.len() == 1 {
            return Ok(SearchResult { hits, words, all_words: true });
        }
        let hits = self.search_words(&words, false, query).await?;
        Ok(SearchResult { hits, words, all_words: false })
    }

    async fn search_words(
        &self,
        words: &[String],
        all: bool,
        query: &SearchQuery,
    ) -> Result<Vec<SearchHit>, StoreError> {
        match self {
            Store::Sqlite { pool, .. } => {
                let joiner = if all { " AND " } else { " OR " };
                let terms: Vec<String> = words.iter().map(|word| format!("\"{word}\"")).collect();
                let matching = format!("{{title body}} : ({})", terms.join(joiner));
                let of_kinds = |kinds: &[&str]| -> String {
                    let kinds: Vec<String> = kinds.iter().map(|kind| format!("\"{}\"", fts_string(kind))).collect();
                    format!("({matching}) AND kind : ({})", kinds.join(" OR "))
                };
                let requested: Vec<&str> = query.kinds.iter().map(String::as_str).collect();
                let expression = if requested.is_empty() { matching.clone() } else { of_kinds(&requested) };
                let lasting = lasting_kinds(&query.kinds);
                let lasting_arm = if lasting.is_empty() {
                    String::new()
                } else {
                    "UNION SELECT rowid AS id, highlight(search_lasting_fts, 0, char(1), '') AS marked, kind \
                     FROM search_lasting_fts WHERE search_lasting_fts MATCH $5"
                        .to_string()
                };
                // The newest RANK_WINDOW matches (row ids grow with time of writing), each with
                // its title's matched words marked and its kind, which the full-text cursor has
                // read already; ranked; and only the best looked up again for the rest.
                let sql = format!(
                    "WITH candidates AS MATERIALIZED (
                        SELECT * FROM (SELECT rowid AS id, highlight(search_fts, 0, char(1), '') AS marked, kind
                            FROM search_fts WHERE search_fts MATCH $1 ORDER BY rowid DESC LIMIT $2)
                        {lasting_arm}
                    ), best AS (
                        SELECT id, CAST(MIN(length(marked) - length(replace(marked, char(1), '')), $4) AS REAL) AS score,
                               kind IN ('runbook', 'memory') AS lasting
                        FROM candidates ORDER BY score DESC, lasting DESC, id DESC LIMIT $3
                    )
                    SELECT d.source, d.ref, d.kind, d.title, d.body, d.time, d.service, best.score
                    FROM best JOIN search_documents d ON d.id = best.id
                    ORDER BY best.score DESC, best.lasting DESC, best.id DESC"
                );
                let mut statement = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                    .bind(&expression)
                    .bind(RANK_WINDOW)
                    .bind(query.limit)
                    .bind(words.len() as i64);
                if !lasting.is_empty() {
                    statement = statement.bind(of_kinds(&lasting));
                }
                let rows = statement.fetch_all(pool).await?;
                let stems = snippet::Stems::of(words);
                rows.iter()
                    .map(|row| {
                        let (title, body): (String, String) = (row.try_get("title")?, row.try_get("body")?);
                        decode_hit(row, stems.snippet(&title, &body))
                    })
                    .collect()
            }
            Store::Postgres(pool) => {
                static SQL: LazyLock<String> = LazyLock::new(|| {
                    format!(
                        "WITH {terms},
                        newest AS MATERIALIZED ({newest}),
                        lasting AS MATERIALIZED (
                            SELECT id, words FROM search_documents, query
                            WHERE source <> 'event' AND words @@ query.query AND kind = ANY($6) LIMIT {RANK_WINDOW}
                        ), ranked AS (
                            SELECT c.id, c.lasting, ts_rank(c.words, query.query)::float8 AS score
                            FROM (SELECT id, words, false AS lasting FROM newest
                                  UNION ALL SELECT id, words, true FROM lasting) c,
                                 query
                            ORDER BY score DESC, c.lasting DESC, c.id DESC LIMIT $5
                        )
                        SELECT d.source, d.ref, d.kind, d.title, d.time, d.service, ranked.score,
                               ts_headline('english', d.body, query.query,
                                   'StartSel=[, StopSel=], MaxWords=18, MinWords=6, MaxFragments=1') AS snippet
                        FROM ranked, query, LATERAL (SELECT * FROM search_documents d WHERE d.id = ranked.id) d
                        ORDER BY ranked.score DESC, ranked.lasting DESC, ranked.id DESC",
                        terms = query_terms_sql(),
                        newest = newest_events_sql()
                    )
                });
                let requested = &query.kinds;
                let lasting = lasting_kinds(requested);
                let any_events = requested.is_empty() || requested.iter().any(|kind| !lasting.contains(&kind.as_str()));
                // The newest event matches and the runbook and memory matches carry their ids and
                // words through the ranking; the best are read whole, one by one. The window is a
                // constant and the lookups are LATERAL so that the plan PostgreSQL keeps for the
                // statement after a few runs, made without the parameters' values, is the plan it
                // makes with them (a join there read the whole table for ten rows).
                let rows = sqlx::query(sqlx::AssertSqlSafe(SQL.as_str()))
                    .bind(words.join(" "))
                    .bind(if all { " & " } else { " | " })
                    .bind(requested)
                    .bind(any_events)
                    .bind(query.limit)
                    .bind(&lasting)
                    .fetch_all(pool)
                    .await?;
                rows.iter().map(|row| decode_hit(row, row.try_get("snippet")?)).collect()
            }
        }
    }
}

/// The kinds of the documents that are few and last (runbooks, memory) among `requested` (all
/// when empty): ranked whatever their age, where events are ranked among the newest matches.
fn lasting_kinds(requested: &[String]) -> Vec<&'static str> {
    [DocumentSource::Runbook, DocumentSource::Memory]
        .into_iter()
        .map(DocumentSource::as_str)
        .filter(|kind| requested.is_empty() || requested.iter().any(|requested| requested == kind))
        .collect()
}

/// A kind inside an FTS5 string: its own quotes doubled.
fn fts_string(text: &str) -> String {
    text.replace('"', "\"\"")
}

/// A hit from its row and its snippet (PostgreSQL's is a column; SQLite's is cut from the row's
/// title and body).
fn decode_hit<R: Row>(row: &R, snippet: String) -> Result<SearchHit, StoreError>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> f64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let source: String = row.try_get("source")?;
    Ok(SearchHit {
        source: DocumentSource::parse(&source)
            .ok_or_else(|| StoreError::Internal(format!("search document with unknown source {source:?}")))?,
        reference: row.try_get("ref")?,
        kind: row.try_get("kind")?,
        title: row.try_get("title")?,
        time: row.try_get("time")?,
        service: row.try_get("service")?,
        snippet,
        score: row.try_get("score")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_runs_of_letters_and_digits_lowercased_once() {
        assert_eq!(
            query_words("Payments-API  rollback, payments v2.3"),
            vec!["payments", "api", "rollback", "v2", "3"]
        );
        assert_eq!(query_words("\"*\" OR (NEAR)"), vec!["or", "near"]);
        assert!(query_words(" -- ").is_empty());
        let many: String = (0..40).map(|n| format!("w{n} ")).collect();
        assert_eq!(query_words(&many).len(), MAX_WORDS);
    }
}
