//! Serves the container-credentials endpoint to sandboxes over plain HTTP (what the AWS SDKs
//! accept for the container-credentials protocol: loopback, or 169.254.170.2).
//!
//! One listener per address it is asked to listen on: 127.0.0.1 for `host`-network
//! sandboxes, the bridge's gateway for bridge sandboxes (which reach it as
//! 169.254.170.2:80 through a DNAT rule, `credentials_route.rs`). Each listener answers
//! `GET /v1/credentials` with `Authorization: <token>` and nothing else. Connections are
//! bounded like the API's (`crate::connections`): at most [`MAX_CONNECTIONS`], a request
//! head within [`HEADER_READ_TIMEOUT`], idle keep-alives closed after [`IDLE_TIMEOUT`].
//! Refusals are counted in `/metrics` and logged at debug level with the peer address, never
//! with the token.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;

use super::credentials_endpoint::{CredentialsEndpoint, Refusal, document};
use crate::connections::{AcceptBackoff, Admission, ConnectionTable, Tracked};

/// The one path served.
pub const CREDENTIALS_PATH: &str = "/v1/credentials";
/// Open connections across every listener: an SDK keeps one or two per sandbox, and at most
/// 1024 sandboxes run (`sandbox.max_running`'s ceiling); beyond it the idlest is closed.
pub const MAX_CONNECTIONS: usize = 2048;
/// A request head must arrive within this of its first byte.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A keep-alive connection with nothing arriving is closed after this.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Request heads larger than this are refused: the protocol's head is a few hundred bytes.
const MAX_HEAD_BYTES: usize = 8 * 1024;

/// The endpoint's HTTP listeners.
#[derive(Debug)]
pub struct CredentialsServer {
    endpoint: Arc<CredentialsEndpoint>,
    /// Where it listens, by the address asked for.
    listening: tokio::sync::Mutex<HashMap<IpAddr, SocketAddr>>,
    /// Bridge networks whose sandboxes are led here, and where to (kept up by the health
    /// check: one entry per sandbox network ever used, so a handful).
    routes: std::sync::Mutex<HashMap<String, SocketAddr>>,
    table: Arc<ConnectionTable>,
}

impl CredentialsServer {
    pub fn new(endpoint: Arc<CredentialsEndpoint>) -> Arc<Self> {
        Arc::new(Self {
            endpoint,
            listening: tokio::sync::Mutex::new(HashMap::new()),
            routes: std::sync::Mutex::new(HashMap::new()),
            table: ConnectionTable::new(MAX_CONNECTIONS),
        })
    }

    pub fn endpoint(&self) -> &Arc<CredentialsEndpoint> {
        &self.endpoint
    }

    /// Notes that sandboxes on bridge `network` are led to `address`.
    pub fn remember_route(&self, network: &str, address: SocketAddr) {
        self.routes
            .lock()
            .expect("routes lock")
            .insert(network.to_owned(), address);
    }

    /// Every bridge network led here, and where to.
    pub fn routes(&self) -> Vec<(String, SocketAddr)> {
        let routes = self.routes.lock().expect("routes lock");
        routes.iter().map(|(n, a)| (n.clone(), *a)).collect()
    }

    /// The socket address it serves on `ip` (a port the kernel chose), listening first when
    /// it does not yet.
    pub async fn listen_on(self: &Arc<Self>, ip: IpAddr) -> std::io::Result<SocketAddr> {
        let mut listening = self.listening.lock().await;
        if let Some(address) = listening.get(&ip) {
            return Ok(*address);
        }
        let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await?;
        let address = listener.local_addr()?;
        tracing::info!(%address, "serving sandbox credentials (container-credentials protocol)");
        listening.insert(ip, address);
        let server = self.clone();
        tokio::spawn(async move { server.accept(listener).await });
        Ok(address)
    }

    async fn accept(self: Arc<Self>, listener: TcpListener) {
        let mut backoff = AcceptBackoff::default();
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(pair) => pair,
                Err(err) => {
                    let pause = backoff.failed();
                    tracing::warn!(error = %err, "credentials endpoint: accept failed; pausing");
                    tokio::time::sleep(pause).await;
                    continue;
                }
            };
            backoff.succeeded();
            let Admission::Admitted(registration) = self.table.admit() else {
                tracing::warn!(%peer, "credentials endpoint: every connection is busy; refused one");
                continue;
            };
            let endpoint = self.endpoint.clone();
            let connection = registration.connection.clone();
            let service = service_fn(move |request| {
                let endpoint = endpoint.clone();
                let busy = connection.request();
                async move {
                    let response = answer(&endpoint, peer.ip(), request).await;
                    drop(busy);
                    Ok::<_, Infallible>(response)
                }
            });
            let tracked = Tracked::new(stream, registration.connection.clone());
            // half_close: a client that shuts its sending side after the request (nc, some
            // SDK clients) still gets its answer.
            let served = http1::Builder::new()
                .half_close(true)
                .header_read_timeout(None)
                .max_buf_size(MAX_HEAD_BYTES)
                .serve_connection(TokioIo::new(tracked), service);
            tokio::spawn(async move {
                tokio::select! {
                    _ = served => {}
                    () = registration.connection.evicted() => {}
                    () = registration.connection.timed_out(HEADER_READ_TIMEOUT, IDLE_TIMEOUT) => {}
                }
                drop(registration);
            });
        }
    }
}

/// Answers one request: the credentials document, or why not.
async fn answer(
    endpoint: &CredentialsEndpoint,
    peer: IpAddr,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    if request.uri().path() != CREDENTIALS_PATH {
        return refuse(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("the only path here is {CREDENTIALS_PATH}"),
        );
    }
    if request.method() != Method::GET {
        return refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "use GET".into(),
        );
    }
    let Some(token) = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send the token of AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE as the Authorization header"
                .into(),
        );
    };
    match endpoint.credentials(token.trim(), peer).await {
        Ok((sandbox, credentials)) => {
            tracing::debug!(%sandbox, %peer, "served a sandbox its credentials");
            let body = document(&credentials).to_string();
            Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/json")
                .header("cache-control", "no-store")
                .body(Full::new(Bytes::from(body)))
                .expect("a valid response")
        }
        Err(refusal) => {
            // Debug only: a hostile sandbox could flood the log; /metrics counts every
            // refusal by kind.
            tracing::debug!(%peer, reason = %refusal, "refused a credentials request");
            let status = StatusCode::from_u16(refusal.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let (code, message) = match refusal {
                Refusal::UnknownToken => ("unknown_token", refusal.to_string()),
                Refusal::WrongPeer => ("wrong_address", refusal.to_string()),
                // The cause (integration, role, STS's words) stays in the daemon's log.
                Refusal::Unavailable(_) => (
                    "credentials_unavailable",
                    "fresh credentials could not be had; the daemon's log says why".to_owned(),
                ),
            };
            refuse(status, code, message)
        }
    }
}

fn refuse(status: StatusCode, code: &str, message: String) -> Response<Full<Bytes>> {
    let body = json!({"code": code, "message": message}).to_string();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}
