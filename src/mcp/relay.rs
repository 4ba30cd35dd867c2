//! A relay: an MCP server whose tools are another MCP server's, reached as its client. The
//! daemon's session endpoint relays to the `autoheal mcp` inside the session's sandbox; the
//! stdio bridge (`autoheal mcp --daemon`) relays to the daemon's endpoint. Either way the
//! tools run where the upstream runs, never in the relaying process.
//!
//! The tool list is read once, when the relay connects (the catalogue is fixed for a
//! binary), and narrowed to the session's capabilities: a session narrowed to `logs` lists
//! only the logs tools, and a call to another tool is refused with what to do, before it
//! costs an AWS call that its session policy would deny anyway.

use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ClientCapabilities, ClientConfig, ErrorData,
    Implementation, ListToolsResult, PaginatedRequestParams, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleClient, RoleServer, RunningService, ServiceError};
use rmcp::{ServerHandler, ServiceExt};

use crate::tools::{self, Capability};

/// How long the upstream gets to answer `initialize` and list its tools: a fresh sandbox's
/// `autoheal mcp` answers in milliseconds once its container runs.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The upstream as this relay's client sees it.
pub type Upstream = RunningService<RoleClient, ClientConfig>;

/// Why the relay could not connect to its upstream.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("the MCP server did not complete its initialize: {0}")]
    Initialize(String),
    #[error("the MCP server did not answer initialize and tools/list within {}s", CONNECT_TIMEOUT.as_secs())]
    Timeout,
    #[error("the MCP server did not list its tools: {0}")]
    ListTools(#[source] ServiceError),
}

/// Serves the upstream's tools (narrowed) as its own.
pub struct Relay {
    upstream: Upstream,
    tools: Vec<Tool>,
    /// `None`: every tool.
    capabilities: Option<Vec<Capability>>,
}

impl Relay {
    /// Initializes a client session with the MCP server at the other end of `transport`
    /// (named `client_name` to it) and lists its tools.
    pub async fn connect<T, E, A>(
        transport: T,
        client_name: &str,
        capabilities: Option<Vec<Capability>>,
    ) -> Result<Self, RelayError>
    where
        T: rmcp::transport::IntoTransport<RoleClient, E, A>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let info = ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new(client_name, env!("CARGO_PKG_VERSION")),
        );
        let connecting = async {
            let upstream = info
                .serve(transport)
                .await
                .map_err(|e| RelayError::Initialize(e.to_string()))?;
            let listed = upstream
                .peer()
                .list_all_tools()
                .await
                .map_err(RelayError::ListTools)?;
            Ok::<_, RelayError>((upstream, listed))
        };
        let (upstream, listed) = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| RelayError::Timeout)??;
        let tools = listed
            .into_iter()
            .filter(|tool| allows(capabilities.as_deref(), &tool.name))
            .collect();
        Ok(Self {
            upstream,
            tools,
            capabilities,
        })
    }

    /// The tools this relay serves.
    pub fn tools(&self) -> &[Tool] {
        &self.tools
    }

    /// Lists the tools (all of them: a few dozen, one page).
    pub fn list_tools(&self) -> ListToolsResult {
        ListToolsResult::with_all_items(self.tools.clone())
    }

    /// Calls a tool upstream. A tool outside the session's capabilities is refused here.
    pub async fn call_tool(
        &self,
        request: CallToolRequestParams,
    ) -> Result<CallToolResponse, ErrorData> {
        if !allows(self.capabilities.as_deref(), &request.name) {
            return Err(ErrorData::invalid_params(
                format!(
                    "tool {:?} is not in this session: it was opened with capabilities={} (open a \
                     new session with the capability this tool needs, or without ?capabilities= \
                     for every tool)",
                    request.name,
                    Capability::names(self.capabilities.as_deref().unwrap_or_default(), ",")
                ),
                None,
            ));
        }
        self.upstream
            .peer()
            .call_tool_once(request)
            .await
            .map_err(upstream_error)
    }

    /// Ends the client session (the upstream sees its input close).
    pub async fn close(self) {
        let _ = self.upstream.cancel().await;
    }
}

/// Is `tool` within `capabilities` (`None`: every tool)? `whoami` always is (its action
/// needs no permission, and every session policy grants it); unknown names are let
/// through: the upstream answers them with its own error.
fn allows(capabilities: Option<&[Capability]>, tool: &str) -> bool {
    match (capabilities, tools::find(tool)) {
        (Some(allowed), Ok(entry)) => {
            entry.capability == Capability::Identity || allowed.contains(&entry.capability)
        }
        _ => true,
    }
}

/// An upstream failure as the relay's client sees it: the upstream's own MCP error as it
/// was, anything else (the sandbox ended, its stdio closed) as an internal error saying so.
fn upstream_error(err: ServiceError) -> ErrorData {
    match err {
        ServiceError::McpError(error) => error,
        ServiceError::TransportClosed | ServiceError::TransportSend(_) => {
            ErrorData::internal_error(
                "the session's sandbox is gone (it reached its deadline, or was stopped); open a new \
             session",
                None,
            )
        }
        other => ErrorData::internal_error(format!("the tool call failed upstream: {other}"), None),
    }
}

/// A relay serving as an MCP server: the stdio bridge's server side.
pub struct RelayServer {
    pub relay: std::sync::Arc<Relay>,
}

impl ServerHandler for RelayServer {
    fn get_info(&self) -> ServerConfig {
        super::server_info()
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(self.relay.list_tools())
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.relay.tools().iter().find(|t| t.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.relay.call_tool(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_narrowed_session_allows_only_its_capabilities_tools() {
        let logs = Some(&[Capability::Logs][..]);
        assert!(allows(logs, "logs_search"));
        assert!(!allows(logs, "alarms_list"));
        assert!(allows(None, "alarms_list"));
        assert!(allows(logs, "no_such_tool"));
        assert!(allows(logs, "whoami"));
        assert_eq!(
            Capability::names(&[Capability::Logs, Capability::Ec2], ","),
            "logs,ec2"
        );
    }
}
