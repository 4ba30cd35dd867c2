//! ElastiCache: `elasticache_clusters`, `elasticache_replication_group`,
//! `elasticache_serverless`, `elasticache_events`, `elasticache_metrics`.
//!
//! Infrastructure only: no tool here reads or writes a cached key or value.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_elasticache::types::{CacheCluster, ReplicationGroup, SourceType};
use aws_smithy_types::DateTime;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::answer::optional_time;
use super::args::Window;
use super::closest::closest;
use super::metrics::{SeriesSpec, read_series};
use super::newest::Newest;
use super::paging::take_items;
use super::{AwsContext, Capability, Tool, ToolError};

/// Metrics `elasticache_metrics` reads (AWS/ElastiCache, per node).
const METRICS: [&str; 16] = [
    "CPUUtilization",
    "EngineCPUUtilization",
    "DatabaseMemoryUsagePercentage",
    "FreeableMemory",
    "BytesUsedForCache",
    "SwapUsage",
    "Evictions",
    "CurrConnections",
    "NewConnections",
    "CurrItems",
    "CacheHits",
    "CacheMisses",
    "CacheHitRate",
    "NetworkBytesIn",
    "NetworkBytesOut",
    "ReplicationLag",
];

async fn all_cache_clusters(ctx: &AwsContext) -> Result<Vec<CacheCluster>, ToolError> {
    let listing = ctx
        .elasticache()
        .describe_cache_clusters()
        .show_cache_node_info(true)
        .into_paginator()
        .items()
        .send();
    let (found, _) = take_items(listing, 2000)
        .await
        .map_err(|e| ToolError::aws("elasticache:DescribeCacheClusters", e))?;
    Ok(found)
}

async fn all_replication_groups(ctx: &AwsContext) -> Result<Vec<ReplicationGroup>, ToolError> {
    let listing = ctx
        .elasticache()
        .describe_replication_groups()
        .into_paginator()
        .items()
        .send();
    let (found, _) = take_items(listing, 2000)
        .await
        .map_err(|e| ToolError::aws("elasticache:DescribeReplicationGroups", e))?;
    Ok(found)
}

/// The role of each member cluster of a replication group (`primary` / `replica`).
fn member_roles(group: &ReplicationGroup) -> BTreeMap<String, (String, Option<String>)> {
    let mut roles = BTreeMap::new();
    for node_group in group.node_groups() {
        for member in node_group.node_group_members() {
            if let Some(cluster) = member.cache_cluster_id() {
                roles.insert(
                    cluster.to_owned(),
                    (
                        member.current_role().unwrap_or_default().to_owned(),
                        member.preferred_availability_zone().map(str::to_owned),
                    ),
                );
            }
        }
    }
    roles
}

pub struct ElasticacheClusters;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

impl Tool for ElasticacheClusters {
    type Args = NoArgs;
    const NAME: &'static str = "elasticache_clusters";
    const CAPABILITY: Capability = Capability::Elasticache;
    const DESCRIPTION: &'static str = "List every ElastiCache cache cluster (Redis/Valkey nodes and Memcached clusters), replication-group members included, each with its status, engine and version, node type, availability zone and its replication group and role; and the serverless caches by name and status (elasticache_serverless has their details). Use it for \"list all ElastiCache clusters and their status\".";
    const IAM_ACTIONS: &'static [&'static str] = &[
        "elasticache:DescribeCacheClusters",
        "elasticache:DescribeReplicationGroups",
        "elasticache:DescribeServerlessCaches",
    ];

    async fn run(ctx: &AwsContext, _: NoArgs) -> Result<Value, ToolError> {
        let (clusters, groups, serverless) = tokio::join!(
            all_cache_clusters(ctx),
            all_replication_groups(ctx),
            serverless_summary(ctx)
        );
        let (clusters, groups) = (clusters?, groups?);
        let mut roles = BTreeMap::new();
        let mut group_of = BTreeMap::new();
        for group in &groups {
            let id = group.replication_group_id().unwrap_or_default().to_owned();
            for (member, role) in member_roles(group) {
                roles.insert(member.clone(), role);
                group_of.insert(member, id.clone());
            }
            for member in group.member_clusters() {
                group_of.insert(member.clone(), id.clone());
            }
        }
        let mut shown: BTreeMap<String, Value> = BTreeMap::new();
        for c in &clusters {
            let id = c.cache_cluster_id().unwrap_or_default().to_owned();
            let (role, _) = roles.get(&id).cloned().unwrap_or_default();
            shown.insert(
                id.clone(),
                json!({
                    "id": id,
                    "status": c.cache_cluster_status(),
                    "engine": c.engine(),
                    "engine_version": c.engine_version(),
                    "node_type": c.cache_node_type(),
                    "nodes": c.num_cache_nodes(),
                    "az": c.preferred_availability_zone(),
                    "replication_group": c.replication_group_id().map(str::to_owned).or_else(|| group_of.get(&id).cloned()),
                    "role": role,
                }),
            );
        }
        // Members a replication group names but DescribeCacheClusters did not return (some
        // emulators list only standalone clusters): shown from the group's own description.
        for group in &groups {
            let roles = member_roles(group);
            for member in group.member_clusters() {
                if shown.contains_key(member) {
                    continue;
                }
                let (role, az) = roles.get(member).cloned().unwrap_or_default();
                shown.insert(
                    member.clone(),
                    json!({
                        "id": member,
                        "status": group.status(),
                        "engine": group.engine(),
                        "node_type": group.cache_node_type(),
                        "az": az,
                        "replication_group": group.replication_group_id(),
                        "role": role,
                    }),
                );
            }
        }
        let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
        for c in shown.values() {
            *by_status
                .entry(c["status"].as_str().unwrap_or("unknown").to_owned())
                .or_default() += 1;
        }
        let mut answer = json!({
            "count": shown.len(),
            "by_status": by_status,
            "clusters": shown.into_values().collect::<Vec<_>>(),
        });
        match serverless {
            Ok(caches) => answer["serverless"] = json!(caches),
            // The node-based answer stands on its own; say what is missing and why.
            Err(err) => {
                answer["serverless_note"] =
                    json!(format!("serverless caches could not be listed: {err}"))
            }
        }
        Ok(answer)
    }
}

pub struct ElasticacheReplicationGroup;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupArgs {
    /// The replication group ID, e.g. "cell-a-redis".
    id: String,
}

async fn group_not_found(ctx: &AwsContext, id: &str) -> ToolError {
    let groups = all_replication_groups(ctx).await.unwrap_or_default();
    ToolError::NotFound {
        kind: "replication group",
        name: id.to_owned(),
        closest: closest(id, groups.iter().filter_map(|g| g.replication_group_id())),
    }
}

fn is_group_missing<E: aws_sdk_elasticache::error::ProvideErrorMetadata>(err: &E) -> bool {
    err.code() == Some("ReplicationGroupNotFoundFault")
}

impl Tool for ElasticacheReplicationGroup {
    type Args = GroupArgs;
    const NAME: &'static str = "elasticache_replication_group";
    const CAPABILITY: Capability = Capability::Elasticache;
    const DESCRIPTION: &'static str = "One ElastiCache replication group (Redis/Valkey): status, cluster mode, automatic failover and multi-AZ state, node type, endpoints, and its topology — each node group (shard) with its primary and replica members, their roles and availability zones. Use it for \"describe the replication group X, its failover and topology\".";
    const IAM_ACTIONS: &'static [&'static str] = &["elasticache:DescribeReplicationGroups"];

    async fn run(ctx: &AwsContext, args: GroupArgs) -> Result<Value, ToolError> {
        let described = ctx
            .elasticache()
            .describe_replication_groups()
            .replication_group_id(&args.id)
            .send()
            .await;
        let described = match described {
            Ok(d) => d,
            Err(err) if err.as_service_error().is_some_and(is_group_missing) => {
                return Err(group_not_found(ctx, &args.id).await);
            }
            Err(err) => return Err(ToolError::aws("elasticache:DescribeReplicationGroups", err)),
        };
        let Some(g) = described.replication_groups().first() else {
            return Err(group_not_found(ctx, &args.id).await);
        };
        let endpoint = |e: Option<&aws_sdk_elasticache::types::Endpoint>| {
            e.and_then(|e| Some(format!("{}:{}", e.address()?, e.port()?)))
        };
        let node_groups: Vec<Value> = g
            .node_groups()
            .iter()
            .map(|ng| {
                json!({
                    "id": ng.node_group_id(),
                    "status": ng.status(),
                    "slots": ng.slots(),
                    "primary_endpoint": endpoint(ng.primary_endpoint()),
                    "reader_endpoint": endpoint(ng.reader_endpoint()),
                    "members": ng.node_group_members().iter().map(|m| json!({
                        "cluster": m.cache_cluster_id(),
                        "role": m.current_role(),
                        "az": m.preferred_availability_zone(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let primaries = g
            .node_groups()
            .iter()
            .flat_map(|ng| ng.node_group_members())
            .filter(|m| m.current_role() == Some("primary"))
            .count();
        let replicas = g
            .node_groups()
            .iter()
            .flat_map(|ng| ng.node_group_members())
            .filter(|m| m.current_role() == Some("replica"))
            .count();
        Ok(json!({
            "id": g.replication_group_id(),
            "description": g.description(),
            "status": g.status(),
            "engine": g.engine(),
            "cluster_mode": g.cluster_mode().map(|c| c.as_str()).or(g.cluster_enabled().map(|on| if on { "enabled" } else { "disabled" })),
            "automatic_failover": g.automatic_failover().map(|a| a.as_str()),
            "multi_az": g.multi_az().map(|m| m.as_str()),
            "node_type": g.cache_node_type(),
            "shards": g.node_groups().len(),
            "primaries": primaries,
            "replicas": replicas,
            "configuration_endpoint": endpoint(g.configuration_endpoint()),
            "node_groups": node_groups,
            "pending_changes": g.pending_modified_values().map(|p| json!({
                "primary_cluster": p.primary_cluster_id(),
                "automatic_failover": p.automatic_failover_status().map(|a| a.as_str()),
            })),
        }))
    }
}

/// Serverless caches by name, status and engine (at most 100: the answer is a summary).
async fn serverless_summary(ctx: &AwsContext) -> Result<Vec<Value>, ToolError> {
    let listing = ctx
        .elasticache()
        .describe_serverless_caches()
        .into_paginator()
        .items()
        .send();
    let (caches, _) = take_items(listing, 100)
        .await
        .map_err(|e| ToolError::aws("elasticache:DescribeServerlessCaches", e))?;
    Ok(caches
        .iter()
        .map(|c| json!({"name": c.serverless_cache_name(), "status": c.status(), "engine": c.engine()}))
        .collect())
}

pub struct ElasticacheServerless;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerlessArgs {
    /// One serverless cache by name; default all of them.
    name: Option<String>,
}

impl Tool for ElasticacheServerless {
    type Args = ServerlessArgs;
    const NAME: &'static str = "elasticache_serverless";
    const CAPABILITY: Capability = Capability::Elasticache;
    const DESCRIPTION: &'static str = "List ElastiCache Serverless caches: status, engine and major version, endpoint, usage limits (data storage, ECPU per second), creation time.";
    const IAM_ACTIONS: &'static [&'static str] = &["elasticache:DescribeServerlessCaches"];

    async fn run(ctx: &AwsContext, args: ServerlessArgs) -> Result<Value, ToolError> {
        let mut caches = Vec::new();
        let mut token = None;
        loop {
            let page = ctx
                .elasticache()
                .describe_serverless_caches()
                .set_serverless_cache_name(args.name.clone())
                .set_next_token(token)
                .send()
                .await;
            let page = match page {
                Ok(page) => page,
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_serverless_cache_not_found_fault()) =>
                {
                    return Err(ToolError::NotFound {
                        kind: "serverless cache",
                        name: args.name.clone().unwrap_or_default(),
                        closest: Vec::new(),
                    });
                }
                Err(err) => {
                    return Err(ToolError::aws("elasticache:DescribeServerlessCaches", err));
                }
            };
            for c in page.serverless_caches() {
                let limits = c.cache_usage_limits();
                caches.push(json!({
                    "name": c.serverless_cache_name(),
                    "status": c.status(),
                    "engine": c.engine(),
                    "major_version": c.major_engine_version(),
                    "endpoint": c.endpoint().and_then(|e| Some(format!("{}:{}", e.address()?, e.port()?))),
                    "max_data_storage_gb": limits.and_then(|l| l.data_storage()).and_then(|d| d.maximum()),
                    "max_ecpu_per_second": limits.and_then(|l| l.ecpu_per_second()).and_then(|e| e.maximum()),
                    "created": optional_time(c.create_time()),
                }));
            }
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        Ok(json!({"serverless_caches": caches}))
    }
}

pub struct ElasticacheEvents;

/// DescribeEvents' largest page.
const EVENTS_PAGE: i32 = 100;
/// Pages read for one answer: 1,000 events, more than ElastiCache records in 14 days for all
/// but the largest fleets; beyond it the answer says `truncated`.
const MAX_EVENT_PAGES: usize = 10;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventsArgs {
    /// Only events of this source (a cluster or replication group ID).
    source: Option<String>,
    /// The kind of source: "cache-cluster", "replication-group", "serverless-cache", "cache-parameter-group", "cache-security-group", "cache-subnet-group", "user", "user-group". Needed with source.
    source_type: Option<String>,
    /// Start of the time window: a duration back from now ("1h", "30m", "2d") or an RFC 3339 time. Default 24h; ElastiCache keeps 14 days.
    since: Option<String>,
    /// End of the time window (same forms as since); default now.
    until: Option<String>,
    /// Most events (default 50, at most 100).
    limit: Option<u32>,
}

impl Tool for ElasticacheEvents {
    type Args = EventsArgs;
    const NAME: &'static str = "elasticache_events";
    const CAPABILITY: Capability = Capability::Elasticache;
    const DESCRIPTION: &'static str = "ElastiCache events (failovers, node replacements, reboots, scaling, maintenance) over a time window (default 24h), newest first, optionally for one cluster or replication group. Use it to learn whether a failover or node replacement happened during an incident.";
    const IAM_ACTIONS: &'static [&'static str] = &["elasticache:DescribeEvents"];

    async fn run(ctx: &AwsContext, args: EventsArgs) -> Result<Value, ToolError> {
        let window = Window::from_args(
            args.since.as_deref(),
            args.until.as_deref(),
            Duration::from_secs(86400),
            ctx.now,
        )?;
        let limit = match args.limit {
            None => 50,
            Some(n) if (1..=100).contains(&n) => n as i32,
            Some(_) => return Err(ToolError::bad("limit", "must be 1 to 100")),
        };
        let source_type = match args.source_type.as_deref() {
            None => None,
            Some(t) => {
                let known = SourceType::values();
                if !known.contains(&t) {
                    return Err(ToolError::bad(
                        "source_type",
                        format!("{t:?}: use one of {}", known.join(", ")),
                    ));
                }
                Some(SourceType::from(t))
            }
        };
        if args.source.is_some() && source_type.is_none() {
            return Err(ToolError::bad(
                "source_type",
                "needed with source (e.g. \"replication-group\")",
            ));
        }
        // DescribeEvents pages from the start of the window: read them all (within a page
        // budget) and keep the newest `limit`.
        let mut newest = Newest::new(limit as usize);
        let mut marker: Option<String> = None;
        let mut pages = 0;
        loop {
            let page = ctx
                .elasticache()
                .describe_events()
                .set_source_identifier(args.source.clone())
                .set_source_type(source_type.clone())
                .start_time(DateTime::from(window.start))
                .end_time(DateTime::from(window.end))
                .max_records(EVENTS_PAGE)
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| ToolError::aws("elasticache:DescribeEvents", e))?;
            pages += 1;
            newest.add(page.events().iter().cloned(), |e| {
                e.date().map(|d| d.secs()).unwrap_or_default()
            });
            marker = page.marker().map(str::to_owned);
            if marker.is_none() || pages == MAX_EVENT_PAGES {
                break;
            }
        }
        let (events, dropped) = newest.finish();
        let truncated = dropped || marker.is_some();
        let mut answer = json!({
            "since": super::answer::time(window.start),
            "until": super::answer::time(window.end),
            "events": events.iter().map(|e| json!({
                "time": optional_time(e.date()),
                "source": e.source_identifier(),
                "source_type": e.source_type().map(|t| t.as_str()),
                "message": e.message(),
            })).collect::<Vec<_>>(),
            "truncated": truncated,
        });
        if marker.is_some() {
            // Pages run oldest first and the budget ran out: newer events than these exist.
            answer["note"] = json!(format!(
                "more than {} events in the window; these are the newest of the first {} read: narrow since/until to see later ones",
                MAX_EVENT_PAGES * EVENTS_PAGE as usize,
                MAX_EVENT_PAGES * EVENTS_PAGE as usize
            ));
            if let Some(newest) = events.first().and_then(|e| optional_time(e.date())) {
                answer["next"] = json!({"since": newest});
            }
        } else if truncated
            && let Some(oldest) = events.last().and_then(|e| optional_time(e.date()))
        {
            answer["next"] = json!({"until": oldest});
        }
        Ok(answer)
    }
}

pub struct ElasticacheMetrics;

/// The one cache the account has — a replication group, or a standalone cache cluster —
/// when no cluster was named (recorded in `resolved`); several or none is an error listing
/// them.
async fn only_cache(ctx: &AwsContext, resolved: &mut Option<Value>) -> Result<String, ToolError> {
    let (clusters, groups) =
        tokio::try_join!(all_cache_clusters(ctx), all_replication_groups(ctx))?;
    let caches: Vec<&str> = groups
        .iter()
        .filter_map(|g| g.replication_group_id())
        .chain(
            clusters
                .iter()
                .filter(|c| c.replication_group_id().is_none())
                .filter_map(|c| c.cache_cluster_id()),
        )
        .collect();
    match caches.as_slice() {
        [only] => {
            *resolved = Some(json!({"cluster": only}));
            Ok((*only).to_owned())
        }
        [] => Err(ToolError::NotFound {
            kind: "ElastiCache cluster or replication group",
            name: "(any)".into(),
            closest: Vec::new(),
        }),
        several => Err(ToolError::bad(
            "cluster",
            format!(
                "required: the account has {} caches: {}",
                several.len(),
                several.join(", ")
            ),
        )),
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricsArgs {
    /// A replication group ID (every member node is read) or a cache cluster ID; may be left
    /// out when the account has one replication group or one standalone cluster.
    cluster: Option<String>,
    /// CPUUtilization (default), EngineCPUUtilization, DatabaseMemoryUsagePercentage, FreeableMemory, BytesUsedForCache, SwapUsage, Evictions, CurrConnections, NewConnections, CurrItems, CacheHits, CacheMisses, CacheHitRate, NetworkBytesIn, NetworkBytesOut or ReplicationLag.
    metric: Option<String>,
    /// Average (default), Maximum, Minimum, Sum, SampleCount.
    stat: Option<String>,
    /// Start of the time window: a duration back from now ("1h", "30m", "2d") or an RFC 3339 time. Default 1h.
    since: Option<String>,
    /// End of the time window (same forms as since); default now.
    until: Option<String>,
}

impl Tool for ElasticacheMetrics {
    type Args = MetricsArgs;
    const NAME: &'static str = "elasticache_metrics";
    const CAPABILITY: Capability = Capability::Elasticache;
    const DESCRIPTION: &'static str = "CloudWatch metrics of an ElastiCache replication group (one series per member node, with its role) or cache cluster over a time window (default the last hour; the period is chosen from the window): CPU, engine CPU, memory, evictions, connections, hits/misses, network, replication lag. Use it for \"what is the CPU utilization of my ElastiCache cluster over the last hour\".";
    const IAM_ACTIONS: &'static [&'static str] = &[
        "cloudwatch:GetMetricData",
        "elasticache:DescribeReplicationGroups",
        "elasticache:DescribeCacheClusters",
    ];

    async fn run(ctx: &AwsContext, args: MetricsArgs) -> Result<Value, ToolError> {
        let window = Window::from_args(
            args.since.as_deref(),
            args.until.as_deref(),
            Duration::from_secs(3600),
            ctx.now,
        )?;
        let metric = args.metric.unwrap_or_else(|| "CPUUtilization".into());
        if !METRICS.contains(&metric.as_str()) {
            return Err(ToolError::bad(
                "metric",
                format!(
                    "{metric:?} is not an ElastiCache metric this tool reads: use one of {}",
                    METRICS.join(", ")
                ),
            ));
        }
        let stat = args.stat.unwrap_or_else(|| "Average".into());
        if !["Average", "Maximum", "Minimum", "Sum", "SampleCount"].contains(&stat.as_str()) {
            return Err(ToolError::bad(
                "stat",
                format!("{stat:?}: use Average, Maximum, Minimum, Sum or SampleCount"),
            ));
        }
        let mut resolved = None;
        let cluster = match args.cluster {
            Some(cluster) => cluster,
            None => only_cache(ctx, &mut resolved).await?,
        };
        // A replication group first (its members are the nodes); else a cache cluster.
        let group = ctx
            .elasticache()
            .describe_replication_groups()
            .replication_group_id(&cluster)
            .send()
            .await;
        let (kind, nodes): (&str, Vec<(String, String)>) = match group {
            Ok(found) if !found.replication_groups().is_empty() => {
                let g = &found.replication_groups()[0];
                let roles = member_roles(g);
                let nodes = g
                    .member_clusters()
                    .iter()
                    .map(|m| {
                        let role = roles.get(m).map(|(r, _)| r.clone()).unwrap_or_default();
                        (m.clone(), role)
                    })
                    .collect();
                ("replication_group", nodes)
            }
            Ok(_) => ("cache_cluster", Vec::new()),
            Err(err) if err.as_service_error().is_some_and(is_group_missing) => {
                ("cache_cluster", Vec::new())
            }
            Err(err) => return Err(ToolError::aws("elasticache:DescribeReplicationGroups", err)),
        };
        let nodes = if kind == "cache_cluster" {
            let described = ctx
                .elasticache()
                .describe_cache_clusters()
                .cache_cluster_id(&cluster)
                .send()
                .await;
            let exists = match described {
                Ok(found) => !found.cache_clusters().is_empty(),
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_cache_cluster_not_found_fault()) =>
                {
                    false
                }
                Err(err) => return Err(ToolError::aws("elasticache:DescribeCacheClusters", err)),
            };
            if exists {
                vec![(cluster.clone(), String::new())]
            } else {
                // A replication group's member that DescribeCacheClusters did not return
                // (some emulators list only standalone clusters) is still a node to read.
                let (clusters, groups) =
                    tokio::try_join!(all_cache_clusters(ctx), all_replication_groups(ctx))?;
                let member = groups.iter().find_map(|g| {
                    member_roles(g)
                        .remove(&cluster)
                        .map(|(role, _)| (cluster.clone(), role))
                });
                match member {
                    Some(node) => vec![node],
                    None => {
                        let names: Vec<&str> = groups
                            .iter()
                            .filter_map(|g| g.replication_group_id())
                            .chain(clusters.iter().filter_map(|c| c.cache_cluster_id()))
                            .collect();
                        return Err(ToolError::NotFound {
                            kind: "ElastiCache cluster or replication group",
                            name: cluster.clone(),
                            closest: closest(&cluster, names),
                        });
                    }
                }
            }
        } else {
            nodes
        };
        let period = super::metrics::period_for(window.length());
        let specs: Vec<SeriesSpec> = nodes
            .iter()
            .map(|(node, role)| SeriesSpec {
                label: if role.is_empty() {
                    node.clone()
                } else {
                    format!("{node} ({role})")
                },
                namespace: "AWS/ElastiCache".into(),
                metric: metric.clone(),
                dimensions: BTreeMap::from([("CacheClusterId".to_owned(), node.clone())]),
                stat: stat.clone(),
            })
            .collect();
        let read = read_series(ctx, &specs, window, period).await?;
        Ok(json!({
            "resolved": resolved,
            "cluster": cluster,
            "kind": kind,
            "metric": metric,
            "stat": stat,
            "period_seconds": period,
            "since": super::answer::time(window.start),
            "until": super::answer::time(window.end),
            "start": read.start,
            "step_seconds": read.step_seconds,
            "series": read.series,
        }))
    }
}
