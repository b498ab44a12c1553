//! The MCP surface: an rmcp `ServerHandler` that lists tools from the registry (filtered by
//! policy), sends every `tools/call` through the pipeline, and serves resources and prompts from a
//! `Surface`. The same handler serves stdio and Streamable HTTP, both protocol revisions.
//!
//! Beside calls it carries what the protocol asks of a server: input-required rounds and tasks
//! (through the pipeline), list-changed and resource-updated notices from the registry's change
//! feed (`subscriptions/listen` in 2026-07-28, the session stream in 2025-11-25), and log levels.

// Logging, sampling, roots and resources/subscribe are deprecated in 2026-07-28 but still part of
// 2025-11-25, which this server speaks too.
#![allow(deprecated)]

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opsgate_core::{
    AskMode, ClientCapability, ClientChannel, Effect, InputRequest, Principal, Rendered, TaskSupport, ToolSpec,
};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams, ClientCapabilities,
    CompleteRequestParams, CompleteResult, ContentBlock, GetPromptRequestParams, GetPromptResponse, GetTaskParams,
    GetTaskResult, Implementation, InputRequests, InputRequiredResult, ListPromptsResult, ListResourceTemplatesResult,
    ListResourcesResult, ListToolsResult, LoggingLevel, LoggingMessageNotificationParam, PaginatedRequestParams,
    ProgressNotificationParam, ProgressToken, ProtocolVersion, ReadResourceRequestParams, ReadResourceResponse,
    ResourceUpdatedNotificationParam, ServerCapabilities, ServerConfig, ServerRequest, SetLevelRequestParams,
    SubscribeRequestParams, SubscriptionFilter, Tool, ToolAnnotations, UnsubscribeRequestParams, UpdateTaskParams,
};
use rmcp::service::{NotificationContext, Peer, RequestContext, SubscriptionContext, SubscriptionSendError};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::RecvError;

use crate::changes::Change;
use crate::pipeline::{CallOutcome, CallRequest, Pipeline, RoundInput};
use crate::registry::RegisteredTool;
use crate::surface::Surface;

/// State shared by every connection.
pub struct McpState {
    pub pipeline: Arc<Pipeline>,
    pub surface: Arc<dyn Surface>,
    pub server_name: String,
    pub instructions: Option<String>,
}

/// One handler per connection (stdio) or per session/request (HTTP). Cheap to create.
#[derive(Clone)]
pub struct OpsgateMcp {
    state: Arc<McpState>,
    /// Used when the transport put no principal on the request: the local user in stdio mode.
    default_principal: Principal,
    /// Resources this 2025-11-25 session subscribed to; 2026-07-28 names them per listen stream.
    subscriptions: Arc<Mutex<HashSet<String>>>,
    /// The level this 2025-11-25 session set with `logging/setLevel`; `None` sends every level.
    /// 2026-07-28 requests name theirs in `_meta`.
    log_level: Arc<Mutex<Option<LoggingLevel>>>,
    /// Feed receivers opened for `subscriptions/listen` streams before their acknowledgment, so
    /// that a change announced right after the client sees the ack is not lost; `listen` takes
    /// the oldest. Over HTTP a handler serves one request, so this holds at most one.
    pending_listeners: Arc<Mutex<VecDeque<Receiver<Change>>>>,
}

impl OpsgateMcp {
    pub fn new(state: Arc<McpState>, default_principal: Principal) -> Self {
        OpsgateMcp {
            state,
            default_principal,
            subscriptions: Arc::default(),
            log_level: Arc::default(),
            pending_listeners: Arc::default(),
        }
    }

    /// A tool as `tools/list` shows it: in read-only mode a write tool says it is disabled, so
    /// that an agent does not plan around it.
    fn listed_tool(&self, registered: &RegisteredTool) -> Tool {
        let spec = &registered.spec;
        let mut tool = Tool::clone(&registered.mcp);
        if self.state.pipeline.config().read_only && spec.effect != Effect::Read {
            tool.description = Some(
                format!("[disabled: opsgate is in read-only mode, so every call is denied] {}", spec.description)
                    .into(),
            );
        }
        tool
    }

    /// The principal the HTTP middleware authenticated, else this handler's default.
    fn principal(&self, context: &RequestContext<RoleServer>) -> Principal {
        context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Principal>())
            .cloned()
            .unwrap_or_else(|| self.default_principal.clone())
    }
}

/// A `tools/call` ready for the pipeline, as `call_tool` and the stateless HTTP path
/// (`crate::stateless`) both build it.
pub(crate) struct PreparedCall {
    pub call: CallRequest,
    pub round: RoundInput,
    /// The tool declares an output schema, so its result carries `structuredContent`.
    pub with_structured: bool,
    /// The tool may run as a background task and the client declared tasks: the call goes to
    /// `tasks::call_detachable`.
    pub task_capable: bool,
}

impl PreparedCall {
    /// `registered` is what the registry holds under the request's name, looked up once by the
    /// caller (the stateless path has it from its own checks).
    pub fn new(
        registered: Option<&RegisteredTool>,
        principal: Principal,
        client: Option<String>,
        capabilities: Option<&ClientCapabilities>,
        request: CallToolRequestParams,
        channel: Arc<dyn ClientChannel>,
        cancel: tokio_util::sync::CancellationToken,
    ) -> Self {
        let with_structured = registered.is_some_and(|tool| tool.spec.output_schema.is_some());
        let task_capable = registered.is_some_and(|tool| tool.tool.task_support() != TaskSupport::Forbidden)
            && capabilities.is_some_and(|capabilities| capabilities.supports_tasks());
        let round = RoundInput {
            responses: request.input_responses.unwrap_or_default().into_iter().collect(),
            request_state: request.request_state,
        };
        let call = CallRequest {
            principal,
            client,
            tool: request.name.to_string(),
            arguments: request.arguments.unwrap_or_default(),
            channel,
            cancel,
        };
        PreparedCall { call, round, with_structured, task_capable }
    }
}

/// The channel for a call the stateless HTTP path answers: see `PeerChannel::unrequested`.
pub(crate) fn unrequested_channel(capabilities: Option<ClientCapabilities>) -> Arc<dyn ClientChannel> {
    Arc::new(PeerChannel::unrequested(capabilities))
}

/// The MCP form of a tool spec. Annotations follow the effect so clients can warn on writes.
pub fn mcp_tool(spec: &ToolSpec) -> Tool {
    let mut annotations = ToolAnnotations::new();
    annotations.title = Some(spec.title.clone());
    annotations.read_only_hint = Some(spec.effect == Effect::Read);
    annotations.destructive_hint = Some(spec.effect == Effect::Destructive);
    annotations.idempotent_hint = Some(spec.idempotent);
    annotations.open_world_hint = Some(spec.open_world);
    let mut tool = Tool::new(spec.name.clone(), spec.description.clone(), Arc::new(spec.input_schema.clone()))
        .with_title(spec.title.clone())
        .with_annotations(annotations);
    if let Some(output_schema) = &spec.output_schema {
        tool = tool.with_raw_output_schema(Arc::new(output_schema.clone()));
    }
    tool
}

/// The MCP result for a pipeline outcome. Protocol-level faults (unknown tool, a missing client
/// capability, a forged state, a broken tool) are JSON-RPC errors; everything an agent can act on
/// is a tool result.
pub fn call_result(outcome: CallOutcome, with_structured: bool) -> Result<CallToolResult, ErrorData> {
    match call_response(outcome, with_structured)? {
        CallToolResponse::Complete(result) => Ok(result),
        _ => Err(ErrorData::invalid_request("this call needs input from the client, which cannot give it here", None)),
    }
}

/// `call_result` for transports that can carry input-required rounds (2026-07-28).
pub fn call_response(outcome: CallOutcome, with_structured: bool) -> Result<CallToolResponse, ErrorData> {
    match outcome {
        CallOutcome::Ok(rendered) | CallOutcome::PendingApproval(rendered) => {
            Ok(success_result(rendered, with_structured).into())
        }
        CallOutcome::ToolError(message) | CallOutcome::Denied(message) => {
            Ok(CallToolResult::error(vec![ContentBlock::text(message)]).into())
        }
        CallOutcome::UnknownTool(message) | CallOutcome::InvalidRequest(message) => {
            Err(ErrorData::invalid_params(message, None))
        }
        CallOutcome::Internal(message) => Err(ErrorData::internal_error(message, None)),
        CallOutcome::MissingClientCapability(capability) => {
            Err(ErrorData::missing_required_client_capability(required_capabilities(capability)))
        }
        CallOutcome::InputRequired { requests, request_state } => {
            let mut input_requests = InputRequests::new();
            for (key, request) in requests {
                let request =
                    mcp_input_request(&request).map_err(|message| ErrorData::internal_error(message, None))?;
                input_requests.insert(key, request);
            }
            Ok(InputRequiredResult::new(Some(input_requests), request_state).into())
        }
    }
}

/// The `requiredCapabilities` of a -32021 error: the capability as a client would declare it.
fn required_capabilities(capability: ClientCapability) -> ClientCapabilities {
    let declared = match capability {
        ClientCapability::Tasks => json!({"extensions": {rmcp::model::TASKS_EXTENSION_ID: {}}}),
        other => json!({other.as_str(): {}}),
    };
    serde_json::from_value(declared).unwrap_or_default()
}

/// A tool's question in the SDK's form. Fails only for a method a client cannot be asked.
pub fn mcp_input_request(request: &InputRequest) -> Result<rmcp::model::InputRequest, String> {
    let mut wire = json!({"method": request.method});
    // `roots/list` takes no params; an empty object is how tools say so.
    let no_params = request.params.is_null() || request.params.as_object().is_some_and(|params| params.is_empty());
    if !no_params {
        wire["params"] = request.params.clone();
    }
    serde_json::from_value(wire)
        .map_err(|error| format!("the tool asked the client an invalid {}: {error}", request.method))
}

fn success_result(rendered: Rendered, with_structured: bool) -> CallToolResult {
    let mut content = Vec::with_capacity(1 + rendered.content.len());
    if !rendered.text.is_empty() {
        content.push(ContentBlock::text(rendered.text));
    }
    for block in rendered.content {
        match serde_json::from_value::<ContentBlock>(block) {
            Ok(block) => content.push(block),
            Err(error) => tracing::warn!(%error, "tool returned a content block that is not valid MCP; dropped"),
        }
    }
    let mut result = CallToolResult::success(content);
    if with_structured {
        result.structured_content = Some(rendered.structured);
    }
    result
}

/// The way back to the client for one request: progress against the request's token, log
/// notifications, and server-to-client requests.
struct PeerChannel {
    /// `None` for a call answered without rmcp's service (`crate::stateless`): it has no progress
    /// token and no log level, and asks its questions in an input-required result, so nothing
    /// is ever sent on it.
    peer: Option<Peer<RoleServer>>,
    progress_token: Option<ProgressToken>,
    capabilities: Option<ClientCapabilities>,
    mode: AskMode,
    /// The least severe level the client wants; `None` sends no log at all.
    log_threshold: Option<LoggingLevel>,
}

impl PeerChannel {
    fn for_request(context: &RequestContext<RoleServer>, session_level: Option<LoggingLevel>) -> Self {
        let stateless = is_stateless(context);
        PeerChannel {
            peer: Some(context.peer.clone()),
            progress_token: context.meta.get_progress_token(),
            capabilities: context.client_capabilities(),
            // A 2026-07-28 request has no session to send requests on: questions end the call.
            mode: if stateless { AskMode::InputRequired } else { AskMode::Request },
            // 2026-07-28 sends logs only to a request that asks for them; a 2025-11-25 session
            // gets every level until it sets one.
            log_threshold: if stateless {
                context.meta.log_level()
            } else {
                Some(session_level.unwrap_or(LoggingLevel::Debug))
            },
        }
    }

    /// The channel of a 2026-07-28 call with neither a progress token nor a log level.
    fn unrequested(capabilities: Option<ClientCapabilities>) -> Self {
        PeerChannel {
            peer: None,
            progress_token: None,
            capabilities,
            mode: AskMode::InputRequired,
            log_threshold: None,
        }
    }
}

/// Whether a request came in on the 2026-07-28 stateless wire.
fn is_stateless(context: &RequestContext<RoleServer>) -> bool {
    context.protocol_version().is_some_and(|version| version.as_str() >= ProtocolVersion::V_2026_07_28.as_str())
}

/// RFC 5424 order, least severe first.
fn severity(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

#[async_trait::async_trait]
impl ClientChannel for PeerChannel {
    async fn progress(&self, progress: f64, total: Option<f64>, message: Option<String>) {
        let (Some(peer), Some(token)) = (&self.peer, self.progress_token.clone()) else { return };
        let mut params = ProgressNotificationParam::new(token, progress);
        params.total = total;
        params.message = message;
        if let Err(error) = peer.notify_progress(params).await {
            tracing::debug!(%error, "progress notification not delivered");
        }
    }

    async fn log(&self, level: &str, logger: Option<&str>, data: Value) {
        let level =
            serde_json::from_value::<LoggingLevel>(Value::String(level.to_string())).unwrap_or(LoggingLevel::Info);
        let (Some(peer), Some(threshold)) = (&self.peer, self.log_threshold) else { return };
        if severity(level) < severity(threshold) {
            return;
        }
        let mut params = LoggingMessageNotificationParam::new(level, data);
        params.logger = logger.map(str::to_string);
        if let Err(error) = peer.notify_logging_message(params).await {
            tracing::debug!(%error, "log notification not delivered");
        }
    }

    async fn request(&self, method: &str, params: Value) -> Result<Value, String> {
        let (Some(peer), AskMode::Request) = (&self.peer, self.mode) else {
            return Err(format!(
                "{method} cannot be sent mid-call on this protocol version; ask with CallContext::ask instead"
            ));
        };
        let request: ServerRequest = serde_json::from_value(json!({"method": method, "params": params}))
            .map_err(|error| format!("invalid {method} request: {error}"))?;
        let result = peer.send_request(request).await.map_err(|error| error.to_string())?;
        serde_json::to_value(result).map_err(|error| error.to_string())
    }

    fn supports(&self, capability: ClientCapability) -> bool {
        let Some(capabilities) = &self.capabilities else { return false };
        match capability {
            ClientCapability::Elicitation => capabilities.elicitation.is_some(),
            ClientCapability::Sampling => capabilities.sampling.is_some(),
            ClientCapability::Roots => capabilities.roots.is_some(),
            ClientCapability::Tasks => capabilities.supports_tasks(),
        }
    }

    fn ask_mode(&self) -> AskMode {
        self.mode
    }
}

impl ServerHandler for OpsgateMcp {
    fn get_info(&self) -> ServerConfig {
        // Every list may change: whatever changes one announces it on the registry's feed.
        let mut capabilities = ServerCapabilities::builder()
            .enable_logging()
            .enable_completions()
            .enable_prompts()
            .enable_prompts_list_changed()
            .enable_resources()
            .enable_resources_list_changed()
            .enable_tools()
            .enable_tool_list_changed()
            .build();
        if self.state.surface.subscribable()
            && let Some(resources) = capabilities.resources.as_mut()
        {
            resources.subscribe = Some(true);
        }
        if self.state.pipeline.registry().any_task_capable() {
            capabilities
                .extensions
                .get_or_insert_default()
                .insert(rmcp::model::TASKS_EXTENSION_ID.to_string(), serde_json::Map::new());
        }
        let mut config = ServerConfig::new(capabilities);
        config.server_info = Implementation::new(self.state.server_name.clone(), env!("CARGO_PKG_VERSION"));
        config.instructions = self.state.instructions.clone();
        config
    }

    fn supported_protocol_versions(&self) -> std::borrow::Cow<'static, [ProtocolVersion]> {
        std::borrow::Cow::Borrowed(ProtocolVersion::KNOWN_VERSIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let principal = self.principal(&context);
        let tools =
            self.state.pipeline.visible_tools(&principal).into_iter().map(|tool| self.listed_tool(&tool)).collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    // rmcp validates `Mcp-Param-*` headers against this schema; a quarantined tool's schema is
    // the changed, untrusted one, so none is given and the call reaches the pipeline, which
    // denies and audits it.
    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.state
            .pipeline
            .registry()
            .get(name)
            .filter(|tool| tool.quarantine.is_none())
            .map(|tool| Tool::clone(&tool.mcp))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let channel = Arc::new(PeerChannel::for_request(&context, self.session_log_level()));
        let prepared = PreparedCall::new(
            self.state.pipeline.registry().get(&request.name).as_ref(),
            self.principal(&context),
            context.client_info().map(|info| info.name),
            context.client_capabilities().as_ref(),
            request,
            channel,
            context.ct.clone(),
        );
        if prepared.task_capable {
            return crate::tasks::call_detachable(
                self.state.pipeline.clone(),
                prepared.call,
                prepared.round,
                prepared.with_structured,
            )
            .await;
        }
        let outcome = self.state.pipeline.call_round(prepared.call, prepared.round).await;
        call_response(outcome, prepared.with_structured)
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(ListResourcesResult::with_all_items(self.state.surface.resources()))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(self.state.surface.resource_templates()))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        self.state.surface.read_resource(request).await.map(ReadResourceResponse::from)
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        Ok(ListPromptsResult::with_all_items(self.state.surface.prompts()))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        self.state.surface.get_prompt_response(request).await
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        self.state.surface.complete(request).await
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        if let Ok(mut level) = self.log_level.lock() {
            *level = Some(request.level);
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        if !self.state.surface.subscribable() {
            return Err(ErrorData::method_not_found::<rmcp::model::SubscribeRequestMethod>());
        }
        if let Ok(mut subscriptions) = self.subscriptions.lock() {
            subscriptions.insert(request.uri);
        }
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        if let Ok(mut subscriptions) = self.subscriptions.lock() {
            subscriptions.remove(&request.uri);
        }
        Ok(())
    }

    /// A 2025-11-25 session has begun: from now on it hears of changes on its own stream.
    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        let changes = self.state.pipeline.registry().changes().subscribe();
        tokio::spawn(forward_to_session(context.peer, changes, self.subscriptions.clone()));
    }

    fn accepted_subscription_filter(&self, requested: &SubscriptionFilter) -> Option<SubscriptionFilter> {
        // The SDK narrows this to what was requested and what `get_info` advertises.
        let mut accepted =
            SubscriptionFilter::builder().tools_list_changed().prompts_list_changed().resources_list_changed().build();
        if self.state.surface.subscribable() {
            accepted.resource_subscriptions = requested.resource_subscriptions.clone();
        }
        // The SDK acknowledges the stream between this call and `listen`: subscribe now.
        if let Ok(mut pending) = self.pending_listeners.lock() {
            pending.push_back(self.state.pipeline.registry().changes().subscribe());
        }
        Some(accepted)
    }

    /// One `subscriptions/listen` stream (2026-07-28): changes from the feed until the client
    /// hangs up. The sink drops what this stream did not subscribe to.
    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let opened_before_ack = self.pending_listeners.lock().ok().and_then(|mut pending| pending.pop_front());
        let mut changes = opened_before_ack.unwrap_or_else(|| self.state.pipeline.registry().changes().subscribe());
        let sink = context.sink().clone();
        loop {
            let received = tokio::select! {
                () = context.cancelled() => return Ok(()),
                received = changes.recv() => received,
            };
            let announced = match received {
                Ok(change) => vec![change],
                // Too far behind to know what changed: every list may have.
                Err(RecvError::Lagged(_)) => {
                    vec![Change::ToolsListChanged, Change::PromptsListChanged, Change::ResourcesListChanged]
                }
                Err(RecvError::Closed) => return Ok(()),
            };
            for change in announced {
                let sent = match change {
                    Change::ToolsListChanged => sink.notify_tool_list_changed().await,
                    Change::PromptsListChanged => sink.notify_prompt_list_changed().await,
                    Change::ResourcesListChanged => sink.notify_resource_list_changed().await,
                    Change::ResourceUpdated { uri } => sink.notify_resource_updated(uri).await,
                };
                match sent {
                    Ok(()) | Err(SubscriptionSendError::NotificationNotAccepted(_)) => {}
                    Err(error) => {
                        tracing::debug!(%error, "listen stream closed");
                        return Ok(());
                    }
                }
            }
        }
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, ErrorData> {
        self.state.pipeline.tasks().get(&request.task_id).map(GetTaskResult::new)
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.state.pipeline.tasks().update(&request.task_id, request.input_responses)
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.state.pipeline.tasks().cancel(&request.task_id)
    }
}

impl OpsgateMcp {
    fn session_log_level(&self) -> Option<LoggingLevel> {
        self.log_level.lock().ok().and_then(|level| *level)
    }
}

/// How often an idle forwarder checks whether its session is gone: it holds a receiver on the
/// feed, and without changes it would otherwise wait for one to notice.
const SESSION_CHECK_INTERVAL: Duration = Duration::from_secs(30);

/// Forwards the change feed to one 2025-11-25 session: list changes always, resource updates for
/// the URIs it subscribed to. Ends with the session.
async fn forward_to_session(
    peer: Peer<RoleServer>,
    mut changes: Receiver<Change>,
    subscriptions: Arc<Mutex<HashSet<String>>>,
) {
    loop {
        let received = tokio::select! {
            received = changes.recv() => received,
            () = tokio::time::sleep(SESSION_CHECK_INTERVAL) => {
                if peer.is_transport_closed() {
                    return;
                }
                continue;
            }
        };
        let change = match received {
            Ok(change) => change,
            Err(RecvError::Lagged(_)) => Change::ToolsListChanged,
            Err(RecvError::Closed) => return,
        };
        let sent = match change {
            Change::ToolsListChanged => peer.notify_tool_list_changed().await,
            Change::PromptsListChanged => peer.notify_prompt_list_changed().await,
            Change::ResourcesListChanged => peer.notify_resource_list_changed().await,
            Change::ResourceUpdated { uri } => {
                let subscribed = subscriptions.lock().is_ok_and(|subscriptions| subscriptions.contains(&uri));
                if !subscribed {
                    continue;
                }
                peer.notify_resource_updated(ResourceUpdatedNotificationParam::new(uri)).await
            }
        };
        if sent.is_err() || peer.is_transport_closed() {
            return;
        }
    }
}
