//! When to refresh: ahead of expiry with jitter, and exponential backoff after failures.
//!
//! Pure functions of the current state and time, so they are tested without waiting.

use std::time::{Duration, SystemTime};

/// First retry after a failure; doubles per consecutive failure.
pub const DEFAULT_MIN_BACKOFF: Duration = Duration::from_secs(1);
/// Retries never wait longer than this: IMDS or STS outages are usually short.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(300);
/// IMDS answers in milliseconds and STS in well under a second; longer means it is down.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(20);
/// Spreads refreshes of many integrations (and many hosts) over this much time.
pub const DEFAULT_JITTER: Duration = Duration::from_secs(120);
/// Added to the longest sandbox life: time to start a container and hand it the credentials.
pub const START_MARGIN: Duration = Duration::from_secs(5 * 60);

/// How a cache keeps credentials fresh.
#[derive(Debug, Clone, PartialEq)]
pub struct RefreshPolicy {
    /// The background refresh keeps at least this much validity on hand, so the longest
    /// sandbox a caller may ask for never waits on IMDS or STS.
    pub keep_valid_for: Duration,
    /// Random extra lead (0..jitter) added per refresh.
    pub jitter: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Longest one upstream call may take before it counts as failed.
    pub upstream_timeout: Duration,
}

impl RefreshPolicy {
    /// The policy for sandboxes that live at most `max_sandbox_lifetime`.
    pub fn for_sandboxes(max_sandbox_lifetime: Duration) -> Self {
        Self {
            keep_valid_for: max_sandbox_lifetime + START_MARGIN,
            jitter: DEFAULT_JITTER,
            min_backoff: DEFAULT_MIN_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            upstream_timeout: DEFAULT_UPSTREAM_TIMEOUT,
        }
    }
}

/// How long to wait before refreshing credentials that expire at `expires_at`.
/// `jitter_fraction` in `0.0..=1.0` picks this refresh's share of the policy's jitter.
/// Zero means now.
pub fn until_refresh(
    expires_at: SystemTime,
    now: SystemTime,
    policy: &RefreshPolicy,
    jitter_fraction: f64,
) -> Duration {
    let lead = policy.keep_valid_for + policy.jitter.mul_f64(jitter_fraction.clamp(0.0, 1.0));
    let refresh_at = expires_at
        .checked_sub(lead)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    refresh_at.duration_since(now).unwrap_or(Duration::ZERO)
}

/// How long to wait after `attempts` consecutive unsuccessful attempts (at least 1):
/// exponential, capped, with "equal jitter" (half fixed, half random) so retries of many
/// integrations spread out but never retry at once.
pub fn backoff(attempts: u32, policy: &RefreshPolicy, random: f64) -> Duration {
    let exponent = attempts.saturating_sub(1).min(20);
    let base = policy
        .min_backoff
        .saturating_mul(1u32 << exponent)
        .min(policy.max_backoff);
    base / 2 + (base / 2).mul_f64(random.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RefreshPolicy {
        RefreshPolicy {
            keep_valid_for: Duration::from_secs(20 * 60),
            jitter: Duration::from_secs(60),
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            upstream_timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn refreshes_ahead_of_expiry_by_the_lead_plus_jitter() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let expires = now + Duration::from_secs(3600);
        assert_eq!(
            until_refresh(expires, now, &policy(), 0.0),
            Duration::from_secs(40 * 60)
        );
        assert_eq!(
            until_refresh(expires, now, &policy(), 1.0),
            Duration::from_secs(39 * 60)
        );
        let half = until_refresh(expires, now, &policy(), 0.5);
        assert_eq!(half, Duration::from_secs(39 * 60 + 30));
    }

    #[test]
    fn refreshes_at_once_inside_the_lead() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let expires = now + Duration::from_secs(10 * 60);
        assert_eq!(until_refresh(expires, now, &policy(), 0.3), Duration::ZERO);
        let expired = now - Duration::from_secs(5);
        assert_eq!(until_refresh(expired, now, &policy(), 0.3), Duration::ZERO);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = policy();
        assert_eq!(backoff(1, &p, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(2, &p, 1.0), Duration::from_secs(2));
        assert_eq!(backoff(4, &p, 1.0), Duration::from_secs(8));
        assert_eq!(backoff(30, &p, 1.0), Duration::from_secs(300));
        assert_eq!(backoff(4, &p, 0.0), Duration::from_secs(4));
        let jittered = backoff(4, &p, 0.25);
        assert_eq!(jittered, Duration::from_secs(5));
    }
}
