//! Egress control: a bridge sandbox reaches its integration's AWS APIs and nothing else.
//!
//! - `allowlist.rs`: which host names and ports one sandbox may reach;
//! - `proxy.rs`: the allowlisting HTTP proxy (CONNECT tunnels, plain HTTP only for an
//!   emulator's `endpoint_url`), per-sandbox accounting of what was allowed and refused;
//! - `firewall_log.rs`: what the fence refused (read from NFLOG), told to the proxy's
//!   accounting so a sandbox's record shows it too;
//! - `upstream.rs`: the way out through an upstream HTTP proxy (`sandbox.upstream_proxy`).
//!
//! The firewall half — the rules that leave a sandbox subnet nothing but this proxy and the
//! credentials endpoint — is `sandbox/egress_fence.rs`; the sandbox manager admits each
//! bridge sandbox here when it starts (`sandbox/egress_lease.rs`).

mod allowlist;
mod firewall_log;
mod proxy;
mod upstream;

pub use crate::config::HostPattern;
pub use allowlist::{Allowlist, Destination, HTTPS_PORT, MAPPED_ENDPOINT_HOST};
pub(crate) use firewall_log::{LOG_BURST, LOG_RATE};
pub use proxy::{EgressProxy, MAX_CONNECTIONS, REFUSALS_KEPT, Refusal, SandboxEgress};
