//! The fixture's resources, resource template, prompts and completions, served through opsgate's
//! `Surface` trait.

use opsgate_core::InputRequest;
use opsgate_server::mcp::mcp_input_request;
use opsgate_server::surface::Surface;
use rmcp::ErrorData;
use rmcp::model::{
    CompleteRequestParams, CompleteResult, CompletionInfo, ContentBlock, GetPromptRequestParams, GetPromptResponse,
    GetPromptResult, InputRequests, InputRequiredResult, Prompt, PromptArgument, PromptMessage,
    ReadResourceRequestParams, ReadResourceResult, Reference, Resource, ResourceContents, ResourceTemplate, Role,
};
use serde_json::{Value, json};

use crate::fixture::PNG;

pub struct FixtureSurface;

const TEMPLATE_PREFIX: &str = "test://template/";
const TEMPLATE_SUFFIX: &str = "/data";

fn argument(name: &str, description: &str) -> PromptArgument {
    PromptArgument::new(name).with_description(description).with_required(true)
}

fn text_message(text: impl Into<String>) -> PromptMessage {
    PromptMessage::new_text(Role::User, text)
}

fn string_argument<'a>(request: &'a GetPromptRequestParams, name: &str) -> Result<&'a str, ErrorData> {
    request
        .arguments
        .as_ref()
        .and_then(|arguments| arguments.get(name))
        .and_then(Value::as_str)
        .ok_or_else(|| ErrorData::invalid_params(format!("prompt {} needs the argument {name}", request.name), None))
}

#[async_trait::async_trait]
impl Surface for FixtureSurface {
    fn resources(&self) -> Vec<Resource> {
        vec![
            Resource::new("test://static-text", "static-text")
                .with_description("A static text resource")
                .with_mime_type("text/plain"),
            Resource::new("test://static-binary", "static-binary")
                .with_description("A static PNG image")
                .with_mime_type("image/png"),
            Resource::new("test://watched-resource", "watched-resource")
                .with_description("A resource clients may subscribe to")
                .with_mime_type("text/plain"),
        ]
    }

    fn resource_templates(&self) -> Vec<ResourceTemplate> {
        vec![
            ResourceTemplate::new("test://template/{id}/data", "template-data")
                .with_description("Data for any id")
                .with_mime_type("application/json"),
        ]
    }

    async fn read_resource(&self, request: ReadResourceRequestParams) -> Result<ReadResourceResult, ErrorData> {
        let uri = request.uri.as_str();
        let contents = match uri {
            "test://static-text" => ResourceContents::text("This is the content of the static text resource.", uri)
                .with_mime_type("text/plain"),
            "test://static-binary" => ResourceContents::blob(PNG, uri).with_mime_type("image/png"),
            "test://watched-resource" => {
                ResourceContents::text("This resource is watched.", uri).with_mime_type("text/plain")
            }
            _ => match uri.strip_prefix(TEMPLATE_PREFIX).and_then(|rest| rest.strip_suffix(TEMPLATE_SUFFIX)) {
                Some(id) if !id.is_empty() && !id.contains('/') => {
                    let data = json!({"id": id, "templateTest": true, "data": format!("Data for ID: {id}")});
                    ResourceContents::text(data.to_string(), uri).with_mime_type("application/json")
                }
                _ => {
                    let data = json!({"uri": uri});
                    return Err(ErrorData::resource_not_found(format!("no resource {uri}"), Some(data)));
                }
            },
        };
        Ok(ReadResourceResult::new(vec![contents]))
    }

    fn prompts(&self) -> Vec<Prompt> {
        vec![
            Prompt::new("test_simple_prompt", Some("A prompt without arguments"), None),
            Prompt::new(
                "test_prompt_with_arguments",
                Some("A prompt that uses its two arguments"),
                Some(vec![argument("arg1", "First test argument"), argument("arg2", "Second test argument")]),
            ),
            Prompt::new(
                "test_prompt_with_embedded_resource",
                Some("A prompt that embeds a resource"),
                Some(vec![argument("resourceUri", "URI of the resource to embed")]),
            ),
            Prompt::new("test_prompt_with_image", Some("A prompt that includes an image"), None),
            Prompt::new(
                "test_input_required_result_prompt",
                Some("A prompt that first asks the user for context"),
                None,
            ),
        ]
    }

    async fn get_prompt(&self, request: GetPromptRequestParams) -> Result<GetPromptResult, ErrorData> {
        let messages = match request.name.as_str() {
            "test_simple_prompt" => vec![text_message("This is a simple prompt for testing.")],
            "test_prompt_with_arguments" => {
                let arg1 = string_argument(&request, "arg1")?;
                let arg2 = string_argument(&request, "arg2")?;
                vec![text_message(format!("Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"))]
            }
            "test_prompt_with_embedded_resource" => {
                let uri = string_argument(&request, "resourceUri")?;
                let resource =
                    ResourceContents::text("Embedded resource content for testing.", uri).with_mime_type("text/plain");
                vec![
                    PromptMessage::new(Role::User, ContentBlock::resource(resource)),
                    text_message("Please process the embedded resource above."),
                ]
            }
            "test_prompt_with_image" => vec![
                PromptMessage::new(Role::User, ContentBlock::image(PNG, "image/png")),
                text_message("Please analyze the image above."),
            ],
            other => return Err(ErrorData::invalid_params(format!("no prompt {other}"), None)),
        };
        Ok(GetPromptResult::new(messages))
    }

    async fn get_prompt_response(&self, request: GetPromptRequestParams) -> Result<GetPromptResponse, ErrorData> {
        if request.name != "test_input_required_result_prompt" {
            return self.get_prompt(request).await.map(GetPromptResponse::from);
        }
        let answer = request.input_responses.as_ref().and_then(|responses| responses.get("user_context"));
        let context = answer
            .filter(|answer| answer.get("action").and_then(Value::as_str) == Some("accept"))
            .and_then(|answer| answer.get("content"))
            .and_then(|content| content.get("context"))
            .and_then(Value::as_str);
        let Some(context) = context else {
            let question = InputRequest::elicitation(
                "What context should the prompt use?",
                json!({"type": "object", "properties": {"context": {"type": "string"}}, "required": ["context"]}),
            );
            let question = mcp_input_request(&question).map_err(|message| ErrorData::internal_error(message, None))?;
            let requests = InputRequests::from([("user_context".to_string(), question)]);
            return Ok(InputRequiredResult::from_input_requests(requests).into());
        };
        let messages = vec![text_message(format!("Answer with this context in mind: {context}"))];
        Ok(GetPromptResult::new(messages).into())
    }

    async fn complete(&self, request: CompleteRequestParams) -> Result<CompleteResult, ErrorData> {
        let candidates: &[&str] = match (&request.r#ref, request.argument.name.as_str()) {
            (Reference::Prompt(prompt), "arg1") if prompt.name == "test_prompt_with_arguments" => {
                &["test", "testValue1", "testing"]
            }
            (Reference::Prompt(prompt), "arg2") if prompt.name == "test_prompt_with_arguments" => {
                &["testValue2", "other"]
            }
            _ => &[],
        };
        let values: Vec<String> = candidates
            .iter()
            .filter(|candidate| candidate.starts_with(request.argument.value.as_str()))
            .map(|candidate| candidate.to_string())
            .collect();
        let completion = CompletionInfo::new(values).map_err(|message| ErrorData::internal_error(message, None))?;
        Ok(CompleteResult::new(completion))
    }

    fn subscribable(&self) -> bool {
        true
    }
}
