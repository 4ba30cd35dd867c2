//! The Docker backend (bollard): starts hardened containers, enforces their deadline,
//! captures their output, removes them, and finds the ones a crashed daemon left behind.
//!
//! Every container is: a non-root user, a read-only root filesystem with a small `/tmp`
//! tmpfs, all capabilities dropped, `no-new-privileges`, memory/CPU/pids limits, an init
//! process, no Docker socket or other mounts, on its own network; and labelled
//! `autoheal.managed=true` so nothing of ours is ever lost track of.

use std::collections::HashMap;
use std::time::Instant;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig, NetworkCreateRequest};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures_util::StreamExt;
use tokio::task::JoinHandle;

use super::SandboxError;
use super::spec::{Captured, ContainerSpec, LABEL_MANAGED, LABEL_SANDBOX};
use crate::config::Cidr;

/// The user sandboxes run as (the image's `autoheal` user; never root).
pub const SANDBOX_USER: &str = "65532:65532";
/// Scratch space: enough for a tool's temporary files, small enough not to matter.
const TMPFS: &str = "rw,noexec,nosuid,nodev,size=64m";
/// Bounds Docker's own copy of the output on disk; we return at most `output_cap` of it.
const LOG_MAX_SIZE: &str = "16m";
/// How long a stopped container gets to exit on SIGTERM before SIGKILL.
const STOP_GRACE_SECS: i32 = 2;

/// A started container and the task collecting its output.
#[derive(Debug)]
pub struct Started {
    pub id: String,
    pub output: JoinHandle<Result<(Captured, Captured), SandboxError>>,
}

/// Reads a container's multiplexed output to its end, keeping at most `cap` bytes per stream.
async fn collect<S>(mut stream: S, cap: usize) -> Result<(Captured, Captured), SandboxError>
where
    S: futures_util::Stream<Item = Result<LogOutput, DockerError>> + Unpin,
{
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let (mut out_cut, mut err_cut) = (false, false);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| docker_err("read the sandbox's output", e))?;
        let (buffer, cut, bytes) = match &chunk {
            LogOutput::StdOut { message } => (&mut stdout, &mut out_cut, message),
            LogOutput::StdErr { message } => (&mut stderr, &mut err_cut, message),
            _ => continue,
        };
        let room = cap.saturating_sub(buffer.len());
        if bytes.len() > room {
            *cut = true;
        }
        buffer.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
    let text = |bytes: Vec<u8>, truncated: bool| Captured {
        text: String::from_utf8_lossy(&bytes).into_owned(),
        truncated,
    };
    Ok((text(stdout, out_cut), text(stderr, err_cut)))
}

/// Talks to the Docker Engine API.
#[derive(Debug, Clone)]
pub struct DockerBackend {
    docker: Docker,
    /// Most bytes kept per stream (stdout, stderr).
    output_cap: usize,
}

fn docker_err(action: &str, err: DockerError) -> SandboxError {
    SandboxError::Docker {
        action: action.to_owned(),
        message: err.to_string(),
    }
}

impl DockerBackend {
    /// Connects to the local engine (`DOCKER_HOST`, else `/var/run/docker.sock`). Connecting
    /// is lazy: a missing engine shows in [`DockerBackend::ping`], not here.
    pub fn connect(output_cap: usize) -> Result<Self, SandboxError> {
        let docker =
            Docker::connect_with_defaults().map_err(|e| docker_err("connect to Docker", e))?;
        Ok(Self { docker, output_cap })
    }

    /// Does the engine answer?
    pub async fn ping(&self) -> Result<(), SandboxError> {
        self.docker
            .ping()
            .await
            .map(|_| ())
            .map_err(|e| docker_err("ping the Docker engine", e))
    }

    /// Creates the sandbox bridge network when it does not exist, and answers its IP
    /// subnets (`host`/`none` need no network and have none of their own).
    pub async fn ensure_network(&self, name: &str) -> Result<Vec<Cidr>, SandboxError> {
        if matches!(name, "host" | "none") {
            return Ok(Vec::new());
        }
        if let Some(subnets) = self.network_subnets(name).await? {
            return Ok(subnets);
        }
        let request = NetworkCreateRequest {
            name: name.to_owned(),
            driver: Some("bridge".into()),
            labels: Some(HashMap::from([(
                LABEL_MANAGED.to_owned(),
                "true".to_owned(),
            )])),
            ..Default::default()
        };
        match self.docker.create_network(request).await {
            Ok(_) => {}
            // Created concurrently by another caller: fine.
            Err(DockerError::DockerResponseServerError {
                status_code: 409, ..
            }) => {}
            Err(e) => return Err(docker_err(&format!("create network {name}"), e)),
        }
        self.network_subnets(name)
            .await?
            .ok_or_else(|| SandboxError::Docker {
                action: format!("find network {name} after creating it"),
                message: "it vanished".into(),
            })
    }

    /// The subnets of a network, or `None` when it does not exist.
    async fn network_subnets(&self, name: &str) -> Result<Option<Vec<Cidr>>, SandboxError> {
        let network = match self
            .docker
            .inspect_network(
                name,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
        {
            Ok(network) => network,
            Err(DockerError::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(None),
            Err(e) => return Err(docker_err(&format!("inspect network {name}"), e)),
        };
        let subnets = network
            .ipam
            .and_then(|ipam| ipam.config)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|config| config.subnet)
            .filter_map(|subnet| Cidr::parse(&subnet).ok())
            .collect();
        Ok(Some(subnets))
    }

    /// Creates the container, attaches to its output, and starts it. Answers its id and the
    /// task collecting its output (attached before start, so not a byte is missed; it ends
    /// when the container's streams close).
    pub async fn start(&self, spec: &ContainerSpec) -> Result<Started, SandboxError> {
        let (entrypoint, args) = spec
            .command
            .split_first()
            .ok_or_else(|| SandboxError::BadRequest("command must not be empty".into()))?;
        let env = spec
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", v.expose()))
            .collect();
        let host_config = HostConfig {
            readonly_rootfs: Some(true),
            tmpfs: Some(HashMap::from([("/tmp".to_owned(), TMPFS.to_owned())])),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges:true".into()]),
            memory: Some(spec.limits.memory.as_u64() as i64),
            memory_swap: Some(spec.limits.memory.as_u64() as i64),
            nano_cpus: Some((spec.limits.cpus * 1e9) as i64),
            pids_limit: Some(i64::from(spec.limits.pids)),
            init: Some(true),
            network_mode: Some(spec.limits.network.clone()),
            privileged: Some(false),
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".into()),
                config: Some(HashMap::from([
                    ("max-size".to_owned(), LOG_MAX_SIZE.to_owned()),
                    ("max-file".to_owned(), "1".to_owned()),
                ])),
            }),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            entrypoint: Some(vec![entrypoint.clone()]),
            cmd: Some(args.to_vec()),
            env: Some(env),
            user: Some(SANDBOX_USER.into()),
            working_dir: Some("/tmp".into()),
            labels: Some(spec.labels().into_iter().collect()),
            attach_stdout: Some(false),
            attach_stderr: Some(false),
            host_config: Some(host_config),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::new()
            .name(&spec.container_name())
            .build();
        let created = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| match e {
                DockerError::DockerResponseServerError {
                    status_code: 404, ..
                } => SandboxError::ImageMissing(spec.image.clone()),
                other => docker_err("create the sandbox container", other),
            })?;
        let attach = AttachContainerOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .stream(true)
            .logs(true)
            .build();
        let attached = match self
            .docker
            .attach_container(&created.id, Some(attach))
            .await
        {
            Ok(attached) => attached,
            Err(e) => {
                let _ = self.remove(&created.id).await;
                return Err(docker_err("attach to the sandbox's output", e));
            }
        };
        let output = tokio::spawn(collect(attached.output, self.output_cap));
        if let Err(e) = self
            .docker
            .start_container(
                &created.id,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
        {
            output.abort();
            let _ = self.remove(&created.id).await;
            return Err(docker_err("start the sandbox container", e));
        }
        Ok(Started {
            id: created.id,
            output,
        })
    }

    /// Waits for the container to exit, or stops it at `deadline`. Answers the exit code and
    /// whether the deadline ended it.
    pub async fn wait(&self, id: &str, deadline: Instant) -> Result<(i64, bool), SandboxError> {
        let options = WaitContainerOptionsBuilder::new()
            .condition("not-running")
            .build();
        let mut stream = self.docker.wait_container(id, Some(options));
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.next()).await {
            Ok(Some(Ok(answer))) => Ok((answer.status_code, false)),
            // bollard reports a non-zero exit as an error carrying the code.
            Ok(Some(Err(DockerError::DockerContainerWaitError { code, .. }))) => Ok((code, false)),
            Ok(Some(Err(e))) => Err(docker_err("wait for the sandbox", e)),
            Ok(None) => Ok((self.exit_code(id).await?, false)),
            Err(_deadline) => {
                self.stop(id).await?;
                Ok((self.exit_code(id).await?, true))
            }
        }
    }

    async fn exit_code(&self, id: &str) -> Result<i64, SandboxError> {
        let info = self
            .docker
            .inspect_container(
                id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .map_err(|e| docker_err("inspect the sandbox", e))?;
        Ok(info.state.and_then(|s| s.exit_code).unwrap_or(-1))
    }

    /// Stops the container: SIGTERM, then SIGKILL after a short grace.
    pub async fn stop(&self, id: &str) -> Result<(), SandboxError> {
        let options = StopContainerOptionsBuilder::new()
            .t(STOP_GRACE_SECS)
            .build();
        match self.docker.stop_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            // 304: already stopped; 404: already gone.
            Err(DockerError::DockerResponseServerError {
                status_code: 304 | 404,
                ..
            }) => Ok(()),
            Err(e) => Err(docker_err("stop the sandbox", e)),
        }
    }

    /// Removes the container (and its anonymous volumes), stopped or not.
    pub async fn remove(&self, id: &str) -> Result<(), SandboxError> {
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(DockerError::DockerResponseServerError {
                status_code: 404 | 409,
                ..
            }) => Ok(()),
            Err(e) => Err(docker_err("remove the sandbox", e)),
        }
    }

    /// Every container labelled as ours, running or not: `(container id, sandbox id)`.
    pub async fn managed_containers(&self) -> Result<Vec<(String, String)>, SandboxError> {
        let filters = HashMap::from([("label", vec![format!("{LABEL_MANAGED}=true")])]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| docker_err("list sandbox containers", e))?;
        Ok(containers
            .into_iter()
            .filter_map(|c| {
                let sandbox = c.labels.as_ref()?.get(LABEL_SANDBOX)?.clone();
                Some((c.id?, sandbox))
            })
            .collect())
    }

    /// Stops and removes every container a previous daemon left behind; answers how many.
    pub async fn reap_orphans(&self) -> Result<usize, SandboxError> {
        let orphans = self.managed_containers().await?;
        for (id, sandbox) in &orphans {
            tracing::warn!(container = %id, sandbox = %sandbox, "removing a sandbox left behind by an earlier run");
            self.remove(id).await?;
        }
        Ok(orphans.len())
    }
}
