//! The Docker backend (bollard): starts hardened containers, enforces their deadline,
//! captures their output, removes them, and finds the ones a crashed daemon left behind.
//!
//! Every container is: a non-root user, a read-only root filesystem with a small `/tmp`
//! tmpfs, all capabilities dropped, `no-new-privileges`, memory/CPU/pids limits, an init
//! process, no Docker socket or other mounts, on its own network; and labelled
//! `autoheal.managed=true` so nothing of ours is ever lost track of.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use async_trait::async_trait;
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount, MountType, NetworkCreateRequest,
};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures_util::StreamExt;
use tokio::io::{AsyncWriteExt, DuplexStream};

use super::SandboxError;
use super::backend::{
    Ended, ExecOutcome, ImageFacts, ManagedContainer, SandboxBackend, SandboxStdio, Started,
};
use super::credentials_route;
use super::egress_fence::{self, Fence};
use super::metadata_block::MetadataBlock;
use super::spec::{Captured, ContainerSpec, LABEL_MANAGED, LABEL_SANDBOX};
use crate::config::Cidr;

/// The user sandboxes run as (the image's `autoheal` user; never root).
pub const SANDBOX_USER: &str = "65532:65532";
/// Scratch space: enough for a tool's temporary files, small enough not to matter.
const TMPFS: &str = "rw,noexec,nosuid,nodev,size=64m";
/// Bounds Docker's own copy of the output on disk; we return at most `output_cap` of it.
const LOG_MAX_SIZE: &str = "16m";
/// The DNS server a fenced sandbox is given: TEST-NET-1 (RFC 5737), never routed, and
/// refused by the fence anyway. Docker's embedded resolver forwards a sandbox's queries to
/// it from the sandbox's own namespace, where the fence stops them; left to the host's
/// resolver on loopback, it would forward them from the host's namespace instead.
const FENCED_DNS: &str = "192.0.2.1";
/// How long a stopped container gets to exit on SIGTERM before SIGKILL.
const STOP_GRACE_SECS: i32 = 2;

/// How much of an interactive sandbox's stdout may wait, unread, for its reader: beyond it
/// the container's output waits (backpressure), so a slow reader costs no more memory.
const LIVE_STDOUT_BUFFER: usize = 256 * 1024;
/// The same for what is written to its stdin (MCP requests: small).
const LIVE_STDIN_BUFFER: usize = 64 * 1024;

/// Reads a container's multiplexed output to its end, keeping at most `cap` bytes per stream.
/// With `live`, stdout goes there as it comes instead (an interactive sandbox's protocol);
/// once its reader is gone, the rest of stdout is dropped.
async fn collect<S>(
    mut stream: S,
    cap: usize,
    mut live: Option<DuplexStream>,
) -> Result<(Captured, Captured), SandboxError>
where
    S: futures_util::Stream<Item = Result<LogOutput, DockerError>> + Unpin,
{
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let (mut out_cut, mut err_cut) = (false, false);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| docker_err("read the sandbox's output", e))?;
        if let (LogOutput::StdOut { message }, Some(sink)) = (&chunk, live.as_mut()) {
            if sink.write_all(message).await.is_err() {
                live = None;
            }
            continue;
        }
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

/// A writer to the container's stdin that closes it (the program sees end of file) once the
/// writer is dropped. bollard's attach input is one half of the upgraded connection, and
/// dropping that half shuts nothing down; so the bytes go through a small pipe and a task
/// that copies them, then half-closes the connection when the pipe ends.
fn closing_on_drop(
    mut input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
) -> DuplexStream {
    let (ours, mut theirs) = tokio::io::duplex(LIVE_STDIN_BUFFER);
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut theirs, &mut input).await;
        let _ = input.shutdown().await;
    });
    ours
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
    /// is lazy: a missing engine shows in [`SandboxBackend::ping`], not here.
    pub fn connect(output_cap: usize) -> Result<Self, SandboxError> {
        let docker =
            Docker::connect_with_defaults().map_err(|e| docker_err("connect to Docker", e))?;
        Ok(Self { docker, output_cap })
    }

    /// Creates the sandbox bridge network when it does not exist, and answers its IP
    /// subnets (`host`/`none` need no network and have none of their own). A network it
    /// creates gets `subnet` when one is configured (`sandbox.subnet`), else one from
    /// Docker's pool.
    pub async fn ensure_network(
        &self,
        name: &str,
        subnet: Option<&Cidr>,
    ) -> Result<Vec<Cidr>, SandboxError> {
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
            // No traffic between sandboxes on the bridge (Docker drops it, and loads
            // br_netfilter so the fence sees what is bridged).
            options: Some(HashMap::from([(
                "com.docker.network.bridge.enable_icc".to_owned(),
                "false".to_owned(),
            )])),
            ipam: subnet.map(|subnet| bollard::models::Ipam {
                config: Some(vec![bollard::models::IpamConfig {
                    subnet: Some(subnet.to_string()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
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

    /// The subnets of a network that must exist by now (prepared before).
    async fn existing_subnets(&self, name: &str) -> Result<Vec<Cidr>, SandboxError> {
        self.network_subnets(name)
            .await?
            .ok_or_else(|| SandboxError::Docker {
                action: format!("find network {name}"),
                message: "it does not exist (was it removed while sandboxes use it?)".into(),
            })
    }

    /// The subnets of a network, or `None` when it does not exist.
    async fn network_subnets(&self, name: &str) -> Result<Option<Vec<Cidr>>, SandboxError> {
        Ok(self.network_ipam(name).await?.map(|configs| {
            configs
                .into_iter()
                .filter_map(|config| config.subnet)
                .filter_map(|subnet| Cidr::parse(&subnet).ok())
                .collect()
        }))
    }

    /// A network's IPAM configurations, or `None` when it does not exist.
    async fn network_ipam(
        &self,
        name: &str,
    ) -> Result<Option<Vec<bollard::models::IpamConfig>>, SandboxError> {
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
        Ok(Some(
            network
                .ipam
                .and_then(|ipam| ipam.config)
                .unwrap_or_default(),
        ))
    }

    /// The container's IPv4 address on `network`, and whether it had ended already (the
    /// engine releases an ended container's address).
    async fn container_address(&self, id: &str, network: &str) -> (Option<IpAddr>, bool) {
        let Ok(info) = self
            .docker
            .inspect_container(
                id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
        else {
            return (None, false);
        };
        let running = info
            .state
            .as_ref()
            .and_then(|state| state.running)
            .unwrap_or(false);
        let address = info
            .network_settings
            .and_then(|settings| settings.networks)
            .and_then(|networks| {
                // Named as configured; a network configured by its id is the container's
                // only one.
                let endpoint = networks
                    .get(network)
                    .or_else(|| (networks.len() == 1).then(|| networks.values().next())?)?;
                endpoint.ip_address.as_deref()?.parse().ok()
            });
        (address, address.is_none() && !running)
    }

    async fn exit_code(&self, id: &str) -> Result<i64, SandboxError> {
        let info = self
            .docker
            .inspect_container(
                id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .map_err(|e| docker_err(&format!("inspect sandbox container {id}"), e))?;
        Ok(info.state.and_then(|s| s.exit_code).unwrap_or(-1))
    }
}

/// Whether traffic between containers on one bridge goes through the host's iptables (so
/// the fence's `-s <subnet>` REJECT stops it too).
fn bridged_traffic_is_filtered() -> bool {
    std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables")
        .is_ok_and(|value| value.trim() == "1")
}

/// Whether the kernel has IPv6 (a sandbox's IPv6 can only be switched off where it exists).
fn host_has_ipv6() -> bool {
    std::path::Path::new("/proc/sys/net/ipv6").exists()
}

/// The hardening every sandbox container gets (pure, so it is unit-tested).
fn host_config(spec: &ContainerSpec) -> HostConfig {
    HostConfig {
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
        dns: spec.fenced.then(|| vec![FENCED_DNS.to_owned()]),
        sysctls: (spec.fenced && host_has_ipv6()).then(|| {
            HashMap::from([("net.ipv6.conf.all.disable_ipv6".to_owned(), "1".to_owned())])
        }),
        // A bind *mount* (not `binds`): a missing source is an error, never an empty
        // directory the engine creates.
        mounts: (!spec.files.is_empty()).then(|| {
            spec.files
                .iter()
                .map(|f| Mount {
                    target: Some(f.container_path.clone()),
                    source: Some(f.host_path.display().to_string()),
                    typ: Some(MountType::BIND),
                    read_only: Some(true),
                    ..Default::default()
                })
                .collect()
        }),
        privileged: Some(false),
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".into()),
            config: Some(HashMap::from([
                ("max-size".to_owned(), LOG_MAX_SIZE.to_owned()),
                ("max-file".to_owned(), "1".to_owned()),
            ])),
        }),
        ..Default::default()
    }
}

#[async_trait]
impl SandboxBackend for DockerBackend {
    async fn ping(&self) -> Result<(), SandboxError> {
        self.docker
            .ping()
            .await
            .map(|_| ())
            .map_err(|e| docker_err("ping the Docker engine", e))
    }

    async fn prepare_network(
        &self,
        network: &str,
        subnet: Option<&Cidr>,
        blocked: &[Cidr],
    ) -> Result<(), SandboxError> {
        let subnets = self.ensure_network(network, subnet).await?;
        MetadataBlock::new(blocked.to_vec())
            .ensure(network, &subnets)
            .await
    }

    async fn network_gateway(&self, network: &str) -> Result<Option<IpAddr>, SandboxError> {
        if matches!(network, "host" | "none") {
            return Ok(None);
        }
        let configs = self.network_ipam(network).await?.unwrap_or_default();
        // Docker 20.10 leaves `Gateway` out when the network was made with a subnet and no
        // gateway; it is then the subnet's first host address.
        Ok(configs
            .iter()
            .filter_map(|config| match config.gateway.as_deref() {
                Some(gateway) => gateway.parse::<IpAddr>().ok(),
                None => config
                    .subnet
                    .as_deref()
                    .and_then(|subnet| Cidr::parse(subnet).ok())
                    .and_then(|subnet| subnet.first_ipv4_host())
                    .map(IpAddr::V4),
            })
            .find(IpAddr::is_ipv4))
    }

    async fn route_credentials(&self, network: &str, to: SocketAddr) -> Result<(), SandboxError> {
        let subnets = self.existing_subnets(network).await?;
        credentials_route::ensure(&subnets, to)
            .await
            .map_err(|reason| SandboxError::CredentialsEndpoint {
                network: network.to_owned(),
                reason,
            })
    }

    async fn fence_egress(&self, network: &str, fence: &Fence) -> Result<(), SandboxError> {
        let refused = |reason: String| SandboxError::Egress {
            network: network.to_owned(),
            reason,
        };
        let subnets = self.existing_subnets(network).await?;
        let inspected = self
            .docker
            .inspect_network(
                network,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
            .map_err(|e| docker_err(&format!("inspect network {network}"), e))?;
        let driver = inspected.driver.unwrap_or_default();
        if driver != "bridge" {
            return Err(refused(format!(
                "its driver is {driver:?}: only bridge networks pass through the host's firewall, where the fence is kept"
            )));
        }
        let icc_off = inspected
            .options
            .as_ref()
            .and_then(|o| o.get("com.docker.network.bridge.enable_icc"))
            .is_some_and(|v| v == "false");
        if !icc_off && !bridged_traffic_is_filtered() {
            return Err(refused(
                "sandboxes on it could reach each other: traffic between containers on one bridge passes the host's firewall only with br_netfilter (net.bridge.bridge-nf-call-iptables = 1), which this host lacks; recreate the network with --opt com.docker.network.bridge.enable_icc=false, or let the daemon create it".into(),
            ));
        }
        egress_fence::ensure(&subnets, fence).await.map_err(refused)
    }

    async fn keep_firewall(
        &self,
        network: &str,
        blocked: &[Cidr],
        fence: Option<&Fence>,
    ) -> Result<(), SandboxError> {
        if matches!(network, "host" | "none") {
            return Ok(());
        }
        let subnets = self.existing_subnets(network).await?;
        MetadataBlock::new(blocked.to_vec())
            .ensure(network, &subnets)
            .await?;
        if let Some(fence) = fence {
            egress_fence::ensure(&subnets, fence)
                .await
                .map_err(|reason| SandboxError::Egress {
                    network: network.to_owned(),
                    reason,
                })?;
        }
        Ok(())
    }

    async fn inspect_image(&self, image: &str) -> Result<ImageFacts, SandboxError> {
        let inspected = self
            .docker
            .inspect_image(image)
            .await
            .map_err(|e| match e {
                DockerError::DockerResponseServerError {
                    status_code: 404, ..
                } => SandboxError::ImageMissing(image.to_owned()),
                other => docker_err(&format!("inspect image {image}"), other),
            })?;
        let id = inspected.id.ok_or_else(|| SandboxError::Docker {
            action: format!("inspect image {image}"),
            message: "the engine answered without the image's id".into(),
        })?;
        let volumes = inspected
            .config
            .and_then(|config| config.volumes)
            .unwrap_or_default();
        Ok(ImageFacts { id, volumes })
    }

    /// Creates the container, attaches to its output, and starts it (attached before start,
    /// so not a byte is missed; the output task ends when the container's streams close).
    ///
    /// The attach asks for the live streams only: the engine joins them before it answers
    /// the upgrade, and the container starts after that answer. Asking for `logs` as well
    /// made the engine replay the log file *after* the answer — whatever the container had
    /// written by then arrived twice (measured: 109152 bytes read for 60000 written).
    async fn start(&self, spec: &ContainerSpec) -> Result<Started, SandboxError> {
        let (entrypoint, args) = spec
            .command
            .split_first()
            .ok_or_else(|| SandboxError::BadRequest("command must not be empty".into()))?;
        let env = spec
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", v.expose()))
            .collect();
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
            // Interactive: stdin stays open while we are attached and closes when we let go,
            // so the program sees end of file when its session ends.
            open_stdin: Some(spec.interactive),
            stdin_once: Some(spec.interactive),
            host_config: Some(host_config(spec)),
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
            .stdin(spec.interactive)
            .stdout(true)
            .stderr(true)
            .stream(true)
            .logs(false)
            .build();
        let attached = match self
            .docker
            .attach_container(&created.id, Some(attach))
            .await
        {
            Ok(attached) => attached,
            Err(e) => {
                let _ = self.remove(&created.id).await;
                return Err(docker_err(
                    &format!("attach to sandbox container {}", created.id),
                    e,
                ));
            }
        };
        let (live, stdio) = if spec.interactive {
            let (ours, theirs) = tokio::io::duplex(LIVE_STDOUT_BUFFER);
            let stdio = SandboxStdio {
                input: Box::pin(closing_on_drop(attached.input)),
                output: ours,
            };
            (Some(theirs), Some(stdio))
        } else {
            (None, None)
        };
        let output = tokio::spawn(collect(attached.output, self.output_cap, live));
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
            return Err(docker_err(
                &format!("start sandbox container {}", created.id),
                e,
            ));
        }
        let (address, ended_at_once) = match spec.limits.network.as_str() {
            "host" | "none" => (None, false),
            network => self.container_address(&created.id, network).await,
        };
        Ok(Started {
            container: created.id,
            output,
            address,
            ended_at_once,
            stdio,
        })
    }

    async fn wait(&self, id: &str, deadline: Instant) -> Result<Ended, SandboxError> {
        let options = WaitContainerOptionsBuilder::new()
            .condition("not-running")
            .build();
        let mut stream = self.docker.wait_container(id, Some(options));
        let left = deadline.saturating_duration_since(Instant::now());
        let exited = |exit_code| Ended {
            exit_code,
            timed_out: false,
        };
        match tokio::time::timeout(left, stream.next()).await {
            Ok(Some(Ok(answer))) => Ok(exited(answer.status_code)),
            // bollard reports a non-zero exit as an error carrying the code.
            Ok(Some(Err(DockerError::DockerContainerWaitError { code, .. }))) => Ok(exited(code)),
            Ok(Some(Err(e))) => Err(docker_err(&format!("wait for sandbox container {id}"), e)),
            Ok(None) => Ok(exited(self.exit_code(id).await?)),
            Err(_deadline) => {
                self.stop(id).await?;
                Ok(Ended {
                    exit_code: self.exit_code(id).await?,
                    timed_out: true,
                })
            }
        }
    }

    async fn stop(&self, id: &str) -> Result<(), SandboxError> {
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
            Err(e) => Err(docker_err(&format!("stop sandbox container {id}"), e)),
        }
    }

    async fn remove(&self, id: &str) -> Result<(), SandboxError> {
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
            Err(e) => Err(docker_err(&format!("remove sandbox container {id}"), e)),
        }
    }

    async fn exec(
        &self,
        container: &str,
        command: &[String],
        deadline: Instant,
    ) -> Result<ExecOutcome, SandboxError> {
        let options = CreateExecOptions {
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(command.to_vec()),
            user: Some(SANDBOX_USER.to_owned()),
            working_dir: Some("/tmp".to_owned()),
            ..Default::default()
        };
        let created = self
            .docker
            .create_exec(container, options)
            .await
            .map_err(|e| {
                docker_err(
                    &format!("run a command in sandbox container {container}"),
                    e,
                )
            })?;
        let started = self
            .docker
            .start_exec(&created.id, None::<StartExecOptions>)
            .await
            .map_err(|e| {
                docker_err(
                    &format!("run a command in sandbox container {container}"),
                    e,
                )
            })?;
        let StartExecResults::Attached { output, .. } = started else {
            return Err(SandboxError::Internal(
                "the engine ran the command detached although its output was asked for".into(),
            ));
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let collected = tokio::time::timeout(left, collect(output, self.output_cap, None)).await;
        let Ok(collected) = collected else {
            return Ok(ExecOutcome {
                exit_code: None,
                stdout: Captured::default(),
                stderr: Captured::default(),
                timed_out: true,
            });
        };
        let (stdout, stderr) = collected?;
        let inspected = self
            .docker
            .inspect_exec(&created.id)
            .await
            .map_err(|e| docker_err("read the command's exit code", e))?;
        Ok(ExecOutcome {
            exit_code: inspected.exit_code,
            stdout,
            stderr,
            timed_out: false,
        })
    }

    async fn managed_containers(&self) -> Result<Vec<ManagedContainer>, SandboxError> {
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
                Some(ManagedContainer {
                    container: c.id?,
                    sandbox,
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bytesize::ByteSize;

    use super::*;
    use crate::sandbox::Limits;

    #[test]
    fn every_container_is_hardened() {
        let spec = ContainerSpec {
            sandbox_id: "0123456789ab".into(),
            integration: "prod".into(),
            image: "sha256:abc".into(),
            command: vec!["autoheal".into()],
            env: BTreeMap::new(),
            files: Vec::new(),
            fenced: false,
            interactive: false,
            limits: Limits {
                memory: ByteSize::mib(512),
                cpus: 0.5,
                pids: 64,
                network: "autoheal-sandbox".into(),
            },
        };
        let config = host_config(&spec);
        assert_eq!(config.readonly_rootfs, Some(true));
        assert_eq!(config.cap_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(
            config.security_opt,
            Some(vec!["no-new-privileges:true".to_owned()])
        );
        assert_eq!(config.privileged, Some(false));
        assert_eq!(config.init, Some(true));
        assert_eq!(
            config.memory, config.memory_swap,
            "no swap beyond the limit"
        );
        assert_eq!(config.nano_cpus, Some(500_000_000));
        assert_eq!(config.pids_limit, Some(64));
        assert!(
            config.binds.is_none() && config.mounts.is_none(),
            "no mounts"
        );
        assert_eq!(config.network_mode.as_deref(), Some("autoheal-sandbox"));
    }
}
