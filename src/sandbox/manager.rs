//! The sandbox manager: admits a request, turns it into a running container with
//! credentials that outlive it, watches it to its end, and keeps what became of it.
//!
//! The rules it enforces, whatever the backend:
//! - **admission**: at most `sandbox.max_running` sandboxes start or run at once (beyond it:
//!   [`SandboxError::AtCapacity`], nothing started); only images of `sandbox.images`, and
//!   none that declares a `VOLUME`;
//! - **least privilege**: where the integration assumes a role, each sandbox gets its own
//!   STS session — named after it, tagged with it, narrowed to the tools' actions (or the
//!   `capabilities` it asked for), as long as it lives;
//! - **lifetime**: a sandbox's deadline never falls after its credentials' expiry. The
//!   moment `t0` is taken before credentials are asked for; they must stay valid for the
//!   timeout plus [`START_MARGIN`] from `t0`, and the deadline is `t0 + timeout` — so the
//!   deadline the answer shows is the one enforced, however long network set-up and the
//!   start take. When the source cannot give that much, the deadline is shortened and the
//!   answer says so. With `credentials = "endpoint"` the credentials are renewed ahead of
//!   expiry instead (`endpoint_delivery.rs`), so the deadline is never shortened for them,
//!   and the sandbox's token is revoked the moment it ends;
//! - **no orphan**: a start runs as its own task (a client hanging up cannot cancel it
//!   halfway), shutdown waits for starts in flight before stopping everything, and a
//!   periodic reconcile removes containers the daemon lost track of (the engine went away
//!   while they ran).

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::SandboxError;
use super::audit::{self, AuditError, AuditLine, AuditLog};
use super::backend::{OutputTask, SandboxBackend, SandboxStdio, Started};
use super::credentials_endpoint::{CredentialsEndpoint, RENEW_AHEAD, Registration, Renew};
use super::credentials_server::CredentialsServer;
use super::egress_fence::Fence;
use super::egress_lease::{self, EgressLease};
use super::endpoint_delivery::{self, EndpointGrant, RenewOwnSession, RenewShared};
use super::info::{EndedBy, SandboxInfo, SandboxKind, SandboxRequest, SandboxState};
use super::registry::{MAX_EXECS_PER_SANDBOX, Record, Registry, Slot};
use super::spec::{ContainerSpec, Limits, rfc3339};
use crate::config::{
    Config, CredentialsDelivery, Egress, IntegrationConfig, SandboxConfig, Secret,
};
use crate::credentials::{CredentialBroker, CredentialError, SessionRequest};
use crate::egress::{Allowlist, EgressProxy};
use crate::lifecycle::LiveConfig;
use crate::tools::Capability;

/// Time to set up the network, create and start a container: credentials must stay valid
/// this much longer than the sandbox's timeout.
pub const START_MARGIN: Duration = Duration::from_secs(30);
/// A sandbox shorter than this is not worth starting on shortened credentials.
const MIN_USEFUL_LIFETIME: Duration = Duration::from_secs(30);
/// Per-stream output kept for the answer.
pub const DEFAULT_OUTPUT_CAP: usize = 1024 * 1024;
/// How long after the exit the output streams may take to close.
const OUTPUT_DRAIN: Duration = Duration::from_secs(10);
/// What a 429 tells the caller to wait: a tool call's sandbox ends in about a second.
pub const RETRY_AFTER: Duration = Duration::from_secs(2);
/// Pause between tries to reach the engine about a running sandbox it stopped answering for.
const WAIT_RETRY: Duration = Duration::from_secs(1);
/// How long shutdown waits for stopped sandboxes to be confirmed gone: a stop takes about
/// 2 s (SIGTERM, then SIGKILL); longer means the engine is not answering.
const STOP_CONFIRM_WAIT: Duration = Duration::from_secs(15);
/// How often the engine is checked; after it comes back, lost containers are reaped.
pub const HEALTH_CHECK_EVERY: Duration = Duration::from_secs(5);

/// Starts, watches, lists and stops sandboxes.
#[derive(Debug)]
pub struct SandboxManager {
    backend: Arc<dyn SandboxBackend>,
    live: Arc<LiveConfig>,
    registry: Registry,
    /// Sandbox ids between "slot taken" and "record inserted": their containers may exist
    /// although no record does yet, so reconcile must leave them alone.
    starting: Mutex<HashSet<String>>,
    draining: AtomicBool,
    /// Held shared by every start in flight; shutdown takes it exclusively to wait for them.
    starts_in_flight: tokio::sync::RwLock<()>,
    /// Where starts and ends are recorded (the daemon always has one; tests may not).
    audit: Option<Arc<AuditLog>>,
    /// Serves credentials to sandboxes that take them from the endpoint.
    credentials_server: Arc<CredentialsServer>,
    /// The one way out of bridge sandboxes (`sandbox.egress = "aws"`).
    egress: Arc<EgressProxy>,
    /// Networks sandboxes were started on, and the fence of those fenced: their firewall
    /// rules are kept by the health check.
    networks: Mutex<std::collections::HashMap<String, Option<Fence>>>,
}

impl SandboxManager {
    /// A manager that takes its integrations, sandbox settings and broker from `live`
    /// each time it starts a sandbox (so a reload applies to the next one).
    pub fn new(backend: Arc<dyn SandboxBackend>, live: Arc<LiveConfig>) -> Self {
        Self {
            backend,
            registry: Registry::default(),
            starting: Mutex::new(HashSet::new()),
            draining: AtomicBool::new(false),
            starts_in_flight: tokio::sync::RwLock::new(()),
            audit: None,
            credentials_server: CredentialsServer::new(Arc::new(CredentialsEndpoint::default())),
            egress: EgressProxy::new(
                live.current().config.sandbox.blocked_addresses.clone(),
                live.current().config.sandbox.upstream_proxy.clone(),
            ),
            networks: Mutex::new(std::collections::HashMap::new()),
            live,
        }
    }

    /// The egress proxy (its totals for `/metrics`).
    pub fn egress(&self) -> &Arc<EgressProxy> {
        &self.egress
    }

    /// The credentials endpoint's tokens (one per running sandbox that uses it).
    pub fn credentials_endpoint(&self) -> &Arc<CredentialsEndpoint> {
        self.credentials_server.endpoint()
    }

    /// Records every sandbox's start and end in `audit`; a start that cannot be recorded is
    /// refused.
    pub fn with_audit(mut self, audit: Arc<AuditLog>) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Takes up what the audit log says a previous daemon ran: starts without an end get
    /// their end (they were interrupted; `containers_removed` says whether the start-up
    /// reap removed their containers), and the newest `sandbox.history` finished ones are
    /// listed again (without output). Called after [`Self::reap_orphans`].
    pub fn restore_from_audit(&self, containers_removed: bool) -> Result<(), AuditError> {
        let Some(audit) = &self.audit else {
            return Ok(());
        };
        let history = self.live.current().config.sandbox.history;
        let (mut finished, unfinished) = audit::replay(audit.read_all(), history);
        for start in &unfinished {
            let end = audit::interrupted(start, containers_removed);
            audit.record(&end)?;
            tracing::warn!(sandbox = %start.id, integration = %start.integration, "a sandbox was interrupted by the previous daemon's end; recorded as stopped");
            finished.push_back(audit::info_of(Some(start), &end));
        }
        let skip = finished.len().saturating_sub(history);
        for info in finished.into_iter().skip(skip) {
            let id = info.id.clone();
            let record = Arc::new(Record::new(info.clone(), String::new()));
            self.registry.insert(id.clone(), record.clone());
            self.registry.finish(&id, &record, info, history);
        }
        Ok(())
    }

    pub fn backend(&self) -> &Arc<dyn SandboxBackend> {
        &self.backend
    }

    /// Starts a sandbox; answers as soon as its container runs. The start runs as its own
    /// task, so a caller that goes away cannot leave a container half-started.
    pub async fn create(
        self: &Arc<Self>,
        request: SandboxRequest,
    ) -> Result<SandboxInfo, SandboxError> {
        Ok(self.start_in_own_task(request, false).await?.0)
    }

    /// Starts an interactive sandbox (an MCP session's: `autoheal mcp` on stdio) and hands
    /// over its live stdin and stdout. It ends when its program does — closing `input` ends
    /// `autoheal mcp` — at its deadline, or by [`Self::end`].
    pub async fn open_session(
        self: &Arc<Self>,
        request: SandboxRequest,
    ) -> Result<(SandboxInfo, SandboxStdio), SandboxError> {
        let (info, _, stdio) = self.start_in_own_task(request, true).await?;
        match stdio {
            Some(stdio) => Ok((info, stdio)),
            None => {
                let _ = self.end(&info.id, EndedBy::Failed).await;
                Err(SandboxError::Internal(
                    "the sandbox backend gave no stdio for an interactive sandbox".into(),
                ))
            }
        }
    }

    /// Starts a sandbox and waits for its end; answers its final record (with output). Waits
    /// on the record itself, so `sandbox.history` cannot forget it before the caller hears.
    pub async fn run_to_end(
        self: &Arc<Self>,
        request: SandboxRequest,
    ) -> Result<SandboxInfo, SandboxError> {
        let (_, record, _) = self.start_in_own_task(request, false).await?;
        Ok((*record.ended().await).clone())
    }

    async fn start_in_own_task(
        self: &Arc<Self>,
        request: SandboxRequest,
        interactive: bool,
    ) -> Result<StartedSandbox, SandboxError> {
        let manager = self.clone();
        tokio::spawn(async move { manager.start(request, interactive).await })
            .await
            .map_err(|join| SandboxError::Internal(format!("the start task failed: {join}")))?
    }

    async fn start(
        self: Arc<Self>,
        request: SandboxRequest,
        interactive: bool,
    ) -> Result<StartedSandbox, SandboxError> {
        // Checked before queueing for the lock too: shutdown holds it while it drains.
        if self.draining.load(Ordering::SeqCst) {
            return Err(SandboxError::ShuttingDown);
        }
        let _in_flight = self.starts_in_flight.read().await;
        if self.draining.load(Ordering::SeqCst) {
            return Err(SandboxError::ShuttingDown);
        }
        let generation = self.live.current();
        let sandbox = &generation.config.sandbox;
        let integration = integration(&generation.config, &request.integration)?.clone();
        request.validate(sandbox.max_lifetime)?;
        let image = admitted_image(sandbox, request.image.as_deref())?;
        let slot = self
            .registry
            .reserve(sandbox.max_running)
            .ok_or(SandboxError::AtCapacity {
                max_running: sandbox.max_running,
                retry_after: RETRY_AFTER,
            })?;

        let id = new_id();
        let delivery = request.credentials.unwrap_or(sandbox.credentials);
        let access = Access::plan(&integration, &id, request.capabilities.as_deref())?;
        let facts = self.backend.inspect_image(&image).await?;
        if !facts.volumes.is_empty() {
            return Err(SandboxError::ImageDeclaresVolumes {
                image,
                volumes: facts.volumes,
            });
        }
        self.backend
            .prepare_network(
                &sandbox.network,
                sandbox.subnet.as_ref(),
                &sandbox.blocked_addresses,
            )
            .await?;
        self.networks()
            .entry(sandbox.network.clone())
            .or_insert(None);
        let endpoint_uri = match delivery {
            CredentialsDelivery::Endpoint => Some(
                endpoint_delivery::offer(
                    &self.credentials_server,
                    self.backend.as_ref(),
                    &sandbox.network,
                )
                .await?,
            ),
            CredentialsDelivery::Env => None,
        };
        let fenced =
            sandbox.egress == Egress::Aws && !matches!(sandbox.network.as_str(), "host" | "none");
        let proxy_url = if fenced {
            let (url, fence) = egress_lease::offer(
                &self.egress,
                &self.credentials_server,
                self.backend.as_ref(),
                &sandbox.network,
            )
            .await?;
            self.networks().insert(sandbox.network.clone(), Some(fence));
            Some(url)
        } else {
            None
        };
        // Credentials last, once nothing else can refuse the start: a sandbox's own session
        // is never made for a sandbox that does not run.
        let t0 = (Instant::now(), SystemTime::now());
        let asked = request.timeout.unwrap_or(sandbox.max_lifetime);
        let renewable = delivery == CredentialsDelivery::Endpoint;
        let (credentials, timeout, deadline_note) = match &access.session {
            Some(session) => {
                let broker = &generation.broker;
                own_session(broker, &integration, session, asked, t0.1, renewable).await?
            }
            // Renewed by the endpoint: valid for the start is enough.
            None if renewable => {
                let credentials = generation
                    .broker
                    .credentials_valid_for(&integration.name, START_MARGIN)
                    .await?;
                (credentials, asked, None)
            }
            None => credentials_for(&generation.broker, &integration, asked).await?,
        };

        let expires = credentials.expiry();
        let needed_until = t0.1 + timeout;
        let grant = match &endpoint_uri {
            Some(_) => {
                let renew: Box<dyn Renew> = match &access.session {
                    Some(session) => Box::new(RenewOwnSession {
                        broker: generation.broker.clone(),
                        integration: integration.name.clone(),
                        session: session.clone(),
                        needed_until,
                        margin: START_MARGIN,
                    }),
                    None => Box::new(RenewShared {
                        broker: generation.broker.clone(),
                        integration: integration.name.clone(),
                        wanted: RENEW_AHEAD,
                        at_least: START_MARGIN,
                    }),
                };
                Some(EndpointGrant::issue(
                    self.credentials_server.endpoint(),
                    &generation.config.server.state_dir,
                    Registration {
                        sandbox_id: id.clone(),
                        peer: None,
                        credentials: credentials.clone(),
                        needed_until,
                        renew,
                    },
                )?)
            }
            None => None,
        };
        let delivered = match &endpoint_uri {
            Some(uri) => Delivered::Endpoint { uri },
            None => Delivered::Keys(&credentials),
        };
        let spec = ContainerSpec {
            sandbox_id: id.clone(),
            integration: integration.name.clone(),
            image: facts.id,
            command: request.command.clone(),
            env: environment(&request, &integration, delivered, proxy_url.as_deref()),
            files: grant.iter().map(|g| g.mount.clone()).collect(),
            fenced,
            interactive,
            limits: Limits {
                memory: sandbox.memory,
                cpus: sandbox.cpus,
                pids: sandbox.pids_limit,
                network: sandbox.network.clone(),
            },
        };
        let info = SandboxInfo {
            id: id.clone(),
            integration: integration.name.clone(),
            image,
            command: request.command,
            state: SandboxState::Running,
            kind: if interactive {
                SandboxKind::McpSession
            } else {
                SandboxKind::Command
            },
            ended_by: None,
            created_at: rfc3339(t0.1),
            deadline: rfc3339(t0.1 + timeout),
            deadline_note,
            credentials_expire_at: expires.map(rfc3339).unwrap_or_else(|| "never".into()),
            session: integration.session,
            session_name: access.session.as_ref().map(|s| s.session_name()),
            capabilities: access.capabilities,
            credentials: delivery,
            egress_refused: Vec::new(),
            exit_code: None,
            stdout: None,
            stderr: None,
            stdout_truncated: false,
            stderr_truncated: false,
            output_dropped: false,
            duration_ms: None,
            timed_out: false,
            error: None,
        };
        if let Some(audit) = &self.audit {
            audit.record(&AuditLine::start(&info))?;
        }
        self.starting().insert(id.clone());
        let started = match self.backend.start(&spec).await {
            Ok(started) => {
                let allowlist = fenced.then(|| {
                    Allowlist::new(
                        integration.region.as_str(),
                        integration.endpoint_url.as_deref(),
                        &sandbox.egress_allow,
                    )
                });
                self.tie_to_address(&id, &sandbox.network, grant.is_some(), allowlist, started)
                    .await
            }
            Err(err) => Err(err),
        };
        let (mut started, lease) = match started {
            Ok(pair) => pair,
            Err(err) => {
                self.starting().remove(&id);
                self.audit_end(&SandboxInfo {
                    state: SandboxState::Failed,
                    error: Some(err.to_string()),
                    ..info
                });
                return Err(err);
            }
        };
        let stdio = started.stdio.take();
        let record = Arc::new(
            Record::new(info.clone(), started.container)
                .with_egress(lease.as_ref().map(|l| l.egress.clone())),
        );
        self.registry.insert(id.clone(), record.clone());
        self.starting().remove(&id);
        tracing::info!(
            sandbox = %id,
            integration = %integration.name,
            session = info.session_name.as_deref().unwrap_or("shared"),
            timeout_s = timeout.as_secs(),
            "sandbox started"
        );
        let history = sandbox.history;
        let manager = self.clone();
        let deadline = t0.0 + timeout;
        let watched = record.clone();
        tokio::spawn(async move {
            manager
                .watch(
                    id,
                    watched,
                    started.output,
                    slot,
                    deadline,
                    history,
                    (grant, lease),
                )
                .await
        });
        Ok((info, record, stdio))
    }

    /// On a bridge network, ties what a sandbox holds to its address: its endpoint token
    /// (no other address may use it) and its admission to the egress proxy (with
    /// `allowlist`). A sandbox whose address cannot be found is removed, never left with a
    /// token any address could use or without its way out.
    async fn tie_to_address(
        &self,
        id: &str,
        network: &str,
        uses_endpoint: bool,
        allowlist: Option<Allowlist>,
        started: Started,
    ) -> Result<(Started, Option<EgressLease>), SandboxError> {
        if (!uses_endpoint && allowlist.is_none()) || matches!(network, "host" | "none") {
            return Ok((started, None));
        }
        if let Some(address) = started.address {
            if uses_endpoint {
                self.credentials_endpoint().pin_peer(id, address);
            }
            let lease = allowlist.map(|allowlist| {
                let egress = self.egress.admit(id, address, allowlist);
                EgressLease::new(self.egress.clone(), address, egress)
            });
            return Ok((started, lease));
        }
        if started.ended_at_once {
            // It ran and ended before it could be tied to anything: nothing to admit.
            return Ok((started, None));
        }
        started.output.abort();
        if let Err(err) = self.backend.remove(&started.container).await {
            tracing::warn!(sandbox = %id, error = %err, "could not remove a sandbox whose address was not found; the reconcile removes it");
        }
        Err(SandboxError::Internal(format!(
            "the address of sandbox {id} on network {network:?} could not be found, so its \
             credentials token and egress could not be tied to it; the sandbox was removed"
        )))
    }

    /// Records a sandbox's end; a failure is logged (the sandbox has ended either way).
    fn audit_end(&self, info: &SandboxInfo) {
        if let Some(audit) = &self.audit
            && let Err(err) = audit.record(&AuditLine::end(info))
        {
            tracing::error!(sandbox = %info.id, error = %err, "could not record a sandbox's end");
        }
    }

    fn starting(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.starting.lock().expect("starting set lock")
    }

    /// Follows one sandbox to its end, then records the outcome and removes the container.
    /// Its endpoint token (`grant`) is revoked the moment it ends; the slot is given back
    /// only once the container is gone.
    #[allow(clippy::too_many_arguments)]
    async fn watch(
        &self,
        id: String,
        record: Arc<Record>,
        output: OutputTask,
        slot: Slot,
        deadline: Instant,
        history: usize,
        leases: (Option<EndpointGrant>, Option<EgressLease>),
    ) {
        let started = Instant::now();
        let outcome = self.wait_through_outages(&record.container, deadline).await;
        // Ended: its token is refused and nothing more goes out for it, from now on.
        drop(leases);
        let output = match tokio::time::timeout(OUTPUT_DRAIN, output).await {
            Ok(Ok(collected)) => collected,
            Ok(Err(join)) => Err(SandboxError::Internal(format!(
                "collecting the sandbox's output failed: {join}"
            ))),
            Err(_) => Err(SandboxError::Internal(format!(
                "the output did not end within {}s of the exit",
                OUTPUT_DRAIN.as_secs()
            ))),
        };
        let removed = self.backend.remove(&record.container).await;
        let mut info = record.current();
        info.duration_ms = Some(started.elapsed().as_millis() as u64);
        match outcome {
            Ok(ended) => {
                info.exit_code = Some(ended.exit_code);
                info.timed_out = ended.timed_out;
                let requested = record.end_requested();
                (info.state, info.ended_by) = match requested {
                    _ if ended.timed_out => (SandboxState::TimedOut, Some(EndedBy::Deadline)),
                    Some(reason) => (SandboxState::Stopped, Some(reason)),
                    None => (SandboxState::Exited, Some(EndedBy::Exit)),
                };
            }
            Err(err) => {
                info.state = SandboxState::Failed;
                info.ended_by = Some(EndedBy::Failed);
                info.error = Some(err.to_string());
            }
        }
        match output {
            Ok((stdout, stderr)) => {
                info.stdout = Some(stdout.text.into());
                info.stdout_truncated = stdout.truncated;
                info.stderr = Some(stderr.text.into());
                info.stderr_truncated = stderr.truncated;
            }
            Err(err) => info.error = Some(err.to_string()),
        }
        if let Err(err) = removed {
            tracing::warn!(sandbox = %id, error = %err, "could not remove a finished sandbox; it is reaped once the engine answers");
        }
        tracing::info!(sandbox = %id, state = ?info.state, exit_code = ?info.exit_code, "sandbox ended");
        self.audit_end(&info);
        self.registry.finish(&id, &record, info, history);
        drop(slot);
    }

    /// Waits for the container's end; when the engine stops answering, keeps trying until
    /// the deadline (the engine may come back), then gives up with the last error.
    async fn wait_through_outages(
        &self,
        container: &str,
        deadline: Instant,
    ) -> Result<super::backend::Ended, SandboxError> {
        loop {
            match self.backend.wait(container, deadline).await {
                Ok(ended) => return Ok(ended),
                Err(err) if Instant::now() >= deadline => {
                    // Stopping may work again by now; if not, reconcile reaps it later.
                    let _ = self.backend.stop(container).await;
                    return Err(err);
                }
                Err(err) => {
                    tracing::warn!(%container, error = %err, "lost contact with a running sandbox; retrying");
                    tokio::time::sleep(WAIT_RETRY).await;
                }
            }
        }
    }

    /// Waits until the sandbox ends; answers its final state (with its output).
    pub async fn wait(&self, id: &str) -> Result<SandboxInfo, SandboxError> {
        let record = self.record(id)?;
        Ok((*record.ended().await).clone())
    }

    fn record(&self, id: &str) -> Result<Arc<Record>, SandboxError> {
        self.registry
            .get(id)
            .ok_or_else(|| SandboxError::NotFound(id.to_owned()))
    }

    /// The whole record of one sandbox, output included while it is kept.
    pub fn get(&self, id: &str) -> Result<SandboxInfo, SandboxError> {
        Ok(self.record(id)?.current())
    }

    /// Every sandbox known, running and finished, without output.
    pub fn list(&self) -> Vec<SandboxInfo> {
        let mut all: Vec<SandboxInfo> = self
            .registry
            .all()
            .iter()
            .map(|r| r.snapshot().summary())
            .collect();
        all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        all
    }

    /// Stops a running sandbox (`DELETE /v1/sandboxes/{id}`); answers once it has ended.
    pub async fn stop(&self, id: &str) -> Result<SandboxInfo, SandboxError> {
        self.end(id, EndedBy::Stop).await
    }

    /// Ends a sandbox for `reason` (kept unless another reason came first); answers once it
    /// has ended.
    pub async fn end(&self, id: &str, reason: EndedBy) -> Result<SandboxInfo, SandboxError> {
        let record = self.record(id)?;
        if !record.finished() {
            record.request_end(reason);
            self.backend.stop(&record.container).await?;
        }
        Ok((*record.ended().await).clone())
    }

    /// Records why sandbox `id` is about to end (kept unless another reason came first),
    /// for whoever ends it next; ends nothing itself.
    pub fn note_end_reason(&self, id: &str, reason: EndedBy) {
        if let Ok(record) = self.record(id) {
            record.request_end(reason);
        }
    }

    /// Runs `command` in running sandbox `id` for at most `timeout`, and never past the
    /// sandbox's deadline.
    pub async fn exec(
        &self,
        id: &str,
        command: &[String],
        timeout: Option<Duration>,
    ) -> Result<ExecAnswer, SandboxError> {
        let record = self.record(id)?;
        let not_running = |info: &SandboxInfo| SandboxError::NotRunning {
            id: id.to_owned(),
            state: serde_json::to_value(info.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
        };
        let info = record.current();
        if info.finished() {
            return Err(not_running(&info));
        }
        let permit =
            record
                .execs
                .clone()
                .try_acquire_owned()
                .map_err(|_| SandboxError::ExecBusy {
                    id: id.to_owned(),
                    max: MAX_EXECS_PER_SANDBOX,
                })?;
        let deadline_left = humantime::parse_rfc3339(&info.deadline)
            .map(|at| at.duration_since(SystemTime::now()).unwrap_or_default())
            .unwrap_or_default();
        let wait = timeout.map_or(deadline_left, |asked| asked.min(deadline_left));
        let began = Instant::now();
        let outcome = self
            .backend
            .exec(&record.container, command, began + wait)
            .await;
        drop(permit);
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(err) if record.finished() => {
                tracing::debug!(sandbox = %id, error = %err, "exec in a sandbox that ended meanwhile");
                return Err(not_running(&record.current()));
            }
            Err(err) => return Err(err),
        };
        Ok(ExecAnswer {
            exit_code: outcome.exit_code,
            stdout: outcome.stdout.text,
            stderr: outcome.stderr.text,
            stdout_truncated: outcome.stdout.truncated,
            stderr_truncated: outcome.stderr.truncated,
            duration_ms: began.elapsed().as_millis() as u64,
            timed_out: outcome.timed_out,
        })
    }

    /// Sandboxes starting or running now.
    pub fn running(&self) -> usize {
        self.registry.slots_taken()
    }

    /// Records kept (running and finished), for tests and metrics.
    pub fn known(&self) -> usize {
        self.registry.len()
    }

    /// Stops accepting; waits for starts in flight (each is bounded by its own timeouts);
    /// lets running sandboxes finish for up to `grace`, then stops the rest and waits until
    /// every container is gone.
    pub async fn shutdown(&self, grace: Duration) {
        self.draining.store(true, Ordering::SeqCst);
        let began = Instant::now();
        let _no_more_starts = self.starts_in_flight.write().await;
        let pending = self.registry.all();
        // An MCP session's sandbox never ends on its own, and its client must open a new
        // session after the restart anyway: it is stopped now, not after the grace.
        for record in &pending {
            if !record.finished() && record.snapshot().kind == SandboxKind::McpSession {
                record.request_end(EndedBy::Shutdown);
                let _ = self.backend.stop(&record.container).await;
            }
        }
        let all_done = async {
            for record in &pending {
                record.ended().await;
            }
        };
        let left = grace.saturating_sub(began.elapsed());
        if tokio::time::timeout(left, all_done).await.is_err() {
            for record in &pending {
                if !record.finished() {
                    record.request_end(EndedBy::Shutdown);
                    let _ = self.backend.stop(&record.container).await;
                }
            }
            let stopped = async {
                for record in &pending {
                    record.ended().await;
                }
            };
            // With the engine gone, a stop cannot be confirmed: do not hang the shutdown on
            // it (the next start reaps whatever is left).
            if tokio::time::timeout(STOP_CONFIRM_WAIT, stopped)
                .await
                .is_err()
            {
                tracing::warn!(
                    "some sandboxes did not confirm their stop; the next start removes them"
                );
            }
        }
    }

    /// Removes every container of ours that no running sandbox of this manager owns: what
    /// a previous daemon left behind (at start-up), or what this one lost track of while
    /// the engine was away. Answers how many were removed.
    pub async fn reap_orphans(&self) -> Result<usize, SandboxError> {
        let containers = self.backend.managed_containers().await?;
        let mut reaped = 0;
        for container in containers {
            let owned = self.starting().contains(&container.sandbox)
                || self
                    .registry
                    .get(&container.sandbox)
                    .is_some_and(|r| !r.finished());
            if owned {
                continue;
            }
            tracing::warn!(container = %container.container, sandbox = %container.sandbox, "removing a sandbox container no running sandbox owns");
            self.backend.remove(&container.container).await?;
            reaped += 1;
        }
        Ok(reaped)
    }

    /// Checks the engine every [`HEALTH_CHECK_EVERY`]; when it answers again after an
    /// outage, reaps what was lost meanwhile; while it answers, keeps the credentials
    /// endpoint's rules in place. Runs until the task is aborted.
    pub async fn run_health_checks(self: Arc<Self>) {
        let mut was_down = false;
        loop {
            tokio::time::sleep(HEALTH_CHECK_EVERY).await;
            match self.backend.ping().await {
                Err(err) => {
                    if !was_down {
                        tracing::warn!(error = %err, "the container engine stopped answering; new sandboxes are refused until it is back");
                    }
                    was_down = true;
                }
                Ok(()) if was_down => {
                    was_down = false;
                    // After a Docker restart: its rules were rewritten, ours may be gone.
                    self.keep_firewall_rules().await;
                    match self.reap_orphans().await {
                        Ok(n) => {
                            tracing::info!(reaped = n, "the container engine answers again")
                        }
                        Err(err) => {
                            was_down = {
                                tracing::warn!(error = %err, "the engine answers but listing failed");
                                true
                            }
                        }
                    }
                }
                Ok(()) => self.keep_firewall_rules().await,
            }
        }
    }

    fn networks(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Option<Fence>>> {
        self.networks.lock().expect("networks lock")
    }

    /// Puts back the IMDS rules, the egress fences and the rules that lead bridge sandboxes
    /// to the credentials endpoint, should a firewall reload or a Docker restart have
    /// dropped them.
    async fn keep_firewall_rules(&self) {
        let networks: Vec<(String, Option<Fence>)> = self
            .networks()
            .iter()
            .map(|(n, f)| (n.clone(), f.clone()))
            .collect();
        let blocked = self.live.current().config.sandbox.blocked_addresses.clone();
        for (network, fence) in networks {
            if let Err(err) = self
                .backend
                .keep_firewall(&network, &blocked, fence.as_ref())
                .await
            {
                tracing::error!(%network, error = %err, "cannot keep the firewall rules of a sandbox network; new sandboxes on it are refused until they are back");
            }
        }
        for (network, to) in self.credentials_server.routes() {
            if let Err(err) = self.backend.route_credentials(&network, to).await {
                tracing::warn!(%network, error = %err, "cannot keep the credentials endpoint's rule; sandboxes on this network cannot renew their credentials until it is back");
            }
        }
    }
}

/// What a command run in a running sandbox did (`POST /v1/sandboxes/{id}/exec`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExecAnswer {
    /// Absent when the timeout (or the sandbox's deadline) came first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    pub stdout: String,
    pub stderr: String,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub duration_ms: u64,
    /// True when the command still ran at its timeout: it is left to the sandbox's end (the
    /// engine has no way to stop one command of a container).
    pub timed_out: bool,
}

/// A started sandbox: what the API shows, its record, and an interactive one's stdio.
type StartedSandbox = (SandboxInfo, Arc<Record>, Option<SandboxStdio>);

/// The image a request may run: its own choice when `sandbox.images` lists it, else the
/// configured one.
fn admitted_image(sandbox: &SandboxConfig, asked: Option<&str>) -> Result<String, SandboxError> {
    match asked {
        None => Ok(sandbox.image.clone()),
        Some(image) if image == sandbox.image || sandbox.images.iter().any(|i| i == image) => {
            Ok(image.to_owned())
        }
        Some(image) => Err(SandboxError::ImageNotAllowed {
            image: image.to_owned(),
            allowed: allowed_images(sandbox),
        }),
    }
}

fn allowed_images(sandbox: &SandboxConfig) -> Vec<String> {
    let mut allowed = vec![sandbox.image.clone()];
    for image in &sandbox.images {
        if !allowed.contains(image) {
            allowed.push(image.clone());
        }
    }
    allowed
}

/// How the credentials reach the container.
enum Delivered<'a> {
    /// The keys themselves, in the environment.
    Keys(&'a aws_credential_types::Credentials),
    /// Where to ask for them (the token is a mounted file).
    Endpoint { uri: &'a str },
}

/// The container's environment: the request's extras, then the contract's variables.
fn environment(
    request: &SandboxRequest,
    integration: &IntegrationConfig,
    delivered: Delivered<'_>,
    proxy_url: Option<&str>,
) -> BTreeMap<String, Secret> {
    let mut env: BTreeMap<String, Secret> = request
        .env
        .iter()
        .map(|(k, v)| (k.clone(), Secret::new(v.clone())))
        .collect();
    let mut set = |key: &str, value: &str| env.insert(key.to_owned(), Secret::new(value));
    match delivered {
        Delivered::Keys(credentials) => {
            set("AWS_ACCESS_KEY_ID", credentials.access_key_id());
            set("AWS_SECRET_ACCESS_KEY", credentials.secret_access_key());
            if let Some(token) = credentials.session_token() {
                set("AWS_SESSION_TOKEN", token);
            }
            if let Some(expiry) = credentials.expiry() {
                set(
                    "AWS_CREDENTIAL_EXPIRATION",
                    &humantime::format_rfc3339_seconds(expiry).to_string(),
                );
            }
        }
        Delivered::Endpoint { uri } => {
            set("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri);
            set(
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                endpoint_delivery::TOKEN_PATH_IN_SANDBOX,
            );
        }
    }
    set("AWS_REGION", integration.region.as_str());
    set("AWS_DEFAULT_REGION", integration.region.as_str());
    set("AUTOHEAL_INTEGRATION", &integration.name);
    if let Some(account) = &integration.account_id {
        set("AUTOHEAL_ACCOUNT_ID", account.as_str());
    }
    if let Some(endpoint) = &integration.endpoint_url {
        match proxy_url {
            Some(_) => set(
                "AWS_ENDPOINT_URL",
                &Allowlist::sandbox_endpoint_url(endpoint),
            ),
            None => set("AWS_ENDPOINT_URL", endpoint),
        };
    }
    if let Some(proxy) = proxy_url {
        for key in ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"] {
            set(key, proxy);
        }
        set("NO_PROXY", egress_lease::NO_PROXY);
        set("no_proxy", egress_lease::NO_PROXY);
    }
    env
}

/// 12 hex digits: short enough to type, random enough never to collide on one host.
fn new_id() -> String {
    format!("{:012x}", fastrand::u64(..) & 0xffff_ffff_ffff)
}

fn integration<'a>(config: &'a Config, name: &str) -> Result<&'a IntegrationConfig, SandboxError> {
    config
        .integration(name)
        .ok_or_else(|| SandboxError::UnknownIntegration {
            name: name.to_owned(),
            known: config
                .integrations
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// What a sandbox may do: its own session (named, tagged, narrowed) or the integration's.
struct Access {
    session: Option<SessionRequest>,
    /// The capabilities its own session is narrowed to (all of them when none were asked).
    capabilities: Option<Vec<Capability>>,
}

impl Access {
    /// The session `integration` gives sandbox `id`; `capabilities` asked of an integration
    /// whose sandboxes share one session are refused with what to change.
    fn plan(
        integration: &IntegrationConfig,
        id: &str,
        capabilities: Option<&[Capability]>,
    ) -> Result<Self, SandboxError> {
        if !integration.per_sandbox_sessions() {
            if capabilities.is_some() {
                return Err(SandboxError::CapabilitiesUnsupported {
                    integration: integration.name.clone(),
                    reason: unscoped_reason(integration),
                });
            }
            return Ok(Self {
                session: None,
                capabilities: None,
            });
        }
        let mut narrowed: Vec<Capability> = match capabilities {
            Some(asked) => asked.to_vec(),
            None => crate::tools::catalogue()
                .iter()
                .map(|t| t.capability)
                .collect(),
        };
        narrowed.sort();
        narrowed.dedup();
        Ok(Self {
            session: Some(SessionRequest {
                sandbox_id: id.to_owned(),
                policy: crate::tools::policy::session_policy(&narrowed),
                lifetime: Duration::ZERO,
            }),
            capabilities: Some(narrowed),
        })
    }
}

/// Why `integration`'s sandboxes cannot be narrowed, and how to change that.
fn unscoped_reason(integration: &IntegrationConfig) -> String {
    if integration.uses_instance_profile_directly() {
        "its sandboxes receive the EC2 instance profile's own credentials (auth = \"instance_role\" \
         without role_arn), which no session policy narrows. To scope sandboxes, create a \
         read-only role (the same account is fine) that the instance role may assume, and set \
         role_arn on the integration: each sandbox then gets its own narrowed session \
         (docs/setup-instance-role.md, the two-role layout)"
            .into()
    } else if integration.auth == crate::config::AuthMethod::Environment {
        "auth = \"environment\" hands sandboxes the host's ambient credentials, which no session \
         policy narrows; use auth = \"instance_role\" with role_arn, or auth = \"oidc\""
            .into()
    } else {
        "it has session = \"shared\": every sandbox receives the integration's one session. \
         Remove that line (per_sandbox is the default where a role is assumed) to give each \
         sandbox its own narrowed session"
            .into()
    }
}

/// A sandbox's own session, valid for its whole life: one STS call. When the role's sessions
/// cannot last that long (role chaining caps them at an hour), the deadline is shortened and
/// the answer says so — unless the credentials are `renewable` (endpoint delivery), which
/// renews them ahead of expiry instead: `(credentials, timeout, note)`.
async fn own_session(
    broker: &CredentialBroker,
    integration: &IntegrationConfig,
    session: &SessionRequest,
    asked: Duration,
    now: SystemTime,
    renewable: bool,
) -> Result<(aws_credential_types::Credentials, Duration, Option<String>), SandboxError> {
    let request = SessionRequest {
        lifetime: asked + START_MARGIN,
        ..session.clone()
    };
    let credentials = broker.sandbox_session(&integration.name, &request).await?;
    let remaining = credentials
        .expiry()
        .map(|at| at.duration_since(now).unwrap_or_default());
    match remaining {
        None => Ok((credentials, asked, None)),
        Some(left) if left >= asked + START_MARGIN => Ok((credentials, asked, None)),
        Some(left) if renewable && left > START_MARGIN => Ok((credentials, asked, None)),
        Some(left) if let Some(shortened) = timeout_within(left) => {
            let why = format!(
                "the sandbox's own session lasts {}s (STS's cap for this role)",
                left.as_secs()
            );
            let note = shortened_note(&why, asked, shortened);
            Ok((credentials, shortened, Some(note)))
        }
        Some(left) => Err(SandboxError::Credentials(CredentialError::ExpiresTooSoon {
            integration: integration.name.clone(),
            remaining: left,
            needed: asked + START_MARGIN,
            last_failure: None,
            advice: "STS granted a session too short for any sandbox; check the role's maximum \
                     session duration"
                .into(),
        })),
    }
}

/// Credentials valid for the whole sandbox, shortening its life when the source cannot
/// give enough: `(credentials, timeout, note)`.
async fn credentials_for(
    broker: &CredentialBroker,
    integration: &IntegrationConfig,
    asked: Duration,
) -> Result<(aws_credential_types::Credentials, Duration, Option<String>), SandboxError> {
    let name = &integration.name;
    match broker
        .credentials_valid_for(name, asked + START_MARGIN)
        .await
    {
        Ok(credentials) => Ok((credentials, asked, None)),
        Err(CredentialError::ExpiresTooSoon { remaining, .. })
            if let Some(shortened) = timeout_within(remaining) =>
        {
            let credentials = broker
                .credentials_valid_for(name, shortened + START_MARGIN)
                .await?;
            let why = format!(
                "the integration's credentials expire in {}s and fresher ones are not available yet",
                remaining.as_secs()
            );
            let note = shortened_note(&why, asked, shortened);
            tracing::warn!(integration = %name, "{note}");
            Ok((credentials, shortened, Some(note)))
        }
        Err(err) => Err(err.into()),
    }
}

/// The longest timeout credentials valid for `remaining` more allow (the start margin and a
/// second of rounding kept back), when it is still worth starting a sandbox for.
fn timeout_within(remaining: Duration) -> Option<Duration> {
    let usable = remaining.checked_sub(START_MARGIN + Duration::from_secs(1))?;
    let usable = Duration::from_secs(usable.as_secs());
    (usable >= MIN_USEFUL_LIFETIME).then_some(usable)
}

/// What the answer says when the deadline was shortened, and why.
fn shortened_note(why: &str, asked: Duration, shortened: Duration) -> String {
    format!(
        "{why}, so the deadline was shortened from {} to {}: a sandbox never outlives its credentials",
        humantime::format_duration(asked),
        humantime::format_duration(shortened)
    )
}

#[cfg(test)]
mod tests;
