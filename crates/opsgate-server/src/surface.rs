//! What a server exposes beside tools: resources, resource templates, prompts and completions.
//! Built-in context (the service catalog) and the conformance fixture implement it; the MCP
//! handler asks it and nothing else.

use rmcp::ErrorData;
use rmcp::model::{
    CompleteRequestParams, CompleteResult, GetPromptRequestParams, GetPromptResult, Prompt, ReadResourceRequestParams,
    ReadResourceResult, Resource, ResourceTemplate,
};

#[async_trait::async_trait]
pub trait Surface: Send + Sync {
    fn resources(&self) -> Vec<Resource> {
        Vec::new()
    }

    fn resource_templates(&self) -> Vec<ResourceTemplate> {
        Vec::new()
    }

    async fn read_resource(&self, request: ReadResourceRequestParams) -> Result<ReadResourceResult, ErrorData> {
        Err(ErrorData::resource_not_found(format!("no resource {}", request.uri), None))
    }

    fn prompts(&self) -> Vec<Prompt> {
        Vec::new()
    }

    async fn get_prompt(&self, request: GetPromptRequestParams) -> Result<GetPromptResult, ErrorData> {
        Err(ErrorData::invalid_params(format!("no prompt {}", request.name), None))
    }

    async fn complete(&self, _request: CompleteRequestParams) -> Result<CompleteResult, ErrorData> {
        Ok(CompleteResult::default())
    }

    /// Whether `resources/subscribe` is offered; subscriptions are tracked by the handler.
    fn subscribable(&self) -> bool {
        false
    }
}

/// A server with tools only.
pub struct NoSurface;

impl Surface for NoSurface {}
