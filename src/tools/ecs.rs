//! ECS: `ecs_clusters`, `ecs_services`, `ecs_tasks`.

use aws_sdk_ecs::types::DesiredStatus;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::answer::optional_time;
use super::closest::closest;
use super::paging::take_items;
use super::{AwsContext, Capability, Tool, ToolError};

/// The last part of an ARN (`…:cluster/main` → `main`, `…:task/main/0abc` → `0abc`).
fn short(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// `…:task-definition/payment-service:7` → `payment-service:7`.
fn task_definition(arn: Option<&str>) -> Option<&str> {
    arn.map(short)
}

async fn cluster_arns(ctx: &AwsContext) -> Result<Vec<String>, ToolError> {
    let listing = ctx.ecs().list_clusters().into_paginator().items().send();
    let (arns, _) = take_items(listing, 1000)
        .await
        .map_err(|e| ToolError::aws("ecs:ListClusters", e))?;
    Ok(arns)
}

/// The error for a cluster that does not exist, with close names.
async fn cluster_not_found(ctx: &AwsContext, name: &str) -> ToolError {
    let names = cluster_arns(ctx).await.unwrap_or_default();
    ToolError::NotFound {
        kind: "ECS cluster",
        name: name.to_owned(),
        closest: closest(name, names.iter().map(|a| short(a))),
    }
}

/// The cluster a tool works on: the one asked for, or — when none was and the account has
/// exactly one — that one (recorded in `resolved`, so the answer says so).
async fn cluster_or_only(
    ctx: &AwsContext,
    asked: Option<String>,
    resolved: &mut Option<Value>,
) -> Result<String, ToolError> {
    if let Some(cluster) = asked {
        return Ok(cluster);
    }
    let arns = cluster_arns(ctx).await?;
    match arns.as_slice() {
        [only] => {
            let name = short(only).to_owned();
            *resolved = Some(json!({"cluster": name}));
            Ok(name)
        }
        [] => Err(ToolError::NotFound {
            kind: "ECS cluster",
            name: "(any)".into(),
            closest: Vec::new(),
        }),
        several => Err(ToolError::bad(
            "cluster",
            format!(
                "required: the account has {} ECS clusters: {}",
                several.len(),
                several
                    .iter()
                    .map(|a| short(a))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

pub struct EcsClusters;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

impl Tool for EcsClusters {
    type Args = NoArgs;
    const NAME: &'static str = "ecs_clusters";
    const CAPABILITY: Capability = Capability::Ecs;
    const DESCRIPTION: &'static str = "List ECS clusters with their status and counts of services, running and pending tasks and container instances. Use it to find cluster names.";
    const IAM_ACTIONS: &'static [&'static str] = &["ecs:ListClusters", "ecs:DescribeClusters"];

    async fn run(ctx: &AwsContext, _: NoArgs) -> Result<Value, ToolError> {
        let arns = cluster_arns(ctx).await?;
        let mut clusters = Vec::new();
        for batch in arns.chunks(100) {
            let described = ctx
                .ecs()
                .describe_clusters()
                .set_clusters(Some(batch.to_vec()))
                .send()
                .await
                .map_err(|e| ToolError::aws("ecs:DescribeClusters", e))?;
            for c in described.clusters() {
                clusters.push(json!({
                    "name": c.cluster_name(),
                    "status": c.status(),
                    "services": c.active_services_count(),
                    "running_tasks": c.running_tasks_count(),
                    "pending_tasks": c.pending_tasks_count(),
                    "container_instances": c.registered_container_instances_count(),
                }));
            }
        }
        clusters.sort_by_key(|c| c["name"].to_string());
        Ok(json!({"clusters": clusters}))
    }
}

pub struct EcsServices;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServicesArgs {
    /// The cluster name (or ARN), e.g. "main"; may be left out when the account has one.
    cluster: Option<String>,
    /// Only these services (names); default every service of the cluster.
    services: Option<Vec<String>>,
    /// Latest service events to show per service (default 5, at most 50).
    events: Option<u32>,
}

impl Tool for EcsServices {
    type Args = ServicesArgs;
    const NAME: &'static str = "ecs_services";
    const CAPABILITY: Capability = Capability::Ecs;
    const DESCRIPTION: &'static str = "ECS services of a cluster with their deployment status: desired/running/pending counts, each deployment (PRIMARY, ACTIVE) with its rollout state and failed tasks, and the latest service events (newest first). Use it for \"what is the deployment status of the services in cluster main\".";
    const IAM_ACTIONS: &'static [&'static str] = &[
        "ecs:ListServices",
        "ecs:DescribeServices",
        "ecs:ListClusters",
    ];

    async fn run(ctx: &AwsContext, args: ServicesArgs) -> Result<Value, ToolError> {
        let mut resolved = None;
        let cluster = cluster_or_only(ctx, args.cluster, &mut resolved).await?;
        let events = match args.events {
            None => 5,
            Some(n) if n <= 50 => n as usize,
            Some(_) => return Err(ToolError::bad("events", "must be at most 50")),
        };
        let names = match args.services {
            Some(names) if !names.is_empty() => names,
            _ => {
                let listing = ctx
                    .ecs()
                    .list_services()
                    .cluster(&cluster)
                    .into_paginator()
                    .items()
                    .send();
                match take_items(listing, 500).await {
                    Ok((arns, _)) => arns,
                    Err(err)
                        if err
                            .as_service_error()
                            .is_some_and(|e| e.is_cluster_not_found_exception()) =>
                    {
                        return Err(cluster_not_found(ctx, &cluster).await);
                    }
                    Err(err) => return Err(ToolError::aws("ecs:ListServices", err)),
                }
            }
        };
        let mut services = Vec::new();
        let mut missing = Vec::new();
        for batch in names.chunks(10) {
            let described = ctx
                .ecs()
                .describe_services()
                .cluster(&cluster)
                .set_services(Some(batch.to_vec()))
                .send()
                .await;
            let described = match described {
                Ok(d) => d,
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_cluster_not_found_exception()) =>
                {
                    return Err(cluster_not_found(ctx, &cluster).await);
                }
                Err(err) => return Err(ToolError::aws("ecs:DescribeServices", err)),
            };
            missing.extend(
                described
                    .failures()
                    .iter()
                    .filter_map(|f| f.arn().map(|a| short(a).to_owned())),
            );
            for s in described.services() {
                let deployments: Vec<Value> = s
                    .deployments()
                    .iter()
                    .map(|d| {
                        json!({
                            "status": d.status(),
                            "rollout_state": d.rollout_state().map(|r| r.as_str()),
                            "rollout_reason": d.rollout_state_reason(),
                            "task_definition": task_definition(d.task_definition()),
                            "desired": d.desired_count(),
                            "running": d.running_count(),
                            "pending": d.pending_count(),
                            "failed_tasks": d.failed_tasks(),
                            "created": optional_time(d.created_at()),
                            "updated": optional_time(d.updated_at()),
                        })
                    })
                    .collect();
                let primary = s
                    .deployments()
                    .iter()
                    .find(|d| d.status() == Some("PRIMARY"));
                // One deployment says nothing the service does not: only its rollout facts
                // are kept; several (a rollout in flight) are listed.
                let single = s.deployments().len() == 1;
                let mut latest: Vec<_> = s.events().iter().collect();
                latest.sort_by_key(|e| std::cmp::Reverse(e.created_at().map(|t| t.secs())));
                services.push(json!({
                    "name": s.service_name(),
                    "status": s.status(),
                    "desired": s.desired_count(),
                    "running": s.running_count(),
                    "pending": s.pending_count(),
                    "rollout_state": primary.and_then(|d| d.rollout_state()).map(|r| r.as_str()),
                    "launch_type": s.launch_type().map(|l| l.as_str()),
                    "task_definition": task_definition(s.task_definition()),
                    "rollout_reason": single.then(|| primary.and_then(|d| d.rollout_state_reason())).flatten(),
                    "failed_tasks": single.then(|| primary.map(|d| d.failed_tasks())).flatten().filter(|n| *n > 0),
                    "deployed": single.then(|| primary.and_then(|d| optional_time(d.created_at()))).flatten(),
                    "deployments": (!single).then_some(deployments),
                    "events": latest.iter().take(events).map(|e| json!({
                        "time": optional_time(e.created_at()),
                        "message": e.message(),
                    })).collect::<Vec<_>>(),
                }));
            }
        }
        services.sort_by_key(|s| s["name"].to_string());
        let mut answer = json!({"resolved": resolved, "cluster": cluster, "services": services});
        if !missing.is_empty() {
            answer["not_found"] = json!(missing);
        }
        Ok(answer)
    }
}

pub struct EcsTasks;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TasksArgs {
    /// The cluster name (or ARN); may be left out when the account has one.
    cluster: Option<String>,
    /// Only tasks of this service.
    service: Option<String>,
    /// "RUNNING" or "STOPPED"; default both (stopped tasks are kept about an hour by ECS).
    status: Option<String>,
    /// Most tasks (default 50, at most 100).
    limit: Option<u32>,
}

impl Tool for EcsTasks {
    type Args = TasksArgs;
    const NAME: &'static str = "ecs_tasks";
    const CAPABILITY: Capability = Capability::Ecs;
    const DESCRIPTION: &'static str = "ECS tasks of a cluster (optionally one service), running and recently stopped: status, why each stopped (stopped reason, stop code, container exit codes and reasons, e.g. OutOfMemoryError), health, times. Use it to find why tasks keep dying.";
    const IAM_ACTIONS: &'static [&'static str] =
        &["ecs:ListTasks", "ecs:DescribeTasks", "ecs:ListClusters"];

    async fn run(ctx: &AwsContext, args: TasksArgs) -> Result<Value, ToolError> {
        let mut resolved = None;
        let cluster = cluster_or_only(ctx, args.cluster, &mut resolved).await?;
        let limit = match args.limit {
            None => 50,
            Some(n) if (1..=100).contains(&n) => n as usize,
            Some(_) => return Err(ToolError::bad("limit", "must be 1 to 100")),
        };
        let statuses = match args.status.as_deref().map(str::to_uppercase).as_deref() {
            None => vec![DesiredStatus::Running, DesiredStatus::Stopped],
            Some("RUNNING") => vec![DesiredStatus::Running],
            Some("STOPPED") => vec![DesiredStatus::Stopped],
            Some(other) => {
                return Err(ToolError::bad(
                    "status",
                    format!("{other:?}: use RUNNING or STOPPED"),
                ));
            }
        };
        let mut arns = Vec::new();
        for status in statuses {
            let page = ctx
                .ecs()
                .list_tasks()
                .cluster(&cluster)
                .set_service_name(args.service.clone())
                .desired_status(status)
                .max_results(100)
                .send()
                .await;
            match page {
                Ok(page) => arns.extend(page.task_arns().iter().cloned()),
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_cluster_not_found_exception()) =>
                {
                    return Err(cluster_not_found(ctx, &cluster).await);
                }
                Err(err) => return Err(ToolError::aws("ecs:ListTasks", err)),
            }
        }
        let mut tasks = Vec::new();
        for batch in arns.chunks(100) {
            let described = ctx
                .ecs()
                .describe_tasks()
                .cluster(&cluster)
                .set_tasks(Some(batch.to_vec()))
                .send()
                .await
                .map_err(|e| ToolError::aws("ecs:DescribeTasks", e))?;
            for t in described.tasks() {
                let started = t.started_at().or(t.created_at()).map(|d| d.secs());
                tasks.push((
                    started,
                    json!({
                        "id": t.task_arn().map(short),
                        "group": t.group(),
                        "task_definition": task_definition(t.task_definition_arn()),
                        "last_status": t.last_status(),
                        "desired_status": t.desired_status(),
                        "health": t.health_status().map(|h| h.as_str()),
                        "started": optional_time(t.started_at()),
                        "stopped": optional_time(t.stopped_at()),
                        "stop_code": t.stop_code().map(|c| c.as_str()),
                        "stopped_reason": t.stopped_reason(),
                        "az": t.availability_zone(),
                        "containers": t.containers().iter().map(|c| json!({
                            "name": c.name(),
                            "last_status": c.last_status(),
                            "exit_code": c.exit_code(),
                            "reason": c.reason(),
                            "health": c.health_status().map(|h| h.as_str()),
                        })).collect::<Vec<_>>(),
                    }),
                ));
            }
        }
        tasks.sort_by_key(|t| std::cmp::Reverse(t.0));
        let truncated = tasks.len() > limit;
        tasks.truncate(limit);
        Ok(json!({
            "resolved": resolved,
            "cluster": cluster,
            "tasks": tasks.into_iter().map(|(_, t)| t).collect::<Vec<_>>(),
            "truncated": truncated,
        }))
    }
}
