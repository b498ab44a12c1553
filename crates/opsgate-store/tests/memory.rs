//! Agent memory in the store, on SQLite and on PostgreSQL: each operation with server-memory's
//! semantics (existing names and duplicates skipped, an unknown entity fails adding observations
//! and adds nothing, deleting an entity takes its observations and relations), search that takes
//! `%` and `_` literally, and a graph that is still there after the store is reopened.

use std::time::Duration;

use anyhow::Result;
use opsgate_store::{MemoryError, MemoryGraph, MemoryObservations, MemoryRelation, NewMemoryEntity, Store};
use support::stores;

mod support;

fn entity(name: &str, entity_type: &str, observations: &[&str]) -> NewMemoryEntity {
    NewMemoryEntity {
        name: name.to_string(),
        entity_type: entity_type.to_string(),
        observations: observations.iter().map(|text| text.to_string()).collect(),
    }
}

fn relation(from: &str, relation_type: &str, to: &str) -> MemoryRelation {
    MemoryRelation { from: from.to_string(), to: to.to_string(), relation_type: relation_type.to_string() }
}

fn observations(entity: &str, contents: &[&str]) -> MemoryObservations {
    MemoryObservations { entity: entity.to_string(), contents: contents.iter().map(|text| text.to_string()).collect() }
}

fn names(graph: &MemoryGraph) -> Vec<&str> {
    graph.entities.iter().map(|entity| entity.name.as_str()).collect()
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| value.to_string()).collect()
}

/// payments-api → postgres-main, checkout → payments-api, with a few observations.
async fn seed(store: &Store) -> Result<()> {
    store
        .create_memory_entities(
            &[
                entity("payments-api", "service", &["owned by team-payments", "deploys on Tuesdays"]),
                entity("postgres-main", "database", &["primary in eu-west-1"]),
                entity("checkout", "service", &[]),
            ],
            "key:agent",
        )
        .await?;
    store
        .create_memory_relations(
            &[relation("payments-api", "depends_on", "postgres-main"), relation("checkout", "calls", "payments-api")],
            "key:agent",
        )
        .await?;
    Ok(())
}

#[tokio::test]
async fn creating_entities_skips_taken_names_and_returns_those_created() -> Result<()> {
    for (store, _dir) in stores("memory_create_entities").await? {
        let backend = store.backend();
        let created = store
            .create_memory_entities(
                &[entity(
                    "payments-api",
                    "service",
                    &["owned by team-payments", "owned by team-payments", "p99 120ms"],
                )],
                "key:agent",
            )
            .await?;
        assert_eq!(created.len(), 1, "{backend}");
        assert_eq!(created[0].observations, strings(&["owned by team-payments", "p99 120ms"]), "{backend}: once each");
        assert_eq!(created[0].created_by, "key:agent");

        // A taken name, also one taken earlier in the same call, is skipped with its observations.
        let created = store
            .create_memory_entities(
                &[
                    entity("payments-api", "database", &["not added"]),
                    entity("checkout", "service", &["first"]),
                    entity("checkout", "team", &["second"]),
                ],
                "user:alice",
            )
            .await?;
        let created: Vec<(&str, &str, &str)> = created
            .iter()
            .map(|entity| (entity.name.as_str(), entity.entity_type.as_str(), entity.created_by.as_str()))
            .collect();
        assert_eq!(created, [("checkout", "service", "user:alice")], "{backend}");

        let graph = store.memory_graph(100).await?;
        assert_eq!(names(&graph), ["payments-api", "checkout"], "{backend}: in the order created");
        assert_eq!(graph.entities[0].entity_type, "service", "{backend}");
        assert_eq!(graph.entities[0].observations, strings(&["owned by team-payments", "p99 120ms"]), "{backend}");
        assert_eq!(graph.entities[1].observations, strings(&["first"]), "{backend}");
        assert!(!graph.truncated);
    }
    Ok(())
}

#[tokio::test]
async fn creating_relations_skips_duplicates_and_allows_ends_not_created_yet() -> Result<()> {
    for (store, _dir) in stores("memory_create_relations").await? {
        let backend = store.backend();
        seed(&store).await?;
        let created = store
            .create_memory_relations(
                &[
                    relation("payments-api", "depends_on", "postgres-main"),
                    relation("payments-api", "reads_from", "postgres-main"),
                    relation("payments-api", "reads_from", "postgres-main"),
                    relation("postgres-main", "depends_on", "payments-api"),
                    relation("payments-api", "publishes_to", "kafka-main"),
                ],
                "key:agent",
            )
            .await?;
        assert_eq!(
            created,
            [
                relation("payments-api", "reads_from", "postgres-main"),
                relation("postgres-main", "depends_on", "payments-api"),
                relation("payments-api", "publishes_to", "kafka-main"),
            ],
            "{backend}: only the new ones, direction and type count"
        );
        let graph = store.memory_graph(100).await?;
        assert_eq!(graph.relations.len(), 5, "{backend}");
        assert_eq!(graph.relations[0], relation("payments-api", "depends_on", "postgres-main"), "{backend}");
        assert_eq!(graph.relations[4], relation("payments-api", "publishes_to", "kafka-main"), "{backend}");
    }
    Ok(())
}

#[tokio::test]
async fn adding_observations_skips_duplicates_and_an_unknown_entity_adds_nothing() -> Result<()> {
    for (store, _dir) in stores("memory_add_observations").await? {
        let backend = store.backend();
        seed(&store).await?;
        // Stored times have milliseconds: a change made now is later than the seed.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let added = store
            .add_memory_observations(
                &[
                    observations("payments-api", &["deploys on Tuesdays", "rolled back v1.8.0", "rolled back v1.8.0"]),
                    observations("checkout", &["owned by team-web"]),
                ],
                "user:bob",
            )
            .await?;
        assert_eq!(
            added,
            [observations("payments-api", &["rolled back v1.8.0"]), observations("checkout", &["owned by team-web"])],
            "{backend}"
        );

        let refused = store
            .add_memory_observations(
                &[observations("checkout", &["would be added"]), observations("ghost", &["nobody"])],
                "user:bob",
            )
            .await;
        match refused {
            Err(MemoryError::UnknownEntity(name)) => assert_eq!(name, "ghost", "{backend}"),
            other => panic!("{backend}: {other:?}"),
        }

        let graph = store.open_memory_nodes(&strings(&["payments-api", "checkout"]), 100).await?;
        assert_eq!(
            graph.entities[0].observations,
            strings(&["owned by team-payments", "deploys on Tuesdays", "rolled back v1.8.0"]),
            "{backend}: in the order added"
        );
        assert_eq!(
            graph.entities[1].observations,
            strings(&["owned by team-web"]),
            "{backend}: nothing of the refused call"
        );
        let graph = store.memory_graph(100).await?;
        let touched: Vec<(&str, bool)> =
            graph.entities.iter().map(|entity| (entity.name.as_str(), entity.updated_at > entity.created_at)).collect();
        assert_eq!(
            touched,
            [("payments-api", true), ("postgres-main", false), ("checkout", true)],
            "{backend}: updated_at moves where observations were added"
        );
    }
    Ok(())
}

#[tokio::test]
async fn deleting_an_entity_deletes_its_observations_and_relations() -> Result<()> {
    for (store, _dir) in stores("memory_delete_entities").await? {
        let backend = store.backend();
        seed(&store).await?;
        let deleted = store.delete_memory_entities(&strings(&["payments-api", "ghost"])).await?;
        assert_eq!((deleted.n_entities, deleted.n_observations, deleted.n_relations), (1, 2, 2), "{backend}");
        let graph = store.memory_graph(100).await?;
        assert_eq!(names(&graph), ["postgres-main", "checkout"], "{backend}");
        assert_eq!(graph.relations, [], "{backend}: relations to and from it are gone");

        // The name is free again, and the old observations do not come back with it.
        let created = store.create_memory_entities(&[entity("payments-api", "service", &[])], "key:agent").await?;
        assert_eq!(created.len(), 1, "{backend}");
        let graph = store.open_memory_nodes(&strings(&["payments-api"]), 100).await?;
        assert_eq!(graph.entities[0].observations, Vec::<String>::new(), "{backend}");
    }
    Ok(())
}

#[tokio::test]
async fn deleting_observations_and_relations_skips_what_is_not_there() -> Result<()> {
    for (store, _dir) in stores("memory_delete_parts").await? {
        let backend = store.backend();
        seed(&store).await?;
        store
            .add_memory_observations(&[observations("payments-api", &["p99 120ms", "rolled back v1.8.0"])], "key:agent")
            .await?;
        let updated_at = |graph: &MemoryGraph| -> Vec<String> {
            graph.entities.iter().map(|entity| entity.updated_at.clone()).collect()
        };
        let before = updated_at(&store.memory_graph(100).await?);
        tokio::time::sleep(Duration::from_millis(5)).await;
        let n_deleted = store
            .delete_memory_observations(&[
                observations("payments-api", &["deploys on Tuesdays", "never said"]),
                observations("ghost", &["nothing"]),
            ])
            .await?;
        assert_eq!(n_deleted, 1, "{backend}");
        let graph = store.open_memory_nodes(&strings(&["payments-api"]), 100).await?;
        assert_eq!(
            graph.entities[0].observations,
            strings(&["owned by team-payments", "p99 120ms", "rolled back v1.8.0"]),
            "{backend}: the others keep their order"
        );
        let after = updated_at(&store.memory_graph(100).await?);
        assert!(after[0] > before[0], "{backend}: payments-api lost an observation");
        assert_eq!(after[1..], before[1..], "{backend}: the others did not");

        let n_deleted = store
            .delete_memory_relations(&[
                relation("payments-api", "depends_on", "postgres-main"),
                relation("payments-api", "depends_on", "checkout"),
                relation("postgres-main", "depends_on", "payments-api"),
            ])
            .await?;
        assert_eq!(n_deleted, 1, "{backend}");
        let graph = store.memory_graph(100).await?;
        assert_eq!(graph.relations, [relation("checkout", "calls", "payments-api")], "{backend}");
        assert_eq!(graph.entities.len(), 3, "{backend}: deleting relations leaves the entities");
    }
    Ok(())
}

#[tokio::test]
async fn search_matches_names_types_and_observations_ignoring_case() -> Result<()> {
    for (store, _dir) in stores("memory_search").await? {
        let backend = store.backend();
        seed(&store).await?;
        store
            .create_memory_entities(
                &[
                    entity("cache_100%", "cache", &["evicts at 80% memory"]),
                    entity("cacheX100y", "cache", &[]),
                    entity("kafka-main", "queue", &[]),
                ],
                "key:agent",
            )
            .await?;
        store.create_memory_relations(&[relation("payments-api", "publishes_to", "kafka-main")], "key:agent").await?;

        let found = store.search_memory("PAYMENTS", 100).await?;
        assert_eq!(names(&found), ["payments-api"], "{backend}: by name, any case");
        assert_eq!(
            found.relations,
            [
                relation("payments-api", "depends_on", "postgres-main"),
                relation("checkout", "calls", "payments-api"),
                relation("payments-api", "publishes_to", "kafka-main"),
            ],
            "{backend}: every relation to or from what matched"
        );
        assert_eq!(names(&store.search_memory("Database", 100).await?), ["postgres-main"], "{backend}: by type");
        assert_eq!(names(&store.search_memory("eu-WEST", 100).await?), ["postgres-main"], "{backend}: by observation");
        assert_eq!(names(&store.search_memory("service", 100).await?), ["payments-api", "checkout"], "{backend}");

        // `%` and `_` are the characters themselves, not wildcards.
        assert_eq!(names(&store.search_memory("cache_100%", 100).await?), ["cache_100%"], "{backend}");
        assert_eq!(names(&store.search_memory("_", 100).await?), ["cache_100%"], "{backend}");
        assert_eq!(names(&store.search_memory("80%", 100).await?), ["cache_100%"], "{backend}");
        assert_eq!(names(&store.search_memory("e\\1", 100).await?), Vec::<&str>::new(), "{backend}");
        let nothing = store.search_memory("no such thing", 100).await?;
        assert_eq!((nothing.entities.len(), nothing.relations.len()), (0, 0), "{backend}");

        // An empty query matches everything, as server-memory's does; the limit cuts.
        let all = store.search_memory("", 2).await?;
        assert_eq!(names(&all), ["payments-api", "postgres-main"], "{backend}");
        assert!(all.truncated, "{backend}");
    }
    Ok(())
}

#[tokio::test]
async fn open_nodes_returns_the_named_entities_and_their_relations() -> Result<()> {
    for (store, _dir) in stores("memory_open").await? {
        let backend = store.backend();
        seed(&store).await?;
        let opened = store.open_memory_nodes(&strings(&["postgres-main", "ghost", "checkout"]), 100).await?;
        assert_eq!(names(&opened), ["postgres-main", "checkout"], "{backend}: unknown names skipped, in stored order");
        assert_eq!(
            opened.relations,
            [relation("payments-api", "depends_on", "postgres-main"), relation("checkout", "calls", "payments-api")],
            "{backend}"
        );
        assert_eq!(opened.entities[0].observations, strings(&["primary in eu-west-1"]), "{backend}");
        let none = store.open_memory_nodes(&[], 100).await?;
        assert_eq!(none, MemoryGraph::default());
    }
    Ok(())
}

#[tokio::test]
async fn reads_are_limited_and_say_so() -> Result<()> {
    for (store, _dir) in stores("memory_limit").await? {
        let backend = store.backend();
        seed(&store).await?;
        let graph = store.memory_graph(2).await?;
        assert_eq!(names(&graph), ["payments-api", "postgres-main"], "{backend}");
        assert_eq!(graph.relations.len(), 2, "{backend}");
        assert!(graph.truncated, "{backend}");
        assert!(!store.memory_graph(3).await?.truncated, "{backend}: exactly the limit is not truncated");
    }
    Ok(())
}

#[tokio::test]
async fn the_graph_survives_reopening_the_store() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let postgres_url = opsgate_testkit::Postgres::shared().await?.create_database("memory_reopen").await?;
    for location in [dir.path().display().to_string(), postgres_url] {
        let store = Store::open(&location).await?;
        let backend = store.backend();
        seed(&store).await?;
        store.close().await;

        let store = Store::open(&location).await?;
        let graph = store.memory_graph(100).await?;
        assert_eq!(names(&graph), ["payments-api", "postgres-main", "checkout"], "{backend}");
        assert_eq!(graph.entities[0].observations, strings(&["owned by team-payments", "deploys on Tuesdays"]));
        assert_eq!(graph.entities[0].created_by, "key:agent", "{backend}");
        assert_eq!(graph.relations.len(), 2, "{backend}");
        // Duplicates are still recognised after the restart.
        assert_eq!(store.create_memory_entities(&[entity("checkout", "service", &[])], "key:agent").await?, []);
        store.close().await;
    }
    Ok(())
}
