//! The tokens: a JWT signed by the current signing key, with `iss` exactly the configured
//! issuer, `aud` = `{tenant_slug}-oidc-service`, `sub` naming the integration (and sandbox),
//! `iat`, `exp` at most 15 minutes later, and a unique `jti`.

use std::collections::BTreeMap;
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
    /// Session tags for `sts:AssumeRoleWithWebIdentity`, which takes no `Tags` parameter:
    /// STS reads them from this claim (the role's trust policy must allow `sts:TagSession`).
    #[serde(
        rename = "https://aws.amazon.com/tags",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub session_tags: Option<SessionTagsClaim>,
}

/// The shape STS reads session tags from: each tag's value in a one-element list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionTagsClaim {
    pub principal_tags: BTreeMap<String, Vec<String>>,
}

impl SessionTagsClaim {
    pub fn new<'a>(tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            principal_tags: tags
                .into_iter()
                .map(|(k, v)| (k.to_owned(), vec![v.to_owned()]))
                .collect(),
        }
    }
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
    session_tags: Option<SessionTagsClaim>,
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
        session_tags,
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
