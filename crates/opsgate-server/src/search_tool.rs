//! `search_context(query, kinds?, limit?)`: one ranked list over events, runbooks and memory,
//! from the store's full-text index (`opsgate-store/src/search.rs`).

use opsgate_core::{CallContext, Effect, Row, Tool, ToolError, ToolOutput, ToolSpec, parse_arguments};
use opsgate_store::{DocumentSource, SearchHit, SearchQuery, Store};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::context_tools::{kind_names, object, unavailable};

const DEFAULT_LIMIT: i64 = 10;
const MAX_LIMIT: i64 = 50;
/// The most characters of a query; a longer one is a pasted log, not a question.
const MAX_QUERY_CHARS: usize = 500;

/// The kinds a search may be narrowed to: every event kind, and runbooks and memory.
fn search_kinds() -> Vec<&'static str> {
    let mut kinds = kind_names();
    kinds.extend(["runbook", "memory"]);
    kinds
}

pub struct SearchContextTool {
    spec: ToolSpec,
    store: Store,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchArguments {
    query: String,
    #[serde(default)]
    kinds: Vec<String>,
    limit: Option<i64>,
}

impl SearchContextTool {
    /// The tool's name.
    pub const NAME: &'static str = "search_context";

    pub fn new(store: Store) -> SearchContextTool {
        let spec = ToolSpec {
            name: SearchContextTool::NAME.to_string(),
            title: "Search context".to_string(),
            description: "Ranked full-text search over opsgate's operational history (deploys, pipeline runs, \
                          alerts, executed actions, approvals…), runbooks and agent memory, best match first. \
                          Every word must match (stemmed: 'deploys' finds 'deployed'); if nothing holds them all, \
                          documents with any of them are returned and the result says so. Narrow with kinds."
                .to_string(),
            input_schema: object(json!({
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "words to look for, e.g. 'payments rollback'"},
                    "kinds": {"type": "array", "items": {"enum": search_kinds()}},
                    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "description": "default 10"}
                },
                "required": ["query"],
                "additionalProperties": false
            })),
            output_schema: Some(object(json!({
                "type": "object",
                "properties": {
                    "query": {"type": "string"},
                    "all_words": {"type": "boolean"},
                    "items": {"type": "array", "items": {"type": "object", "properties": {
                        "source": {"enum": ["event", "runbook", "memory"]},
                        "reference": {"type": "string"},
                        "kind": {"type": "string"},
                        "title": {"type": "string"},
                        "time": {"type": "string"},
                        "service": {"type": ["string", "null"]},
                        "snippet": {"type": "string"},
                        "score": {"type": "number"},
                        "open": {"type": "string"}
                    }}},
                    "truncated": {"type": "boolean"}
                },
                "required": ["query", "all_words", "items"]
            }))),
            effect: Effect::Read,
            target_kind: None,
            idempotent: true,
            open_world: false,
        };
        SearchContextTool { spec, store }
    }
}

/// How to read the whole of what a hit points at.
fn open_hint(hit: &SearchHit) -> String {
    match hit.source {
        DocumentSource::Event => format!("timeline around {}", hit.time),
        DocumentSource::Runbook => crate::catalog::runbook_uri(&hit.reference),
        DocumentSource::Memory => format!("open_nodes {}", hit.reference),
    }
}

fn hit_row(hit: &SearchHit) -> Row {
    let mut item = serde_json::to_value(hit).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut item {
        map.insert("open".to_string(), Value::String(open_hint(hit)));
    }
    let snippet = hit.snippet.split_whitespace().collect::<Vec<_>>().join(" ");
    Row {
        cells: vec![
            hit.kind.clone(),
            hit.time.clone(),
            hit.service.clone().unwrap_or_default(),
            hit.title.clone(),
            snippet,
            open_hint(hit),
        ],
        item,
    }
}

#[async_trait::async_trait]
impl Tool for SearchContextTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, _context: CallContext, arguments: Map<String, Value>) -> Result<ToolOutput, ToolError> {
        let arguments: SearchArguments = parse_arguments(arguments)?;
        if arguments.query.chars().count() > MAX_QUERY_CHARS {
            return Err(ToolError::InvalidArguments(format!(
                "query is longer than {MAX_QUERY_CHARS} characters; give the few words that matter"
            )));
        }
        if opsgate_store::search::query_words(&arguments.query).is_empty() {
            return Err(ToolError::InvalidArguments(
                "query has no words to search for (letters or digits)".to_string(),
            ));
        }
        let known = search_kinds();
        if let Some(unknown) = arguments.kinds.iter().find(|kind| !known.contains(&kind.as_str())) {
            return Err(ToolError::InvalidArguments(format!(
                "unknown kind {unknown:?}; kinds are {}",
                known.join(", ")
            )));
        }
        let limit = arguments.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ToolError::InvalidArguments(format!("limit must be 1 to {MAX_LIMIT}, not {limit}")));
        }
        let query = SearchQuery { text: arguments.query.clone(), kinds: arguments.kinds.clone(), limit };
        let result = self.store.search(&query).await.map_err(unavailable)?;
        let words = result.words.join(" ");
        let headline = match (result.hits.len(), result.all_words) {
            (0, _) => format!("nothing matches {words:?}"),
            (n, true) => format!("{n} best matches for {words:?}"),
            (n, false) => format!("no document holds every word of {words:?}; {n} best matches for any of them"),
        };
        let mut output =
            ToolOutput::text(headline).field("query", arguments.query.clone()).field("all_words", result.all_words);
        output.columns = ["kind", "time", "service", "title", "match", "open"].map(str::to_string).to_vec();
        output.rows = result.hits.iter().map(hit_row).collect();
        if result.hits.len() as i64 == limit {
            output.footer.push(format!("showing the best {limit}; raise limit or add words for more"));
        }
        Ok(output)
    }
}
