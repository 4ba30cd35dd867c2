//! Unit tests of the cache's lifetime logic, on a manual clock with a counting source built
//! with aws-credential-types' own `provide_credentials_fn`. The real sources (IMDS emulator,
//! moto's STS) are exercised in `tests/credentials.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::credential_fn::provide_credentials_fn;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::provider::error::CredentialsError;

use super::clock::{Clock, ManualClock};
use super::*;
use crate::config::load_from_str;

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

/// A source whose answers the test controls, counting its calls.
#[derive(Clone)]
struct FakeSource {
    clock: ManualClock,
    calls: Arc<AtomicU64>,
    ttl_secs: Arc<AtomicU64>,
    failing: Arc<AtomicBool>,
    /// Answers credentials that expired ten minutes ago (IMDS during a rotation outage).
    stale: Arc<AtomicBool>,
    /// Each call takes this long (lets concurrent callers pile up).
    latency: Duration,
}

impl FakeSource {
    fn new(clock: &ManualClock) -> Self {
        Self {
            clock: clock.clone(),
            calls: Arc::new(AtomicU64::new(0)),
            ttl_secs: Arc::new(AtomicU64::new(3600)),
            failing: Arc::new(AtomicBool::new(false)),
            stale: Arc::new(AtomicBool::new(false)),
            latency: Duration::from_millis(20),
        }
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    fn provider(&self) -> SharedCredentialsProvider {
        let source = self.clone();
        SharedCredentialsProvider::new(provide_credentials_fn(move || {
            let source = source.clone();
            async move {
                let n = source.calls.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::time::sleep(source.latency).await;
                if source.failing.load(Ordering::SeqCst) {
                    return Err(CredentialsError::provider_error(
                        "failed to load IMDS session token: io error: connection refused",
                    ));
                }
                let ttl = Duration::from_secs(source.ttl_secs.load(Ordering::SeqCst));
                let expiry = if source.stale.load(Ordering::SeqCst) {
                    source.clock.now() - Duration::from_secs(600)
                } else {
                    source.clock.now() + ttl
                };
                Ok(Credentials::new(
                    format!("ASIAFAKE{n:012}"),
                    SECRET,
                    Some("session-token".into()),
                    Some(expiry),
                    "fake",
                ))
            }
        }))
    }
}

fn integration() -> crate::config::IntegrationConfig {
    load_from_str(
        "[[integration]]\nname = \"prod\"\naccount_id = \"123456789012\"\nauth = \"instance_role\"\n",
    )
    .unwrap()
    .integrations
    .remove(0)
}

fn policy() -> RefreshPolicy {
    RefreshPolicy {
        keep_valid_for: Duration::from_secs(20 * 60),
        jitter: Duration::from_secs(60),
        min_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(300),
        upstream_timeout: Duration::from_secs(5),
    }
}

fn setup() -> (ManualClock, FakeSource, Arc<CredentialCache>) {
    let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000));
    let source = FakeSource::new(&clock);
    let cache = Arc::new(CredentialCache::new(
        integration(),
        source.provider(),
        Arc::new(clock.clone()),
        policy(),
    ));
    (clock, source, cache)
}

#[tokio::test]
async fn answers_from_the_cache_while_the_credentials_last_long_enough() {
    let (clock, source, cache) = setup();
    let first = cache.valid_for(Duration::from_secs(900)).await.unwrap();
    assert_eq!(source.calls(), 1);
    clock.advance(Duration::from_secs(30 * 60));
    let again = cache.valid_for(Duration::from_secs(900)).await.unwrap();
    assert_eq!(again.access_key_id(), first.access_key_id());
    assert_eq!(source.calls(), 1, "30 minutes left is enough for 15");
}

#[tokio::test]
async fn refreshes_first_when_the_credentials_on_hand_are_too_short_lived() {
    let (clock, source, cache) = setup();
    let first = cache.valid_for(Duration::from_secs(900)).await.unwrap();
    clock.advance(Duration::from_secs(50 * 60)); // 10 minutes left
    let second = cache.valid_for(Duration::from_secs(900)).await.unwrap();
    assert_ne!(second.access_key_id(), first.access_key_id());
    assert_eq!(source.calls(), 2);
    let left = second
        .expiry()
        .unwrap()
        .duration_since(clock.now())
        .unwrap();
    assert!(left >= Duration::from_secs(900));
}

#[tokio::test]
async fn credentials_served_already_expired_are_refused_and_the_state_says_degraded() {
    let (clock, source, cache) = setup();
    let good = cache.valid_for(Duration::from_secs(900)).await.unwrap();
    source.stale.store(true, Ordering::SeqCst);
    clock.advance(Duration::from_secs(50 * 60)); // 10 minutes left on the good ones

    let err = cache.valid_for(Duration::from_secs(900)).await.unwrap_err();
    assert_eq!(err.kind(), Some(FailureKind::ExpiredCredentials), "{err}");
    assert!(err.to_string().contains("expired at"), "{err}");
    let state = cache.state();
    assert_eq!(state.health(clock.now()), Health::Degraded);
    assert_eq!(
        state.expires_at,
        good.expiry(),
        "the real expiry, never an invented one"
    );
    let still = cache.valid_for(Duration::from_secs(300)).await.unwrap();
    assert_eq!(
        still.access_key_id(),
        good.access_key_id(),
        "static stability"
    );

    clock.advance(Duration::from_secs(11 * 60));
    assert_eq!(cache.state().health(clock.now()), Health::Unavailable);
    assert!(cache.valid_for(Duration::from_secs(60)).await.is_err());

    source.stale.store(false, Ordering::SeqCst);
    cache.valid_for(Duration::from_secs(900)).await.unwrap();
    assert_eq!(cache.state().health(clock.now()), Health::Healthy);
}

#[tokio::test]
async fn two_hundred_concurrent_callers_cause_one_upstream_call() {
    let (_clock, source, cache) = setup();
    let callers = (0..200).map(|_| {
        let cache = cache.clone();
        tokio::spawn(async move { cache.valid_for(Duration::from_secs(600)).await })
    });
    let answers = futures_util::future::join_all(callers).await;
    let keys: std::collections::BTreeSet<_> = answers
        .into_iter()
        .map(|a| a.unwrap().unwrap().access_key_id().to_owned())
        .collect();
    assert_eq!(keys.len(), 1);
    assert_eq!(source.calls(), 1);
    assert_eq!(cache.state().upstream_calls, 1);
}

#[tokio::test]
async fn concurrent_callers_share_one_failure_too() {
    let (_clock, source, cache) = setup();
    source.failing.store(true, Ordering::SeqCst);
    let callers = (0..50).map(|_| {
        let cache = cache.clone();
        tokio::spawn(async move { cache.valid_for(Duration::from_secs(600)).await })
    });
    for answer in futures_util::future::join_all(callers).await {
        let err = answer.unwrap().unwrap_err();
        assert_eq!(err.kind(), Some(FailureKind::ImdsUnreachable), "{err}");
    }
    assert_eq!(source.calls(), 1);
}

#[tokio::test]
async fn keeps_serving_still_valid_credentials_while_the_source_is_down() {
    let (clock, source, cache) = setup();
    let first = cache.valid_for(Duration::from_secs(900)).await.unwrap();
    source.failing.store(true, Ordering::SeqCst);
    clock.advance(Duration::from_secs(45 * 60)); // 15 minutes left
    let refresh = cache.refresh().await.unwrap_err();
    assert_eq!(refresh.kind, FailureKind::ImdsUnreachable);

    // Static stability: a 10-minute sandbox still gets the old, still-valid credentials.
    let served = cache.valid_for(Duration::from_secs(600)).await.unwrap();
    assert_eq!(served.access_key_id(), first.access_key_id());

    // A 20-minute one cannot: the error says why, how long is left, and what failed.
    let err = cache
        .valid_for(Duration::from_secs(1200))
        .await
        .unwrap_err();
    match &err {
        CredentialError::ExpiresTooSoon {
            remaining,
            needed,
            last_failure,
            ..
        } => {
            assert_eq!(*remaining, Duration::from_secs(900));
            assert_eq!(*needed, Duration::from_secs(1200));
            assert_eq!(
                last_failure.as_ref().unwrap().kind,
                FailureKind::ImdsUnreachable
            );
        }
        other => panic!("expected ExpiresTooSoon, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("900s") && text.contains("1200s"), "{text}");

    let state = cache.state();
    assert_eq!(state.failures[&FailureKind::ImdsUnreachable], 2);
    assert!(state.last_error.is_some());

    // The source comes back: the next caller gets fresh credentials, the error clears.
    source.failing.store(false, Ordering::SeqCst);
    let fresh = cache.valid_for(Duration::from_secs(1200)).await.unwrap();
    assert_ne!(fresh.access_key_id(), first.access_key_id());
    assert!(cache.state().last_error.is_none());
}

#[tokio::test]
async fn never_hands_out_credentials_that_expire_too_soon() {
    let (_clock, source, cache) = setup();
    source.ttl_secs.store(300, Ordering::SeqCst); // the source only gives 5 minutes
    let err = cache.valid_for(Duration::from_secs(900)).await.unwrap_err();
    assert!(
        matches!(err, CredentialError::ExpiresTooSoon { .. }),
        "{err:?}"
    );
    assert!(cache.valid_for(Duration::from_secs(120)).await.is_ok());
}

#[tokio::test]
async fn without_any_credentials_the_error_carries_the_hint() {
    let (_clock, source, cache) = setup();
    source.failing.store(true, Ordering::SeqCst);
    let err = cache.valid_for(Duration::from_secs(60)).await.unwrap_err();
    match err {
        CredentialError::Unavailable { failure, .. } => {
            assert_eq!(failure.kind, FailureKind::ImdsUnreachable);
            assert!(failure.hint.contains("metadata"), "{}", failure.hint);
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn the_background_schedule_refreshes_ahead_of_expiry_and_backs_off() {
    let (clock, source, cache) = setup();
    assert_eq!(
        cache.next_wait(),
        Duration::ZERO,
        "nothing on hand: fetch now"
    );
    cache.refresh().await.unwrap();
    // 60 min credentials, 20 min lead, up to 1 min jitter: between 39 and 40 minutes.
    let wait = cache.next_wait();
    assert!(
        (Duration::from_secs(39 * 60)..=Duration::from_secs(40 * 60)).contains(&wait),
        "{wait:?}"
    );
    clock.advance(wait);
    assert_eq!(cache.next_wait(), Duration::ZERO);

    source.failing.store(true, Ordering::SeqCst);
    let mut waits = Vec::new();
    for _ in 0..4 {
        let _ = cache.refresh().await;
        waits.push(cache.next_wait());
    }
    // Equal jitter: attempt n waits between 2^(n-1)/2 and 2^(n-1) seconds.
    for (n, wait) in waits.iter().enumerate() {
        let base = Duration::from_secs(1 << n);
        assert!(
            *wait >= base / 2 && *wait <= base,
            "attempt {}: {wait:?}",
            n + 1
        );
    }
}

#[tokio::test]
async fn the_broker_routes_by_integration_and_names_the_known_ones() {
    let (_clock, source, cache) = setup();
    let _ = source;
    let broker = CredentialBroker::with_caches(vec![Arc::try_unwrap(cache).unwrap()]);
    assert!(
        broker
            .credentials_valid_for("prod", Duration::from_secs(60))
            .await
            .is_ok()
    );
    let err = broker
        .credentials_valid_for("staging", Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("configured: prod"), "{err}");
    assert_eq!(broker.states()[0].integration, "prod");
}

#[tokio::test]
async fn no_secret_reaches_errors_states_or_debug_output() {
    let (_clock, source, cache) = setup();
    let credentials = cache.valid_for(Duration::from_secs(60)).await.unwrap();
    source.failing.store(true, Ordering::SeqCst);
    let _ = cache.refresh().await;
    let err = cache
        .valid_for(Duration::from_secs(4000))
        .await
        .unwrap_err();
    let state = serde_json::to_string(&cache.state()).unwrap();
    for text in [
        format!("{credentials:?}"),
        format!("{err}"),
        format!("{err:?}"),
        state,
        format!("{cache:?}"),
    ] {
        assert!(!text.contains(SECRET), "secret leaked: {text}");
        assert!(!text.contains("session-token"), "token leaked: {text}");
    }
}
