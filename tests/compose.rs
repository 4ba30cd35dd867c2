//! compose/docker-compose.yml brought up for real against the test bed: the daemon's image
//! (`autoheal:latest`, built by `scripts/build-daemon-image`) serves, reports healthy,
//! creates its API token in the state volume, gets credentials through the IMDS emulator,
//! starts a sandbox on its bridge network with the IMDS rule in place (the image's iptables
//! and the NET_ADMIN capability at work), and leaves nothing behind on `down`.
//!
//! Runs whichever Compose exists: `docker compose` (v2) or `docker-compose` (v1).

mod support;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use support::{TestBed, wait_for};

/// Rules the daemon writes for this address are the test's to remove (the test range,
/// 198.18.0.0/15; never routed anywhere).
const BLOCKED: &str = "198.18.215.254";
/// The sandbox network the daemon creates: in the test range, never Docker's 172.16/12 pool.
const SUBNET: &str = "198.18.123.0/24";

fn compose_command() -> Vec<String> {
    let v2 = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if v2 {
        vec!["docker".into(), "compose".into()]
    } else {
        vec!["docker-compose".into()]
    }
}

/// One compose project with its own config and state directories and sandbox network.
struct Stack {
    project: String,
    dir: PathBuf,
    network: String,
    env: Vec<(String, String)>,
}

impl Stack {
    fn compose(&self, args: &[&str]) -> Output {
        let command = compose_command();
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/compose/docker-compose.yml");
        Command::new(&command[0])
            .args(&command[1..])
            .args(["-p", &self.project, "-f", file])
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("run compose")
    }

    fn container(&self) -> String {
        let out = self.compose(&["ps", "-q", "autoheal"]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn health(&self) -> String {
        let out = Command::new("docker")
            .args([
                "inspect",
                "-f",
                "{{.State.Health.Status}}",
                &self.container(),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.compose(&["down", "--timeout", "30"]);
        support::remove_metadata_rules(BLOCKED);
        support::remove_rules_for_subnet(SUBNET);
        let _ = Command::new("docker")
            .args(["network", "rm", &self.network])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn managed_containers() -> usize {
    let out = Command::new("docker")
        .args(["ps", "-aq", "--filter", "label=autoheal.managed=true"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[tokio::test]
async fn the_compose_stack_serves_and_starts_a_sandbox() {
    let bed = TestBed::start();
    let id = std::process::id();
    let dir = std::env::temp_dir().join(format!("autoheal-compose-{id}"));
    let (config_dir, state_dir) = (dir.join("config"), dir.join("state"));
    std::fs::create_dir_all(&config_dir).unwrap();
    let port = support::free_port();
    let network = format!("autoheal-test-compose-{id}");
    std::fs::write(
        config_dir.join("autoheal.toml"),
        bed.config_toml(&format!(
            r#"
[server]
listen = "127.0.0.1:{port}"

[sandbox]
network = "{network}"
subnet = "{SUBNET}"
blocked_addresses = ["{BLOCKED}"]

[[integration]]
name = "us"
account_id = "123456789012"
auth = "instance_role"
endpoint_url = "{{endpoint}}"
"#
        )),
    )
    .unwrap();
    let stack = Stack {
        project: format!("autoheal-test-{id}"),
        dir: dir.clone(),
        network: network.clone(),
        env: vec![
            (
                "AUTOHEAL_CONFIG_DIR".into(),
                config_dir.display().to_string(),
            ),
            ("AUTOHEAL_STATE_DIR".into(), state_dir.display().to_string()),
            ("AUTOHEAL_HEALTH_PORT".into(), port.to_string()),
            (
                "AWS_EC2_METADATA_SERVICE_ENDPOINT".into(),
                bed.imds_endpoint.clone(),
            ),
        ],
    };
    let up = stack.compose(&["up", "-d"]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );

    // Docker's own healthcheck (busybox nc against /healthz) turns healthy.
    wait_for("the stack to be healthy", Duration::from_secs(90), || {
        let health = stack.health();
        async move { (health == "healthy").then_some(()) }
    })
    .await;

    // The token was generated into the state volume, mode 0600.
    let token_file = state_dir.join("api-token");
    let token = std::fs::read_to_string(&token_file).expect("the daemon wrote its token");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let ready: Value = wait_for("the daemon to be ready", Duration::from_secs(60), || {
        let request = http.get(format!("{base}/readyz")).send();
        async move {
            let response = request.await.ok()?;
            (response.status() == 200).then_some(())?;
            response.json().await.ok()
        }
    })
    .await;
    assert_eq!(ready["ready"], true);

    let answer: Value = http
        .post(format!("{base}/v1/sandboxes?wait=true"))
        .bearer_auth(token.trim())
        .json(&serde_json::json!({"integration": "us", "command": ["autoheal", "--version"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["exit_code"], 0, "{answer}");
    assert!(
        answer["stdout"].as_str().unwrap().starts_with("autoheal "),
        "{answer}"
    );

    // The daemon in the container wrote the IMDS rule for its bridge network.
    assert!(
        !support::metadata_rules(BLOCKED).is_empty(),
        "no DOCKER-USER rule for {BLOCKED}"
    );

    let down = stack.compose(&["down", "--timeout", "30"]);
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert_eq!(managed_containers(), 0, "nothing left behind");
}
