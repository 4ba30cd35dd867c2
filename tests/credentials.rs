//! The credential broker and Test Connection against the test bed: the IMDSv2 emulator for
//! the instance role, moto's STS for AssumeRole, moto's permission enforcement for denials.

mod support;

use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use autoheal::config::{IntegrationConfig, load_from_str};
use autoheal::credentials::{CredentialBroker, CredentialError, FailureKind, RefreshPolicy};
use serde_json::{Value, json};
use support::{TestBed, allow, trust, wait_for};

const CROSS_ACCOUNT: &str = "210987654321";

fn integrations(bed: &TestBed, toml: &str) -> Vec<IntegrationConfig> {
    load_from_str(&bed.config_toml(toml))
        .expect("valid test config")
        .integrations
}

const INSTANCE_ROLE: &str = r#"
[[integration]]
name = "local"
account_id = "123456789012"
auth = "instance_role"
endpoint_url = "{endpoint}"
"#;

fn cross_account(role: &str) -> String {
    format!(
        r#"
[[integration]]
name = "cross"
account_id = "{CROSS_ACCOUNT}"
auth = "instance_role"
role_arn = "arn:aws:iam::{CROSS_ACCOUNT}:role/{role}"
external_id = "autoheal-test-external-id"
endpoint_url = "{{endpoint}}"
"#
    )
}

/// Refresh when less than `keep_valid_for` is left; quick retries.
fn fast_policy(keep_valid_for: Duration) -> RefreshPolicy {
    RefreshPolicy {
        keep_valid_for,
        jitter: Duration::ZERO,
        min_backoff: Duration::from_millis(200),
        max_backoff: Duration::from_secs(1),
        upstream_timeout: Duration::from_secs(10),
    }
}

async fn broker(bed: &TestBed, toml: &str, policy: RefreshPolicy) -> CredentialBroker {
    bed.broker(&integrations(bed, toml), policy).await
}

/// Makes the emulator mint 25-minute credentials and rotate them every 3 seconds; with a
/// 1495 s lead the broker refreshes every ~5 s, as it would every ~40 min in production.
async fn rotate_quickly(bed: &TestBed) -> RefreshPolicy {
    bed.configure_imds(json!({"credential_ttl_seconds": 1500, "rotate_before_seconds": 1497}))
        .await;
    fast_policy(Duration::from_secs(1495))
}

async fn key_of(broker: &CredentialBroker, integration: &str) -> String {
    broker
        .credentials_valid_for(integration, Duration::from_secs(60))
        .await
        .expect("credentials")
        .access_key_id()
        .to_owned()
}

#[tokio::test]
async fn refreshes_ahead_of_expiry_as_imds_rotates_the_instance_credentials() {
    let bed = TestBed::start();
    let policy = rotate_quickly(&bed).await;
    let broker = broker(&bed, INSTANCE_ROLE, policy).await;
    broker.start_background_refresh();
    let first = key_of(&broker, "local").await;
    wait_for(
        "a background refresh to fetch rotated credentials",
        Duration::from_secs(30),
        || {
            let broker = &broker;
            let first = first.clone();
            async move { (key_of(broker, "local").await != first).then_some(()) }
        },
    )
    .await;
    let state = &broker.states()[0];
    assert!(state.refreshes >= 2, "{state:?}");
    assert!(state.last_error.is_none());
}

#[tokio::test]
async fn serves_still_valid_credentials_through_an_imds_outage_and_recovers_by_itself() {
    let bed = TestBed::start();
    let policy = rotate_quickly(&bed).await;
    let broker = broker(&bed, INSTANCE_ROLE, policy).await;
    broker.prime().await;
    broker.start_background_refresh();

    bed.configure_imds(json!({"mode": "down"})).await;
    wait_for(
        "the broker to notice the outage",
        Duration::from_secs(30),
        || async {
            let state = broker.states().remove(0);
            (state.last_error.as_ref().map(|e| e.kind) == Some(FailureKind::ImdsUnreachable))
                .then_some(())
        },
    )
    .await;
    // Launches keep getting the still-valid credentials during the outage.
    for _ in 0..5 {
        broker
            .credentials_valid_for("local", Duration::from_secs(600))
            .await
            .expect("still-valid credentials during the outage");
    }

    bed.configure_imds(json!({"mode": "ok"})).await;
    let failures_before = broker.states()[0].failures.values().sum::<u64>();
    wait_for(
        "the broker to recover on its own",
        Duration::from_secs(30),
        || async {
            let state = broker.states().remove(0);
            state.last_error.is_none().then_some(())
        },
    )
    .await;
    assert!(failures_before >= 1);
}

#[tokio::test]
async fn throttling_errors_and_slowness_are_classified_and_survived() {
    let bed = TestBed::start();
    let broker = broker(&bed, INSTANCE_ROLE, fast_policy(Duration::from_secs(900))).await;
    broker.prime().await;
    let cache = broker.cache("local").unwrap();
    for (mode, expected) in [
        ("throttle", [FailureKind::ImdsError, FailureKind::ImdsError]),
        ("error500", [FailureKind::ImdsError, FailureKind::ImdsError]),
        ("slow", [FailureKind::ImdsUnreachable, FailureKind::Timeout]),
    ] {
        bed.configure_imds(
            json!({"mode": mode, "delay_ms": if mode == "slow" { 3000 } else { 0 }}),
        )
        .await;
        let failure = cache.refresh().await.expect_err(mode);
        assert!(expected.contains(&failure.kind), "{mode}: {failure}");
        broker
            .credentials_valid_for("local", Duration::from_secs(600))
            .await
            .unwrap_or_else(|e| panic!("{mode}: still-valid credentials are served: {e}"));
    }
    bed.configure_imds(json!({"mode": "ok", "delay_ms": 0}))
        .await;
    cache.refresh().await.expect("recovers");
}

#[tokio::test]
async fn two_hundred_concurrent_requests_make_one_upstream_fetch() {
    let bed = TestBed::start();
    let broker = Arc::new(broker(&bed, INSTANCE_ROLE, fast_policy(Duration::from_secs(900))).await);
    let callers = (0..200).map(|_| {
        let broker = broker.clone();
        tokio::spawn(async move {
            broker
                .credentials_valid_for("local", Duration::from_secs(900))
                .await
                .map(|c| c.access_key_id().to_owned())
        })
    });
    let keys: std::collections::BTreeSet<_> = futures_util::future::join_all(callers)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    assert_eq!(keys.len(), 1);
    let counters = &bed.imds_state().await["counters"];
    assert_eq!(counters["credential_gets"], 1, "{counters}");
    assert_eq!(broker.states()[0].upstream_calls, 1);
}

#[tokio::test]
async fn cross_account_credentials_carry_the_other_accounts_identity() {
    let bed = TestBed::start();
    let broker = broker(
        &bed,
        &cross_account("AutohealCrossAccountRole"),
        fast_policy(Duration::from_secs(900)),
    )
    .await;
    let credentials = broker
        .credentials_valid_for("cross", Duration::from_secs(900))
        .await
        .expect("AssumeRole chained on the instance role");
    let config = bed.sdk_config_with(credentials).await;
    let identity = aws_sdk_sts::Client::new(&config)
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    assert_eq!(identity.account(), Some(CROSS_ACCOUNT));
    let arn = identity.arn().unwrap();
    assert!(
        arn.starts_with(&format!(
            "arn:aws:sts::{CROSS_ACCOUNT}:assumed-role/AutohealCrossAccountRole/autoheal-cross"
        )),
        "{arn}"
    );
}

#[tokio::test]
async fn a_denied_assume_role_yields_the_trust_policy_hint() {
    let bed = TestBed::start();
    let account = bed.account_id.clone();
    // moto matches a trust policy's principal exactly: it does not see an assumed-role
    // session as its role, so the trusting role names the instance's session (which AWS
    // accepts too).
    let instance_session =
        format!("arn:aws:sts::{account}:assumed-role/autoheal-instance-role/i-0a1b2c3d4e5f60718");
    bed.put_role(
        &account,
        "autoheal-instance-role",
        json!(null),
        allow(&["sts:AssumeRole", "sts:GetCallerIdentity"]),
    )
    .await;
    // moto checks trust policies only for roles in the caller's own account (it looks the
    // role up there), so the roles under test live in the instance's account.
    bed.put_role(
        &account,
        "LockedRole",
        trust("arn:aws:iam::999999999999:root"),
        allow(&["logs:*"]),
    )
    .await;
    bed.put_role(
        &account,
        "OpenRole",
        trust(&instance_session),
        allow(&["logs:*"]),
    )
    .await;
    bed.enforce_permissions().await;

    let toml = format!(
        "{}{}",
        cross_account("LockedRole"),
        cross_account("OpenRole").replace("\"cross\"", "\"open\"")
    )
    .replace(CROSS_ACCOUNT, &account);
    let broker = broker(&bed, &toml, fast_policy(Duration::from_secs(900))).await;
    let err = broker
        .credentials_valid_for("cross", Duration::from_secs(900))
        .await
        .expect_err("the trust policy excludes the instance role");
    match &err {
        CredentialError::Unavailable { failure, .. } => {
            assert_eq!(failure.kind, FailureKind::AssumeRoleDenied, "{failure}");
            assert!(failure.hint.contains("trust policy"), "{}", failure.hint);
            assert!(failure.hint.contains("LockedRole"), "{}", failure.hint);
            assert!(
                failure
                    .message
                    .starts_with("sts:AssumeRole failed: AccessDenied: "),
                "{}",
                failure.message
            );
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    broker
        .credentials_valid_for("open", Duration::from_secs(900))
        .await
        .expect("a role that trusts the instance role can be assumed under enforcement");
}

fn autoheal(bed: &TestBed, config_toml: &str, args: &[&str]) -> Output {
    let dir = std::env::temp_dir().join(format!("autoheal-credentials-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("autoheal.toml");
    std::fs::write(&path, bed.config_toml(config_toml)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_autoheal"))
        .args(args)
        .arg("--config")
        .arg(&path)
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &bed.imds_endpoint)
        .env("AUTOHEAL_LOG", "debug")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .expect("run autoheal");
    let _ = std::fs::remove_dir_all(&dir);
    out
}

#[tokio::test]
async fn check_probes_every_action_and_names_each_one_denied() {
    let bed = TestBed::start_seeded();
    // A role with every action the tools use but one per capability — the guide's "can
    // query some services but not others".
    let missing = [
        "logs:FilterLogEvents",
        "cloudwatch:GetMetricData",
        "ec2:DescribeSubnets",
        "ecs:DescribeServices",
        "eks:DescribeNodegroup",
        "elasticache:DescribeReplicationGroups",
    ];
    let every: Vec<&str> = autoheal::tools::policy::actions(&[]).into_iter().collect();
    assert_eq!(every.len(), 29);
    // moto checks CloudWatch under the `monitoring:` prefix (TESTING.md gap 4), where AWS
    // uses `cloudwatch:`; the policy grants both spellings.
    let granted: Vec<String> = every
        .iter()
        .filter(|a| !missing.contains(a))
        .flat_map(|a| {
            let monitoring = a
                .strip_prefix("cloudwatch:")
                .map(|x| format!("monitoring:{x}"));
            std::iter::once(a.to_string()).chain(monitoring)
        })
        .collect();
    let granted: Vec<&str> = granted.iter().map(String::as_str).collect();
    bed.put_role(
        &bed.account_id,
        "autoheal-instance-role",
        json!(null),
        allow(&granted),
    )
    .await;
    let (secret, session_token) = bed.instance_secrets().await;
    bed.enforce_permissions().await;

    let out = autoheal(&bed, INSTANCE_ROLE, &["check", "--output", "json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(77), "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).expect("one JSON document");
    let local = &report["integrations"][0];
    assert_eq!(local["identity"]["account"], bed.account_id.as_str());
    let capabilities = local["capabilities"].as_array().unwrap();
    let capability = |name: &str| {
        capabilities
            .iter()
            .find(|c| c["capability"] == name)
            .unwrap_or_else(|| panic!("{name} missing"))
            .clone()
    };
    // Every action the catalogue declares was tried (GetCallerIdentity is the identity).
    let mut probed: Vec<String> = capabilities
        .iter()
        .flat_map(|c| c["actions"].as_array().unwrap().iter())
        .map(|a| a["action"].as_str().unwrap().to_owned())
        .collect();
    probed.push("sts:GetCallerIdentity".into());
    probed.sort();
    let mut expected: Vec<String> = every.iter().map(|a| a.to_string()).collect();
    expected.sort();
    assert_eq!(probed, expected);

    for (name, denied) in [
        ("cloudwatch_logs", "logs:FilterLogEvents"),
        ("cloudwatch_metrics", "cloudwatch:GetMetricData"),
        ("ec2", "ec2:DescribeSubnets"),
        ("ecs", "ecs:DescribeServices"),
        ("elasticache", "elasticache:DescribeReplicationGroups"),
    ] {
        let report = capability(name);
        assert_eq!(report["status"], "denied", "{report}");
        assert_eq!(
            report["denied"],
            json!([denied]),
            "exactly that one: {report}"
        );
        let hint = report["hint"].as_str().unwrap();
        assert!(
            hint.contains(denied) && hint.contains("put-role-policy"),
            "{hint}"
        );
    }
    // moto fails every EKS GET with SignatureDoesNotMatch under enforcement (TESTING.md
    // gap 4), so EKS can only report an error here, with the credential hint.
    assert_eq!(
        capability("eks")["status"],
        "error",
        "{}",
        capability("eks")
    );

    let text = autoheal(&bed, INSTANCE_ROLE, &["check"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("denied: logs:FilterLogEvents"), "{text}");
    for (what, value) in [("secret key", &secret), ("session token", &session_token)] {
        assert!(!stdout.contains(value.as_str()), "{what} in stdout");
        assert!(!stderr.contains(value.as_str()), "{what} in the debug log");
    }
}

#[tokio::test]
async fn check_reports_expired_instance_credentials_as_they_are() {
    let bed = TestBed::start();
    // IMDS serving a document that expired ten minutes ago: the SDK's own provider would
    // invent a new expiry 15-20 minutes out and call them valid.
    bed.configure_imds(json!({"mode": "stale"})).await;
    let out = autoheal(&bed, INSTANCE_ROLE, &["check", "--output", "json"]);
    assert_eq!(out.status.code(), Some(69));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let credentials = &report["integrations"][0]["credentials"];
    assert_eq!(credentials["kind"], "expired_credentials", "{credentials}");
    assert!(
        credentials["error"]
            .as_str()
            .unwrap()
            .contains("expired at"),
        "{credentials}"
    );
}

#[tokio::test]
async fn check_exits_69_with_the_fix_when_no_role_is_attached() {
    let bed = TestBed::start();
    bed.configure_imds(json!({"mode": "no_role"})).await;
    let out = autoheal(&bed, INSTANCE_ROLE, &["check", "--output", "json"]);
    assert_eq!(out.status.code(), Some(69));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let credentials = &report["integrations"][0]["credentials"];
    assert_eq!(credentials["status"], "unavailable");
    assert_eq!(credentials["kind"], "no_role_attached");
    assert!(
        credentials["hint"]
            .as_str()
            .unwrap()
            .contains("associate-iam-instance-profile"),
        "{credentials}"
    );
}

#[tokio::test]
async fn check_passes_and_shows_the_cross_account_identity() {
    let bed = TestBed::start_seeded();
    let out = autoheal(
        &bed,
        &format!(
            "{INSTANCE_ROLE}{}",
            cross_account("AutohealCrossAccountRole")
        ),
        &["check"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!(
            "arn:aws:sts::{CROSS_ACCOUNT}:assumed-role/AutohealCrossAccountRole/autoheal-cross"
        )),
        "{text}"
    );
    assert_eq!(
        text.matches("  allowed  ").count(),
        12,
        "6 capabilities, twice: {text}"
    );
    // One screen when all is well: a header, credentials, the bare instance role's warning,
    // identity, one line per capability and a blank line.
    let local = text.split("cross (").next().unwrap();
    assert_eq!(local.lines().count(), 11, "{text}");
    assert!(
        local.contains("warning      integration \"local\": sandboxes receive the EC2 instance profile's own credentials"),
        "{text}"
    );
    // The assumed role makes one sandbox session as a sandbox would.
    let cross = text.split("cross (").nth(1).unwrap();
    assert!(
        cross.contains("sandbox session ok        autoheal-sandbox-check-"),
        "{text}"
    );
    assert!(!cross.contains("warning"), "{text}");
}

#[tokio::test]
async fn check_notes_a_region_without_resources() {
    let bed = TestBed::start();
    let out = autoheal(
        &bed,
        &INSTANCE_ROLE.replace("auth =", "region = \"eu-west-1\"\nauth ="),
        &["check", "--output", "json"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    for capability in report["integrations"][0]["capabilities"]
        .as_array()
        .unwrap()
    {
        assert_eq!(capability["status"], "allowed", "{capability}");
        assert!(
            capability["hint"]
                .as_str()
                .unwrap()
                .contains("check the integration's region"),
            "{capability}"
        );
    }
}
