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

/// The statements of the permissions policy, in the setup guide's order and with its ids:
/// (the service prefix of their actions, the statement id).
pub const STATEMENTS: [(&str, &str); 7] = [
    ("logs", "CloudWatchLogs"),
    ("cloudwatch", "CloudWatchMetrics"),
    ("ec2", "EC2ReadOnly"),
    ("ecs", "ECSReadOnly"),
    ("eks", "EKSReadOnly"),
    ("elasticache", "ElastiCacheReadOnly"),
    ("sts", "STSIdentity"),
];

/// The permissions policy (the guide's `AutohealReadOnlyPolicy`): one statement per AWS
/// service, in the guide's order and with its ids, `Resource: "*"` (these read actions do
/// not support resource-level scoping uniformly).
pub fn permissions(capabilities: &[Capability]) -> Value {
    let all = actions(capabilities);
    let statements: Vec<Value> = STATEMENTS
        .iter()
        .filter_map(|(service, sid)| {
            let actions: Vec<&str> = all
                .iter()
                .filter(|a| a.split(':').next() == Some(*service))
                .copied()
                .collect();
            (!actions.is_empty())
                .then(|| json!({"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": "*"}))
        })
        .collect();
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// The session policy of one sandbox's STS session: the actions of the tools of
/// `capabilities` (every tool when empty), in one statement, as compact JSON.
///
/// STS intersects it with the role's own policies, so a sandbox can never do more than the
/// tools need, whatever else the role allows. `sts:GetCallerIdentity` is always in it: AWS
/// lets every caller make that call anyway, and `whoami` relies on it. Compact because STS
/// counts the policy's characters (at most [`MAX_SESSION_POLICY_CHARS`]).
pub fn session_policy(capabilities: &[Capability]) -> String {
    let mut wanted = capabilities.to_vec();
    if !wanted.is_empty() && !wanted.contains(&Capability::Identity) {
        wanted.push(Capability::Identity);
    }
    let document = json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions(&wanted), "Resource": "*"}],
    });
    document.to_string()
}

/// The longest inline session policy STS accepts (plain text, before packing).
pub const MAX_SESSION_POLICY_CHARS: usize = 2048;

/// The trust policy of a role assumed through OIDC federation with the daemon's issuer.
///
/// It allows `sts:TagSession` too: each sandbox's own session carries the session tags
/// `autoheal:sandbox` and `autoheal:integration` (in the token's tags claim), and STS
/// refuses tagged sessions the trust policy does not allow.
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
            "Action": ["sts:AssumeRoleWithWebIdentity", "sts:TagSession"],
            "Condition": {
                "StringEquals": {format!("{provider}:aud"): audience},
                "StringLike": {format!("{provider}:sub"): subjects},
            },
        }],
    })
}

/// The trust policy of the role the daemon assumes (in another account, or the same one in
/// the two-role layout), trusting the source role. With `sts:TagSession`, so each sandbox's
/// own session can carry its tags.
pub fn trust_cross_account(source_role: &str, external_id: Option<&str>) -> Value {
    let mut statement = json!({
        "Effect": "Allow",
        "Principal": {"AWS": source_role},
        "Action": ["sts:AssumeRole", "sts:TagSession"],
    });
    if let Some(id) = external_id {
        statement["Condition"] = json!({"StringEquals": {"sts:ExternalId": id}});
    }
    json!({"Version": "2012-10-17", "Statement": [statement]})
}

/// The instance role's own policy in the two-role layout: assuming `roles` and nothing
/// else (the same-account read-only role, and any cross-account one).
pub fn assume_role(roles: &[&str]) -> Value {
    let resource = match roles {
        [one] => json!(one),
        many => json!(many),
    };
    json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": resource}],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::catalogue;

    /// IAM's verdict for one action under an identity-style policy document: allowed when
    /// an `Allow` statement names it (exactly or by a trailing `*`) and no `Deny` does.
    fn allows(policy: &Value, action: &str) -> bool {
        let names = |statement: &Value| -> Vec<String> {
            match &statement["Action"] {
                Value::String(one) => vec![one.clone()],
                Value::Array(many) => many
                    .iter()
                    .filter_map(|a| a.as_str().map(str::to_owned))
                    .collect(),
                _ => vec![],
            }
        };
        let matches = |pattern: &str| match pattern.strip_suffix('*') {
            Some(prefix) => action.starts_with(prefix),
            None => pattern.eq_ignore_ascii_case(action),
        };
        let statements = policy["Statement"].as_array().cloned().unwrap_or_default();
        let effect = |e: &str| {
            statements.iter().any(|s| {
                s["Effect"] == e && s["Resource"] == "*" && names(s).iter().any(|p| matches(p))
            })
        };
        effect("Allow") && !effect("Deny")
    }

    // moto gap (TESTING.md 4): moto does not evaluate session policies, so what a narrowed
    // session may do is decided here, against the catalogue.
    #[test]
    fn a_session_policy_allows_its_capabilities_tools_and_nothing_else() {
        let logs: Value = serde_json::from_str(&session_policy(&[Capability::Logs])).unwrap();
        let tool = |name: &str| catalogue().into_iter().find(|t| t.name == name).unwrap();
        for action in tool("logs_groups").iam_actions.iter().copied() {
            assert!(allows(&logs, action), "{action}");
        }
        for action in tool("ec2_instances").iam_actions.iter().copied() {
            assert!(!allows(&logs, action), "{action}");
        }
        assert!(
            allows(&logs, "sts:GetCallerIdentity"),
            "whoami always works"
        );
        for entry in catalogue() {
            let own: Value = serde_json::from_str(&session_policy(&[entry.capability])).unwrap();
            let everything: Value = serde_json::from_str(&session_policy(&[])).unwrap();
            for action in entry.iam_actions.iter().copied() {
                assert!(allows(&own, action), "{} needs {action}", entry.name);
                assert!(allows(&everything, action), "{} needs {action}", entry.name);
            }
            // Tools share some actions (elasticache_metrics reads CloudWatch): what another
            // capability needs beyond this one's own actions stays out.
            let needed = actions(&[entry.capability, Capability::Identity]);
            for other in catalogue() {
                for action in other.iam_actions.iter().filter(|a| !needed.contains(*a)) {
                    assert!(
                        !allows(&own, action),
                        "a {:?} session must not allow {action}",
                        entry.capability
                    );
                }
            }
        }
        // Nothing beyond the catalogue: no write verb, no wildcard.
        for action in [
            "logs:PutLogEvents",
            "ec2:TerminateInstances",
            "iam:PassRole",
            "s3:GetObject",
        ] {
            assert!(!allows(
                &serde_json::from_str(&session_policy(&[])).unwrap(),
                action
            ));
        }
    }

    /// The setup guide's example policy, statement by statement: its ids, its order, and its
    /// 29 actions (DESIGN.md lists them), no more, no fewer.
    #[test]
    fn the_permissions_policy_is_the_guides_document() {
        let policy = permissions(&[]);
        let statements = policy["Statement"].as_array().unwrap();
        let ids: Vec<&str> = statements
            .iter()
            .map(|s| s["Sid"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids,
            [
                "CloudWatchLogs",
                "CloudWatchMetrics",
                "EC2ReadOnly",
                "ECSReadOnly",
                "EKSReadOnly",
                "ElastiCacheReadOnly",
                "STSIdentity"
            ]
        );
        let guide: BTreeSet<&str> = [
            "logs:DescribeLogGroups",
            "logs:DescribeLogStreams",
            "logs:FilterLogEvents",
            "logs:GetLogEvents",
            "logs:StartQuery",
            "logs:GetQueryResults",
            "cloudwatch:ListMetrics",
            "cloudwatch:GetMetricData",
            "cloudwatch:DescribeAlarms",
            "ec2:DescribeInstances",
            "ec2:DescribeInstanceStatus",
            "ec2:DescribeSecurityGroups",
            "ec2:DescribeSubnets",
            "ec2:DescribeVpcs",
            "ecs:ListClusters",
            "ecs:DescribeClusters",
            "ecs:ListServices",
            "ecs:DescribeServices",
            "ecs:ListTasks",
            "ecs:DescribeTasks",
            "eks:ListClusters",
            "eks:DescribeCluster",
            "eks:ListNodegroups",
            "eks:DescribeNodegroup",
            "elasticache:DescribeCacheClusters",
            "elasticache:DescribeReplicationGroups",
            "elasticache:DescribeServerlessCaches",
            "elasticache:DescribeEvents",
            "sts:GetCallerIdentity",
        ]
        .into_iter()
        .collect();
        let granted: BTreeSet<&str> = statements
            .iter()
            .flat_map(|s| s["Action"].as_array().unwrap())
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(granted, guide);
        for statement in statements {
            assert_eq!(statement["Effect"], "Allow");
            assert_eq!(statement["Resource"], "*");
        }
    }

    #[test]
    fn the_whole_session_policy_fits_sts_limit() {
        let all = session_policy(&[]);
        assert!(all.len() <= MAX_SESSION_POLICY_CHARS, "{} chars", all.len());
        assert!(
            !all.contains('*') || all.matches('*').count() == 1,
            "only Resource is *"
        );
    }
}
