//! opsgate's vocabulary: the types every other crate speaks. No IO, no clock, nothing spawned.

pub mod event;
pub mod histogram;
pub mod input;
pub mod output;
pub mod principal;
pub mod secret;
pub mod tool;

pub use event::{Event, EventKind, first_line, truncate_chars};
pub use input::{AskMode, CallInput, ClientCapability, InputRequest, InputRequired};
pub use output::{OutputBudget, Rendered, Row, ToolOutput};
pub use principal::{Principal, PrincipalKind};
pub use secret::{Secret, SecretRef};
pub use tool::{
    CallContext, ClientChannel, Decision, Effect, FEDERATED_PREFIX, NoClient, Plan, Target, TaskSupport, Tool,
    ToolError, ToolSpec, federated_name, is_valid_server_name, is_valid_tool_name, names_param_headers,
    parse_arguments, split_federated_name,
};

pub mod canonical;
