//! opsgate's server: the call pipeline every tool call passes through, the MCP handler over it,
//! and the axum app that serves `/mcp`, `/healthz` and `/metrics`.

pub mod http;
pub mod mcp;
pub mod metrics;
pub mod pipeline;
pub mod registry;
pub mod surface;

pub use mcp::{McpState, OpsgateMcp};
pub use pipeline::{CallOutcome, CallRequest, Pipeline, PipelineConfig};
pub use registry::{Registry, TargetCatalog};
