//! The configured instances of one backend kind, by name, in configuration order: the first is
//! the default, as it is for the `target` argument. One generic collection serves every
//! connector, so target resolution behaves the same everywhere.

use std::sync::Arc;

use opsgate_core::{Target, ToolError};

/// A client for one named backend instance.
pub trait Instance {
    /// The connector kind, as in `[connectors.<kind>.<name>]` and `Target::kind`.
    const KIND: &'static str;
    fn name(&self) -> &str;
    fn environment(&self) -> &str;
}

#[derive(Debug)]
pub struct Instances<C> {
    clients: Vec<Arc<C>>,
}

impl<C> Default for Instances<C> {
    fn default() -> Self {
        Instances { clients: Vec::new() }
    }
}

impl<C> Clone for Instances<C> {
    fn clone(&self) -> Self {
        Instances { clients: self.clients.clone() }
    }
}

impl<C: Instance> Instances<C> {
    pub fn new(clients: Vec<C>) -> Self {
        Instances { clients: clients.into_iter().map(Arc::new).collect() }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<C>> {
        self.clients.iter().find(|client| client.name() == name)
    }

    pub fn first(&self) -> Option<&Arc<C>> {
        self.clients.first()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<C>> {
        self.clients.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// The client for the target the pipeline resolved; the first one when the tool was called
    /// without a target (tests, the CLI).
    pub fn for_target(&self, target: Option<&Target>) -> Result<&Arc<C>, ToolError> {
        match target {
            Some(target) => self.get(&target.name).ok_or_else(|| {
                ToolError::Internal(format!(
                    "{} target {:?} has no client; check the configuration",
                    C::KIND,
                    target.name
                ))
            }),
            None => self.first().ok_or_else(|| ToolError::Unavailable(format!("no {} backend is configured", C::KIND))),
        }
    }

    /// `Target`s for the pipeline's catalog, one per instance. `protected` comes from the
    /// environments configuration, which only the binary knows.
    pub fn targets(&self, protected: impl Fn(&str) -> bool) -> Vec<Target> {
        self.clients
            .iter()
            .map(|client| Target {
                name: client.name().to_string(),
                kind: C::KIND.to_string(),
                environment: client.environment().to_string(),
                protected: protected(client.environment()),
            })
            .collect()
    }
}
