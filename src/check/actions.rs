//! One probe per IAM action the tools use, so Test Connection finds a missing permission
//! before an investigation does ("can query some services but not others").
//!
//! Each probe is the cheapest call that tells "denied" from "allowed": a listing of one page,
//! or a call about a made-up name. AWS checks authorization before it looks the name up, so
//! a not-found answer (any 4xx other than a denial) means the action is allowed — and
//! nothing real is touched, no query runs. The capability probes (`probes.rs`) cover each
//! capability's listing action and `sts:GetCallerIdentity` is the identity check; together
//! with these, all of the catalogue's actions are tried (`tests/credentials.rs` holds the
//! probed actions equal to the catalogue's).

use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_sdk_sts::error::ProvideErrorMetadata;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::DateTime;
use serde::Serialize;

use super::probes::Status;
use crate::aws_error::{FailureClass, describe, http_status};

/// A name no real resource has: probes ask about it so nothing real is read.
const MADE_UP: &str = "autoheal-permission-probe";
/// A made-up Logs Insights query id (the service checks authorization first).
const MADE_UP_QUERY_ID: &str = "00000000-0000-0000-0000-000000000000";
/// What AWS answers about a made-up name once the call is authorized. Any other client
/// error (throttling, validation) proves nothing about permission and counts as an error.
const NOT_FOUND_CODES: &[&str] = &[
    "ResourceNotFoundException",
    "ClusterNotFoundException",
    "ServiceNotFoundException",
    "CacheClusterNotFound",
    "ReplicationGroupNotFoundFault",
];

/// What one action's probe found.
#[derive(Debug, Clone, Serialize)]
pub struct ActionReport {
    pub action: &'static str,
    pub status: Status,
    /// AWS's answer when it was not a plain success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Allowed on success, or when the made-up name was not found (which AWS only says after
/// authorizing the call); denied on a denial; else error.
fn outcome<T, E>(action: &'static str, result: Result<T, SdkError<E, HttpResponse>>) -> ActionReport
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let Err(err) = result else {
        return ActionReport {
            action,
            status: Status::Allowed,
            detail: None,
        };
    };
    let failure = describe(&err);
    let not_found = failure
        .code
        .as_deref()
        .is_some_and(|c| NOT_FOUND_CODES.contains(&c))
        && http_status(&err).is_some_and(|s| (400..500).contains(&s));
    let status = match failure.class {
        FailureClass::Denied => Status::Denied,
        FailureClass::Other if not_found => Status::Allowed,
        _ => Status::Error,
    };
    ActionReport {
        action,
        status,
        detail: Some(failure.message),
    }
}

/// The probes of one capability's actions beyond its listing probe, concurrently.
pub async fn probe_actions(config: &SdkConfig, capability: &str) -> Vec<ActionReport> {
    match capability {
        "cloudwatch_logs" => Box::pin(logs(config)).await,
        "cloudwatch_metrics" => Box::pin(metrics(config)).await,
        "ec2" => Box::pin(ec2(config)).await,
        "ecs" => Box::pin(ecs(config)).await,
        "eks" => Box::pin(eks(config)).await,
        "elasticache" => Box::pin(elasticache(config)).await,
        _ => Vec::new(),
    }
}

async fn logs(config: &SdkConfig) -> Vec<ActionReport> {
    let logs = aws_sdk_cloudwatchlogs::Client::new(config);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let (streams, filter, events, start, results) = tokio::join!(
        logs.describe_log_streams()
            .log_group_name(MADE_UP)
            .limit(1)
            .send(),
        logs.filter_log_events()
            .log_group_name(MADE_UP)
            .limit(1)
            .send(),
        logs.get_log_events()
            .log_group_name(MADE_UP)
            .log_stream_name(MADE_UP)
            .limit(1)
            .send(),
        // A made-up group: authorized, then refused before any query runs.
        logs.start_query()
            .log_group_names(MADE_UP)
            .query_string("fields @timestamp | limit 1")
            .start_time(now.as_secs() as i64 - 300)
            .end_time(now.as_secs() as i64)
            .send(),
        logs.get_query_results().query_id(MADE_UP_QUERY_ID).send(),
    );
    vec![
        outcome("logs:DescribeLogStreams", streams),
        outcome("logs:FilterLogEvents", filter),
        outcome("logs:GetLogEvents", events),
        outcome("logs:StartQuery", start),
        outcome("logs:GetQueryResults", results),
    ]
}

async fn metrics(config: &SdkConfig) -> Vec<ActionReport> {
    use aws_sdk_cloudwatch::types::{Metric, MetricDataQuery, MetricStat};
    let cloudwatch = aws_sdk_cloudwatch::Client::new(config);
    let end = SystemTime::now();
    let query = MetricDataQuery::builder()
        .id("probe")
        .metric_stat(
            MetricStat::builder()
                .metric(
                    Metric::builder()
                        .namespace(MADE_UP)
                        .metric_name(MADE_UP)
                        .build(),
                )
                .period(300)
                .stat("Average")
                .build(),
        )
        .build();
    let (list, data) = tokio::join!(
        cloudwatch.list_metrics().namespace(MADE_UP).send(),
        cloudwatch
            .get_metric_data()
            .metric_data_queries(query)
            .start_time(DateTime::from(end - Duration::from_secs(300)))
            .end_time(DateTime::from(end))
            .send(),
    );
    vec![
        outcome("cloudwatch:ListMetrics", list),
        outcome("cloudwatch:GetMetricData", data),
    ]
}

async fn ec2(config: &SdkConfig) -> Vec<ActionReport> {
    let ec2 = aws_sdk_ec2::Client::new(config);
    let (status, groups, subnets, vpcs) = tokio::join!(
        ec2.describe_instance_status().max_results(5).send(),
        ec2.describe_security_groups().max_results(5).send(),
        ec2.describe_subnets().max_results(5).send(),
        ec2.describe_vpcs().max_results(5).send(),
    );
    vec![
        outcome("ec2:DescribeInstanceStatus", status),
        outcome("ec2:DescribeSecurityGroups", groups),
        outcome("ec2:DescribeSubnets", subnets),
        outcome("ec2:DescribeVpcs", vpcs),
    ]
}

async fn ecs(config: &SdkConfig) -> Vec<ActionReport> {
    let ecs = aws_sdk_ecs::Client::new(config);
    let (clusters, services, described, tasks, task) = tokio::join!(
        ecs.describe_clusters().clusters(MADE_UP).send(),
        ecs.list_services().cluster(MADE_UP).max_results(1).send(),
        ecs.describe_services()
            .cluster(MADE_UP)
            .services(MADE_UP)
            .send(),
        ecs.list_tasks().cluster(MADE_UP).max_results(1).send(),
        ecs.describe_tasks().cluster(MADE_UP).tasks(MADE_UP).send(),
    );
    vec![
        outcome("ecs:DescribeClusters", clusters),
        outcome("ecs:ListServices", services),
        outcome("ecs:DescribeServices", described),
        outcome("ecs:ListTasks", tasks),
        outcome("ecs:DescribeTasks", task),
    ]
}

async fn eks(config: &SdkConfig) -> Vec<ActionReport> {
    let eks = aws_sdk_eks::Client::new(config);
    let (cluster, groups, group) = tokio::join!(
        eks.describe_cluster().name(MADE_UP).send(),
        eks.list_nodegroups()
            .cluster_name(MADE_UP)
            .max_results(1)
            .send(),
        eks.describe_nodegroup()
            .cluster_name(MADE_UP)
            .nodegroup_name(MADE_UP)
            .send(),
    );
    vec![
        outcome("eks:DescribeCluster", cluster),
        outcome("eks:ListNodegroups", groups),
        outcome("eks:DescribeNodegroup", group),
    ]
}

async fn elasticache(config: &SdkConfig) -> Vec<ActionReport> {
    let elasticache = aws_sdk_elasticache::Client::new(config);
    let end = SystemTime::now();
    let (groups, serverless, events) = tokio::join!(
        elasticache
            .describe_replication_groups()
            .max_records(20)
            .send(),
        elasticache
            .describe_serverless_caches()
            .max_results(5)
            .send(),
        elasticache
            .describe_events()
            .start_time(DateTime::from(end - Duration::from_secs(300)))
            .end_time(DateTime::from(end))
            .max_records(20)
            .send(),
    );
    vec![
        outcome("elasticache:DescribeReplicationGroups", groups),
        outcome("elasticache:DescribeServerlessCaches", serverless),
        outcome("elasticache:DescribeEvents", events),
    ]
}

#[cfg(test)]
mod tests {
    use aws_config::{BehaviorVersion, Region};
    use aws_credential_types::Credentials;
    use aws_credential_types::provider::SharedCredentialsProvider;
    use aws_smithy_http_client::test_util::{ReplayEvent, StaticReplayClient};
    use aws_smithy_types::body::SdkBody;

    use super::*;

    /// What `outcome` makes of one Logs answer (`status`, JSON `body`).
    async fn probe_answered(status: u16, body: &str) -> ActionReport {
        let http = StaticReplayClient::new(vec![ReplayEvent::new(
            http::Request::builder()
                .uri("https://logs.us-east-1.amazonaws.com/")
                .body(SdkBody::empty())
                .unwrap(),
            http::Response::builder()
                .status(status)
                .header("content-type", "application/x-amz-json-1.1")
                .body(SdkBody::from(body))
                .unwrap(),
        )]);
        let config = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "AKIDPROBE",
                "probe",
                None,
                None,
                "test",
            )))
            .http_client(http)
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .build();
        let logs = aws_sdk_cloudwatchlogs::Client::new(&config);
        let result = logs
            .describe_log_streams()
            .log_group_name(MADE_UP)
            .send()
            .await;
        outcome("logs:DescribeLogStreams", result)
    }

    #[tokio::test]
    async fn only_a_not_found_answer_counts_as_allowed() {
        let allowed = probe_answered(200, r#"{"logStreams": []}"#).await;
        assert_eq!(allowed.status, Status::Allowed);
        let not_found = probe_answered(
            400,
            r#"{"__type": "ResourceNotFoundException", "message": "The specified log group does not exist."}"#,
        )
        .await;
        assert_eq!(not_found.status, Status::Allowed, "{not_found:?}");
        let denied = probe_answered(
            400,
            r#"{"__type": "AccessDeniedException", "message": "not authorized to perform: logs:DescribeLogStreams"}"#,
        )
        .await;
        assert_eq!(denied.status, Status::Denied, "{denied:?}");
        let throttled = probe_answered(
            400,
            r#"{"__type": "ThrottlingException", "message": "Rate exceeded"}"#,
        )
        .await;
        assert_eq!(
            throttled.status,
            Status::Error,
            "proves nothing: {throttled:?}"
        );
    }
}
