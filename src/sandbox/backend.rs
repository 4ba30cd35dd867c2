//! The seam between the sandbox manager and whatever runs containers.
//!
//! The manager decides (limits, lifetime, credentials, admission, drain); a backend only
//! carries out: make the network ready and fenced, look at an image, start a container,
//! wait for it, stop it, remove it, list what it owns. Docker (`docker.rs`) is the one built;
//! a cluster backend (Kubernetes Jobs, ECS tasks) would implement the same trait. Tests use
//! `FakeBackend` (no Docker, no root) and wrap any backend in `FaultyBackend` to make a
//! chosen operation fail, so the manager's rules are tested without the engine.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use std::pin::Pin;

use async_trait::async_trait;
use tokio::io::{AsyncWrite, DuplexStream};
use tokio::task::JoinHandle;

use super::SandboxError;
use super::egress_fence::Fence;
use super::spec::{Captured, ContainerSpec};
use crate::config::Cidr;

/// The task collecting a container's stdout and stderr; it ends when the streams close.
pub type OutputTask = JoinHandle<Result<(Captured, Captured), SandboxError>>;

/// A started container and the task collecting its output.
#[derive(Debug)]
pub struct Started {
    /// The backend's id of the container.
    pub container: String,
    pub output: OutputTask,
    /// The container's own address on its network (bridge networks), when known.
    pub address: Option<IpAddr>,
    /// The container had ended already when its address was looked up (a command that exits
    /// at once): the engine had released the address, and nothing is left to tie to it.
    pub ended_at_once: bool,
    /// The live stdio of an interactive container ([`ContainerSpec::interactive`]).
    pub stdio: Option<SandboxStdio>,
}

/// An interactive container's stdin and stdout, live. Dropping `input` closes the program's
/// stdin (it sees end of file); `output` ends when the program's stdout does.
pub struct SandboxStdio {
    pub input: Pin<Box<dyn AsyncWrite + Send>>,
    pub output: DuplexStream,
}

impl std::fmt::Debug for SandboxStdio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SandboxStdio")
    }
}

/// What a command run in a running container ([`SandboxBackend::exec`]) did.
#[derive(Debug, Clone)]
pub struct ExecOutcome {
    /// `None` when the timeout passed first.
    pub exit_code: Option<i64>,
    pub stdout: Captured,
    pub stderr: Captured,
    pub timed_out: bool,
}

/// How a container ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    pub exit_code: i64,
    /// True when the deadline, not the program, ended it.
    pub timed_out: bool,
}

/// What the manager needs to know about an image before it runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFacts {
    /// The content-addressed id (`sha256:…`): containers are created from it, so a tag moved
    /// between the check and the start cannot swap in an unchecked image.
    pub id: String,
    /// Paths the image declares as `VOLUME`s.
    pub volumes: Vec<String>,
}

/// A container the backend runs for us (found by its `autoheal.managed` label).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedContainer {
    pub container: String,
    /// The sandbox id from its label.
    pub sandbox: String,
}

/// What runs sandbox containers.
#[async_trait]
pub trait SandboxBackend: Send + Sync + std::fmt::Debug {
    /// Does the engine answer?
    async fn ping(&self) -> Result<(), SandboxError>;

    /// Makes `network` ready for a sandbox: it exists, and nothing on it can reach the
    /// `blocked` addresses. Idempotent; called before every start, so a rule lost to a
    /// firewall reload comes back.
    async fn prepare_network(
        &self,
        network: &str,
        subnet: Option<&Cidr>,
        blocked: &[Cidr],
    ) -> Result<(), SandboxError>;

    /// The address the host has on `network` (a bridge's gateway), where a service for its
    /// sandboxes can listen; `None` for `host` and for backends without one.
    async fn network_gateway(&self, _network: &str) -> Result<Option<IpAddr>, SandboxError> {
        Ok(None)
    }

    /// Makes sandboxes on bridge `network` reach the credentials endpoint listening at `to`
    /// as 169.254.170.2:80 (the address the AWS SDKs accept). Idempotent.
    async fn route_credentials(&self, _network: &str, _to: SocketAddr) -> Result<(), SandboxError> {
        Ok(())
    }

    /// Fences bridge `network`: from its subnets only the fence's open services (on its
    /// gateway) are reachable; everything else is refused. Idempotent; networks whose driver
    /// cannot be fenced this way (`macvlan`, `ipvlan`) are refused.
    async fn fence_egress(&self, _network: &str, _fence: &Fence) -> Result<(), SandboxError> {
        Ok(())
    }

    /// Puts back what a firewall reload or a Docker restart may have dropped for a network
    /// sandboxes were started on: its IMDS rules (`blocked`) and, when it is fenced, its
    /// egress fence. Only the rules: whether a *new* sandbox may start there is for
    /// `prepare_network` and `fence_egress` to say, so a failing check never leaves the
    /// rules of running sandboxes unmended. Idempotent.
    async fn keep_firewall(
        &self,
        _network: &str,
        _blocked: &[Cidr],
        _fence: Option<&Fence>,
    ) -> Result<(), SandboxError> {
        Ok(())
    }

    /// The image's id and declared volumes; [`SandboxError::ImageMissing`] when absent.
    async fn inspect_image(&self, image: &str) -> Result<ImageFacts, SandboxError>;

    /// Creates and starts the container, collecting its output from the first byte.
    async fn start(&self, spec: &ContainerSpec) -> Result<Started, SandboxError>;

    /// Waits for the container to exit, or stops it at `deadline`.
    async fn wait(&self, container: &str, deadline: Instant) -> Result<Ended, SandboxError>;

    /// Stops the container (a short grace, then kill). Already stopped or gone is fine.
    async fn stop(&self, container: &str) -> Result<(), SandboxError>;

    /// Removes the container, stopped or not. Already gone is fine.
    async fn remove(&self, container: &str) -> Result<(), SandboxError>;

    /// Every container of ours, running or not.
    async fn managed_containers(&self) -> Result<Vec<ManagedContainer>, SandboxError>;

    /// Runs `command` in the running container as the sandbox's user, collecting its output
    /// (capped like a sandbox's); gives up waiting at `deadline`.
    async fn exec(
        &self,
        _container: &str,
        _command: &[String],
        _deadline: Instant,
    ) -> Result<ExecOutcome, SandboxError> {
        Err(SandboxError::Internal(
            "this sandbox backend cannot run commands in a running sandbox".into(),
        ))
    }
}
