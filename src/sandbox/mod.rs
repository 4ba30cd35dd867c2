//! The sandbox runtime: short-lived, hardened containers that receive an integration's
//! credentials as environment variables, valid for their whole life.
//!
//! - `spec.rs`: what one container is (argv, env, limits, labels) and how it ended;
//! - `docker.rs`: the Docker backend (bollard) — hardening, deadline, output cap, orphans;
//! - `metadata_block.rs`: the firewall rule that keeps bridge sandboxes away from IMDS;
//! - `manager.rs`: the lifetime rule, the registry of sandboxes, stop and drain;
//! - `error.rs`: failures with their HTTP status and what to do.
//!
//! Docker is the only backend built; a cluster backend (Kubernetes Jobs, ECS tasks) would
//! implement what `DockerBackend` offers the manager.

mod docker;
mod error;
mod manager;
mod metadata_block;
mod spec;

pub use docker::{DockerBackend, SANDBOX_USER};
pub use error::SandboxError;
pub use manager::{
    DEFAULT_OUTPUT_CAP, START_MARGIN, SandboxInfo, SandboxManager, SandboxRequest, SandboxState,
};
pub use metadata_block::{MetadataBlock, RULE_COMMENT};
pub use spec::{Captured, ContainerSpec, LABEL_INTEGRATION, LABEL_MANAGED, LABEL_SANDBOX, Limits};
