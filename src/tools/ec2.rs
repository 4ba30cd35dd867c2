//! EC2: `ec2_instances`, `ec2_instance`.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{Filter, Instance, IpPermission, Tag};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::answer::optional_time;
use super::closest::closest;
use super::{AwsContext, Capability, Tool, ToolError};

const STATES: [&str; 6] = [
    "pending",
    "running",
    "stopping",
    "stopped",
    "shutting-down",
    "terminated",
];

fn tags_of(tags: &[Tag]) -> BTreeMap<&str, &str> {
    tags.iter()
        .filter_map(|t| Some((t.key()?, t.value().unwrap_or_default())))
        .collect()
}

/// The facts of one instance that a list shows.
fn summary(instance: &Instance) -> Value {
    let mut tags = tags_of(instance.tags());
    let name = tags.remove("Name");
    json!({
        "id": instance.instance_id(),
        "name": name,
        "state": instance.state().and_then(|s| s.name()).map(|n| n.as_str()),
        "type": instance.instance_type().map(|t| t.as_str()),
        "az": instance.placement().and_then(|p| p.availability_zone()),
        "private_ip": instance.private_ip_address(),
        "public_ip": instance.public_ip_address(),
        "launched": optional_time(instance.launch_time()),
        "state_reason": instance.state_transition_reason(),
        "tags": tags,
    })
}

async fn instances(
    ctx: &AwsContext,
    filters: Vec<Filter>,
    ids: Vec<String>,
) -> Result<Vec<Instance>, ToolError> {
    let mut found = Vec::new();
    let mut token = None;
    loop {
        let page = ctx
            .ec2()
            .describe_instances()
            .set_filters(Some(filters.clone()).filter(|f| !f.is_empty()))
            .set_instance_ids(Some(ids.clone()).filter(|i| !i.is_empty()))
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| ToolError::aws("ec2:DescribeInstances", e))?;
        for reservation in page.reservations() {
            found.extend(reservation.instances().iter().cloned());
        }
        token = page.next_token().map(str::to_owned);
        if token.is_none() || found.len() >= 1000 {
            return Ok(found);
        }
    }
}

pub struct Ec2Instances;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstancesArgs {
    /// Only instances with all these tag values, e.g. {"Environment": "production"}.
    tags: Option<BTreeMap<String, String>>,
    /// Only instances in this state: pending, running, stopping, stopped, shutting-down, terminated. Default every state.
    state: Option<String>,
    /// Most instances (default 100, at most 1000).
    limit: Option<u32>,
}

impl Tool for Ec2Instances {
    type Args = InstancesArgs;
    const NAME: &'static str = "ec2_instances";
    const CAPABILITY: Capability = Capability::Ec2;
    const DESCRIPTION: &'static str = "List EC2 instances, filtered by tag values and state (every state unless given): id, Name tag, state, type, availability zone, IPs, launch time, other tags. Use it for \"list the instances tagged Environment=production\".";
    const IAM_ACTIONS: &'static [&'static str] = &["ec2:DescribeInstances"];

    async fn run(ctx: &AwsContext, args: InstancesArgs) -> Result<Value, ToolError> {
        let limit = match args.limit {
            None => 100,
            Some(n) if (1..=1000).contains(&n) => n as usize,
            Some(_) => return Err(ToolError::bad("limit", "must be 1 to 1000")),
        };
        let mut filters: Vec<Filter> = args
            .tags
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| Filter::builder().name(format!("tag:{k}")).values(v).build())
            .collect();
        if let Some(state) = args.state {
            if !STATES.contains(&state.as_str()) {
                return Err(ToolError::bad(
                    "state",
                    format!("{state:?}: use one of {}", STATES.join(", ")),
                ));
            }
            filters.push(
                Filter::builder()
                    .name("instance-state-name")
                    .values(state)
                    .build(),
            );
        }
        let found = instances(ctx, filters, Vec::new()).await?;
        let mut shown: Vec<Value> = found.iter().map(summary).collect();
        shown.sort_by_key(|i| {
            (
                i["name"].as_str().unwrap_or("~").to_owned(),
                i["id"].to_string(),
            )
        });
        let truncated = shown.len() > limit;
        shown.truncate(limit);
        let mut by_state: BTreeMap<String, usize> = BTreeMap::new();
        for i in &shown {
            *by_state
                .entry(i["state"].as_str().unwrap_or("unknown").to_owned())
                .or_default() += 1;
        }
        Ok(json!({
            "count": shown.len(),
            "by_state": by_state,
            "instances": shown,
            "truncated": truncated,
        }))
    }
}

pub struct Ec2Instance;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceArgs {
    /// The instance ID, e.g. "i-0123456789abcdef0".
    id: String,
}

fn rules(permissions: &[IpPermission]) -> Vec<String> {
    permissions
        .iter()
        .flat_map(|p| {
            let protocol = match p.ip_protocol().unwrap_or("-1") {
                "-1" => "all".to_owned(),
                other => other.to_owned(),
            };
            let ports = match (p.from_port(), p.to_port()) {
                (Some(from), Some(to)) if from == to && from >= 0 => format!(" {from}"),
                (Some(from), Some(to)) if from >= 0 => format!(" {from}-{to}"),
                _ => String::new(),
            };
            let peers = p
                .ip_ranges()
                .iter()
                .filter_map(|r| r.cidr_ip().map(str::to_owned))
                .chain(
                    p.ipv6_ranges()
                        .iter()
                        .filter_map(|r| r.cidr_ipv6().map(str::to_owned)),
                )
                .chain(
                    p.user_id_group_pairs()
                        .iter()
                        .filter_map(|g| g.group_id().map(str::to_owned)),
                )
                .chain(
                    p.prefix_list_ids()
                        .iter()
                        .filter_map(|l| l.prefix_list_id().map(str::to_owned)),
                )
                .collect::<Vec<_>>();
            let rule = format!("{protocol}{ports}");
            peers.into_iter().map(move |peer| format!("{rule} {peer}"))
        })
        .collect()
}

impl Tool for Ec2Instance {
    type Args = InstanceArgs;
    const NAME: &'static str = "ec2_instance";
    const CAPABILITY: Capability = Capability::Ec2;
    const DESCRIPTION: &'static str = "Everything about one EC2 instance: state, type, placement, IPs, status checks (system and instance) and scheduled events, security groups with their rules, subnet and VPC. Use it when one instance is suspect.";
    const IAM_ACTIONS: &'static [&'static str] = &[
        "ec2:DescribeInstances",
        "ec2:DescribeInstanceStatus",
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeSubnets",
        "ec2:DescribeVpcs",
    ];

    async fn run(ctx: &AwsContext, args: InstanceArgs) -> Result<Value, ToolError> {
        if !args.id.starts_with("i-") {
            return Err(ToolError::bad(
                "id",
                format!("{:?} is not an instance ID (i-…)", args.id),
            ));
        }
        let found = match instances(ctx, Vec::new(), vec![args.id.clone()]).await {
            Ok(found) => found,
            Err(ToolError::Aws {
                code: Some(code), ..
            }) if code.starts_with("InvalidInstanceID") => Vec::new(),
            Err(err) => return Err(err),
        };
        let Some(instance) = found.into_iter().next() else {
            let all = instances(ctx, Vec::new(), Vec::new()).await?;
            let ids: Vec<&str> = all.iter().filter_map(|i| i.instance_id()).collect();
            return Err(ToolError::NotFound {
                kind: "instance",
                name: args.id.clone(),
                closest: closest(&args.id, ids),
            });
        };
        let mut answer = summary(&instance);
        let ec2 = ctx.ec2();
        let status = ec2
            .describe_instance_status()
            .instance_ids(&args.id)
            .include_all_instances(true)
            .send()
            .await
            .map_err(|e| ToolError::aws("ec2:DescribeInstanceStatus", e))?;
        if let Some(status) = status.instance_statuses().first() {
            answer["status_checks"] = json!({
                "system": status.system_status().and_then(|s| s.status()).map(|s| s.as_str()),
                "instance": status.instance_status().and_then(|s| s.status()).map(|s| s.as_str()),
            });
            answer["scheduled_events"] = json!(
                status
                    .events()
                    .iter()
                    .map(|e| json!({
                        "code": e.code().map(|c| c.as_str()),
                        "description": e.description(),
                        "not_before": optional_time(e.not_before()),
                    }))
                    .collect::<Vec<_>>()
            );
        }
        let group_ids: Vec<String> = instance
            .security_groups()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_owned))
            .collect();
        if !group_ids.is_empty() {
            let groups = ec2
                .describe_security_groups()
                .set_group_ids(Some(group_ids))
                .send()
                .await
                .map_err(|e| ToolError::aws("ec2:DescribeSecurityGroups", e))?;
            answer["security_groups"] = json!(
                groups
                    .security_groups()
                    .iter()
                    .map(|g| json!({
                        "id": g.group_id(),
                        "name": g.group_name(),
                        "inbound": rules(g.ip_permissions()),
                        "outbound": rules(g.ip_permissions_egress()),
                    }))
                    .collect::<Vec<_>>()
            );
        }
        if let Some(subnet_id) = instance.subnet_id() {
            let subnets = ec2
                .describe_subnets()
                .subnet_ids(subnet_id)
                .send()
                .await
                .map_err(|e| ToolError::aws("ec2:DescribeSubnets", e))?;
            if let Some(s) = subnets.subnets().first() {
                answer["subnet"] = json!({
                    "id": s.subnet_id(),
                    "name": tags_of(s.tags()).get("Name"),
                    "cidr": s.cidr_block(),
                    "az": s.availability_zone(),
                    "free_ips": s.available_ip_address_count(),
                    "public_ip_on_launch": s.map_public_ip_on_launch(),
                });
            }
        }
        if let Some(vpc_id) = instance.vpc_id() {
            let vpcs = ec2
                .describe_vpcs()
                .vpc_ids(vpc_id)
                .send()
                .await
                .map_err(|e| ToolError::aws("ec2:DescribeVpcs", e))?;
            if let Some(v) = vpcs.vpcs().first() {
                answer["vpc"] = json!({
                    "id": v.vpc_id(),
                    "name": tags_of(v.tags()).get("Name"),
                    "cidr": v.cidr_block(),
                    "state": v.state().map(|s| s.as_str()),
                });
            }
        }
        answer["image"] = json!(instance.image_id());
        answer["key_name"] = json!(instance.key_name());
        answer["iam_profile"] = json!(instance.iam_instance_profile().and_then(|p| p.arn()));
        Ok(answer)
    }
}
