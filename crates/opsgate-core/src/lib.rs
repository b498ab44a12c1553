//! opsgate's vocabulary: the types every other crate speaks. No IO, no clock, nothing spawned.

pub mod output;
pub mod principal;
pub mod tool;

pub use output::{OutputBudget, Rendered, Row, ToolOutput};
pub use principal::{Principal, PrincipalKind};
pub use tool::{parse_arguments, NoClient, 
    CallContext, ClientChannel, Decision, Effect, Target, Tool, ToolError, ToolSpec, is_valid_tool_name,
};
