//! The IAM documents derived from the catalogue: the read-only permissions policy (exactly
//! the actions the tools declare), and the trust policies of the setup guide.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::{Capability, catalogue};

/// Every IAM action the tools of `capabilities` declare (all tools when empty), sorted.
pub fn actions(capabilities: &[Capability]) -> BTreeSet<&'static str> {
    catalogue()
        .into_iter()
        .filter(|t| capabilities.is_empty() || capabilities.contains(&t.capability))
        .flat_map(|t| t.iam_actions.iter().copied())
        .collect()
}

/// The permissions policy: one statement per AWS service, `Resource: "*"` (these read
/// actions do not support resource-level scoping uniformly).
pub fn permissions(capabilities: &[Capability]) -> Value {
    let all = actions(capabilities);
    let mut services: Vec<&str> = all
        .iter()
        .map(|a| a.split(':').next().unwrap_or(""))
        .collect();
    services.dedup();
    let statements: Vec<Value> = services
        .iter()
        .map(|service| {
            let sid = match *service {
                "logs" => "CloudWatchLogsRead",
                "cloudwatch" => "CloudWatchMetricsRead",
                "ec2" => "EC2Read",
                "ecs" => "ECSRead",
                "eks" => "EKSRead",
                "elasticache" => "ElastiCacheRead",
                "sts" => "Identity",
                _ => "Read",
            };
            let actions: Vec<&str> = all
                .iter()
                .filter(|a| a.split(':').next() == Some(service))
                .copied()
                .collect();
            json!({"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": "*"})
        })
        .collect();
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// The trust policy of a role assumed through OIDC federation with the daemon's issuer.
///
/// Besides the audience it pins the subject: the daemon's tokens say
/// `integration:<name>[:sandbox:<id>]`, so a token the same issuer signs for anything else
/// (another product sharing the issuer, a leaked debugging token of another kind) cannot
/// assume the role. With `integration`, only that integration's tokens can.
pub fn trust_oidc(account: &str, issuer: &str, audience: &str, integration: Option<&str>) -> Value {
    let provider = issuer.trim_start_matches("https://").trim_end_matches('/');
    let subjects = match integration {
        None => json!("integration:*"),
        Some(name) => json!([
            crate::oidc::subject(name, None),
            crate::oidc::subject(name, Some("*")),
        ]),
    };
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": format!("arn:aws:iam::{account}:oidc-provider/{provider}")},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {
                "StringEquals": {format!("{provider}:aud"): audience},
                "StringLike": {format!("{provider}:sub"): subjects},
            },
        }],
    })
}

/// The trust policy of the target role in the other account, trusting the source role.
pub fn trust_cross_account(source_role: &str, external_id: Option<&str>) -> Value {
    let mut statement = json!({
        "Effect": "Allow",
        "Principal": {"AWS": source_role},
        "Action": "sts:AssumeRole",
    });
    if let Some(id) = external_id {
        statement["Condition"] = json!({"StringEquals": {"sts:ExternalId": id}});
    }
    json!({"Version": "2012-10-17", "Statement": [statement]})
}

/// The policy the source role needs to assume the target role.
pub fn assume_role(target_role: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": target_role}],
    })
}
