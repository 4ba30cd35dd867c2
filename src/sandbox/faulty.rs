//! A failure-injecting wrapper around any backend, for tests: make one operation fail (the
//! next N times, or until healed) or slow, or take the whole engine "away" and bring it back.
//!
//! An injected failure is the error an unreachable engine gives
//! ([`SandboxError::Docker`]), so the manager's error mapping is what a real outage sees.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::SandboxError;
use super::backend::{Ended, ImageFacts, ManagedContainer, SandboxBackend, Started};
use super::egress_fence::Fence;
use super::spec::ContainerSpec;
use crate::config::Cidr;

/// The operations of [`SandboxBackend`], to choose which one fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Ping,
    PrepareNetwork,
    InspectImage,
    Start,
    Wait,
    Stop,
    Remove,
    List,
}

/// Wraps `B`; see the module doc.
#[derive(Debug, Clone)]
pub struct FaultyBackend<B> {
    inner: B,
    /// Failures still to inject, per operation (`u32::MAX`: until healed).
    faults: Arc<Mutex<HashMap<Operation, u32>>>,
    delays: Arc<Mutex<HashMap<Operation, Duration>>>,
    down: Arc<AtomicBool>,
}

impl<B: SandboxBackend> FaultyBackend<B> {
    pub fn new(inner: B) -> Self {
        Self {
            inner,
            faults: Arc::default(),
            delays: Arc::default(),
            down: Arc::default(),
        }
    }

    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// `operation` fails the next `times` calls.
    pub fn fail(&self, operation: Operation, times: u32) {
        self.faults
            .lock()
            .expect("fault lock")
            .insert(operation, times);
    }

    /// `operation` takes `delay` longer from now on (a slow engine; a start in flight).
    pub fn slow(&self, operation: Operation, delay: Duration) {
        self.delays
            .lock()
            .expect("fault lock")
            .insert(operation, delay);
    }

    /// Every operation fails while `down` (the engine went away), and works again after.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Forgets every injected failure.
    pub fn heal(&self) {
        self.faults.lock().expect("fault lock").clear();
        self.delays.lock().expect("fault lock").clear();
        self.set_down(false);
    }

    /// Applies the delay, then the failure, chosen for `operation`.
    async fn check(&self, operation: Operation) -> Result<(), SandboxError> {
        let delay = self
            .delays
            .lock()
            .expect("fault lock")
            .get(&operation)
            .copied();
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        self.fails(operation)
    }

    fn fails(&self, operation: Operation) -> Result<(), SandboxError> {
        let injected = || SandboxError::Docker {
            action: format!("{operation:?} (injected fault)"),
            message: "connection refused".into(),
        };
        if self.down.load(Ordering::SeqCst) {
            return Err(injected());
        }
        let mut faults = self.faults.lock().expect("fault lock");
        match faults.get_mut(&operation) {
            Some(0) | None => Ok(()),
            Some(left) => {
                if *left != u32::MAX {
                    *left -= 1;
                }
                Err(injected())
            }
        }
    }
}

#[async_trait]
impl<B: SandboxBackend> SandboxBackend for FaultyBackend<B> {
    async fn ping(&self) -> Result<(), SandboxError> {
        self.check(Operation::Ping).await?;
        self.inner.ping().await
    }

    async fn prepare_network(
        &self,
        network: &str,
        subnet: Option<&Cidr>,
        blocked: &[Cidr],
    ) -> Result<(), SandboxError> {
        self.check(Operation::PrepareNetwork).await?;
        self.inner.prepare_network(network, subnet, blocked).await
    }

    async fn network_gateway(&self, network: &str) -> Result<Option<IpAddr>, SandboxError> {
        self.inner.network_gateway(network).await
    }

    async fn route_credentials(&self, network: &str, to: SocketAddr) -> Result<(), SandboxError> {
        self.inner.route_credentials(network, to).await
    }

    async fn fence_egress(&self, network: &str, fence: &Fence) -> Result<(), SandboxError> {
        self.inner.fence_egress(network, fence).await
    }

    async fn keep_firewall(
        &self,
        network: &str,
        blocked: &[Cidr],
        fence: Option<&Fence>,
    ) -> Result<(), SandboxError> {
        self.inner.keep_firewall(network, blocked, fence).await
    }

    async fn inspect_image(&self, image: &str) -> Result<ImageFacts, SandboxError> {
        self.check(Operation::InspectImage).await?;
        self.inner.inspect_image(image).await
    }

    async fn start(&self, spec: &ContainerSpec) -> Result<Started, SandboxError> {
        self.check(Operation::Start).await?;
        self.inner.start(spec).await
    }

    async fn wait(&self, container: &str, deadline: Instant) -> Result<Ended, SandboxError> {
        self.check(Operation::Wait).await?;
        self.inner.wait(container, deadline).await
    }

    async fn stop(&self, container: &str) -> Result<(), SandboxError> {
        self.check(Operation::Stop).await?;
        self.inner.stop(container).await
    }

    async fn remove(&self, container: &str) -> Result<(), SandboxError> {
        self.check(Operation::Remove).await?;
        self.inner.remove(container).await
    }

    async fn managed_containers(&self) -> Result<Vec<ManagedContainer>, SandboxError> {
        self.check(Operation::List).await?;
        self.inner.managed_containers().await
    }
}
