//! The lifetime-aware cache in front of one integration's credential source.
//!
//! The SDK's own identity cache refreshes ten seconds before expiry — useless for credentials
//! copied into a container that lives fifteen minutes. This cache instead:
//! - answers [`CredentialCache::valid_for`] only with credentials that stay valid at least as
//!   long as the caller asks, refreshing first when needed;
//! - makes one upstream call however many callers wait (single flight);
//! - keeps serving still-valid credentials while the source fails (static stability), and
//!   records what failed;
//! - refreshes in the background ahead of expiry with jitter, backing off exponentially
//!   after failures ([`CredentialCache::run_refresher`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use serde::Serialize;

use super::clock::Clock;
use super::error::{CredentialError, FailureKind, SourceFailure, classify, hint, timed_out};
use super::schedule::{RefreshPolicy, backoff, until_refresh};
use crate::config::IntegrationConfig;

/// Background wait when credentials never expire (static keys from the environment).
const STATIC_RECHECK: Duration = Duration::from_secs(3600);

#[derive(Debug, Default)]
struct CacheState {
    current: Option<Credentials>,
    last_refresh: Option<SystemTime>,
    last_failure: Option<SourceFailure>,
    /// Attempts in a row that failed, or succeeded without credentials valid for the
    /// policy's lead (the source had nothing fresher yet). Drives the backoff.
    unsuccessful_in_a_row: u32,
    /// Completed upstream calls; doubles as the single-flight generation.
    upstream_calls: u64,
    refreshes: u64,
    failures: BTreeMap<FailureKind, u64>,
    /// This credential's share of the refresh jitter, drawn once per credential.
    jitter_fraction: f64,
}

/// What the daemon shows about one integration's credentials. Holds no secret.
#[derive(Debug, Clone, Serialize)]
pub struct CredentialState {
    pub integration: String,
    /// When the credentials on hand expire (RFC 3339), if there are any and they expire.
    #[serde(serialize_with = "serialize_time")]
    pub expires_at: Option<SystemTime>,
    #[serde(serialize_with = "serialize_time")]
    pub last_refresh: Option<SystemTime>,
    pub last_error: Option<SourceFailure>,
    pub refreshes: u64,
    pub upstream_calls: u64,
    pub failures: BTreeMap<FailureKind, u64>,
}

/// How an integration's credentials stand, for readiness and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Valid credentials, and the last refresh worked.
    Healthy,
    /// Still-valid credentials are served, but the last refresh failed (static stability).
    Degraded,
    /// No valid credentials.
    Unavailable,
}

impl CredentialState {
    /// True while the integration holds credentials that have not expired (credentials
    /// without an expiry count once fetched).
    pub fn is_valid(&self, now: SystemTime) -> bool {
        match self.expires_at {
            Some(at) => at > now,
            None => self.refreshes > 0,
        }
    }

    /// Healthy, degraded (serving still-valid credentials while the source fails), or
    /// unavailable.
    pub fn health(&self, now: SystemTime) -> Health {
        match (self.is_valid(now), &self.last_error) {
            (false, _) => Health::Unavailable,
            (true, Some(_)) => Health::Degraded,
            (true, None) => Health::Healthy,
        }
    }

    /// Seconds until the credentials on hand expire (negative once expired).
    pub fn seconds_to_expiry(&self, now: SystemTime) -> Option<f64> {
        self.expires_at.map(|at| match at.duration_since(now) {
            Ok(left) => left.as_secs_f64(),
            Err(past) => -past.duration().as_secs_f64(),
        })
    }
}

/// The failure of a source that answered with credentials already past their expiry.
fn expired(
    expiry: Option<SystemTime>,
    now: SystemTime,
    integration: &IntegrationConfig,
) -> SourceFailure {
    let at = expiry.unwrap_or(now);
    let ago = now.duration_since(at).unwrap_or_default().as_secs();
    SourceFailure {
        kind: FailureKind::ExpiredCredentials,
        message: format!(
            "the credential source answered with credentials that expired at {} ({ago}s ago)",
            rfc3339(at)
        ),
        hint: hint(FailureKind::ExpiredCredentials, integration),
    }
}

/// RFC 3339 UTC, the form every answer of ours uses.
pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

fn serialize_time<S: serde::Serializer>(
    time: &Option<SystemTime>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match time {
        Some(t) => serializer.serialize_str(&rfc3339(*t)),
        None => serializer.serialize_none(),
    }
}

/// One integration's credentials, kept fresh.
#[derive(Debug)]
pub struct CredentialCache {
    integration: IntegrationConfig,
    provider: SharedCredentialsProvider,
    clock: Arc<dyn Clock>,
    policy: RefreshPolicy,
    state: Mutex<CacheState>,
    /// Held across the one upstream call in flight.
    refresh_lock: tokio::sync::Mutex<()>,
}

impl CredentialCache {
    pub fn new(
        integration: IntegrationConfig,
        provider: SharedCredentialsProvider,
        clock: Arc<dyn Clock>,
        policy: RefreshPolicy,
    ) -> Self {
        Self {
            integration,
            provider,
            clock,
            policy,
            state: Mutex::new(CacheState::default()),
            refresh_lock: tokio::sync::Mutex::new(()),
        }
    }

    pub fn integration(&self) -> &IntegrationConfig {
        &self.integration
    }

    pub fn policy(&self) -> &RefreshPolicy {
        &self.policy
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheState> {
        self.state.lock().expect("credential cache state lock")
    }

    /// Credentials valid for at least `needed` from now, refreshing first when the ones on
    /// hand are too short-lived. Never hands out credentials that expire sooner.
    pub async fn valid_for(&self, needed: Duration) -> Result<Credentials, CredentialError> {
        if let Some(credentials) = self.usable(needed) {
            return Ok(credentials);
        }
        let seen = self.lock().upstream_calls;
        {
            let _in_flight = self.refresh_lock.lock().await;
            // Whoever held the lock before us may have refreshed already: one upstream call
            // serves every caller that was waiting for it, success or failure.
            if self.lock().upstream_calls == seen && self.usable(needed).is_none() {
                // The outcome lands in the state; `usable` below decides what the caller gets.
                let _ = self.call_upstream().await;
            }
        }
        self.usable(needed).ok_or_else(|| self.shortfall(needed))
    }

    /// Refreshes now (the background task and `prime` use this), single-flight with callers.
    pub async fn refresh(&self) -> Result<(), SourceFailure> {
        let _in_flight = self.refresh_lock.lock().await;
        self.call_upstream().await
    }

    /// A snapshot for the API, metrics and `check`.
    pub fn state(&self) -> CredentialState {
        let state = self.lock();
        CredentialState {
            integration: self.integration.name.clone(),
            expires_at: state.current.as_ref().and_then(|c| c.expiry()),
            last_refresh: state.last_refresh,
            last_error: state.last_failure.clone(),
            refreshes: state.refreshes,
            upstream_calls: state.upstream_calls,
            failures: state.failures.clone(),
        }
    }

    /// Refreshes ahead of expiry until the task is aborted.
    pub async fn run_refresher(self: Arc<Self>) {
        loop {
            let wait = self.next_wait();
            tracing::debug!(integration = %self.integration.name, wait_s = wait.as_secs(), "next credential refresh");
            tokio::time::sleep(wait).await;
            let _ = self.refresh().await;
        }
    }

    /// How long the background task waits before its next attempt.
    pub fn next_wait(&self) -> Duration {
        let state = self.lock();
        if state.unsuccessful_in_a_row > 0 {
            return backoff(state.unsuccessful_in_a_row, &self.policy, fastrand::f64());
        }
        match state.current.as_ref() {
            None => Duration::ZERO,
            Some(credentials) => match credentials.expiry() {
                None => STATIC_RECHECK,
                Some(expiry) => until_refresh(
                    expiry,
                    self.clock.now(),
                    &self.policy,
                    state.jitter_fraction,
                ),
            },
        }
    }

    fn remaining(&self, credentials: &Credentials) -> Option<Duration> {
        credentials
            .expiry()
            .map(|expiry| expiry.duration_since(self.clock.now()).unwrap_or_default())
    }

    fn usable(&self, needed: Duration) -> Option<Credentials> {
        let state = self.lock();
        let credentials = state.current.as_ref()?;
        match self.remaining(credentials) {
            None => Some(credentials.clone()),
            Some(left) if left >= needed && !left.is_zero() => Some(credentials.clone()),
            Some(_) => None,
        }
    }

    /// One upstream call; the caller holds `refresh_lock`.
    async fn call_upstream(&self) -> Result<(), SourceFailure> {
        let outcome = tokio::time::timeout(
            self.policy.upstream_timeout,
            self.provider.provide_credentials(),
        )
        .await;
        let mut state = self.lock();
        state.upstream_calls += 1;
        let failure = match outcome {
            Ok(Ok(stale)) if stale.expiry().is_some_and(|at| at <= self.clock.now()) => {
                expired(stale.expiry(), self.clock.now(), &self.integration)
            }
            Ok(Ok(fresh)) => {
                let now = self.clock.now();
                let keeps_newer = match (
                    state.current.as_ref().and_then(|c| c.expiry()),
                    fresh.expiry(),
                ) {
                    (Some(old), Some(new)) => new >= old,
                    _ => true,
                };
                if keeps_newer {
                    state.current = Some(fresh);
                    state.jitter_fraction = fastrand::f64();
                }
                state.last_refresh = Some(now);
                state.last_failure = None;
                state.refreshes += 1;
                let lasting = state
                    .current
                    .as_ref()
                    .and_then(|c| self.remaining(c))
                    .is_none_or(|left| left >= self.policy.keep_valid_for);
                state.unsuccessful_in_a_row = if lasting {
                    0
                } else {
                    state.unsuccessful_in_a_row + 1
                };
                let expires_at = state
                    .current
                    .as_ref()
                    .and_then(|c| c.expiry())
                    .map(rfc3339)
                    .unwrap_or_else(|| "never".into());
                tracing::info!(integration = %self.integration.name, %expires_at, "credentials refreshed");
                return Ok(());
            }
            Ok(Err(err)) => classify(&err, &self.integration),
            Err(_elapsed) => timed_out(self.policy.upstream_timeout, &self.integration),
        };
        state.unsuccessful_in_a_row += 1;
        *state.failures.entry(failure.kind).or_default() += 1;
        state.last_failure = Some(failure.clone());
        let still_valid = state.current.as_ref().and_then(|c| self.remaining(c));
        tracing::warn!(
            integration = %self.integration.name,
            kind = %failure.kind,
            still_valid_s = still_valid.map(|d| d.as_secs()),
            error = %failure.message,
            "credential refresh failed"
        );
        Err(failure)
    }

    /// The error for a caller whose need the credentials on hand cannot meet.
    fn shortfall(&self, needed: Duration) -> CredentialError {
        let state = self.lock();
        let name = self.integration.name.clone();
        match state.current.as_ref().and_then(|c| self.remaining(c)) {
            Some(remaining) if !remaining.is_zero() => CredentialError::ExpiresTooSoon {
                integration: name,
                remaining,
                needed,
                last_failure: state.last_failure.clone().map(Box::new),
                advice: self.advice(needed),
            },
            _ => CredentialError::Unavailable {
                integration: name,
                failure: Box::new(state.last_failure.clone().unwrap_or_else(|| {
                    SourceFailure {
                        kind: FailureKind::Other,
                        message:
                            "the credential source returned credentials that have already expired"
                                .into(),
                        hint: "check the host's clock (NTP) and the credential source".into(),
                    }
                })),
            },
        }
    }

    fn advice(&self, needed: Duration) -> String {
        let session = self.integration.session_duration;
        if self.integration.role_arn.is_some() && needed > session {
            format!(
                "assumed-role sessions last {} (session_duration), so nothing can stay valid for {}: \
                 ask for a shorter sandbox or raise session_duration",
                humantime::format_duration(session),
                humantime::format_duration(needed)
            )
        } else {
            "the source has nothing fresher yet (EC2 rotates instance-role credentials well before \
             they expire); retry in a minute or ask for a shorter sandbox"
                .into()
        }
    }
}
