//! The approval queue as the pipeline uses it: a call that policy sends to humans becomes a
//! durable request; a human's decision is recorded and audited; the call runs, with exactly the
//! stored arguments, once enough approvers agreed; `approval_status` lets the agent wait for it.
//! The rules themselves (who may decide, at most once) live in the store, in the transaction.

use std::time::{Duration, Instant};

use opsgate_core::output::Row;
use opsgate_core::{
    CallContext, Decision, Effect, Plan, Principal, Rendered, Tool, ToolError, ToolOutput, ToolSpec, parse_arguments,
};
use opsgate_store::approvals::{is_valid_approval_id, new_approval_id};
use opsgate_store::{Approval, ApprovalError, ApprovalStatus, DecisionRequest, NewApproval, Notice, Notices, Store};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// Where new requests are announced, and how long they wait.
#[derive(Debug, Clone)]
pub struct ApprovalSettings {
    pub expiry: Duration,
    /// A Slack-compatible incoming webhook URL (already resolved from its secret reference).
    pub webhook: Option<String>,
}

impl Default for ApprovalSettings {
    fn default() -> Self {
        ApprovalSettings { expiry: Duration::from_secs(30 * 60), webhook: None }
    }
}

/// The store and settings behind approvals.
#[derive(Debug, Clone)]
pub struct ApprovalQueue {
    pub store: Store,
    pub settings: ApprovalSettings,
    /// Where a decision or an execution is announced, for agents waiting in `approval_status`
    /// in this process or, on PostgreSQL, in another.
    pub notices: Notices,
}

/// What the pipeline knows when policy asks for approval.
pub struct PendingCall<'a> {
    pub principal: &'a Principal,
    pub client: Option<&'a str>,
    pub tool: &'a str,
    pub target: Option<(&'a str, &'a str)>,
    pub arguments: &'a Map<String, Value>,
    pub plan: Option<&'a Plan>,
    pub decision: &'a Decision,
    pub now: &'a str,
}

impl ApprovalQueue {
    pub fn new(store: Store, settings: ApprovalSettings) -> Self {
        ApprovalQueue { notices: Notices::new(store.clone()), store, settings }
    }

    /// Announces through `notices` (shared with `approval_status`) instead of a channel of its own.
    pub fn with_notices(mut self, notices: Notices) -> Self {
        self.notices = notices;
        self
    }

    /// Stores the request and announces it; returns it as stored.
    pub async fn request(&self, call: PendingCall<'_>) -> Result<NewApproval, String> {
        let Decision::Approve { reason, approvals_required, approver_roles } = call.decision else {
            return Err("only a decision that asks for approval creates a request".to_string());
        };
        let arguments = opsgate_core::canonical::canonical_object(call.arguments);
        let expires_at = chrono::Utc::now()
            + chrono::Duration::from_std(self.settings.expiry).unwrap_or_else(|_| chrono::Duration::minutes(30));
        let request = NewApproval {
            id: new_approval_id(),
            created_at: call.now.to_string(),
            expires_at: opsgate_store::rfc3339(expires_at),
            requester: call.principal.id.clone(),
            requester_kind: call.principal.kind.as_str().to_string(),
            requester_roles: call.principal.roles.clone(),
            client: call.client.map(str::to_string),
            tool: call.tool.to_string(),
            target: call.target.map(|(name, _)| name.to_string()),
            environment: call.target.map(|(_, environment)| environment.to_string()),
            arguments_hash: opsgate_store::audit::sha256_hex(&arguments),
            arguments,
            plan: call.plan.and_then(|plan| serde_json::to_value(plan).ok()),
            reason: reason.clone(),
            approvals_required: u32::from(*approvals_required),
            approver_roles: approver_roles.clone(),
        };
        self.store
            .create_approval(&request)
            .await
            .map_err(|error| format!("the approval request could not be stored: {error}"))?;
        if let Some(url) = &self.settings.webhook {
            announce(url.clone(), &request);
        }
        Ok(request)
    }

    /// Records a human's decision (the rules are checked in the store).
    pub async fn decide(
        &self,
        principal: &Principal,
        id: &str,
        approve: bool,
        comment: Option<&str>,
    ) -> Result<ApprovalStatus, ApprovalError> {
        let now = crate::pipeline::now_rfc3339();
        self.store
            .decide_approval(&DecisionRequest {
                id,
                principal: &principal.id,
                roles: &principal.roles,
                approve,
                comment,
                now: &now,
            })
            .await
    }
}

/// Who may read a request: its requester, and whoever holds one of the roles that may approve
/// it. The `approval_status` tool and `/api/v1/approvals` apply the same rule.
pub fn may_see(approval: &Approval, principal: &Principal) -> bool {
    approval.request.requester == principal.id
        || principal.roles.iter().any(|role| approval.request.approver_roles.contains(role))
}

/// Posts the request to a Slack-compatible webhook in the background: a slow or broken webhook
/// never holds up the call, and its failure is logged, not returned.
fn announce(url: String, request: &NewApproval) {
    let plan = request.plan.as_ref().and_then(|plan| plan.get("summary")).and_then(Value::as_str).unwrap_or("no plan");
    let text = format!(
        "opsgate: {} asks to run {} on {} ({}). {} Approve with `opsgate approvals approve {}`; expires {}.",
        request.requester,
        request.tool,
        request.target.as_deref().unwrap_or("no target"),
        request.reason,
        plan,
        request.id,
        request.expires_at
    );
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        let posted = client.post(&url).timeout(Duration::from_secs(10)).json(&json!({ "text": text })).send().await;
        match posted {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => tracing::warn!(status = %response.status(), "approval webhook refused the announcement"),
            Err(error) => tracing::warn!(error = %error.without_url(), "approval webhook unreachable"),
        }
    });
}

/// An approval as people see it (CLI, HTTP API): the stored arguments can hold secrets the call
/// needs; what is shown has them masked.
pub fn shown(mut approval: Approval, redactor: &opsgate_policy::Redactor) -> Approval {
    if let Ok(mut arguments) = serde_json::from_str::<Value>(&approval.request.arguments) {
        redactor.redact_value(&mut arguments);
        approval.request.arguments = opsgate_core::canonical::canonical_json(&arguments);
    }
    approval
}

/// A status filter as people write it: a status name, or `all` (or nothing) for every request.
pub fn status_filter(text: Option<&str>) -> Result<Option<ApprovalStatus>, String> {
    match text {
        None | Some("all") => Ok(None),
        Some(text) => ApprovalStatus::parse(text).map(Some).map_err(|message| format!("{message}, or all")),
    }
}

/// The result an agent gets instead of the call's: what waits, for whom, and what to do next.
pub fn pending_output(request: &NewApproval) -> ToolOutput {
    let roles = request.approver_roles.join(" or ");
    let mut output = ToolOutput::text(format!(
        "Pending approval {}: {} needs {} approval(s) from a human with role {roles} before it runs.",
        request.id, request.tool, request.approvals_required
    ));
    output.summary.push(format!("Why: {}.", request.reason));
    if let Some(summary) = request.plan.as_ref().and_then(|plan| plan.get("summary")).and_then(Value::as_str) {
        output.summary.push(format!("Plan: {summary}"));
    }
    output.footer.push(format!(
        "A human approves with `opsgate approvals approve {}` or POST /api/v1/approvals/{}/approve; it expires at {}.",
        request.id, request.id, request.expires_at
    ));
    output.footer.push(format!(
        "Call approval_status with id {} (and wait_seconds) to wait for the result. Do not retry the call.",
        request.id
    ));
    output
        .field("status", "pending_approval")
        .field("approval_id", request.id.clone())
        .field("tool", request.tool.clone())
        .field("target", json!(request.target))
        .field("plan", json!(request.plan))
        .field("reason", request.reason.clone())
        .field("approvals_required", request.approvals_required)
        .field("approver_roles", json!(request.approver_roles))
        .field("expires_at", request.expires_at.clone())
}

/// The stored form of an executed call's result.
pub fn stored_result(rendered: &Rendered) -> Value {
    json!({"text": rendered.text, "structured": rendered.structured, "truncated": rendered.truncated})
}

/// `approval_status(id, wait_seconds)`: the state of a request, waiting (with progress
/// notifications) until it ends or the wait runs out; once executed, the call's own result.
pub struct ApprovalStatusTool {
    spec: ToolSpec,
    store: Store,
    notices: Notices,
}

/// The longest an agent may wait in one call.
const MAX_WAIT_SECONDS: u64 = 300;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusArguments {
    id: String,
    #[serde(default)]
    wait_seconds: u64,
}

impl ApprovalStatusTool {
    pub fn new(store: Store) -> Self {
        let input_schema = json!({
            "type": "object",
            "properties": {
                "id": {"type": "string", "description": "The approval id a pending call returned (apr_…)."},
                "wait_seconds": {
                    "type": "integer", "minimum": 0, "maximum": MAX_WAIT_SECONDS,
                    "description": "Wait up to this long for the request to be decided and run (default 0: answer now)."
                }
            },
            "required": ["id"],
            "additionalProperties": false
        });
        let spec = ToolSpec {
            name: "approval_status".to_string(),
            title: "Approval status".to_string(),
            description: "The state of an approval request (pending, approved, rejected, expired, executed, failed) \
                          with its approvers; once executed, the approved call's result. Give wait_seconds to wait \
                          for a human's decision; progress is reported while waiting."
                .to_string(),
            input_schema: match input_schema {
                Value::Object(map) => map,
                _ => Map::new(),
            },
            output_schema: match json!({
                "type": "object",
                "properties": {
                    "approval_id": {"type": "string"},
                    "status": {"enum": ["pending", "approved", "rejected", "expired", "executing", "executed", "failed"]},
                    "tool": {"type": "string"},
                    "approvers": {"type": "array", "items": {"type": "string"}},
                    "expires_at": {"type": "string"},
                    "result": {"description": "the approved call's structured result, once executed"},
                    "items": {"type": "array"}
                },
                "required": ["approval_id", "status"]
            }) {
                Value::Object(map) => Some(map),
                _ => None,
            },
            effect: Effect::Read,
            target_kind: None,
            idempotent: true,
            open_world: false,
        };
        ApprovalStatusTool { spec, notices: Notices::new(store.clone()), store }
    }

    /// Wakes on the decisions announced through `notices` (the approval queue's).
    pub fn with_notices(mut self, notices: Notices) -> Self {
        self.notices = notices;
        self
    }
}

#[async_trait::async_trait]
impl Tool for ApprovalStatusTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, context: CallContext, arguments: Map<String, Value>) -> Result<ToolOutput, ToolError> {
        let arguments: StatusArguments = parse_arguments(arguments)?;
        if !is_valid_approval_id(&arguments.id) {
            return Err(ToolError::InvalidArguments(format!(
                "{:?} is not an approval id (they look like apr_ followed by 32 hex digits)",
                arguments.id
            )));
        }
        if arguments.wait_seconds > MAX_WAIT_SECONDS {
            return Err(ToolError::InvalidArguments(format!("wait_seconds must be at most {MAX_WAIT_SECONDS}")));
        }
        let deadline = Instant::now() + Duration::from_secs(arguments.wait_seconds);
        let started = Instant::now();
        // A decision announced anywhere on the store wakes the wait at once; the store is read
        // again every poll all the same, for decisions no notice reaches (another process on
        // SQLite, a notice lost while PostgreSQL's connection was down).
        let mut notices = (arguments.wait_seconds > 0).then(|| self.notices.subscribe());
        let poll = if self.notices.crosses_processes() { Duration::from_secs(2) } else { Duration::from_millis(250) };
        loop {
            let unavailable = |error| ToolError::Unavailable(format!("the approval store is unavailable: {error}"));
            let mut approval = self
                .store
                .approval(&arguments.id)
                .await
                .map_err(unavailable)?
                .ok_or_else(|| ToolError::InvalidArguments(format!("no approval request {}", arguments.id)))?;
            if !may_see(&approval, &context.principal) {
                return Err(ToolError::InvalidArguments(format!(
                    "approval {} belongs to another principal; only its requester and its approvers may read it",
                    arguments.id
                )));
            }
            // A request whose time ran out is expired now, not at the next sweep.
            let now = crate::pipeline::now_rfc3339();
            if approval.status == ApprovalStatus::Pending && approval.request.expires_at <= now {
                self.store.expire_approvals(&now).await.map_err(unavailable)?;
                approval.status = ApprovalStatus::Expired;
            }
            if approval.status.is_final() || Instant::now() >= deadline {
                return Ok(status_output(&approval));
            }
            let waited = started.elapsed().as_secs_f64();
            context
                .client
                .progress(
                    waited,
                    Some(arguments.wait_seconds as f64),
                    Some(format!("approval {} is {}", arguments.id, approval.status.as_str())),
                )
                .await;
            let pause = tokio::time::sleep(poll.min(deadline.saturating_duration_since(Instant::now())));
            match &mut notices {
                Some(receiver) => {
                    tokio::select! {
                        () = pause => {}
                        () = notice_about(receiver, &arguments.id) => {}
                    }
                }
                None => pause.await,
            }
        }
    }
}

/// Returns when a notice about approval `id` arrives (or the listener lagged, so one may have
/// been missed); never, once the notices stop.
async fn notice_about(receiver: &mut tokio::sync::broadcast::Receiver<Notice>, id: &str) {
    loop {
        match receiver.recv().await {
            Ok(Notice::Approval { id: decided }) if decided == id => return,
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }
}

fn status_output(approval: &Approval) -> ToolOutput {
    let request = &approval.request;
    let approvers = approval.approvers();
    let mut output = ToolOutput::text(format!(
        "Approval {} for {} is {} ({} of {} approvals).",
        request.id,
        request.tool,
        approval.status.as_str(),
        approvers.len(),
        request.approvals_required
    ));
    if approval.status == ApprovalStatus::Executed
        && let Some(text) = approval.result.as_ref().and_then(|result| result.get("text")).and_then(Value::as_str)
    {
        output.summary.push("Result of the approved call:".to_string());
        output.summary.extend(text.lines().map(str::to_string));
    }
    if let Some(error) = &approval.error {
        output.summary.push(format!("Error: {error}"));
    }
    output.columns = vec!["principal".into(), "decision".into(), "at".into()];
    output.rows = approval
        .decisions
        .iter()
        .map(|decision| Row {
            cells: vec![decision.principal.clone(), decision.decision.clone(), decision.decided_at.clone()],
            item: json!({"principal": decision.principal, "decision": decision.decision, "at": decision.decided_at}),
        })
        .collect();
    output
        .field("approval_id", request.id.clone())
        .field("status", approval.status.as_str())
        .field("tool", request.tool.clone())
        .field("approvers", json!(approvers))
        .field("expires_at", request.expires_at.clone())
        .field(
            "result",
            approval.result.clone().and_then(|result| result.get("structured").cloned()).unwrap_or(Value::Null),
        )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A waiting `approval_status` wakes on a notice about its own request, or when it may have
    /// missed one (lagged), and on nothing else.
    async fn woke(receiver: &mut tokio::sync::broadcast::Receiver<Notice>) -> bool {
        tokio::time::timeout(Duration::from_millis(100), notice_about(receiver, "apr_mine")).await.is_ok()
    }

    #[tokio::test]
    async fn a_wait_wakes_on_its_own_approval_notice_only() {
        let (sender, mut receiver) = tokio::sync::broadcast::channel(4);
        let _ = sender.send(Notice::Events { services: vec!["payments".to_string()] });
        let _ = sender.send(Notice::Approval { id: "apr_other".to_string() });
        assert!(!woke(&mut receiver).await, "another request's decision does not wake it");
        let _ = sender.send(Notice::Approval { id: "apr_mine".to_string() });
        assert!(woke(&mut receiver).await);
        for n in 0..6 {
            let _ = sender.send(Notice::Approval { id: format!("apr_{n}") });
        }
        assert!(woke(&mut receiver).await, "a listener that fell behind looks again");
    }
}
