//! Why a sandbox could not be started, inspected or stopped — each with the HTTP status the
//! API answers and, where one exists, what to do about it.

use crate::credentials::CredentialError;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The request itself is wrong (400).
    #[error("{0}")]
    BadRequest(String),
    /// No such integration (404).
    #[error("no integration named {name:?} (configured: {known})")]
    UnknownIntegration { name: String, known: String },
    /// No such sandbox (404).
    #[error("no sandbox with id {0:?}")]
    NotFound(String),
    /// Credentials could not be had for the sandbox's life (503).
    #[error("{0}")]
    Credentials(#[from] CredentialError),
    /// The image is not on this host (503).
    #[error(
        "image {0:?} is not on this host: build it with scripts/build-sandbox-image (no registry is used)"
    )]
    ImageMissing(String),
    /// The Docker engine failed or is unreachable (503).
    #[error(
        "Docker could not {action}: {message} (is the Docker engine running and its socket reachable?)"
    )]
    Docker { action: String, message: String },
    /// Sandboxes on this bridge network could reach instance metadata (503).
    #[error(
        "refusing to start sandboxes on network {network:?}: they could reach the instance metadata service, and the daemon cannot block it ({reason}). Run the daemon as root or with CAP_NET_ADMIN and iptables installed, or add the DOCKER-USER rule yourself (docs/security.md)"
    )]
    MetadataBlock { network: String, reason: String },
    /// The credentials endpoint cannot be offered to the sandbox (503).
    #[error(
        "sandboxes on network {network:?} cannot receive credentials from the endpoint ({reason}). Use credentials = \"env\", or run the daemon as root or with CAP_NET_ADMIN and iptables installed (docs/security.md, credentials delivery)"
    )]
    CredentialsEndpoint { network: String, reason: String },
    /// The egress proxy cannot be offered to the sandbox (503): it never starts unfenced.
    #[error(
        "refusing to start sandboxes on network {network:?} without their egress fence ({reason}). Run the daemon as root or with CAP_NET_ADMIN and CAP_NET_RAW, with iptables installed and Docker managing the DOCKER-USER chain; only if sandboxes may reach anything, sandbox.egress = \"open\" starts them unfenced (docs/security.md, egress)"
    )]
    Egress { network: String, reason: String },
    /// The daemon is draining (503).
    #[error("the daemon is shutting down and starts no new sandboxes")]
    ShuttingDown,
    /// `sandbox.max_running` sandboxes run already (429 with `Retry-After`); nothing started.
    #[error(
        "{max_running} sandboxes are running, the most sandbox.max_running allows; retry in {}s",
        retry_after.as_secs()
    )]
    AtCapacity {
        max_running: usize,
        retry_after: std::time::Duration,
    },
    /// The request named an image the configuration does not allow (400).
    #[error("image {image:?} is not allowed: sandboxes may run {} (sandbox.image, sandbox.images)", allowed.join(", "))]
    ImageNotAllowed { image: String, allowed: Vec<String> },
    /// The image declares volumes: each would be a writable disk of unbounded size beside the
    /// read-only root, so it is refused (400).
    #[error(
        "image {image:?} declares VOLUME {}: a declared volume would be a writable, unbounded disk next to the read-only root, so autoheal refuses it; build the image without VOLUME (scripts/build-sandbox-image does)",
        volumes.join(", ")
    )]
    ImageDeclaresVolumes { image: String, volumes: Vec<String> },
    /// The request asked to narrow a session that cannot be narrowed (400).
    #[error("capabilities cannot be applied to integration {integration:?}: {reason}")]
    CapabilitiesUnsupported { integration: String, reason: String },
    /// The start could not be written to the audit log, so nothing was started (503).
    #[error("{0}")]
    Audit(#[from] super::audit::AuditError),
    /// The sandbox has ended, so nothing more can run in it (409).
    #[error("sandbox {id:?} is not running (it is {state}); start a new one")]
    NotRunning { id: String, state: String },
    /// The sandbox runs as many commands through exec as it may (429 with `Retry-After`).
    #[error(
        "sandbox {id:?} already runs {max} commands through exec, the most one sandbox may; retry when one has ended"
    )]
    ExecBusy { id: String, max: usize },
    /// A bug or a crashed task (500).
    #[error("internal error: {0}")]
    Internal(String),
}

impl SandboxError {
    /// The HTTP status the API answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::BadRequest(_)
            | Self::ImageNotAllowed { .. }
            | Self::ImageDeclaresVolumes { .. }
            | Self::CapabilitiesUnsupported { .. } => 400,
            Self::AtCapacity { .. } | Self::ExecBusy { .. } => 429,
            Self::NotRunning { .. } => 409,
            Self::Internal(_) => 500,
            Self::UnknownIntegration { .. } | Self::NotFound(_) => 404,
            Self::Credentials(CredentialError::UnknownIntegration { .. }) => 404,
            Self::Credentials(_)
            | Self::ImageMissing(_)
            | Self::Docker { .. }
            | Self::MetadataBlock { .. }
            | Self::CredentialsEndpoint { .. }
            | Self::Egress { .. }
            | Self::Audit(_)
            | Self::ShuttingDown => 503,
        }
    }

    /// A stable machine-readable code for the API's error body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::UnknownIntegration { .. } => "unknown_integration",
            Self::NotFound(_) => "not_found",
            Self::Credentials(CredentialError::UnknownIntegration { .. }) => "unknown_integration",
            Self::Credentials(_) => "credentials_unavailable",
            Self::ImageMissing(_) => "image_missing",
            Self::Docker { .. } => "docker_unavailable",
            Self::MetadataBlock { .. } => "metadata_block_unavailable",
            Self::CredentialsEndpoint { .. } => "credentials_endpoint_unavailable",
            Self::Egress { .. } => "egress_unavailable",
            Self::ShuttingDown => "shutting_down",
            Self::AtCapacity { .. } => "too_many_sandboxes",
            Self::NotRunning { .. } => "not_running",
            Self::ExecBusy { .. } => "too_many_execs",
            Self::ImageNotAllowed { .. } => "image_not_allowed",
            Self::ImageDeclaresVolumes { .. } => "image_declares_volumes",
            Self::CapabilitiesUnsupported { .. } => "capabilities_unsupported",
            Self::Audit(_) => "audit_unavailable",
            Self::Internal(_) => "internal",
        }
    }

    /// Seconds a client should wait before trying again, when that is the answer.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::AtCapacity { retry_after, .. } => Some(*retry_after),
            Self::ExecBusy { .. } => Some(std::time::Duration::from_secs(1)),
            _ => None,
        }
    }
}
