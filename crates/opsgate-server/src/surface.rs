//! What a server exposes beside tools: resources, resource templates, prompts and completions.
//! Built-in context (the service catalog) and the conformance fixture implement it; the MCP
//! handler asks it and nothing else.

use rmcp::ErrorData;
use rmcp::model::{
    CompleteRequestParams, CompleteResult, GetPromptRequestParams, GetPromptResponse, GetPromptResult, Prompt,
    ReadResourceRequestParams, ReadResourceResult, Resource, ResourceTemplate,
};

#[async_trait::async_trait]
pub trait Surface: Send + Sync {
    fn resources(&self) -> Vec<Resource> {
        Vec::new()
    }

    fn resource_templates(&self) -> Vec<ResourceTemplate> {
        Vec::new()
    }

    /// An unknown URI is an error naming the URI, never an empty result.
    async fn read_resource(&self, request: ReadResourceRequestParams) -> Result<ReadResourceResult, ErrorData> {
        let data = serde_json::json!({"uri": request.uri});
        Err(ErrorData::resource_not_found(format!("no resource {}", request.uri), Some(data)))
    }

    fn prompts(&self) -> Vec<Prompt> {
        Vec::new()
    }

    async fn get_prompt(&self, request: GetPromptRequestParams) -> Result<GetPromptResult, ErrorData> {
        Err(ErrorData::invalid_params(format!("no prompt {}", request.name), None))
    }

    /// `prompts/get` with room for input-required rounds (2026-07-28): a prompt that needs the
    /// client's answers first returns `GetPromptResponse::InputRequired` and reads them from
    /// `request.input_responses` on the retry. Most prompts need none and implement `get_prompt`.
    async fn get_prompt_response(&self, request: GetPromptRequestParams) -> Result<GetPromptResponse, ErrorData> {
        self.get_prompt(request).await.map(GetPromptResponse::from)
    }

    async fn complete(&self, _request: CompleteRequestParams) -> Result<CompleteResult, ErrorData> {
        Ok(CompleteResult::default())
    }

    /// Whether `resources/subscribe` is offered; subscriptions are tracked by the handler, and
    /// updates announced on the registry's change feed (`Change::ResourceUpdated`).
    fn subscribable(&self) -> bool {
        false
    }
}

/// A server with tools only.
pub struct NoSurface;

impl Surface for NoSurface {}
