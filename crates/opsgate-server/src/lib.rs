//! opsgate's server: the call pipeline every tool call passes through, the MCP handler over it,
//! and the axum app that serves `/mcp`, `/healthz` and `/metrics`.

pub mod approvals;
pub mod approvals_api;
pub mod changes;
pub mod http;
pub mod limits;
pub mod mcp;
pub mod metrics;
pub mod pipeline;
pub mod policy;
pub mod registry;
pub mod request_state;
pub mod surface;
pub mod tasks;

pub use changes::{Change, ChangeFeed};
pub use limits::{BlastRadiusLimits, Rate, RateLimits};
pub use mcp::{McpState, OpsgateMcp};
pub use pipeline::{CallOutcome, CallRequest, Pipeline, PipelineConfig, RoundInput};
pub use policy::PolicyHandle;
pub use registry::{Registry, TargetCatalog};
