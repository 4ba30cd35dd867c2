//! What a sandbox is asked to be, and what became of it.
//!
//! A [`ContainerSpec`] is everything the backend needs to start one container — already
//! decided: image, argv, environment (credentials included), limits, labels, deadline. The
//! backend never talks to the broker or the config; the manager does.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

use bytesize::ByteSize;
use serde::Serialize;

use crate::config::Secret;

/// Labels every sandbox container carries; the first one finds orphans after a crash.
pub const LABEL_MANAGED: &str = "autoheal.managed";
pub const LABEL_SANDBOX: &str = "autoheal.sandbox";
pub const LABEL_INTEGRATION: &str = "autoheal.integration";

/// Resource limits and isolation of one container.
#[derive(Debug, Clone)]
pub struct Limits {
    pub memory: ByteSize,
    pub cpus: f64,
    pub pids: u32,
    /// A Docker network name, or `host`.
    pub network: String,
}

/// One container to start.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    pub sandbox_id: String,
    pub integration: String,
    pub image: String,
    /// Full argv; the first element replaces the image's entrypoint.
    pub command: Vec<String>,
    /// Environment; values are secrets because some are (credentials).
    pub env: BTreeMap<String, Secret>,
    /// Host files mounted read-only into the container (the credentials token).
    pub files: Vec<MountedFile>,
    /// Behind the egress fence: no DNS server of its own that the host would ask for it,
    /// no IPv6 (its link-local addresses would bypass the IPv4 fence).
    pub fenced: bool,
    /// Keep stdin open and attached: the program speaks a protocol over stdio (an MCP
    /// session), so stdout is handed over live instead of captured.
    pub interactive: bool,
    pub limits: Limits,
}

/// A host file the container sees, read-only, at `container_path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountedFile {
    /// Where the container engine finds it (the host's view of the path).
    pub host_path: PathBuf,
    pub container_path: String,
}

impl ContainerSpec {
    /// The container's name: recognisable in `docker ps`.
    pub fn container_name(&self) -> String {
        format!("autoheal-sandbox-{}", self.sandbox_id)
    }

    /// The labels DESIGN.md promises (never a credential).
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_MANAGED.to_owned(), "true".to_owned()),
            (LABEL_SANDBOX.to_owned(), self.sandbox_id.clone()),
            (LABEL_INTEGRATION.to_owned(), self.integration.clone()),
        ])
    }
}

/// Captured output of one stream, cut at the cap.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Captured {
    pub text: String,
    /// True when output beyond the cap was dropped.
    pub truncated: bool,
}

/// RFC 3339 for answers.
pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}
