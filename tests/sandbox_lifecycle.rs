//! Sandboxes left behind and sandboxes at shutdown, against the real Docker engine.
//!
//! Reaping removes every `autoheal.managed=true` container on the host, as the daemon does
//! at start-up, so these tests live in their own test binary: cargo runs test binaries one
//! after another, so no other test's sandbox is running meanwhile; inside this binary,
//! `SERIAL` keeps its tests apart.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use autoheal::config::{Secret, load_from_str};
use autoheal::sandbox::{
    ContainerSpec, DEFAULT_OUTPUT_CAP, DockerBackend, Limits, SandboxBackend, SandboxRequest,
    SandboxState,
};
use bytesize::ByteSize;
use support::TestBed;

/// Held by each test here for its whole run.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn sleeper(id: &str) -> ContainerSpec {
    ContainerSpec {
        sandbox_id: id.into(),
        integration: "test".into(),
        image: "autoheal-sandbox-test:latest".into(),
        command: vec!["sleep".into(), "300".into()],
        env: BTreeMap::from([("CANARY".into(), Secret::new("not-a-label"))]),
        files: Vec::new(),
        fenced: false,
        interactive: false,
        limits: Limits {
            memory: ByteSize::mib(64),
            cpus: 0.2,
            pids: 16,
            network: "none".into(),
        },
    }
}

#[tokio::test]
async fn containers_left_behind_are_found_and_removed() {
    let _serial = SERIAL.lock().await;
    let backend = DockerBackend::connect(DEFAULT_OUTPUT_CAP).unwrap();
    // A daemon that died with two sandboxes running (kill -9 leaves exactly this).
    for id in ["orphan00000a", "orphan00000b"] {
        let started = backend.start(&sleeper(id)).await.expect("start a sandbox");
        started.output.abort();
    }
    let managed = backend.managed_containers().await.unwrap();
    assert!(managed.len() >= 2, "{managed:?}");

    // A new daemon's manager: it owns none of them, so it removes them all.
    let bed = TestBed::start();
    let config = load_from_str(&bed.config_toml(
        "[[integration]]\nname = \"us\"\naccount_id = \"123456789012\"\nauth = \"instance_role\"\nendpoint_url = \"{endpoint}\"\n",
    ))
    .unwrap();
    let reaped = bed
        .sandbox_manager(&config)
        .await
        .reap_orphans()
        .await
        .unwrap();
    assert!(reaped >= 2);
    assert!(backend.managed_containers().await.unwrap().is_empty());
}

#[tokio::test]
async fn shutdown_lets_sandboxes_finish_then_stops_the_rest() {
    let _serial = SERIAL.lock().await;
    let bed = TestBed::start();
    let config = load_from_str(&bed.config_toml(
        r#"
[sandbox]
image = "autoheal-sandbox-test:latest"
network = "none"

[[integration]]
name = "us"
account_id = "123456789012"
auth = "instance_role"
endpoint_url = "{endpoint}"
"#,
    ))
    .unwrap();
    let manager = bed.sandbox_manager(&config).await;
    let backend = manager.backend().clone();
    let ask = |command: &[&str]| SandboxRequest {
        integration: "us".into(),
        command: command.iter().map(|s| s.to_string()).collect(),
        image: None,
        timeout: Some(Duration::from_secs(120)),
        env: BTreeMap::new(),
        capabilities: None,
        credentials: None,
    };
    let quick = manager
        .create(ask(&["sh", "-c", "sleep 1; echo done"]))
        .await
        .unwrap();
    let slow = manager.create(ask(&["sleep", "300"])).await.unwrap();

    manager.shutdown(Duration::from_secs(5)).await;
    assert_eq!(manager.running(), 0);
    let quick = manager.get(&quick.id).unwrap();
    assert_eq!(
        quick.state,
        SandboxState::Exited,
        "finished within the grace: {quick:?}"
    );
    assert_eq!(quick.stdout.as_deref(), Some("done\n"));
    assert_eq!(manager.get(&slow.id).unwrap().state, SandboxState::Stopped);
    assert!(
        backend.managed_containers().await.unwrap().is_empty(),
        "nothing left running"
    );

    let refused = manager.create(ask(&["true"])).await.unwrap_err();
    assert_eq!(refused.http_status(), 503);
}
