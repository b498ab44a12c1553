//! Tools: what one is (`ToolSpec`), what it may change (`Effect`), what it runs against
//! (`Target`), what policy says about a call (`Decision`) and how a tool is called (`Tool`).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::output::{OutputBudget, ToolOutput};

/// What a tool can change. Policy keys on this; every tool has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    Read,
    Write,
    Destructive,
}

impl Effect {
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Read => "read",
            Effect::Write => "write",
            Effect::Destructive => "destructive",
        }
    }
}

/// Everything the pipeline and the MCP surface need to know about a tool, independent of how it
/// runs.
#[derive(Debug, Clone)]
pub struct ToolSpec {
    pub name: String,
    pub title: String,
    /// Short and precise: every byte of it is paid for by every agent on every `tools/list`.
    pub description: String,
    pub input_schema: Map<String, Value>,
    pub output_schema: Option<Map<String, Value>>,
    pub effect: Effect,
    /// The connector kind whose named instances this tool runs against (`prometheus`,
    /// `alertmanager`); `None` for tools that need no backend.
    pub target_kind: Option<String>,
    /// Extra annotations beyond what `effect` implies (`idempotentHint`, `openWorldHint`).
    pub idempotent: bool,
    pub open_world: bool,
}

/// Tool names as MCP clients accept them: 1–128 characters of `A-Za-z0-9_-.`.
pub fn is_valid_tool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.'))
}

/// A resolved backend instance: what policy and audit see about where a call goes. Never holds a
/// credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub name: String,
    pub kind: String,
    pub environment: String,
    pub protected: bool,
}

/// What policy decided about one call. A denial is a value, not an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    Allow,
    Approve { reason: String, approvals_required: u8, approver_roles: Vec<String> },
    Deny { reason: String },
}

impl Decision {
    pub fn as_str(&self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Approve { .. } => "approve",
            Decision::Deny { .. } => "deny",
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            Decision::Allow => None,
            Decision::Approve { reason, .. } | Decision::Deny { reason } => Some(reason),
        }
    }
}

/// Why a tool call failed, phrased for an agent that must decide what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    /// The arguments do not fit the tool's schema or make no sense together.
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    /// The backend could not be reached or did not answer in time.
    #[error("{0}")]
    Unavailable(String),
    /// The backend answered with an error (bad query, unknown series…).
    #[error("{0}")]
    Backend(String),
    /// Something inside opsgate went wrong; the message is safe to show.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ToolError {
    /// A short machine-readable class for the audit record and metrics.
    pub fn class(&self) -> &'static str {
        match self {
            ToolError::InvalidArguments(_) => "invalid_arguments",
            ToolError::Unavailable(_) => "unavailable",
            ToolError::Backend(_) => "backend_error",
            ToolError::Internal(_) => "internal",
        }
    }
}

/// The way back to the MCP client during a call: progress, log messages, and requests such as
/// sampling or elicitation. JSON in, JSON out, so that this crate knows nothing of the SDK.
#[async_trait::async_trait]
pub trait ClientChannel: Send + Sync {
    async fn progress(&self, progress: f64, total: Option<f64>, message: Option<String>);
    async fn log(&self, level: &str, logger: Option<&str>, data: Value);
    /// Sends a request (`sampling/createMessage`, `elicitation/create`, `roots/list`) to the
    /// client and waits for its result.
    async fn request(&self, method: &str, params: Value) -> Result<Value, String>;
}

/// A channel to nowhere, for calls from the CLI and tests.
pub struct NoClient;

#[async_trait::async_trait]
impl ClientChannel for NoClient {
    async fn progress(&self, _progress: f64, _total: Option<f64>, _message: Option<String>) {}
    async fn log(&self, _level: &str, _logger: Option<&str>, _data: Value) {}
    async fn request(&self, method: &str, _params: Value) -> Result<Value, String> {
        Err(format!("this client cannot answer {method}"))
    }
}

/// What a tool gets besides its arguments.
#[derive(Clone)]
pub struct CallContext {
    /// The backend instance the pipeline resolved from the `target` argument.
    pub target: Option<Target>,
    pub budget: OutputBudget,
    pub client: Arc<dyn ClientChannel>,
}

/// A tool the pipeline can run. Implementations validate their own arguments (usually by
/// deserializing them into a struct with `deny_unknown_fields`) and return `InvalidArguments` when
/// they do not fit.
#[async_trait::async_trait]
pub trait Tool: Send + Sync {
    fn spec(&self) -> &ToolSpec;
    async fn call(&self, context: CallContext, arguments: Map<String, Value>) -> Result<ToolOutput, ToolError>;
}

/// Deserializes tool arguments into `T`, turning serde's message into one an agent can act on.
pub fn parse_arguments<T: serde::de::DeserializeOwned>(arguments: Map<String, Value>) -> Result<T, ToolError> {
    serde_json::from_value(Value::Object(arguments)).map_err(|error| ToolError::InvalidArguments(error.to_string()))
}
