//! The MCP surface: an rmcp `ServerHandler` that lists tools from the registry (filtered by
//! policy), sends every `tools/call` through the pipeline, and serves resources and prompts from a
//! `Surface`. The same handler serves stdio and Streamable HTTP, both protocol revisions.

// Logging and resources/subscribe are deprecated in 2026-07-28 but still part of 2025-11-25,
// which this server speaks too.
#![allow(deprecated)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use opsgate_core::{ClientChannel, Effect, Principal, Rendered, ToolSpec};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CompleteRequestParams, CompleteResult, ContentBlock,
    GetPromptRequestParams, GetPromptResponse, Implementation, ListPromptsResult, ListResourceTemplatesResult,
    ListResourcesResult, ListToolsResult, LoggingLevel, LoggingMessageNotificationParam, PaginatedRequestParams,
    ProgressNotificationParam, ProgressToken, ProtocolVersion, ReadResourceRequestParams, ReadResourceResponse,
    ServerCapabilities, ServerConfig, ServerRequest, SetLevelRequestParams, SubscribeRequestParams, Tool,
    ToolAnnotations, UnsubscribeRequestParams,
};
use rmcp::service::{Peer, RequestContext};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::pipeline::{CallOutcome, CallRequest, Pipeline};
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
    subscriptions: Arc<Mutex<HashSet<String>>>,
}

impl OpsgateMcp {
    pub fn new(state: Arc<McpState>, default_principal: Principal) -> Self {
        OpsgateMcp { state, default_principal, subscriptions: Arc::default() }
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

/// The MCP result for a pipeline outcome. Protocol-level faults (unknown tool) are JSON-RPC
/// errors; everything an agent can act on is a tool result.
pub fn call_result(outcome: CallOutcome, with_structured: bool) -> Result<CallToolResult, ErrorData> {
    match outcome {
        CallOutcome::Ok(rendered) => Ok(success_result(rendered, with_structured)),
        CallOutcome::ToolError(message) | CallOutcome::Denied(message) => {
            Ok(CallToolResult::error(vec![ContentBlock::text(message)]))
        }
        CallOutcome::UnknownTool(message) => Err(ErrorData::invalid_params(message, None)),
    }
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
    peer: Peer<RoleServer>,
    progress_token: Option<ProgressToken>,
}

#[async_trait::async_trait]
impl ClientChannel for PeerChannel {
    async fn progress(&self, progress: f64, total: Option<f64>, message: Option<String>) {
        let Some(token) = self.progress_token.clone() else { return };
        let mut params = ProgressNotificationParam::new(token, progress);
        params.total = total;
        params.message = message;
        if let Err(error) = self.peer.notify_progress(params).await {
            tracing::debug!(%error, "progress notification not delivered");
        }
    }

    async fn log(&self, level: &str, logger: Option<&str>, data: Value) {
        let level =
            serde_json::from_value::<LoggingLevel>(Value::String(level.to_string())).unwrap_or(LoggingLevel::Info);
        let mut params = LoggingMessageNotificationParam::new(level, data);
        params.logger = logger.map(str::to_string);
        if let Err(error) = self.peer.notify_logging_message(params).await {
            tracing::debug!(%error, "log notification not delivered");
        }
    }

    async fn request(&self, method: &str, params: Value) -> Result<Value, String> {
        let request: ServerRequest = serde_json::from_value(json!({"method": method, "params": params}))
            .map_err(|error| format!("invalid {method} request: {error}"))?;
        let result = self.peer.send_request(request).await.map_err(|error| error.to_string())?;
        serde_json::to_value(result).map_err(|error| error.to_string())
    }
}

impl ServerHandler for OpsgateMcp {
    fn get_info(&self) -> ServerConfig {
        let mut capabilities = ServerCapabilities::builder()
            .enable_logging()
            .enable_completions()
            .enable_prompts()
            .enable_resources()
            .enable_tools()
            .build();
        if let Some(tools) = capabilities.tools.as_mut() {
            tools.list_changed = Some(true);
        }
        if self.state.surface.subscribable()
            && let Some(resources) = capabilities.resources.as_mut()
        {
            resources.subscribe = Some(true);
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
            self.state.pipeline.visible_tools(&principal).into_iter().map(|tool| mcp_tool(&tool.spec)).collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.state.pipeline.registry().get(name).map(|tool| mcp_tool(&tool.spec))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let principal = self.principal(&context);
        let client = context.client_info().map(|info| info.name);
        let with_structured =
            self.state.pipeline.registry().get(&request.name).is_some_and(|tool| tool.spec.output_schema.is_some());
        let channel =
            Arc::new(PeerChannel { peer: context.peer.clone(), progress_token: context.meta.get_progress_token() });
        let outcome = self
            .state
            .pipeline
            .call(CallRequest {
                principal,
                client,
                tool: request.name.to_string(),
                arguments: request.arguments.unwrap_or_default(),
                channel,
                cancel: context.ct.clone(),
            })
            .await;
        call_result(outcome, with_structured).map(CallToolResponse::from)
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
        self.state.surface.get_prompt(request).await.map(GetPromptResponse::from)
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
        _request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
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
}

/// A cancellation token that is never cancelled, for callers without a client (the CLI).
pub fn never_cancelled() -> CancellationToken {
    CancellationToken::new()
}
