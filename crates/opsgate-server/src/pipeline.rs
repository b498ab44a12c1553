//! The call pipeline: the one path every tool call takes.
//!
//! ```text
//! request ─▶ authenticate ─▶ rate limit ─▶ resolve target ─▶ plan (writes) ─▶ policy
//!         ─▶ approval gate ─▶ execute (timeout, cancel, progress) ─▶ redact ─▶ output budget
//!         ─▶ audit ─▶ response
//! ```
//!
//! Authentication happens at the transport (the HTTP middleware or the stdio start-up) and hands
//! the pipeline a `Principal`; every other stage is here, in order, in `Pipeline::call`.
//!
//! A call that needs answers from the client first (an input-required round) and a call that goes
//! on in the background (a task) are still one pass each through these stages: every round is
//! authorised and audited on its own, and a task's record is written when it finishes.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use opsgate_core::canonical::canonical_json;
use opsgate_core::output::decode_cursor;
use opsgate_core::{
    CallContext, CallInput, ClientCapability, ClientChannel, Decision, InputRequest, OutputBudget, Principal, Rendered,
    Target, TaskSupport, ToolError, ToolOutput,
};
use opsgate_policy::{Annotations, BlastRadius, Limits, PolicyInput, Redactor, ToolFacts};
use opsgate_store::audit::sha256_hex;
use opsgate_store::{ApprovalError, ApprovalStatus, AuditEntry, AuditLog};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::approvals::{ApprovalQueue, PendingCall, pending_output, stored_result};
use crate::events::{EventSink, action_event, approval_event, audit_delivery_id};
use crate::limits::{BlastRadiusLimits, RateLimiter, RateLimits};
use crate::metrics::Metrics;
use crate::policy::PolicyHandle;
use crate::registry::{RegisteredTool, Registry};
use crate::request_state::{RoundState, StateSeal, StateSealError};
use crate::tasks::Tasks;

#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub budget: OutputBudget,
    /// The longest one call may run before it is cut off and reported as timed out.
    pub call_timeout: Duration,
    pub read_only: bool,
    pub blast_radius: BlastRadiusLimits,
    pub rate_limits: RateLimits,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            budget: OutputBudget::default(),
            call_timeout: Duration::from_secs(30),
            read_only: false,
            blast_radius: BlastRadiusLimits::default(),
            rate_limits: RateLimits::default(),
        }
    }
}

/// One call as the transport hands it over.
pub struct CallRequest {
    pub principal: Principal,
    /// The client's self-reported name, for the audit record.
    pub client: Option<String>,
    pub tool: String,
    pub arguments: Map<String, Value>,
    pub channel: Arc<dyn ClientChannel>,
    pub cancel: CancellationToken,
}

/// What a client sends when it retries an input-required call, as it came off the wire:
/// unverified answers and the sealed state this server handed out.
#[derive(Debug, Clone, Default)]
pub struct RoundInput {
    pub responses: Map<String, Value>,
    pub request_state: Option<String>,
}

/// How a call ended, as the transport must report it.
#[derive(Debug, Clone, PartialEq)]
pub enum CallOutcome {
    /// The tool ran; its output, redacted and within budget.
    Ok(Rendered),
    /// Policy sent the call to humans: it did not run; the result says what waits and how to
    /// follow it (not an error: the agent should read it and wait).
    PendingApproval(Rendered),
    /// The tool ran, or could not, and the agent should read why (`isError: true`).
    ToolError(String),
    /// Policy said no; the reason names the rule (`isError: true`).
    Denied(String),
    /// No such tool: a protocol error, not a tool result.
    UnknownTool(String),
    /// The tool needs the client's answers first; the client retries with them and the sealed
    /// state (2026-07-28's input-required result).
    InputRequired { requests: BTreeMap<String, InputRequest>, request_state: Option<String> },
    /// The call needs something the client did not declare: a protocol error naming it.
    MissingClientCapability(ClientCapability),
    /// The request cannot be served as sent (a forged or expired state): a protocol error.
    InvalidRequest(String),
    /// The tool broke (it panicked): a server fault, reported without its details.
    Internal(String),
}

impl CallOutcome {
    fn audit_outcome(&self) -> &'static str {
        match self {
            CallOutcome::Ok(_) => "ok",
            CallOutcome::PendingApproval(_) => "pending_approval",
            CallOutcome::ToolError(_) => "tool_error",
            CallOutcome::Denied(_) => "denied",
            CallOutcome::UnknownTool(_) => "unknown_tool",
            CallOutcome::InputRequired { .. } => "input_required",
            CallOutcome::MissingClientCapability(_) => "missing_capability",
            CallOutcome::InvalidRequest(_) => "invalid_request",
            CallOutcome::Internal(_) => "internal_error",
        }
    }

    fn audit_error(&self) -> Option<String> {
        match self {
            CallOutcome::Ok(_) | CallOutcome::PendingApproval(_) => None,
            CallOutcome::ToolError(message)
            | CallOutcome::Denied(message)
            | CallOutcome::UnknownTool(message)
            | CallOutcome::InvalidRequest(message)
            | CallOutcome::Internal(message) => Some(message.clone()),
            // What was asked is the useful part of an input-required record.
            CallOutcome::InputRequired { requests, .. } => Some(format!(
                "asked the client: {}",
                requests
                    .iter()
                    .map(|(key, request)| format!("{key} ({})", request.method))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            CallOutcome::MissingClientCapability(capability) => {
                Some(format!("the client does not support {}", capability.as_str()))
            }
        }
    }

    fn result_bytes(&self) -> i64 {
        match self {
            CallOutcome::Ok(rendered) | CallOutcome::PendingApproval(rendered) => {
                (rendered.text.len() + rendered.structured.to_string().len()) as i64
            }
            CallOutcome::InputRequired { requests, .. } => {
                requests.values().map(|request| request.params.to_string().len()).sum::<usize>() as i64
            }
            _ => 0,
        }
    }
}

pub struct Pipeline {
    registry: Arc<Registry>,
    audit: AuditLog,
    redactor: Arc<Redactor>,
    config: PipelineConfig,
    metrics: Arc<Metrics>,
    seal: StateSeal,
    tasks: Tasks,
    policy: Arc<PolicyHandle>,
    rate_limiter: RateLimiter,
    approvals: Option<ApprovalQueue>,
    /// Where executed writes and approval decisions are recorded as events, when context is on.
    events: Option<EventSink>,
}

/// Arguments the pipeline consumes itself; tools never see them.
const TARGET_ARGUMENT: &str = "target";
const CURSOR_ARGUMENT: &str = "cursor";

impl Pipeline {
    /// A pipeline under the default policy bundle; `with_policy` puts the configured one in.
    #[allow(clippy::expect_used)] // The default bundle is a constant its own tests compile.
    pub fn new(registry: Arc<Registry>, audit: AuditLog, config: PipelineConfig, metrics: Arc<Metrics>) -> Self {
        let policy = PolicyHandle::default_bundle().expect("the default policy bundle compiles");
        Pipeline {
            registry,
            audit,
            redactor: Arc::new(Redactor::new()),
            rate_limiter: RateLimiter::new(config.rate_limits),
            config,
            metrics,
            seal: StateSeal::random(),
            tasks: Tasks::default(),
            policy: Arc::new(policy),
            approvals: None,
            events: None,
        }
    }

    /// Records every executed write and every approval decision as an event in `sink`.
    pub fn with_events(mut self, sink: EventSink) -> Self {
        self.events = Some(sink);
        self
    }

    /// Stores an event the pipeline made of the audit record `audit_seq` (its delivery id); a
    /// failure is logged, never the call's: the audit log holds the durable record.
    async fn emit(&self, mut event: opsgate_core::Event, audit_seq: i64) {
        event.delivery_id = audit_delivery_id(audit_seq);
        if let Some(sink) = &self.events
            && let Err(error) = sink.ingest(vec![event]).await
        {
            tracing::warn!(%error, "could not record the call as an event");
        }
    }

    /// Sends calls that policy wants approved to `queue` instead of refusing them.
    pub fn with_approvals(mut self, queue: ApprovalQueue) -> Self {
        self.approvals = Some(queue);
        self
    }

    pub fn redactor(&self) -> &Arc<Redactor> {
        &self.redactor
    }

    /// Decides with `policy` (which the caller may reload) instead of the default bundle.
    pub fn with_policy(mut self, policy: Arc<PolicyHandle>) -> Self {
        self.policy = policy;
        self
    }

    /// Seals input-required states with `key` (at least 32 bytes) instead of a per-process random
    /// key, so that instances sharing the key accept each other's states.
    pub fn with_state_key(mut self, key: &[u8]) -> Result<Self, StateSealError> {
        self.seal = StateSeal::with_key(key)?;
        Ok(self)
    }

    /// Calls running in the background, by task id.
    pub fn tasks(&self) -> &Tasks {
        &self.tasks
    }

    /// The audit log every call is recorded in; the HTTP identity stage records refused requests
    /// in it too.
    pub fn audit_log(&self) -> &AuditLog {
        &self.audit
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    /// Tools this principal could ever be allowed to call, for `tools/list`: those the policy
    /// does not deny outright on at least one of their targets. Read-only mode is left out of
    /// this test so that write tools stay listed, saying they are disabled (see `mcp.rs`).
    pub fn visible_tools(&self, principal: &Principal) -> Vec<RegisteredTool> {
        let arguments = Map::new();
        let now = now_rfc3339();
        let policy = self.policy.current();
        self.registry
            .tools()
            .into_iter()
            .filter(|registered| {
                let spec = &registered.spec;
                let targets: Vec<Option<&Target>> = match &spec.target_kind {
                    Some(kind) => self.registry.targets.of_kind(kind).iter().map(Some).collect(),
                    None => vec![None],
                };
                targets.into_iter().any(|target| {
                    let input = PolicyInput {
                        version: opsgate_policy::decide::INPUT_VERSION,
                        principal,
                        tool: tool_facts(spec),
                        arguments: &arguments,
                        target,
                        blast_radius: None,
                        limits: Limits::default(),
                        read_only: false,
                        time: &now,
                    };
                    !matches!(policy.decide(&input), Decision::Deny { .. })
                })
            })
            .collect()
    }

    /// Runs one call through every stage and returns once its audit record is durable.
    pub async fn call(&self, request: CallRequest) -> CallOutcome {
        self.call_round(request, RoundInput::default()).await
    }

    /// Runs one round of a call: the first, or a retry with the client's answers.
    pub async fn call_round(&self, request: CallRequest, round: RoundInput) -> CallOutcome {
        let _in_flight = self.metrics.enter();
        let started = Instant::now();
        let time = now_rfc3339();
        let CallRequest { principal, client, tool: tool_name, mut arguments, channel, cancel } = request;

        // Canonical arguments, hashed once. A sealed round state is bound to who called which
        // tool with exactly these arguments; the audit record carries the redacted form, which is
        // the same text unless a secret had to be masked.
        let arguments_value = Value::Object(std::mem::take(&mut arguments));
        let arguments_json = canonical_json(&arguments_value);
        let arguments_hash = sha256_hex(&arguments_json);
        let (audit_arguments, audit_arguments_hash) = if self.redactor.needs_redaction(&arguments_value) {
            let mut redacted = arguments_value.clone();
            self.redactor.redact_value(&mut redacted);
            let redacted_json = canonical_json(&redacted);
            let redacted_hash = sha256_hex(&redacted_json);
            (redacted_json, redacted_hash)
        } else {
            (arguments_json, arguments_hash.clone())
        };
        if let Value::Object(map) = arguments_value {
            arguments = map;
        }

        let audit = AuditEntry {
            time,
            principal: principal.id.clone(),
            principal_kind: principal.kind.as_str().to_string(),
            client: client.clone(),
            tool: tool_name.clone(),
            server: opsgate_core::split_federated_name(&tool_name).map(|(server, _)| server.to_string()),
            target: None,
            environment: None,
            arguments: audit_arguments,
            arguments_hash: audit_arguments_hash,
            decision: "none".to_string(),
            reason: None,
            approval_id: None,
            approvers: None,
            outcome: String::new(),
            error: None,
            result_bytes: 0,
            duration_us: 0,
        };

        let stages = Stages {
            principal: &principal,
            client: client.as_deref(),
            tool_name: &tool_name,
            binding: Binding { principal: &principal.id, tool: &tool_name, arguments_hash: &arguments_hash },
        };
        let mut record = CallRecord { audit, effect: None };
        let outcome = self.run_stages(stages, &mut arguments, round, channel, cancel, &mut record).await;
        let CallRecord { mut audit, effect } = record;
        let outcome = match outcome {
            CallOutcome::ToolError(message) => CallOutcome::ToolError(self.redactor.redact_text(&message).into_owned()),
            other => other,
        };

        let audit_outcome = outcome.audit_outcome();
        audit.outcome = audit_outcome.to_string();
        audit.error = outcome.audit_error();
        audit.result_bytes = outcome.result_bytes();
        let elapsed = started.elapsed();
        audit.duration_us = elapsed.as_micros() as i64;
        let decision = decision_label(&audit.decision);

        // An executed write becomes an event, made before the record moves into the audit log.
        let wrote = effect.is_some_and(|effect| effect != opsgate_core::Effect::Read);
        let action = match &outcome {
            CallOutcome::Ok(rendered) if wrote && self.events.is_some() => Some(action_event(&audit, &rendered.text)),
            _ => None,
        };

        // Audit: the record is committed before the response leaves. If it cannot be, the
        // result is withheld: an unaudited call must not look like a successful one. A call
        // with no other in flight has no batch to share, so it commits its record itself.
        let recorded = if self.metrics.in_flight() == 1 {
            self.audit.record_alone(audit).await
        } else {
            self.audit.record(audit).await
        };
        let outcome = match recorded {
            Ok(receipt) => {
                if let Some(event) = action {
                    self.emit(event, receipt.seq).await;
                }
                outcome
            }
            Err(error) => {
                tracing::error!(tool = %tool_name, %error, "audit record not written; result withheld");
                CallOutcome::ToolError(format!(
                    "the audit log could not be written ({error}); the result of {tool_name} is withheld"
                ))
            }
        };
        self.metrics.record_call(&tool_name, decision, audit_outcome, elapsed);
        outcome
    }

    async fn run_stages(
        &self,
        stages: Stages<'_>,
        arguments: &mut Map<String, Value>,
        round: RoundInput,
        channel: Arc<dyn ClientChannel>,
        cancel: CancellationToken,
        record: &mut CallRecord,
    ) -> CallOutcome {
        let Stages { principal, client, tool_name, binding } = stages;
        let CallRecord { audit, effect } = record;
        let Some(registered) = self.registry.get(tool_name) else {
            return CallOutcome::UnknownTool(format!(
                "unknown tool {tool_name:?}; call tools/list for the tools available"
            ));
        };
        let spec = &registered.spec;
        *effect = Some(spec.effect);
        if let Err(why) = registered.usable() {
            audit.decision = "deny".to_string();
            audit.reason = Some(why.clone());
            return CallOutcome::Denied(format!("denied: {why}"));
        }

        // A retry: verify the state before anything reads it. Answers carried in the state come
        // first so that what the client sends now wins for the keys it answers again.
        let round_state = match &round.request_state {
            None => RoundState::default(),
            Some(sealed) => match self.seal.open(&binding.bytes(), sealed) {
                Ok(state) => state,
                Err(message) => return CallOutcome::InvalidRequest(message),
            },
        };
        let mut responses = round_state.answered;
        responses.extend(round.responses);
        let call_input = CallInput { responses, state: round_state.state };

        // Rate limit, per principal and effect class.
        if let Err(wait) = self.rate_limiter.check(&principal.id, spec.effect) {
            return CallOutcome::Denied(format!(
                "rate limit: {} has made too many {} calls; retry in {:.1}s",
                principal.id,
                if spec.effect == opsgate_core::Effect::Read { "read" } else { "write" },
                wait.as_secs_f64().max(0.1)
            ));
        }

        // Resolve target: the `target` argument names an instance of the tool's connector kind.
        // A federated tool's arguments are the server's own: `target` and `cursor` stay in them.
        let owned_argument = |arguments: &mut Map<String, Value>, name: &str| {
            if registered.federated { None } else { arguments.remove(name) }
        };
        let target_name = match owned_argument(arguments, TARGET_ARGUMENT) {
            None | Some(Value::Null) => None,
            Some(Value::String(name)) => Some(name),
            Some(other) => {
                return CallOutcome::ToolError(format!("invalid arguments: target must be a string, got {other}"));
            }
        };
        let target: Option<Target> = match &spec.target_kind {
            None if target_name.is_some() => {
                return CallOutcome::ToolError(format!("invalid arguments: {tool_name} takes no target"));
            }
            None => None,
            Some(kind) => match self.registry.targets.resolve(kind, target_name.as_deref()) {
                Ok(target) => Some(target.clone()),
                Err(message) => return CallOutcome::ToolError(message),
            },
        };
        if let Some(target) = &target {
            audit.target = Some(target.name.clone());
            audit.environment = Some(target.environment.clone());
        }
        let offset = match owned_argument(arguments, CURSOR_ARGUMENT) {
            None | Some(Value::Null) => 0,
            Some(Value::String(cursor)) => match decode_cursor(&cursor) {
                Some(offset) => offset,
                None => {
                    return CallOutcome::ToolError(format!(
                        "invalid arguments: cursor {cursor:?} is not one this tool returned"
                    ));
                }
            },
            Some(other) => {
                return CallOutcome::ToolError(format!("invalid arguments: cursor must be a string, got {other}"));
            }
        };

        let context = CallContext {
            target,
            budget: self.config.budget,
            client: channel,
            input: call_input,
            principal: principal.clone(),
        };

        // Plan: a write's dry run, for the blast radius now and for the approver later.
        let plan = if spec.effect == opsgate_core::Effect::Read {
            None
        } else {
            match registered.tool.plan(&context, arguments).await {
                Ok(plan) => plan,
                Err(error) => return CallOutcome::ToolError(error.to_string()),
            }
        };

        // Policy.
        let environment = context.target.as_ref().map(|target| target.environment.as_str());
        let input = PolicyInput {
            version: opsgate_policy::decide::INPUT_VERSION,
            principal,
            tool: tool_facts(spec),
            arguments,
            target: context.target.as_ref(),
            blast_radius: plan.as_ref().map(|plan| BlastRadius { count: plan.blast_radius, unit: &plan.unit }),
            limits: Limits { max_blast_radius: self.config.blast_radius.max_for(&spec.name, environment) },
            read_only: self.config.read_only,
            time: &audit.time,
        };
        let decision = self.policy.current().decide(&input);
        audit.decision = decision.as_str().to_string();
        audit.reason = decision.reason().map(str::to_string);

        // Approval gate: a call that needs humans becomes a durable request and does not run
        // now; it runs later, once, with exactly these arguments (`run_approved`).
        match &decision {
            Decision::Allow => {}
            Decision::Deny { reason } => return CallOutcome::Denied(format!("denied by policy: {reason}")),
            Decision::Approve { reason, .. } => {
                let Some(queue) = &self.approvals else {
                    return CallOutcome::Denied(format!(
                        "denied: this call needs human approval ({reason}) and approvals are not enabled on this opsgate"
                    ));
                };
                let target = context.target.as_ref().map(|target| (target.name.as_str(), target.environment.as_str()));
                let pending = PendingCall {
                    principal,
                    client,
                    tool: tool_name,
                    target,
                    arguments,
                    plan: plan.as_ref(),
                    decision: &decision,
                    now: &audit.time,
                };
                return match queue.request(pending).await {
                    Ok(request) => {
                        audit.approval_id = Some(request.id.clone());
                        CallOutcome::PendingApproval(pending_output(&request).render(0, self.config.budget))
                    }
                    Err(message) => CallOutcome::ToolError(message),
                };
            }
        }

        // A tool that only works as a background task cannot serve a client that cannot poll one.
        if registered.tool.task_support() == TaskSupport::Required && !context.client.supports(ClientCapability::Tasks)
        {
            return CallOutcome::MissingClientCapability(ClientCapability::Tasks);
        }

        self.execute(&registered, context, std::mem::take(arguments), &cancel, binding, offset).await
    }

    /// Runs the tool, bounded by the call timeout and `cancel`, then redacts its output and fits
    /// it to the budget. A panic in a tool is caught here so that the call is still answered and
    /// audited.
    async fn execute(
        &self,
        registered: &RegisteredTool,
        context: CallContext,
        arguments: Map<String, Value>,
        cancel: &CancellationToken,
        binding: Binding<'_>,
        offset: usize,
    ) -> CallOutcome {
        let tool_name = registered.spec.name.as_str();
        let execution = AssertUnwindSafe(registered.tool.call(context, arguments)).catch_unwind();
        let result = tokio::select! {
            result = tokio::time::timeout(self.config.call_timeout, execution) => result,
            () = cancel.cancelled() => return CallOutcome::ToolError(format!("{tool_name} was cancelled by the client")),
        };
        let output = match result {
            Err(_) => {
                return CallOutcome::ToolError(format!(
                    "{tool_name} timed out after {}s; narrow the query or try again",
                    self.config.call_timeout.as_secs_f64()
                ));
            }
            Ok(Err(panic)) => {
                let detail = panic
                    .downcast_ref::<&str>()
                    .map(|text| text.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(tool = %tool_name, panic = %self.redactor.redact_text(&detail), "tool panicked");
                return CallOutcome::Internal(format!("{tool_name} failed inside opsgate; see the server log"));
            }
            Ok(Ok(Err(ToolError::InputRequired(input_required)))) => {
                let round_state = RoundState::of(&input_required);
                let request_state = if round_state.is_empty() {
                    None
                } else {
                    match self.seal.seal(&binding.bytes(), &round_state) {
                        Ok(sealed) => Some(sealed),
                        Err(error) => return CallOutcome::Internal(error.to_string()),
                    }
                };
                // The questions leave for the client like any output, so they are redacted too.
                let mut requests = input_required.requests;
                for request in requests.values_mut() {
                    self.redactor.redact_value(&mut request.params);
                }
                return CallOutcome::InputRequired { requests, request_state };
            }
            Ok(Ok(Err(ToolError::MissingClientCapability(capability)))) => {
                return CallOutcome::MissingClientCapability(capability);
            }
            Ok(Ok(Err(error))) => return CallOutcome::ToolError(error.to_string()),
            Ok(Ok(Ok(output))) => output,
        };

        // Redact, then fit to the output budget.
        let output = self.redact_output(output);
        let rendered = output.render(offset, self.config.budget);
        CallOutcome::Ok(rendered)
    }
}

impl Pipeline {
    /// Records a human's decision on an approval request, audits it (refusals too), and, when
    /// it completes the approvals, runs the call here and now. Returns the request's status.
    pub async fn decide_approval(
        &self,
        principal: &Principal,
        id: &str,
        approve: bool,
        comment: Option<&str>,
    ) -> Result<ApprovalStatus, ApprovalError> {
        let Some(queue) = &self.approvals else {
            return Err(ApprovalError::Store(opsgate_store::StoreError::Internal(
                "approvals are not enabled on this opsgate".to_string(),
            )));
        };
        let started = Instant::now();
        let decided = queue.decide(principal, id, approve, comment).await;
        let verb = if approve { "approve" } else { "reject" };
        let mut audit = AuditEntry {
            time: now_rfc3339(),
            principal: principal.id.clone(),
            principal_kind: principal.kind.as_str().to_string(),
            client: None,
            tool: format!("approvals/{verb}"),
            server: None,
            target: None,
            environment: None,
            arguments: canonical_json(&serde_json::json!({"id": id, "comment": comment})),
            arguments_hash: String::new(),
            decision: if decided.is_ok() { "allow" } else { "deny" }.to_string(),
            reason: decided.as_ref().err().map(ToString::to_string),
            approval_id: opsgate_store::approvals::is_valid_approval_id(id).then(|| id.to_string()),
            approvers: None,
            outcome: match &decided {
                Ok(status) => status.as_str().to_string(),
                Err(_) => "refused".to_string(),
            },
            error: decided.as_ref().err().map(ToString::to_string),
            result_bytes: 0,
            duration_us: started.elapsed().as_micros() as i64,
        };
        audit.arguments = self.redactor.redact_text(&audit.arguments).into_owned();
        audit.arguments_hash = sha256_hex(&audit.arguments);
        let receipt = self.audit.record(audit).await.map_err(ApprovalError::Store)?;
        let status = decided?;
        if self.events.is_some() {
            match queue.store.approval(id).await {
                Ok(Some(approval)) => {
                    let event =
                        approval_event(&now_rfc3339(), &principal.id, &approval.request, approve, status.as_str());
                    self.emit(event, receipt.seq).await;
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, approval = %id, "could not record the decision as an event"),
            }
        }
        let status = if status == ApprovalStatus::Approved { self.run_approved(id).await } else { status };
        queue.notices.publish(opsgate_store::Notice::Approval { id: id.to_string() }).await;
        Ok(status)
    }

    /// Runs an approved request, if this caller is the one that claims it (at most one ever
    /// does), with exactly its stored arguments and target, as its requester; stores the result
    /// for `approval_status` and audits the execution with its approvers.
    pub async fn run_approved(&self, id: &str) -> ApprovalStatus {
        let Some(queue) = &self.approvals else { return ApprovalStatus::Approved };
        let store = &queue.store;
        let started = Instant::now();
        let now = now_rfc3339();
        match store.claim_approval(id, &now).await {
            Ok(true) => {}
            Ok(false) | Err(_) => {
                return match store.approval(id).await {
                    Ok(Some(approval)) => approval.status,
                    _ => ApprovalStatus::Approved,
                };
            }
        }
        let approval = match store.approval(id).await {
            Ok(Some(approval)) => approval,
            _ => return ApprovalStatus::Executing,
        };
        let request = &approval.request;
        let outcome = self.execute_stored(&approval).await;
        let (status, result, error) = match &outcome {
            CallOutcome::Ok(rendered) => (ApprovalStatus::Executed, Some(stored_result(rendered)), None),
            other => (ApprovalStatus::Failed, None, other.audit_error()),
        };
        let redacted_arguments = match serde_json::from_str::<Value>(&request.arguments) {
            Ok(mut value) => {
                self.redactor.redact_value(&mut value);
                canonical_json(&value)
            }
            Err(_) => String::new(),
        };
        let audit = AuditEntry {
            time: now_rfc3339(),
            principal: request.requester.clone(),
            principal_kind: request.requester_kind.clone(),
            client: request.client.clone(),
            tool: request.tool.clone(),
            server: opsgate_core::split_federated_name(&request.tool).map(|(server, _)| server.to_string()),
            target: request.target.clone(),
            environment: request.environment.clone(),
            arguments_hash: sha256_hex(&redacted_arguments),
            arguments: redacted_arguments,
            decision: "approved".to_string(),
            reason: Some(request.reason.clone()),
            approval_id: Some(request.id.clone()),
            approvers: Some(approval.approvers().join(",")),
            outcome: outcome.audit_outcome().to_string(),
            error: error.clone(),
            result_bytes: outcome.result_bytes(),
            duration_us: started.elapsed().as_micros() as i64,
        };
        let action = match &outcome {
            CallOutcome::Ok(rendered) if self.events.is_some() => Some(action_event(&audit, &rendered.text)),
            _ => None,
        };
        // The audit record first: a result nobody can account for is not stored as executed.
        let (status, result, error) = match self.audit.record(audit).await {
            Ok(receipt) => {
                if let Some(event) = action {
                    self.emit(event, receipt.seq).await;
                }
                (status, result, error)
            }
            Err(audit_error) => {
                (ApprovalStatus::Failed, None, Some(format!("the audit log could not be written: {audit_error}")))
            }
        };
        if let Err(store_error) =
            store.finish_approval(id, status, result.as_ref(), error.as_deref(), &now_rfc3339()).await
        {
            tracing::error!(approval = %id, error = %store_error, "could not record how an approved call ended");
        }
        status
    }

    /// The execute stage for a stored request: its tool, target and arguments as stored.
    async fn execute_stored(&self, approval: &opsgate_store::Approval) -> CallOutcome {
        let request = &approval.request;
        if self.config.read_only {
            return CallOutcome::Denied("opsgate is in read-only mode now: the approved call was not run".to_string());
        }
        let Some(registered) = self.registry.get(&request.tool) else {
            return CallOutcome::ToolError(format!("tool {} is no longer available", request.tool));
        };
        if let Err(why) = registered.usable() {
            return CallOutcome::Denied(format!("{why}; the approved call was not run"));
        }
        let arguments = match serde_json::from_str::<Value>(&request.arguments) {
            Ok(Value::Object(arguments)) => arguments,
            _ => return CallOutcome::Internal("the stored arguments are not a JSON object".to_string()),
        };
        if sha256_hex(&opsgate_core::canonical::canonical_object(&arguments)) != request.arguments_hash {
            return CallOutcome::Denied("the stored arguments do not match their hash: not run".to_string());
        }
        let target = match (&registered.spec.target_kind, &request.target) {
            (Some(kind), name) => match self.registry.targets.resolve(kind, name.as_deref()) {
                Ok(target) => Some(target.clone()),
                Err(message) => return CallOutcome::ToolError(message),
            },
            (None, _) => None,
        };
        let principal = Principal {
            id: request.requester.clone(),
            kind: serde_json::from_value(Value::String(request.requester_kind.clone()))
                .unwrap_or(opsgate_core::PrincipalKind::Anonymous),
            roles: request.requester_roles.clone(),
        };
        let context = CallContext {
            target,
            budget: self.config.budget,
            client: Arc::new(opsgate_core::NoClient),
            input: CallInput::default(),
            principal,
        };
        let binding =
            Binding { principal: &request.requester, tool: &request.tool, arguments_hash: &request.arguments_hash };
        self.execute(&registered, context, arguments, &CancellationToken::new(), binding, 0).await
    }
}

/// What the stages learn about a call for after it: its audit record, and the tool's effect once
/// the tool is known (an executed write becomes an event).
struct CallRecord {
    audit: AuditEntry,
    effect: Option<opsgate_core::Effect>,
}

/// Who is calling what, and the binding of any state handed out for this call.
#[derive(Clone, Copy)]
struct Stages<'a> {
    principal: &'a Principal,
    client: Option<&'a str>,
    tool_name: &'a str,
    binding: Binding<'a>,
}

/// What a sealed round state is bound to: who called which tool with exactly which arguments.
/// Its bytes are built only when a state is sealed or opened, which most calls never do.
#[derive(Clone, Copy)]
struct Binding<'a> {
    principal: &'a str,
    tool: &'a str,
    arguments_hash: &'a str,
}

impl Binding<'_> {
    fn bytes(&self) -> Vec<u8> {
        format!("{}\n{}\n{}", self.principal, self.tool, self.arguments_hash).into_bytes()
    }
}

impl Pipeline {
    fn redact_output(&self, mut output: ToolOutput) -> ToolOutput {
        let redact_lines = |lines: &mut Vec<String>| {
            for line in lines.iter_mut() {
                if let std::borrow::Cow::Owned(text) = self.redactor.redact_text(line) {
                    *line = text;
                }
            }
        };
        redact_lines(&mut output.summary);
        redact_lines(&mut output.footer);
        for row in &mut output.rows {
            redact_lines(&mut row.cells);
            self.redactor.redact_value(&mut row.item);
        }
        for block in &mut output.content {
            self.redactor.redact_value(block);
        }
        let mut fields = Value::Object(std::mem::take(&mut output.fields));
        self.redactor.redact_value(&mut fields);
        if let Value::Object(fields) = fields {
            output.fields = fields;
        }
        output
    }
}

/// What policy sees of a tool.
fn tool_facts(spec: &opsgate_core::ToolSpec) -> ToolFacts<'_> {
    ToolFacts {
        name: &spec.name,
        effect: spec.effect,
        server: opsgate_core::split_federated_name(&spec.name).map(|(server, _)| server),
        annotations: Annotations { idempotent: spec.idempotent, open_world: spec.open_world },
    }
}

/// The decision as a static label for metrics (the audit entry holds it as text).
fn decision_label(decision: &str) -> &'static str {
    match decision {
        "allow" => "allow",
        "deny" => "deny",
        "approve" => "approve",
        _ => "none",
    }
}

pub use opsgate_store::now_rfc3339;
