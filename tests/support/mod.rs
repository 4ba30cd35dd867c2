//! Shared helpers for the integration tests: a private test bed per test.
//!
//! Each [`TestBed`] is its own process (moto + CBOR front + IMDSv2 emulator) on free
//! loopback ports, so tests never share AWS state and can run in any order. It is killed
//! when dropped, and it exits by itself when our stdin pipe closes, so a test that dies
//! cannot leave it behind.
#![allow(dead_code)]

pub mod daemon;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::Arc;

use autoheal::config::{Config, IntegrationConfig};
use autoheal::credentials::clock::SystemClock;
use autoheal::credentials::{CredentialBroker, InstanceRole, RefreshPolicy};
use autoheal::lifecycle::LiveConfig;
use autoheal::sandbox::{DEFAULT_OUTPUT_CAP, DockerBackend, SandboxManager};
use aws_config::{BehaviorVersion, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;
use serde_json::Value;

/// How long a test bed may take to start (moto's import dominates; seeding adds a few s).
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct TestBed {
    child: Child,
    /// One endpoint for every AWS service.
    pub endpoint: String,
    /// The IMDSv2 emulator.
    pub imds_endpoint: String,
    /// The account the instance role (and default keys) belong to.
    pub account_id: String,
    http: reqwest::Client,
}

/// The repository root (tests run with the package root as working directory).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The test bed's Python, from `AUTOHEAL_TESTBED_PYTHON` or the venv `scripts/testbed setup` makes.
pub fn testbed_python() -> PathBuf {
    if let Ok(python) = std::env::var("AUTOHEAL_TESTBED_PYTHON") {
        return PathBuf::from(python);
    }
    let python = repo_root().join(".testbed/venv/bin/python");
    assert!(
        python.exists(),
        "the test bed's virtualenv is missing at {}: run `scripts/testbed setup` (scripts/test does it for you)",
        python.display()
    );
    python
}

impl TestBed {
    /// An empty world.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// The incident world of `tests/testbed/seed.py`, in the default account and region.
    pub fn start_seeded() -> Self {
        Self::start_with(&["--seed"])
    }

    pub fn start_with(extra: &[&str]) -> Self {
        let script = repo_root().join("tests/testbed/testbed.py");
        let mut child = Command::new(testbed_python())
            .arg(&script)
            .arg("--exit-on-stdin-eof")
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the test bed");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(line) if !line.trim().is_empty() => line,
            other => {
                let _ = child.kill();
                panic!("the test bed did not become ready within {START_TIMEOUT:?}: {other:?}");
            }
        };
        let ready: Value = serde_json::from_str(&line).expect("ready line is JSON");
        let text = |key: &str| ready[key].as_str().expect("ready field").to_owned();
        TestBed {
            endpoint: text("endpoint"),
            imds_endpoint: text("imds_endpoint"),
            account_id: text("account_id"),
            child,
            http: reqwest::Client::new(),
        }
    }

    /// SDK config pointing at the test bed with static test keys of the default account.
    pub async fn sdk_config(&self) -> SdkConfig {
        self.sdk_config_with(Credentials::new("testbed", "testbed", None, None, "test"))
            .await
    }

    /// SDK config pointing at the test bed (us-east-1) with the given credentials.
    pub async fn sdk_config_with(
        &self,
        credentials: impl ProvideCredentials + 'static,
    ) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(credentials)
            .load()
            .await
    }

    /// A credential broker whose instance role comes from this test bed's IMDS emulator.
    pub async fn broker(
        &self,
        integrations: &[IntegrationConfig],
        policy: RefreshPolicy,
    ) -> CredentialBroker {
        let imds = InstanceRole::with_endpoint(&self.imds_endpoint).expect("IMDS endpoint");
        CredentialBroker::new(integrations, &imds, None, Arc::new(SystemClock), policy).await
    }

    /// A sandbox manager on the real Docker engine, its broker on this test bed.
    pub async fn sandbox_manager(&self, config: &Config) -> Arc<SandboxManager> {
        let policy = RefreshPolicy::for_sandboxes(config.sandbox.max_lifetime);
        let broker = self.broker(&config.integrations, policy).await;
        let backend = Arc::new(DockerBackend::connect(DEFAULT_OUTPUT_CAP).expect("docker"));
        let live = LiveConfig::new(config.clone(), Arc::new(broker));
        Arc::new(SandboxManager::new(backend, Arc::new(live)))
    }

    /// The IMDS emulator's state and counters.
    pub async fn imds_state(&self) -> Value {
        self.http
            .get(format!("{}/_testbed/imds", self.endpoint))
            .send()
            .await
            .expect("control route answers")
            .json()
            .await
            .expect("control answer is JSON")
    }

    /// Switches the IMDS emulator (mode, delay_ms, tokens_required, ttl, rotation, counters).
    pub async fn configure_imds(&self, changes: Value) -> Value {
        let response = self
            .http
            .post(format!("{}/_testbed/imds", self.endpoint))
            .json(&changes)
            .send()
            .await
            .expect("control route answers");
        assert!(
            response.status().is_success(),
            "control request {changes} failed: {}",
            response.text().await.unwrap_or_default()
        );
        response.json().await.expect("control answer is JSON")
    }
}

impl TestBed {
    /// Creates or updates an IAM role in `account` with a trust policy and an inline policy.
    pub async fn put_role(&self, account: &str, name: &str, trust: Value, policy: Value) -> String {
        let response = self
            .http
            .post(format!("{}/_testbed/role", self.endpoint))
            .json(&serde_json::json!({"account": account, "name": name, "trust": trust, "policy": policy}))
            .send()
            .await
            .expect("control route answers");
        let status = response.status();
        let body: Value = response.json().await.expect("JSON answer");
        assert!(status.is_success(), "put_role {name}: {body}");
        body["arn"].as_str().expect("arn").to_owned()
    }

    /// Turns on moto's permission enforcement: keys, signatures, policies, trust policies.
    pub async fn enforce_permissions(&self) {
        let response = self
            .http
            .post(format!("{}/moto-api/reset-auth", self.endpoint))
            .body("0")
            .send()
            .await
            .expect("moto answers");
        assert!(response.status().is_success());
    }

    /// The AWS actions (IAM names, `logs:FilterLogEvents`) received since the last clear.
    pub async fn calls(&self) -> Vec<String> {
        let doc: Value = self
            .http
            .get(format!("{}/_testbed/calls", self.endpoint))
            .send()
            .await
            .expect("control route answers")
            .json()
            .await
            .expect("JSON answer");
        doc["calls"]
            .as_array()
            .expect("calls")
            .iter()
            .map(|c| c.as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// The STS role requests (AssumeRole, AssumeRoleWithWebIdentity) that reached the test
    /// bed, each with all its parameters, oldest first.
    pub async fn sts_requests(&self) -> Vec<Value> {
        let doc: Value = self
            .http
            .get(format!("{}/_testbed/sts", self.endpoint))
            .send()
            .await
            .expect("control route answers")
            .json()
            .await
            .expect("JSON answer");
        doc["requests"].as_array().expect("requests").clone()
    }

    /// Forgets the recorded STS role requests.
    pub async fn clear_sts_requests(&self) {
        self.http
            .delete(format!("{}/_testbed/sts", self.endpoint))
            .send()
            .await
            .expect("control route answers");
    }

    /// Forgets the recorded calls.
    pub async fn clear_calls(&self) {
        self.http
            .delete(format!("{}/_testbed/calls", self.endpoint))
            .send()
            .await
            .expect("control route answers");
    }

    /// The instance role's secret key and session token, read straight from IMDS: the
    /// canaries that must never show up in a log, an answer or a label.
    pub async fn instance_secrets(&self) -> (String, String) {
        let token = self
            .http
            .put(format!("{}/latest/api/token", self.imds_endpoint))
            .header("x-aws-ec2-metadata-token-ttl-seconds", "60")
            .send()
            .await
            .expect("IMDS answers")
            .text()
            .await
            .expect("a token");
        let doc: Value = self
            .http
            .get(format!(
                "{}/latest/meta-data/iam/security-credentials/autoheal-instance-role",
                self.imds_endpoint
            ))
            .header("x-aws-ec2-metadata-token", token)
            .send()
            .await
            .expect("IMDS answers")
            .json()
            .await
            .expect("credentials JSON");
        let field = |name: &str| doc[name].as_str().expect("credential field").to_owned();
        (field("SecretAccessKey"), field("Token"))
    }

    /// A config file's text with `integrations` (TOML) pointed at this test bed.
    pub fn config_toml(&self, integrations: &str) -> String {
        integrations.replace("{endpoint}", &self.endpoint)
    }
}

/// An IAM policy document allowing `actions` on every resource.
pub fn allow(actions: &[&str]) -> Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]
    })
}

/// A trust policy letting `principal` (an ARN) assume the role.
pub fn trust(principal: &str) -> Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}]
    })
}

impl TestBed {
    /// `autoheal` with the test bed's keys, endpoint and region in its environment and IMDS
    /// off: a tool run on the command line the way a sandbox runs it.
    pub fn tool_command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_autoheal"));
        command
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", "testbed")
            .env("AWS_SECRET_ACCESS_KEY", "testbed")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE");
        command
    }
}

/// A loopback port free at the time of asking (the OS picks it), for a daemon to listen on.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// The `p` quantile (0.0–1.0) of `sorted`, nearest rank: for the benchmarks' figures.
pub fn percentile(sorted: &[std::time::Duration], p: f64) -> std::time::Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

impl Drop for TestBed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` until it answers `Some`, or panics after `timeout` naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The daemon's `DOCKER-USER` rules for one blocked address, as `iptables -S` lists them.
pub fn metadata_rules(address: &str) -> Vec<String> {
    let out = Command::new("iptables")
        .args(["-S", "DOCKER-USER"])
        .output()
        .expect("iptables");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(address) && l.contains("autoheal"))
        .map(str::to_owned)
        .collect()
}

/// Deletes those rules (tests block test-range addresses and clean up after themselves).
pub fn remove_metadata_rules(address: &str) {
    for rule in metadata_rules(address) {
        // "-A DOCKER-USER …" → "-D DOCKER-USER …"; the comment is quoted in the listing.
        let spec = rule.replacen("-A ", "-D ", 1);
        let _ = Command::new("sh")
            .args(["-c", &format!("iptables {spec}")])
            .output();
    }
}

/// A test's Docker network in the benchmarking range, and the rules the daemon wrote for
/// it (DOCKER-USER, nat PREROUTING); all removed on drop.
pub struct BridgeNetwork {
    pub name: String,
    subnet: String,
}

impl BridgeNetwork {
    /// A network `autoheal-test-<what>-<pid>` on `subnet` (in 198.18.0.0/15).
    pub fn create(what: &str, subnet: &str) -> Self {
        assert!(subnet.starts_with("198.18.") || subnet.starts_with("198.19."));
        let name = format!("autoheal-test-{what}-{}", std::process::id() % 100_000);
        let _ = Command::new("docker")
            .args(["network", "rm", &name])
            .output();
        let out = Command::new("docker")
            .args([
                "network",
                "create",
                "--subnet",
                subnet,
                "--label",
                "autoheal.test=true",
                &name,
            ])
            .output()
            .expect("docker network create");
        assert!(out.status.success(), "{out:?}");
        Self {
            name,
            subnet: subnet.to_owned(),
        }
    }
}

impl Drop for BridgeNetwork {
    fn drop(&mut self) {
        // A test that failed may leave a sandbox on it (its manager never stopped it).
        let attached = Command::new("docker")
            .args(["ps", "-aq", "--filter", &format!("network={}", self.name)])
            .output()
            .expect("docker ps");
        for container in String::from_utf8_lossy(&attached.stdout).split_whitespace() {
            let _ = Command::new("docker")
                .args(["rm", "-f", container])
                .output();
        }
        remove_rules_for_subnet(&self.subnet);
        let _ = Command::new("docker")
            .args(["network", "rm", &self.name])
            .output();
    }
}

/// Deletes the daemon's rules (ours: they mention autoheal) for a test subnet: DOCKER-USER,
/// INPUT, nat PREROUTING.
pub fn remove_rules_for_subnet(subnet: &str) {
    for (table, chain) in [
        ("nat", "PREROUTING"),
        ("filter", "DOCKER-USER"),
        ("filter", "INPUT"),
    ] {
        let listing = Command::new("iptables")
            .args(["-t", table, "-S", chain])
            .output()
            .expect("iptables");
        for rule in String::from_utf8_lossy(&listing.stdout).lines() {
            if rule.contains(subnet) && rule.contains("autoheal") {
                let spec = rule.replacen("-A ", "-D ", 1);
                let _ = Command::new("sh")
                    .args(["-c", &format!("iptables -t {table} {spec}")])
                    .output();
            }
        }
    }
}

/// The demo's eight incident questions: (tool, arguments).
pub const INCIDENT_QUESTIONS: [(&str, &str); 8] = [
    (
        "logs_search",
        r#"{"log_groups": ["payment-service"], "pattern": "ERROR", "since": "1h"}"#,
    ),
    ("alarms_list", r#"{"state": "ALARM"}"#),
    (
        "ec2_instances",
        r#"{"tags": {"Environment": "production"}}"#,
    ),
    ("ecs_services", r#"{"cluster": "main"}"#),
    ("eks_nodegroups", "{}"),
    ("elasticache_clusters", "{}"),
    ("elasticache_replication_group", r#"{"id": "cell-a-redis"}"#),
    (
        "elasticache_metrics",
        r#"{"cluster": "cell-a-redis", "since": "1h"}"#,
    ),
];

/// A shell word in single quotes.
pub fn shell_quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// A process's resident memory (KiB), from /proc.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}
