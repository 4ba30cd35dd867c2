//! The sandbox runtime: short-lived, hardened containers that receive an integration's
//! credentials — as environment variables valid for their whole life, or from the daemon's
//! credentials endpoint, renewed.
//!
//! - `info.rs`: what a caller asks for (checked up front) and what the API shows;
//! - `spec.rs`: what one container is (argv, env, limits, labels);
//! - `backend.rs`: the seam — what runs containers, as a trait;
//! - `docker.rs`: the Docker backend (bollard) — hardening, deadline, output cap;
//! - `metadata_block.rs`: the firewall rule that keeps bridge sandboxes away from IMDS;
//! - `credentials_endpoint.rs`, `credentials_server.rs`, `credentials_route.rs`: delivery
//!   by the container-credentials protocol (`credentials = "endpoint"`): tokens and
//!   renewal, the HTTP listeners, the rule that lets bridge sandboxes reach them, and
//!   `endpoint_delivery.rs` tying one sandbox to them (its token file, its renewal);
//! - `egress_fence.rs`: the firewall rules that leave a bridge sandbox only the daemon's
//!   proxy and credentials endpoint; `egress_lease.rs`: its admission to the proxy
//!   (`crate::egress`);
//! - `registry.rs`: running sandboxes, the bounded history, admission slots;
//! - `audit.rs`: one JSON line per sandbox start and end, kept across restarts;
//! - `manager.rs`: admission, the lifetime rule, watch, stop, drain, reconcile;
//! - `fake.rs`, `faulty.rs`: a backend without Docker and a failure-injecting wrapper, so
//!   the manager's rules are tested without the engine or root;
//! - `error.rs`: failures with their HTTP status and what to do.
//!
//! Docker is the only real backend; a cluster backend (Kubernetes Jobs, ECS tasks) would
//! implement [`SandboxBackend`].

mod audit;
mod backend;
pub mod credentials_endpoint;
mod credentials_route;
pub mod credentials_server;
mod docker;
mod egress_fence;
mod egress_lease;
mod endpoint_delivery;
mod error;
mod fake;
mod faulty;
mod info;
mod iptables;
mod manager;
mod metadata_block;
mod registry;
mod spec;

pub use audit::{AUDIT_FILE, AuditError, AuditLog, INTERRUPTED};
pub use backend::{
    Ended, ExecOutcome, ImageFacts, ManagedContainer, OutputTask, SandboxBackend, SandboxStdio,
    Started,
};
pub use credentials_route::{ROUTE_COMMENT, SANDBOX_FACING_ADDRESS};
pub use docker::{DockerBackend, SANDBOX_USER};
pub use egress_fence::{FENCE_COMMENT, Fence, GUARD_COMMENT, ensure as ensure_egress_fence};
pub use endpoint_delivery::{
    HOST_STATE_DIR_ENV, TOKEN_DIR, TOKEN_PATH_IN_SANDBOX, clear_stale_tokens,
};
pub use error::SandboxError;
pub use fake::FakeBackend;
pub use faulty::{FaultyBackend, Operation};
pub use info::{EndedBy, SandboxInfo, SandboxKind, SandboxRequest, SandboxState, validate_command};
pub use manager::{
    DEFAULT_OUTPUT_CAP, ExecAnswer, HEALTH_CHECK_EVERY, RETRY_AFTER, START_MARGIN, SandboxManager,
};
pub use metadata_block::{MetadataBlock, RULE_COMMENT};
pub use registry::{HISTORY_OUTPUT_BUDGET, MAX_EXECS_PER_SANDBOX};
pub use spec::{
    Captured, ContainerSpec, LABEL_INTEGRATION, LABEL_MANAGED, LABEL_SANDBOX, Limits, MountedFile,
};
