//! Configuration: built-in defaults < TOML file < `AUTOHEAL_` environment variables.
//!
//! [`load`] reads the sources with figment into a loose shape ([`raw`]), then [`validate`]
//! checks every key and builds the typed [`Config`] below, or reports *all* problems at once,
//! each named by its key path. Nothing else in the program reads files or env for settings.
//! This module depends on nothing else of ours.

mod fields;
mod load;
mod raw;
mod secret;
mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use serde::Serialize;

pub use fields::{
    AccountId, AuthMethod, Cidr, CredentialsDelivery, Egress, HostPattern, LogFormat, Region,
    RoleArn, SessionMode, UpstreamProxy,
};
pub use load::{ConfigError, ConfigIssue, DEFAULT_CONFIG_PATH, load, load_from_str};
pub use secret::{REDACTED, Secret};

/// Loopback only: the API hands out sandboxes with AWS credentials, so exposing it beyond the
/// host must be a deliberate choice.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8700";
/// Where `serve` keeps (or creates, mode 0600) the API bearer token.
pub const DEFAULT_API_TOKEN_FILE: &str = "/var/lib/autoheal/api-token";
/// Where the daemon keeps what must survive a restart (the sandbox audit log).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/autoheal";
/// Built locally by `scripts/build-sandbox-image`; it holds this very binary.
pub const DEFAULT_SANDBOX_IMAGE: &str = "autoheal-sandbox:latest";
/// A bridge network of our own, so IMDS can be blocked for sandboxes alone.
pub const DEFAULT_SANDBOX_NETWORK: &str = "autoheal-sandbox";
/// EC2's instance metadata service, IPv4 and IPv6 (Nitro): sandboxes must not reach it,
/// or they could take the host's own instance-role credentials.
pub const DEFAULT_BLOCKED_ADDRESSES: [&str; 2] = ["169.254.169.254/32", "fd00:ec2::254/128"];
/// Long enough for a slow Logs Insights query, short enough that credentials outlive it.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// How long an MCP session's sandbox waits for its client's next message: an agent thinks
/// between calls (an LLM turn takes seconds to a minute), so minutes, not seconds.
pub const DEFAULT_SESSION_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// The tools stream compact JSON; 512 MiB leaves ample headroom for large log pages.
pub const DEFAULT_SANDBOX_MEMORY: ByteSize = ByteSize::mib(512);
pub const DEFAULT_SANDBOX_CPUS: f64 = 1.0;
/// Enough for a tokio runtime and its blocking pool; stops a fork bomb long before the host.
pub const DEFAULT_PIDS_LIMIT: u32 = 256;
pub const DEFAULT_REGION: &str = "us-east-1";
/// Sandboxes starting or running at once. A tool call's sandbox is mostly waiting on AWS, so
/// a 2-core host keeps up with 8; each may take 1 CPU and 512 MiB at most, so 8 also bounds
/// the worst case at 4 GiB of memory.
pub const DEFAULT_MAX_RUNNING: u32 = 8;
/// Finished sandboxes remembered for `GET /v1/sandboxes`: about 1 KiB each without output.
pub const DEFAULT_HISTORY: u32 = 500;
/// Open API connections at once. Each costs a task and a 16 KiB read buffer at most, so
/// 512 stay under ~10 MiB; local clients (the agent's runner, the CLI, a health check) need
/// a handful. Beyond it the longest-idle connection is closed to make room.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 512;
/// Time a client has to complete a request's head once its first byte arrived. Local
/// clients send a head in microseconds; 10 s forgives a stalled machine, not a slow-loris.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a keep-alive connection may sit with nothing arriving. Longer than the 90 s
/// HTTP clients keep pooled connections, so the client, not the daemon, closes first and a
/// request never races the close; idle connections are also evicted when room is needed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Time a client has to send a request's body (at most 64 KiB) once the head is in.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest session STS grants when one role assumes another (role chaining).
pub const ROLE_CHAINING_MAX_SESSION: Duration = Duration::from_secs(3600);
/// The shortest session STS grants at all.
pub const MIN_SESSION: Duration = Duration::from_secs(15 * 60);
/// The longest session AssumeRoleWithWebIdentity grants (a role's MaxSessionDuration cap).
pub const WEB_IDENTITY_MAX_SESSION: Duration = Duration::from_secs(12 * 3600);
/// One hour: within the role-chaining cap, so valid for every source.
pub const DEFAULT_SESSION_DURATION: Duration = ROLE_CHAINING_MAX_SESSION;
pub const DEFAULT_OIDC_KEY_DIR: &str = "/var/lib/autoheal/oidc";
/// The integration `serve` runs when no config file exists: the SDK's default chain.
pub const DEFAULT_INTEGRATION_NAME: &str = "default";

/// The region of a process without a configured one (the CLI, a sandbox): `AWS_REGION`, else
/// `AWS_DEFAULT_REGION`, else us-east-1 — never a lookup in instance metadata, which a
/// sandbox cannot reach and which would cost a timeout. The one place this rule lives.
pub fn ambient_region() -> Region {
    for var in ["AWS_REGION", "AWS_DEFAULT_REGION"] {
        let Ok(value) = std::env::var(var) else {
            continue;
        };
        match Region::parse(&value) {
            Ok(region) => return region,
            // Said, not silently replaced: a wrong region reads the wrong resources.
            Err(reason) => eprintln!("autoheal: ignoring {var}: {reason}"),
        }
    }
    Region::parse(DEFAULT_REGION).expect("a valid default")
}

/// The whole, validated configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub server: ServerConfig,
    pub sandbox: SandboxConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcConfig>,
    pub log: LogConfig,
    #[serde(rename = "integration")]
    pub integrations: Vec<IntegrationConfig>,
}

impl Config {
    /// The integration with this name, if configured.
    pub fn integration(&self, name: &str) -> Option<&IntegrationConfig> {
        self.integrations.iter().find(|i| i.name == name)
    }
}

/// `[server]`: the HTTP API.
#[derive(Debug, Clone, Serialize)]
pub struct ServerConfig {
    /// Address the API binds to.
    pub listen: SocketAddr,
    /// File holding the API bearer token (created with mode 0600 when missing).
    pub api_token_file: PathBuf,
    /// Directory of state kept across restarts: `audit/sandboxes.jsonl`.
    pub state_dir: PathBuf,
    /// Open connections at once; beyond it the longest-idle one is closed.
    pub max_connections: u32,
    /// Time to complete a request head once it started.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Time a keep-alive connection may idle.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Time to send a request body.
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
}

/// `[sandbox]`: how sandbox containers are started and limited.
#[derive(Debug, Clone, Serialize)]
pub struct SandboxConfig {
    /// Image sandboxes run from.
    pub image: String,
    /// Docker network for sandboxes, or `host`.
    pub network: String,
    /// Upper bound on a sandbox's life; requests may ask for less.
    #[serde(with = "humantime_serde")]
    pub max_lifetime: Duration,
    /// Memory limit per sandbox.
    #[serde(serialize_with = "fields::serialize_size")]
    pub memory: ByteSize,
    /// CPU limit per sandbox (fractions allowed).
    pub cpus: f64,
    /// Process limit per sandbox.
    pub pids_limit: u32,
    /// Addresses sandboxes on a bridge network cannot reach (a `DOCKER-USER` rule each).
    pub blocked_addresses: Vec<Cidr>,
    /// Sandboxes starting or running at once; beyond it requests get 429.
    pub max_running: usize,
    /// Finished sandboxes remembered.
    pub history: usize,
    /// An MCP session's sandbox ends after this long without a message from its client.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Images a request may name (`image` is always allowed).
    pub images: Vec<String>,
    /// How sandboxes receive credentials unless a request says otherwise.
    pub credentials: CredentialsDelivery,
    /// The subnet of the sandbox network when the daemon creates it (else Docker's pool).
    pub subnet: Option<Cidr>,
    /// What bridge sandboxes may reach.
    pub egress: Egress,
    /// Host name patterns bridge sandboxes may reach besides their AWS endpoints.
    pub egress_allow: Vec<HostPattern>,
    /// An HTTP proxy the egress proxy chains AWS tunnels through.
    pub upstream_proxy: Option<UpstreamProxy>,
}

/// `[oidc]`: the daemon as its own OIDC issuer.
#[derive(Debug, Clone, Serialize)]
pub struct OidcConfig {
    /// Issuer URL, exactly as registered in IAM (https, no trailing slash).
    pub issuer: String,
    /// Tenant slug; tokens carry `aud = {tenant_slug}-oidc-service`.
    pub tenant_slug: String,
    /// Directory of signing keys (mode 0700, keys 0600).
    pub key_dir: PathBuf,
}

impl OidcConfig {
    /// The audience every token carries and every trust policy checks.
    pub fn audience(&self) -> String {
        format!("{}-oidc-service", self.tenant_slug)
    }
}

/// `[log]`: how the program logs.
#[derive(Debug, Clone, Serialize)]
pub struct LogConfig {
    /// `text` (for people) or `json` (one object per line, for collectors).
    pub format: LogFormat,
    /// A `RUST_LOG`-style filter such as `info,autoheal=debug`.
    pub filter: String,
}

/// `[[integration]]`: one AWS account (and region) the agent may read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntegrationConfig {
    /// Unique name; used in the API path, labels and STS session names.
    pub name: String,
    /// The account the credentials must belong to (checked by Test Connection). Required in
    /// a config file; `None` only for the built-in `default` integration, which accepts any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<AccountId>,
    /// Region for every call of this integration.
    pub region: Region,
    /// Where the credentials come from.
    pub auth: AuthMethod,
    /// Role to assume: cross-account for `instance_role`, required for `oidc`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<RoleArn>,
    /// External ID the target role's trust policy requires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<Secret>,
    /// A session per sandbox (the default where a role is assumed) or one shared session.
    pub session: SessionMode,
    /// Session length asked of STS when a role is assumed (the shared session; a
    /// sandbox's own session lasts as long as the sandbox).
    #[serde(with = "humantime_serde")]
    pub session_duration: Duration,
    /// AWS endpoint override (emulators); also handed to sandboxes as `AWS_ENDPOINT_URL`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
}

impl IntegrationConfig {
    /// True when each sandbox gets its own, narrowed STS session.
    pub fn per_sandbox_sessions(&self) -> bool {
        self.session == SessionMode::PerSandbox
    }

    /// True when sandboxes receive the EC2 instance profile's own credentials: nothing
    /// narrows them, and every process that can reach IMDS holds the same.
    pub fn uses_instance_profile_directly(&self) -> bool {
        self.auth == AuthMethod::InstanceRole && self.role_arn.is_none()
    }

    /// The warning `check`, `config check` and the daemon give a bare instance role.
    pub fn instance_profile_warning(&self) -> Option<String> {
        self.uses_instance_profile_directly().then(|| {
            format!(
                "integration {:?}: sandboxes receive the EC2 instance profile's own credentials \
                 (auth = \"instance_role\" without role_arn): one shared session that no policy \
                 narrows and no sandbox is named in. Recommended: the two-role layout, where the \
                 instance role may only sts:AssumeRole a same-account read-only role set as \
                 role_arn, so each sandbox gets its own named, tagged, narrowed session \
                 (docs/setup-instance-role.md)",
                self.name
            )
        })
    }
}

impl Config {
    /// What is valid but weaker than it should be, one sentence each.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings: Vec<String> = self
            .integrations
            .iter()
            .filter_map(|i| i.instance_profile_warning())
            .collect();
        if self.sandbox.network == "host" {
            warnings.push(
                "sandbox.network = \"host\": sandboxes share the host's network and can reach the \
                 instance metadata service (and so the host's own role), and egress control is \
                 off for them (no proxy, no allowlist); acceptable for tests and emulators, use a \
                 bridge network otherwise"
                    .into(),
            );
        } else if self.sandbox.egress == Egress::Open {
            warnings.push(
                "sandbox.egress = \"open\": bridge sandboxes may connect anywhere (not only their \
                 AWS endpoints), so a manipulated agent could send what it holds to any host; \
                 remove the line for the default \"aws\""
                    .into(),
            );
        }
        warnings
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("the config always serializes to TOML")
    }

    /// The effective configuration as JSON, secrets redacted.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("the config always serializes to JSON")
    }
}

#[cfg(test)]
mod tests;
