//! `/v1/sandboxes`: create (optionally waiting for the end), list, inspect, stop.

use std::collections::BTreeMap;
use std::time::Duration;

use hyper::{Response, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::response::{ApiError, Body, json};
use crate::sandbox::SandboxRequest;

/// The body of `POST /v1/sandboxes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    integration: String,
    command: Vec<String>,
    image: Option<String>,
    /// `"90s"`, `"5m"`, or a number of seconds.
    timeout: Option<TimeoutValue>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TimeoutValue {
    Seconds(u64),
    Text(String),
}

fn bad(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
}

pub async fn create(state: &AppState, body: &[u8], wait: bool) -> Result<Response<Body>, ApiError> {
    let body: CreateBody =
        serde_json::from_slice(body).map_err(|e| bad(format!("invalid JSON body: {e}")))?;
    let timeout = match body.timeout {
        None => None,
        Some(TimeoutValue::Seconds(s)) => Some(Duration::from_secs(s)),
        Some(TimeoutValue::Text(t)) => Some(humantime::parse_duration(&t).map_err(|e| {
            bad(format!(
                "timeout: not a duration: {t:?} ({e}); write it like \"90s\" or \"5m\""
            ))
        })?),
    };
    let request = SandboxRequest {
        integration: body.integration,
        command: body.command,
        image: body.image,
        timeout,
        env: body.env,
    };
    let started = state.sandboxes.create(request).await?;
    if wait {
        let finished = state.sandboxes.wait(&started.id).await?;
        Ok(json(StatusCode::OK, &finished))
    } else {
        Ok(json(StatusCode::CREATED, &started))
    }
}

pub fn list(state: &AppState) -> Response<Body> {
    json(
        StatusCode::OK,
        &json!({"sandboxes": state.sandboxes.list()}),
    )
}

pub fn get(state: &AppState, id: &str) -> Result<Response<Body>, ApiError> {
    Ok(json(StatusCode::OK, &state.sandboxes.get(id)?))
}

pub async fn stop(state: &AppState, id: &str) -> Result<Response<Body>, ApiError> {
    Ok(json(StatusCode::OK, &state.sandboxes.stop(id).await?))
}
