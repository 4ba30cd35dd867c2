//! The broker's metrics, for the API's `/metrics`: refreshes, failures by kind, upstream
//! calls and seconds to expiry, per integration.
//!
//! The counts live in each cache's state; [`register`] copies a snapshot into a
//! prometheus-client registry at scrape time, so the numbers are always the state's own.
//! Labels carry integration names and failure kinds only — never a credential.

use std::time::SystemTime;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::cache::{CredentialState, Health};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IntegrationLabel {
    integration: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    integration: String,
    kind: String,
}

/// Adds the credential metrics of `states` to `registry` (names get the registry's prefix,
/// `autoheal_` for the API's registry).
pub fn register(registry: &mut Registry, states: &[CredentialState], now: SystemTime) {
    let refreshes = Family::<IntegrationLabel, Counter>::default();
    let upstream = Family::<IntegrationLabel, Counter>::default();
    let failures = Family::<FailureLabels, Counter>::default();
    let expiry = Family::<IntegrationLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    let healthy = Family::<IntegrationLabel, Gauge>::default();
    let degraded = Family::<IntegrationLabel, Gauge>::default();
    for state in states {
        let label = IntegrationLabel {
            integration: state.integration.clone(),
        };
        refreshes.get_or_create(&label).inc_by(state.refreshes);
        upstream.get_or_create(&label).inc_by(state.upstream_calls);
        for (kind, count) in &state.failures {
            failures
                .get_or_create(&FailureLabels {
                    integration: state.integration.clone(),
                    kind: kind.to_string(),
                })
                .inc_by(*count);
        }
        if let Some(seconds) = state.seconds_to_expiry(now) {
            expiry.get_or_create(&label).set(seconds);
        }
        healthy
            .get_or_create(&label)
            .set(i64::from(state.is_valid(now)));
        degraded
            .get_or_create(&label)
            .set(i64::from(state.health(now) == Health::Degraded));
    }
    registry.register(
        "credential_refreshes",
        "Successful credential refreshes, per integration",
        refreshes,
    );
    registry.register(
        "credential_upstream_calls",
        "Calls to the credential source (IMDS, STS), successful or not",
        upstream,
    );
    registry.register(
        "credential_refresh_failures",
        "Failed credential refreshes, by integration and kind of failure",
        failures,
    );
    registry.register(
        "credential_seconds_to_expiry",
        "Seconds until the credentials on hand expire (negative once expired)",
        expiry,
    );
    registry.register(
        "credential_valid",
        "1 while the integration holds unexpired credentials",
        healthy,
    );
    registry.register(
        "credential_degraded",
        "1 while still-valid credentials are served but the last refresh failed",
        degraded,
    );
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::credentials::FailureKind;

    #[test]
    fn renders_counts_failures_and_expiry_per_integration() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let state = CredentialState {
            integration: "prod".into(),
            expires_at: Some(now + Duration::from_secs(1200)),
            last_refresh: Some(now),
            last_error: None,
            refreshes: 3,
            upstream_calls: 5,
            failures: BTreeMap::from([(FailureKind::ImdsUnreachable, 2)]),
        };
        let mut registry = Registry::with_prefix("autoheal");
        register(&mut registry, &[state], now);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "autoheal_credential_refreshes_total{integration=\"prod\"} 3",
            "autoheal_credential_upstream_calls_total{integration=\"prod\"} 5",
            "autoheal_credential_refresh_failures_total{integration=\"prod\",kind=\"imds_unreachable\"} 2",
            "autoheal_credential_seconds_to_expiry{integration=\"prod\"} 1200.0",
            "autoheal_credential_valid{integration=\"prod\"} 1",
            "autoheal_credential_degraded{integration=\"prod\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
    }
}
