//! Least privilege per sandbox, against the real Docker engine and the test bed: each
//! sandbox of a role-assuming integration gets its own STS session — named after it, tagged
//! with it, narrowed by a session policy, as long as it lives — made with exactly one STS
//! call and no IMDS call of its own.
//!
//! moto gap (TESTING.md 4): moto does not evaluate session policies or session tags, so a
//! call outside the policy is not refused here. These tests assert the parameters STS
//! receives (the test bed records them whole); `tools::policy`'s unit tests evaluate the
//! policy document itself against the catalogue (a `logs` session allows `logs_groups`'
//! actions and none of `ec2_instances`').
//!
//! Sandboxes use host networking to reach the test bed on loopback, and run
//! `autoheal-sandbox-test:latest` (the sandbox image plus busybox).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use autoheal::config::{Config, load_from_str};
use autoheal::credentials::{CredentialBroker, InstanceRole, RefreshPolicy, clock::SystemClock};
use autoheal::lifecycle::LiveConfig;
use autoheal::oidc::{Issuer, IssuerCell, KeyAlgorithm, KeyRing};
use autoheal::sandbox::{DockerBackend, SandboxManager, SandboxRequest, SandboxState};
use autoheal::tools::Capability;
use base64::Engine;
use serde_json::Value;
use support::TestBed;

const TEST_IMAGE: &str = "autoheal-sandbox-test:latest";
const ROLE: &str = "arn:aws:iam::210987654321:role/AutohealReadOnlyRole";

fn config(bed: &TestBed, extra: &str) -> Config {
    load_from_str(&bed.config_toml(&format!(
        r#"
[sandbox]
image = "{TEST_IMAGE}"
network = "host"
memory = "256MiB"

[[integration]]
name = "scoped"
account_id = "210987654321"
auth = "instance_role"
role_arn = "{ROLE}"
endpoint_url = "{{endpoint}}"

[[integration]]
name = "bare"
account_id = "123456789012"
auth = "instance_role"
endpoint_url = "{{endpoint}}"
{extra}
"#
    )))
    .expect("valid test config")
}

fn request(integration: &str, command: &[&str]) -> SandboxRequest {
    SandboxRequest {
        integration: integration.into(),
        command: command.iter().map(|s| s.to_string()).collect(),
        image: None,
        timeout: Some(Duration::from_secs(60)),
        env: BTreeMap::new(),
        capabilities: None,
        credentials: None,
    }
}

/// The form parameters `Tags.member.N.Key/Value` as a map.
fn tags(sts: &Value) -> BTreeMap<String, String> {
    (1..=10)
        .filter_map(|n| {
            let key = sts[format!("Tags.member.{n}.Key")].as_str()?;
            let value = sts[format!("Tags.member.{n}.Value")].as_str()?;
            Some((key.to_owned(), value.to_owned()))
        })
        .collect()
}

fn policy_actions(sts: &Value) -> BTreeSet<String> {
    let policy: Value = serde_json::from_str(sts["Policy"].as_str().expect("a Policy")).unwrap();
    let statement = &policy["Statement"][0];
    assert_eq!(statement["Effect"], "Allow");
    assert_eq!(statement["Resource"], "*");
    statement["Action"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_sandbox_gets_its_own_session_named_tagged_narrowed_and_short() {
    let bed = TestBed::start_with(&["--seed", "--seed-account", "210987654321"]);
    let config = config(&bed, "");
    let manager = bed.sandbox_manager(&config).await;
    bed.clear_sts_requests().await;

    let mut ask = request(
        "scoped",
        &["autoheal", "tool", "whoami", "--output", "json"],
    );
    ask.capabilities = Some(vec![Capability::Logs]);
    let done = manager.run_to_end(ask).await.expect("sandbox runs");
    assert_eq!(done.state, SandboxState::Exited, "{done:?}");
    let session_name = format!("autoheal-sandbox-{}", done.id);
    assert_eq!(done.session_name.as_deref(), Some(session_name.as_str()));
    assert_eq!(done.capabilities, Some(vec![Capability::Logs]));
    let whoami: Value = serde_json::from_str(done.stdout.as_deref().unwrap())
        .unwrap_or_else(|e| panic!("{e}: {done:?}"));
    assert_eq!(
        whoami["arn"],
        format!("arn:aws:sts::210987654321:assumed-role/AutohealReadOnlyRole/{session_name}"),
        "CloudTrail names the sandbox: {whoami}"
    );

    let sts = bed.sts_requests().await;
    assert_eq!(
        sts.len(),
        1,
        "exactly one STS call for the sandbox: {sts:?}"
    );
    let call = &sts[0];
    assert_eq!(call["Action"], "AssumeRole");
    assert_eq!(call["RoleArn"], ROLE);
    assert_eq!(call["RoleSessionName"], session_name.as_str());
    // 60 s sandbox + 30 s start margin, raised to STS's 15-minute minimum.
    assert_eq!(call["DurationSeconds"], "900");
    assert_eq!(
        tags(call),
        BTreeMap::from([
            ("autoheal:sandbox".to_owned(), done.id.clone()),
            ("autoheal:integration".to_owned(), "scoped".to_owned()),
        ])
    );
    let expected: BTreeSet<String> =
        autoheal::tools::policy::actions(&[Capability::Logs, Capability::Identity])
            .into_iter()
            .map(str::to_owned)
            .collect();
    assert_eq!(policy_actions(call), expected);
    assert!(!policy_actions(call).contains("ec2:DescribeInstances"));
    let expires = humantime::parse_rfc3339(&done.credentials_expire_at).unwrap();
    let deadline = humantime::parse_rfc3339(&done.deadline).unwrap();
    assert!(expires > deadline, "{done:?}");
    assert!(
        expires < deadline + Duration::from_secs(900),
        "credentials die soon after the sandbox: {done:?}"
    );

    // Without capabilities: every tool's actions, no more.
    bed.clear_sts_requests().await;
    manager
        .run_to_end(request("scoped", &["true"]))
        .await
        .unwrap();
    let all: BTreeSet<String> = autoheal::tools::policy::actions(&[])
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(policy_actions(&bed.sts_requests().await[0]), all);
    assert_eq!(all.len(), 29);
}

#[tokio::test]
async fn two_sandboxes_get_two_sessions_without_asking_imds_again() {
    let bed = TestBed::start();
    let config = config(&bed, "");
    let manager = bed.sandbox_manager(&config).await;
    let print_key = ["sh", "-c", "echo $AWS_ACCESS_KEY_ID"];
    manager
        .run_to_end(request("scoped", &print_key))
        .await
        .unwrap();
    let imds_before = bed.imds_state().await["counters"]["credential_gets"].clone();
    bed.clear_sts_requests().await;

    let a = manager
        .run_to_end(request("scoped", &print_key))
        .await
        .unwrap();
    let b = manager
        .run_to_end(request("scoped", &print_key))
        .await
        .unwrap();
    let key =
        |info: &autoheal::sandbox::SandboxInfo| info.stdout.as_deref().unwrap().trim().to_owned();
    assert!(!key(&a).is_empty() && key(&a) != key(&b), "{a:?} {b:?}");
    assert_ne!(a.session_name, b.session_name);
    let names: Vec<String> = bed
        .sts_requests()
        .await
        .iter()
        .map(|r| r["RoleSessionName"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        vec![
            format!("autoheal-sandbox-{}", a.id),
            format!("autoheal-sandbox-{}", b.id)
        ]
    );
    assert_eq!(
        bed.imds_state().await["counters"]["credential_gets"],
        imds_before,
        "the instance role's credentials come from the cache"
    );
}

#[tokio::test]
async fn capabilities_are_refused_where_sessions_cannot_be_narrowed() {
    let bed = TestBed::start();
    let config = config(&bed, "");
    let manager = bed.sandbox_manager(&config).await;
    let mut ask = request("bare", &["true"]);
    ask.capabilities = Some(vec![Capability::Logs]);
    let refused = manager.run_to_end(ask).await.unwrap_err();
    assert_eq!(
        (refused.http_status(), refused.code()),
        (400, "capabilities_unsupported")
    );
    let message = refused.to_string();
    assert!(
        message.contains("instance profile's own credentials") && message.contains("role_arn"),
        "{message}"
    );
    // Without capabilities the bare integration keeps working, on the shared credentials.
    let done = manager
        .run_to_end(request("bare", &["true"]))
        .await
        .unwrap();
    assert_eq!(done.state, SandboxState::Exited);
    assert_eq!(done.session_name, None);

    // Test Connection makes a sandbox's session as a sandbox would, and warns about the bare
    // instance role.
    let broker = bed
        .broker(
            &config.integrations,
            RefreshPolicy::for_sandboxes(config.sandbox.max_lifetime),
        )
        .await;
    let scoped = autoheal::check::test_connection(&broker, &config.integrations[0]).await;
    let session = serde_json::to_value(&scoped.sandbox_session).unwrap();
    assert_eq!(session["status"], "allowed", "{session}");
    assert!(
        session["session_name"]
            .as_str()
            .unwrap()
            .starts_with("autoheal-sandbox-check-")
    );
    assert!(scoped.warnings.is_empty());
    let bare = autoheal::check::test_connection(&broker, &config.integrations[1]).await;
    assert!(bare.sandbox_session.is_none());
    assert!(
        bare.warnings[0].contains("instance profile's own credentials"),
        "{:?}",
        bare.warnings
    );

    // `session = "shared"` keeps one session for every sandbox and refuses narrowing too.
    let shared = load_from_str(&bed.config_toml(&format!(
        "[sandbox]\nimage = \"{TEST_IMAGE}\"\nnetwork = \"host\"\n\n[[integration]]\nname = \"scoped\"\naccount_id = \"210987654321\"\nauth = \"instance_role\"\nrole_arn = \"{ROLE}\"\nsession = \"shared\"\nendpoint_url = \"{{endpoint}}\"\n"
    )))
    .unwrap();
    let manager = bed.sandbox_manager(&shared).await;
    let first = manager
        .run_to_end(request("scoped", &["true"]))
        .await
        .unwrap();
    assert_eq!(first.session_name, None);
    bed.clear_sts_requests().await;
    manager
        .run_to_end(request("scoped", &["true"]))
        .await
        .unwrap();
    manager
        .run_to_end(request("scoped", &["true"]))
        .await
        .unwrap();
    assert_eq!(
        bed.sts_requests().await.len(),
        0,
        "the shared session is cached: no STS call per sandbox"
    );
    let mut ask = request("scoped", &["true"]);
    ask.capabilities = Some(vec![Capability::Logs]);
    let refused = manager.run_to_end(ask).await.unwrap_err();
    assert!(
        refused.to_string().contains("session = \"shared\""),
        "{refused}"
    );
}

#[tokio::test]
async fn an_oidc_sandbox_session_carries_its_tags_in_the_token() {
    let bed = TestBed::start();
    let keys = std::env::temp_dir().join(format!("autoheal-sessions-oidc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&keys);
    KeyRing::generate(&keys, KeyAlgorithm::Rs256, SystemTime::now()).unwrap();
    let config = load_from_str(&bed.config_toml(&format!(
        r#"
[sandbox]
image = "{TEST_IMAGE}"
network = "host"

[oidc]
issuer = "https://oidc.example.com/acme"
tenant_slug = "acme-corp"
key_dir = "{}"

[[integration]]
name = "federated"
account_id = "210987654321"
auth = "oidc"
role_arn = "arn:aws:iam::210987654321:role/AutohealOidcRole"
endpoint_url = "{{endpoint}}"
"#,
        keys.display()
    )))
    .unwrap();
    let issuer = Issuer::load(config.oidc.as_ref().unwrap()).unwrap();
    let broker = Arc::new(
        CredentialBroker::new(
            &config.integrations,
            &InstanceRole::with_endpoint(&bed.imds_endpoint).unwrap(),
            Some(Ok(Arc::new(IssuerCell::new(issuer)))),
            Arc::new(SystemClock),
            RefreshPolicy::for_sandboxes(config.sandbox.max_lifetime),
        )
        .await,
    );
    let manager = Arc::new(SandboxManager::new(
        Arc::new(DockerBackend::connect(autoheal::sandbox::DEFAULT_OUTPUT_CAP).expect("docker")),
        Arc::new(LiveConfig::new(config, broker)),
    ));
    bed.clear_sts_requests().await;
    let mut ask = request(
        "federated",
        &["autoheal", "tool", "whoami", "--output", "json"],
    );
    ask.capabilities = Some(vec![Capability::Metrics, Capability::Ecs]);
    let done = manager.run_to_end(ask).await.expect("sandbox runs");
    assert_eq!(done.exit_code, Some(0), "{done:?}");

    let sts = bed.sts_requests().await;
    assert_eq!(sts.len(), 1, "{sts:?}");
    let call = &sts[0];
    assert_eq!(call["Action"], "AssumeRoleWithWebIdentity");
    assert_eq!(
        call["RoleSessionName"],
        format!("autoheal-sandbox-{}", done.id)
    );
    assert_eq!(call["DurationSeconds"], "900");
    assert!(policy_actions(call).contains("ecs:DescribeServices"));
    assert!(!policy_actions(call).contains("logs:FilterLogEvents"));
    let token = call["WebIdentityToken"].as_str().unwrap();
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        claims["sub"],
        format!("integration:federated:sandbox:{}", done.id)
    );
    assert_eq!(
        claims["https://aws.amazon.com/tags"]["principal_tags"],
        serde_json::json!({
            "autoheal:sandbox": [done.id],
            "autoheal:integration": ["federated"],
        })
    );
    let _ = std::fs::remove_dir_all(&keys);
}
