//! What every fixture tool shares: a spec built the same way, and one `Tool` implementation over
//! an enum of behaviours, so each module reads as a list of tools and what they do.

use opsgate_core::{CallContext, Effect, TaskSupport, Tool, ToolError, ToolOutput, ToolSpec};
use serde_json::{Map, Value, json};

/// The reference fixtures' 1×1 PNG and silent WAV; the suite checks only that they are there.
pub const PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
pub const WAV: &str = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=";

/// A behaviour the fixture tool runs.
#[async_trait::async_trait]
pub trait Behaviour: Send + Sync {
    async fn run(&self, context: CallContext, arguments: Map<String, Value>) -> Result<ToolOutput, ToolError>;
}

/// A fixture tool: its spec, its behaviour and whether it may run as a task.
pub struct Fixture<B> {
    spec: ToolSpec,
    behaviour: B,
    task_support: TaskSupport,
}

impl<B: Behaviour> Fixture<B> {
    /// `properties` and `required` make an object schema; a tool without arguments passes `{}`.
    pub fn new(name: &str, description: &str, properties: Value, required: &[&str], behaviour: B) -> Self {
        let schema = json!({"type": "object", "properties": properties, "required": required});
        Fixture::with_schema(name, description, schema, behaviour)
    }

    pub fn with_schema(name: &str, description: &str, schema: Value, behaviour: B) -> Self {
        let spec = ToolSpec {
            name: name.to_string(),
            title: name.to_string(),
            description: description.to_string(),
            input_schema: schema.as_object().cloned().unwrap_or_default(),
            output_schema: None,
            // Every fixture is a read as far as policy is concerned: none of them touches
            // anything, and opsgate's bootstrap policy refuses (and hides) writes.
            effect: Effect::Read,
            target_kind: None,
            idempotent: true,
            open_world: false,
        };
        Fixture { spec, behaviour, task_support: TaskSupport::Forbidden }
    }

    pub fn task_support(mut self, task_support: TaskSupport) -> Self {
        self.task_support = task_support;
        self
    }
}

#[async_trait::async_trait]
impl<B: Behaviour> Tool for Fixture<B> {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, context: CallContext, arguments: Map<String, Value>) -> Result<ToolOutput, ToolError> {
        self.behaviour.run(context, arguments).await
    }

    fn task_support(&self) -> TaskSupport {
        self.task_support
    }
}

/// Output with MCP content blocks after an optional line of text.
pub fn blocks(text: Option<&str>, content: Vec<Value>) -> ToolOutput {
    ToolOutput { summary: text.map(str::to_string).into_iter().collect(), content, ..ToolOutput::default() }
}

pub fn image_block() -> Value {
    json!({"type": "image", "data": PNG, "mimeType": "image/png"})
}

pub fn resource_block(uri: &str, mime_type: &str, text: &str) -> Value {
    json!({"type": "resource", "resource": {"uri": uri, "mimeType": mime_type, "text": text}})
}

/// The accepted content of an elicitation answer, if the user accepted.
pub fn accepted(answer: &Value) -> Option<&Map<String, Value>> {
    (answer.get("action").and_then(Value::as_str) == Some("accept"))
        .then(|| answer.get("content").and_then(Value::as_object))
        .flatten()
}

/// The text of a sampling answer.
pub fn sampled_text(answer: &Value) -> Option<&str> {
    answer.get("content").and_then(|content| content.get("text")).and_then(Value::as_str)
}
