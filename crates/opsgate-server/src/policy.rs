//! The policy in force, swappable at run time: a reload builds a new `Policy` and replaces the
//! old one between calls; a call keeps the policy it started with.

use std::sync::{Arc, RwLock};

use opsgate_policy::{Policy, PolicyError};

#[derive(Debug)]
pub struct PolicyHandle {
    current: RwLock<Arc<Policy>>,
}

impl PolicyHandle {
    pub fn new(policy: Policy) -> Self {
        PolicyHandle { current: RwLock::new(Arc::new(policy)) }
    }

    /// The default bundle alone, compiled once per process and shared.
    pub fn default_bundle() -> Result<Self, PolicyError> {
        Ok(PolicyHandle::shared(shared_default()?))
    }

    /// Holds an already shared policy.
    pub fn shared(policy: Arc<Policy>) -> Self {
        PolicyHandle { current: RwLock::new(policy) }
    }

    pub fn current(&self) -> Arc<Policy> {
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn replace(&self, policy: Policy) {
        let policy = Arc::new(policy);
        match self.current.write() {
            Ok(mut current) => *current = policy,
            Err(poisoned) => *poisoned.into_inner() = policy,
        }
    }
}

/// The default bundle, compiled on first use: every pipeline that starts with it (and every
/// configuration without policy files) shares the one copy.
pub fn shared_default() -> Result<Arc<Policy>, PolicyError> {
    static DEFAULT: std::sync::OnceLock<Arc<Policy>> = std::sync::OnceLock::new();
    if let Some(policy) = DEFAULT.get() {
        return Ok(policy.clone());
    }
    let policy = Arc::new(Policy::default_bundle()?);
    Ok(DEFAULT.get_or_init(|| policy).clone())
}
