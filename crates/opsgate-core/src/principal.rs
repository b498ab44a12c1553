//! Who is calling: the identity every pipeline stage sees.

use serde::{Deserialize, Serialize};

/// How a principal was established. Kept in the audit record so a reader knows how much to trust
/// the id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// The OS user running `opsgate stdio` or `opsgate call`.
    LocalUser,
    /// An HTTP caller that presented no credential (allowed until identity is configured).
    Anonymous,
    /// An HTTP caller with an API key.
    ApiKey,
    /// An HTTP caller with an OAuth bearer token.
    Oauth,
}

impl PrincipalKind {
    /// The serialised name, as the audit log and policy input carry it.
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::LocalUser => "local_user",
            PrincipalKind::Anonymous => "anonymous",
            PrincipalKind::ApiKey => "api_key",
            PrincipalKind::Oauth => "oauth",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub id: String,
    pub kind: PrincipalKind,
    pub roles: Vec<String>,
}

impl Principal {
    pub fn local_user(name: impl Into<String>, roles: Vec<String>) -> Self {
        Principal { id: format!("user:{}", name.into()), kind: PrincipalKind::LocalUser, roles }
    }

    pub fn anonymous() -> Self {
        Principal { id: "anonymous".to_string(), kind: PrincipalKind::Anonymous, roles: Vec::new() }
    }
}
