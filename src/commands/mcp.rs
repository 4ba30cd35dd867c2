//! `autoheal mcp`: a Model Context Protocol server on stdio exposing every tool, with its
//! JSON Schema and the read-only annotation. A tool's failure is a tool result with
//! `isError: true` carrying the error (AWS code, the IAM action, a hint) — never a success,
//! and never a protocol error the model cannot see.

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
    ToolAnnotations,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ServerHandler, ServiceExt};
use serde_json::Value;

use crate::exit_code::Exit;
use crate::tools::{self, AwsContext};

struct AutohealTools {
    ctx: AwsContext,
    listed: Vec<Tool>,
}

impl AutohealTools {
    fn new(ctx: AwsContext) -> Self {
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
        Self { ctx, listed }
    }
}

impl ServerHandler for AutohealTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build()).with_instructions(
            "Read-only AWS tools for incident investigation: CloudWatch Logs, metrics and alarms, \
             EC2, ECS, EKS, ElastiCache. Every tool reads; none changes anything. Times are RFC 3339 \
             UTC; time windows take since/until as \"1h\"-style durations or RFC 3339 times.",
        )
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
            Ok(tool) => tool.run(&self.ctx.at_now(), arguments).await,
            Err(err) => Err(err),
        };
        let result = match outcome {
            Ok(answer) => CallToolResult::success(vec![ContentBlock::text(answer.to_string())]),
            Err(err) => CallToolResult::error(vec![ContentBlock::text(err.to_json().to_string())]),
        };
        Ok(result.into())
    }
}

pub async fn run() -> Exit {
    let region = std::env::var("AWS_REGION")
        .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|_| "us-east-1".into());
    let ctx = AwsContext::from_environment(Some(region)).await;
    let service = match AutohealTools::new(ctx)
        .serve(rmcp::transport::stdio())
        .await
    {
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
