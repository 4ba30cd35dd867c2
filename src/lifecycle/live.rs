//! The configuration in force and the credential broker built from it.
//!
//! SIGHUP swaps both at once (see `reload.rs`); whoever took a snapshot with
//! [`LiveConfig::current`] keeps a consistent pair for as long as it needs it, so a request
//! in flight during a reload finishes on the generation it started with.

use std::sync::{Arc, RwLock};

use crate::config::Config;
use crate::credentials::CredentialBroker;

/// One configuration and the broker that serves its integrations.
#[derive(Debug)]
pub struct Generation {
    pub config: Config,
    pub broker: Arc<CredentialBroker>,
}

/// The generation in force.
#[derive(Debug)]
pub struct LiveConfig {
    current: RwLock<Arc<Generation>>,
}

impl LiveConfig {
    pub fn new(config: Config, broker: Arc<CredentialBroker>) -> Self {
        Self {
            current: RwLock::new(Arc::new(Generation { config, broker })),
        }
    }

    /// The generation in force now.
    pub fn current(&self) -> Arc<Generation> {
        self.current.read().expect("live config lock").clone()
    }

    /// Puts `next` in force; answers the generation it replaced.
    pub fn replace(&self, next: Generation) -> Arc<Generation> {
        std::mem::replace(
            &mut *self.current.write().expect("live config lock"),
            Arc::new(next),
        )
    }
}
