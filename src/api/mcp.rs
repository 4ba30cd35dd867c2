//! `/v1/mcp/{integration}`: MCP over the Streamable HTTP transport, where each MCP session
//! is its own sandbox running `autoheal mcp` with the integration's (scoped) credentials.
//!
//! rmcp serves the protocol (POST of JSON-RPC messages, answers as SSE streams,
//! `Mcp-Session-Id`, GET streams, DELETE); this file decides what rmcp cannot: an
//! `initialize` first starts the session's sandbox — so an unknown integration is a 404, a
//! full host a 429 with `Retry-After`, before any session exists — and then hands it to the
//! session's handler (`mcp_session.rs`) through the request's extensions. It keeps a table
//! of open sessions (one per running session sandbox, so bounded by `sandbox.max_running`)
//! and, per session, a watcher that ends it after `sandbox.idle_timeout` without a message,
//! or when its sandbox ends (deadline, `DELETE /v1/sandboxes/{id}`, shutdown); a message to
//! an ended session then gets the specification's 404.
//!
//! The bearer token is checked before anything here (`api/mod.rs`), so rmcp's Host-header
//! check (a defence for unauthenticated local servers against DNS rebinding) is off: a
//! browser tricked into calling the daemon has no token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use rmcp::transport::streamable_http_server::session::SessionManager;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::{Value, json};

use super::mcp_session::{Activity, OpenedSandbox, PendingSandbox, SessionHandler};
use super::{ApiError, AppState, Body, MAX_BODY_BYTES, read_whole_body};
use crate::lifecycle::LiveConfig;
use crate::sandbox::{EndedBy, SandboxManager, SandboxRequest};
use crate::tools::Capability;

/// The header that names an MCP session.
const SESSION_HEADER: &str = "mcp-session-id";
/// How often a session's watcher looks at its idle time at the most (it sleeps until the
/// session could be idle, but no longer than this, so a reload's shorter timeout applies).
const IDLE_CHECK_EVERY: Duration = Duration::from_secs(1);
/// SSE comments keep streams open through proxies that close quiet connections.
const SSE_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// An open session: which integration it belongs to, its sandbox, and when it last heard.
#[derive(Debug)]
struct Session {
    integration: String,
    sandbox_id: String,
    activity: Arc<Activity>,
}

/// The MCP endpoint's state (cheap to clone: every part is shared).
#[derive(Clone)]
pub struct McpEndpoint {
    service: StreamableHttpService<SessionHandler, LocalSessionManager>,
    rmcp_sessions: Arc<LocalSessionManager>,
    /// Open sessions by `Mcp-Session-Id`.
    sessions: Arc<Mutex<HashMap<String, Arc<Session>>>>,
    manager: Arc<SandboxManager>,
    live: Arc<LiveConfig>,
}

impl std::fmt::Debug for McpEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpEndpoint")
            .field("sessions", &self.open_sessions())
            .finish()
    }
}

impl McpEndpoint {
    pub fn new(manager: Arc<SandboxManager>, live: Arc<LiveConfig>) -> Self {
        let mut rmcp_sessions = LocalSessionManager::default();
        // Our watcher ends idle sessions (`sandbox.idle_timeout`) and every session ends
        // with its sandbox's deadline at the latest, so rmcp's own inactivity timer is not
        // needed — and would end a session without saying why.
        rmcp_sessions.session_config.keep_alive = None;
        let rmcp_sessions = Arc::new(rmcp_sessions);
        let config = StreamableHttpServerConfig::default()
            .disable_allowed_hosts()
            .with_sse_keep_alive(Some(SSE_KEEP_ALIVE))
            .with_max_request_body_bytes(MAX_BODY_BYTES);
        let factory_manager = manager.clone();
        let service = StreamableHttpService::new(
            move || Ok(SessionHandler::new(factory_manager.clone())),
            rmcp_sessions.clone(),
            config,
        );
        Self {
            service,
            rmcp_sessions,
            sessions: Arc::new(Mutex::new(HashMap::new())),
            manager,
            live,
        }
    }

    /// Sessions open now.
    pub fn open_sessions(&self) -> usize {
        self.sessions.lock().expect("sessions lock").len()
    }

    /// Marks the session whose sandbox is `sandbox_id` (if any) busy while the guard lives:
    /// an agent's own command (`exec`) in its session's sandbox is activity too.
    pub fn busy_for_sandbox(&self, sandbox_id: &str) -> Option<super::mcp_session::Busy> {
        let sessions = self.sessions.lock().expect("sessions lock");
        sessions
            .values()
            .find(|s| s.sandbox_id == sandbox_id)
            .map(|s| s.activity.begin())
    }

    fn session(&self, id: &str) -> Option<Arc<Session>> {
        self.sessions
            .lock()
            .expect("sessions lock")
            .get(id)
            .cloned()
    }
}

/// Serves one request to `/v1/mcp/{integration}`.
pub async fn handle(
    state: &AppState,
    request: Request<Incoming>,
    integration: &str,
    query: &str,
) -> Result<Response<Body>, super::ApiError> {
    let endpoint = &state.mcp;
    let (parts, body) = request.into_parts();
    let bytes = match parts.method {
        Method::POST => read_whole_body(body, state.limits.body_read_timeout).await?,
        _ => Vec::new(),
    };
    let session_id = parts
        .headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match &session_id {
        Some(id) => match endpoint.session(id) {
            Some(session) if session.integration != integration => {
                return Ok(plain(StatusCode::NOT_FOUND, "Not Found: Session not found"));
            }
            Some(session) => session.activity.touch(),
            None => {}
        },
        None if parts.method == Method::POST => {
            if let Some(request_id) = initialize_id(&bytes)
                && speaks_streamable_http(&parts.headers)
            {
                // Its own task: a client that hangs up while its sandbox starts cannot leave
                // a sandbox without a session, or a session that no watcher ends.
                let (endpoint, integration) = (endpoint.clone(), integration.to_owned());
                let query = query.to_owned();
                let handing_over = tokio::spawn(async move {
                    let opened = match open(&endpoint, &integration, &query).await {
                        Ok(opened) => opened,
                        Err(err) => return refusal(err, request_id),
                    };
                    endpoint.hand_over(opened, parts, bytes, &integration).await
                });
                return handing_over.await.map_err(|join| {
                    ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        format!("opening the MCP session failed: {join}"),
                    )
                });
            }
        }
        None => {}
    }
    Ok(serve(endpoint, parts, bytes).await)
}

async fn serve(
    endpoint: &McpEndpoint,
    parts: hyper::http::request::Parts,
    bytes: Vec<u8>,
) -> Response<Body> {
    let request = Request::from_parts(parts, Full::new(Bytes::from(bytes)));
    endpoint.service.handle(request).await
}

impl McpEndpoint {
    /// Hands the opened sandbox to rmcp's `initialize` (through the request's extensions)
    /// and, once a session exists, watches it.
    async fn hand_over(
        &self,
        opened: OpenedSandbox,
        mut parts: hyper::http::request::Parts,
        bytes: Vec<u8>,
        integration: &str,
    ) -> Response<Body> {
        let sandbox_id = opened.info.id.clone();
        let activity = opened.activity.clone();
        let pending = PendingSandbox::new(opened);
        parts.extensions.insert(pending.clone());
        let response = serve(self, parts, bytes).await;
        let session = response
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        match (session, pending.take()) {
            // A session exists. (When the handler's initialize failed, it has ended the
            // sandbox already: the watcher sees that end at once and closes the session.)
            (Some(id), None) => self.watch(id, integration, sandbox_id, activity),
            (_, Some(_unused)) => {
                // rmcp refused the request before the handler took the sandbox.
                let _ = self.manager.end(&sandbox_id, EndedBy::Failed).await;
            }
            (None, None) => {}
        }
        response
    }

    /// Keeps session `id` in the table until it ends: idle for `sandbox.idle_timeout`, or
    /// its sandbox ended. Either way rmcp closes it (the handler's drop ends the sandbox).
    fn watch(&self, id: String, integration: &str, sandbox_id: String, activity: Arc<Activity>) {
        let session = Arc::new(Session {
            integration: integration.to_owned(),
            sandbox_id: sandbox_id.clone(),
            activity,
        });
        self.sessions
            .lock()
            .expect("sessions lock")
            .insert(id.clone(), session.clone());
        let (sessions, rmcp_sessions) = (self.sessions.clone(), self.rmcp_sessions.clone());
        let (manager, live) = (self.manager.clone(), self.live.clone());
        tokio::spawn(async move {
            let ended = manager.wait(&sandbox_id);
            tokio::pin!(ended);
            loop {
                let idle_timeout = live.current().config.sandbox.idle_timeout;
                let idle = session.activity.idle_for();
                if idle >= idle_timeout {
                    tracing::info!(sandbox = %sandbox_id, idle_s = idle.as_secs(), "an MCP session was idle for sandbox.idle_timeout; ending it");
                    // The reason first; closing the session then drops its handler,
                    // which stops the sandbox. Closed before the sandbox is gone, so a
                    // message after the end always gets the 404.
                    manager.note_end_reason(&sandbox_id, EndedBy::IdleTimeout);
                    break;
                }
                let pause = (idle_timeout - idle).min(IDLE_CHECK_EVERY);
                tokio::select! {
                    _ = &mut ended => break,
                    () = tokio::time::sleep(pause) => {}
                }
            }
            sessions.lock().expect("sessions lock").remove(&id);
            let _ = rmcp_sessions.close_session(&id.clone().into()).await;
        });
    }
}

/// The id of an `initialize` request, when `body` is one (a notification has no id, and
/// opens nothing).
fn initialize_id(body: &[u8]) -> Option<Value> {
    let message: Value = serde_json::from_slice(body).ok()?;
    (message.get("method")? == "initialize").then(|| message.get("id").cloned())?
}

/// Does the request meet the transport's rules (a JSON body; accepts both JSON and SSE)?
/// Checked before a sandbox starts: a request rmcp would refuse starts nothing.
fn speaks_streamable_http(headers: &hyper::HeaderMap) -> bool {
    let header = |name: hyper::header::HeaderName| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(",")
            .to_ascii_lowercase()
    };
    let accept = header(hyper::header::ACCEPT);
    header(hyper::header::CONTENT_TYPE).starts_with("application/json")
        && accept.contains("application/json")
        && accept.contains("text/event-stream")
}

/// An `initialize` that opened no session: the API's status (and `Retry-After`), with a
/// JSON-RPC error as the body — the client is an MCP client. Code -32602 (invalid params)
/// for what the client asked wrong, -32603 (internal) for what failed here; `data.code` is
/// the API's error code.
fn refusal(err: ApiError, request_id: Value) -> Response<Body> {
    let rpc_code = match err.status {
        status if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS => -32602,
        _ => -32603,
    };
    let body = json!({
        "jsonrpc": "2.0",
        "id": request_id,
        "error": {"code": rpc_code, "message": err.message, "data": {"code": err.code}},
    });
    let mut response = super::response::json(err.status, &body);
    if let Some(after) = err.retry_after {
        response.headers_mut().insert(
            "retry-after",
            after.as_secs().max(1).to_string().parse().expect("digits"),
        );
    }
    response
}

/// Starts the session's sandbox: `autoheal mcp` for `integration`, narrowed to `query`'s
/// capabilities.
async fn open(
    endpoint: &McpEndpoint,
    integration: &str,
    query: &str,
) -> Result<OpenedSandbox, ApiError> {
    let capabilities = capabilities(query)?;
    let request = SandboxRequest {
        integration: integration.to_owned(),
        command: vec!["autoheal".into(), "mcp".into()],
        image: None,
        timeout: None,
        env: Default::default(),
        capabilities: capabilities.clone(),
        credentials: None,
    };
    let (info, stdio) = endpoint.manager.open_session(request).await?;
    Ok(OpenedSandbox {
        info,
        stdio,
        capabilities,
        activity: Activity::new(),
    })
}

/// `?capabilities=logs,metrics` → the capabilities; absent → `None` (every tool).
fn capabilities(query: &str) -> Result<Option<Vec<Capability>>, ApiError> {
    let Some(listed) = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "capabilities")
        .map(|(_, v)| v.into_owned())
    else {
        return Ok(None);
    };
    let mut parsed = Vec::new();
    for name in listed.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match <Capability as clap::ValueEnum>::from_str(name, false) {
            Ok(capability) => parsed.push(capability),
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!(
                        "capabilities: {name:?} is not a capability ({})",
                        Capability::names(&Capability::ALL, ", ")
                    ),
                ));
            }
        }
    }
    if parsed.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "capabilities: name at least one (such as capabilities=logs), or leave it out for every tool",
        ));
    }
    Ok(Some(parsed))
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    Response::builder()
        .status(status)
        .body(Full::new(Bytes::from_static(text.as_bytes())).boxed())
        .expect("valid response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_initialize_request_opens_a_session() {
        let init = br#"{"jsonrpc":"2.0","id":7,"method":"initialize","params":{}}"#;
        assert_eq!(initialize_id(init), Some(json!(7)));
        let list = br#"{"jsonrpc":"2.0","id":8,"method":"tools/list"}"#;
        assert_eq!(initialize_id(list), None);
        let notification = br#"{"jsonrpc":"2.0","method":"initialize","params":{}}"#;
        assert_eq!(initialize_id(notification), None);
        assert_eq!(initialize_id(b"not json"), None);
    }

    #[test]
    fn capabilities_come_from_the_query() {
        assert_eq!(capabilities("").ok().unwrap(), None);
        assert_eq!(
            capabilities("capabilities=logs,metrics").ok().unwrap(),
            Some(vec![Capability::Logs, Capability::Metrics])
        );
        let refused = capabilities("capabilities=logs,s3").err().unwrap();
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        assert!(refused.message.contains("\"s3\""));
        assert!(capabilities("capabilities=").is_err());
    }
}
