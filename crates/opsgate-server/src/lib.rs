//! opsgate's server: the call pipeline every tool call passes through, the MCP handler over it,
//! the identity stage for HTTP callers, and the axum app that serves `/mcp`, `/healthz`, `/metrics`
//! and the OAuth protected-resource metadata.

pub mod approvals;
pub mod approvals_api;
pub mod catalog;
pub mod changes;
pub mod context_tools;
pub mod events;
pub mod hooks;
pub mod hooks_api;
pub mod http;
pub mod identity;
pub mod limits;
pub mod mcp;
pub mod memory_tools;
pub mod metrics;
pub mod pipeline;
pub mod policy;
pub mod registry;
pub mod request_state;
pub mod search_tool;
pub mod stateless;
pub mod surface;
pub mod tasks;

pub use changes::{Change, ChangeFeed};
pub use identity::{Identity, IdentityConfig};
pub use limits::{BlastRadiusLimits, Rate, RateLimits};
pub use mcp::{McpState, OpsgateMcp};
pub use pipeline::{CallOutcome, CallRequest, Pipeline, PipelineConfig, RoundInput};
pub use policy::PolicyHandle;
pub use registry::{Registry, ServerTool, ServerTools, TargetCatalog};
