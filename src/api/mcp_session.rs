//! One MCP session of `/v1/mcp/{integration}` as rmcp serves it: its `initialize` connects
//! to the `autoheal mcp` already started in the session's sandbox (over the container's
//! stdio), and every later `tools/list` and `tools/call` is relayed there. When rmcp lets go
//! of the session — the client's `DELETE`, the idle timeout, the sandbox's end — the
//! handler is dropped, and its sandbox is ended with it.

use std::borrow::Cow;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use rmcp::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ErrorData, InitializeRequestParams, InitializeResult,
    ListToolsResult, PaginatedRequestParams, ProtocolVersion, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleServer};

use rmcp::transport::async_rw::AsyncRwTransport;

use crate::mcp::{self, Relay};
use crate::sandbox::{EndedBy, SandboxInfo, SandboxManager, SandboxStdio};
use crate::tools::Capability;
use crate::tools::mask_text;

/// The longest message the daemon reads from a session's sandbox: a tool's answer is cut
/// well below this (`truncated`), so a longer line is not an answer; it is dropped (and
/// logged by rmcp), never buffered whole.
pub const MAX_SANDBOX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;

/// When the session last heard from its client, and whether a call is in flight: a session
/// is idle only when nothing runs and nothing arrived for `sandbox.idle_timeout`.
#[derive(Debug)]
pub struct Activity {
    last: Mutex<Instant>,
    in_flight: std::sync::atomic::AtomicUsize,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            last: Mutex::new(Instant::now()),
            in_flight: Default::default(),
        })
    }

    /// A message arrived.
    pub fn touch(&self) {
        *self.last.lock().expect("activity lock") = Instant::now();
    }

    /// How long the session has been idle (zero while a call runs).
    pub fn idle_for(&self) -> std::time::Duration {
        if self.in_flight.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            return std::time::Duration::ZERO;
        }
        self.last.lock().expect("activity lock").elapsed()
    }

    /// Something runs for the session (a call, an exec in its sandbox): not idle until the
    /// guard is dropped.
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Busy(self.clone())
    }
}

/// A call in flight; its end counts as activity.
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A sandbox started for an `initialize`, waiting for the session handler to take it. The
/// HTTP layer puts it in the request's extensions; rmcp hands those to `initialize`.
#[derive(Debug)]
pub struct PendingSandbox {
    opened: Mutex<Option<OpenedSandbox>>,
}

#[derive(Debug)]
pub struct OpenedSandbox {
    pub info: SandboxInfo,
    pub stdio: SandboxStdio,
    /// What the client asked to narrow the session to (`?capabilities=`).
    pub capabilities: Option<Vec<Capability>>,
    pub activity: Arc<Activity>,
}

impl PendingSandbox {
    pub fn new(opened: OpenedSandbox) -> Arc<Self> {
        Arc::new(Self {
            opened: Mutex::new(Some(opened)),
        })
    }

    /// Takes the sandbox (once).
    pub fn take(&self) -> Option<OpenedSandbox> {
        self.opened.lock().expect("pending sandbox lock").take()
    }
}

struct Connected {
    relay: Relay,
    sandbox_id: String,
    activity: Arc<Activity>,
}

/// The rmcp service of one session (rmcp makes one per session, and drops it at the end).
pub struct SessionHandler {
    manager: Arc<SandboxManager>,
    connected: OnceLock<Connected>,
}

impl SessionHandler {
    pub fn new(manager: Arc<SandboxManager>) -> Self {
        Self {
            manager,
            connected: OnceLock::new(),
        }
    }

    fn connected(&self) -> Result<&Connected, ErrorData> {
        self.connected.get().ok_or_else(|| {
            ErrorData::invalid_request(
                "no session: send initialize to /v1/mcp/{integration} first, then this request with its Mcp-Session-Id",
                None,
            )
        })
    }
}

impl ServerHandler for SessionHandler {
    fn get_info(&self) -> ServerConfig {
        mcp::server_info()
    }

    /// Revisions with sessions only: from 2026-07-28 MCP has none, and each session here is a
    /// sandbox.
    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(ProtocolVersion::known_up_to(&ProtocolVersion::V_2025_11_25))
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        let opened = context
            .extensions
            .get::<hyper::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Arc<PendingSandbox>>())
            .and_then(|pending| pending.take())
            .ok_or_else(|| {
                ErrorData::invalid_request(
                    "initialize opens a session only at /v1/mcp/{integration}",
                    None,
                )
            })?;
        let id = opened.info.id.clone();
        let stdio = opened.stdio;
        let transport = AsyncRwTransport::new_client(stdio.output, stdio.input)
            .with_max_line_length(MAX_SANDBOX_MESSAGE_BYTES);
        let relay = match Relay::connect(transport, "autoheal-daemon", opened.capabilities).await {
            Ok(relay) => relay,
            Err(err) => {
                let manager = self.manager.clone();
                let ended = manager.end(&id, EndedBy::Failed).await;
                let stderr = ended
                    .ok()
                    .and_then(|info| info.stderr.map(|s| s.trim().to_owned()))
                    .filter(|s| !s.is_empty())
                    .map(|s| {
                        let head: String = s.chars().take(500).collect();
                        format!("; it wrote: {}", mask_text(&head).0)
                    })
                    .unwrap_or_default();
                tracing::warn!(sandbox = %id, error = %err, "an MCP session's sandbox did not serve MCP; ended it");
                return Err(ErrorData::internal_error(
                    format!(
                        "the session's sandbox {id} did not serve MCP ({err}){stderr}; does sandbox.image run `autoheal mcp`?"
                    ),
                    None,
                ));
            }
        };
        tracing::info!(sandbox = %id, integration = %opened.info.integration, "MCP session opened");
        let _ = self.connected.set(Connected {
            relay,
            sandbox_id: id,
            activity: opened.activity,
        });
        context.peer.set_peer_info(request.clone());
        self.negotiate_initialize(&request)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(self.connected()?.relay.list_tools())
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        let connected = self.connected.get()?;
        connected
            .relay
            .tools()
            .iter()
            .find(|t| t.name == name)
            .cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let connected = self.connected()?;
        let _busy = connected.activity.begin();
        connected.relay.call_tool(request).await
    }
}

impl Drop for SessionHandler {
    fn drop(&mut self) {
        let Some(connected) = self.connected.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let manager = self.manager.clone();
        runtime.spawn(async move {
            let Connected {
                relay, sandbox_id, ..
            } = connected;
            // The end first, so its reason is recorded before the program could see its
            // stdin close and exit on its own.
            let ended = manager.end(&sandbox_id, EndedBy::SessionClosed).await;
            relay.close().await;
            match ended {
                Ok(info) => {
                    tracing::info!(sandbox = %sandbox_id, ended_by = ?info.ended_by, "MCP session ended")
                }
                Err(err) => {
                    tracing::warn!(sandbox = %sandbox_id, error = %err, "could not end an MCP session's sandbox")
                }
            }
        });
    }
}
