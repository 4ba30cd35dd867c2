//! `/healthz` (the process serves), `/readyz` (credentials and Docker are there), and
//! `/metrics` (Prometheus text, names prefixed `autoheal_`).

use std::time::SystemTime;

use hyper::{Response, StatusCode};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::json;

use super::AppState;
use super::response::{Body, json, text};

pub fn healthz() -> Response<Body> {
    json(StatusCode::OK, &json!({"status": "ok"}))
}

/// 200 when every integration holds unexpired credentials and Docker answers; else 503
/// with every reason.
pub async fn readyz(state: &AppState) -> Response<Body> {
    let now = SystemTime::now();
    let mut reasons = Vec::new();
    for credentials in state.live.current().broker.states() {
        if !credentials.is_valid(now) {
            let why = credentials
                .last_error
                .as_ref()
                .map(|e| format!("{} ({}). Hint: {}", e.message, e.kind, e.hint))
                .unwrap_or_else(|| "no credentials yet".into());
            reasons.push(format!("integration {}: {why}", credentials.integration));
        }
    }
    if let Err(err) = state.sandboxes.backend().ping().await {
        reasons.push(err.to_string());
    }
    if reasons.is_empty() {
        json(StatusCode::OK, &json!({"ready": true}))
    } else {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"ready": false, "reasons": reasons}),
        )
    }
}

pub fn metrics(state: &AppState) -> Response<Body> {
    let mut registry = Registry::with_prefix("autoheal");
    crate::credentials::metrics::register(
        &mut registry,
        &state.live.current().broker.states(),
        SystemTime::now(),
    );
    let running: Gauge = Gauge::default();
    running.set(state.sandboxes.running() as i64);
    registry.register("sandboxes_running", "Sandboxes running now", running);
    let mut body = String::new();
    prometheus_client::encoding::text::encode(&mut body, &registry).expect("metrics encode");
    text(
        StatusCode::OK,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        body,
    )
}
