//! `/v1/sandboxes`: create (optionally waiting for the end), list, inspect, stop, and run
//! a command in a running one (`exec`).

use std::collections::BTreeMap;
use std::time::Duration;

use hyper::{Response, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::response::{ApiError, Body, json};
use crate::config::CredentialsDelivery;
use crate::sandbox::{SandboxRequest, validate_command};
use crate::tools::Capability;

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
    /// Narrows the sandbox's own session, e.g. `["logs", "metrics"]`.
    capabilities: Option<Vec<Capability>>,
    /// `"env"` or `"endpoint"`; the default is `sandbox.credentials`.
    credentials: Option<CredentialsDelivery>,
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

/// Parses the body of `POST /v1/sandboxes` into a request; an error (400) names the field.
pub fn parse_create_body(body: &[u8]) -> Result<SandboxRequest, ApiError> {
    let mut reader = serde_json::Deserializer::from_slice(body);
    let body: CreateBody = serde_path_to_error::deserialize(&mut reader).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            bad(format!("invalid JSON body: {inner}"))
        } else if path == "." {
            bad(format!("body: {inner}"))
        } else {
            bad(format!("{path}: {inner}"))
        }
    })?;
    reader
        .end()
        .map_err(|e| bad(format!("invalid JSON body: {e}")))?;
    let timeout = timeout_of(body.timeout)?;
    Ok(SandboxRequest {
        integration: body.integration,
        command: body.command,
        image: body.image,
        timeout,
        env: body.env,
        capabilities: body.capabilities,
        credentials: body.credentials,
    })
}

pub async fn create(state: &AppState, body: &[u8], wait: bool) -> Result<Response<Body>, ApiError> {
    let request = parse_create_body(body)?;
    if wait {
        let finished = state.sandboxes.run_to_end(request).await?;
        Ok(json(StatusCode::OK, &finished))
    } else {
        let started = state.sandboxes.create(request).await?;
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

/// The body of `POST /v1/sandboxes/{id}/exec`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecBody {
    command: Vec<String>,
    /// `"90s"`, `"5m"`, or a number of seconds; never past the sandbox's deadline.
    timeout: Option<TimeoutValue>,
}

/// Runs a command in running sandbox `id`: 200 with its output and exit code, 409 when the
/// sandbox has ended.
pub async fn exec(state: &AppState, id: &str, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let mut reader = serde_json::Deserializer::from_slice(body);
    let body: ExecBody = serde_path_to_error::deserialize(&mut reader).map_err(|err| {
        let path = err.path().to_string();
        bad(format!("{path}: {}", err.into_inner()))
    })?;
    let timeout = timeout_of(body.timeout)?;
    // The same rules for argv and timeout as a sandbox's own command (a sandbox never
    // outlives sandbox.max_lifetime, so neither does a command in it).
    let max_lifetime = state.live.current().config.sandbox.max_lifetime;
    validate_command(&body.command, timeout, max_lifetime)?;
    let _session_busy = state.mcp.busy_for_sandbox(id);
    let answer = state.sandboxes.exec(id, &body.command, timeout).await?;
    Ok(json(StatusCode::OK, &answer))
}

fn timeout_of(value: Option<TimeoutValue>) -> Result<Option<Duration>, ApiError> {
    match value {
        None => Ok(None),
        Some(TimeoutValue::Seconds(s)) => Ok(Some(Duration::from_secs(s))),
        Some(TimeoutValue::Text(t)) => humantime::parse_duration(&t).map(Some).map_err(|e| {
            bad(format!(
                "timeout: not a duration: {t:?} ({e}); write it like \"90s\" or \"5m\""
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_may_choose_how_credentials_are_delivered() {
        let body = |credentials: &str| {
            format!(
                r#"{{"integration": "prod", "command": ["true"], "credentials": {credentials}}}"#
            )
        };
        let chosen = parse_create_body(body(r#""endpoint""#).as_bytes()).unwrap();
        assert_eq!(chosen.credentials, Some(CredentialsDelivery::Endpoint));
        let default =
            parse_create_body(br#"{"integration": "prod", "command": ["true"]}"#).unwrap();
        assert_eq!(default.credentials, None, "sandbox.credentials decides");
        let refused = parse_create_body(body(r#""files""#).as_bytes()).unwrap_err();
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        assert!(
            refused.message.starts_with("credentials:") && refused.message.contains("endpoint"),
            "{}",
            refused.message
        );
    }
}
