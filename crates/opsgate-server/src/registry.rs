//! The tool registry and the catalog of named backend instances. Built-in tools are registered
//! once at start-up; federated servers' tools (`mcp__<server>__<tool>`) come and go while opsgate
//! runs, one server's set at a time. The pipeline resolves tool names and `target` arguments
//! against it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock};

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
    /// A federated server's tool: its arguments reach the server as the client sent them (the
    /// pipeline takes no `target` or `cursor` out of them).
    pub federated: bool,
    /// Why a federated tool is quarantined (its definition changed since it was pinned): it is
    /// left out of `tools/list` and every call to it is denied, and audited, with this reason.
    pub quarantine: Option<Arc<str>>,
    /// Its input schema names `Mcp-Param-*` headers (SEP-2243's `x-mcp-header` on a property),
    /// which rmcp's transport checks against the arguments: HTTP calls to it take rmcp's path
    /// rather than `crate::stateless`.
    pub param_headers: bool,
}

impl RegisteredTool {
    /// Whether calls may run it: not when it is quarantined, and the error says why.
    pub fn usable(&self) -> Result<(), String> {
        match &self.quarantine {
            None => Ok(()),
            Some(reason) => Err(format!("{} is quarantined: {reason}", self.spec.name)),
        }
    }
}

/// A federated server's tool as the gateway hands it over: the tool, and whether it is
/// quarantined and why.
pub struct ServerTool {
    pub tool: Arc<dyn Tool>,
    pub quarantine: Option<String>,
}

/// What `set_server_tools` did: how many tools clients may now call, and what it left out.
#[derive(Debug)]
pub struct ServerTools {
    pub n_usable: usize,
    pub problems: Vec<RegistryError>,
}

/// The tools of federated servers, by server (in name order, which is their `tools/list` order)
/// and by tool name.
#[derive(Default)]
struct FederatedTools {
    by_server: BTreeMap<String, Vec<RegisteredTool>>,
    by_name: HashMap<String, RegisteredTool>,
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
    /// Shared by every clone: the gateway changes it while handlers read it.
    federated: Arc<RwLock<FederatedTools>>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("tool name {0:?} is invalid: use 1-128 characters of A-Z a-z 0-9 _ - .")]
    InvalidName(String),
    #[error("tool name {0:?} starts with mcp__, which only federated servers' tools may")]
    ReservedPrefix(String),
    #[error("tool {0} is registered twice")]
    Duplicate(String),
    #[error("tool {tool:?} of server {server:?} is not named mcp__{server}__<tool>")]
    NotNamespaced { server: String, tool: String },
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
        // A built-in under the federated prefix would shadow a server's tool and pass for one.
        if spec.name.starts_with(opsgate_core::FEDERATED_PREFIX) {
            return Err(RegistryError::ReservedPrefix(spec.name));
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
        self.tools.insert(
            spec.name.clone(),
            RegisteredTool {
                param_headers: opsgate_core::names_param_headers(&spec.input_schema),
                tool,
                spec: Arc::new(spec),
                mcp,
                federated: false,
                quarantine: None,
            },
        );
        Ok(())
    }

    /// Replaces every tool of the federated server `server` with `tools`, whose names must be
    /// `mcp__<server>__<tool>`, and tells subscribed clients the list changed. Their schemas are
    /// the server's own: nothing is added. A tool with a bad or repeated name is left out and
    /// reported; the others are registered. Quarantined tools are registered (a call to one is
    /// denied with its reason) but not listed.
    pub fn set_server_tools(&self, server: &str, tools: Vec<ServerTool>) -> ServerTools {
        let mut problems = Vec::new();
        let mut registered: Vec<RegisteredTool> = Vec::with_capacity(tools.len());
        let mut n_usable = 0;
        for ServerTool { tool, quarantine } in tools {
            let spec = tool.spec().clone();
            if opsgate_core::split_federated_name(&spec.name).is_none_or(|(named, _)| named != server) {
                problems.push(RegistryError::NotNamespaced { server: server.to_string(), tool: spec.name });
                continue;
            }
            if !opsgate_core::is_valid_tool_name(&spec.name) {
                problems.push(RegistryError::InvalidName(spec.name));
                continue;
            }
            if registered.iter().any(|other| other.spec.name == spec.name) {
                problems.push(RegistryError::Duplicate(spec.name));
                continue;
            }
            let mcp = Arc::new(crate::mcp::mcp_tool(&spec));
            n_usable += usize::from(quarantine.is_none());
            registered.push(RegisteredTool {
                param_headers: opsgate_core::names_param_headers(&spec.input_schema),
                tool,
                spec: Arc::new(spec),
                mcp,
                federated: true,
                quarantine: quarantine.map(Arc::from),
            });
        }
        {
            let mut federated = self.federated.write().unwrap_or_else(PoisonError::into_inner);
            if let Some(old) = federated.by_server.remove(server) {
                for tool in old {
                    federated.by_name.remove(&tool.spec.name);
                }
            }
            for tool in &registered {
                federated.by_name.insert(tool.spec.name.clone(), tool.clone());
            }
            federated.by_server.insert(server.to_string(), registered);
        }
        self.changes.publish(crate::changes::Change::ToolsListChanged);
        ServerTools { n_usable, problems }
    }

    /// Removes every tool of the federated server `server` (it stopped or was removed) and tells
    /// subscribed clients, if it had any.
    pub fn remove_server(&self, server: &str) {
        let removed = {
            let mut federated = self.federated.write().unwrap_or_else(PoisonError::into_inner);
            let removed = federated.by_server.remove(server).unwrap_or_default();
            for tool in &removed {
                federated.by_name.remove(&tool.spec.name);
            }
            removed
        };
        if !removed.is_empty() {
            self.changes.publish(crate::changes::Change::ToolsListChanged);
        }
    }

    pub fn changes(&self) -> &ChangeFeed {
        &self.changes
    }

    /// The tool named `name`, built-in or federated.
    pub fn get(&self, name: &str) -> Option<RegisteredTool> {
        if let Some(tool) = self.tools.get(name) {
            return Some(tool.clone());
        }
        if !name.starts_with(opsgate_core::FEDERATED_PREFIX) {
            return None;
        }
        self.federated.read().unwrap_or_else(PoisonError::into_inner).by_name.get(name).cloned()
    }

    /// Every tool clients may see, in `tools/list` order: built-in tools as registered, then
    /// each federated server's (servers by name, tools in the server's order) but the
    /// quarantined ones.
    pub fn tools(&self) -> Vec<RegisteredTool> {
        let mut tools: Vec<RegisteredTool> =
            self.order.iter().filter_map(|name| self.tools.get(name)).cloned().collect();
        let federated = self.federated.read().unwrap_or_else(PoisonError::into_inner);
        tools.extend(federated.by_server.values().flatten().filter(|tool| tool.quarantine.is_none()).cloned());
        tools
    }

    /// Whether any tool may run as a task. Only built-in tools can: a federated call is always
    /// answered in the request that made it.
    pub fn any_task_capable(&self) -> bool {
        self.tools.values().any(|tool| tool.tool.task_support() != opsgate_core::TaskSupport::Forbidden)
    }

    /// How many tools there are now, built-in and federated.
    pub fn len(&self) -> usize {
        self.tools.len() + self.federated.read().unwrap_or_else(PoisonError::into_inner).by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
