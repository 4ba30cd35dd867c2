//! Per AWS capability: one cheap listing call (how many resources the region has), and a
//! probe of every other IAM action the capability's tools use (`actions.rs`), and how it
//! all reads to an operator.
//!
//! A capability is `allowed` when every one of its actions is, `denied` when any is (the
//! report names each denied action and the one-line fix), `error` when a call failed
//! otherwise.

use aws_config::SdkConfig;
use aws_sdk_sts::error::ProvideErrorMetadata;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use serde::Serialize;

use super::actions::{ActionReport, probe_actions};
use crate::aws_error::{FailureClass, describe};
use crate::config::IntegrationConfig;

/// What a probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Allowed,
    Denied,
    Error,
}

/// The outcome of one capability's probe.
#[derive(Debug, Clone, Serialize)]
pub struct CapabilityReport {
    /// `cloudwatch_logs`, `cloudwatch_metrics`, `ec2`, `ecs`, `eks`, `elasticache`.
    pub capability: &'static str,
    pub status: Status,
    /// The IAM action the probe called.
    pub action: &'static str,
    /// What came back: a resource count, or the AWS error.
    pub detail: String,
    /// What to fix (absent when there is nothing to fix).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// Every action of the capability and how its probe went.
    pub actions: Vec<ActionReport>,
    /// The actions that were denied (empty when none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub denied: Vec<&'static str>,
}

/// Turns a probe's result into its report.
fn report<T, E>(
    capability: &'static str,
    action: &'static str,
    integration: &IntegrationConfig,
    result: Result<T, SdkError<E, HttpResponse>>,
    count: impl FnOnce(&T) -> (usize, &'static str, bool),
) -> CapabilityReport
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let region = integration.region.as_str();
    match result {
        Ok(answer) => {
            let (n, noun, more) = count(&answer);
            let shown = if more { format!("{n}+") } else { n.to_string() };
            CapabilityReport {
                capability,
                status: Status::Allowed,
                action,
                actions: vec![ActionReport {
                    action,
                    status: Status::Allowed,
                    detail: None,
                }],
                denied: Vec::new(),
                detail: format!("{shown} {noun} in {region}"),
                hint: (n == 0).then(|| {
                    format!(
                        "no {noun} in {region}: if you expected some, check the integration's region \
                         (resources live in one region; add an integration per region)"
                    )
                }),
            }
        }
        Err(err) => {
            let failure = describe(&err);
            let role = integration
                .role_arn
                .as_ref()
                .map(|r| r.to_string())
                .unwrap_or_else(|| "the instance role".into());
            let (status, detail, hint) = match failure.class {
                FailureClass::Denied => (
                    Status::Denied,
                    format!(
                        "{} ({action})",
                        failure.code.unwrap_or_else(|| "HTTP 403".into())
                    ),
                    format!(
                        "{role} may not call {action}: its permissions policy, a permissions boundary \
                         or an SCP denies it. Attach the policy `autoheal policy permissions` prints."
                    ),
                ),
                FailureClass::BadCredentials => (
                    Status::Error,
                    failure.message,
                    "AWS rejected the credentials themselves (expired, unknown or badly signed): \
                     check the host's clock (NTP) and the integration's endpoint_url"
                        .into(),
                ),
                FailureClass::Unreachable => (
                    Status::Error,
                    failure.message,
                    format!(
                        "the {capability} endpoint for {region} did not answer: check the host's \
                         outbound HTTPS (security group, NAT, VPC endpoints, proxy)"
                    ),
                ),
                FailureClass::Other => (
                    Status::Error,
                    failure.message,
                    "the call failed for a reason other than permissions; the detail has AWS's answer"
                        .into(),
                ),
            };
            CapabilityReport {
                capability,
                status,
                action,
                actions: vec![ActionReport {
                    action,
                    status,
                    detail: Some(detail.clone()),
                }],
                denied: if status == Status::Denied {
                    vec![action]
                } else {
                    Vec::new()
                },
                detail,
                hint: Some(hint),
            }
        }
    }
}

/// Runs every capability's probes concurrently, in a stable order.
pub async fn probe_all(
    config: &SdkConfig,
    integration: &IntegrationConfig,
) -> Vec<CapabilityReport> {
    let with_actions = |listing: CapabilityReport| async move {
        // Boxed: each capability's probes are a large future (several SDK calls joined),
        // and six of them joined overflow a worker thread's 2 MiB stack in the daemon.
        let actions = Box::pin(probe_actions(config, listing.capability)).await;
        merge(listing, actions, integration)
    };
    let (logs, metrics, ec2, ecs, eks, elasticache) = tokio::join!(
        Box::pin(async { with_actions(logs(config, integration).await).await }),
        Box::pin(async { with_actions(metrics(config, integration).await).await }),
        Box::pin(async { with_actions(ec2(config, integration).await).await }),
        Box::pin(async { with_actions(ecs(config, integration).await).await }),
        Box::pin(async { with_actions(eks(config, integration).await).await }),
        Box::pin(async { with_actions(elasticache(config, integration).await).await }),
    );
    vec![logs, metrics, ec2, ecs, eks, elasticache]
}

/// The capability's verdict from its listing probe and the probes of its other actions:
/// denied when any action is (naming each, with the one-line fix), else error when any call
/// failed otherwise, else the listing's answer.
fn merge(
    mut report: CapabilityReport,
    actions: Vec<ActionReport>,
    integration: &IntegrationConfig,
) -> CapabilityReport {
    report.actions.extend(actions);
    let denied: Vec<&'static str> = report
        .actions
        .iter()
        .filter(|a| a.status == Status::Denied)
        .map(|a| a.action)
        .collect();
    let failed: Vec<&ActionReport> = report
        .actions
        .iter()
        .filter(|a| a.status == Status::Error)
        .collect();
    if !denied.is_empty() {
        let role = integration
            .role_arn
            .as_ref()
            .map(|r| r.role_name().to_owned())
            .unwrap_or_else(|| "<instance-role>".into());
        report.status = Status::Denied;
        report.action = denied[0];
        report.detail = format!("denied: {}", denied.join(", "));
        report.hint = Some(format!(
            "the role may not call {}: its permissions policy, a permissions boundary or an SCP \
             denies it. Fix: autoheal policy permissions > autoheal.json && aws iam put-role-policy \
             --role-name {role} --policy-name AutohealReadOnlyPolicy --policy-document file://autoheal.json",
            denied.join(", ")
        ));
        report.denied = denied;
    } else if report.status == Status::Allowed
        && let Some(first) = failed.first()
    {
        report.status = Status::Error;
        report.action = first.action;
        report.detail = failed
            .iter()
            .map(|a| format!("{}: {}", a.action, a.detail.as_deref().unwrap_or("failed")))
            .collect::<Vec<_>>()
            .join("; ");
        report.hint = Some(
            "a call failed for a reason other than permissions; the detail has AWS's answer".into(),
        );
    } else if report.status == Status::Allowed {
        report.detail = format!(
            "{} · all {} actions allowed",
            report.detail,
            report.actions.len()
        );
    }
    report
}

const PAGE: i32 = 50;

async fn logs(config: &SdkConfig, integration: &IntegrationConfig) -> CapabilityReport {
    let client = aws_sdk_cloudwatchlogs::Client::new(config);
    let result = client.describe_log_groups().limit(PAGE).send().await;
    report(
        "cloudwatch_logs",
        "logs:DescribeLogGroups",
        integration,
        result,
        |a| (a.log_groups().len(), "log groups", a.next_token().is_some()),
    )
}

async fn metrics(config: &SdkConfig, integration: &IntegrationConfig) -> CapabilityReport {
    let client = aws_sdk_cloudwatch::Client::new(config);
    let result = client.describe_alarms().max_records(PAGE).send().await;
    report(
        "cloudwatch_metrics",
        "cloudwatch:DescribeAlarms",
        integration,
        result,
        |a| {
            (
                a.metric_alarms().len() + a.composite_alarms().len(),
                "alarms",
                a.next_token().is_some(),
            )
        },
    )
}

async fn ec2(config: &SdkConfig, integration: &IntegrationConfig) -> CapabilityReport {
    let client = aws_sdk_ec2::Client::new(config);
    let result = client.describe_instances().max_results(PAGE).send().await;
    report("ec2", "ec2:DescribeInstances", integration, result, |a| {
        (
            a.reservations().iter().map(|r| r.instances().len()).sum(),
            "instances",
            a.next_token().is_some(),
        )
    })
}

async fn ecs(config: &SdkConfig, integration: &IntegrationConfig) -> CapabilityReport {
    let client = aws_sdk_ecs::Client::new(config);
    let result = client.list_clusters().max_results(PAGE).send().await;
    report("ecs", "ecs:ListClusters", integration, result, |a| {
        (
            a.cluster_arns().len(),
            "ECS clusters",
            a.next_token().is_some(),
        )
    })
}

async fn eks(config: &SdkConfig, integration: &IntegrationConfig) -> CapabilityReport {
    let client = aws_sdk_eks::Client::new(config);
    let result = client.list_clusters().max_results(PAGE).send().await;
    report("eks", "eks:ListClusters", integration, result, |a| {
        (a.clusters().len(), "EKS clusters", a.next_token().is_some())
    })
}

async fn elasticache(config: &SdkConfig, integration: &IntegrationConfig) -> CapabilityReport {
    let client = aws_sdk_elasticache::Client::new(config);
    let result = client
        .describe_cache_clusters()
        .max_records(PAGE)
        .send()
        .await;
    report(
        "elasticache",
        "elasticache:DescribeCacheClusters",
        integration,
        result,
        |a| {
            (
                a.cache_clusters().len(),
                "cache clusters",
                a.marker().is_some(),
            )
        },
    )
}
