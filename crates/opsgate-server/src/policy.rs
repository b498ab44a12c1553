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

    /// The default bundle alone.
    pub fn default_bundle() -> Result<Self, PolicyError> {
        Ok(PolicyHandle::new(Policy::default_bundle()?))
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
