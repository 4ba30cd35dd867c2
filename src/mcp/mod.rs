//! MCP: the tools served to an agent over the Model Context Protocol. `tools_server` runs
//! them in this process (`autoheal mcp`, which is what every MCP session's sandbox runs);
//! `relay` serves another MCP server's tools as its own (the daemon's session endpoint
//! relays to the sandbox, the stdio bridge relays to the daemon).

mod relay;
mod tools_server;

pub use relay::{CONNECT_TIMEOUT, Relay, RelayError, RelayServer};
pub use tools_server::{INSTRUCTIONS, ToolsServer, server_info};
