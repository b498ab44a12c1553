//! The attack suite: one test per way an agent (or a careless human) might get a call to run
//! without a real identity, passing policy and a real approval. Each asserts that nothing ran and
//! that the attempt is in the audit log. The tools here count their runs; identity, the approval
//! queue, policy, limits and audit are opsgate's own, on a real SQLite store; the identity attacks
//! go over a real socket to a real JWKS server with keys made by openssl at run time.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Result;
use opsgate_core::{
    CallContext, Effect, NoClient, Plan, Principal, PrincipalKind, Target, Tool, ToolError, ToolOutput, ToolSpec,
};
use opsgate_policy::{Policy, PolicySource};
use opsgate_server::approvals::{ApprovalQueue, ApprovalSettings, ApprovalStatusTool};
use opsgate_server::metrics::Metrics;
use opsgate_server::{
    BlastRadiusLimits, CallOutcome, CallRequest, Pipeline, PipelineConfig, PolicyHandle, Rate, RateLimits, Registry,
    ServerTool, TargetCatalog,
};
use opsgate_store::{ApprovalError, ApprovalStatus, AuditLog, AuditRecord, AuditWriterConfig, Store};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

/// A write that counts its runs and plans `count` things touched.
struct CountingWrite {
    spec: ToolSpec,
    runs: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl Tool for CountingWrite {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, _context: CallContext, arguments: Map<String, Value>) -> Result<ToolOutput, ToolError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Ok(ToolOutput::text(format!("restarted {}", arguments.get("count").cloned().unwrap_or(json!(1)))))
    }

    async fn plan(&self, _context: &CallContext, arguments: &Map<String, Value>) -> Result<Option<Plan>, ToolError> {
        let count = arguments.get("count").and_then(Value::as_u64).unwrap_or(1);
        Ok(Some(Plan {
            summary: format!("restart {count} pods"),
            blast_radius: count,
            unit: "pods".into(),
            items: vec![],
        }))
    }
}

/// A read whose backend leaks secrets into its output.
struct Leak(ToolSpec);

#[async_trait::async_trait]
impl Tool for Leak {
    fn spec(&self) -> &ToolSpec {
        &self.0
    }

    async fn call(&self, _context: CallContext, _arguments: Map<String, Value>) -> Result<ToolOutput, ToolError> {
        Ok(ToolOutput::text("db url postgres://app:hunter2@db:5432/orders")
            .field("env", json!({"GITHUB_TOKEN": "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB", "replicas": 3})))
    }
}

fn spec(name: &str, effect: Effect, target_kind: Option<&str>) -> ToolSpec {
    let Value::Object(input_schema) = json!({"type": "object", "additionalProperties": true}) else { unreachable!() };
    ToolSpec {
        name: name.into(),
        title: name.into(),
        description: format!("{name} (test)"),
        input_schema,
        output_schema: None,
        effect,
        target_kind: target_kind.map(str::to_string),
        idempotent: false,
        open_world: true,
    }
}

fn principal(id: &str, roles: &[&str]) -> Principal {
    Principal { id: id.into(), kind: PrincipalKind::ApiKey, roles: roles.iter().map(|role| role.to_string()).collect() }
}

fn agent() -> Principal {
    // The agent holds every role: it must still not be able to approve its own request.
    principal("key:agent", &["operator", "approver", "admin"])
}

fn alice() -> Principal {
    principal("key:alice", &["approver"])
}

fn bob() -> Principal {
    principal("key:bob", &["approver"])
}

struct Harness {
    pipeline: Pipeline,
    store: Store,
    runs: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
}

async fn harness(config: PipelineConfig, settings: ApprovalSettings) -> Result<Harness> {
    let dir = tempfile::tempdir()?;
    let store = Store::open_sqlite(dir.path()).await?;
    let (audit, _writer) = AuditLog::spawn(store.clone(), AuditWriterConfig::default());
    let mut targets = TargetCatalog::default();
    for (name, environment, protected) in [("staging", "staging", false), ("prod", "production", true)] {
        targets.add(Target { name: name.into(), kind: "cluster".into(), environment: environment.into(), protected });
    }
    let runs = Arc::new(AtomicUsize::new(0));
    let mut registry = Registry::new(targets);
    registry.register(Arc::new(CountingWrite {
        spec: spec("restart_pods", Effect::Write, Some("cluster")),
        runs: runs.clone(),
    }))?;
    registry.register(Arc::new(CountingWrite {
        spec: spec("delete_namespace", Effect::Destructive, Some("cluster")),
        runs: runs.clone(),
    }))?;
    registry.register(Arc::new(Leak(spec("show_config", Effect::Read, None))))?;
    registry.register(Arc::new(ApprovalStatusTool::new(store.clone())))?;
    let pipeline = Pipeline::new(Arc::new(registry), audit, config, Arc::new(Metrics::default()))
        .with_approvals(ApprovalQueue::new(store.clone(), settings));
    Ok(Harness { pipeline, store, runs, _dir: dir })
}

async fn default_harness() -> Result<Harness> {
    harness(PipelineConfig::default(), ApprovalSettings::default()).await
}

impl Harness {
    async fn call(&self, principal: Principal, tool: &str, arguments: Value) -> CallOutcome {
        let Value::Object(arguments) = arguments else { panic!("arguments must be an object") };
        self.pipeline
            .call(CallRequest {
                principal,
                client: Some("attack-test".into()),
                tool: tool.into(),
                arguments,
                channel: Arc::new(NoClient),
                cancel: CancellationToken::new(),
            })
            .await
    }

    /// A pending request for a write on the protected target; returns its id.
    async fn pending(&self, tool: &str) -> String {
        match self.call(agent(), tool, json!({"target": "prod", "count": 2})).await {
            CallOutcome::PendingApproval(rendered) => {
                rendered.structured["approval_id"].as_str().unwrap_or_default().to_string()
            }
            other => panic!("expected a pending approval, got {other:?}"),
        }
    }

    fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }

    async fn audit(&self) -> Result<Vec<AuditRecord>> {
        // The writer commits before each call returns; a decision's record too.
        Ok(self.store.audit_tail(1_000).await?)
    }

    async fn audited(&self, what: &str, predicate: impl Fn(&AuditRecord) -> bool) -> Result<()> {
        let records = self.audit().await?;
        assert!(
            records.iter().any(predicate),
            "no audit record for {what}; records: {:#?}",
            records
                .iter()
                .map(|record| (&record.entry.tool, &record.entry.outcome, &record.entry.error))
                .collect::<Vec<_>>()
        );
        Ok(())
    }
}

fn refused_decision(record: &AuditRecord, id: &str) -> bool {
    record.entry.tool.starts_with("approvals/")
        && record.entry.outcome == "refused"
        && record.entry.approval_id.as_deref() == Some(id)
}

#[tokio::test]
async fn self_approval_is_refused() -> Result<()> {
    let harness = default_harness().await?;
    let id = harness.pending("restart_pods").await;
    let refused = harness.pipeline.decide_approval(&agent(), &id, true, None).await;
    assert!(matches!(refused, Err(ApprovalError::SelfApproval { .. })), "{refused:?}");
    assert_eq!(harness.runs(), 0);
    harness.audited("the self-approval", |record| refused_decision(record, &id)).await
}

#[tokio::test]
async fn an_approval_executes_once_and_never_again() -> Result<()> {
    let harness = default_harness().await?;
    let id = harness.pending("restart_pods").await;
    assert_eq!(harness.pipeline.decide_approval(&alice(), &id, true, None).await?, ApprovalStatus::Executed);
    assert_eq!(harness.runs(), 1);
    let again = harness.pipeline.decide_approval(&bob(), &id, true, None).await;
    assert!(matches!(again, Err(ApprovalError::NotPending { status: ApprovalStatus::Executed, .. })), "{again:?}");
    assert_eq!(harness.pipeline.run_approved(&id).await, ApprovalStatus::Executed);
    assert_eq!(harness.runs(), 1, "a second execution ran");
    harness.audited("the second approval", |record| refused_decision(record, &id)).await?;
    let executions = harness
        .audit()
        .await?
        .into_iter()
        .filter(|record| record.entry.tool == "restart_pods" && record.entry.decision == "approved")
        .count();
    assert_eq!(executions, 1);
    Ok(())
}

#[tokio::test]
async fn arguments_changed_after_the_request_do_not_run() -> Result<()> {
    let harness = default_harness().await?;
    let id = harness.pending("restart_pods").await;
    let Store::Sqlite { pool, .. } = &harness.store else { unreachable!() };
    sqlx::query("UPDATE approvals SET arguments = '{\"count\":500}' WHERE id = $1").bind(&id).execute(pool).await?;
    assert_eq!(harness.pipeline.decide_approval(&alice(), &id, true, None).await?, ApprovalStatus::Failed);
    assert_eq!(harness.runs(), 0);
    harness
        .audited("the refused execution", |record| {
            record.entry.approval_id.as_deref() == Some(id.as_str())
                && record.entry.tool == "restart_pods"
                && record.entry.outcome == "denied"
                && record.entry.error.as_deref().is_some_and(|error| error.contains("do not match their hash"))
        })
        .await
}

#[tokio::test]
async fn an_expired_request_cannot_be_approved() -> Result<()> {
    let settings = ApprovalSettings { expiry: Duration::from_millis(1), webhook: None };
    let harness = harness(PipelineConfig::default(), settings).await?;
    let id = harness.pending("restart_pods").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let late = harness.pipeline.decide_approval(&alice(), &id, true, None).await;
    assert!(matches!(late, Err(ApprovalError::Expired { .. })), "{late:?}");
    assert_eq!(harness.runs(), 0);
    harness.audited("the late approval", |record| refused_decision(record, &id)).await
}

#[tokio::test]
async fn an_approver_without_the_role_is_refused() -> Result<()> {
    let harness = default_harness().await?;
    let id = harness.pending("restart_pods").await;
    let operator = principal("key:carol", &["operator"]);
    let refused = harness.pipeline.decide_approval(&operator, &id, true, None).await;
    assert!(matches!(refused, Err(ApprovalError::MissingRole { .. })), "{refused:?}");
    assert_eq!(harness.runs(), 0);
    harness.audited("the approval without the role", |record| refused_decision(record, &id)).await
}

#[tokio::test]
async fn one_approval_where_two_are_required_does_not_run() -> Result<()> {
    let harness = default_harness().await?;
    let id = harness.pending("delete_namespace").await;
    assert_eq!(harness.pipeline.decide_approval(&alice(), &id, true, None).await?, ApprovalStatus::Pending);
    assert_eq!(harness.runs(), 0, "ran on one approval of two");
    harness
        .audited("the first approval", |record| {
            record.entry.tool == "approvals/approve" && record.entry.outcome == "pending"
        })
        .await?;
    // The same approver again does not count twice.
    let twice = harness.pipeline.decide_approval(&alice(), &id, true, None).await;
    assert!(matches!(twice, Err(ApprovalError::AlreadyDecided { .. })), "{twice:?}");
    assert_eq!(harness.runs(), 0);
    assert_eq!(harness.pipeline.decide_approval(&bob(), &id, true, None).await?, ApprovalStatus::Executed);
    assert_eq!(harness.runs(), 1);
    Ok(())
}

#[tokio::test]
async fn a_write_in_read_only_mode_is_denied() -> Result<()> {
    let config = PipelineConfig { read_only: true, ..PipelineConfig::default() };
    let harness = harness(config, ApprovalSettings::default()).await?;
    let outcome = harness.call(agent(), "restart_pods", json!({"target": "staging"})).await;
    assert!(matches!(&outcome, CallOutcome::Denied(reason) if reason.contains("read-only")), "{outcome:?}");
    assert_eq!(harness.runs(), 0);
    harness
        .audited("the read-only denial", |record| {
            record.entry.tool == "restart_pods" && record.entry.decision == "deny"
        })
        .await
}

#[tokio::test]
async fn a_write_over_the_blast_radius_limit_is_denied_with_the_numbers() -> Result<()> {
    let mut limits = BlastRadiusLimits::default();
    limits.environments.insert("staging".into(), 5);
    let config = PipelineConfig { blast_radius: limits, ..PipelineConfig::default() };
    let harness = harness(config, ApprovalSettings::default()).await?;
    let outcome = harness.call(agent(), "restart_pods", json!({"target": "staging", "count": 12})).await;
    assert!(
        matches!(&outcome, CallOutcome::Denied(reason) if reason.contains("blast radius 12 pods is over the limit of 5")),
        "{outcome:?}"
    );
    assert_eq!(harness.runs(), 0);
    harness
        .audited("the blast-radius denial", |record| {
            record.entry.decision == "deny"
                && record.entry.reason.as_deref().is_some_and(|reason| reason.contains("12"))
        })
        .await
}

#[tokio::test]
async fn a_write_in_a_protected_environment_waits_for_approval() -> Result<()> {
    let harness = default_harness().await?;
    let id = harness.pending("restart_pods").await;
    assert_eq!(harness.runs(), 0, "a protected write ran without approval");
    // Calling again makes another request; it never runs the first.
    let second = harness.pending("restart_pods").await;
    assert_ne!(id, second);
    assert_eq!(harness.runs(), 0);
    harness
        .audited("the pending request", |record| {
            record.entry.outcome == "pending_approval" && record.entry.approval_id.as_deref() == Some(id.as_str())
        })
        .await
}

#[tokio::test]
async fn a_burst_over_the_rate_limit_is_refused_with_when_to_retry() -> Result<()> {
    let rate_limits = RateLimits { read: None, write: Some(Rate { per_minute: 6.0, burst: 3.0 }) };
    let harness =
        harness(PipelineConfig { rate_limits, ..PipelineConfig::default() }, ApprovalSettings::default()).await?;
    for _ in 0..3 {
        assert!(matches!(
            harness.call(agent(), "restart_pods", json!({"target": "staging"})).await,
            CallOutcome::Ok(_)
        ));
    }
    let outcome = harness.call(agent(), "restart_pods", json!({"target": "staging"})).await;
    assert!(matches!(&outcome, CallOutcome::Denied(reason) if reason.contains("retry in")), "{outcome:?}");
    assert_eq!(harness.runs(), 3, "the call over the limit ran");
    harness
        .audited("the rate-limited call", |record| {
            record.entry.outcome == "denied"
                && record.entry.error.as_deref().is_some_and(|error| error.contains("rate limit"))
        })
        .await
}

#[tokio::test]
async fn secrets_are_masked_in_outputs_and_in_audited_arguments() -> Result<()> {
    let harness = default_harness().await?;
    let outcome =
        harness.call(agent(), "show_config", json!({"note": "use Authorization: Bearer abcdefghijklmnop0123"})).await;
    let CallOutcome::Ok(rendered) = outcome else { panic!("expected output, got {outcome:?}") };
    let response = format!("{} {}", rendered.text, rendered.structured);
    for secret in ["hunter2", "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB"] {
        assert!(!response.contains(secret), "{secret} reached the response: {response}");
    }
    assert!(response.contains("\"replicas\":3"), "{response}");
    let record = harness.audit().await?.into_iter().rev().find(|record| record.entry.tool == "show_config");
    let record = record.expect("the call is audited");
    assert!(!record.entry.arguments.contains("abcdefghijklmnop0123"), "{}", record.entry.arguments);
    assert!(record.entry.arguments.contains("***"), "{}", record.entry.arguments);
    Ok(())
}

#[tokio::test]
async fn tools_a_principal_can_never_call_are_not_listed() -> Result<()> {
    let harness = default_harness().await?;
    let names = |principal: &Principal| -> Vec<String> {
        harness.pipeline.visible_tools(principal).iter().map(|tool| tool.spec.name.clone()).collect()
    };
    let viewer = principal("key:viewer", &[]);
    assert_eq!(names(&viewer), vec!["show_config".to_string(), "approval_status".to_string()]);
    let mut operator_tools = names(&agent());
    operator_tools.sort();
    assert_eq!(operator_tools, vec!["approval_status", "delete_namespace", "restart_pods", "show_config"]);
    // And calling the hidden tool anyway is denied and audited.
    let outcome = harness.call(viewer, "restart_pods", json!({"target": "staging"})).await;
    assert!(matches!(outcome, CallOutcome::Denied(_)), "{outcome:?}");
    assert_eq!(harness.runs(), 0);
    harness
        .audited("the hidden tool's call", |record| {
            record.entry.principal == "key:viewer" && record.entry.decision == "deny"
        })
        .await
}

// ---- identity: tokens and keys that must not get a call through ------------------------------

/// Presents `token` to an opsgate whose OAuth issuer serves `key`; asserts a 401 naming the
/// protected-resource metadata, that the tool never ran, and that the refusal is audited with
/// `expected` in its reason.
async fn refused_token(
    token_for: impl FnOnce(&support::TestServer, &support::identity::TestKey) -> Result<String>,
    expected: &str,
) -> Result<()> {
    use support::identity::*;
    let key = TestKey::rsa("k1")?;
    let jwks = JwksServer::start(key_set(&[&key])).await?;
    let (server, runs) = start(|url| oauth_identity(&jwks, url, |_| {})).await?;
    let token = token_for(&server, &key)?;
    let refused = call(&server, Some(&bearer(&token))).await?;
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert!(refused.challenge.contains("resource_metadata="), "{}", refused.challenge);
    assert!(refused.error_message().contains(expected), "{}", refused.error_message());
    assert_eq!(runs.load(Ordering::SeqCst), 0, "the tool ran");
    let records = server.store.audit_tail(10).await?;
    assert!(
        records.iter().any(|record| record.entry.outcome == "unauthenticated"
            && record.entry.decision == "deny"
            && record.entry.reason.as_deref().is_some_and(|reason| reason.contains(expected))),
        "the refusal is not audited: {records:?}"
    );
    Ok(())
}

#[tokio::test]
async fn an_expired_jwt_is_refused() -> Result<()> {
    use support::identity::{claims, now};
    refused_token(|server, key| key.sign(&claims(server, json!({"exp": now() - 600}))), "the token has expired").await
}

#[tokio::test]
async fn a_jwt_not_yet_valid_is_refused() -> Result<()> {
    use support::identity::{claims, now};
    refused_token(|server, key| key.sign(&claims(server, json!({"nbf": now() + 600}))), "the token is not valid yet")
        .await
}

#[tokio::test]
async fn a_jwt_for_another_audience_is_refused() -> Result<()> {
    use support::identity::claims;
    refused_token(
        |server, key| key.sign(&claims(server, json!({"aud": "https://other.example"}))),
        "the token is not for this server",
    )
    .await
}

#[tokio::test]
async fn a_jwt_from_another_issuer_is_refused() -> Result<()> {
    use support::identity::claims;
    refused_token(
        |server, key| key.sign(&claims(server, json!({"iss": "https://evil.example"}))),
        "the token was not issued by",
    )
    .await
}

#[tokio::test]
async fn a_jwt_signed_with_an_unknown_key_is_refused() -> Result<()> {
    use support::identity::{TestKey, claims};
    refused_token(|server, _| TestKey::rsa("stranger")?.sign(&claims(server, json!({}))), "unknown signing key").await
}

#[tokio::test]
async fn an_unsigned_jwt_with_alg_none_is_refused() -> Result<()> {
    use support::identity::{base64url, claims};
    refused_token(
        |server, _| {
            Ok(format!(
                "{}.{}.",
                base64url(br#"{"alg":"none","typ":"JWT","kid":"k1"}"#),
                base64url(claims(server, json!({})).to_string().as_bytes())
            ))
        },
        "unsigned (alg none)",
    )
    .await
}

#[tokio::test]
async fn a_revoked_api_key_is_refused() -> Result<()> {
    use support::identity::*;
    let (server, runs) = start(|_| opsgate_server::IdentityConfig::default()).await?;
    let key = server.store.create_api_key("deploy", &["operator".to_string()]).await?;
    assert_eq!(call(&server, Some(&bearer(&key.secret))).await?.status, 200);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    server.state.identity.revoke_api_key("deploy").await?;
    let refused = call(&server, Some(&bearer(&key.secret))).await?;
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert!(refused.error_message().contains("was revoked at"), "{}", refused.error_message());
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the revoked key's call ran");
    let records = server.store.audit_tail(10).await?;
    assert!(
        records.iter().any(|record| record.entry.outcome == "unauthenticated"
            && record.entry.reason.as_deref().is_some_and(|reason| reason.contains("revoked"))),
        "the refusal is not audited: {records:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_new_request_is_announced_on_the_webhook_without_its_arguments() -> Result<()> {
    // A Slack-compatible receiver on a loopback port that keeps what it is sent.
    let received: Arc<std::sync::Mutex<Vec<Value>>> = Arc::default();
    let keep = received.clone();
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let keep = keep.clone();
            async move {
                keep.lock().map(|mut bodies| bodies.push(body)).ok();
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, receiver).await });
    let settings = ApprovalSettings { webhook: Some(format!("http://{address}/hook")), ..ApprovalSettings::default() };
    let harness = harness(PipelineConfig::default(), settings).await?;

    let secret = "hunter2-secret-password";
    let outcome = harness
        .call(agent(), "restart_pods", json!({"target": "prod", "count": 2, "note": format!("password: {secret}")}))
        .await;
    let CallOutcome::PendingApproval(rendered) = outcome else {
        panic!("expected a pending approval, got {outcome:?}")
    };
    let id = rendered.structured["approval_id"].as_str().unwrap_or_default().to_string();
    let mut announced = None;
    for _ in 0..100 {
        if let Some(body) = received.lock().ok().and_then(|bodies| bodies.first().cloned()) {
            announced = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.abort();
    let text = announced.expect("the webhook heard of the request")["text"].as_str().unwrap_or_default().to_string();
    assert!(text.contains(&id) && text.contains("restart_pods") && text.contains("restart 2 pods"), "{text}");
    assert!(text.contains("opsgate approvals approve"), "{text}");
    assert!(!text.contains(secret), "a secret reached the webhook: {text}");
    assert_eq!(harness.runs(), 0);
    Ok(())
}

#[tokio::test]
async fn another_principal_cannot_read_a_request_or_its_result() -> Result<()> {
    let harness = default_harness().await?;
    let id = harness.pending("restart_pods").await;
    assert_eq!(harness.pipeline.decide_approval(&alice(), &id, true, None).await?, ApprovalStatus::Executed);
    let snoop = harness.call(principal("key:viewer", &[]), "approval_status", json!({"id": id})).await;
    assert!(
        matches!(&snoop, CallOutcome::ToolError(message) if message.contains("belongs to another principal")),
        "{snoop:?}"
    );
    // The requester and the approvers may.
    for reader in [agent(), bob()] {
        let CallOutcome::Ok(rendered) = harness.call(reader, "approval_status", json!({"id": id})).await else {
            panic!("the requester and the approvers read the status")
        };
        assert_eq!(rendered.structured["status"], "executed");
        assert!(rendered.text.contains("restarted 2"), "{}", rendered.text);
    }
    assert_eq!(harness.runs(), 1, "reading the status ran the call again");
    harness
        .audited("the refused read", |record| {
            record.entry.tool == "approval_status"
                && record.entry.principal == "key:viewer"
                && record.entry.outcome == "tool_error"
        })
        .await
}

#[tokio::test]
async fn an_expired_request_reads_as_expired_before_any_sweep() -> Result<()> {
    let settings = ApprovalSettings { expiry: Duration::from_millis(1), webhook: None };
    let harness = harness(PipelineConfig::default(), settings).await?;
    let id = harness.pending("restart_pods").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let CallOutcome::Ok(rendered) = harness.call(agent(), "approval_status", json!({"id": id})).await else {
        panic!("the requester reads the status")
    };
    assert_eq!(rendered.structured["status"], "expired");
    let stored = harness.store.approval(&id).await?.expect("stored");
    assert_eq!(stored.status, ApprovalStatus::Expired);
    assert_eq!(harness.runs(), 0);
    Ok(())
}

/// A federated write whose server changed its definition after the request was made: neither the
/// approved request nor a new call runs it, and both are audited with the reason. A built-in
/// tool cannot take a federated name to pass for one.
#[tokio::test]
async fn a_federated_tool_quarantined_after_its_request_does_not_run_when_approved() -> Result<()> {
    let mut harness = default_harness().await?;
    let rule = "package opsgate\n\napproval contains {\"approvals_required\": 1, \"approver_roles\": [\"approver\"], \
                \"reason\": \"federated write\"} if {\n\tinput.tool.server == \"up\"\n}\n";
    let policy = Policy::load(vec![PolicySource { path: "up.rego".into(), text: rule.into() }], false)?;
    harness.pipeline = harness.pipeline.with_policy(Arc::new(PolicyHandle::new(policy)));
    let federated = |quarantine: Option<&str>| ServerTool {
        tool: Arc::new(CountingWrite {
            spec: spec("mcp__up__restart", Effect::Write, None),
            runs: harness.runs.clone(),
        }),
        quarantine: quarantine.map(str::to_string),
    };
    let set = harness.pipeline.registry().set_server_tools("up", vec![federated(None)]);
    assert!(set.problems.is_empty() && set.n_usable == 1, "{set:?}");
    let CallOutcome::PendingApproval(pending) = harness.call(agent(), "mcp__up__restart", json!({})).await else {
        panic!("the federated write waits for approval")
    };
    let id = pending.structured["approval_id"].as_str().unwrap_or_default().to_string();

    // A listing with the tool quarantined and one more left out (another server's name): no
    // tool is usable, and the count says so.
    let foreign = ServerTool {
        tool: Arc::new(CountingWrite { spec: spec("mcp__other__x", Effect::Write, None), runs: harness.runs.clone() }),
        quarantine: Some("changed too".to_string()),
    };
    let set =
        harness.pipeline.registry().set_server_tools("up", vec![federated(Some("its description changed")), foreign]);
    assert_eq!((set.n_usable, set.problems.len()), (0, 1), "{set:?}");
    assert_eq!(harness.pipeline.decide_approval(&alice(), &id, true, None).await?, ApprovalStatus::Failed);
    let denied = harness.call(agent(), "mcp__up__restart", json!({})).await;
    assert!(matches!(&denied, CallOutcome::Denied(message) if message.contains("quarantined")), "{denied:?}");
    assert_eq!(harness.runs(), 0);
    harness
        .audited("the approved run refused", |record| {
            record.entry.decision == "approved"
                && record.entry.error.as_deref().is_some_and(|error| error.contains("quarantined"))
        })
        .await?;
    harness
        .audited("the denied call", |record| {
            record.entry.tool == "mcp__up__restart"
                && record.entry.decision == "deny"
                && record.entry.reason.as_deref().is_some_and(|reason| reason.contains("its description changed"))
        })
        .await?;

    let mut registry = Registry::default();
    let impostor = CountingWrite { spec: spec("mcp__up__restart", Effect::Read, None), runs: harness.runs.clone() };
    assert!(registry.register(Arc::new(impostor)).is_err(), "a built-in took a federated name");
    Ok(())
}
