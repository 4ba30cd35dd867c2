//! The container-credentials endpoint (work in progress: not wired into the manager yet).
//!
//! With `sandbox.credentials = "endpoint"` a sandbox receives no keys in its environment but
//! `AWS_CONTAINER_CREDENTIALS_FULL_URI` and `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`: the
//! container-credentials protocol every AWS SDK speaks (the ECS agent's). The SDK asks this
//! endpoint with `Authorization: <token>` and gets
//! `{"AccessKeyId", "SecretAccessKey", "Token", "Expiration"}`. Here:
//! - a token is 256 random bits, one per sandbox, kept only as its SHA-256;
//! - a token is refused the moment its sandbox ends ([`CredentialsEndpoint::revoke`]);
//! - where the sandbox's address is known (bridge networks), a request from any other
//!   address is refused too, so a leaked token is useless elsewhere;
//! - credentials closer to expiry than [`RENEW_AHEAD`] are renewed before they are served
//!   (a sandbox may outlive one session: long investigations, the 1-hour chaining cap).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_credential_types::Credentials;
use serde_json::{Value, json};

use crate::config::Secret;
use crate::credentials::{CredentialError, rfc3339};

/// Renew credentials this long before they expire: the SDKs refresh ahead themselves (the
/// Rust SDK minutes before, boto3 15 min before), and must find fresh ones then.
pub const RENEW_AHEAD: Duration = Duration::from_secs(5 * 60);
/// Random bytes in a token.
const TOKEN_BYTES: usize = 32;

/// Fresh credentials for one sandbox: its own session made again, or the shared cache.
#[async_trait]
pub trait Renew: Send + Sync + std::fmt::Debug {
    async fn renew(&self) -> Result<Credentials, CredentialError>;
}

/// Why a request gets no credentials (each is a 4xx/5xx with this message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no such token, or its sandbox has ended")]
    UnknownToken,
    #[error("this token belongs to another sandbox's address")]
    WrongPeer,
    #[error("fresh credentials could not be had: {0}")]
    Unavailable(String),
}

impl Refusal {
    /// The HTTP status the endpoint answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::UnknownToken | Self::WrongPeer => 403,
            Self::Unavailable(_) => 503,
        }
    }
}

#[derive(Debug)]
struct Served {
    sandbox_id: String,
    /// The sandbox's own address, when it has one of its own (bridge networks).
    peer: Option<IpAddr>,
    current: tokio::sync::Mutex<Credentials>,
    renew: Box<dyn Renew>,
}

/// Every sandbox's token and credentials.
#[derive(Debug)]
pub struct CredentialsEndpoint {
    by_token: Mutex<HashMap<String, Arc<Served>>>,
    renew_ahead: Duration,
}

impl Default for CredentialsEndpoint {
    fn default() -> Self {
        Self::new(RENEW_AHEAD)
    }
}

impl CredentialsEndpoint {
    pub fn new(renew_ahead: Duration) -> Self {
        Self {
            by_token: Mutex::new(HashMap::new()),
            renew_ahead,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Served>>> {
        self.by_token.lock().expect("endpoint token lock")
    }

    /// Serves `credentials` to `sandbox_id` from now on; answers its new token.
    pub fn register(
        &self,
        sandbox_id: &str,
        peer: Option<IpAddr>,
        credentials: Credentials,
        renew: Box<dyn Renew>,
    ) -> Secret {
        let mut bytes = [0u8; TOKEN_BYTES];
        aws_lc_rs::rand::fill(&mut bytes).expect("the system's random source");
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let served = Arc::new(Served {
            sandbox_id: sandbox_id.to_owned(),
            peer,
            current: tokio::sync::Mutex::new(credentials),
            renew,
        });
        self.lock().insert(digest(&token), served);
        Secret::new(token)
    }

    /// Refuses `sandbox_id`'s token from now on.
    pub fn revoke(&self, sandbox_id: &str) {
        self.lock()
            .retain(|_, served| served.sandbox_id != sandbox_id);
    }

    /// Tokens in force (one per running sandbox that uses the endpoint).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The credentials for `token` asked from `from`, renewed first when they expire
    /// within the renew-ahead time.
    pub async fn credentials(&self, token: &str, from: IpAddr) -> Result<Credentials, Refusal> {
        let served = self
            .lock()
            .get(&digest(token))
            .cloned()
            .ok_or(Refusal::UnknownToken)?;
        if served.peer.is_some_and(|peer| peer != from) {
            return Err(Refusal::WrongPeer);
        }
        let mut current = served.current.lock().await;
        let fresh_enough = current.expiry().is_none_or(|at| {
            at.duration_since(SystemTime::now())
                .is_ok_and(|left| left > self.renew_ahead)
        });
        if !fresh_enough {
            let renewed = served
                .renew
                .renew()
                .await
                .map_err(|e| Refusal::Unavailable(e.to_string()))?;
            *current = renewed;
        }
        // Revoked while renewing: the sandbox has ended.
        if !self.lock().contains_key(&digest(token)) {
            return Err(Refusal::UnknownToken);
        }
        Ok(current.clone())
    }
}

/// The protocol's answer document.
pub fn document(credentials: &Credentials) -> Value {
    let mut doc = json!({
        "AccessKeyId": credentials.access_key_id(),
        "SecretAccessKey": credentials.secret_access_key(),
    });
    if let Some(token) = credentials.session_token() {
        doc["Token"] = json!(token);
    }
    if let Some(expiry) = credentials.expiry() {
        doc["Expiration"] = json!(rfc3339(expiry));
    }
    doc
}

/// SHA-256 of a token, hex: what the map keeps.
fn digest(token: &str) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[derive(Debug, Default)]
    struct Counting(AtomicU32);

    #[async_trait]
    impl Renew for Arc<Counting> {
        async fn renew(&self) -> Result<Credentials, CredentialError> {
            let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(credentials(&format!("ASIARENEWED{n}"), 3600))
        }
    }

    fn credentials(key: &str, lasting: u64) -> Credentials {
        Credentials::new(
            key,
            "secret",
            Some("token".into()),
            Some(SystemTime::now() + Duration::from_secs(lasting)),
            "test",
        )
    }

    const HOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[tokio::test]
    async fn a_token_serves_its_sandbox_until_revoked() {
        let endpoint = CredentialsEndpoint::default();
        let renewals = Arc::new(Counting::default());
        let a = endpoint.register(
            "a",
            None,
            credentials("ASIAA", 3600),
            Box::new(renewals.clone()),
        );
        let b = endpoint.register(
            "b",
            None,
            credentials("ASIAB", 3600),
            Box::new(renewals.clone()),
        );
        assert_ne!(a.expose(), b.expose());
        let got = endpoint.credentials(a.expose(), HOST).await.unwrap();
        assert_eq!(got.access_key_id(), "ASIAA");
        assert_eq!(
            endpoint
                .credentials(b.expose(), HOST)
                .await
                .unwrap()
                .access_key_id(),
            "ASIAB"
        );
        assert_eq!(
            endpoint.credentials("not-a-token", HOST).await.unwrap_err(),
            Refusal::UnknownToken
        );
        endpoint.revoke("a");
        assert_eq!(
            endpoint.credentials(a.expose(), HOST).await.unwrap_err(),
            Refusal::UnknownToken,
            "refused the moment the sandbox ends"
        );
        assert!(endpoint.credentials(b.expose(), HOST).await.is_ok());
        assert_eq!(renewals.0.load(Ordering::SeqCst), 0, "nothing near expiry");
        let doc = document(&got);
        assert_eq!(doc["AccessKeyId"], "ASIAA");
        assert_eq!(doc["Token"], "token");
        assert!(doc["Expiration"].as_str().unwrap().ends_with('Z'));
    }

    #[tokio::test]
    async fn credentials_near_expiry_are_renewed_once() {
        let endpoint = CredentialsEndpoint::default();
        let renewals = Arc::new(Counting::default());
        let token = endpoint.register(
            "a",
            None,
            credentials("ASIAOLD", RENEW_AHEAD.as_secs() - 1),
            Box::new(renewals.clone()),
        );
        let first = endpoint.credentials(token.expose(), HOST).await.unwrap();
        assert_eq!(first.access_key_id(), "ASIARENEWED1");
        let again = endpoint.credentials(token.expose(), HOST).await.unwrap();
        assert_eq!(
            again.access_key_id(),
            "ASIARENEWED1",
            "kept until near expiry again"
        );
        assert_eq!(renewals.0.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_token_is_refused_from_another_address() {
        let endpoint = CredentialsEndpoint::default();
        let sandbox: IpAddr = "198.18.100.2".parse().unwrap();
        let token = endpoint.register(
            "a",
            Some(sandbox),
            credentials("ASIAA", 3600),
            Box::new(Arc::new(Counting::default())),
        );
        assert!(endpoint.credentials(token.expose(), sandbox).await.is_ok());
        let other: IpAddr = "198.18.100.3".parse().unwrap();
        let refused = endpoint
            .credentials(token.expose(), other)
            .await
            .unwrap_err();
        assert_eq!(refused, Refusal::WrongPeer);
        assert_eq!(refused.http_status(), 403);
    }
}
