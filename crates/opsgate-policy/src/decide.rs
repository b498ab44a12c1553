//! The policy decision for one call. The input document is versioned because users will write
//! policies against it; today's rules are the fixed bootstrap set (reads allowed, everything else
//! denied) that the Rego engine replaces.

use opsgate_core::{Decision, Effect, Principal, Target};
use serde::Serialize;
use serde_json::{Map, Value};

/// The version of the input document; bumped on any incompatible change.
pub const INPUT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize)]
pub struct ToolFacts {
    pub name: String,
    pub effect: Effect,
    /// The federated server the tool comes from; `None` for built-in tools.
    pub server: Option<String>,
}

/// Everything a policy may look at. `time` is passed in (RFC 3339) because this crate reads no
/// clock.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyInput<'a> {
    pub version: u32,
    pub principal: &'a Principal,
    pub tool: ToolFacts,
    pub arguments: &'a Map<String, Value>,
    pub target: Option<&'a Target>,
    pub blast_radius: Option<u64>,
    pub read_only: bool,
    pub time: &'a str,
}

/// Reads are allowed; writes and destructive calls are denied with a reason that says why and
/// what would change it.
pub fn decide(input: &PolicyInput<'_>) -> Decision {
    match input.tool.effect {
        Effect::Read => Decision::Allow,
        effect if input.read_only => Decision::Deny {
            reason: format!("opsgate is in read-only mode: {} is a {} tool", input.tool.name, effect.as_str()),
        },
        effect => Decision::Deny {
            reason: format!(
                "{} is a {} tool and this opsgate allows only read tools (write approvals are not configured)",
                input.tool.name,
                effect.as_str()
            ),
        },
    }
}

#[cfg(test)]
mod tests;
