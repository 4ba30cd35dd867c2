//! `/healthz` (the process serves), `/readyz` (credentials and Docker are there), and
//! `/metrics` (Prometheus text, names prefixed `autoheal_`).
//!
//! These three answer without a token (probes and scrapers have none), so they say *what*
//! is wrong by integration name and failure kind only: no account ID, role ARN or STS
//! message — those are under the authenticated `GET /v1/integrations`.

use std::time::SystemTime;

use hyper::{Response, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::json;

use super::AppState;
use super::response::{Body, json, text};
use crate::credentials::{Health, rfc3339};
use crate::sandbox::credentials_endpoint::CredentialsEndpoint;

pub fn healthz() -> Response<Body> {
    json(StatusCode::OK, &json!({"status": "ok"}))
}

/// 200 when every integration holds unexpired credentials and Docker answers (with
/// `degraded` listing integrations served from still-valid credentials while their source
/// fails); else 503 with every reason.
pub async fn readyz(state: &AppState) -> Response<Body> {
    let now = SystemTime::now();
    let mut reasons = Vec::new();
    let mut degraded = Vec::new();
    for credentials in state.live.current().broker.states() {
        let kind = credentials
            .last_error
            .as_ref()
            .map(|e| e.kind.to_string())
            .unwrap_or_else(|| "not fetched yet".into());
        match credentials.health(now) {
            Health::Healthy => {}
            Health::Degraded => degraded.push(format!(
                "integration {}: the last refresh failed ({kind}); serving credentials valid until {}",
                credentials.integration,
                credentials.expires_at.map(rfc3339).unwrap_or_default()
            )),
            Health::Unavailable => reasons.push(format!(
                "integration {}: no valid credentials ({kind}); details: GET /v1/integrations or `autoheal check`",
                credentials.integration
            )),
        }
    }
    if state.sandboxes.backend().ping().await.is_err() {
        reasons.push(
            "the Docker engine does not answer: sandboxes cannot start (is it running, and its socket reachable?)"
                .to_owned(),
        );
    }
    let mut answer = json!({"ready": reasons.is_empty()});
    if !reasons.is_empty() {
        answer["reasons"] = json!(reasons);
    }
    if !degraded.is_empty() {
        answer["degraded"] = json!(degraded);
    }
    let status = if reasons.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(status, &answer)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabel {
    decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// Registers a gauge holding `value` (a count taken when /metrics is asked).
fn gauge(registry: &mut Registry, name: &str, help: &str, value: usize) {
    let gauge: Gauge = Gauge::default();
    gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
    registry.register(name, help, gauge);
}

/// The credentials endpoint's tokens in force and how its requests ended.
fn register_credentials_endpoint(registry: &mut Registry, endpoint: &CredentialsEndpoint) {
    gauge(
        registry,
        "credentials_endpoint_tokens",
        "Sandbox tokens the credentials endpoint accepts now (one per running sandbox with credentials = endpoint)",
        endpoint.len(),
    );
    let requests = Family::<OutcomeLabel, Counter>::default();
    for (outcome, count) in endpoint.outcomes().counts() {
        requests
            .get_or_create(&OutcomeLabel { outcome })
            .inc_by(count);
    }
    registry.register(
        "credentials_endpoint_requests",
        "Requests to the credentials endpoint by outcome: served, unknown_token (made up, or its sandbox ended), wrong_address (another sandbox's token), unavailable",
        requests,
    );
    let renewals: Counter = Counter::default();
    renewals.inc_by(
        endpoint
            .outcomes()
            .renewed
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    registry.register(
        "credentials_endpoint_renewals",
        "Sandbox credentials renewed ahead of expiry by the endpoint",
        renewals,
    );
}

pub fn metrics(state: &AppState) -> Response<Body> {
    let mut registry = Registry::with_prefix("autoheal");
    crate::credentials::metrics::register(
        &mut registry,
        &state.live.current().broker.states(),
        SystemTime::now(),
    );
    gauge(
        &mut registry,
        "sandboxes_running",
        "Sandboxes starting or running now (at most sandbox.max_running)",
        state.sandboxes.running(),
    );
    gauge(
        &mut registry,
        "sandboxes_known",
        "Sandboxes remembered, running and finished (finished ones at most sandbox.history)",
        state.sandboxes.known(),
    );
    gauge(
        &mut registry,
        "mcp_sessions_open",
        "MCP sessions open at /v1/mcp (each one a running sandbox, counted in sandboxes_running)",
        state.mcp.open_sessions(),
    );
    register_credentials_endpoint(&mut registry, state.sandboxes.credentials_endpoint());
    let egress = Family::<DecisionLabel, Counter>::default();
    let (allowed, refused) = state.sandboxes.egress().totals();
    for (decision, count) in [("allowed", allowed), ("refused", refused)] {
        egress
            .get_or_create(&DecisionLabel { decision })
            .inc_by(count);
    }
    registry.register(
        "egress_connections",
        "Connections bridge sandboxes asked of the egress proxy, by decision (allowed: on the allowlist and connected; refused: answered 403 with the reason)",
        egress,
    );
    let fenced: Counter = Counter::default();
    fenced.inc_by(state.sandboxes.egress().firewall_refusals());
    registry.register(
        "egress_firewall_refusals",
        "Packets from bridge sandboxes the egress fence refused and reported (every one is refused; at most 20 a second per chain and subnet are reported)",
        fenced,
    );
    let mut body = String::new();
    prometheus_client::encoding::text::encode(&mut body, &registry).expect("metrics encode");
    text(
        StatusCode::OK,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        body,
    )
}
