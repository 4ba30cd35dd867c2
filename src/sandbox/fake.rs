//! A backend without Docker, for tests: containers are tokio tasks that play a tiny program.
//!
//! It understands a few commands (argv[0]): `sleep SECS` runs that long, `exit N` exits
//! with N, `echo WORDS…` prints them; anything else exits 0 at once. It counts what the
//! manager asked of it (starts, peak of containers alive at once, networks prepared), so
//! tests can check the manager's rules — admission, deadlines, drain — without root.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::{Notify, watch};

use super::SandboxError;
use super::backend::{Ended, ImageFacts, ManagedContainer, SandboxBackend, Started};
use super::spec::{Captured, ContainerSpec};
use crate::config::Cidr;

/// A "container"'s address on a bridge network (all share the host's loopback); none on
/// `host` and `none`.
fn bridge_address(network: &str) -> Option<IpAddr> {
    (!matches!(network, "host" | "none")).then_some(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// The exit code of a container killed by `stop` (128 + SIGKILL), as Docker reports it.
const KILLED: i64 = 137;

#[derive(Debug)]
struct FakeContainer {
    sandbox: String,
    stop: Arc<Notify>,
    exit: watch::Receiver<Option<i64>>,
}

#[derive(Debug, Default)]
struct FakeState {
    images: HashMap<String, ImageFacts>,
    containers: HashMap<String, FakeContainer>,
    next_id: u64,
    starts: u64,
    alive: usize,
    peak_alive: usize,
    networks_prepared: u64,
}

/// Containers as tasks; see the module doc.
#[derive(Debug, Clone, Default)]
pub struct FakeBackend {
    state: Arc<Mutex<FakeState>>,
}

impl FakeBackend {
    /// A backend that knows the default sandbox image (no volumes).
    pub fn new() -> Self {
        Self::default().with_image(crate::config::DEFAULT_SANDBOX_IMAGE, &[])
    }

    /// Adds an image the backend "has", declaring `volumes`.
    pub fn with_image(self, name: &str, volumes: &[&str]) -> Self {
        let facts = ImageFacts {
            id: format!("sha256:fake-{name}"),
            volumes: volumes.iter().map(|v| (*v).to_owned()).collect(),
        };
        self.lock().images.insert(name.to_owned(), facts);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().expect("fake backend lock")
    }

    /// Containers started so far.
    pub fn starts(&self) -> u64 {
        self.lock().starts
    }

    /// Containers that exist now (started and not yet removed).
    pub fn existing(&self) -> usize {
        self.lock().containers.len()
    }

    /// Most containers that existed at once.
    pub fn peak_existing(&self) -> usize {
        self.lock().peak_alive
    }

    pub fn networks_prepared(&self) -> u64 {
        self.lock().networks_prepared
    }

    /// Adds a container that no manager knows of (what a crashed daemon leaves behind).
    pub fn leave_behind(&self, sandbox: &str) -> String {
        let (tx, rx) = watch::channel(None);
        std::mem::forget(tx); // runs "forever", until removed
        let mut state = self.lock();
        state.next_id += 1;
        let id = format!("fake-{}", state.next_id);
        state.containers.insert(
            id.clone(),
            FakeContainer {
                sandbox: sandbox.to_owned(),
                stop: Arc::new(Notify::new()),
                exit: rx,
            },
        );
        state.alive += 1;
        state.peak_alive = state.peak_alive.max(state.alive);
        id
    }
}

/// What the fake program does: how long it runs, its exit code, its output.
fn program(command: &[String]) -> (Duration, i64, String) {
    let arg = |i: usize| command.get(i).map(String::as_str).unwrap_or_default();
    match arg(0) {
        "sleep" => (
            Duration::from_secs_f64(arg(1).parse().unwrap_or(0.0)),
            0,
            String::new(),
        ),
        "exit" => (Duration::ZERO, arg(1).parse().unwrap_or(1), String::new()),
        "echo" => (Duration::ZERO, 0, format!("{}\n", command[1..].join(" "))),
        _ => (Duration::ZERO, 0, String::new()),
    }
}

#[async_trait]
impl SandboxBackend for FakeBackend {
    async fn ping(&self) -> Result<(), SandboxError> {
        Ok(())
    }

    /// A bridge's gateway is the host's loopback here (the proxy and the credentials
    /// endpoint listen there in tests).
    async fn network_gateway(&self, network: &str) -> Result<Option<IpAddr>, SandboxError> {
        Ok(bridge_address(network))
    }

    async fn prepare_network(
        &self,
        _network: &str,
        _subnet: Option<&Cidr>,
        _blocked: &[Cidr],
    ) -> Result<(), SandboxError> {
        self.lock().networks_prepared += 1;
        Ok(())
    }

    async fn inspect_image(&self, image: &str) -> Result<ImageFacts, SandboxError> {
        self.lock()
            .images
            .get(image)
            .cloned()
            .ok_or_else(|| SandboxError::ImageMissing(image.to_owned()))
    }

    async fn start(&self, spec: &ContainerSpec) -> Result<Started, SandboxError> {
        let (runs_for, code, stdout) = program(&spec.command);
        let stop = Arc::new(Notify::new());
        let (exit_tx, exit_rx) = watch::channel(None);
        let id = {
            let mut state = self.lock();
            state.next_id += 1;
            state.starts += 1;
            state.alive += 1;
            state.peak_alive = state.peak_alive.max(state.alive);
            let id = format!("fake-{}", state.next_id);
            state.containers.insert(
                id.clone(),
                FakeContainer {
                    sandbox: spec.sandbox_id.clone(),
                    stop: stop.clone(),
                    exit: exit_rx.clone(),
                },
            );
            id
        };
        tokio::spawn(async move {
            let code = tokio::select! {
                () = tokio::time::sleep(runs_for) => code,
                () = stop.notified() => KILLED,
            };
            exit_tx.send_replace(Some(code));
        });
        let mut exit = exit_rx;
        let output = tokio::spawn(async move {
            let _ = exit.wait_for(Option::is_some).await;
            Ok((
                Captured {
                    text: stdout,
                    truncated: false,
                },
                Captured::default(),
            ))
        });
        Ok(Started {
            container: id,
            output,
            address: bridge_address(&spec.limits.network),
            ended_at_once: false,
            stdio: None,
        })
    }

    async fn wait(&self, container: &str, deadline: Instant) -> Result<Ended, SandboxError> {
        let mut exit = self
            .lock()
            .containers
            .get(container)
            .map(|c| c.exit.clone())
            .ok_or_else(|| SandboxError::NotFound(container.to_owned()))?;
        let left = deadline.saturating_duration_since(Instant::now());
        let timed_out = tokio::time::timeout(left, exit.wait_for(Option::is_some))
            .await
            .is_err();
        if timed_out {
            self.stop(container).await?;
            let _ = exit.wait_for(Option::is_some).await;
        }
        let exit_code = (*exit.borrow()).unwrap_or(KILLED);
        Ok(Ended {
            exit_code,
            timed_out,
        })
    }

    async fn stop(&self, container: &str) -> Result<(), SandboxError> {
        if let Some(c) = self.lock().containers.get(container) {
            c.stop.notify_one();
        }
        Ok(())
    }

    async fn remove(&self, container: &str) -> Result<(), SandboxError> {
        let mut state = self.lock();
        if let Some(c) = state.containers.remove(container) {
            c.stop.notify_one();
            state.alive -= 1;
        }
        Ok(())
    }

    async fn managed_containers(&self) -> Result<Vec<ManagedContainer>, SandboxError> {
        Ok(self
            .lock()
            .containers
            .iter()
            .map(|(id, c)| ManagedContainer {
                container: id.clone(),
                sandbox: c.sandbox.clone(),
            })
            .collect())
    }
}
