//! The memory tools: a knowledge graph of entities, relations and observations that agents and
//! people keep across sessions, stored in opsgate's store and shared by all of them. Names,
//! arguments and result shapes are the reference server-memory's (`create_entities` …
//! `open_nodes`), so an agent that knows that server uses these unchanged; opsgate adds bounds on
//! input and output, policy and the audit log, as for every tool.

use std::collections::HashSet;
use std::sync::Arc;

use opsgate_core::{CallContext, Effect, OutputBudget, Plan, Tool, ToolError, ToolOutput, ToolSpec, truncate_chars};
use opsgate_store::{
    MemoryEntity, MemoryError, MemoryGraph, MemoryObservations, MemoryRelation, NewMemoryEntity, Store, StoreError,
};
use serde_json::{Map, Value, json};

use crate::context_tools::object;

/// The most entities, relations, names or observation groups one call may carry, and the most
/// observations per entity.
const MAX_ITEMS: usize = 100;
const MAX_NAME_CHARS: usize = 200;
const MAX_OBSERVATION_CHARS: usize = 2_000;
const MAX_QUERY_CHARS: usize = 2_000;
/// Entities (and relations) a read takes from the store; the output budget then decides how many
/// are shown.
const MAX_READ: i64 = 500;
/// Bytes of the budget kept for the headline, the footer, the JSON keys and the pipeline's own
/// envelope; the lists get the rest.
const RESERVE_BYTES: usize = 1_000;

/// The nine tools, in server-memory's order.
pub fn memory_tools(store: Store) -> Vec<Arc<dyn Tool>> {
    Operation::ALL
        .into_iter()
        .map(|operation| {
            Arc::new(MemoryTool { spec: operation.spec(), store: store.clone(), operation }) as Arc<dyn Tool>
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    CreateEntities,
    CreateRelations,
    AddObservations,
    DeleteEntities,
    DeleteObservations,
    DeleteRelations,
    ReadGraph,
    SearchNodes,
    OpenNodes,
}

/// One memory operation as an opsgate tool.
pub struct MemoryTool {
    spec: ToolSpec,
    store: Store,
    operation: Operation,
}

/// A call's arguments, checked.
enum Request {
    CreateEntities(Vec<NewMemoryEntity>),
    CreateRelations(Vec<MemoryRelation>),
    AddObservations(Vec<MemoryObservations>),
    DeleteEntities(Vec<String>),
    DeleteObservations(Vec<MemoryObservations>),
    DeleteRelations(Vec<MemoryRelation>),
    ReadGraph,
    SearchNodes(String),
    OpenNodes(Vec<String>),
}

fn entity_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": MAX_NAME_CHARS},
            "entityType": {"type": "string", "maxLength": MAX_NAME_CHARS, "description": "service, team, database, incident…"},
            "observations": {
                "type": "array", "maxItems": MAX_ITEMS,
                "items": {"type": "string", "maxLength": MAX_OBSERVATION_CHARS},
                "description": "facts about the entity, one per string"
            }
        },
        "required": ["name", "entityType", "observations"],
        "additionalProperties": false
    })
}

fn relation_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "from": {"type": "string", "maxLength": MAX_NAME_CHARS, "description": "the entity the relation starts at"},
            "to": {"type": "string", "maxLength": MAX_NAME_CHARS, "description": "the entity it ends at"},
            "relationType": {"type": "string", "maxLength": MAX_NAME_CHARS, "description": "in active voice: depends_on, owns"}
        },
        "required": ["from", "to", "relationType"],
        "additionalProperties": false
    })
}

fn list_of(items: Value, description: Option<&str>) -> Value {
    let mut list = json!({"type": "array", "items": items, "maxItems": MAX_ITEMS});
    if let Some(description) = description {
        list["description"] = json!(description);
    }
    list
}

fn names_schema(description: &str) -> Value {
    list_of(json!({"type": "string", "maxLength": MAX_NAME_CHARS}), Some(description))
}

/// An input schema with one required argument.
fn one_argument(name: &str, schema: Value) -> Map<String, Value> {
    object(json!({
        "type": "object",
        "properties": {name: schema},
        "required": [name],
        "additionalProperties": false
    }))
}

fn entity_out() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "entityType": {"type": "string"},
            "observations": {"type": "array", "items": {"type": "string"}}
        },
        "required": ["name", "entityType", "observations"]
    })
}

fn relation_out() -> Value {
    json!({
        "type": "object",
        "properties": {"from": {"type": "string"}, "to": {"type": "string"}, "relationType": {"type": "string"}},
        "required": ["from", "to", "relationType"]
    })
}

/// server-memory's result shapes, plus `truncated`, which opsgate sets when the output budget cut
/// a list.
fn output_schema(properties: Value, required: &[&str]) -> Option<Map<String, Value>> {
    let mut properties = object(properties);
    properties.insert("truncated".to_string(), json!({"type": "boolean"}));
    Some(object(json!({"type": "object", "properties": properties, "required": required})))
}

fn graph_output_schema() -> Option<Map<String, Value>> {
    output_schema(
        json!({"entities": {"type": "array", "items": entity_out()}, "relations": {"type": "array", "items": relation_out()}}),
        &["entities", "relations"],
    )
}

fn deleted_output_schema() -> Option<Map<String, Value>> {
    output_schema(json!({"success": {"type": "boolean"}, "message": {"type": "string"}}), &["success", "message"])
}

const DELETES_ONLY_MEMORY: &str = "Changes only opsgate's own store.";

impl Operation {
    const ALL: [Operation; 9] = [
        Operation::CreateEntities,
        Operation::CreateRelations,
        Operation::AddObservations,
        Operation::DeleteEntities,
        Operation::DeleteObservations,
        Operation::DeleteRelations,
        Operation::ReadGraph,
        Operation::SearchNodes,
        Operation::OpenNodes,
    ];

    fn spec(self) -> ToolSpec {
        let (name, title, description, input_schema, output_schema) = match self {
            Operation::CreateEntities => (
                "create_entities",
                "Create Entities",
                "Create entities in the shared memory graph, which opsgate keeps in its store across sessions for \
                 every agent and person. Names already taken are skipped; returns the entities created. Up to 100 \
                 per call; names and types up to 200 characters, observations up to 2,000."
                    .to_string(),
                one_argument("entities", list_of(entity_schema(), None)),
                output_schema(json!({"entities": {"type": "array", "items": entity_out()}}), &["entities"]),
            ),
            Operation::CreateRelations => (
                "create_relations",
                "Create Relations",
                "Create relations between entities of the shared memory graph, in active voice (payments-api \
                 depends_on postgres-main). Existing relations are skipped; returns the relations created."
                    .to_string(),
                one_argument("relations", list_of(relation_schema(), None)),
                output_schema(json!({"relations": {"type": "array", "items": relation_out()}}), &["relations"]),
            ),
            Operation::AddObservations => (
                "add_observations",
                "Add Observations",
                "Add observations (facts) to existing entities of the shared memory graph. An unknown entity fails \
                 the call and nothing is added; observations an entity has are skipped. Returns what was added per \
                 entity."
                    .to_string(),
                one_argument(
                    "observations",
                    list_of(
                        json!({
                            "type": "object",
                            "properties": {
                                "entityName": {"type": "string", "maxLength": MAX_NAME_CHARS},
                                "contents": {
                                    "type": "array", "maxItems": MAX_ITEMS,
                                    "items": {"type": "string", "maxLength": MAX_OBSERVATION_CHARS}
                                }
                            },
                            "required": ["entityName", "contents"],
                            "additionalProperties": false
                        }),
                        None,
                    ),
                ),
                output_schema(
                    json!({"results": {"type": "array", "items": {
                        "type": "object",
                        "properties": {
                            "entityName": {"type": "string"},
                            "addedObservations": {"type": "array", "items": {"type": "string"}}
                        },
                        "required": ["entityName", "addedObservations"]
                    }}}),
                    &["results"],
                ),
            ),
            Operation::DeleteEntities => (
                "delete_entities",
                "Delete Entities",
                format!(
                    "Delete entities from the shared memory graph, with their observations and every relation to or \
                     from them. Unknown names are ignored. {DELETES_ONLY_MEMORY}"
                ),
                one_argument("entityNames", names_schema("names of the entities to delete")),
                deleted_output_schema(),
            ),
            Operation::DeleteObservations => (
                "delete_observations",
                "Delete Observations",
                format!(
                    "Delete observations from entities of the shared memory graph. Unknown entities and observations \
                     are ignored. {DELETES_ONLY_MEMORY}"
                ),
                one_argument(
                    "deletions",
                    list_of(
                        json!({
                            "type": "object",
                            "properties": {
                                "entityName": {"type": "string", "maxLength": MAX_NAME_CHARS},
                                "observations": {
                                    "type": "array", "maxItems": MAX_ITEMS,
                                    "items": {"type": "string", "maxLength": MAX_OBSERVATION_CHARS}
                                }
                            },
                            "required": ["entityName", "observations"],
                            "additionalProperties": false
                        }),
                        None,
                    ),
                ),
                deleted_output_schema(),
            ),
            Operation::DeleteRelations => (
                "delete_relations",
                "Delete Relations",
                format!(
                    "Delete relations from the shared memory graph. Unknown relations are ignored. {DELETES_ONLY_MEMORY}"
                ),
                one_argument("relations", list_of(relation_schema(), Some("the relations to delete"))),
                deleted_output_schema(),
            ),
            Operation::ReadGraph => (
                "read_graph",
                "Read Graph",
                "Read the shared memory graph opsgate keeps for every agent and person: entities with their \
                 observations, and relations, oldest first, cut to the output budget. On a large graph use \
                 search_nodes or open_nodes."
                    .to_string(),
                object(json!({"type": "object", "properties": {}, "additionalProperties": false})),
                graph_output_schema(),
            ),
            Operation::SearchNodes => (
                "search_nodes",
                "Search Nodes",
                "Find entities of the shared memory graph whose name, type or an observation contains the query, \
                 ignoring case; returns them with the relations to or from them."
                    .to_string(),
                one_argument(
                    "query",
                    json!({"type": "string", "maxLength": MAX_QUERY_CHARS, "description": "text to look for; not a pattern"}),
                ),
                graph_output_schema(),
            ),
            Operation::OpenNodes => (
                "open_nodes",
                "Open Nodes",
                "Read the named entities of the shared memory graph with the relations to or from them; unknown \
                 names are skipped."
                    .to_string(),
                one_argument("names", names_schema("names of the entities to read")),
                graph_output_schema(),
            ),
        };
        let effect = match self {
            Operation::ReadGraph | Operation::SearchNodes | Operation::OpenNodes => Effect::Read,
            // Deletes too are plain writes: they change nothing but opsgate's own store.
            _ => Effect::Write,
        };
        ToolSpec {
            name: name.to_string(),
            title: title.to_string(),
            description,
            input_schema,
            output_schema,
            effect,
            target_kind: None,
            // As server-memory marks them: creating twice is not a no-op for the caller's result.
            idempotent: !matches!(
                self,
                Operation::CreateEntities | Operation::CreateRelations | Operation::AddObservations
            ),
            open_world: false,
        }
    }

    /// Reads the arguments by hand rather than through serde, so that every complaint names the
    /// item: `entities[3].name is empty`.
    fn parse(self, arguments: &Map<String, Value>) -> Result<Request, ToolError> {
        let top = |key: &str| -> Result<&Value, ToolError> {
            known_fields(arguments, "", &[key])?;
            required(arguments, "", key)
        };
        Ok(match self {
            Operation::CreateEntities => {
                let items = list(top("entities")?, "entities")?;
                let mut entities = Vec::with_capacity(items.len());
                for (index, item) in items.iter().enumerate() {
                    let at = format!("entities[{index}]");
                    let fields = item_object(item, &at, &["name", "entityType", "observations"])?;
                    let observations = match fields.get("observations") {
                        None | Some(Value::Null) => Vec::new(),
                        Some(value) => observations(value, &join(&at, "observations"))?,
                    };
                    entities.push(NewMemoryEntity {
                        name: bounded_field(fields, &at, "name", MAX_NAME_CHARS)?,
                        entity_type: bounded_field(fields, &at, "entityType", MAX_NAME_CHARS)?,
                        observations,
                    });
                }
                Request::CreateEntities(entities)
            }
            Operation::CreateRelations => Request::CreateRelations(relations(top("relations")?, "relations")?),
            Operation::DeleteRelations => Request::DeleteRelations(dedupe(relations(top("relations")?, "relations")?)),
            Operation::AddObservations => {
                Request::AddObservations(observation_groups(top("observations")?, "observations", "contents")?)
            }
            Operation::DeleteObservations => {
                Request::DeleteObservations(observation_groups(top("deletions")?, "deletions", "observations")?)
            }
            Operation::DeleteEntities => Request::DeleteEntities(names(top("entityNames")?, "entityNames")?),
            Operation::OpenNodes => Request::OpenNodes(names(top("names")?, "names")?),
            Operation::SearchNodes => {
                let query = text(top("query")?, "query")?.trim();
                let n_chars = query.chars().count();
                if n_chars > MAX_QUERY_CHARS {
                    return Err(invalid(format!("query has {n_chars} characters; at most {MAX_QUERY_CHARS}")));
                }
                Request::SearchNodes(query.to_string())
            }
            Operation::ReadGraph => {
                known_fields(arguments, "", &[])?;
                Request::ReadGraph
            }
        })
    }
}

fn invalid(message: String) -> ToolError {
    ToolError::InvalidArguments(message)
}

/// `entities[3]` + `name` ⇒ `entities[3].name`.
fn join(at: &str, key: &str) -> String {
    if at.is_empty() { key.to_string() } else { format!("{at}.{key}") }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn known_fields(fields: &Map<String, Value>, at: &str, allowed: &[&str]) -> Result<(), ToolError> {
    let Some(unknown) = fields.keys().find(|key| !allowed.contains(&key.as_str())) else {
        return Ok(());
    };
    let whose = if at.is_empty() { "the arguments have".to_string() } else { format!("{at} has") };
    let expected =
        if allowed.is_empty() { "none are taken".to_string() } else { format!("use {}", allowed.join(", ")) };
    Err(invalid(format!("{whose} an unknown field {unknown:?}; {expected}")))
}

fn required<'a>(fields: &'a Map<String, Value>, at: &str, key: &str) -> Result<&'a Value, ToolError> {
    fields.get(key).filter(|value| !value.is_null()).ok_or_else(|| invalid(format!("{} is required", join(at, key))))
}

fn list<'a>(value: &'a Value, at: &str) -> Result<&'a [Value], ToolError> {
    let Value::Array(items) = value else {
        return Err(invalid(format!("{at} must be an array, not {}", kind(value))));
    };
    if items.len() > MAX_ITEMS {
        return Err(invalid(format!("{at} has {} items; at most {MAX_ITEMS} per call", items.len())));
    }
    Ok(items)
}

fn item_object<'a>(value: &'a Value, at: &str, allowed: &[&str]) -> Result<&'a Map<String, Value>, ToolError> {
    let Value::Object(fields) = value else {
        return Err(invalid(format!("{at} must be an object with {}, not {}", allowed.join(", "), kind(value))));
    };
    known_fields(fields, at, allowed)?;
    Ok(fields)
}

fn text<'a>(value: &'a Value, at: &str) -> Result<&'a str, ToolError> {
    value.as_str().ok_or_else(|| invalid(format!("{at} must be a string, not {}", kind(value))))
}

/// A string, trimmed, not empty, at most `max_chars` characters.
fn bounded(value: &Value, at: &str, max_chars: usize) -> Result<String, ToolError> {
    let text = text(value, at)?.trim();
    if text.is_empty() {
        return Err(invalid(format!("{at} is empty")));
    }
    let n_chars = text.chars().count();
    if n_chars > max_chars {
        return Err(invalid(format!("{at} has {n_chars} characters; at most {max_chars}")));
    }
    Ok(text.to_string())
}

fn bounded_field(fields: &Map<String, Value>, at: &str, key: &str, max_chars: usize) -> Result<String, ToolError> {
    bounded(required(fields, at, key)?, &join(at, key), max_chars)
}

/// Keeps the first of each.
fn dedupe<T: Clone + Eq + std::hash::Hash>(values: Vec<T>) -> Vec<T> {
    let mut seen = HashSet::new();
    values.into_iter().filter(|value| seen.insert(value.clone())).collect()
}

fn names(value: &Value, at: &str) -> Result<Vec<String>, ToolError> {
    let names = list(value, at)?
        .iter()
        .enumerate()
        .map(|(index, name)| bounded(name, &format!("{at}[{index}]"), MAX_NAME_CHARS))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(dedupe(names))
}

fn observations(value: &Value, at: &str) -> Result<Vec<String>, ToolError> {
    let observations = list(value, at)?
        .iter()
        .enumerate()
        .map(|(index, observation)| bounded(observation, &format!("{at}[{index}]"), MAX_OBSERVATION_CHARS))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(dedupe(observations))
}

fn relations(value: &Value, at: &str) -> Result<Vec<MemoryRelation>, ToolError> {
    list(value, at)?
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let at = format!("{at}[{index}]");
            let fields = item_object(item, &at, &["from", "to", "relationType"])?;
            Ok(MemoryRelation {
                from: bounded_field(fields, &at, "from", MAX_NAME_CHARS)?,
                to: bounded_field(fields, &at, "to", MAX_NAME_CHARS)?,
                relation_type: bounded_field(fields, &at, "relationType", MAX_NAME_CHARS)?,
            })
        })
        .collect()
}

/// `[{entityName, <list_key>: [...]}]`, for adding and for deleting observations.
fn observation_groups(value: &Value, at: &str, list_key: &str) -> Result<Vec<MemoryObservations>, ToolError> {
    list(value, at)?
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let at = format!("{at}[{index}]");
            let fields = item_object(item, &at, &["entityName", list_key])?;
            Ok(MemoryObservations {
                entity: bounded_field(fields, &at, "entityName", MAX_NAME_CHARS)?,
                contents: observations(required(fields, &at, list_key)?, &join(&at, list_key))?,
            })
        })
        .collect()
}

fn unavailable(error: StoreError) -> ToolError {
    ToolError::Unavailable(format!("the memory store is unavailable: {error}"))
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A text rendering keeps each item on its own lines.
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

/// A few names for a headline or a plan: at most five, each at most 60 characters.
fn some_names<'a>(names: impl ExactSizeIterator<Item = &'a str>) -> String {
    let n_names = names.len();
    let mut shown: Vec<String> = names.take(5).map(|name| truncate_chars(&one_line(name), 60)).collect();
    if n_names > 5 {
        shown.push(format!("and {} more", n_names - 5));
    }
    shown.join(", ")
}

fn relation_json(relation: &MemoryRelation) -> Value {
    json!({"from": relation.from, "to": relation.to, "relationType": relation.relation_type})
}

/// One listed thing in both renderings: server-memory's JSON and its lines of text, and what the
/// two cost of the budget.
struct Piece {
    json: Value,
    text: String,
    cost: usize,
}

impl Piece {
    fn new(json: Value, text: String) -> Piece {
        // The JSON, a comma, the text and a line break.
        let cost = json.to_string().len() + 1 + text.len() + 1;
        Piece { json, text, cost }
    }

    fn relation(relation: &MemoryRelation) -> Piece {
        let text = format!(
            "  {} -[{}]-> {}",
            one_line(&relation.from),
            one_line(&relation.relation_type),
            one_line(&relation.to)
        );
        Piece::new(relation_json(relation), text)
    }
}

/// An entity, or what was added to one: a name, perhaps a type, and a list of observations, under
/// server-memory's keys.
struct Node<'a> {
    name_key: &'static str,
    name: &'a str,
    entity_type: Option<&'a str>,
    list_key: &'static str,
    list: &'a [String],
}

impl<'a> Node<'a> {
    fn entity(entity: &'a MemoryEntity) -> Node<'a> {
        Node {
            name_key: "name",
            name: &entity.name,
            entity_type: Some(&entity.entity_type),
            list_key: "observations",
            list: &entity.observations,
        }
    }

    fn added(result: &'a MemoryObservations) -> Node<'a> {
        Node {
            name_key: "entityName",
            name: &result.entity,
            entity_type: None,
            list_key: "addedObservations",
            list: &result.contents,
        }
    }

    /// The node with its first `n` observations.
    fn piece(&self, n: usize) -> Piece {
        let shown: Vec<&String> = self.list.iter().take(n).collect();
        let mut json = Map::new();
        json.insert(self.name_key.to_string(), json!(self.name));
        let mut text = one_line(self.name);
        if let Some(entity_type) = self.entity_type {
            json.insert("entityType".to_string(), json!(entity_type));
            text.push_str(&format!(" ({})", one_line(entity_type)));
        }
        json.insert(self.list_key.to_string(), json!(shown));
        for observation in &shown {
            text.push_str("\n  - ");
            text.push_str(&one_line(observation));
        }
        if shown.len() < self.list.len() {
            text.push_str(&format!("\n  … {} more not shown", self.list.len() - shown.len()));
        }
        Piece::new(Value::Object(json), text)
    }
}

/// As many nodes as fit in `room`, in order, and the bytes they take; `true` when some were left
/// out. A first node too large to fit whole is shown with as many observations as fit, so one huge
/// entity never hides everything.
fn fit_nodes(nodes: &[Node<'_>], room: usize) -> (Vec<Piece>, usize, bool) {
    let mut pieces = Vec::new();
    let mut used = 0;
    for node in nodes {
        let whole = node.piece(node.list.len());
        if used + whole.cost <= room {
            used += whole.cost;
            pieces.push(whole);
            continue;
        }
        if pieces.is_empty() {
            // The most observations that fit, by bisection: `piece(low)` fits or `low` is 0.
            let (mut low, mut high) = (0, node.list.len());
            while low < high {
                let middle = (low + high).div_ceil(2);
                if node.piece(middle).cost <= room {
                    low = middle;
                } else {
                    high = middle - 1;
                }
            }
            let piece = node.piece(low);
            used += piece.cost;
            pieces.push(piece);
        }
        return (pieces, used, true);
    }
    (pieces, used, false)
}

/// As many pieces as fit in `room`, in order; `true` when some were left out.
fn fit_pieces(pieces: Vec<Piece>, room: usize) -> (Vec<Piece>, bool) {
    let n_pieces = pieces.len();
    let mut used = 0;
    let kept: Vec<Piece> = pieces
        .into_iter()
        .take_while(|piece| {
            used += piece.cost;
            used <= room
        })
        .collect();
    let cut = kept.len() < n_pieces;
    (kept, cut)
}

fn room(budget: OutputBudget) -> usize {
    budget.max_bytes.saturating_sub(RESERVE_BYTES)
}

fn json_list(pieces: &[Piece]) -> Value {
    Value::Array(pieces.iter().map(|piece| piece.json.clone()).collect())
}

/// A graph in server-memory's shape, `{entities, relations}`, and as text, cut to the budget.
fn graph_output(headline: String, graph: &MemoryGraph, budget: OutputBudget) -> ToolOutput {
    let room = room(budget);
    let nodes: Vec<Node<'_>> = graph.entities.iter().map(Node::entity).collect();
    let relations: Vec<Piece> = graph.relations.iter().map(Piece::relation).collect();
    let relations_cost: usize = relations.iter().map(|piece| piece.cost).sum();
    // Entities first, but relations keep up to a third of the room when they need it.
    let (entities, used, entities_cut) = fit_nodes(&nodes, room - relations_cost.min(room / 3));
    let (relations, relations_cut) = fit_pieces(relations, room.saturating_sub(used));
    let truncated = graph.truncated || entities_cut || relations_cut;

    let mut output = ToolOutput::text(headline);
    output.summary.extend(entities.iter().map(|piece| piece.text.clone()));
    if !relations.is_empty() {
        output.summary.push("relations:".to_string());
        output.summary.extend(relations.iter().map(|piece| piece.text.clone()));
    }
    if truncated {
        // The store's limit, when reached, means there may be more than it read.
        let at_least = |n: usize| if graph.truncated && n as i64 == MAX_READ { format!("{n}+") } else { n.to_string() };
        output.footer.push(format!(
            "truncated: showing {} of {} entities and {} of {} relations; narrow with search_nodes or open_nodes",
            entities.len(),
            at_least(graph.entities.len()),
            relations.len(),
            at_least(graph.relations.len()),
        ));
    }
    output.truncated = truncated;
    output.field("entities", json_list(&entities)).field("relations", json_list(&relations))
}

/// The names of the given entities the store did not create: their name was taken, earlier in
/// the store or in the same call.
fn skipped_entities<'a>(given: &'a [NewMemoryEntity], created: &[MemoryEntity]) -> Vec<&'a str> {
    let mut unclaimed: HashSet<&str> = created.iter().map(|entity| entity.name.as_str()).collect();
    given.iter().map(|entity| entity.name.as_str()).filter(|name| !unclaimed.remove(name)).collect()
}

fn created_entities_output(given: &[NewMemoryEntity], created: &[MemoryEntity], budget: OutputBudget) -> ToolOutput {
    let mut headline = format!("created {}", count(created.len(), "entity", "entities"));
    let skipped = skipped_entities(given, created);
    if !skipped.is_empty() {
        headline.push_str(&format!(
            "; skipped {} whose name exists: {}",
            skipped.len(),
            some_names(skipped.into_iter())
        ));
    }
    let nodes: Vec<Node<'_>> = created.iter().map(Node::entity).collect();
    let (pieces, _, cut) = fit_nodes(&nodes, room(budget));
    let mut output = ToolOutput::text(headline);
    output.summary.extend(pieces.iter().map(|piece| piece.text.clone()));
    if cut {
        output.footer.push(format!(
            "truncated: showing {} of the {} created; read them with open_nodes",
            pieces.len(),
            created.len()
        ));
    }
    output.truncated = cut;
    output.field("entities", json_list(&pieces))
}

fn created_relations_output(given: &[MemoryRelation], created: &[MemoryRelation], budget: OutputBudget) -> ToolOutput {
    let mut headline = format!("created {}", count(created.len(), "relation", "relations"));
    if given.len() > created.len() {
        headline.push_str(&format!("; skipped {} that exist", given.len() - created.len()));
    }
    let (pieces, cut) = fit_pieces(created.iter().map(Piece::relation).collect(), room(budget));
    let mut output = ToolOutput::text(headline);
    output.summary.extend(pieces.iter().map(|piece| piece.text.clone()));
    if cut {
        output.footer.push(format!("truncated: showing {} of the {} created", pieces.len(), created.len()));
    }
    output.truncated = cut;
    output.field("relations", json_list(&pieces))
}

fn added_observations_output(
    given: &[MemoryObservations],
    added: &[MemoryObservations],
    budget: OutputBudget,
) -> ToolOutput {
    let n_given: usize = given.iter().map(|group| group.contents.len()).sum();
    let n_added: usize = added.iter().map(|group| group.contents.len()).sum();
    let mut headline = format!(
        "added {} to {}",
        count(n_added, "observation", "observations"),
        count(added.len(), "entity", "entities")
    );
    if n_given > n_added {
        headline.push_str(&format!("; skipped {} the entity has", n_given - n_added));
    }
    let nodes: Vec<Node<'_>> = added.iter().map(Node::added).collect();
    let (pieces, _, cut) = fit_nodes(&nodes, room(budget));
    let mut output = ToolOutput::text(headline);
    output.summary.extend(pieces.iter().map(|piece| piece.text.clone()));
    if cut {
        output.footer.push(format!("truncated: showing {} of {} entities", pieces.len(), added.len()));
    }
    output.truncated = cut;
    output.field("results", json_list(&pieces))
}

/// server-memory's `{success, message}`; the message says what was deleted.
fn deleted_output(message: String) -> ToolOutput {
    ToolOutput::text(message.clone()).field("success", true).field("message", message)
}

impl Request {
    /// A write's dry run, computed from the arguments: what it names, and how many.
    fn plan(&self) -> Option<Plan> {
        let relation_items =
            |relations: &[MemoryRelation]| -> Vec<Value> { relations.iter().take(20).map(relation_json).collect() };
        let name_items =
            |names: Vec<&str>| -> Vec<Value> { names.into_iter().take(20).map(|name| json!(name)).collect() };
        let (summary, blast_radius, unit, items) = match self {
            Request::CreateEntities(entities) => {
                let names: Vec<&str> = entities.iter().map(|entity| entity.name.as_str()).collect();
                (
                    format!(
                        "create up to {} in the memory graph: {}",
                        count(names.len(), "entity", "entities"),
                        some_names(names.iter().copied())
                    ),
                    names.len(),
                    "entities",
                    name_items(names),
                )
            }
            Request::CreateRelations(relations) => (
                format!("create up to {} in the memory graph", count(relations.len(), "relation", "relations")),
                relations.len(),
                "relations",
                relation_items(relations),
            ),
            Request::AddObservations(groups) | Request::DeleteObservations(groups) => {
                let n_observations: usize = groups.iter().map(|group| group.contents.len()).sum();
                let names: Vec<&str> = groups.iter().map(|group| group.entity.as_str()).collect();
                let verb = if matches!(self, Request::AddObservations(_)) { "add" } else { "delete" };
                (
                    format!(
                        "{verb} up to {} of {}: {}",
                        count(n_observations, "observation", "observations"),
                        count(names.len(), "entity", "entities"),
                        some_names(names.iter().copied())
                    ),
                    n_observations,
                    "observations",
                    name_items(names),
                )
            }
            Request::DeleteEntities(names) => {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                (
                    format!(
                        "delete up to {}, with their observations and the relations to or from them: {}",
                        count(names.len(), "entity", "entities"),
                        some_names(names.iter().copied())
                    ),
                    names.len(),
                    "entities",
                    name_items(names),
                )
            }
            Request::DeleteRelations(relations) => (
                format!("delete up to {} from the memory graph", count(relations.len(), "relation", "relations")),
                relations.len(),
                "relations",
                relation_items(relations),
            ),
            Request::ReadGraph | Request::SearchNodes(_) | Request::OpenNodes(_) => return None,
        };
        Some(Plan { summary, blast_radius: blast_radius as u64, unit: unit.to_string(), items })
    }
}

#[async_trait::async_trait]
impl Tool for MemoryTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn plan(&self, _context: &CallContext, arguments: &Map<String, Value>) -> Result<Option<Plan>, ToolError> {
        Ok(self.operation.parse(arguments)?.plan())
    }

    async fn call(&self, context: CallContext, arguments: Map<String, Value>) -> Result<ToolOutput, ToolError> {
        let request = self.operation.parse(&arguments)?;
        let author = context.principal.id.as_str();
        let budget = context.budget;
        let store = &self.store;
        Ok(match request {
            Request::CreateEntities(entities) => {
                let created = store.create_memory_entities(&entities, author).await.map_err(unavailable)?;
                created_entities_output(&entities, &created, budget)
            }
            Request::CreateRelations(relations) => {
                let created = store.create_memory_relations(&relations, author).await.map_err(unavailable)?;
                created_relations_output(&relations, &created, budget)
            }
            Request::AddObservations(groups) => match store.add_memory_observations(&groups, author).await {
                Ok(added) => added_observations_output(&groups, &added, budget),
                Err(MemoryError::UnknownEntity(name)) => {
                    let index = groups.iter().position(|group| group.entity == name).unwrap_or_default();
                    return Err(invalid(format!(
                        "observations[{index}].entityName {name:?} is not an entity of the memory graph; create it \
                         with create_entities first (nothing was added)"
                    )));
                }
                Err(MemoryError::Store(error)) => return Err(unavailable(error)),
            },
            Request::DeleteEntities(names) => {
                let deleted = store.delete_memory_entities(&names).await.map_err(unavailable)?;
                let mut message = format!(
                    "deleted {} with {} and {}",
                    count(deleted.n_entities as usize, "entity", "entities"),
                    count(deleted.n_observations as usize, "observation", "observations"),
                    count(deleted.n_relations as usize, "relation", "relations"),
                );
                let n_unknown = names.len().saturating_sub(deleted.n_entities as usize);
                if n_unknown > 0 {
                    message.push_str(&format!("; {} not found", count(n_unknown, "name was", "names were")));
                }
                deleted_output(message)
            }
            Request::DeleteObservations(groups) => {
                let n_deleted = store.delete_memory_observations(&groups).await.map_err(unavailable)? as usize;
                let n_given: usize = groups.iter().map(|group| group.contents.len()).sum();
                let mut message = format!("deleted {}", count(n_deleted, "observation", "observations"));
                if n_given > n_deleted {
                    message.push_str(&format!("; {} not found", n_given - n_deleted));
                }
                deleted_output(message)
            }
            Request::DeleteRelations(relations) => {
                let n_deleted = store.delete_memory_relations(&relations).await.map_err(unavailable)? as usize;
                let mut message = format!("deleted {}", count(n_deleted, "relation", "relations"));
                if relations.len() > n_deleted {
                    message.push_str(&format!("; {} not found", relations.len() - n_deleted));
                }
                deleted_output(message)
            }
            Request::ReadGraph => {
                let graph = store.memory_graph(MAX_READ).await.map_err(unavailable)?;
                let headline = if graph.entities.is_empty() && graph.relations.is_empty() {
                    "the memory graph is empty; add to it with create_entities".to_string()
                } else {
                    format!(
                        "the memory graph: {}, {}",
                        count(graph.entities.len(), "entity", "entities"),
                        count(graph.relations.len(), "relation", "relations")
                    )
                };
                graph_output(headline, &graph, budget)
            }
            Request::SearchNodes(query) => {
                let graph = store.search_memory(&query, MAX_READ).await.map_err(unavailable)?;
                let headline = format!(
                    "{} {:?}, with {} to or from {}",
                    count(graph.entities.len(), "entity matches", "entities match"),
                    truncate_chars(&query, 60),
                    count(graph.relations.len(), "relation", "relations"),
                    if graph.entities.len() == 1 { "it" } else { "them" }
                );
                graph_output(headline, &graph, budget)
            }
            Request::OpenNodes(names) => {
                let graph = store.open_memory_nodes(&names, MAX_READ).await.map_err(unavailable)?;
                let mut headline = format!(
                    "{} of {} found, with {} to or from them",
                    graph.entities.len(),
                    count(names.len(), "entity", "entities"),
                    count(graph.relations.len(), "relation", "relations")
                );
                let found: HashSet<&str> = graph.entities.iter().map(|entity| entity.name.as_str()).collect();
                let missing: Vec<&str> =
                    names.iter().map(String::as_str).filter(|name| !found.contains(name)).collect();
                if !missing.is_empty() {
                    headline.push_str(&format!("; not found: {}", some_names(missing.into_iter())));
                }
                graph_output(headline, &graph, budget)
            }
        })
    }
}

#[cfg(test)]
mod tests;
