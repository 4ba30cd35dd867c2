//! `GET /v1/integrations` and `POST /v1/integrations/{name}/test` (Test Connection, the
//! same code as `autoheal check`).

use hyper::{Response, StatusCode};
use serde_json::json;

use super::AppState;
use super::response::{ApiError, Body, json};

pub fn list(state: &AppState) -> Response<Body> {
    let generation = state.live.current();
    let states = generation.broker.states();
    let integrations: Vec<_> = generation
        .config
        .integrations
        .iter()
        .map(|integration| {
            let credentials = states.iter().find(|s| s.integration == integration.name);
            json!({
                "name": integration.name,
                "account_id": integration.account_id,
                "region": integration.region,
                "auth": integration.auth,
                "role_arn": integration.role_arn,
                "credentials": credentials.map(|c| json!({
                    "expires_at": c.expires_at.map(crate::credentials::rfc3339),
                    "last_refresh": c.last_refresh.map(crate::credentials::rfc3339),
                    "last_error": c.last_error,
                })),
            })
        })
        .collect();
    json(StatusCode::OK, &json!({"integrations": integrations}))
}

pub async fn test(state: &AppState, name: &str) -> Result<Response<Body>, ApiError> {
    let generation = state.live.current();
    let integration = generation.config.integration(name).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_integration",
            format!("no integration named {name:?}"),
        )
    })?;
    let report = crate::check::test_connection(&generation.broker, integration).await;
    Ok(json(StatusCode::OK, &report))
}
