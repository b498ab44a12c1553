//! A federated server's tool as an opsgate `Tool`: its spec from the server's listing (named
//! `mcp__<server>__<tool>`, effect from its annotations unless configured), its call forwarded to
//! the server within the server's call timeout and concurrency cap.

use std::sync::Arc;
use std::time::Duration;

use opsgate_core::{CallContext, Effect, Tool, ToolError, ToolOutput, ToolSpec, federated_name};
use rmcp::RoleClient;
use rmcp::model::{CallToolRequestParams, CallToolResponse, CallToolResult};
use rmcp::service::{Peer, ServiceError};
use serde_json::{Map, Value};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::direct::{DirectError, DirectHttp};

/// What every tool of one connected server shares: the connection, the cap and the timeout.
#[derive(Debug)]
pub struct Link {
    pub server: String,
    pub peer: Peer<RoleClient>,
    /// `tools/call` without rmcp's client tasks, for an HTTP upstream on the stateless revision.
    pub direct: Option<DirectHttp>,
    pub slots: Semaphore,
    pub call_timeout: Duration,
    /// Cancelled when a request finds the transport broken (an HTTP server that went away does
    /// not end the client by itself): the supervisor then reconnects.
    pub broken: CancellationToken,
}

impl Link {
    /// Notes a request's failure: one that says the transport is gone marks the link broken.
    pub fn saw(&self, error: &ServiceError) {
        if matches!(error, ServiceError::TransportSend(_) | ServiceError::TransportClosed) {
            self.break_off(error);
        }
    }

    /// Marks the link broken, for the supervisor to connect again.
    fn break_off(&self, error: &dyn std::fmt::Display) {
        tracing::warn!(server = %self.server, %error, "the connection to a federated server is broken");
        self.broken.cancel();
    }

    /// A call slot under the server's concurrency cap, waiting at most the call timeout.
    pub async fn slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>, String> {
        let server = &self.server;
        match tokio::time::timeout(self.call_timeout, self.slots.acquire()).await {
            Ok(Ok(slot)) => Ok(slot),
            Ok(Err(_)) => Err(format!("server {server} is shutting down")),
            Err(_) => Err(format!("server {server} is busy: no call slot freed within {:?}", self.call_timeout)),
        }
    }
}

pub struct FederatedTool {
    spec: ToolSpec,
    /// The server's own name for the tool.
    upstream_name: String,
    link: Arc<Link>,
    /// Whether calls go by `link.direct`.
    direct: bool,
}

/// The effect a listing implies: `readOnlyHint` ⇒ read, `destructiveHint` ⇒ destructive, anything
/// else (no annotations at all included) ⇒ write. Annotations are the server's claim, so a
/// configured effect wins.
pub fn effect_of(tool: &rmcp::model::Tool, configured: Option<Effect>) -> Effect {
    if let Some(effect) = configured {
        return effect;
    }
    let annotations = tool.annotations.as_ref();
    match (
        annotations.and_then(|annotations| annotations.read_only_hint),
        annotations.and_then(|annotations| annotations.destructive_hint),
    ) {
        (Some(true), _) => Effect::Read,
        (_, Some(true)) => Effect::Destructive,
        _ => Effect::Write,
    }
}

impl FederatedTool {
    pub fn new(link: Arc<Link>, tool: &rmcp::model::Tool, configured: Option<Effect>) -> FederatedTool {
        let annotations = tool.annotations.as_ref();
        let spec = ToolSpec {
            name: federated_name(&link.server, &tool.name),
            title: tool
                .title
                .clone()
                .or_else(|| annotations.and_then(|annotations| annotations.title.clone()))
                .unwrap_or_else(|| tool.name.to_string()),
            description: tool.description.as_deref().unwrap_or_default().to_string(),
            input_schema: (*tool.input_schema).clone(),
            // The server's structured content is not passed on yet (its text content is), so no
            // output schema is promised.
            output_schema: None,
            effect: effect_of(tool, configured),
            target_kind: None,
            idempotent: annotations.and_then(|annotations| annotations.idempotent_hint).unwrap_or(false),
            open_world: annotations.and_then(|annotations| annotations.open_world_hint).unwrap_or(true),
        };
        let direct = link.direct.is_some() && DirectHttp::can_call(tool);
        FederatedTool { spec, upstream_name: tool.name.to_string(), link, direct }
    }

    async fn call_rmcp(&self, arguments: Map<String, Value>) -> Result<CallToolResult, String> {
        let params = CallToolRequestParams::new(self.upstream_name.clone()).with_arguments(arguments);
        self.link.peer.call_tool(params).await.map_err(|error| {
            self.link.saw(&error);
            error.to_string()
        })
    }

    async fn call_direct(&self, direct: &DirectHttp, arguments: Map<String, Value>) -> Result<CallToolResult, String> {
        match direct.call_tool(&self.upstream_name, arguments).await {
            Ok(CallToolResponse::Complete(result)) => Ok(result),
            // rmcp's client answers these with an error too: opsgate's upstream client has no
            // one to ask and does not poll tasks.
            Ok(CallToolResponse::InputRequired(_)) => {
                Err("the server asked for input mid-call, which opsgate does not pass on".to_string())
            }
            Ok(_) => Err(rmcp::ServiceError::UnexpectedResponse.to_string()),
            Err(DirectError::Transport(error)) => {
                self.link.break_off(&error);
                Err(error)
            }
            Err(DirectError::Answer(error)) => Err(error),
        }
    }
}

#[async_trait::async_trait]
impl Tool for FederatedTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, _context: CallContext, arguments: Map<String, Value>) -> Result<ToolOutput, ToolError> {
        let server = &self.link.server;
        let deadline = tokio::time::Instant::now() + self.link.call_timeout;
        let _slot = self.link.slot().await.map_err(ToolError::Unavailable)?;
        let answer = match &self.link.direct {
            Some(direct) if self.direct => tokio::time::timeout_at(deadline, self.call_direct(direct, arguments)).await,
            _ => tokio::time::timeout_at(deadline, self.call_rmcp(arguments)).await,
        };
        let Ok(answer) = answer else {
            return Err(ToolError::Unavailable(format!(
                "server {server} did not answer within {:?}",
                self.link.call_timeout
            )));
        };
        let result =
            answer.map_err(|error| ToolError::Unavailable(format!("server {server} failed the call: {error}")))?;
        let mut text = Vec::new();
        let mut content = Vec::new();
        for block in result.content {
            match block.as_text() {
                Some(block) => text.push(block.text.clone()),
                None => {
                    content.push(serde_json::to_value(&block).map_err(|error| ToolError::Internal(error.to_string()))?)
                }
            }
        }
        if result.is_error == Some(true) {
            let message = if text.is_empty() { "the tool reported an error".to_string() } else { text.join("\n") };
            return Err(ToolError::Backend(format!("{server}: {message}")));
        }
        Ok(ToolOutput { summary: text, content, ..ToolOutput::default() })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rmcp::model::ToolAnnotations;

    use super::*;

    fn listed(annotations: Option<ToolAnnotations>) -> rmcp::model::Tool {
        let tool = rmcp::model::Tool::new("t", "a tool", Arc::new(serde_json::Map::new()));
        match annotations {
            Some(annotations) => tool.annotate(annotations),
            None => tool,
        }
    }

    #[test]
    fn the_effect_comes_from_annotations_unless_configured_and_unknown_is_a_write() {
        let hints = |read_only, destructive| Some(ToolAnnotations::from_raw(None, read_only, destructive, None, None));
        assert_eq!(effect_of(&listed(hints(Some(true), None)), None), Effect::Read);
        // A read-only claim wins over a destructive one: nothing is changed by a read.
        assert_eq!(effect_of(&listed(hints(Some(true), Some(true))), None), Effect::Read);
        assert_eq!(effect_of(&listed(hints(Some(false), Some(true))), None), Effect::Destructive);
        assert_eq!(effect_of(&listed(hints(Some(false), Some(false))), None), Effect::Write);
        assert_eq!(effect_of(&listed(hints(None, None)), None), Effect::Write);
        assert_eq!(effect_of(&listed(None), None), Effect::Write);
        // The configuration is the operator's word; annotations are the server's claim.
        assert_eq!(effect_of(&listed(hints(Some(true), None)), Some(Effect::Destructive)), Effect::Destructive);
        assert_eq!(effect_of(&listed(None), Some(Effect::Read)), Effect::Read);
    }
}
