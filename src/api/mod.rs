//! The HTTP API (hyper): health, readiness, metrics, integrations, Test Connection,
//! sandboxes, MCP sessions. One file per resource; this one routes, authenticates and serves.
//!
//! Everything under `/v1` needs `Authorization: Bearer <token>` (compared in constant time);
//! bodies are limited in size; every error is a JSON body with a fitting status.
//!
//! Abuse is bounded: connections are capped (`crate::connections`), a request's head must
//! arrive within `server.header_read_timeout` of its first byte and its body within
//! `server.body_read_timeout`, an idle keep-alive ends after `server.idle_timeout`, heads
//! are limited to [`MAX_HEAD_BYTES`], and failed accepts back off instead of spinning.

mod health;
mod integrations;
mod mcp;
mod mcp_session;
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
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::config::{Secret, ServerConfig};
use crate::connections::{AcceptBackoff, Admission, ConnectionTable, Tracked};
use crate::lifecycle::LiveConfig;
use crate::sandbox::SandboxManager;
pub use mcp::McpEndpoint;
pub use response::{ApiError, Body};
pub use sandboxes::parse_create_body;

/// Request bodies larger than this are refused (413): a sandbox request is a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// hyper's read buffer, and so the largest request head (431 beyond): our clients send a
/// few hundred bytes of headers; hyper's default (~400 KiB) would let each connection cost
/// that much memory.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// What a connection refused at the cap is told before it is closed.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 85\r\nconnection: close\r\n\r\n{\"error\":{\"code\":\"too_many_connections\",\"message\":\"every connection is busy; retry\"}}";
/// How long open connections get to finish once shutdown begins.
const CONNECTION_DRAIN: Duration = Duration::from_secs(10);

/// What every handler can reach.
#[derive(Debug)]
pub struct AppState {
    /// The configuration and broker in force (SIGHUP swaps them).
    pub live: Arc<LiveConfig>,
    pub sandboxes: Arc<SandboxManager>,
    /// `/v1/mcp/{integration}`: its MCP sessions (each a sandbox of `sandboxes`).
    pub mcp: McpEndpoint,
    pub token: Secret,
    /// The connection and timeout limits (from `[server]`, fixed until restart).
    pub limits: ApiLimits,
}

impl AppState {
    pub fn new(
        live: Arc<LiveConfig>,
        sandboxes: Arc<SandboxManager>,
        token: Secret,
        limits: ApiLimits,
    ) -> Self {
        Self {
            mcp: McpEndpoint::new(sandboxes.clone(), live.clone()),
            live,
            sandboxes,
            token,
            limits,
        }
    }
}

/// How much the API lets one client hold.
#[derive(Debug, Clone)]
pub struct ApiLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub idle_timeout: Duration,
}

impl From<&ServerConfig> for ApiLimits {
    fn from(server: &ServerConfig) -> Self {
        Self {
            max_connections: server.max_connections as usize,
            header_read_timeout: server.header_read_timeout,
            body_read_timeout: server.body_read_timeout,
            idle_timeout: server.idle_timeout,
        }
    }
}

/// Serves until `shutdown` completes, then lets open connections finish (bounded).
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) {
    let limits = state.limits.clone();
    let graceful = GracefulShutdown::new();
    let table = ConnectionTable::new(state.limits.max_connections);
    let mut backoff = AcceptBackoff::default();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (mut stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(err) => {
                        let pause = backoff.failed();
                        tracing::warn!(error = %err, pause_ms = pause.as_millis() as u64, "accept failed; pausing");
                        tokio::time::sleep(pause).await;
                        continue;
                    }
                };
                backoff.succeeded();
                let registration = match table.admit() {
                    Admission::Admitted(registration) => registration,
                    Admission::Refused => {
                        tracing::warn!(%peer, "connection refused: every connection is busy (server.max_connections)");
                        // Best effort and never blocking: the accept loop must not wait on a client.
                        let _ = stream.try_write(REFUSED);
                        let _ = stream.shutdown().await;
                        continue;
                    }
                };
                let connection = registration.connection.clone();
                let state = state.clone();
                let service = service_fn(move |request| {
                    let state = state.clone();
                    let busy = connection.request();
                    // Boxed: hyper keeps room for one request future in every connection,
                    // idle or not; unboxed, that room is the whole handler's state (well
                    // over 100 KiB), paid by each of `max_connections` connections.
                    let handling: Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>> =
                        Box::pin(async move {
                            let response = handle(&state, request).await;
                            // Busy until the answer is sent: an MCP session's SSE stream
                            // is a request in progress, not an idle keep-alive.
                            Ok(response.map(|body| response::HeldUntilSent::wrap(body, busy)))
                        });
                    handling
                });
                // half_close: a client that shuts its sending side after the request (nc,
                // the compose healthcheck) still gets its answer.
                let tracked = Tracked::new(stream, registration.connection.clone());
                let connection = http1::Builder::new()
                    .half_close(true)
                    // Our own timeouts (`Connection::timed_out`) tell a slow head from an
                    // idle keep-alive; hyper's one timer cannot.
                    .header_read_timeout(None)
                    .max_buf_size(MAX_HEAD_BYTES)
                    .serve_connection(TokioIo::new(tracked), service);
                let watched = graceful.watch(connection);
                let (header_timeout, idle_timeout) = (limits.header_read_timeout, limits.idle_timeout);
                tokio::spawn(async move {
                    tokio::select! {
                        result = watched => {
                            if let Err(err) = result {
                                tracing::debug!(%peer, error = %err, "connection ended with an error");
                            }
                        }
                        () = registration.connection.evicted() => {
                            tracing::debug!(%peer, "closed an idle connection to make room");
                        }
                        () = registration.connection.timed_out(header_timeout, idle_timeout) => {
                            tracing::debug!(%peer, "closed a connection that waited too long (request head or idle)");
                        }
                    }
                    drop(registration);
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
            let body = read_body(request, state.limits.body_read_timeout).await?;
            sandboxes::create(state, &body, wants_wait(query)).await
        }
        (&Method::GET, ["sandboxes"]) => Ok(sandboxes::list(state)),
        (&Method::GET, ["sandboxes", id]) => sandboxes::get(state, id),
        (&Method::DELETE, ["sandboxes", id]) => sandboxes::stop(state, id).await,
        (&Method::POST, ["sandboxes", id, "exec"]) => {
            let body = read_body(request, state.limits.body_read_timeout).await?;
            sandboxes::exec(state, id, &body).await
        }
        (&Method::POST | &Method::GET | &Method::DELETE, ["mcp", integration]) => {
            mcp::handle(state, request, integration, query).await
        }
        (
            _,
            ["integrations"]
            | ["integrations", _, "test"]
            | ["sandboxes"]
            | ["sandboxes", _]
            | ["sandboxes", _, "exec"]
            | ["mcp", _],
        ) => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{method} is not allowed on {path}"),
        )),
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

async fn read_body(request: Request<Incoming>, limit: Duration) -> Result<Vec<u8>, ApiError> {
    read_whole_body(request.into_body(), limit).await
}

/// Reads a request body: at most [`MAX_BODY_BYTES`] (413 beyond), within `limit` (408).
async fn read_whole_body(body: Incoming, limit: Duration) -> Result<Vec<u8>, ApiError> {
    let collected = tokio::time::timeout(limit, Limited::new(body, MAX_BODY_BYTES).collect())
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "the request body did not arrive within {}s (server.body_read_timeout)",
                    limit.as_secs()
                ),
            )
        })?;
    match collected {
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
