//! The configuration exactly as written: loose leaves, unknown keys kept.
//!
//! serde stops at the first problem it meets, but an operator fixing a config file wants to
//! see every problem at once. So the files and environment are first read into this loose
//! shape — every leaf a [`Scalar`] that accepts any type, every unknown key collected instead
//! of rejected — and `validate` turns it into the typed [`super::Config`], reporting each
//! problem with its key path. Unknown keys are still errors; they are just all reported.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

/// Any TOML/env leaf value, kept as written so validation can say what it got.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    /// A table or array where a single value belongs.
    Nested(serde_json::Value),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Bool(b) => write!(f, "{b}"),
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::Float(x) => write!(f, "{x}"),
            Scalar::Text(s) => write!(f, "{s:?}"),
            Scalar::Nested(v) => write!(f, "{v}"),
        }
    }
}

/// Keys nobody asked for, with their values (only the names are reported).
pub type Unknown = BTreeMap<String, serde_json::Value>;

#[derive(Debug, Default, Deserialize)]
pub struct RawConfig {
    pub server: Option<RawServer>,
    pub sandbox: Option<RawSandbox>,
    pub oidc: Option<RawOidc>,
    pub log: Option<RawLog>,
    pub integration: Option<Vec<RawIntegration>>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawServer {
    pub listen: Option<Scalar>,
    pub api_token_file: Option<Scalar>,
    pub state_dir: Option<Scalar>,
    pub max_connections: Option<Scalar>,
    pub header_read_timeout: Option<Scalar>,
    pub body_read_timeout: Option<Scalar>,
    pub idle_timeout: Option<Scalar>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawSandbox {
    pub image: Option<Scalar>,
    pub network: Option<Scalar>,
    pub max_lifetime: Option<Scalar>,
    pub memory: Option<Scalar>,
    pub cpus: Option<Scalar>,
    pub pids_limit: Option<Scalar>,
    pub blocked_addresses: Option<Scalar>,
    pub max_running: Option<Scalar>,
    pub history: Option<Scalar>,
    pub idle_timeout: Option<Scalar>,
    pub images: Option<Scalar>,
    pub credentials: Option<Scalar>,
    pub egress: Option<Scalar>,
    pub subnet: Option<Scalar>,
    pub egress_allow: Option<Scalar>,
    pub upstream_proxy: Option<Scalar>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawOidc {
    pub issuer: Option<Scalar>,
    pub tenant_slug: Option<Scalar>,
    pub key_dir: Option<Scalar>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawLog {
    pub format: Option<Scalar>,
    pub filter: Option<Scalar>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawIntegration {
    pub name: Option<Scalar>,
    pub account_id: Option<Scalar>,
    pub region: Option<Scalar>,
    pub auth: Option<Scalar>,
    pub role_arn: Option<Scalar>,
    pub external_id: Option<Scalar>,
    pub session_duration: Option<Scalar>,
    pub session: Option<Scalar>,
    pub endpoint_url: Option<Scalar>,
    #[serde(flatten)]
    pub unknown: Unknown,
}
