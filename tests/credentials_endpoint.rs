//! Credentials by the container-credentials protocol (`credentials = "endpoint"`), against
//! the real Docker engine and the test bed: the AWS SDKs (Rust inside a sandbox, boto3 from
//! the test bed's virtualenv) fetch a sandbox's credentials from the daemon with its token;
//! a token is refused once its sandbox ends, from another sandbox's address, and when made
//! up; credentials are renewed ahead of expiry; `docker inspect` shows no secret.
//!
//! Host-network sandboxes reach the test bed and the endpoint on loopback. The bridge test
//! builds a Docker network in 198.18.0.0/15 (RFC 2544: never a real network here) and sends
//! nothing beyond this machine.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use autoheal::config::{Config, CredentialsDelivery, load_from_str};
use autoheal::sandbox::{
    ROUTE_COMMENT, SandboxInfo, SandboxManager, SandboxRequest, SandboxState, TOKEN_DIR,
    TOKEN_PATH_IN_SANDBOX,
};
use serde_json::Value;
use support::TestBed;

const TEST_IMAGE: &str = "autoheal-sandbox-test:latest";
const ROLE: &str = "arn:aws:iam::210987654321:role/AutohealReadOnlyRole";
/// The bridge test's network: its own /24 of the benchmarking range.
const BRIDGE_SUBNET: &str = "198.18.120.0/24";

fn config(bed: &TestBed, state_dir: &Path, network: &str) -> Config {
    load_from_str(&bed.config_toml(&format!(
        r#"
[server]
state_dir = "{state}"

[sandbox]
image = "{TEST_IMAGE}"
network = "{network}"
memory = "256MiB"
credentials = "endpoint"

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
"#,
        state = state_dir.display()
    )))
    .expect("valid test config")
}

fn request(integration: &str, command: &[&str]) -> SandboxRequest {
    SandboxRequest {
        integration: integration.into(),
        command: command.iter().map(|s| s.to_string()).collect(),
        image: None,
        timeout: Some(Duration::from_secs(120)),
        env: BTreeMap::new(),
        capabilities: None,
        credentials: None,
    }
}

/// A fresh state directory (removed on drop).
struct StateDir(std::path::PathBuf);

impl StateDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("autoheal-endpoint-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts a sandbox that sleeps (until stopped), answers its record.
async fn sleeper(manager: &std::sync::Arc<SandboxManager>, integration: &str) -> SandboxInfo {
    manager
        .create(request(integration, &["sleep", "110"]))
        .await
        .expect("the sandbox starts")
}

fn token_of(state_dir: &Path, sandbox: &SandboxInfo) -> String {
    std::fs::read_to_string(state_dir.join(TOKEN_DIR).join(&sandbox.id))
        .expect("the sandbox's token file")
}

/// `docker inspect` of a sandbox's container, as text.
fn inspect(sandbox: &SandboxInfo) -> String {
    let out = Command::new("docker")
        .args(["inspect", &format!("autoheal-sandbox-{}", sandbox.id)])
        .output()
        .expect("docker inspect");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The container's environment variable `name`, from `docker inspect`.
fn container_env(inspected: &str, name: &str) -> Option<String> {
    let doc: Value = serde_json::from_str(inspected).unwrap();
    doc[0]["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")).map(str::to_owned))
}

/// GET the endpoint from this process: (status, body).
async fn fetch(uri: &str, token: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(uri)
        .header("authorization", token)
        .send()
        .await
        .expect("the endpoint answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

#[tokio::test]
async fn sdks_fetch_a_sandboxs_credentials_from_the_endpoint_and_nothing_leaks() {
    let bed = TestBed::start_with(&["--seed", "--seed-account", "210987654321"]);
    let state = StateDir::new();
    let manager = bed
        .sandbox_manager(&config(&bed, state.path(), "host"))
        .await;

    // The Rust SDK inside a sandbox: no keys in its environment, its own session through
    // the endpoint.
    let done = manager
        .run_to_end(request(
            "scoped",
            &["autoheal", "tool", "whoami", "--output", "json"],
        ))
        .await
        .expect("sandbox runs");
    assert_eq!(done.state, SandboxState::Exited, "{done:?}");
    assert_eq!(done.credentials, CredentialsDelivery::Endpoint);
    let whoami: Value = serde_json::from_str(done.stdout.as_deref().unwrap())
        .unwrap_or_else(|e| panic!("{e}: {done:?}"));
    assert_eq!(
        whoami["arn"],
        format!(
            "arn:aws:sts::210987654321:assumed-role/AutohealReadOnlyRole/autoheal-sandbox-{}",
            done.id
        ),
        "{whoami}"
    );
    assert!(
        !state.path().join(TOKEN_DIR).join(&done.id).exists(),
        "the token file goes with the sandbox"
    );

    let a = sleeper(&manager, "scoped").await;
    let b = sleeper(&manager, "scoped").await;
    let (token_a, token_b) = (token_of(state.path(), &a), token_of(state.path(), &b));
    let inspected = inspect(&a);
    let uri = container_env(&inspected, "AWS_CONTAINER_CREDENTIALS_FULL_URI").expect("the URI");
    assert!(uri.starts_with("http://127.0.0.1:"), "{uri}");
    assert_eq!(
        container_env(&inspected, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE").as_deref(),
        Some(TOKEN_PATH_IN_SANDBOX)
    );

    let (status, doc_a) = fetch(&uri, &token_a).await;
    assert_eq!(status, 200, "{doc_a}");
    let (status, doc_b) = fetch(&uri, &token_b).await;
    assert_eq!(status, 200, "{doc_b}");
    assert_ne!(doc_a["AccessKeyId"], doc_b["AccessKeyId"], "two sessions");
    for field in ["AccessKeyId", "SecretAccessKey", "Token", "Expiration"] {
        assert!(doc_a[field].is_string(), "{field} in {doc_a}");
    }
    // docker inspect: a token file's path, never a key, a secret or the token.
    for secret in [
        doc_a["AccessKeyId"].as_str().unwrap(),
        doc_a["SecretAccessKey"].as_str().unwrap(),
        doc_a["Token"].as_str().unwrap(),
        token_a.as_str(),
    ] {
        assert!(!inspected.contains(secret), "docker inspect shows a secret");
    }
    assert!(container_env(&inspected, "AWS_SECRET_ACCESS_KEY").is_none());
    assert!(container_env(&inspected, "AWS_SESSION_TOKEN").is_none());
    let mode = |path: std::path::PathBuf| {
        std::os::unix::fs::MetadataExt::mode(&std::fs::metadata(path).unwrap()) & 0o777
    };
    assert_eq!(
        mode(state.path().join(TOKEN_DIR)),
        0o700,
        "no other local user enters the directory"
    );
    assert_eq!(
        mode(state.path().join(TOKEN_DIR).join(&a.id)),
        0o444,
        "the sandbox's user (another uid) reads its file, whatever the daemon's umask"
    );

    // boto3 (the test bed's virtualenv) through the same endpoint and token file.
    // Asynchronous: the endpoint answers from this test's own runtime.
    let boto = tokio::process::Command::new(support::testbed_python())
        .args([
            "-c",
            "import boto3; print(boto3.client('sts').get_caller_identity()['Arn'])",
        ])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri)
        .env(
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            state.path().join(TOKEN_DIR).join(&a.id),
        )
        .env("AWS_ENDPOINT_URL", &bed.endpoint)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .await
        .expect("python runs");
    assert!(boto.status.success(), "{boto:?}");
    assert_eq!(
        String::from_utf8_lossy(&boto.stdout).trim(),
        format!(
            "arn:aws:sts::210987654321:assumed-role/AutohealReadOnlyRole/autoheal-sandbox-{}",
            a.id
        )
    );

    // A made-up token, and a token once its sandbox has ended: 403.
    let (status, refused) = fetch(&uri, "0123456789abcdef").await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (403, Some("unknown_token"))
    );
    let stopped = manager.stop(&a.id).await.unwrap();
    assert_eq!(stopped.state, SandboxState::Stopped);
    let (status, refused) = fetch(&uri, &token_a).await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (403, Some("unknown_token")),
        "refused once the sandbox ended"
    );
    assert!(!state.path().join(TOKEN_DIR).join(&a.id).exists());
    assert_eq!(
        fetch(&uri, &token_b).await.0,
        200,
        "the other one still served"
    );
    manager.stop(&b.id).await.unwrap();
    assert!(manager.credentials_endpoint().is_empty());
}

#[tokio::test]
async fn credentials_near_expiry_are_renewed_for_a_sandbox_that_outlives_them() {
    let bed = TestBed::start();
    // The instance role's credentials last 60 s, rotated 45 s before expiry, as EC2 would
    // (scaled down): a 2-minute sandbox outlives the first ones.
    bed.configure_imds(serde_json::json!({
        "credential_ttl_seconds": 60,
        "rotate_before_seconds": 45,
        "rotate_now": true
    }))
    .await;
    let state = StateDir::new();
    let manager = bed
        .sandbox_manager(&config(&bed, state.path(), "host"))
        .await;
    let sandbox = sleeper(&manager, "bare").await;
    assert_eq!(sandbox.deadline_note, None, "no shortening: {sandbox:?}");
    let uri = container_env(&inspect(&sandbox), "AWS_CONTAINER_CREDENTIALS_FULL_URI").unwrap();
    let token = token_of(state.path(), &sandbox);

    let (status, first) = fetch(&uri, &token).await;
    assert_eq!(status, 200, "{first}");
    let first_expiry = humantime::parse_rfc3339(first["Expiration"].as_str().unwrap()).unwrap();
    // Into the last half of their life: renewed before they are served.
    let due = first_expiry - Duration::from_secs(20);
    if let Ok(wait) = due.duration_since(SystemTime::now()) {
        tokio::time::sleep(wait).await;
    }
    let (status, renewed) = fetch(&uri, &token).await;
    assert_eq!(status, 200, "{renewed}");
    let renewed_expiry = humantime::parse_rfc3339(renewed["Expiration"].as_str().unwrap()).unwrap();
    assert_ne!(first["AccessKeyId"], renewed["AccessKeyId"], "{renewed}");
    assert!(renewed_expiry > first_expiry, "{first} then {renewed}");
    manager.stop(&sandbox.id).await.unwrap();
}

#[tokio::test]
async fn bridge_sandboxes_reach_the_endpoint_at_the_sdks_address_with_their_own_token_only() {
    let bed = TestBed::start();
    let network = support::BridgeNetwork::create("credentials", BRIDGE_SUBNET);
    let state = StateDir::new();
    // What a previous daemon (another port) left behind: replaced, not kept beside ours.
    let stale = Command::new("iptables")
        .args([
            "-t",
            "nat",
            "-I",
            "PREROUTING",
            "-s",
            BRIDGE_SUBNET,
            "-d",
            "169.254.170.2/32",
            "-p",
            "tcp",
            "-m",
            "tcp",
            "--dport",
            "80",
            "-m",
            "comment",
            "--comment",
            ROUTE_COMMENT,
            "-j",
            "DNAT",
            "--to-destination",
            "198.18.120.1:1",
        ])
        .output()
        .unwrap();
    assert!(stale.status.success(), "{stale:?}");
    let manager = bed
        .sandbox_manager(&config(&bed, state.path(), &network.name))
        .await;
    let other = sleeper(&manager, "scoped").await;
    let inspected = inspect(&other);
    assert_eq!(
        container_env(&inspected, "AWS_CONTAINER_CREDENTIALS_FULL_URI").as_deref(),
        Some("http://169.254.170.2/v1/credentials")
    );
    let other_token = token_of(state.path(), &other);

    // From inside a bridge sandbox (busybox nc): its own token, then the other sandbox's.
    let ask = r#"get() { printf 'GET /v1/credentials HTTP/1.0\r\nAuthorization: %s\r\n\r\n' "$1" | nc -w 5 169.254.170.2 80; echo; echo ===; }
get "$(cat "$AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")"
get "$OTHER_TOKEN""#;
    let mut asking = request("scoped", &["sh", "-c", ask]);
    asking.env.insert("OTHER_TOKEN".into(), other_token.clone());
    let done = manager.run_to_end(asking).await.expect("sandbox runs");
    let stdout = done.stdout.as_deref().unwrap_or_default();
    let answers: Vec<&str> = stdout.split("===").collect();
    assert!(
        answers[0].contains(" 200 ") && answers[0].contains("\"AccessKeyId\""),
        "its own credentials: {done:?}"
    );
    assert!(
        answers[1].contains(" 403 ") && answers[1].contains("wrong_address"),
        "another sandbox's token is refused from this address: {done:?}"
    );
    assert!(!answers[1].contains("SecretAccessKey"), "{done:?}");

    // One DNAT rule for the subnet, marked as ours, however many sandboxes started.
    let nat = Command::new("iptables")
        .args(["-t", "nat", "-S", "PREROUTING"])
        .output()
        .unwrap();
    let ours: Vec<String> = String::from_utf8_lossy(&nat.stdout)
        .lines()
        .filter(|l| l.contains(ROUTE_COMMENT) && l.contains(BRIDGE_SUBNET))
        .map(str::to_owned)
        .collect();
    assert_eq!(ours.len(), 1, "{ours:?}");
    assert!(
        !ours[0].contains("198.18.120.1:1 "),
        "the stale rule is gone: {ours:?}"
    );
    assert!(ours[0].contains("169.254.170.2/32") && ours[0].contains("--dport 80"));
    manager.stop(&other.id).await.unwrap();
}
