//! Tools that return content, log, report progress or announce changes: the suite's `tools-*`,
//! `server-stateless`, `json-schema-2020-12` and header scenarios.

use std::sync::Arc;
use std::time::Duration;

use opsgate_core::{CallContext, Tool, ToolError, ToolOutput, parse_arguments};
use opsgate_server::{Change, ChangeFeed};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::fixture::{Behaviour, Fixture, WAV, blocks, image_block, resource_block};

enum Content {
    SimpleText,
    Image,
    Audio,
    EmbeddedResource,
    Mixed,
    Logging,
    Error,
    Progress,
    Reconnection,
    JsonSchema,
    CustomHeader,
    LoggingWithoutLevel,
    Announce(ChangeFeed, Change),
}

/// In the order `tools/list` shows them. `test_simple_text` comes first on purpose: the header
/// scenarios call the first tool listed with no arguments and expect a result.
pub fn tools(changes: &ChangeFeed) -> Vec<Arc<dyn Tool>> {
    let no_arguments = json!({});
    vec![
        Arc::new(Fixture::new(
            "test_simple_text",
            "Returns one text block",
            no_arguments.clone(),
            &[],
            Content::SimpleText,
        )),
        Arc::new(Fixture::new("test_image_content", "Returns a PNG image", no_arguments.clone(), &[], Content::Image)),
        Arc::new(Fixture::new("test_audio_content", "Returns a WAV clip", no_arguments.clone(), &[], Content::Audio)),
        Arc::new(Fixture::new(
            "test_embedded_resource",
            "Returns an embedded text resource",
            no_arguments.clone(),
            &[],
            Content::EmbeddedResource,
        )),
        Arc::new(Fixture::new(
            "test_multiple_content_types",
            "Returns text, an image and an embedded resource",
            no_arguments.clone(),
            &[],
            Content::Mixed,
        )),
        Arc::new(Fixture::new(
            "test_tool_with_logging",
            "Sends three log messages while it runs",
            no_arguments.clone(),
            &[],
            Content::Logging,
        )),
        Arc::new(Fixture::new(
            "test_error_handling",
            "Always fails, as a tool result with isError",
            no_arguments.clone(),
            &[],
            Content::Error,
        )),
        Arc::new(Fixture::new(
            "test_tool_with_progress",
            "Reports progress 0, 50 and 100 of 100",
            no_arguments.clone(),
            &[],
            Content::Progress,
        )),
        Arc::new(Fixture::new(
            "test_reconnection",
            "Takes a moment, for SSE polling and resumption",
            no_arguments.clone(),
            &[],
            Content::Reconnection,
        )),
        Arc::new(Fixture::with_schema(
            "json_schema_2020_12_tool",
            "Takes input described with JSON Schema 2020-12 keywords",
            json_schema_2020_12(),
            Content::JsonSchema,
        )),
        Arc::new(Fixture::new(
            "test_custom_header",
            "Echoes a value that clients also send as the Mcp-Param-Value header",
            json!({"value": {"type": "string", "description": "any text", "x-mcp-header": "Value"}}),
            &["value"],
            Content::CustomHeader,
        )),
        Arc::new(Fixture::new(
            "test_logging_tool",
            "Logs one message; clients get it only if their request asks for a log level",
            no_arguments.clone(),
            &[],
            Content::LoggingWithoutLevel,
        )),
        Arc::new(Fixture::new(
            "test_trigger_tool_change",
            "Announces that the tool list changed",
            no_arguments.clone(),
            &[],
            Content::Announce(changes.clone(), Change::ToolsListChanged),
        )),
        Arc::new(Fixture::new(
            "test_trigger_prompt_change",
            "Announces that the prompt list changed",
            no_arguments,
            &[],
            Content::Announce(changes.clone(), Change::PromptsListChanged),
        )),
    ]
}

/// The suite's fixture schema: `$schema`, `$defs` with an `$anchor`, a `$ref`, composition and
/// conditional keywords, all of which must reach the client untouched.
fn json_schema_2020_12() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {
            "address": {
                "$anchor": "addressDef",
                "type": "object",
                "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
            },
        },
        "properties": {
            "name": {"type": "string"},
            "address": {"$ref": "#/$defs/address"},
            "contactMethod": {"type": "string", "enum": ["phone", "email"]},
            "phone": {"type": "string"},
            "email": {"type": "string"},
        },
        "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
        "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
        "then": {"required": ["phone"]},
        "else": {"required": ["email"]},
        "additionalProperties": false,
    })
}

#[derive(Deserialize)]
struct CustomHeaderArguments {
    value: String,
}

const STEP: Duration = Duration::from_millis(50);

#[async_trait::async_trait]
impl Behaviour for Content {
    async fn run(&self, context: CallContext, arguments: Map<String, Value>) -> Result<ToolOutput, ToolError> {
        match self {
            Content::SimpleText => Ok(ToolOutput::text("This is a simple text response for testing.")),
            Content::Image => Ok(blocks(None, vec![image_block()])),
            Content::Audio => Ok(blocks(None, vec![json!({"type": "audio", "data": WAV, "mimeType": "audio/wav"})])),
            Content::EmbeddedResource => Ok(blocks(
                None,
                vec![resource_block("test://embedded-resource", "text/plain", "This is an embedded resource content.")],
            )),
            Content::Mixed => Ok(blocks(
                Some("Multiple content types test:"),
                vec![
                    image_block(),
                    resource_block(
                        "test://mixed-content-resource",
                        "application/json",
                        r#"{"test":"data","value":123}"#,
                    ),
                ],
            )),
            Content::Logging => {
                for (index, message) in ["Tool execution started", "Tool processing data", "Tool execution completed"]
                    .into_iter()
                    .enumerate()
                {
                    if index > 0 {
                        tokio::time::sleep(STEP).await;
                    }
                    context.client.log("info", Some("conformance"), json!(message)).await;
                }
                Ok(ToolOutput::text("Tool with logging executed successfully"))
            }
            Content::Error => {
                Err(ToolError::Backend("This tool intentionally returns an error for testing".to_string()))
            }
            Content::Progress => {
                for (index, progress) in [0.0, 50.0, 100.0].into_iter().enumerate() {
                    if index > 0 {
                        tokio::time::sleep(STEP).await;
                    }
                    context.client.progress(progress, Some(100.0), Some(format!("{progress}% done"))).await;
                }
                Ok(ToolOutput::text("Tool with progress executed successfully"))
            }
            Content::Reconnection => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                Ok(ToolOutput::text("Reconnection test completed"))
            }
            Content::JsonSchema => Ok(ToolOutput::text(format!("received {} argument(s)", arguments.len()))),
            Content::CustomHeader => {
                let arguments: CustomHeaderArguments = parse_arguments(arguments)?;
                Ok(ToolOutput::text(format!("value: {}", arguments.value)))
            }
            Content::LoggingWithoutLevel => {
                context.client.log("info", Some("conformance"), json!("test_logging_tool ran")).await;
                Ok(ToolOutput::text("Logging tool executed"))
            }
            Content::Announce(changes, change) => {
                changes.publish(change.clone());
                Ok(ToolOutput::text(format!("announced {change:?}")))
            }
        }
    }
}
