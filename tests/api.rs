//! `autoheal serve` as a process: its HTTP API end to end against the test bed and the real
//! Docker engine, then a graceful SIGTERM.
//!
//! The daemon removes every sandbox container left on the host when it starts, so the tests
//! of this file hold `SERIAL` (and cargo runs test binaries one after another).

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use support::daemon::{CANARY_TOKEN, Daemon, managed_containers, serving};
use support::{TestBed, wait_for};

/// A sandbox that runs until it is stopped.
const SLEEPER: &str = r#"{"integration": "us", "command": ["sleep", "120"]}"#;

/// Held by each test here for its whole run: one daemon at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn the_daemon_serves_its_api_end_to_end() {
    let _serial = SERIAL.lock().await;
    let bed = TestBed::start_seeded();
    let dir = std::env::temp_dir().join(format!("autoheal-api-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let daemon = Daemon::start(&bed, &dir);
    let mut daemon = daemon;
    let token = Some(CANARY_TOKEN);

    wait_for(
        "the daemon to serve /healthz",
        Duration::from_secs(60),
        || async {
            let r = daemon
                .http
                .get(format!("{}/healthz", daemon.base))
                .send()
                .await
                .ok()?;
            (r.status() == 200).then_some(())
        },
    )
    .await;
    let (status, ready) = daemon.call("GET", "/readyz", None, None).await;
    assert_eq!(status, 200, "{ready}");

    // Authentication.
    let (status, body) = daemon.call("GET", "/v1/integrations", None, None).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, _) = daemon
        .call(
            "GET",
            "/v1/integrations",
            Some("wrong-token-0123456789"),
            None,
        )
        .await;
    assert_eq!(status, 401);

    // Bad input: a clear JSON error, and the daemon goes on.
    for (body, expected_status, expected_text) in [
        ("{not json", 400, "invalid JSON"),
        (
            r#"{"integration": "us", "command": ["true"], "colour": "red"}"#,
            400,
            "unknown field",
        ),
        (
            r#"{"integration": "us", "command": ["true"], "timeout": "soon"}"#,
            400,
            "timeout",
        ),
        (
            r#"{"integration": "nope", "command": ["true"]}"#,
            404,
            "no integration named",
        ),
    ] {
        let (status, answer) = daemon
            .call("POST", "/v1/sandboxes", token, Some(body))
            .await;
        assert_eq!(status, expected_status, "{body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected_text), "{body}: {answer}");
    }
    let (status, answer) = daemon.call("GET", "/v1/sandboxes/nope", token, None).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let big = format!(
        r#"{{"integration": "us", "command": ["{}"]}}"#,
        "x".repeat(100_000)
    );
    let (status, _) = daemon
        .call("POST", "/v1/sandboxes", token, Some(&big))
        .await;
    assert_eq!(status, 413);

    // Integrations and Test Connection.
    let (status, list) = daemon.call("GET", "/v1/integrations", token, None).await;
    assert_eq!(status, 200);
    assert_eq!(list["integrations"][0]["name"], "us");
    assert!(
        list["integrations"][0]["credentials"]["expires_at"].is_string(),
        "{list}"
    );
    let (status, report) = daemon
        .call("POST", "/v1/integrations/us/test", token, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(report["identity"]["account"], "123456789012", "{report}");

    // A sandbox that uses its injected credentials, waited for.
    let (status, done) = daemon
        .call(
            "POST",
            "/v1/sandboxes?wait=true",
            token,
            Some(&json!({"integration": "us", "command": ["autoheal", "tool", "whoami", "--output", "json"], "timeout": "60s"}).to_string()),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["state"], "exited", "{done}");
    let inside: Value = serde_json::from_str(done["stdout"].as_str().unwrap()).unwrap();
    assert_eq!(inside["account"], "123456789012", "{inside}");
    assert!(
        inside["arn"].as_str().unwrap().contains(":assumed-role/"),
        "the instance role's session, not static keys: {inside}"
    );
    for key in [
        "id",
        "exit_code",
        "stdout",
        "stderr",
        "duration_ms",
        "timed_out",
        "deadline",
    ] {
        assert!(!done[key].is_null(), "{key} missing: {done}");
    }

    // One left running, listed, then stopped through the API.
    let (status, running) = daemon
        .call("POST", "/v1/sandboxes", token, Some(SLEEPER))
        .await;
    assert_eq!(status, 201, "{running}");
    let id = running["id"].as_str().unwrap().to_owned();
    let (_, listed) = daemon.call("GET", "/v1/sandboxes", token, None).await;
    assert!(
        listed["sandboxes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == id.as_str())
    );
    let (status, stopped) = daemon
        .call("DELETE", &format!("/v1/sandboxes/{id}"), token, None)
        .await;
    assert_eq!(
        (status, stopped["state"].as_str()),
        (200, Some("stopped")),
        "{stopped}"
    );

    // The command line goes through the same API and passes the exit code on.
    let cli = Command::new(env!("CARGO_BIN_EXE_autoheal"))
        .args(["sandbox", "run", "--config"])
        .arg(dir.join("autoheal.toml"))
        .args([
            "--integration",
            "us",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 7",
        ])
        .env("AUTOHEAL_API_TOKEN", CANARY_TOKEN)
        .output()
        .unwrap();
    assert_eq!(cli.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&cli.stdout), "out\n");
    assert!(String::from_utf8_lossy(&cli.stderr).contains("err"));

    // Metrics.
    let metrics = daemon
        .http
        .get(format!("{}/metrics", daemon.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("autoheal_credential_refreshes_total{integration=\"us\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("autoheal_sandboxes_running"), "{metrics}");

    // A sandbox still running at SIGTERM is stopped within the grace period; nothing is left.
    let (status, _) = daemon
        .call("POST", "/v1/sandboxes", token, Some(SLEEPER))
        .await;
    assert_eq!(status, 201);
    daemon.signal("TERM");
    let exited = daemon.exited().await;
    assert!(exited.success(), "{exited:?}");
    assert_eq!(managed_containers(), 0, "no sandbox left behind");

    // Secrets never reach the log: not the API token, not the instance role's secret.
    let log = daemon.log_after_exit();
    assert!(log.contains("serving"), "{log}");
    assert!(
        !log.contains(CANARY_TOKEN),
        "the API token leaked into the log"
    );
    let (secret, session_token) = bed.instance_secrets().await;
    assert!(
        !log.contains(&secret),
        "the instance role's secret key leaked into the log"
    );
    assert!(
        !log.contains(&session_token),
        "the session token leaked into the log"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_daemon_speaks_systemds_notify_protocol() {
    let _serial = SERIAL.lock().await;
    let bed = TestBed::start();
    let dir = std::env::temp_dir().join(format!("autoheal-notify-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let socket_path = dir.join("notify.sock");
    let socket = tokio::net::UnixDatagram::bind(&socket_path).unwrap();
    let mut daemon = Daemon::start_with_env(
        &bed,
        &dir,
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    let mut buffer = [0u8; 256];
    let next = || {
        let socket = &socket;
        async move {
            let n = tokio::time::timeout(Duration::from_secs(60), socket.recv(&mut buffer))
                .await
                .expect("a notification in time")
                .unwrap();
            String::from_utf8_lossy(&buffer[..n]).trim().to_owned()
        }
    };
    assert_eq!(next().await, "READY=1");
    // READY comes after the listener is bound: the API answers now.
    let (status, _) = daemon.call("GET", "/healthz", None, None).await;
    assert_eq!(status, 200);
    for _ in 0..2 {
        assert_eq!(next().await, "WATCHDOG=1");
    }
    daemon.signal("TERM");
    let mut seen = Vec::new();
    loop {
        let message = next().await;
        if message == "STOPPING=1" {
            break;
        }
        assert_eq!(message, "WATCHDOG=1", "after {seen:?}");
        seen.push(message);
    }
    assert!(daemon.exited().await.success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Waits until the daemon answers /healthz.
fn integration_names(list: &Value) -> Vec<String> {
    list["integrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn sighup_reloads_integrations_without_dropping_running_sandboxes() {
    let _serial = SERIAL.lock().await;
    let bed = TestBed::start_with(&["--seed", "--seed-region", "eu-west-1"]);
    let dir = std::env::temp_dir().join(format!("autoheal-reload-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let mut daemon = Daemon::start(&bed, &dir);
    let token = Some(CANARY_TOKEN);
    serving(&daemon).await;
    let (status, running) = daemon
        .call("POST", "/v1/sandboxes", token, Some(SLEEPER))
        .await;
    assert_eq!(status, 201, "{running}");
    let sleeper = running["id"].as_str().unwrap().to_owned();

    // "us" goes, "eu" comes: the running sandbox of "us" is not touched.
    daemon.rewrite_config(
        &bed,
        r#"
[[integration]]
name = "eu"
account_id = "123456789012"
region = "eu-west-1"
auth = "instance_role"
endpoint_url = "{endpoint}"
"#,
    );
    daemon.signal("HUP");
    wait_for(
        "the reload to take effect",
        Duration::from_secs(30),
        || async {
            let (_, list) = daemon.call("GET", "/v1/integrations", token, None).await;
            (integration_names(&list) == ["eu"]).then_some(())
        },
    )
    .await;
    let (_, still) = daemon
        .call("GET", &format!("/v1/sandboxes/{sleeper}"), token, None)
        .await;
    assert_eq!(still["state"], "running", "{still}");
    let (status, gone) = daemon
        .call("POST", "/v1/sandboxes?wait=true", token, Some(SLEEPER))
        .await;
    assert_eq!(status, 404, "{gone}");
    let (status, done) = daemon
        .call(
            "POST",
            "/v1/sandboxes?wait=true",
            token,
            Some(r#"{"integration": "eu", "command": ["autoheal", "check", "--output", "json"]}"#),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    let report: Value = serde_json::from_str(done["stdout"].as_str().unwrap()).unwrap();
    assert_eq!(report["integrations"][0]["region"], "eu-west-1", "{report}");

    // A broken file is rejected whole, every problem logged, the config in force kept.
    daemon.rewrite_config(
        &bed,
        r#"
[[integration]]
name = "eu"
region = "mars-north-1"
auth = "sorcery"
"#,
    );
    daemon.signal("HUP");
    wait_for("the rejection in the log", Duration::from_secs(30), || {
        let log = daemon.log();
        async move { log.contains("reload rejected").then_some(()) }
    })
    .await;
    let log = daemon.log();
    assert!(log.contains("integration[0].region"), "{log}");
    assert!(log.contains("integration[0].auth"), "{log}");
    let (_, list) = daemon.call("GET", "/v1/integrations", token, None).await;
    assert_eq!(integration_names(&list), ["eu"]);
    let (_, still) = daemon
        .call("GET", &format!("/v1/sandboxes/{sleeper}"), token, None)
        .await;
    assert_eq!(still["state"], "running", "{still}");

    daemon.signal("TERM");
    assert!(daemon.exited().await.success());
    assert_eq!(managed_containers(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_restart_after_kill_9_removes_the_sandboxes_left_behind_and_audits_them() {
    let _serial = SERIAL.lock().await;
    let bed = TestBed::start();
    let dir = std::env::temp_dir().join(format!("autoheal-kill9-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let mut daemon = Daemon::start(&bed, &dir);
    let token = Some(CANARY_TOKEN);
    serving(&daemon).await;
    let (status, finished) = daemon
        .call(
            "POST",
            "/v1/sandboxes?wait=true",
            token,
            Some(r#"{"integration": "us", "command": ["sh", "-c", "exit 7"]}"#),
        )
        .await;
    assert_eq!(status, 200, "{finished}");
    let mut sleepers = Vec::new();
    for _ in 0..2 {
        let (status, body) = daemon
            .call("POST", "/v1/sandboxes", token, Some(SLEEPER))
            .await;
        assert_eq!(status, 201, "{body}");
        sleepers.push(body["id"].as_str().unwrap().to_owned());
    }
    daemon.signal("KILL");
    daemon.exited().await;
    assert_eq!(
        managed_containers(),
        2,
        "kill -9 leaves the sandboxes running"
    );

    let mut restarted = Daemon::start(&bed, &dir);
    serving(&restarted).await;
    assert_eq!(managed_containers(), 0, "the restarted daemon removed them");
    let log = restarted.log();
    assert!(log.contains("removed sandboxes left behind"), "{log}");

    // The audit log survived: each sandbox's start, and an end that says how it ended —
    // the interrupted ones as stopped by the restart.
    let lines: Vec<Value> = std::fs::read_to_string(dir.join("state/audit/sandboxes.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of = |id: &str, event: &str| {
        lines
            .iter()
            .find(|l| l["id"] == id && l["event"] == event)
            .unwrap_or_else(|| panic!("no {event} line for {id}: {lines:?}"))
            .clone()
    };
    let id = finished["id"].as_str().unwrap();
    assert_eq!(of(id, "start")["command"], json!(["sh", "-c", "exit 7"]));
    assert_eq!(of(id, "end")["state"], "exited");
    assert_eq!(of(id, "end")["exit_code"], 7);
    for sleeper in &sleepers {
        assert_eq!(of(sleeper, "start")["integration"], "us");
        let end = of(sleeper, "end");
        assert_eq!(end["state"], "stopped", "{end}");
        assert!(
            end["error"].as_str().unwrap().contains("daemon stopped"),
            "{end}"
        );
    }
    // The sandboxes ran on the instance role's own credentials: none of them is written.
    let (secret, session_token) = bed.instance_secrets().await;
    let text = std::fs::read_to_string(dir.join("state/audit/sandboxes.jsonl")).unwrap();
    assert!(
        !text.contains(&secret) && !text.contains(&session_token),
        "{text}"
    );
    // And the API lists them again after the restart, without output.
    let (_, listed) = restarted.call("GET", "/v1/sandboxes", token, None).await;
    let listed = listed["sandboxes"].as_array().unwrap();
    let shown = |id: &str| listed.iter().find(|s| s["id"] == id).cloned();
    assert_eq!(shown(id).expect("the finished sandbox")["exit_code"], 7);
    for sleeper in &sleepers {
        assert_eq!(
            shown(sleeper).expect("an interrupted sandbox")["state"],
            "stopped"
        );
    }
    restarted.signal("TERM");
    assert!(restarted.exited().await.success());
    let _ = std::fs::remove_dir_all(&dir);
}
