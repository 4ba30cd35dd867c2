//! EKS: `eks_clusters`, `eks_cluster`, `eks_nodegroups`.

use futures_util::stream::{self, StreamExt, TryStreamExt};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::answer::optional_time;
use super::closest::closest;
use super::paging::take_items;
use super::{AwsContext, Capability, Tool, ToolError};

/// Describe calls in flight at once (EKS's read quotas are per second and modest).
const CONCURRENT: usize = 4;

async fn cluster_names(ctx: &AwsContext) -> Result<Vec<String>, ToolError> {
    let listing = ctx.eks().list_clusters().into_paginator().items().send();
    let (mut names, _) = take_items(listing, 500)
        .await
        .map_err(|e| ToolError::aws("eks:ListClusters", e))?;
    names.sort();
    Ok(names)
}

async fn not_found(ctx: &AwsContext, name: &str) -> ToolError {
    let names = cluster_names(ctx).await.unwrap_or_default();
    ToolError::NotFound {
        kind: "EKS cluster",
        name: name.to_owned(),
        closest: closest(name, names.iter().map(String::as_str)),
    }
}

pub struct EksClusters;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

impl Tool for EksClusters {
    type Args = NoArgs;
    const NAME: &'static str = "eks_clusters";
    const CAPABILITY: Capability = Capability::Eks;
    const DESCRIPTION: &'static str =
        "List the EKS cluster names of the region. Use eks_cluster for one cluster's details.";
    const IAM_ACTIONS: &'static [&'static str] = &["eks:ListClusters"];

    async fn run(ctx: &AwsContext, _: NoArgs) -> Result<Value, ToolError> {
        Ok(json!({"clusters": cluster_names(ctx).await?}))
    }
}

pub struct EksCluster;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterArgs {
    /// The cluster name; may be left out when the account has one.
    name: Option<String>,
}

impl Tool for EksCluster {
    type Args = ClusterArgs;
    const NAME: &'static str = "eks_cluster";
    const CAPABILITY: Capability = Capability::Eks;
    const DESCRIPTION: &'static str = "One EKS cluster: status, Kubernetes version and platform version, endpoint access, VPC and subnets, health issues, creation time.";
    const IAM_ACTIONS: &'static [&'static str] = &["eks:DescribeCluster", "eks:ListClusters"];

    async fn run(ctx: &AwsContext, args: ClusterArgs) -> Result<Value, ToolError> {
        let mut resolved = None;
        let name = match args.name {
            Some(name) => name,
            None => match cluster_names(ctx).await?.as_slice() {
                [only] => {
                    resolved = Some(json!({"name": only}));
                    only.clone()
                }
                [] => {
                    return Err(ToolError::NotFound {
                        kind: "EKS cluster",
                        name: "(any)".into(),
                        closest: Vec::new(),
                    });
                }
                several => {
                    return Err(ToolError::bad(
                        "name",
                        format!(
                            "required: the account has {} EKS clusters: {}",
                            several.len(),
                            several.join(", ")
                        ),
                    ));
                }
            },
        };
        let described = ctx.eks().describe_cluster().name(&name).send().await;
        let described = match described {
            Ok(d) => d,
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                return Err(not_found(ctx, &name).await);
            }
            Err(err) => return Err(ToolError::aws("eks:DescribeCluster", err)),
        };
        let Some(c) = described.cluster() else {
            return Err(not_found(ctx, &name).await);
        };
        let vpc = c.resources_vpc_config();
        Ok(json!({
            "resolved": resolved,
            "name": c.name(),
            "status": c.status().map(|s| s.as_str()),
            "version": c.version(),
            "platform_version": c.platform_version(),
            "created": optional_time(c.created_at()),
            "endpoint_public": vpc.map(|v| v.endpoint_public_access()),
            "endpoint_private": vpc.map(|v| v.endpoint_private_access()),
            "vpc": vpc.and_then(|v| v.vpc_id()),
            "subnets": vpc.map(|v| v.subnet_ids().to_vec()),
            "health_issues": c.health().map(|h| h.issues().iter().map(|i| json!({
                "code": i.code().map(|c| c.as_str()),
                "message": i.message(),
            })).collect::<Vec<_>>()),
        }))
    }
}

pub struct EksNodegroups;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodegroupsArgs {
    /// The cluster name; default every cluster of the region.
    cluster: Option<String>,
}

impl Tool for EksNodegroups {
    type Args = NodegroupsArgs;
    const NAME: &'static str = "eks_nodegroups";
    const CAPABILITY: Capability = Capability::Eks;
    const DESCRIPTION: &'static str = "EKS managed node groups (of one cluster, or every cluster): status, scaling configuration (min, max, desired), instance types, capacity type (ON_DEMAND/SPOT), AMI and Kubernetes version, health issues. Use it for \"what node groups are running and how do they scale\".";
    const IAM_ACTIONS: &'static [&'static str] = &[
        "eks:ListClusters",
        "eks:ListNodegroups",
        "eks:DescribeNodegroup",
    ];

    async fn run(ctx: &AwsContext, args: NodegroupsArgs) -> Result<Value, ToolError> {
        let clusters = match args.cluster {
            Some(cluster) => vec![cluster],
            None => cluster_names(ctx).await?,
        };
        let mut pairs = Vec::new();
        for cluster in &clusters {
            let listing = ctx
                .eks()
                .list_nodegroups()
                .cluster_name(cluster)
                .into_paginator()
                .items()
                .send();
            let names = match take_items(listing, usize::MAX).await {
                Ok((names, _)) => names,
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_resource_not_found_exception()) =>
                {
                    return Err(not_found(ctx, cluster).await);
                }
                Err(err) => return Err(ToolError::aws("eks:ListNodegroups", err)),
            };
            pairs.extend(names.into_iter().map(|n| (cluster.clone(), n)));
        }
        let described: Vec<Value> =
            stream::iter(pairs.into_iter().map(|(cluster, name)| async move {
                let d = ctx
                    .eks()
                    .describe_nodegroup()
                    .cluster_name(&cluster)
                    .nodegroup_name(&name)
                    .send()
                    .await
                    .map_err(|e| ToolError::aws("eks:DescribeNodegroup", e))?;
                let Some(n) = d.nodegroup() else {
                    return Ok(json!({"cluster": cluster, "name": name}));
                };
                let scaling = n.scaling_config();
                Ok::<_, ToolError>(json!({
                    "cluster": cluster,
                    "name": n.nodegroup_name(),
                    "status": n.status().map(|s| s.as_str()),
                    "min": scaling.and_then(|s| s.min_size()),
                    "max": scaling.and_then(|s| s.max_size()),
                    "desired": scaling.and_then(|s| s.desired_size()),
                    "instance_types": n.instance_types(),
                    "capacity_type": n.capacity_type().map(|c| c.as_str()),
                    "ami_type": n.ami_type().map(|a| a.as_str()),
                    "version": n.version(),
                    "labels": n.labels(),
                    "taints": n.taints().iter().map(|t| format!(
                        "{}={}:{}",
                        t.key().unwrap_or_default(),
                        t.value().unwrap_or_default(),
                        t.effect().map(|e| e.as_str()).unwrap_or_default()
                    )).collect::<Vec<_>>(),
                    "health_issues": n.health().map(|h| h.issues().iter().map(|i| json!({
                        "code": i.code().map(|c| c.as_str()),
                        "message": i.message(),
                    })).collect::<Vec<_>>()),
                }))
            }))
            .buffered(CONCURRENT)
            .try_collect()
            .await?;
        // Grouped by cluster, so the cluster is said once.
        let grouped: Vec<Value> = clusters
            .iter()
            .map(|cluster| {
                let groups: Vec<Value> = described
                    .iter()
                    .filter(|n| n["cluster"] == cluster.as_str())
                    .map(|n| {
                        let mut n = n.clone();
                        n.as_object_mut().map(|o| o.remove("cluster"));
                        n
                    })
                    .collect();
                json!({"cluster": cluster, "nodegroups": groups})
            })
            .collect();
        Ok(json!({"clusters": grouped}))
    }
}
