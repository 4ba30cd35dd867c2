//! `autoheal mcp`: the tools as an MCP server on stdio. Alone, they run in this process with
//! its ambient AWS credentials (this is what runs inside a session's sandbox). With
//! `--daemon URL --integration NAME` it is a stdio bridge for MCP clients that only start
//! local processes: it opens one session at the daemon's `/v1/mcp/NAME` and relays, so every
//! call runs in that session's sandbox, with the integration's scoped credentials.

use rmcp::ServiceExt;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

use crate::api::token;
use crate::cli::{Cli, McpArgs};
use crate::config;
use crate::exit_code::Exit;
use crate::mcp::{Relay, RelayServer, ToolsServer};
use crate::tools::{AwsContext, Capability};

pub async fn run(cli: &Cli, args: &McpArgs) -> Exit {
    match (&args.daemon, &args.integration) {
        (Some(daemon), Some(integration)) => bridge(cli, args, daemon, integration).await,
        _ => {
            let ctx = AwsContext::from_environment(None).await;
            serve_on_stdio(ToolsServer::new(ctx, !args.no_mask)).await
        }
    }
}

async fn serve_on_stdio<S: rmcp::ServerHandler>(server: S) -> Exit {
    let service = match server.serve(rmcp::transport::stdio()).await {
        Ok(service) => service,
        Err(err) => {
            eprintln!("autoheal mcp: the client did not initialize the session: {err}");
            return Exit::Unavailable;
        }
    };
    match service.waiting().await {
        Ok(_) => Exit::Ok,
        Err(err) => {
            eprintln!("autoheal mcp: {err}");
            Exit::Unavailable
        }
    }
}

async fn bridge(cli: &Cli, args: &McpArgs, daemon: &str, integration: &str) -> Exit {
    let token_file = match std::env::var_os(token::TOKEN_ENV) {
        Some(_) => std::path::PathBuf::new(),
        None => match config::load(cli.config.as_deref()) {
            Ok(config) => config.server.api_token_file,
            Err(err) => {
                eprintln!(
                    "autoheal mcp: no {} and the config (for server.api_token_file) cannot be read: {err}",
                    token::TOKEN_ENV
                );
                return Exit::Config;
            }
        },
    };
    let token = match token::read_for_client(&token_file) {
        Ok(token) => token,
        Err(err) => {
            eprintln!("autoheal mcp: {err}");
            return Exit::NoPerm;
        }
    };
    let url = match endpoint_url(daemon, integration, &args.capability) {
        Ok(url) => url,
        Err(message) => {
            eprintln!("autoheal mcp: {message}");
            return Exit::Usage;
        }
    };
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url.clone()).auth_header(token.expose()),
    );
    let capabilities = (!args.capability.is_empty()).then(|| args.capability.clone());
    let relay = match Relay::connect(transport, "autoheal-bridge", capabilities).await {
        Ok(relay) => relay,
        Err(err) => {
            eprintln!(
                "autoheal mcp: could not open a session at {url}: {err} (is `autoheal serve` running there, is the token right, does integration {integration:?} exist?)"
            );
            return Exit::Unavailable;
        }
    };
    let relay = std::sync::Arc::new(relay);
    let exit = serve_on_stdio(RelayServer {
        relay: relay.clone(),
    })
    .await;
    // The local client is gone: end the daemon's session (DELETE), so its sandbox ends now
    // rather than at sandbox.idle_timeout.
    if let Ok(relay) = std::sync::Arc::try_unwrap(relay) {
        relay.close().await;
    }
    exit
}

/// `{daemon}/v1/mcp/{integration}`, with `?capabilities=a,b` when narrowed.
fn endpoint_url(
    daemon: &str,
    integration: &str,
    capabilities: &[Capability],
) -> Result<String, String> {
    let mut url = url::Url::parse(daemon)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| {
            format!("--daemon {daemon:?} is not an http(s) URL such as http://127.0.0.1:8700")
        })?;
    url.path_segments_mut()
        .map_err(|()| format!("--daemon {daemon:?} cannot take a path"))?
        .pop_if_empty()
        .extend(["v1", "mcp", integration]);
    if !capabilities.is_empty() {
        url.set_query(Some(&format!(
            "capabilities={}",
            Capability::names(capabilities, ",")
        )));
    }
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_url_names_the_integration_and_capabilities() {
        assert_eq!(
            endpoint_url("http://127.0.0.1:8700/", "prod-eu", &[]).unwrap(),
            "http://127.0.0.1:8700/v1/mcp/prod-eu"
        );
        assert_eq!(
            endpoint_url(
                "http://h:1",
                "prod",
                &[Capability::Logs, Capability::Metrics]
            )
            .unwrap(),
            "http://h:1/v1/mcp/prod?capabilities=logs,metrics"
        );
        assert!(endpoint_url("127.0.0.1:8700", "prod", &[]).is_err());
    }
}
