//! The memory tools without a store: server-memory's names and argument shapes, bad input named
//! by its item, dry runs, and results that fit the output budget and say when they were cut.

use super::*;

fn arguments(value: Value) -> Map<String, Value> {
    object(value)
}

/// `operation` refuses `input` with exactly `expect` (after "invalid arguments: ").
fn check_refused(operation: Operation, input: Value, expect: &str) {
    match operation.parse(&arguments(input.clone())) {
        Err(ToolError::InvalidArguments(message)) => assert_eq!(message, expect, "{input}"),
        Err(other) => panic!("{input}: {other:?}"),
        Ok(_) => panic!("{input} was accepted"),
    }
}

#[test]
fn names_arguments_and_effects_are_server_memorys() {
    let specs: Vec<ToolSpec> = Operation::ALL.into_iter().map(Operation::spec).collect();
    let shapes: Vec<(&str, Vec<&str>, Effect)> = specs
        .iter()
        .map(|spec| {
            let properties = spec.input_schema.get("properties").and_then(Value::as_object);
            (
                spec.name.as_str(),
                properties.map(|map| map.keys().map(String::as_str).collect()).unwrap_or_default(),
                spec.effect,
            )
        })
        .collect();
    assert_eq!(
        shapes,
        [
            ("create_entities", vec!["entities"], Effect::Write),
            ("create_relations", vec!["relations"], Effect::Write),
            ("add_observations", vec!["observations"], Effect::Write),
            ("delete_entities", vec!["entityNames"], Effect::Write),
            ("delete_observations", vec!["deletions"], Effect::Write),
            ("delete_relations", vec!["relations"], Effect::Write),
            ("read_graph", vec![], Effect::Read),
            ("search_nodes", vec!["query"], Effect::Read),
            ("open_nodes", vec!["names"], Effect::Read),
        ]
    );
    let item_fields = |spec: &ToolSpec, argument: &str| -> Vec<String> {
        spec.input_schema["properties"][argument]["items"]["properties"]
            .as_object()
            .map(|map| map.keys().cloned().collect())
            .unwrap_or_default()
    };
    assert_eq!(item_fields(&specs[0], "entities"), ["entityType", "name", "observations"]);
    assert_eq!(item_fields(&specs[1], "relations"), ["from", "relationType", "to"]);
    assert_eq!(item_fields(&specs[2], "observations"), ["contents", "entityName"]);
    assert_eq!(item_fields(&specs[4], "deletions"), ["entityName", "observations"]);
    for spec in &specs {
        assert_eq!(spec.target_kind, None, "{}", spec.name);
        assert!(spec.description.contains("memory graph"), "{}", spec.name);
        if spec.name.starts_with("delete_") {
            assert!(spec.description.contains("only opsgate's own store"), "{}", spec.name);
        }
    }
}

#[test]
fn bad_input_is_named_by_its_item() {
    let long_name = "n".repeat(201);
    let long_observation = "o".repeat(2_001);
    let hundred_and_one: Vec<Value> = (0..101).map(|index| json!(format!("entity-{index}"))).collect();
    let cases = [
        (Operation::CreateEntities, json!({}), "entities is required"),
        (Operation::CreateEntities, json!({"entities": "payments-api"}), "entities must be an array, not a string"),
        (
            Operation::CreateEntities,
            json!({"entities": [{"name": "a", "entityType": "service", "observations": []}, {"name": "  ", "entityType": "service"}]}),
            "entities[1].name is empty",
        ),
        (
            Operation::CreateEntities,
            json!({"entities": [{"name": "a", "observations": []}]}),
            "entities[0].entityType is required",
        ),
        (
            Operation::CreateEntities,
            json!({"entities": [{"name": "a", "type": "service"}]}),
            "entities[0] has an unknown field \"type\"; use name, entityType, observations",
        ),
        (
            Operation::CreateEntities,
            json!({"entities": [{"name": long_name, "entityType": "service"}]}),
            "entities[0].name has 201 characters; at most 200",
        ),
        (
            Operation::CreateEntities,
            json!({"entities": [{"name": "a", "entityType": "service", "observations": ["fine", long_observation]}]}),
            "entities[0].observations[1] has 2001 characters; at most 2000",
        ),
        (
            Operation::CreateEntities,
            json!({"entities": [{"name": "a", "entityType": "service", "observations": "one"}]}),
            "entities[0].observations must be an array, not a string",
        ),
        (
            Operation::CreateEntities,
            json!({"entities": ["a"]}),
            "entities[0] must be an object with name, entityType, observations, not a string",
        ),
        (
            Operation::CreateEntities,
            json!({"entities": [], "extra": 1}),
            "the arguments have an unknown field \"extra\"; use entities",
        ),
        (
            Operation::CreateRelations,
            json!({"relations": [{"from": "a", "to": 7, "relationType": "calls"}]}),
            "relations[0].to must be a string, not a number",
        ),
        (
            Operation::AddObservations,
            json!({"observations": [{"entityName": "a", "contents": [""]}]}),
            "observations[0].contents[0] is empty",
        ),
        (
            Operation::DeleteObservations,
            json!({"deletions": [{"entityName": "a"}]}),
            "deletions[0].observations is required",
        ),
        (
            Operation::DeleteEntities,
            json!({"entityNames": hundred_and_one}),
            "entityNames has 101 items; at most 100 per call",
        ),
        (Operation::OpenNodes, json!({"names": ["a", null]}), "names[1] must be a string, not null"),
        (Operation::SearchNodes, json!({"query": ["a"]}), "query must be a string, not an array"),
        (Operation::ReadGraph, json!({"limit": 5}), "the arguments have an unknown field \"limit\"; none are taken"),
    ];
    for (operation, input, expect) in cases {
        check_refused(operation, input, expect);
    }
}

#[test]
fn names_and_observations_are_trimmed_and_repeats_dropped() {
    let parsed = Operation::CreateEntities.parse(&arguments(json!({"entities": [
        {"name": " payments-api ", "entityType": "service\n", "observations": ["a ", "a", "b"]}
    ]})));
    let Ok(Request::CreateEntities(entities)) = parsed else { panic!("refused") };
    assert_eq!(
        entities,
        [NewMemoryEntity {
            name: "payments-api".to_string(),
            entity_type: "service".to_string(),
            observations: vec!["a".to_string(), "b".to_string()],
        }]
    );
    // Deleting counts what it did not find, so a repeated observation must not count twice.
    let parsed = Operation::DeleteObservations
        .parse(&arguments(json!({"deletions": [{"entityName": "a", "observations": ["x", "x ", "y"]}]})));
    let Ok(Request::DeleteObservations(groups)) = parsed else { panic!("refused") };
    assert_eq!(
        groups,
        [MemoryObservations { entity: "a".to_string(), contents: vec!["x".to_string(), "y".to_string()] }]
    );
    let Ok(Request::SearchNodes(query)) = Operation::SearchNodes.parse(&arguments(json!({"query": ""}))) else {
        panic!("an empty query matches everything, as in server-memory")
    };
    assert_eq!(query, "");
}

#[test]
fn writes_plan_what_they_name() {
    let plan = |operation: Operation, input: Value| -> Option<Plan> {
        operation.parse(&arguments(input)).ok().and_then(|request| request.plan())
    };
    let deleting =
        plan(Operation::DeleteEntities, json!({"entityNames": ["payments-api", "checkout", "payments-api"]}));
    let deleting = deleting.expect("a plan");
    assert_eq!((deleting.blast_radius, deleting.unit.as_str()), (2, "entities"));
    assert_eq!(
        deleting.summary,
        "delete up to 2 entities, with their observations and the relations to or from them: payments-api, checkout"
    );
    let adding = plan(
        Operation::AddObservations,
        json!({"observations": [{"entityName": "a", "contents": ["x", "y"]}, {"entityName": "b", "contents": ["z"]}]}),
    )
    .expect("a plan");
    assert_eq!((adding.blast_radius, adding.summary.as_str()), (3, "add up to 3 observations of 2 entities: a, b"));
    assert_eq!(plan(Operation::ReadGraph, json!({})), None);
}

fn entity(name: String, n_observations: usize, length: usize) -> MemoryEntity {
    MemoryEntity {
        observations: (0..n_observations).map(|index| format!("{index:04} {}", "x".repeat(length))).collect(),
        entity_type: "service".to_string(),
        name,
        created_at: String::new(),
        created_by: String::new(),
        updated_at: String::new(),
    }
}

fn relation(index: usize) -> MemoryRelation {
    MemoryRelation {
        from: format!("service-{index}"),
        to: format!("service-{}", index + 1),
        relation_type: "calls".to_string(),
    }
}

#[test]
fn a_graph_in_budget_is_whole_in_both_renderings() {
    let graph = MemoryGraph {
        entities: vec![entity("payments-api".to_string(), 2, 3)],
        relations: vec![MemoryRelation {
            from: "payments-api".to_string(),
            to: "postgres-main".to_string(),
            relation_type: "depends_on".to_string(),
        }],
        truncated: false,
    };
    let rendered = graph_output("the memory graph: 1 entity, 1 relation".to_string(), &graph, OutputBudget::default())
        .render(0, OutputBudget::default());
    assert_eq!(
        rendered.text,
        "the memory graph: 1 entity, 1 relation\npayments-api (service)\n  - 0000 xxx\n  - 0001 xxx\nrelations:\n  \
         payments-api -[depends_on]-> postgres-main"
    );
    assert_eq!(
        rendered.structured,
        json!({
            "entities": [{"name": "payments-api", "entityType": "service", "observations": ["0000 xxx", "0001 xxx"]}],
            "relations": [{"from": "payments-api", "to": "postgres-main", "relationType": "depends_on"}],
            "truncated": false
        })
    );
}

#[test]
fn a_large_graph_is_cut_to_the_budget_and_says_so() {
    let graph = MemoryGraph {
        entities: (0..300).map(|index| entity(format!("service-{index}"), 5, 40)).collect(),
        relations: (0..300).map(relation).collect(),
        truncated: false,
    };
    for max_bytes in [4_000, 16_000, 64_000] {
        let budget = OutputBudget { max_bytes };
        let rendered = graph_output("the memory graph".to_string(), &graph, budget).render(0, budget);
        let size = rendered.text.len() + rendered.structured.to_string().len();
        assert!(size <= max_bytes, "{size} > {max_bytes}");
        assert!(rendered.truncated);
        assert_eq!(rendered.structured["truncated"], json!(true));
        let n_entities = rendered.structured["entities"].as_array().map(Vec::len).unwrap_or(0);
        let n_relations = rendered.structured["relations"].as_array().map(Vec::len).unwrap_or(0);
        assert!(n_entities > 0 && n_relations > 0, "{max_bytes}: both lists get room");
        assert!(
            rendered.text.contains(&format!("showing {n_entities} of 300 entities and {n_relations} of 300 relations")),
            "{}",
            rendered.text
        );
    }
}

#[test]
fn one_entity_larger_than_the_budget_shows_the_observations_that_fit() {
    let graph = MemoryGraph { entities: vec![entity("runbook".to_string(), 100, 1_900)], ..MemoryGraph::default() };
    let budget = OutputBudget::default();
    let rendered = graph_output("1 entity".to_string(), &graph, budget).render(0, budget);
    assert!(rendered.text.len() + rendered.structured.to_string().len() <= budget.max_bytes);
    let shown = rendered.structured["entities"][0]["observations"].as_array().map(Vec::len).unwrap_or(0);
    assert!(shown > 0 && shown < 100, "{shown}");
    assert!(rendered.text.contains(&format!("… {} more not shown", 100 - shown)), "{}", rendered.text);
    assert!(rendered.truncated);
}

#[test]
fn write_results_are_server_memorys_shapes() {
    let given = vec![
        NewMemoryEntity { name: "a".to_string(), entity_type: "service".to_string(), observations: vec![] },
        NewMemoryEntity { name: "b".to_string(), entity_type: "service".to_string(), observations: vec![] },
        NewMemoryEntity { name: "a".to_string(), entity_type: "team".to_string(), observations: vec![] },
    ];
    let created = vec![entity("a".to_string(), 0, 0)];
    let rendered =
        created_entities_output(&given, &created, OutputBudget::default()).render(0, OutputBudget::default());
    assert_eq!(rendered.text, "created 1 entity; skipped 2 whose name exists: b, a\na (service)");
    assert_eq!(
        rendered.structured,
        json!({"entities": [{"name": "a", "entityType": "service", "observations": []}], "truncated": false})
    );

    let added = vec![MemoryObservations { entity: "a".to_string(), contents: vec!["x".to_string()] }];
    let given = vec![MemoryObservations { entity: "a".to_string(), contents: vec!["x".to_string(), "y".to_string()] }];
    let rendered =
        added_observations_output(&given, &added, OutputBudget::default()).render(0, OutputBudget::default());
    assert_eq!(
        rendered.structured,
        json!({"results": [{"entityName": "a", "addedObservations": ["x"]}], "truncated": false})
    );
    assert_eq!(rendered.text, "added 1 observation to 1 entity; skipped 1 the entity has\na\n  - x");

    let rendered = deleted_output("deleted 2 relations".to_string()).render(0, OutputBudget::default());
    assert_eq!(rendered.structured, json!({"success": true, "message": "deleted 2 relations", "truncated": false}));
}
