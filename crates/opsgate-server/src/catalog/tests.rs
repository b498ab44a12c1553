//! The catalog's rules on text (parsing, references, the graph, problems), the loader and its
//! watcher on temporary directories, the dependency tool with a health source whose answers the
//! test sets, and the resources.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use opsgate_core::{CallContext, NoClient, OutputBudget, Tool, ToolError, ToolOutput};
use serde_json::{Value, json};

use super::load::load_with_fingerprint;
use super::*;

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/catalog")
}

fn testdata_sources() -> CatalogSources {
    CatalogSources { paths: vec![testdata()], runbooks: vec![testdata().join("runbooks")] }
}

fn key(text: &str) -> EntityRef {
    EntityRef::parse(text, "component").map(|(key, _)| key).unwrap_or_else(|error| panic!("{error}"))
}

fn problems(catalog: &Catalog) -> Vec<String> {
    catalog.problems().iter().map(ToString::to_string).collect()
}

// ---------------------------------------------------------------------------------------------
// References and parsing

#[test]
fn entity_refs_follow_backstage_syntax() {
    let check = |text: &str, expect: Result<(&str, bool), ()>| {
        let parsed = EntityRef::parse(text, "component").map(|(key, kind_written)| (key.to_string(), kind_written));
        match expect {
            Ok((shown, kind_written)) => assert_eq!(parsed, Ok((shown.to_string(), kind_written)), "{text}"),
            Err(()) => assert!(parsed.is_err(), "{text} parsed as {parsed:?}"),
        }
    };
    check("payments-db", Ok(("component:default/payments-db", false)));
    check("component:payments-db", Ok(("component:default/payments-db", true)));
    check("resource:default/orders-db", Ok(("resource:default/orders-db", true)));
    check("Component:Billing/Auth", Ok(("component:billing/auth", true)));
    check("billing/auth", Ok(("component:billing/auth", false)));
    check(" api:checkout-api ", Ok(("api:default/checkout-api", true)));
    for bad in ["", "component:", "a/b/c", ":x", "default/", "two words", "a:b:c"] {
        check(bad, Err(()));
    }
    assert_eq!(key("resource:default/orders-db").short("component"), "resource:orders-db");
    assert_eq!(key("component:billing/auth").short("component"), "billing/auth");
}

#[test]
fn documents_split_at_markers_with_their_first_line() {
    let text = "# comment\nkind: A\n---\nkind: B\n--- {kind: C}\n...\n---\n\nkind: D\n";
    let documents: Vec<(usize, String)> = split_documents(text);
    let starts: Vec<usize> = documents.iter().map(|(line, _)| *line).collect();
    assert_eq!(starts, [1, 3, 5, 7]);
    assert!(documents[2].1.contains("{kind: C}"), "{:?}", documents[2]);
    // A block scalar's `---` indented is content, not a marker.
    let block = "kind: A\ntext: |\n  ---\n  more\n";
    assert_eq!(split_documents(block).len(), 1);
}

const PAYMENTS: &str = r#"apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: payments
  title: Payments
  annotations:
    opsgate.dev/prometheus-target: main
    opsgate.dev/runbook: payments/high-error-rate, https://runbooks.example.com/payments
  links:
    - url: https://wiki.example.com/payments
      title: Wiki
    - url: https://wiki.example.com/payments/oncall
      title: On-call Runbook
    - url: https://docs.example.com/x
      type: runbook
spec:
  type: service
  lifecycle: production
  owner: group:default/team-payments
  system: payments-platform
  dependsOn: ['resource:payments-db', 'component:billing/ledger']
  providesApis: [payments-api]
"#;

#[test]
fn a_component_keeps_its_fields_runbooks_and_metrics_link() {
    let (entities, problems) = parse_file(PAYMENTS, "payments.yaml");
    assert!(problems.is_empty(), "{problems:?}");
    let [payments] = entities.as_slice() else { panic!("{entities:?}") };
    assert_eq!(payments.kind, EntityKind::Component);
    assert_eq!(payments.namespace, "default");
    assert_eq!(payments.title.as_deref(), Some("Payments"));
    assert_eq!(payments.owner_short().as_deref(), Some("team-payments"));
    assert_eq!(payments.system_short().as_deref(), Some("payments-platform"));
    assert_eq!(payments.depends_on, ["resource:payments-db", "component:billing/ledger"]);
    assert_eq!(payments.provides_apis, ["payments-api"]);
    assert_eq!(
        payments.runbooks,
        [
            "payments/high-error-rate",
            "https://runbooks.example.com/payments",
            "https://wiki.example.com/payments/oncall",
            "https://docs.example.com/x"
        ],
        "the annotation's entries, then links whose title or type mentions runbook"
    );
    // No opsgate.dev/service: the metrics' service label value is the entity's name.
    assert_eq!(payments.metrics, Some(MetricsLink { target: "main".to_string(), service: "payments".to_string() }));
    assert_eq!(payments.source, Source { file: "payments.yaml".to_string(), line: 1 });
}

#[test]
fn a_broken_document_is_a_problem_with_its_file_line_and_the_others_load() {
    let text = "\
kind: Component
metadata: {name: one}
---
kind: Component
metadata:
  name: two
  tags: [a, b
---
kind: Resource
metadata: {name: three}
spec:
  dependsOn: component:one
---
kind: Component
spec: {owner: x}
---
- just
- a list
---
metadata: {name: kindless}
---
kind: User
metadata: {name: someone}
spec: {memberOf: [whatever]}
---
kind: System
metadata: {name: 'bad/name'}
";
    let (entities, problems) = parse_file(text, "catalog/shop.yaml");
    let names: Vec<&str> = entities.iter().map(|entity| entity.name.as_str()).collect();
    assert_eq!(names, ["one"], "only the valid entity loads; User is skipped quietly");
    let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(shown.len(), 6, "{shown:#?}");
    // A syntax error: the line of the error in the file, not in its document.
    assert!(shown[0].starts_with("catalog/shop.yaml:8: did not find expected ',' or ']'"), "{}", shown[0]);
    // A wrong type names the key and its line.
    assert!(shown[1].starts_with("catalog/shop.yaml:12: spec.dependsOn: invalid type: string"), "{}", shown[1]);
    assert!(shown[2].starts_with("catalog/shop.yaml:14: missing field `metadata`"), "{}", shown[2]);
    assert_eq!(
        shown[3],
        "catalog/shop.yaml:17: a catalog entity is a mapping with apiVersion, kind, metadata and spec"
    );
    assert_eq!(shown[4], "catalog/shop.yaml:20: the document has no kind");
    assert!(shown[5].starts_with("catalog/shop.yaml:26: metadata.name \"bad/name\""), "{}", shown[5]);
    assert!(problems.iter().all(|problem| problem.severity == Severity::Error));
}

// ---------------------------------------------------------------------------------------------
// The catalog: duplicates, unknown dependencies, the graph

fn catalog_of(files: &[(&str, &str)], runbooks: &[&str]) -> Catalog {
    let mut entities = Vec::new();
    let mut problems = Vec::new();
    for (file, text) in files {
        let (found, found_problems) = parse_file(text, file);
        entities.extend(found);
        problems.extend(found_problems);
    }
    let runbooks =
        runbooks.iter().map(|id| Runbook::new(id.to_string(), format!("# {id}\n"), format!("{id}.md"))).collect();
    Catalog::build(entities, runbooks, problems)
}

fn component(name: &str, depends_on: &[&str]) -> String {
    format!("kind: Component\nmetadata: {{name: {name}}}\nspec:\n  owner: team\n  dependsOn: {depends_on:?}\n---\n")
}

#[test]
fn a_duplicate_is_replaced_by_the_last_and_reported_where_it_was_defined_again() {
    let first = component("payments", &["component:a"]);
    let second = "kind: Component\nmetadata: {name: Payments}\nspec: {owner: other}\n";
    let catalog = catalog_of(&[("a.yaml", &first), ("b.yaml", second)], &[]);
    assert_eq!(catalog.find("payments").and_then(|entity| entity.owner.as_deref()), Some("other"));
    // The replaced definition's dependency on the missing `a` went with it: no problem about it.
    assert_eq!(
        problems(&catalog),
        ["b.yaml:1: component:default/payments is defined again; this definition replaces the one at a.yaml:1"]
    );
}

#[test]
fn unknown_dependencies_are_kept_and_reported_and_a_kindless_one_finds_a_resource() {
    let text = format!(
        "{}{}kind: Resource\nmetadata: {{name: payments-db}}\n",
        component("checkout", &["payments", "resource:default/orders-db"]),
        component("payments", &["payments-db"])
    );
    let catalog = catalog_of(&[("shop.yaml", &text)], &[]);
    let checkout = key("checkout");
    assert_eq!(catalog.dependencies(&checkout), [key("payments"), key("resource:orders-db")]);
    assert_eq!(catalog.dependencies(&key("payments")), [key("resource:payments-db")], "no component payments-db");
    assert_eq!(catalog.dependents(&key("resource:orders-db")), [key("checkout")]);
    assert_eq!(
        problems(&catalog),
        ["shop.yaml:1: component:default/checkout depends on resource:default/orders-db, which is not in the catalog"]
    );
    assert!(catalog.problems().iter().all(|problem| problem.severity == Severity::Warning));
    assert_eq!(catalog.display_name(&key("resource:orders-db")), "resource:orders-db");
}

#[test]
fn walks_go_to_their_depth_each_entity_once_and_survive_cycles() {
    let text = [
        component("storefront", &["component:checkout"]),
        component("checkout", &["component:payments", "component:auth"]),
        component("payments", &["resource:payments-db", "component:checkout"]),
        component("auth", &[]),
        "kind: Resource\nmetadata: {name: payments-db}\n".to_string(),
    ]
    .concat();
    let catalog = catalog_of(&[("shop.yaml", &text)], &[]);
    let reached = |start: &str, direction: Direction, depth: usize| -> Vec<(String, usize)> {
        catalog
            .walk(&key(start), direction, depth)
            .into_iter()
            .map(|step| (catalog.display_name(&step.entity), step.distance))
            .collect()
    };
    let pairs = |items: &[(&str, usize)]| -> Vec<(String, usize)> {
        items.iter().map(|(name, distance)| (name.to_string(), *distance)).collect()
    };
    assert_eq!(reached("checkout", Direction::Upstream, 1), pairs(&[("payments", 1), ("auth", 1)]));
    assert_eq!(
        reached("checkout", Direction::Upstream, 5),
        pairs(&[("payments", 1), ("auth", 1), ("payments-db", 2)]),
        "payments depends on checkout again; the cycle ends the walk"
    );
    assert_eq!(reached("checkout", Direction::Downstream, 1), pairs(&[("payments", 1), ("storefront", 1)]));
    assert_eq!(
        reached("resource:payments-db", Direction::Downstream, 3),
        pairs(&[("payments", 1), ("checkout", 2), ("storefront", 3)])
    );
}

#[test]
fn a_bare_name_prefers_a_component_in_the_default_namespace_and_close_names_are_suggested() {
    let text = "\
kind: Resource
metadata: {name: payments}
---
kind: Component
metadata: {name: payments, namespace: billing}
---
kind: Component
metadata: {name: payments}
---
kind: Component
metadata: {name: checkout}
";
    let catalog = catalog_of(&[("a.yaml", text)], &[]);
    let found = |name: &str| catalog.find(name).map(|entity| entity.entity_ref().to_string());
    assert_eq!(found("payments").as_deref(), Some("component:default/payments"));
    assert_eq!(found("billing/payments").as_deref(), Some("component:billing/payments"));
    assert_eq!(found("resource:payments").as_deref(), Some("resource:default/payments"));
    assert_eq!(found("PAYMENTS").as_deref(), Some("component:default/payments"), "names compare without case");
    assert_eq!(found("payment"), None);
    assert_eq!(catalog.close_matches("payment", 5), ["payments"]);
    assert_eq!(catalog.close_matches("chekout", 5), ["checkout"]);
    assert!(catalog.close_matches("zzz", 5).is_empty());
}

#[test]
fn runbooks_resolve_to_their_resource_and_an_unknown_id_is_reported() {
    let text = "kind: Component\nmetadata:\n  name: payments\n  annotations:\n    opsgate.dev/runbook: payments/high-error-rate,missing,https://x.example/rb\n";
    let catalog = catalog_of(&[("a.yaml", text)], &["payments/high-error-rate"]);
    let payments = catalog.find("payments").cloned().unwrap_or_else(|| panic!("payments"));
    let uris: Vec<String> = catalog.runbook_links(&payments).into_iter().map(|link| link.uri).collect();
    assert_eq!(uris, ["opsgate://runbooks/payments/high-error-rate", "missing", "https://x.example/rb"]);
    assert_eq!(
        problems(&catalog),
        [
            "a.yaml:1: component:default/payments names runbook \"missing\", which is neither a URL nor in the runbook directories"
        ]
    );
}

/// A runbook id written with slashes around it is the same runbook everywhere: resolved, not
/// reported, and indexed for `search_context` with the service that names it (the index looked
/// the id up as written, and found no service).
#[tokio::test]
async fn a_runbook_id_written_with_slashes_is_indexed_with_its_service() -> anyhow::Result<()> {
    let text = "kind: Component\nmetadata:\n  name: payments\n  annotations:\n    opsgate.dev/runbook: /payments/high-error-rate/\n";
    let catalog = catalog_of(&[("a.yaml", text)], &["payments/high-error-rate"]);
    assert_eq!(problems(&catalog), Vec::<String>::new());
    let payments = catalog.find("payments").cloned().unwrap_or_else(|| panic!("payments"));
    let uris: Vec<String> = catalog.runbook_links(&payments).into_iter().map(|link| link.uri).collect();
    assert_eq!(uris, ["opsgate://runbooks/payments/high-error-rate"]);

    let dir = tempfile::tempdir()?;
    let store = opsgate_store::Store::open_sqlite(dir.path()).await?;
    index_runbooks(&store, &catalog).await;
    let query =
        opsgate_store::SearchQuery { text: "error rate".to_string(), kinds: vec!["runbook".to_string()], limit: 10 };
    let hits: Vec<(String, Option<String>)> =
        store.search(&query).await?.hits.into_iter().map(|hit| (hit.reference, hit.service)).collect();
    assert_eq!(hits, [("payments/high-error-rate".to_string(), Some("payments".to_string()))]);
    store.close().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Loading and reloading

#[test]
fn the_testdata_catalog_loads_with_its_one_unknown_dependency() {
    let catalog = load_with_fingerprint(&testdata_sources()).0;
    assert_eq!(catalog.count(EntityKind::Component), 4, "storefront, checkout, payments, auth");
    assert_eq!(catalog.count(EntityKind::Resource), 1);
    assert_eq!(catalog.count(EntityKind::System), 2);
    let ids: Vec<&str> = catalog.runbooks().map(|runbook| runbook.id.as_str()).collect();
    assert_eq!(ids, ["checkout", "payments/high-error-rate"]);
    assert_eq!(
        catalog.runbook("payments/high-error-rate").map(|runbook| runbook.title.as_str()),
        Some("Payments: high error rate")
    );
    let shown = problems(&catalog);
    assert_eq!(shown.len(), 1, "{shown:#?}");
    assert!(shown[0].ends_with("checkout/catalog-info.yaml:1: component:default/checkout depends on resource:default/orders-db, which is not in the catalog"), "{}", shown[0]);
    let payments = catalog.find("payments").cloned().unwrap_or_else(|| panic!("payments"));
    assert_eq!(payments.metrics, Some(MetricsLink { target: "main".to_string(), service: "payments-api".to_string() }));
    assert_eq!(payments.prometheus_rules.len(), 1);
    assert_eq!(catalog.dependents(&key("checkout")), [key("storefront")]);
}

#[test]
fn a_missing_path_and_an_unreadable_file_are_problems_and_the_rest_loads() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("nested/deeper"))?;
    std::fs::write(dir.path().join("nested/deeper/a.yml"), component("a", &[]))?;
    std::fs::write(dir.path().join("nested/broken.yaml"), "kind: Component\nmetadata: {name: [\n")?;
    std::fs::write(dir.path().join("nested/notes.txt"), "not a catalog file")?;
    std::fs::write(dir.path().join(".hidden.yaml"), "not: [read")?;
    let sources = CatalogSources {
        paths: vec![dir.path().to_path_buf(), dir.path().join("gone.yaml")],
        runbooks: vec![dir.path().join("no-runbooks")],
    };
    let catalog = load_with_fingerprint(&sources).0;
    assert!(catalog.find("a").is_some());
    let shown = problems(&catalog);
    assert_eq!(shown.len(), 3, "{shown:#?}");
    let path = |name: &str| dir.path().join(name).display().to_string();
    assert_eq!(shown[0], format!("{}: no such file or directory", path("gone.yaml")));
    assert!(shown[1].starts_with(&format!("{}:3: ", path("nested/broken.yaml"))), "{}", shown[1]);
    assert!(shown[2].starts_with(&format!("{}: cannot read directory", path("no-runbooks"))), "{}", shown[2]);
    Ok(())
}

async fn eventually(condition: impl Fn() -> bool) -> bool {
    for _ in 0..200 {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn an_edited_file_is_reloaded_and_a_broken_edit_keeps_the_other_files() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let edited = dir.path().join("payments.yaml");
    std::fs::write(&edited, component("payments", &[]))?;
    std::fs::write(dir.path().join("checkout.yaml"), component("checkout", &["component:payments"]))?;
    let sources = CatalogSources { paths: vec![dir.path().to_path_buf()], runbooks: Vec::new() };
    let (catalog, loaded) = load_with_fingerprint(&sources);
    let handle = CatalogHandle::new(catalog);
    let changes = crate::ChangeFeed::default();
    let mut announced = changes.subscribe();
    let watcher = watch(handle.clone(), sources, loaded, Duration::from_millis(20), Some(changes), None);
    let depends =
        |service: &str| handle.current().find(service).map(|entity| entity.depends_on.clone()).unwrap_or_default();

    std::fs::write(&edited, component("payments", &["resource:payments-db"]))?;
    assert!(eventually(|| depends("payments") == ["resource:payments-db"]).await, "the edit was not loaded");
    let mut uris = Vec::new();
    while let Ok(change) = announced.try_recv() {
        uris.push(change);
    }
    assert!(
        uris.contains(&crate::Change::ResourceUpdated { uri: "opsgate://services/payments".to_string() }),
        "{uris:?}"
    );
    assert!(
        !uris.contains(&crate::Change::ResourceUpdated { uri: "opsgate://services/checkout".to_string() }),
        "{uris:?}"
    );

    std::fs::write(&edited, "kind: Component\nmetadata:\n  name: payments\n  tags: [oops\n")?;
    assert!(eventually(|| handle.current().find("payments").is_none()).await, "the broken edit was not loaded");
    let catalog = handle.current();
    assert!(catalog.find("checkout").is_some(), "the other file's entity stays");
    let shown = problems(&catalog);
    assert!(shown.iter().any(|problem| problem.starts_with(&format!("{}:5: ", edited.display()))), "{shown:#?}");
    watcher.abort();
    Ok(())
}

/// The watcher compares the files with what was loaded, not with a look of its own when it
/// starts: an edit made between the load and the watcher's start was missed until the next one.
#[tokio::test]
async fn an_edit_made_between_the_load_and_the_watchers_start_is_reloaded() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("payments.yaml");
    std::fs::write(&file, component("payments", &[]))?;
    let sources = CatalogSources { paths: vec![dir.path().to_path_buf()], runbooks: Vec::new() };
    let (catalog, loaded) = load_with_fingerprint(&sources);
    let handle = CatalogHandle::new(catalog);
    std::fs::write(&file, component("payments", &["resource:payments-db"]))?;
    let watcher = watch(handle.clone(), sources, loaded, Duration::from_millis(20), None, None);
    let depends = || handle.current().find("payments").map(|entity| entity.depends_on.clone()).unwrap_or_default();
    assert!(eventually(|| depends() == ["resource:payments-db"]).await, "the edit was missed");
    watcher.abort();
    Ok(())
}

/// After a reload the runbooks are indexed again for `search_context`, replacing what was
/// indexed: a new runbook is found, a deleted one no longer is.
#[tokio::test]
async fn a_reload_indexes_the_runbooks_again() -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let store = opsgate_store::Store::open_sqlite(data.path()).await?;
    let runbooks = tempfile::tempdir()?;
    std::fs::write(runbooks.path().join("old.md"), "# Old\nRestart the frobnicator.\n")?;
    let sources = CatalogSources { paths: Vec::new(), runbooks: vec![runbooks.path().to_path_buf()] };
    let (catalog, loaded) = load_with_fingerprint(&sources);
    index_runbooks(&store, &catalog).await;
    let found = |text: &str| {
        let query =
            opsgate_store::SearchQuery { text: text.to_string(), kinds: vec!["runbook".to_string()], limit: 10 };
        let store = store.clone();
        async move {
            let result = store.search(&query).await?;
            anyhow::Ok(result.hits.into_iter().map(|hit| hit.reference).collect::<Vec<String>>())
        }
    };
    assert_eq!(found("frobnicator").await?, ["old"]);
    let watcher =
        watch(CatalogHandle::new(catalog), sources, loaded, Duration::from_millis(20), None, Some(store.clone()));

    std::fs::remove_file(runbooks.path().join("old.md"))?;
    std::fs::write(runbooks.path().join("new.md"), "# New\nRotate the widget keys.\n")?;
    let mut indexed = false;
    for _ in 0..200 {
        if found("widget").await? == ["new"] {
            indexed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(indexed, "the new runbook was not indexed");
    assert_eq!(found("frobnicator").await?, Vec::<String>::new(), "the deleted runbook is still found");
    watcher.abort();
    store.close().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// get_service_dependencies

/// Health answers by service label value; a service not listed fails with its name.
struct Health {
    answers: BTreeMap<String, Result<ServiceSignals, String>>,
    delay: Option<(String, Duration)>,
}

#[async_trait::async_trait]
impl HealthSource for Health {
    async fn signals(&self, target: &str, service: &str) -> Result<ServiceSignals, String> {
        if let Some((slow, delay)) = &self.delay
            && slow == service
        {
            tokio::time::sleep(*delay).await;
        }
        assert_eq!(target, "main");
        self.answers.get(service).cloned().unwrap_or_else(|| Err(format!("no answers for {service}")))
    }
}

fn signals(error_rate: f64, latency_p99: f64) -> Result<ServiceSignals, String> {
    Ok(ServiceSignals { error_rate: Some(error_rate), latency_p99: Some(latency_p99) })
}

fn tool(health: Option<Health>, settings: HealthSettings) -> GetServiceDependencies {
    let handle = CatalogHandle::new(load_with_fingerprint(&testdata_sources()).0);
    GetServiceDependencies::new(handle, health.map(|health| Arc::new(health) as Arc<dyn HealthSource>), settings)
}

async fn call(tool: &GetServiceDependencies, arguments: Value, budget: usize) -> Result<ToolOutput, ToolError> {
    let context = CallContext::new(None, OutputBudget { max_bytes: budget }, Arc::new(NoClient));
    tool.call(context, arguments.as_object().cloned().unwrap_or_default()).await
}

fn row<'a>(output: &'a ToolOutput, service: &str) -> &'a Value {
    output
        .rows
        .iter()
        .map(|row| &row.item)
        .find(|item| item["service"] == service)
        .unwrap_or_else(|| panic!("no row for {service}: {:#?}", output.rows))
}

#[tokio::test]
async fn dependencies_both_ways_with_health_and_a_mermaid_diagram() -> anyhow::Result<()> {
    let health = Health {
        answers: BTreeMap::from([
            ("payments-api".to_string(), signals(0.1, 0.4975)),
            ("checkout".to_string(), signals(0.001, 0.12)),
        ]),
        delay: None,
    };
    let tool = tool(Some(health), HealthSettings::default());
    let output = call(&tool, json!({"service": "checkout", "depth": 2}), 16_000).await?;
    let services: Vec<(&str, &str, u64)> = output
        .rows
        .iter()
        .map(|row| {
            (
                row.item["service"].as_str().unwrap_or_default(),
                row.item["direction"].as_str().unwrap_or_default(),
                row.item["distance"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        services,
        [
            ("checkout", "self", 0),
            ("payments", "upstream", 1),
            ("auth", "upstream", 1),
            ("resource:orders-db", "upstream", 1),
            ("payments-db", "upstream", 2),
            ("storefront", "downstream", 1),
        ]
    );
    let payments = row(&output, "payments");
    assert_eq!(payments["health"], "degraded");
    assert_eq!(payments["error_rate"], 0.1);
    assert_eq!(payments["owner"], "team-payments");
    assert_eq!(payments["system"], "payments-platform");
    assert_eq!(payments["note"], "error rate 10% above 5%");
    assert_eq!(row(&output, "checkout")["health"], "ok");
    assert_eq!(row(&output, "payments-db")["health"], "unknown");
    assert_eq!(row(&output, "payments-db")["note"], "no opsgate.dev/prometheus-target annotation");
    assert_eq!(row(&output, "payments-db")["via"], "payments");
    assert_eq!(row(&output, "resource:orders-db")["known"], false);
    assert_eq!(row(&output, "resource:orders-db")["note"], "not in the catalog");
    assert_eq!(output.summary[1], "health: 1 degraded, 1 ok, 4 unknown");

    let diagram = output.fields["mermaid"].as_str().unwrap_or_default();
    assert!(diagram.starts_with("graph LR\n"), "{diagram}");
    for line in [
        "  n_checkout[\"checkout<br/>ok · errors 0.1%\"]:::ok",
        "  n_payments[\"payments<br/>degraded · errors 10%\"]:::degraded",
        "  n_payments_db[\"payments-db<br/>unknown\"]:::unknown",
        "  n_orders_db[\"resource:orders-db (not in catalog)<br/>unknown\"]:::unknown",
        "  n_checkout --> n_payments",
        "  n_payments --> n_payments_db",
        "  n_checkout --> n_orders_db",
        "  n_storefront --> n_checkout",
        "  classDef degraded fill:#fdecea,stroke:#c62828",
    ] {
        assert!(diagram.lines().any(|candidate| candidate == line), "no {line:?} in\n{diagram}");
    }
    assert_eq!(diagram.matches(" --> ").count(), 5, "{diagram}");
    let rendered = output.clone().render(0, OutputBudget::default());
    assert!(rendered.text.contains("```mermaid\ngraph LR\n"), "{}", rendered.text);
    assert!(rendered.text.trim_end().ends_with("```"), "the diagram ends the text: {}", rendered.text);
    Ok(())
}

#[tokio::test]
async fn health_is_unknown_with_the_reason_when_a_query_fails_is_slow_or_has_no_data() -> anyhow::Result<()> {
    let health = Health {
        answers: BTreeMap::from([
            ("payments-api".to_string(), Ok(ServiceSignals::default())),
            ("checkout".to_string(), signals(0.0, 2.5)),
        ]),
        delay: Some(("payments-api".to_string(), Duration::from_secs(5))),
    };
    let settings = HealthSettings {
        timeout: Duration::from_millis(200),
        degraded_latency_p99: Some(1.0),
        ..HealthSettings::default()
    };
    let tool = tool(Some(health), settings);
    let started = std::time::Instant::now();
    let output = call(&tool, json!({"service": "checkout", "direction": "upstream"}), 16_000).await?;
    assert!(started.elapsed() < Duration::from_secs(2), "the slow service held the call up");
    assert_eq!(row(&output, "payments")["note"], "no answer for payments-api in prometheus main within 200ms");
    assert_eq!(row(&output, "checkout")["health"], "degraded");
    assert_eq!(row(&output, "checkout")["note"], "p99 2.50s above 1.00s");
    assert!(output.rows.iter().all(|row| row.item["direction"] != "downstream"));

    let output = call(&tool, json!({"service": "payments", "direction": "downstream", "depth": 5}), 16_000).await?;
    let names: Vec<&str> = output.rows.iter().filter_map(|row| row.item["service"].as_str()).collect();
    assert_eq!(names, ["payments", "checkout", "storefront"]);

    // No Prometheus at all: every health is unknown, and says why.
    let tool = self::tool(None, HealthSettings::default());
    let output = call(&tool, json!({"service": "payments"}), 16_000).await?;
    assert_eq!(row(&output, "payments")["note"], "no Prometheus is configured");
    Ok(())
}

#[tokio::test]
async fn an_unknown_service_names_close_matches_and_bad_arguments_are_refused() {
    let tool = tool(None, HealthSettings::default());
    let error = call(&tool, json!({"service": "payment"}), 16_000).await.err().map(|error| error.to_string());
    assert_eq!(
        error.as_deref(),
        Some("invalid arguments: no service \"payment\" in the catalog; did you mean payments, payments-db?")
    );
    for (arguments, expect) in [
        (json!({"service": "checkout", "depth": 6}), "depth must be between 1 and 5, not 6"),
        (json!({"service": "checkout", "depth": 0}), "depth must be between 1 and 5, not 0"),
        (json!({"service": "checkout", "direction": "sideways"}), "unknown variant `sideways`"),
    ] {
        let error = call(&tool, arguments, 16_000).await.err().map(|error| error.to_string()).unwrap_or_default();
        assert!(error.contains(expect), "{error}");
    }
}

#[tokio::test]
async fn the_diagram_is_cut_to_the_budget_and_says_so() -> anyhow::Result<()> {
    let tool = tool(None, HealthSettings::default());
    let output = call(&tool, json!({"service": "checkout", "depth": 2}), 1_200).await?;
    let diagram = output.fields["mermaid"].as_str().unwrap_or_default();
    assert!(diagram.len() <= 300 + 200, "{} bytes:\n{diagram}", diagram.len());
    assert!(output.footer[0].starts_with("the diagram shows the nearest "), "{:?}", output.footer);
    assert!(output.footer[0].contains(" of 6 services"), "{:?}", output.footer);
    let rendered = output.render(0, OutputBudget { max_bytes: 1_200 });
    assert!(rendered.truncated, "the rows are cut too, with a cursor");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Resources

async fn surface(dir: &Path) -> anyhow::Result<(CatalogSurface, opsgate_store::Store)> {
    let store = opsgate_store::Store::open_sqlite(dir).await?;
    let handle = CatalogHandle::new(load_with_fingerprint(&testdata_sources()).0);
    let redactor = Arc::new(opsgate_policy::redact::Redactor::new());
    Ok((CatalogSurface::new(handle, store.clone(), redactor), store))
}

async fn read(surface: &CatalogSurface, uri: &str) -> Result<(String, Option<String>), rmcp::ErrorData> {
    use crate::surface::Surface;
    let result = surface.read_resource(rmcp::model::ReadResourceRequestParams::new(uri)).await?;
    match result.contents.into_iter().next() {
        Some(rmcp::model::ResourceContents::TextResourceContents { text, mime_type, .. }) => Ok((text, mime_type)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn services_runbooks_and_a_service_with_its_recent_events_are_resources() -> anyhow::Result<()> {
    use crate::surface::Surface;
    let dir = tempfile::tempdir()?;
    let (surface, store) = surface(dir.path()).await?;
    let mut events = Vec::new();
    for minute in 0..25 {
        let mut event = opsgate_core::Event::new(
            format!("2026-11-21T10:{minute:02}:00.000Z"),
            "github",
            opsgate_core::EventKind::Deploy,
            format!("deployed payments v1.{minute}"),
            format!("d-{minute}"),
        );
        event.service = Some("payments".to_string());
        events.push(event);
    }
    let mut other = opsgate_core::Event::new(
        "2026-11-21T11:00:00.000Z",
        "github",
        opsgate_core::EventKind::Deploy,
        "checkout",
        "d-x",
    );
    other.service = Some("checkout".to_string());
    events.push(other);
    store.insert_events(&events, "2026-11-21T11:00:00.000Z").await?;

    let uris: Vec<String> = surface.resources().into_iter().map(|resource| resource.uri.clone()).collect();
    assert_eq!(
        uris,
        ["opsgate://services", "opsgate://runbooks/checkout", "opsgate://runbooks/payments/high-error-rate"]
    );
    assert!(surface.subscribable());

    let (list, mime) = read(&surface, "opsgate://services").await?;
    assert_eq!(mime.as_deref(), Some("application/json"));
    let list: Value = serde_json::from_str(&list)?;
    let payments = list.as_array().and_then(|list| list.iter().find(|item| item["name"] == "payments")).cloned();
    assert_eq!(
        payments,
        Some(json!({
            "name": "payments", "kind": "component", "owner": "team-payments", "system": "payments-platform",
            "lifecycle": "production", "type": "service", "dependsOn": ["payments-db"],
            "runbooks": ["opsgate://runbooks/payments/high-error-rate", "https://wiki.example.com/payments/runbook"],
            "uri": "opsgate://services/payments"
        }))
    );
    assert_eq!(list.as_array().map(Vec::len), Some(7));

    let (detail, _) = read(&surface, "opsgate://services/payments").await?;
    let detail: Value = serde_json::from_str(&detail)?;
    assert_eq!(
        detail["dependsOn"],
        json!([{"name": "payments-db", "kind": "resource", "ref": "resource:default/payments-db", "known": true}])
    );
    assert_eq!(detail["dependents"][0]["name"], "checkout");
    assert_eq!(detail["ownerRef"], "group:default/team-payments");
    assert_eq!(detail["metrics"], json!({"target": "main", "service": "payments-api"}));
    // The prometheus.io/rule annotation's queries are shown on the resource (not run).
    assert_eq!(
        detail["prometheusRules"],
        json!([r#"sum by (code) (rate(http_requests_total{service="payments-api"}[5m]))|code"#])
    );
    assert_eq!(detail["runbooks"][0]["title"], "Payments: high error rate");
    let recent = detail["recentEvents"].as_array().cloned().unwrap_or_default();
    assert_eq!(recent.len(), 20, "the 20 newest");
    assert_eq!(recent[0]["summary"], "deployed payments v1.24");
    assert!(recent.iter().all(|event| event["service"] == "payments"));
    assert!(
        detail["source"].as_str().is_some_and(|source| source.ends_with("payments/catalog-info.yaml:2")),
        "{}",
        detail["source"]
    );

    let (runbook, mime) = read(&surface, "opsgate://runbooks/payments/high-error-rate").await?;
    assert_eq!(mime.as_deref(), Some("text/markdown"));
    assert!(runbook.starts_with("# Payments: high error rate\n"), "{runbook}");

    let missing = read(&surface, "opsgate://services/paymnts").await.err().map(|error| error.message.to_string());
    assert_eq!(missing.as_deref(), Some("no service \"paymnts\" in the catalog or the events; did you mean payments?"));
    // Not in the catalog, but events name it: its page is its events.
    let mut event = opsgate_core::Event::new(
        "2026-11-21T11:30:00.000Z",
        "argocd",
        opsgate_core::EventKind::Deploy,
        "synced",
        "d-y",
    );
    event.service = Some("billing-worker".to_string());
    store.insert_events(&[event], "2026-11-21T11:30:00.000Z").await?;
    let (worker, _) = read(&surface, "opsgate://services/billing-worker").await?;
    let worker: Value = serde_json::from_str(&worker)?;
    assert_eq!((&worker["inCatalog"], &worker["recentEvents"][0]["summary"]), (&json!(false), &json!("synced")));
    assert!(read(&surface, "opsgate://runbooks/nope").await.is_err());

    let complete = |uri: &str, name: &str, value: &str| {
        rmcp::model::CompleteRequestParams::new(
            rmcp::model::Reference::Resource(rmcp::model::ResourceTemplateReference::new(uri)),
            rmcp::model::ArgumentInfo::new(name, value),
        )
    };
    let names = surface.complete(complete("opsgate://services/{name}", "name", "pay")).await?.completion.values;
    assert_eq!(names, ["payments", "payments-db", "payments-platform"], "a system's page is a service resource too");
    let ids = surface.complete(complete("opsgate://runbooks/{id}", "id", "error")).await?.completion.values;
    assert_eq!(ids, ["payments/high-error-rate"]);
    store.close().await;
    Ok(())
}
