//! Tools: what one is (`ToolSpec`), what it may change (`Effect`), what it runs against
//! (`Target`), what policy says about a call (`Decision`) and how a tool is called (`Tool`).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::input::{AskMode, CallInput, ClientCapability, InputRequest, InputRequired};
use crate::output::{OutputBudget, ToolOutput};
use crate::principal::Principal;

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

/// Whether an input schema declares an `x-mcp-header` anywhere (SEP-2243: the property's value
/// travels as an `Mcp-Param-*` header too). rmcp builds and checks those headers, so a call to
/// such a tool takes rmcp's path both ways: to an upstream (`opsgate_gateway::direct`) and from a
/// client (`opsgate_server::stateless`). Anywhere, not only where rmcp looks, so that nothing rmcp
/// would act on is missed.
pub fn names_param_headers(schema: &Map<String, Value>) -> bool {
    fn walk(value: &Value) -> bool {
        match value {
            Value::Object(object) => object.contains_key("x-mcp-header") || object.values().any(walk),
            Value::Array(items) => items.iter().any(walk),
            _ => false,
        }
    }
    schema.contains_key("x-mcp-header") || schema.values().any(walk)
}

/// Federated tools are named `mcp__<server>__<tool>`.
pub const FEDERATED_PREFIX: &str = "mcp__";

/// Federated server names: `^[a-z][a-z0-9-]*$`, at most 64 characters. No underscore, so a
/// federated tool's name splits at its first `__` after the prefix.
pub fn is_valid_server_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 64
        && bytes.next().is_some_and(|first| first.is_ascii_lowercase())
        && bytes.all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
}

/// The name a federated server's tool (or prompt, or resource) takes: `mcp__<server>__<name>`.
pub fn federated_name(server: &str, name: &str) -> String {
    format!("{FEDERATED_PREFIX}{server}__{name}")
}

/// The federated server a tool name belongs to, and the server's own name for the tool:
/// `mcp__memory__read_graph` ⇒ `("memory", "read_graph")`. `None` for built-in names.
pub fn split_federated_name(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix(FEDERATED_PREFIX)?;
    let (server, tool) = rest.split_once("__")?;
    (is_valid_server_name(server) && !tool.is_empty()).then_some((server, tool))
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
    /// Not a failure: the call cannot finish until the client answers these requests. In
    /// 2026-07-28 this becomes an input-required result and the client calls again.
    #[error("input required: {}", .0.requests.keys().cloned().collect::<Vec<_>>().join(", "))]
    InputRequired(InputRequired),
    /// The call needs something the client did not declare it can do (answer a sampling request,
    /// poll a background task). A protocol error, so the client can tell its user what is missing.
    #[error("the client must support {} for this call", .0.as_str())]
    MissingClientCapability(ClientCapability),
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

    /// Sends several requests and waits for all the answers, by key. Channels that can have
    /// several questions open at once (a background task) override this; the default asks one
    /// after the other.
    async fn request_all(&self, requests: BTreeMap<String, InputRequest>) -> Result<Map<String, Value>, String> {
        let mut answers = Map::new();
        for (key, request) in requests {
            let answer = self.request(&request.method, request.params).await?;
            answers.insert(key, answer);
        }
        Ok(answers)
    }

    /// Whether the client declared `capability`. The default says yes and lets `request` fail,
    /// which is how channels written before capabilities were visible behave.
    fn supports(&self, _capability: ClientCapability) -> bool {
        true
    }

    /// How questions reach this client; see `CallContext::ask`.
    fn ask_mode(&self) -> AskMode {
        AskMode::Request
    }

    /// Marks the point after which the client need not wait for this call: where the transport
    /// can, the call goes on as a background task and the client polls for its result. Returns
    /// once that has happened; a no-op where it cannot.
    async fn detach(&self) {}
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

    fn supports(&self, _capability: ClientCapability) -> bool {
        false
    }

    fn ask_mode(&self) -> AskMode {
        AskMode::Unavailable
    }
}

/// What a tool gets besides its arguments.
#[derive(Clone)]
pub struct CallContext {
    /// The backend instance the pipeline resolved from the `target` argument.
    pub target: Option<Target>,
    pub budget: OutputBudget,
    pub client: Arc<dyn ClientChannel>,
    /// Answers from earlier rounds of this call (see `ask`).
    pub input: CallInput,
    /// Who the call runs for: the requester, also when a human approved it. Tools that record
    /// an author in the backend (a silence's `createdBy`) use its `id`.
    pub principal: Principal,
}

impl CallContext {
    pub fn new(target: Option<Target>, budget: OutputBudget, client: Arc<dyn ClientChannel>) -> Self {
        CallContext { target, budget, client, input: CallInput::default(), principal: Principal::anonymous() }
    }

    /// Asks the client everything in `requests` and returns the answers by key. Keys answered in
    /// an earlier round are not asked again. When the client can only be asked by ending the call
    /// (`AskMode::InputRequired`), this returns `ToolError::InputRequired` carrying `state`; pass
    /// it on with `?` and the tool runs again, from the top, once the client has answered.
    pub async fn ask(
        &self,
        requests: BTreeMap<String, InputRequest>,
        state: Option<Value>,
    ) -> Result<Map<String, Value>, ToolError> {
        let mut answers = Map::new();
        let mut missing = BTreeMap::new();
        for (key, request) in requests {
            match self.input.response(&key) {
                Some(answer) => {
                    answers.insert(key, Value::Object(answer.clone()));
                }
                None => {
                    missing.insert(key, request);
                }
            }
        }
        if missing.is_empty() {
            return Ok(answers);
        }
        // Asking for what the client cannot give would fail later and less clearly.
        if let Some(capability) =
            missing.values().filter_map(InputRequest::capability).find(|capability| !self.client.supports(*capability))
        {
            return Err(ToolError::MissingClientCapability(capability));
        }
        match self.client.ask_mode() {
            AskMode::Request => {
                let more = self.client.request_all(missing).await.map_err(ToolError::Unavailable)?;
                answers.extend(more);
                Ok(answers)
            }
            AskMode::InputRequired => {
                let answered = self
                    .input
                    .responses
                    .iter()
                    .filter(|(_, value)| value.is_object())
                    .map(|(key, value)| (key.clone(), value.clone()))
                    .collect();
                Err(ToolError::InputRequired(InputRequired { requests: missing, state, answered }))
            }
            AskMode::Unavailable => {
                let methods: Vec<&str> = missing.values().map(|request| request.method.as_str()).collect();
                Err(ToolError::Unavailable(format!("this client cannot be asked for input ({})", methods.join(", "))))
            }
        }
    }
}

/// Whether a tool can run as a background task the client polls (the MCP tasks extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskSupport {
    /// The call always runs while the client waits.
    #[default]
    Forbidden,
    /// The call runs as a task when the client can poll one, else while it waits.
    Optional,
    /// The call only makes sense as a task; clients that cannot poll are refused.
    Required,
}

/// A tool the pipeline can run. Implementations validate their own arguments (usually by
/// deserializing them into a struct with `deny_unknown_fields`) and return `InvalidArguments` when
/// they do not fit.
#[async_trait::async_trait]
pub trait Tool: Send + Sync {
    fn spec(&self) -> &ToolSpec;
    async fn call(&self, context: CallContext, arguments: Map<String, Value>) -> Result<ToolOutput, ToolError>;

    /// Whether this tool may run as a background task. A task-capable call becomes a task when
    /// the tool calls `ClientChannel::detach`.
    fn task_support(&self) -> TaskSupport {
        TaskSupport::Forbidden
    }

    /// What the call would do, computed without doing it: the dry run a human approves and the
    /// blast radius policy limits. Write tools implement it; `None` means the tool has no plan
    /// (reads), and the pipeline then treats the blast radius as unknown.
    async fn plan(&self, _context: &CallContext, _arguments: &Map<String, Value>) -> Result<Option<Plan>, ToolError> {
        Ok(None)
    }
}

/// A write's dry run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// One or two lines a human reads before approving: what will change.
    pub summary: String,
    /// How many things the call touches (alerts silenced, pods restarted, …), for the
    /// blast-radius limits.
    pub blast_radius: u64,
    /// What `blast_radius` counts, plural: "alerts", "pods".
    pub unit: String,
    /// The things themselves, compact, bounded by the tool (at most a few dozen entries).
    pub items: Vec<Value>,
}

/// Deserializes tool arguments into `T`, turning serde's message into one an agent can act on.
pub fn parse_arguments<T: serde::de::DeserializeOwned>(arguments: Map<String, Value>) -> Result<T, ToolError> {
    serde_json::from_value(Value::Object(arguments)).map_err(|error| ToolError::InvalidArguments(error.to_string()))
}

#[cfg(test)]
mod tests;
