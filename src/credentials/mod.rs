//! The credential broker: per integration, a source (IMDS instance role, AssumeRole chained
//! on it, or the environment chain) behind one lifetime-aware cache.
//!
//! - `source.rs`: builds each source from aws-config's own providers;
//! - `cache.rs`: answers `valid_for(duration)`, single-flight, static stability, refresher;
//! - `schedule.rs`: when to refresh (ahead of expiry, with jitter) and how to back off;
//! - `error.rs`: failures classified by kind, each with a hint that says what to fix;
//! - `sandbox_session.rs`: one STS session per sandbox (name, tags, session policy, length);
//! - `broker.rs`: all integrations together; `clock.rs`: injectable time;
//! - `metrics.rs`: refreshes, failures by kind, seconds to expiry, for `/metrics`.

mod broker;
mod cache;
pub mod clock;
mod error;
pub mod metrics;
mod sandbox_session;
pub mod schedule;
mod source;
mod web_identity;

pub use broker::CredentialBroker;
pub use cache::{CredentialCache, CredentialState, Health, rfc3339};
pub use error::{CredentialError, FailureKind, SourceFailure, classify, hint, timed_out};
pub use sandbox_session::{
    SessionRequest, TAG_INTEGRATION, TAG_SANDBOX, sandbox_session_name, session_length,
};
pub use schedule::RefreshPolicy;
pub use source::{InstanceRole, provider_for, sdk_config, session_name};

#[cfg(test)]
mod tests;
