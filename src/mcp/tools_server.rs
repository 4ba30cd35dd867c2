//! The tools as an MCP server (`autoheal mcp` on stdio, and so inside every MCP session's
//! sandbox): every tool with its JSON Schema and the read-only annotation. Secrets in
//! answers are masked unless `--no-mask`. A tool's failure is a tool result with
//! `isError: true` carrying the error (AWS code, the IAM action, a hint) — never a success,
//! and never a protocol error the model cannot see.

use std::sync::Arc;

use rmcp::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData,
    Implementation, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
    Tool, ToolAnnotations,
};
use rmcp::service::{RequestContext, RoleServer};
use serde_json::Value;

use crate::tools::{self, AwsContext, mask_answer};

/// What `initialize` tells the agent: what the tools cover and how their answers behave.
pub const INSTRUCTIONS: &str = "Read-only AWS tools for incident investigation in one AWS account and region: \
CloudWatch Logs (logs_groups, logs_search, logs_events, logs_insights), CloudWatch metrics and alarms \
(metrics_list, metrics_query, alarms_list), EC2 (ec2_instances, ec2_instance), ECS (ecs_clusters, \
ecs_services, ecs_tasks), EKS (eks_clusters, eks_cluster, eks_nodegroups), ElastiCache \
(elasticache_clusters, elasticache_replication_group, elasticache_serverless, elasticache_events, \
elasticache_metrics) and whoami. Every tool only reads; none changes anything. \
Names: a short name that fits exactly one resource is used and the answer says so in `resolved` \
(\"payment-service\" -> \"/ecs/payment-service\"); a cluster argument may be left out when the \
account has exactly one; an unknown name answers with the closest existing names. \
Listings come newest first; when an answer is cut it says `truncated: true` and `next` tells how to \
ask for the rest (e.g. `until` for older log events). Times are RFC 3339 UTC; since/until take \
durations back from now (\"1h\", \"30m\") or RFC 3339 times.";

/// What every autoheal MCP server tells its client in `initialize`: its name, version and
/// what the tools cover. The daemon's session endpoint and the stdio bridge answer the same.
pub fn server_info() -> ServerConfig {
    ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
        .with_server_info(
            Implementation::new("autoheal", env!("CARGO_PKG_VERSION"))
                .with_title("autoheal: read-only AWS tools for incident investigation"),
        )
        .with_instructions(INSTRUCTIONS)
}

/// The catalogue's tools, run in this process with its ambient AWS credentials.
pub struct ToolsServer {
    ctx: AwsContext,
    listed: Vec<Tool>,
    /// Mask secrets in answers (on unless `--no-mask`).
    mask: bool,
}

impl ToolsServer {
    pub fn new(ctx: AwsContext, mask: bool) -> Self {
        let listed = tools::catalogue()
            .iter()
            .map(|t| {
                let schema = match t.input_schema() {
                    Value::Object(map) => map,
                    _ => Default::default(),
                };
                Tool::new(t.name, t.description, Arc::new(schema)).with_annotations(
                    ToolAnnotations::new()
                        .read_only(true)
                        .destructive(false)
                        .idempotent(true)
                        .open_world(true),
                )
            })
            .collect();
        Self { ctx, listed, mask }
    }
}

impl ServerHandler for ToolsServer {
    fn get_info(&self) -> ServerConfig {
        server_info()
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.listed.clone()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.listed.iter().find(|t| t.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let arguments = Value::Object(request.arguments.unwrap_or_default());
        let outcome = match tools::find(&request.name) {
            Ok(tool) => tool.run(&self.ctx.at_now(), arguments).await.map(|answer| {
                if self.mask {
                    mask_answer(answer)
                } else {
                    answer
                }
            }),
            Err(err) => Err(err),
        };
        let result = match outcome {
            Ok(answer) => CallToolResult::success(vec![ContentBlock::text(answer.to_string())]),
            Err(err) => {
                let error = if self.mask {
                    mask_answer(err.to_json())
                } else {
                    err.to_json()
                };
                CallToolResult::error(vec![ContentBlock::text(error.to_string())])
            }
        };
        Ok(result.into())
    }
}
