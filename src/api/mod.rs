//! The HTTP API (hyper): health, readiness, metrics, integrations, Test Connection,
//! sandboxes. One file per resource; this one routes, authenticates and serves.
//!
//! Everything under `/v1` needs `Authorization: Bearer <token>` (compared in constant time);
//! bodies are limited in size; every error is a JSON body with a fitting status.

mod health;
mod integrations;
mod oidc;
mod response;
mod sandboxes;
pub mod token;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::config::Secret;
use crate::lifecycle::LiveConfig;
use crate::sandbox::SandboxManager;
pub use response::{ApiError, Body};

/// Request bodies larger than this are refused (413): a sandbox request is a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// How long open connections get to finish once shutdown begins.
const CONNECTION_DRAIN: Duration = Duration::from_secs(10);

/// What every handler can reach.
#[derive(Debug)]
pub struct AppState {
    /// The configuration and broker in force (SIGHUP swaps them).
    pub live: Arc<LiveConfig>,
    pub sandboxes: Arc<SandboxManager>,
    pub token: Secret,
}

/// Serves until `shutdown` completes, then lets open connections finish (bounded).
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(err) => {
                        tracing::warn!(error = %err, "accept failed");
                        continue;
                    }
                };
                let state = state.clone();
                let service = service_fn(move |request| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(handle(&state, request).await) }
                });
                // half_close: a client that shuts its sending side after the request (nc,
                // the compose healthcheck) still gets its answer.
                let connection = http1::Builder::new()
                    .half_close(true)
                    .serve_connection(TokioIo::new(stream), service);
                let watched = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(err) = watched.await {
                        tracing::debug!(%peer, error = %err, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(CONNECTION_DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain period; closing them");
    }
}

/// Routes one request.
async fn handle(state: &AppState, request: Request<Incoming>) -> Response<Body> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let result = route(state, request, &method, &path, &query).await;
    let response = result.unwrap_or_else(ApiError::into_response);
    tracing::debug!(%method, %path, status = response.status().as_u16(), "request");
    response
}

async fn route(
    state: &AppState,
    request: Request<Incoming>,
    method: &Method,
    path: &str,
    query: &str,
) -> Result<Response<Body>, ApiError> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        (&Method::GET, ["healthz"]) => return Ok(health::healthz()),
        (&Method::GET, ["readyz"]) => return Ok(health::readyz(state).await),
        (&Method::GET, ["metrics"]) => return Ok(health::metrics(state)),
        (&Method::GET, [".well-known", "openid-configuration"]) => return oidc::discovery(state),
        (&Method::GET, [".well-known", "jwks.json"]) => return oidc::jwks(state),
        _ => {}
    }
    if segments.first() != Some(&"v1") {
        return Err(not_found(path));
    }
    authorize(state, &request)?;
    match (method, &segments[1..]) {
        (&Method::GET, ["integrations"]) => Ok(integrations::list(state)),
        (&Method::POST, ["integrations", name, "test"]) => integrations::test(state, name).await,
        (&Method::POST, ["sandboxes"]) => {
            let body = read_body(request).await?;
            sandboxes::create(state, &body, wants_wait(query)).await
        }
        (&Method::GET, ["sandboxes"]) => Ok(sandboxes::list(state)),
        (&Method::GET, ["sandboxes", id]) => sandboxes::get(state, id),
        (&Method::DELETE, ["sandboxes", id]) => sandboxes::stop(state, id).await,
        (_, ["integrations"] | ["integrations", _, "test"] | ["sandboxes"] | ["sandboxes", _]) => {
            Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{method} is not allowed on {path}"),
            ))
        }
        _ => Err(not_found(path)),
    }
}

fn not_found(path: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route {path}"),
    )
}

fn wants_wait(query: &str) -> bool {
    url::form_urlencoded::parse(query.as_bytes())
        .any(|(k, v)| k == "wait" && matches!(v.as_ref(), "true" | "1" | ""))
}

fn authorize(state: &AppState, request: &Request<Incoming>) -> Result<(), ApiError> {
    let presented = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(token) if state.token.matches(token.trim()) => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the bearer token is not valid",
        )),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send Authorization: Bearer <token> (the token is in server.api_token_file)",
        )),
    }
}

async fn read_body(request: Request<Incoming>) -> Result<Vec<u8>, ApiError> {
    match Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(err)
            if err
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
            ))
        }
        Err(err) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_body",
            format!("cannot read the body: {err}"),
        )),
    }
}
