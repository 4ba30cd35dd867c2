//! Egress from bridge sandboxes through the daemon's allowlisting proxy, against the real
//! Docker engine and the test bed: the first end-to-end test of a bridge sandbox against the
//! AWS APIs. The test bed stays on the host's loopback; only the proxy reaches it (the
//! sandbox calls it by its mapped name). The sandbox network lies in 198.18.0.0/15 and
//! nothing is sent beyond this machine.
//! The firewall half (the fence that makes the proxy the only way out) is tested from the
//! sandbox in `tests/metadata_block.rs`, next to its stand-in test host.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use autoheal::config::load_from_str;
use autoheal::egress::MAPPED_ENDPOINT_HOST;
use autoheal::sandbox::{SandboxRequest, SandboxState};
use support::{BridgeNetwork, INCIDENT_QUESTIONS, TestBed, shell_quoted};

const TEST_IMAGE: &str = "autoheal-sandbox-test:latest";
const ROLE: &str = "arn:aws:iam::210987654321:role/AutohealReadOnlyRole";
const SUBNET: &str = "198.18.122.0/24";

#[tokio::test]
async fn a_bridge_sandbox_answers_the_incident_questions_through_the_proxy_and_nothing_else() {
    let bed = TestBed::start_with(&["--seed", "--seed-account", "210987654321"]);
    let network = BridgeNetwork::create("egress", SUBNET);
    let config = load_from_str(&bed.config_toml(&format!(
        r#"
[sandbox]
image = "{TEST_IMAGE}"
network = "{network}"
memory = "256MiB"

[[integration]]
name = "scoped"
account_id = "210987654321"
auth = "instance_role"
role_arn = "{ROLE}"
endpoint_url = "{{endpoint}}"
"#,
        network = network.name
    )))
    .expect("valid test config");
    let manager = bed.sandbox_manager(&config).await;

    // Each question as a tool call, then a CONNECT to a name not on the allowlist.
    let mut script = String::from("set -u\n");
    for (tool, args) in INCIDENT_QUESTIONS {
        script.push_str(&format!(
            "if autoheal tool {tool} --args {} --output json >/tmp/answer 2>&1; then echo \"OK {tool} $(wc -c </tmp/answer)\"; else echo \"FAILED {tool}: $(cat /tmp/answer)\"; fi\n",
            shell_quoted(args)
        ));
    }
    script.push_str(
        r#"proxy=${HTTPS_PROXY#http://}
printf 'CONNECT attacker.example:443 HTTP/1.1\r\nHost: attacker.example:443\r\n\r\n' | nc -w 5 "${proxy%:*}" "${proxy##*:}"
echo "endpoint=$AWS_ENDPOINT_URL"
"#,
    );
    let done = manager
        .run_to_end(SandboxRequest {
            integration: "scoped".into(),
            command: vec!["sh".into(), "-c".into(), script],
            image: None,
            timeout: Some(Duration::from_secs(120)),
            env: BTreeMap::new(),
            capabilities: None,
            credentials: None,
        })
        .await
        .expect("the sandbox runs");
    assert_eq!(done.state, SandboxState::Exited, "{done:?}");
    let stdout = done.stdout.as_deref().unwrap_or_default();
    for (tool, _) in INCIDENT_QUESTIONS {
        assert!(
            stdout.contains(&format!("OK {tool} ")),
            "{tool} answered through the proxy:\n{stdout}\n{:?}",
            done.stderr
        );
    }
    assert!(
        stdout.contains(&format!("endpoint=http://{MAPPED_ENDPOINT_HOST}:")),
        "the emulator by its mapped name: {stdout}"
    );
    assert!(
        stdout.contains("HTTP/1.1 403")
            && stdout.contains("not on this sandbox's egress allowlist"),
        "a name off the allowlist is refused with the reason: {stdout}"
    );
    let refused = &done.egress_refused;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(
        (refused[0].host.as_str(), refused[0].port),
        ("attacker.example", 443)
    );
    let (allowed, refused_total) = manager.egress().totals();
    assert!(allowed >= 8, "{allowed} connections allowed");
    assert_eq!(refused_total, 1);
}
