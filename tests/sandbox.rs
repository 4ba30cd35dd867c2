//! The sandbox runtime against the real Docker engine and the test bed: credentials injected
//! and valid for the sandbox's life, the lifetime rule, hardening, deadline, output cap.
//!
//! Sandboxes here use host networking so the containers reach the test bed on loopback.
//! They run `autoheal-sandbox-test:latest` (the sandbox image plus busybox, built by
//! `scripts/build-sandbox-image --with-busybox --tag autoheal-sandbox-test:latest`).

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use autoheal::config::{Config, load_from_str};
use autoheal::sandbox::{
    DEFAULT_OUTPUT_CAP, SandboxError, SandboxManager, SandboxRequest, SandboxState,
};
use serde_json::{Value, json};
use support::TestBed;

const TEST_IMAGE: &str = "autoheal-sandbox-test:latest";

fn config(bed: &TestBed, max_lifetime: &str) -> Config {
    load_from_str(&bed.config_toml(&format!(
        r#"
[sandbox]
image = "{TEST_IMAGE}"
network = "host"
max_lifetime = "{max_lifetime}"
memory = "256MiB"
cpus = 0.5
pids_limit = 64

[[integration]]
name = "us"
account_id = "123456789012"
region = "us-east-1"
auth = "instance_role"
endpoint_url = "{{endpoint}}"

[[integration]]
name = "eu-cross"
account_id = "210987654321"
region = "eu-west-1"
auth = "instance_role"
role_arn = "arn:aws:iam::210987654321:role/AutohealCrossAccountRole"
endpoint_url = "{{endpoint}}"
"#
    )))
    .expect("valid test config")
}

async fn manager(bed: &TestBed, config: &Config) -> Arc<SandboxManager> {
    bed.sandbox_manager(config).await
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

fn docker_inspect(name: &str) -> Value {
    let out = std::process::Command::new("docker")
        .args(["inspect", name])
        .output()
        .expect("docker inspect");
    serde_json::from_slice::<Value>(&out.stdout).unwrap_or(Value::Null)[0].clone()
}

#[tokio::test]
async fn each_sandbox_gets_its_integrations_identity_and_region() {
    let bed = TestBed::start_with(&[
        "--seed",
        "--seed-account",
        "210987654321",
        "--seed-region",
        "eu-west-1",
    ]);
    let config = config(&bed, "5m");
    let manager = manager(&bed, &config).await;
    for (integration, account, region) in [
        ("us", "123456789012", "us-east-1"),
        ("eu-cross", "210987654321", "eu-west-1"),
    ] {
        let started = manager
            .create(request(
                integration,
                &["autoheal", "check", "--output", "json"],
            ))
            .await
            .expect("sandbox starts");
        let done = manager.wait(&started.id).await.unwrap();
        assert_eq!(done.state, SandboxState::Exited, "{done:?}");
        let report: Value = serde_json::from_str(done.stdout.as_deref().unwrap())
            .unwrap_or_else(|e| panic!("{e}: {done:?}"));
        let inside = &report["integrations"][0];
        assert_eq!(inside["identity"]["account"], account, "{inside}");
        assert_eq!(inside["region"], region, "{inside}");
        assert_eq!(inside["capabilities"][0]["status"], "allowed", "{inside}");
        assert!(done.credentials_expire_at > done.deadline, "{done:?}");

        let started = manager
            .create(request(
                integration,
                &["autoheal", "tool", "whoami", "--output", "json"],
            ))
            .await
            .expect("sandbox starts");
        let done = manager.wait(&started.id).await.unwrap();
        let whoami: Value = serde_json::from_str(done.stdout.as_deref().unwrap())
            .unwrap_or_else(|e| panic!("{e}: {done:?}"));
        assert_eq!(whoami["account"], account, "{whoami}");
        assert_eq!(whoami["region"], region, "{whoami}");
    }
}

#[tokio::test]
async fn the_environment_is_exactly_the_contract_and_labels_hold_no_secret() {
    let bed = TestBed::start();
    let config = config(&bed, "5m");
    let manager = manager(&bed, &config).await;
    let mut ask = request("eu-cross", &["sh", "-c", "env; sleep 30"]);
    ask.env.insert("INVESTIGATION".into(), "inc-42".into());
    let started = manager.create(ask).await.unwrap();
    let inspected = docker_inspect(&format!("autoheal-sandbox-{}", started.id));

    let host = &inspected["HostConfig"];
    assert_eq!(host["ReadonlyRootfs"], true);
    assert_eq!(host["CapDrop"], json!(["ALL"]));
    assert_eq!(host["SecurityOpt"], json!(["no-new-privileges:true"]));
    assert_eq!(host["Init"], true);
    assert_eq!(host["PidsLimit"], 64);
    assert_eq!(host["Memory"], 256 * 1024 * 1024);
    assert_eq!(host["NanoCpus"], 500_000_000);
    assert_eq!(host["Privileged"], false);
    assert!(
        host["Binds"].is_null(),
        "no mounts, no Docker socket: {}",
        host["Binds"]
    );
    assert_eq!(inspected["Config"]["User"], "65532:65532");
    let labels = &inspected["Config"]["Labels"];
    assert_eq!(labels["autoheal.managed"], "true");
    assert_eq!(labels["autoheal.sandbox"], started.id.as_str());
    assert_eq!(labels["autoheal.integration"], "eu-cross");

    let stopped = manager.stop(&started.id).await.unwrap();
    assert_eq!(stopped.state, SandboxState::Stopped);
    let env: BTreeMap<&str, &str> = stopped
        .stdout
        .as_deref()
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .collect();
    for key in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_CREDENTIAL_EXPIRATION",
    ] {
        assert!(
            !env.get(key).unwrap_or(&"").is_empty(),
            "{key} missing: {env:?}"
        );
    }
    assert_eq!(env["AWS_REGION"], "eu-west-1");
    assert_eq!(env["AWS_DEFAULT_REGION"], "eu-west-1");
    assert_eq!(env["AUTOHEAL_INTEGRATION"], "eu-cross");
    assert_eq!(env["AUTOHEAL_ACCOUNT_ID"], "210987654321");
    assert_eq!(env["AWS_ENDPOINT_URL"], bed.endpoint);
    assert_eq!(env["INVESTIGATION"], "inc-42");

    let secret = env["AWS_SECRET_ACCESS_KEY"];
    let token = env["AWS_SESSION_TOKEN"];
    let answer = serde_json::to_string(&stopped).unwrap();
    for text in [labels.to_string(), serde_json::to_string(&started).unwrap()] {
        assert!(!text.contains(secret) && !text.contains(token), "{text}");
    }
    // The finished answer carries the container's own output, which printed them; the
    // started answer and the labels never do.
    assert!(answer.contains("AWS_REGION=eu-west-1"));
    // Finished containers are removed.
    assert!(docker_inspect(&format!("autoheal-sandbox-{}", started.id)).is_null());
}

#[tokio::test]
async fn the_deadline_is_enforced() {
    let bed = TestBed::start();
    let manager = manager(&bed, &config(&bed, "5m")).await;
    let mut ask = request("us", &["sleep", "300"]);
    ask.timeout = Some(Duration::from_secs(2));
    let started = manager.create(ask).await.unwrap();
    let done = manager.wait(&started.id).await.unwrap();
    assert_eq!(done.state, SandboxState::TimedOut, "{done:?}");
    assert!(done.timed_out);
    assert!(done.duration_ms.unwrap() < 60_000, "{done:?}");
}

#[tokio::test]
async fn output_is_capped_and_says_so_and_exit_codes_are_reported() {
    let bed = TestBed::start();
    let manager = manager(&bed, &config(&bed, "5m")).await;
    let started = manager
        .create(request(
            "us",
            &[
                "sh",
                "-c",
                "yes 0123456789 | head -c 3000000; echo oops >&2; exit 3",
            ],
        ))
        .await
        .unwrap();
    let done = manager.wait(&started.id).await.unwrap();
    assert_eq!(done.exit_code, Some(3));
    assert!(
        done.stdout_truncated,
        "stdout {} bytes, stderr {:?}",
        done.stdout.as_ref().unwrap().len(),
        done.stderr
    );
    assert_eq!(done.stdout.as_ref().unwrap().len(), DEFAULT_OUTPUT_CAP);
    assert!(!done.stderr_truncated);
    assert_eq!(done.stderr.as_deref(), Some("oops\n"));
}

#[tokio::test]
async fn a_sandbox_never_outlives_its_credentials() {
    let bed = TestBed::start();
    // Instance credentials that expire in 200 s and are not rotated before then.
    bed.configure_imds(json!({"credential_ttl_seconds": 200, "rotate_before_seconds": 0}))
        .await;
    let manager = manager(&bed, &config(&bed, "15m")).await;
    let mut ask = request("us", &["true"]);
    ask.timeout = Some(Duration::from_secs(600));
    let started = manager
        .create(ask)
        .await
        .expect("starts with a shortened deadline");
    let note = started.deadline_note.clone().expect("the answer says why");
    assert!(note.contains("shortened"), "{note}");
    assert!(
        started.credentials_expire_at > started.deadline,
        "{started:?}"
    );
    let deadline = humantime::parse_rfc3339(&started.deadline).unwrap();
    let left = deadline
        .duration_since(std::time::SystemTime::now())
        .unwrap();
    assert!(left < Duration::from_secs(200), "{left:?}");
    manager.wait(&started.id).await.unwrap();

    // With less than a useful life left, no sandbox starts at all.
    bed.configure_imds(json!({"credential_ttl_seconds": 40, "rotate_now": true}))
        .await;
    let short = manager_for_fresh_broker(&bed).await;
    let err = short.create(request("us", &["true"])).await.unwrap_err();
    assert!(matches!(err, SandboxError::Credentials(_)), "{err:?}");
    assert_eq!(err.http_status(), 503);
}

async fn manager_for_fresh_broker(bed: &TestBed) -> Arc<SandboxManager> {
    manager(bed, &config(bed, "15m")).await
}

#[tokio::test]
async fn bad_requests_name_what_is_wrong() {
    let bed = TestBed::start();
    let manager = manager(&bed, &config(&bed, "5m")).await;
    let cases: Vec<(SandboxRequest, &str, u16)> = vec![
        (
            request("nope", &["true"]),
            "no integration named \"nope\"",
            404,
        ),
        (request("us", &[]), "command", 400),
        (
            SandboxRequest {
                timeout: Some(Duration::from_secs(3600)),
                ..request("us", &["true"])
            },
            "longer than sandbox.max_lifetime",
            400,
        ),
        (
            SandboxRequest {
                env: BTreeMap::from([("AWS_SECRET_ACCESS_KEY".into(), "x".into())]),
                ..request("us", &["true"])
            },
            "reserved",
            400,
        ),
        (
            SandboxRequest {
                image: Some("autoheal-no-such-image:latest".into()),
                ..request("us", &["true"])
            },
            "is not allowed",
            400,
        ),
    ];
    for (ask, expected, status) in cases {
        let err = manager.create(ask).await.unwrap_err();
        assert!(err.to_string().contains(expected), "{err}");
        assert_eq!(err.http_status(), status, "{err}");
    }
}

/// An image with a `VOLUME`, built from the test image for one test and removed after.
struct VolumeImage(&'static str);

impl VolumeImage {
    fn build() -> Self {
        let name = "autoheal-volume-test:latest";
        let mut child = std::process::Command::new("docker")
            .args(["build", "-q", "-t", name, "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("docker build");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("FROM {TEST_IMAGE}\nVOLUME /data\n").as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "build the VOLUME image");
        Self(name)
    }
}

impl Drop for VolumeImage {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rmi", "-f", self.0])
            .output();
    }
}

#[tokio::test]
async fn only_allowed_images_without_volumes_run() {
    let bed = TestBed::start();
    let volume_image = VolumeImage::build();
    let mut config = config(&bed, "5m");
    config.sandbox.images = vec![
        volume_image.0.to_owned(),
        "autoheal-no-such-image:latest".to_owned(),
    ];
    let manager = manager(&bed, &config).await;
    let cases = [
        (volume_image.0, "image_declares_volumes", 400, "/data"),
        (
            "autoheal-no-such-image:latest",
            "image_missing",
            503,
            "scripts/build-sandbox-image",
        ),
        (
            "autoheal-sandbox:latest",
            "image_not_allowed",
            400,
            TEST_IMAGE,
        ),
    ];
    for (image, code, status, says) in cases {
        let err = manager
            .create(SandboxRequest {
                image: Some(image.into()),
                ..request("us", &["true"])
            })
            .await
            .unwrap_err();
        assert_eq!(
            (err.code(), err.http_status()),
            (code, status),
            "{image}: {err}"
        );
        assert!(err.to_string().contains(says), "{err}");
    }
    let allowed = manager
        .create(request("us", &["echo", "ok"]))
        .await
        .expect("the configured image runs");
    let ended = manager.wait(&allowed.id).await.unwrap();
    assert_eq!(ended.stdout.as_deref(), Some("ok\n"));
}
