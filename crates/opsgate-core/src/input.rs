//! Asking the client for input during a call: what a tool may ask (`InputRequest`), what it says
//! when it cannot go on without an answer (`InputRequired`), and the answers it got (`CallInput`).
//!
//! MCP has two ways to ask. In a 2025-11-25 session the server sends `elicitation/create` or
//! `sampling/createMessage` mid-call and waits. In 2026-07-28 there is no session to wait on: the
//! call ends with an input-required result, and the client retries it with the answers and the
//! opaque state the server handed out. A tool writes one `CallContext::ask` and the channel picks
//! the way (`AskMode`); in the second way the tool simply runs again from the top, so it must be
//! free of side effects until its inputs are complete.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One request to the client, in MCP's JSON form: `elicitation/create`,
/// `sampling/createMessage` or `roots/list` with its params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRequest {
    pub method: String,
    pub params: Value,
}

impl InputRequest {
    pub fn new(method: impl Into<String>, params: Value) -> Self {
        InputRequest { method: method.into(), params }
    }

    /// An `elicitation/create` form: a message and the JSON schema of the answer.
    pub fn elicitation(message: impl Into<String>, requested_schema: Value) -> Self {
        InputRequest::new(
            "elicitation/create",
            serde_json::json!({"mode": "form", "message": message.into(), "requestedSchema": requested_schema}),
        )
    }

    /// A `sampling/createMessage` with one user text message.
    pub fn sampling(prompt: impl Into<String>, max_tokens: u32) -> Self {
        InputRequest::new(
            "sampling/createMessage",
            serde_json::json!({
                "messages": [{"role": "user", "content": {"type": "text", "text": prompt.into()}}],
                "maxTokens": max_tokens,
            }),
        )
    }

    /// A `roots/list`: the client's workspace roots.
    pub fn roots() -> Self {
        InputRequest::new("roots/list", serde_json::json!({}))
    }

    /// The client capability this request needs, if it is one of MCP's client requests.
    pub fn capability(&self) -> Option<ClientCapability> {
        match self.method.as_str() {
            "elicitation/create" => Some(ClientCapability::Elicitation),
            "sampling/createMessage" => Some(ClientCapability::Sampling),
            "roots/list" => Some(ClientCapability::Roots),
            _ => None,
        }
    }
}

/// What a client can do for a server, as it declared it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientCapability {
    Elicitation,
    Sampling,
    Roots,
    /// The tasks extension: the client can poll a call that runs in the background.
    Tasks,
}

impl ClientCapability {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientCapability::Elicitation => "elicitation",
            ClientCapability::Sampling => "sampling",
            ClientCapability::Roots => "roots",
            ClientCapability::Tasks => "tasks",
        }
    }
}

/// How this call can put a question to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AskMode {
    /// Send the requests now and wait for the answers (a session, or a background task).
    Request,
    /// End the call with `ToolError::InputRequired`; the client retries with the answers.
    InputRequired,
    /// The client cannot be asked at all (the CLI, a test).
    Unavailable,
}

/// A call that cannot finish without answers from the client. The requests are keyed by names
/// the tool picks; the answers come back under the same keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InputRequired {
    pub requests: BTreeMap<String, InputRequest>,
    /// The tool's own state for the next round, handed back in `CallInput::state`. The server
    /// seals it against tampering but does not encrypt it: the client can read it, so it must hold
    /// nothing secret.
    pub state: Option<Value>,
    /// Answers from earlier rounds, carried in the sealed state so that a tool that asks in
    /// several rounds sees all of them again on the last one.
    pub answered: Map<String, Value>,
}

/// What the client answered in earlier rounds of this call; empty on the first round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallInput {
    /// Answers by request key: an `ElicitResult`, `CreateMessageResult` or `ListRootsResult` as
    /// JSON. Unverified client input: a tool checks the shape before it trusts one.
    pub responses: Map<String, Value>,
    /// The state the tool put in its last `InputRequired`, verified by the server.
    pub state: Option<Value>,
}

impl CallInput {
    /// The answer under `key`, if the client sent one that is at least a JSON object. Anything
    /// else (a number, `null`) counts as no answer, so the tool asks again.
    pub fn response(&self, key: &str) -> Option<&Map<String, Value>> {
        self.responses.get(key).and_then(Value::as_object)
    }
}
