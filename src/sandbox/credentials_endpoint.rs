//! The container-credentials endpoint: which token gets which sandbox's credentials.
//!
//! With `credentials = "endpoint"` a sandbox receives no keys in its environment but
//! `AWS_CONTAINER_CREDENTIALS_FULL_URI` and `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`: the
//! container-credentials protocol every AWS SDK speaks (the ECS agent's). The SDK asks the
//! daemon (`credentials_server.rs`) with `Authorization: <token>` and gets
//! `{"AccessKeyId", "SecretAccessKey", "Token", "Expiration"}`. Here:
//! - a token is 256 random bits, one per sandbox, kept only as its SHA-256;
//! - a token is refused the moment its sandbox ends ([`CredentialsEndpoint::revoke`]);
//! - where the sandbox's address is known (bridge networks), a request from any other
//!   address is refused too, so a leaked token is useless elsewhere;
//! - credentials that expire before the sandbox's deadline are renewed ahead of expiry —
//!   [`RENEW_AHEAD`], or half their life when that is shorter — so a sandbox may outlive one
//!   session (long investigations, the 1-hour chaining cap); credentials that outlive the
//!   sandbox are never renewed (no STS call for nothing). While a renewal fails, the
//!   credentials in hand are served until they expire.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_credential_types::Credentials;
use serde_json::{Value, json};

use crate::config::Secret;
use crate::credentials::{CredentialError, rfc3339};

/// Renew credentials this long before they expire (or at half their life, if sooner): the
/// SDKs ask again ahead of expiry themselves — boto3 from 15 minutes before, the Rust SDK
/// seconds to minutes before — and must find fresh ones then.
pub const RENEW_AHEAD: Duration = Duration::from_secs(15 * 60);
/// Random bytes in a token.
const TOKEN_BYTES: usize = 32;

/// Fresh credentials for one sandbox: its own session made again, or the shared cache's.
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

/// One sandbox's registration.
pub struct Registration {
    pub sandbox_id: String,
    /// The sandbox's own address, when known at registration.
    pub peer: Option<IpAddr>,
    pub credentials: Credentials,
    /// When the sandbox is stopped at the latest: credentials are renewed only while they
    /// would expire before it.
    pub needed_until: SystemTime,
    pub renew: Box<dyn Renew>,
}

struct Held {
    credentials: Credentials,
    /// When they were had: their life so far tells how early to renew them.
    since: SystemTime,
}

/// Only when they expire: not even the access key id goes to a debug print.
impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held")
            .field("expiry", &self.credentials.expiry())
            .field("since", &self.since)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Served {
    sandbox_id: String,
    /// The sandbox's own address, once known (bridge networks).
    peer: Mutex<Option<IpAddr>>,
    held: tokio::sync::Mutex<Held>,
    needed_until: SystemTime,
    renew: Box<dyn Renew>,
}

/// How requests to the endpoint ended, counted since the daemon started (`/metrics`).
#[derive(Debug, Default)]
pub struct Outcomes {
    pub served: AtomicU64,
    pub renewed: AtomicU64,
    pub unknown_token: AtomicU64,
    pub wrong_address: AtomicU64,
    pub unavailable: AtomicU64,
}

impl Outcomes {
    /// `(outcome, count)` for each outcome, as `/metrics` labels them.
    pub fn counts(&self) -> [(&'static str, u64); 4] {
        let get = |n: &AtomicU64| n.load(Ordering::Relaxed);
        [
            ("served", get(&self.served)),
            ("unknown_token", get(&self.unknown_token)),
            ("wrong_address", get(&self.wrong_address)),
            ("unavailable", get(&self.unavailable)),
        ]
    }

    fn count(&self, result: &Result<(String, Credentials), Refusal>) {
        let counter = match result {
            Ok(_) => &self.served,
            Err(Refusal::UnknownToken) => &self.unknown_token,
            Err(Refusal::WrongPeer) => &self.wrong_address,
            Err(Refusal::Unavailable(_)) => &self.unavailable,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Every sandbox's token and credentials.
#[derive(Debug)]
pub struct CredentialsEndpoint {
    by_token: Mutex<HashMap<String, Arc<Served>>>,
    renew_ahead: Duration,
    outcomes: Outcomes,
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
            outcomes: Outcomes::default(),
        }
    }

    /// How requests ended so far.
    pub fn outcomes(&self) -> &Outcomes {
        &self.outcomes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Served>>> {
        self.by_token.lock().expect("endpoint token lock")
    }

    /// Serves a sandbox's credentials from now on; answers its new token.
    pub fn register(&self, registration: Registration) -> Secret {
        let mut bytes = [0u8; TOKEN_BYTES];
        aws_lc_rs::rand::fill(&mut bytes).expect("the system's random source");
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let served = Arc::new(Served {
            sandbox_id: registration.sandbox_id,
            peer: Mutex::new(registration.peer),
            held: tokio::sync::Mutex::new(Held {
                credentials: registration.credentials,
                since: SystemTime::now(),
            }),
            needed_until: registration.needed_until,
            renew: registration.renew,
        });
        self.lock().insert(digest(&token), served);
        Secret::new(token)
    }

    /// From now on, `sandbox_id`'s token is accepted only from `peer` (its address, known
    /// once its container runs).
    pub fn pin_peer(&self, sandbox_id: &str, peer: IpAddr) {
        for served in self.lock().values() {
            if served.sandbox_id == sandbox_id {
                *served.peer.lock().expect("peer lock") = Some(peer);
            }
        }
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

    /// The credentials for `token` asked from `from` (and the sandbox's id), renewed first
    /// when they are due.
    pub async fn credentials(
        &self,
        token: &str,
        from: IpAddr,
    ) -> Result<(String, Credentials), Refusal> {
        let result = self.answer(token, from).await;
        self.outcomes.count(&result);
        result
    }

    async fn answer(&self, token: &str, from: IpAddr) -> Result<(String, Credentials), Refusal> {
        let key = digest(token);
        let served = self
            .lock()
            .get(&key)
            .cloned()
            .ok_or(Refusal::UnknownToken)?;
        if served
            .peer
            .lock()
            .expect("peer lock")
            .is_some_and(|peer| peer != from)
        {
            return Err(Refusal::WrongPeer);
        }
        // Its own task: an SDK that gives up waiting (they wait seconds) must not cancel a
        // renewal halfway; the next request finds its result.
        let renew_ahead = self.renew_ahead;
        let sandbox_id = served.sandbox_id.clone();
        let (credentials, renewed) = tokio::spawn(fresh(served, renew_ahead))
            .await
            .map_err(|join| Refusal::Unavailable(format!("the renewal task failed: {join}")))??;
        if renewed {
            self.outcomes.renewed.fetch_add(1, Ordering::Relaxed);
        }
        // Revoked while renewing: the sandbox has ended.
        if !self.lock().contains_key(&key) {
            return Err(Refusal::UnknownToken);
        }
        Ok((sandbox_id, credentials))
    }
}

/// The credentials `served` holds, renewed first when due: `(credentials, renewed)`.
async fn fresh(served: Arc<Served>, renew_ahead: Duration) -> Result<(Credentials, bool), Refusal> {
    let mut held = served.held.lock().await;
    let now = SystemTime::now();
    if !due(&held, served.needed_until, now, renew_ahead) {
        return Ok((held.credentials.clone(), false));
    }
    match served.renew.renew().await {
        Ok(renewed) if expiry_after(&renewed, &held.credentials) => {
            *held = Held {
                credentials: renewed,
                since: now,
            };
            Ok((held.credentials.clone(), true))
        }
        // Nothing fresher yet (a shared cache not refreshed): keep what is held.
        Ok(_) => Ok((held.credentials.clone(), false)),
        Err(err) if still_valid(&held.credentials, now) => {
            tracing::warn!(sandbox = %served.sandbox_id, error = %err, "renewing a sandbox's credentials failed; serving the ones still valid");
            Ok((held.credentials.clone(), false))
        }
        Err(err) => {
            tracing::warn!(sandbox = %served.sandbox_id, error = %err, "a sandbox's credentials expired and could not be renewed");
            Err(Refusal::Unavailable(err.to_string()))
        }
    }
}

/// Whether `held` should be renewed now: they expire before the sandbox's deadline and are
/// within the renew-ahead time (or half their life) of expiring.
fn due(held: &Held, needed_until: SystemTime, now: SystemTime, renew_ahead: Duration) -> bool {
    let Some(expiry) = held.credentials.expiry() else {
        return false;
    };
    if expiry >= needed_until {
        return false;
    }
    let life = expiry.duration_since(held.since).unwrap_or_default();
    let ahead = renew_ahead.min(life / 2);
    expiry.duration_since(now).unwrap_or_default() <= ahead
}

fn expiry_after(renewed: &Credentials, held: &Credentials) -> bool {
    match (renewed.expiry(), held.expiry()) {
        (Some(new), Some(old)) => new > old,
        _ => renewed.access_key_id() != held.access_key_id(),
    }
}

fn still_valid(credentials: &Credentials, now: SystemTime) -> bool {
    credentials.expiry().is_none_or(|at| at > now)
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
    struct Counting {
        renewals: AtomicU32,
        lasting: u64,
    }

    #[async_trait]
    impl Renew for Arc<Counting> {
        async fn renew(&self) -> Result<Credentials, CredentialError> {
            let n = self.renewals.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(credentials(&format!("ASIARENEWED{n}"), self.lasting))
        }
    }

    fn counting(lasting: u64) -> Arc<Counting> {
        Arc::new(Counting {
            renewals: AtomicU32::new(0),
            lasting,
        })
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

    fn registration(
        id: &str,
        key: &str,
        lasting: u64,
        needed_for: u64,
        renew: &Arc<Counting>,
    ) -> Registration {
        Registration {
            sandbox_id: id.into(),
            peer: None,
            credentials: credentials(key, lasting),
            needed_until: SystemTime::now() + Duration::from_secs(needed_for),
            renew: Box::new(renew.clone()),
        }
    }

    const HOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    async fn key_of(endpoint: &CredentialsEndpoint, token: &Secret) -> String {
        let (_, got) = endpoint.credentials(token.expose(), HOST).await.unwrap();
        got.access_key_id().to_owned()
    }

    #[tokio::test]
    async fn a_token_serves_its_sandbox_until_revoked() {
        let endpoint = CredentialsEndpoint::default();
        let renew = counting(3600);
        let a = endpoint.register(registration("a", "ASIAA", 3600, 600, &renew));
        let b = endpoint.register(registration("b", "ASIAB", 3600, 600, &renew));
        assert_ne!(a.expose(), b.expose());
        let (id, got) = endpoint.credentials(a.expose(), HOST).await.unwrap();
        assert_eq!((id.as_str(), got.access_key_id()), ("a", "ASIAA"));
        assert_eq!(key_of(&endpoint, &b).await, "ASIAB");
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
        assert_eq!(
            renew.renewals.load(Ordering::SeqCst),
            0,
            "nothing near expiry"
        );
        assert_eq!(
            endpoint.outcomes().counts(),
            [
                ("served", 3),
                ("unknown_token", 2),
                ("wrong_address", 0),
                ("unavailable", 0)
            ]
        );
        let doc = document(&got);
        assert_eq!(doc["AccessKeyId"], "ASIAA");
        assert_eq!(doc["Token"], "token");
        assert!(doc["Expiration"].as_str().unwrap().ends_with('Z'));
    }

    #[tokio::test]
    async fn credentials_due_before_the_deadline_are_renewed_once() {
        let endpoint = CredentialsEndpoint::default();
        let renew = counting(3600);
        // Credentials of 2 s for a sandbox of 2 hours: fresh at first, due past half their
        // life.
        let token = endpoint.register(registration("a", "ASIAOLD", 2, 7200, &renew));
        assert_eq!(key_of(&endpoint, &token).await, "ASIAOLD");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(key_of(&endpoint, &token).await, "ASIARENEWED1");
        assert_eq!(
            key_of(&endpoint, &token).await,
            "ASIARENEWED1",
            "kept until due again"
        );
        assert_eq!(renew.renewals.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn credentials_that_outlive_the_sandbox_are_never_renewed() {
        let endpoint = CredentialsEndpoint::default();
        let renew = counting(3600);
        // 10 minutes left, but the sandbox ends in 5.
        let token = endpoint.register(registration("a", "ASIAOLD", 600, 300, &renew));
        assert_eq!(key_of(&endpoint, &token).await, "ASIAOLD");
        assert_eq!(renew.renewals.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn short_credentials_are_renewed_at_half_their_life_not_at_every_request() {
        let endpoint = CredentialsEndpoint::default();
        // Sessions of 15 minutes (STS's shortest) are all within RENEW_AHEAD: renewing them
        // whenever less than RENEW_AHEAD is left would call STS on every request.
        let renew = counting(900);
        let token = endpoint.register(registration("a", "ASIAFIRST", 900, 7200, &renew));
        for _ in 0..3 {
            assert_eq!(key_of(&endpoint, &token).await, "ASIAFIRST");
        }
        assert_eq!(renew.renewals.load(Ordering::SeqCst), 0);
    }

    #[derive(Debug)]
    struct Failing;

    #[async_trait]
    impl Renew for Failing {
        async fn renew(&self) -> Result<Credentials, CredentialError> {
            Err(CredentialError::UnknownIntegration {
                name: "gone".into(),
                known: String::new(),
            })
        }
    }

    #[tokio::test]
    async fn a_failed_renewal_serves_what_is_still_valid_and_refuses_what_expired() {
        let endpoint = CredentialsEndpoint::default();
        let register = |key: &str, lasting: i64| {
            endpoint.register(Registration {
                sandbox_id: key.into(),
                peer: None,
                credentials: Credentials::new(
                    key,
                    "secret",
                    None,
                    Some(if lasting >= 0 {
                        SystemTime::now() + Duration::from_secs(lasting as u64)
                    } else {
                        SystemTime::now() - Duration::from_secs(lasting.unsigned_abs())
                    }),
                    "test",
                ),
                needed_until: SystemTime::now() + Duration::from_secs(3600),
                renew: Box::new(Failing),
            })
        };
        let valid = register("ASIAVALID", 60);
        let expired = register("ASIAEXPIRED", -1);
        assert_eq!(key_of(&endpoint, &valid).await, "ASIAVALID");
        let refused = endpoint
            .credentials(expired.expose(), HOST)
            .await
            .unwrap_err();
        assert!(matches!(refused, Refusal::Unavailable(_)), "{refused:?}");
        assert_eq!(refused.http_status(), 503);
    }

    #[tokio::test]
    async fn a_token_is_refused_from_another_address_once_pinned() {
        let endpoint = CredentialsEndpoint::default();
        let sandbox: IpAddr = "198.18.100.2".parse().unwrap();
        let other: IpAddr = "198.18.100.3".parse().unwrap();
        let token = endpoint.register(registration("a", "ASIAA", 3600, 600, &counting(3600)));
        endpoint.pin_peer("a", sandbox);
        assert!(endpoint.credentials(token.expose(), sandbox).await.is_ok());
        let refused = endpoint
            .credentials(token.expose(), other)
            .await
            .unwrap_err();
        assert_eq!(refused, Refusal::WrongPeer);
        assert_eq!(refused.http_status(), 403);
    }
}
