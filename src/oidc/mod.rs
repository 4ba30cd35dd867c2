//! The daemon as its own OIDC issuer: AWS trusts tokens it signs, and the credential broker
//! exchanges them for temporary credentials with `sts:AssumeRoleWithWebIdentity`.
//!
//! - `keys.rs`: signing keys in `oidc.key_dir` (mode 0600), their `kid` (RFC 7638
//!   thumbprint) and rotation — a new key is published before it signs, an old one stays
//!   published until every token it signed has expired;
//! - `token.rs`: the tokens (`iss`, `aud`, `sub`, `iat`, `exp` ≤ 15 min, `jti`);
//! - `documents.rs`: the discovery document and the JWKS, served by the daemon and written
//!   as static files by `autoheal oidc publish`.

mod documents;
mod keys;
mod token;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

pub use documents::{discovery, jwks, publish};
pub use keys::{KeyAlgorithm, KeyRing, MAX_TOKEN_LIFETIME, PUBLISH_LEAD, SigningKey};
pub use token::{Claims, DEFAULT_TOKEN_LIFETIME, IssuedToken, SessionTagsClaim};

use crate::config::OidcConfig;

/// Why the issuer cannot do what was asked, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error(
        "no signing key in {dir}: run `autoheal oidc keygen` (or start `autoheal serve`, which creates one)"
    )]
    NoKey { dir: PathBuf },
    #[error("cannot use the key directory {dir}: {reason}")]
    KeyDir { dir: PathBuf, reason: String },
    #[error("the signing key {path} is unreadable: {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error("cannot sign a token: {0}")]
    Sign(String),
}

/// The issuer: its URL, the audience tokens carry, and its keys.
#[derive(Debug)]
pub struct Issuer {
    pub url: String,
    pub audience: String,
    pub key_dir: PathBuf,
    pub keys: KeyRing,
}

impl Issuer {
    /// The issuer of `config`, with the keys in its key directory (none is created).
    pub fn load(config: &OidcConfig) -> Result<Self, OidcError> {
        Ok(Self {
            url: config.issuer.clone(),
            audience: config.audience(),
            key_dir: config.key_dir.clone(),
            keys: KeyRing::load(&config.key_dir)?,
        })
    }

    /// As [`Issuer::load`], creating an RS256 key first when the directory has none (what
    /// `serve` does on its first start).
    pub fn load_or_create(config: &OidcConfig) -> Result<Self, OidcError> {
        let ring = KeyRing::load(&config.key_dir)?;
        if ring.is_empty() {
            let key = KeyRing::generate(&config.key_dir, KeyAlgorithm::Rs256, SystemTime::now())?;
            tracing::info!(kid = %key.kid, dir = %config.key_dir.display(), "created the OIDC signing key");
        }
        Self::load(config)
    }

    /// A token for `subject`, valid for `lifetime` (at most 15 minutes).
    pub fn token(
        &self,
        subject: &str,
        lifetime: std::time::Duration,
        now: SystemTime,
    ) -> Result<IssuedToken, OidcError> {
        token::issue(self, subject, None, lifetime, now)
    }

    /// A token for `subject` that carries session tags (a sandbox's own session).
    pub fn token_with_tags(
        &self,
        subject: &str,
        tags: SessionTagsClaim,
        lifetime: std::time::Duration,
        now: SystemTime,
    ) -> Result<IssuedToken, OidcError> {
        token::issue(self, subject, Some(tags), lifetime, now)
    }
}

/// The subject of an integration's tokens (and of one sandbox's, when it asked).
pub fn subject(integration: &str, sandbox: Option<&str>) -> String {
    match sandbox {
        Some(id) => format!("integration:{integration}:sandbox:{id}"),
        None => format!("integration:{integration}"),
    }
}

/// The issuer in force, shared by the broker's sources and the API. A reload that only
/// brings new keys (`autoheal oidc keygen`) swaps them in here, so the sources that sign
/// with it — and the credentials they already hold — are kept.
#[derive(Debug)]
pub struct IssuerCell(RwLock<Arc<Issuer>>);

impl IssuerCell {
    pub fn new(issuer: Issuer) -> Self {
        Self(RwLock::new(Arc::new(issuer)))
    }

    /// The issuer now (a snapshot: its keys do not change under the caller).
    pub fn current(&self) -> Arc<Issuer> {
        self.0.read().expect("issuer lock").clone()
    }

    /// Puts `issuer` in force.
    pub fn replace(&self, issuer: Issuer) {
        *self.0.write().expect("issuer lock") = Arc::new(issuer);
    }
}

/// Shared between the broker and the API.
pub type SharedIssuer = Arc<IssuerCell>;
