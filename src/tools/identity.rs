//! `whoami`: who the credentials belong to.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AwsContext, Capability, Tool, ToolError};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

pub struct Whoami;

impl Tool for Whoami {
    type Args = NoArgs;
    const NAME: &'static str = "whoami";
    const CAPABILITY: Capability = Capability::Identity;
    const DESCRIPTION: &'static str = "Who am I in AWS: the account, the role session ARN and the region these tools read. Use it first when unsure which account or region an answer comes from.";
    const IAM_ACTIONS: &'static [&'static str] = &["sts:GetCallerIdentity"];

    async fn run(ctx: &AwsContext, _: NoArgs) -> Result<Value, ToolError> {
        let identity = ctx
            .sts()
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| ToolError::aws("sts:GetCallerIdentity", e))?;
        Ok(json!({
            "account": identity.account(),
            "arn": identity.arn(),
            "user_id": identity.user_id(),
            "region": ctx.region(),
        }))
    }
}
