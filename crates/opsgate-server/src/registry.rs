//! The tool registry and the catalog of named backend instances. Built once at start-up; the
//! pipeline resolves tool names and `target` arguments against it.

use std::collections::HashMap;
use std::sync::Arc;

use opsgate_core::{Target, Tool, ToolSpec};
use serde_json::{Value, json};

use crate::changes::ChangeFeed;

/// Named backend instances by connector kind, in configuration order: the first is the default.
#[derive(Debug, Clone, Default)]
pub struct TargetCatalog {
    by_kind: HashMap<String, Vec<Target>>,
}

impl TargetCatalog {
    pub fn add(&mut self, target: Target) {
        self.by_kind.entry(target.kind.clone()).or_default().push(target);
    }

    pub fn of_kind(&self, kind: &str) -> &[Target] {
        self.by_kind.get(kind).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The instance named `name`, or the default when `name` is `None`.
    pub fn resolve(&self, kind: &str, name: Option<&str>) -> Result<&Target, String> {
        let targets = self.of_kind(kind);
        match name {
            None => targets.first().ok_or_else(|| format!("no {kind} backend is configured")),
            Some(name) => targets.iter().find(|target| target.name == name).ok_or_else(|| {
                let known: Vec<&str> = targets.iter().map(|target| target.name.as_str()).collect();
                format!("unknown {kind} target {name:?}; known targets: {}", known.join(", "))
            }),
        }
    }
}

/// A registered tool: the implementation, and its spec as clients see it (with the `target`
/// and `cursor` arguments the pipeline handles added to the schema).
#[derive(Clone)]
pub struct RegisteredTool {
    pub tool: Arc<dyn Tool>,
    pub spec: Arc<ToolSpec>,
    /// The spec in MCP form, built once: rmcp asks for it on every call.
    pub mcp: Arc<rmcp::model::Tool>,
}

#[derive(Clone, Default)]
pub struct Registry {
    tools: HashMap<String, RegisteredTool>,
    /// Registration order, which is the order of `tools/list`.
    order: Vec<String>,
    pub targets: TargetCatalog,
    /// Where list changes are announced. It lives here because whoever builds the registry also
    /// builds what changes it (a gateway's downstream servers, a surface that reloads), and
    /// every MCP handler reaches the registry.
    changes: ChangeFeed,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("tool name {0:?} is invalid: use 1-128 characters of A-Z a-z 0-9 _ - .")]
    InvalidName(String),
    #[error("tool {0} is registered twice")]
    Duplicate(String),
}

impl Registry {
    pub fn new(targets: TargetCatalog) -> Self {
        Registry { targets, ..Registry::default() }
    }

    /// Adds a tool. Tools bound to a connector kind get a `target` argument enumerating the
    /// configured instances; every tool gets `cursor`, which the pipeline's output budget uses.
    pub fn register(&mut self, tool: Arc<dyn Tool>) -> Result<(), RegistryError> {
        let mut spec = tool.spec().clone();
        if !opsgate_core::is_valid_tool_name(&spec.name) {
            return Err(RegistryError::InvalidName(spec.name));
        }
        if self.tools.contains_key(&spec.name) {
            return Err(RegistryError::Duplicate(spec.name));
        }
        let properties = spec.input_schema.entry("properties").or_insert_with(|| json!({}));
        if let Value::Object(properties) = properties {
            if let Some(kind) = &spec.target_kind {
                let names: Vec<&str> = self.targets.of_kind(kind).iter().map(|target| target.name.as_str()).collect();
                let mut target = json!({
                    "type": "string",
                    "description": format!("{kind} instance; default {}", names.first().copied().unwrap_or("none")),
                });
                if !names.is_empty() {
                    target["enum"] = json!(names);
                }
                properties.insert("target".to_string(), target);
            }
            properties.insert(
                "cursor".to_string(),
                json!({"type": "string", "description": "from a truncated result, to get the next rows"}),
            );
        }
        // A write may answer "pending approval" instead of its own result: its output schema
        // admits both, so clients that validate structured content accept either.
        if spec.effect != opsgate_core::Effect::Read
            && let Some(output) = spec.output_schema.take()
        {
            let Value::Object(either) = json!({"type": "object", "anyOf": [output, pending_approval_schema()]}) else {
                unreachable!("a json! object literal is an object")
            };
            spec.output_schema = Some(either);
        }
        self.order.push(spec.name.clone());
        let mcp = Arc::new(crate::mcp::mcp_tool(&spec));
        self.tools.insert(spec.name.clone(), RegisteredTool { tool, spec: Arc::new(spec), mcp });
        Ok(())
    }

    pub fn changes(&self) -> &ChangeFeed {
        &self.changes
    }

    pub fn get(&self, name: &str) -> Option<&RegisteredTool> {
        self.tools.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &RegisteredTool> {
        self.order.iter().filter_map(|name| self.tools.get(name))
    }

    pub fn len(&self) -> usize {
        self.tools.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }
}

/// The structured result of a call that waits for approval (`approvals::pending_output`).
pub fn pending_approval_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "status": {"const": "pending_approval"},
            "approval_id": {"type": "string"},
            "tool": {"type": "string"},
            "target": {"type": ["string", "null"]},
            "plan": {"type": ["object", "null"]},
            "reason": {"type": "string"},
            "approvals_required": {"type": "integer"},
            "approver_roles": {"type": "array", "items": {"type": "string"}},
            "expires_at": {"type": "string"}
        },
        "required": ["status", "approval_id"]
    })
}
