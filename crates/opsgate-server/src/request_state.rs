//! The `requestState` of an input-required call: the tool's state and the answers so far, sealed
//! so that what comes back on the retry is exactly what this server handed out.
//!
//! The client echoes the string verbatim, so it is attacker-controlled input. It is signed (HMAC,
//! through rmcp's `RequestStateCodec`), not encrypted: the client can read it, and tools are told
//! to keep secrets out of it. The signature also covers the principal, the tool and a hash of the
//! arguments, so a state cannot be replayed by someone else, against another tool, or with other
//! arguments (an approval for deleting one file must not delete another), and it expires.

use std::time::Duration;

use opsgate_core::InputRequired;
use rmcp::model::{RequestStateCodec, SealOptions};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Long enough for a person to answer a form, short enough that a leaked state goes stale.
const STATE_TTL: Duration = Duration::from_secs(15 * 60);

/// What a sealed state holds.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RoundState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<Value>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub answered: Map<String, Value>,
}

impl RoundState {
    pub fn of(input_required: &InputRequired) -> Self {
        RoundState { state: input_required.state.clone(), answered: input_required.answered.clone() }
    }

    pub fn is_empty(&self) -> bool {
        self.state.is_none() && self.answered.is_empty()
    }
}

/// Seals and opens round states with one key.
pub struct StateSeal {
    codec: RequestStateCodec,
}

impl std::fmt::Debug for StateSeal {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("StateSeal(***)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateSealError {
    #[error("the request state signing key is too short: {0}")]
    Key(String),
    #[error("the request state could not be sealed: {0}")]
    Seal(String),
}

impl StateSeal {
    /// A seal with a fresh random key: states survive only as long as this process, which is
    /// right for one instance. Several instances behind a load balancer need `with_key`.
    pub fn random() -> Self {
        // Two v4 UUIDs are 244 random bits from the OS generator, which is what the key needs.
        let mut key = Vec::with_capacity(32);
        key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        StateSeal { codec: RequestStateCodec::new_unchecked(key) }
    }

    /// A seal with a shared key of at least 32 bytes.
    pub fn with_key(key: &[u8]) -> Result<Self, StateSealError> {
        let codec = RequestStateCodec::try_new(key.to_vec()).map_err(|error| StateSealError::Key(error.to_string()))?;
        Ok(StateSeal { codec })
    }

    pub fn seal(&self, binding: &[u8], state: &RoundState) -> Result<String, StateSealError> {
        let options = SealOptions::new().associated_data(binding).ttl(STATE_TTL);
        self.codec.seal_json_with(state, &options).map_err(|error| StateSealError::Seal(error.to_string()))
    }

    /// Opens a state this server sealed for the same binding. Every failure gets the same
    /// message: which check failed is a hint to a forger, not to an honest client.
    pub fn open(&self, binding: &[u8], sealed: &str) -> Result<RoundState, String> {
        self.codec.open_json_with(sealed, binding).map_err(|error| {
            tracing::debug!(%error, "request state rejected");
            "requestState is invalid or expired; call the tool again without it".to_string()
        })
    }
}
