//! The sandbox manager: turns a request into a running container with credentials that
//! outlive it, watches it to its end, and keeps what became of it for the API.
//!
//! The lifetime rule: a sandbox's deadline never falls after its credentials' expiry. The
//! manager asks the broker for credentials valid for the timeout plus a start margin; when
//! the source cannot give that much (instance-role credentials close to rotation), it
//! shortens the deadline to what the credentials allow and says so in the answer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::watch;

use super::SandboxError;

type OutputTask =
    tokio::task::JoinHandle<Result<(super::spec::Captured, super::spec::Captured), SandboxError>>;
use super::docker::DockerBackend;
use super::metadata_block::MetadataBlock;
use super::spec::{ContainerSpec, Limits, rfc3339};
use crate::config::{Config, IntegrationConfig, Secret};
use crate::credentials::{CredentialBroker, CredentialError};
use crate::lifecycle::LiveConfig;

/// Time to create and start a container and hand it its credentials.
pub const START_MARGIN: Duration = Duration::from_secs(30);
/// A sandbox shorter than this is not worth starting on shortened credentials.
const MIN_USEFUL_LIFETIME: Duration = Duration::from_secs(30);
/// Per-stream output kept for the answer.
pub const DEFAULT_OUTPUT_CAP: usize = 1024 * 1024;
/// How long after the exit the output streams may take to close.
const OUTPUT_DRAIN: Duration = Duration::from_secs(10);
/// Longest argv accepted.
const MAX_ARGS: usize = 256;

/// What a caller asks for.
#[derive(Debug, Clone)]
pub struct SandboxRequest {
    pub integration: String,
    pub command: Vec<String>,
    pub image: Option<String>,
    pub timeout: Option<Duration>,
    /// Extra environment; `AWS_*` and `AUTOHEAL_*` are reserved.
    pub env: BTreeMap<String, String>,
}

/// Where a sandbox is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxState {
    Running,
    Exited,
    TimedOut,
    Stopped,
    Failed,
}

/// A sandbox as the API shows it. No secret: the environment is not echoed.
#[derive(Debug, Clone, Serialize)]
pub struct SandboxInfo {
    pub id: String,
    pub integration: String,
    pub image: String,
    pub command: Vec<String>,
    pub state: SandboxState,
    pub created_at: String,
    /// When the sandbox is stopped at the latest (RFC 3339).
    pub deadline: String,
    /// Why the deadline is earlier than asked, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline_note: Option<String>,
    /// When the injected credentials expire (always after `deadline`).
    pub credentials_expire_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    pub timed_out: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug)]
struct Record {
    info: Mutex<SandboxInfo>,
    container: String,
    stop_requested: AtomicBool,
    done: watch::Sender<bool>,
}

/// Starts, watches, lists and stops sandboxes.
#[derive(Debug)]
pub struct SandboxManager {
    backend: DockerBackend,
    live: Arc<LiveConfig>,
    records: Mutex<BTreeMap<String, Arc<Record>>>,
    draining: AtomicBool,
}

impl SandboxManager {
    /// A manager that takes its integrations, sandbox settings and broker from `live`
    /// each time it starts a sandbox (so a reload applies to the next one).
    pub fn new(backend: DockerBackend, live: Arc<LiveConfig>) -> Self {
        Self {
            backend,
            live,
            records: Mutex::new(BTreeMap::new()),
            draining: AtomicBool::new(false),
        }
    }

    pub fn backend(&self) -> &DockerBackend {
        &self.backend
    }

    fn records(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<Record>>> {
        self.records.lock().expect("sandbox records lock")
    }

    /// Starts a sandbox; answers as soon as its container runs.
    pub async fn create(
        self: &Arc<Self>,
        request: SandboxRequest,
    ) -> Result<SandboxInfo, SandboxError> {
        if self.draining.load(Ordering::SeqCst) {
            return Err(SandboxError::ShuttingDown);
        }
        let generation = self.live.current();
        let sandbox = &generation.config.sandbox;
        let integration = integration(&generation.config, &request.integration)?.clone();
        validate(&request, sandbox.max_lifetime)?;
        let asked = request.timeout.unwrap_or(sandbox.max_lifetime);
        let (credentials, timeout, deadline_note) =
            credentials_for(&generation.broker, &integration, asked).await?;

        let id = new_id();
        let now = SystemTime::now();
        let expires = credentials.expiry();
        let mut env: BTreeMap<String, Secret> = request
            .env
            .iter()
            .map(|(k, v)| (k.clone(), Secret::new(v.clone())))
            .collect();
        env.insert(
            "AWS_ACCESS_KEY_ID".into(),
            Secret::new(credentials.access_key_id()),
        );
        env.insert(
            "AWS_SECRET_ACCESS_KEY".into(),
            Secret::new(credentials.secret_access_key()),
        );
        if let Some(token) = credentials.session_token() {
            env.insert("AWS_SESSION_TOKEN".into(), Secret::new(token));
        }
        env.insert(
            "AWS_REGION".into(),
            Secret::new(integration.region.as_str()),
        );
        env.insert(
            "AWS_DEFAULT_REGION".into(),
            Secret::new(integration.region.as_str()),
        );
        if let Some(expiry) = expires {
            env.insert(
                "AWS_CREDENTIAL_EXPIRATION".into(),
                Secret::new(humantime::format_rfc3339_seconds(expiry).to_string()),
            );
        }
        env.insert(
            "AUTOHEAL_INTEGRATION".into(),
            Secret::new(integration.name.clone()),
        );
        if let Some(account) = &integration.account_id {
            env.insert("AUTOHEAL_ACCOUNT_ID".into(), Secret::new(account.as_str()));
        }
        if let Some(endpoint) = &integration.endpoint_url {
            env.insert("AWS_ENDPOINT_URL".into(), Secret::new(endpoint.clone()));
        }

        let image = request
            .image
            .clone()
            .unwrap_or_else(|| sandbox.image.clone());
        let spec = ContainerSpec {
            sandbox_id: id.clone(),
            integration: integration.name.clone(),
            image: image.clone(),
            command: request.command.clone(),
            env,
            limits: Limits {
                memory: sandbox.memory,
                cpus: sandbox.cpus,
                pids: sandbox.pids_limit,
                network: sandbox.network.clone(),
            },
        };
        let subnets = self.backend.ensure_network(&sandbox.network).await?;
        MetadataBlock::new(sandbox.blocked_addresses.clone())
            .ensure(&sandbox.network, &subnets)
            .await?;
        let started = Instant::now();
        let deadline = started + timeout;
        let started_container = self.backend.start(&spec).await?;
        let container = started_container.id;
        let info = SandboxInfo {
            id: id.clone(),
            integration: integration.name.clone(),
            image,
            command: request.command,
            state: SandboxState::Running,
            created_at: rfc3339(now),
            deadline: rfc3339(now + timeout),
            deadline_note,
            credentials_expire_at: expires.map(rfc3339).unwrap_or_else(|| "never".into()),
            exit_code: None,
            stdout: None,
            stderr: None,
            stdout_truncated: false,
            stderr_truncated: false,
            duration_ms: None,
            timed_out: false,
            error: None,
        };
        let record = Arc::new(Record {
            info: Mutex::new(info.clone()),
            container,
            stop_requested: AtomicBool::new(false),
            done: watch::channel(false).0,
        });
        self.records().insert(id.clone(), record.clone());
        tracing::info!(sandbox = %id, integration = %integration.name, timeout_s = timeout.as_secs(), "sandbox started");
        let manager = self.clone();
        let output = started_container.output;
        tokio::spawn(async move { manager.watch(record, output, started, deadline).await });
        Ok(info)
    }

    /// Follows one sandbox to its end, then records the outcome and removes the container.
    async fn watch(
        &self,
        record: Arc<Record>,
        output: OutputTask,
        started: Instant,
        deadline: Instant,
    ) {
        let outcome = self.backend.wait(&record.container, deadline).await;
        // The streams close when the container exits; a stuck stream must not hold us.
        let output = match tokio::time::timeout(OUTPUT_DRAIN, output).await {
            Ok(Ok(collected)) => collected,
            Ok(Err(join)) => Err(SandboxError::Docker {
                action: "collect the sandbox's output".into(),
                message: join.to_string(),
            }),
            Err(_) => Err(SandboxError::Docker {
                action: "collect the sandbox's output".into(),
                message: format!(
                    "the output did not end within {}s of the exit",
                    OUTPUT_DRAIN.as_secs()
                ),
            }),
        };
        let removed = self.backend.remove(&record.container).await;
        {
            let mut info = record.info.lock().expect("sandbox info lock");
            info.duration_ms = Some(started.elapsed().as_millis() as u64);
            match outcome {
                Ok((code, timed_out)) => {
                    info.exit_code = Some(code);
                    info.timed_out = timed_out;
                    info.state = if timed_out {
                        SandboxState::TimedOut
                    } else if record.stop_requested.load(Ordering::SeqCst) {
                        SandboxState::Stopped
                    } else {
                        SandboxState::Exited
                    };
                }
                Err(err) => {
                    info.state = SandboxState::Failed;
                    info.error = Some(err.to_string());
                }
            }
            match output {
                Ok((stdout, stderr)) => {
                    info.stdout = Some(stdout.text);
                    info.stdout_truncated = stdout.truncated;
                    info.stderr = Some(stderr.text);
                    info.stderr_truncated = stderr.truncated;
                }
                Err(err) => info.error = Some(err.to_string()),
            }
            if let Err(err) = removed {
                tracing::warn!(sandbox = %info.id, error = %err, "could not remove a finished sandbox");
            }
            tracing::info!(sandbox = %info.id, state = ?info.state, exit_code = ?info.exit_code, "sandbox ended");
        }
        // `send_replace` stores the value even when nobody is subscribed yet.
        record.done.send_replace(true);
    }

    /// Waits until the sandbox ends; answers its final state.
    pub async fn wait(&self, id: &str) -> Result<SandboxInfo, SandboxError> {
        let record = self.record(id)?;
        let mut done = record.done.subscribe();
        let _ = done.wait_for(|finished| *finished).await;
        Ok(record.info.lock().expect("sandbox info lock").clone())
    }

    fn record(&self, id: &str) -> Result<Arc<Record>, SandboxError> {
        self.records()
            .get(id)
            .cloned()
            .ok_or_else(|| SandboxError::NotFound(id.to_owned()))
    }

    pub fn get(&self, id: &str) -> Result<SandboxInfo, SandboxError> {
        Ok(self
            .record(id)?
            .info
            .lock()
            .expect("sandbox info lock")
            .clone())
    }

    pub fn list(&self) -> Vec<SandboxInfo> {
        self.records()
            .values()
            .map(|r| r.info.lock().expect("sandbox info lock").clone())
            .collect()
    }

    /// Stops a running sandbox; answers once it has ended.
    pub async fn stop(&self, id: &str) -> Result<SandboxInfo, SandboxError> {
        let record = self.record(id)?;
        if !*record.done.borrow() {
            record.stop_requested.store(true, Ordering::SeqCst);
            self.backend.stop(&record.container).await?;
        }
        self.wait(id).await
    }

    /// Number of sandboxes still running.
    pub fn running(&self) -> usize {
        self.records()
            .values()
            .filter(|r| !*r.done.borrow())
            .count()
    }

    /// Stops accepting, lets running sandboxes finish for up to `grace`, then stops the rest
    /// and waits until every container is gone.
    pub async fn shutdown(&self, grace: Duration) {
        self.draining.store(true, Ordering::SeqCst);
        let pending: Vec<Arc<Record>> = self.records().values().cloned().collect();
        let all_done = async {
            for record in &pending {
                let mut done = record.done.subscribe();
                let _ = done.wait_for(|finished| *finished).await;
            }
        };
        if tokio::time::timeout(grace, all_done).await.is_err() {
            for record in &pending {
                if !*record.done.borrow() {
                    record.stop_requested.store(true, Ordering::SeqCst);
                    let _ = self.backend.stop(&record.container).await;
                }
            }
            for record in &pending {
                let mut done = record.done.subscribe();
                let _ = done.wait_for(|finished| *finished).await;
            }
        }
    }
}

fn validate(request: &SandboxRequest, max_lifetime: Duration) -> Result<(), SandboxError> {
    let bad = |m: String| Err(SandboxError::BadRequest(m));
    if request.command.is_empty() || request.command[0].is_empty() {
        return bad(
            "command: must name a program, such as [\"autoheal\", \"tool\", \"whoami\"]".into(),
        );
    }
    if request.command.len() > MAX_ARGS {
        return bad(format!("command: at most {MAX_ARGS} arguments"));
    }
    if let Some(timeout) = request.timeout {
        if timeout.is_zero() {
            return bad("timeout: must be longer than zero".into());
        }
        if timeout > max_lifetime {
            return bad(format!(
                "timeout: {} is longer than sandbox.max_lifetime ({})",
                humantime::format_duration(timeout),
                humantime::format_duration(max_lifetime)
            ));
        }
    }
    for key in request.env.keys() {
        let valid = !key.is_empty()
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !key.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return bad(format!("env: {key:?} is not a valid variable name"));
        }
        if key.starts_with("AWS_") || key.starts_with("AUTOHEAL_") {
            return bad(format!(
                "env: {key} is reserved: the daemon sets AWS_* and AUTOHEAL_* itself"
            ));
        }
    }
    Ok(())
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
            if remaining > START_MARGIN + MIN_USEFUL_LIFETIME + Duration::from_secs(1) =>
        {
            let shortened = remaining - START_MARGIN - Duration::from_secs(1);
            let shortened = Duration::from_secs(shortened.as_secs());
            let credentials = broker
                .credentials_valid_for(name, shortened + START_MARGIN)
                .await?;
            let note = format!(
                "the integration's credentials expire in {}s and fresher ones are not available yet, \
                 so the deadline was shortened from {} to {}: a sandbox never outlives its credentials",
                remaining.as_secs(),
                humantime::format_duration(asked),
                humantime::format_duration(shortened)
            );
            tracing::warn!(integration = %name, "{note}");
            Ok((credentials, shortened, Some(note)))
        }
        Err(err) => Err(err.into()),
    }
}
