//! The two documents STS reads: `/.well-known/openid-configuration` (discovery) and
//! `/.well-known/jwks.json` (the public keys). The daemon serves them; `autoheal oidc
//! publish --out DIR` writes them as files for a public HTTPS host (S3 + CloudFront), since
//! STS fetches the JWKS over the Internet and a daemon on a private subnet cannot serve it.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::{Value, json};

use super::{Issuer, OidcError};

/// The discovery document; `jwks_uri` is the issuer plus `/.well-known/jwks.json`.
pub fn discovery(issuer: &Issuer) -> Value {
    json!({
        "issuer": issuer.url,
        "jwks_uri": format!("{}/.well-known/jwks.json", issuer.url),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        "claims_supported": ["iss", "aud", "sub", "iat", "nbf", "exp", "jti"],
    })
}

/// The JWKS at `now`: every published key.
pub fn jwks(issuer: &Issuer, now: SystemTime) -> Value {
    let keys: Vec<Value> = issuer
        .keys
        .published(now)
        .iter()
        .map(|k| serde_json::to_value(&k.jwk).unwrap_or_default())
        .collect();
    json!({"keys": keys})
}

/// Writes `.well-known/openid-configuration` and `.well-known/jwks.json` under `out`;
/// answers the two paths.
pub fn publish(issuer: &Issuer, out: &Path, now: SystemTime) -> Result<[PathBuf; 2], OidcError> {
    let dir = out.join(".well-known");
    let failed = |e: std::io::Error| OidcError::KeyDir {
        dir: dir.clone(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(&dir).map_err(failed)?;
    let discovery_path = dir.join("openid-configuration");
    let jwks_path = dir.join("jwks.json");
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default() + "\n";
    std::fs::write(&discovery_path, pretty(&discovery(issuer))).map_err(failed)?;
    std::fs::write(&jwks_path, pretty(&jwks(issuer, now))).map_err(failed)?;
    Ok([discovery_path, jwks_path])
}
