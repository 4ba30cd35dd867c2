//! The tokens: a JWT signed by the current signing key, with `iss` exactly the configured
//! issuer, `aud` = `{tenant_slug}-oidc-service`, `sub` naming the integration (and sandbox),
//! `iat`, `exp` at most 15 minutes later, and a unique `jti`.

use std::time::{Duration, SystemTime};

use jsonwebtoken::{Header, encode};
use serde::{Deserialize, Serialize};

use super::keys::MAX_TOKEN_LIFETIME;
use super::{Issuer, OidcError};

/// Long enough for STS to validate it, short enough not to matter if it leaked.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    pub jti: String,
}

/// A signed token and when it expires.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub kid: String,
    pub expires_at: SystemTime,
}

pub(super) fn issue(
    issuer: &Issuer,
    subject: &str,
    lifetime: Duration,
    now: SystemTime,
) -> Result<IssuedToken, OidcError> {
    let lifetime = lifetime.min(MAX_TOKEN_LIFETIME);
    let key = issuer
        .keys
        .signing_key(now)
        .ok_or_else(|| OidcError::NoKey {
            dir: std::path::PathBuf::from("(oidc.key_dir)"),
        })?;
    let iat = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let claims = Claims {
        iss: issuer.url.clone(),
        aud: issuer.audience.clone(),
        sub: subject.to_owned(),
        iat,
        nbf: iat,
        exp: iat + lifetime.as_secs(),
        jti: jti(),
    };
    let mut header = Header::new(key.algorithm.jwt());
    header.kid = Some(key.kid.clone());
    let token =
        encode(&header, &claims, &key.encoding).map_err(|e| OidcError::Sign(e.to_string()))?;
    Ok(IssuedToken {
        token,
        kid: key.kid.clone(),
        expires_at: SystemTime::UNIX_EPOCH + Duration::from_secs(claims.exp),
    })
}

/// 128 random bits from the system's CSPRNG, hex.
fn jti() -> String {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system's random source");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
