//! Investigation sessions, against the real Docker engine and the seeded test bed: the
//! daemon's `/v1/mcp/{integration}` (MCP over Streamable HTTP, one sandbox per session),
//! `exec` in a running sandbox, and the stdio bridge (`autoheal mcp --daemon`).
//!
//! Two independent clients speak to the endpoint: the official MCP Python SDK
//! (`tests/mcp_session_client.py`, PyPI `mcp`) and rmcp's own client. Raw HTTP covers what
//! SDKs hide: the 401, the 404 of an ended session, the JSON-RPC error of an unknown
//! integration. Sandboxes use host networking to reach the test bed on loopback and run
//! `autoheal-sandbox-test:latest` (the sandbox image plus busybox).

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use support::daemon::{CANARY_TOKEN, Daemon, managed_containers, serving};
use support::{TestBed, testbed_python, wait_for};

/// A second integration beside the daemon's `us`: another account (through a role the
/// instance role assumes) and another region.
const EU_INTEGRATION: &str = r#"
[[integration]]
name = "eu"
account_id = "210987654321"
region = "eu-west-1"
auth = "instance_role"
role_arn = "arn:aws:iam::210987654321:role/AutohealReadOnlyRole"
endpoint_url = "{endpoint}"
"#;

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("autoheal-mcp-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The tests here count the host's sandbox containers, so they run one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A daemon on the test bed with both integrations and these `[sandbox]` lines.
async fn daemon(bed: &TestBed, name: &str, sandbox: &str) -> Daemon {
    let dir = temp_dir(name);
    let integrations = format!("{}{EU_INTEGRATION}", support::daemon::US_INTEGRATION);
    let daemon = Daemon::start_with_integrations(bed, &dir, &[], "", sandbox, &integrations);
    serving(&daemon).await;
    daemon
}

/// The sandboxes of kind `mcp_session`, as `GET /v1/sandboxes` lists them.
async fn session_sandboxes(daemon: &Daemon) -> Vec<Value> {
    let (status, list) = daemon
        .call("GET", "/v1/sandboxes", Some(CANARY_TOKEN), None)
        .await;
    assert_eq!(status, 200, "{list}");
    list["sandboxes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "mcp_session")
        .cloned()
        .collect()
}

/// Waits until no session sandbox runs and no container of ours is left.
async fn all_sessions_gone(daemon: &Daemon) -> Vec<Value> {
    wait_for(
        "session sandboxes to end",
        Duration::from_secs(30),
        || async {
            let sandboxes = session_sandboxes(daemon).await;
            let running = sandboxes.iter().any(|s| s["state"] == "running");
            (!running && managed_containers() == 0).then_some(sandboxes)
        },
    )
    .await
}

/// One JSON-RPC message POSTed to the endpoint, as raw HTTP: (status, session id, the
/// messages of the answer — SSE `data:` lines or a JSON body).
/// `tools/list` (JSON-RPC id `id`) in session `session` at `path`: the status and messages.
async fn list_tools(daemon: &Daemon, path: &str, session: &str, id: u64) -> (u16, Vec<Value>) {
    let message = json!({"jsonrpc": "2.0", "id": id, "method": "tools/list"});
    let (status, _, messages) =
        post(daemon, path, Some(CANARY_TOKEN), Some(session), message).await;
    (status, messages)
}

async fn post(
    daemon: &Daemon,
    path: &str,
    token: Option<&str>,
    session: Option<&str>,
    message: Value,
) -> (u16, Option<String>, Vec<Value>) {
    let mut request = daemon
        .http
        .post(format!("{}{path}", daemon.base))
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(message.to_string());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(session) = session {
        request = request
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", "2025-06-18");
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let session = response
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    let messages = match serde_json::from_str::<Value>(&text) {
        Ok(value) => vec![value],
        Err(_) => text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str(d.trim()).ok())
            .collect(),
    };
    (status, session, messages)
}

fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "raw-http-test", "version": "1"}}})
}

/// Opens a session with raw HTTP; answers its id.
async fn open_raw(daemon: &Daemon, integration: &str) -> String {
    let path = format!("/v1/mcp/{integration}");
    let (status, session, messages) =
        post(daemon, &path, Some(CANARY_TOKEN), None, initialize()).await;
    assert_eq!(status, 200, "{messages:?}\n{}", daemon.log());
    let session = session.expect("an Mcp-Session-Id");
    let (status, _, _) = post(
        daemon,
        &path,
        Some(CANARY_TOKEN),
        Some(&session),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert_eq!(status, 202);
    session
}

/// rmcp's client: one session at `integration` (optionally narrowed).
async fn rmcp_session(
    daemon: &Daemon,
    integration: &str,
    query: &str,
) -> rmcp::service::RunningService<rmcp::RoleClient, ClientConfig> {
    let url = format!("{}/v1/mcp/{integration}{query}", daemon.base);
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url).auth_header(CANARY_TOKEN),
    );
    ClientConfig::default()
        .serve(transport)
        .await
        .unwrap_or_else(|e| panic!("rmcp session at {integration}: {e}\n{}", daemon.log()))
}

async fn call_json(
    client: &rmcp::service::RunningService<rmcp::RoleClient, ClientConfig>,
    tool: &str,
    arguments: Value,
) -> Value {
    let params = CallToolRequestParams::new(tool.to_owned())
        .with_arguments(arguments.as_object().unwrap().clone());
    let result = client.peer().call_tool(params).await.unwrap();
    assert_ne!(result.is_error, Some(true), "{tool}: {result:?}");
    let text = result.content[0].as_text().unwrap().text.clone();
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn the_python_sdk_runs_an_investigation_in_one_session_sandbox() {
    let _one = ONE_AT_A_TIME.lock().await;
    let bed = TestBed::start_seeded();
    let daemon = daemon(&bed, "python", "").await;
    let url = format!("{}/v1/mcp/us", daemon.base);
    let script = support::repo_root().join("tests/mcp_session_client.py");
    let output = tokio::process::Command::new(testbed_python())
        .arg(&script)
        .args([&url, CANARY_TOKEN])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "the Python client failed: {}\n--- daemon log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        daemon.log()
    );
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["server_name"], "autoheal");
    assert_eq!(summary["server_version"], env!("CARGO_PKG_VERSION"));
    assert!(
        summary["instructions"]
            .as_str()
            .unwrap()
            .contains("CloudWatch Logs"),
        "{summary}"
    );
    let listed: Vec<&str> = summary["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), 21, "{listed:?}");
    assert!(summary["read_only"].as_bool().unwrap());
    let answer = |tool: &str| -> Value {
        let entry = &summary["answers"][tool];
        assert_eq!(entry["is_error"], false, "{tool}: {entry}");
        serde_json::from_str(entry["text"].as_str().unwrap()).unwrap()
    };
    let alarms = answer("alarms_list");
    assert!(
        alarms.to_string().contains("cell-a-redis-cpu-high"),
        "{alarms}"
    );
    let services = answer("ecs_services");
    assert!(services.to_string().contains("rollout_state"), "{services}");
    let group = answer("elasticache_replication_group");
    assert!(group.to_string().contains("primary"), "{group}");
    assert_eq!(answer("whoami")["account"], "123456789012");

    // The SDK closed the session (DELETE): its sandbox is gone, and says why.
    let sandboxes = all_sessions_gone(&daemon).await;
    assert_eq!(
        sandboxes.len(),
        1,
        "one sandbox for the whole session: {sandboxes:?}"
    );
    assert_eq!(sandboxes[0]["state"], "stopped", "{sandboxes:?}");
    assert_eq!(sandboxes[0]["ended_by"], "session_closed", "{sandboxes:?}");
    assert_eq!(sandboxes[0]["command"], json!(["autoheal", "mcp"]));
    let session = summary["session_id"].as_str().unwrap();
    let (status, _) = list_tools(&daemon, "/v1/mcp/us", session, 9).await;
    assert_eq!(status, 404, "an ended session is not found");
}

#[tokio::test]
async fn two_sessions_for_two_integrations_are_two_sandboxes_with_their_own_identity() {
    let _one = ONE_AT_A_TIME.lock().await;
    let bed = TestBed::start_with(&["--seed", "--seed-account", "210987654321"]);
    let daemon = daemon(&bed, "two", "").await;
    let (us, eu) = tokio::join!(
        rmcp_session(&daemon, "us", ""),
        rmcp_session(&daemon, "eu", "?capabilities=logs")
    );
    let info = us.peer().peer_info().unwrap();
    assert_eq!(info.server_info.as_ref().unwrap().name, "autoheal");
    assert!(info.instructions.as_deref().unwrap().contains("read"));

    let running: Vec<Value> = session_sandboxes(&daemon)
        .await
        .into_iter()
        .filter(|s| s["state"] == "running")
        .collect();
    assert_eq!(running.len(), 2, "{running:?}");
    assert_eq!(managed_containers(), 2);

    let (us_who, eu_who) = tokio::join!(
        call_json(&us, "whoami", json!({})),
        call_json(&eu, "whoami", json!({}))
    );
    assert_eq!(us_who["account"], "123456789012", "{us_who}");
    assert_eq!(us_who["region"], "us-east-1", "{us_who}");
    assert_eq!(eu_who["account"], "210987654321", "{eu_who}");
    assert_eq!(eu_who["region"], "eu-west-1", "{eu_who}");
    let eu_sandbox = running.iter().find(|s| s["integration"] == "eu").unwrap();
    assert!(
        eu_who["arn"]
            .as_str()
            .unwrap()
            .ends_with(eu_sandbox["session_name"].as_str().unwrap()),
        "the eu session's own STS session names its sandbox: {eu_who} {eu_sandbox}"
    );
    assert_eq!(eu_sandbox["capabilities"], json!(["logs"]));

    // The narrowed session lists only its capability's tools and refuses the others.
    let eu_tools = eu.peer().list_all_tools().await.unwrap();
    assert!(!eu_tools.is_empty());
    assert!(
        eu_tools
            .iter()
            .all(|t| t.name.starts_with("logs_") || t.name == "whoami"),
        "{:?}",
        eu_tools.iter().map(|t| &t.name).collect::<Vec<_>>()
    );
    let refused = eu
        .peer()
        .call_tool(CallToolRequestParams::new("ec2_instances"))
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("capabilities=logs"),
        "{refused}"
    );
    assert_eq!(us.peer().list_all_tools().await.unwrap().len(), 21);

    // Many calls, one sandbox: the session's sandbox stays the same.
    for _ in 0..5 {
        call_json(&us, "alarms_list", json!({"state": "ALARM"})).await;
    }
    assert_eq!(session_sandboxes(&daemon).await.len(), 2);

    us.cancel().await.unwrap();
    eu.cancel().await.unwrap();
    let ended = all_sessions_gone(&daemon).await;
    assert!(
        ended.iter().all(|s| s["ended_by"] == "session_closed"),
        "{ended:?}"
    );
}

#[tokio::test]
async fn sessions_end_when_idle_and_refuse_what_they_should() {
    let _one = ONE_AT_A_TIME.lock().await;
    let bed = TestBed::start_seeded();
    let daemon = daemon(&bed, "idle", "idle_timeout = \"3s\"").await;

    // No token: 401, and nothing starts.
    let (status, _, _) = post(&daemon, "/v1/mcp/us", None, None, initialize()).await;
    assert_eq!(status, 401);
    let (status, _, _) = post(&daemon, "/v1/mcp/us", Some("wrong"), None, initialize()).await;
    assert_eq!(status, 401);
    // An unknown integration: 404 at initialize, with a JSON-RPC error that names it.
    let (status, session, messages) = post(
        &daemon,
        "/v1/mcp/nowhere",
        Some(CANARY_TOKEN),
        None,
        initialize(),
    )
    .await;
    assert_eq!(status, 404, "{messages:?}");
    assert!(session.is_none());
    let error = &messages[0];
    assert_eq!(error["jsonrpc"], "2.0");
    assert_eq!(error["id"], 1);
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("\"nowhere\"") && message.contains("us"),
        "{error}"
    );
    assert_eq!(error["error"]["data"]["code"], "unknown_integration");
    // A capability that does not exist: 400, named.
    let (status, _, messages) = post(
        &daemon,
        "/v1/mcp/us?capabilities=logs,s3",
        Some(CANARY_TOKEN),
        None,
        initialize(),
    )
    .await;
    assert_eq!(status, 400, "{messages:?}");
    assert!(
        messages[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("s3")
    );
    assert_eq!(managed_containers(), 0, "nothing was started for refusals");

    // A session used within the idle timeout stays; left alone, it ends.
    let session = open_raw(&daemon, "us").await;
    for id in 2..5 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (status, messages) = list_tools(&daemon, "/v1/mcp/us", &session, id).await;
        assert_eq!(status, 200, "{messages:?}");
        let result = messages.iter().find(|m| m["id"] == id).unwrap();
        assert_eq!(result["result"]["tools"].as_array().unwrap().len(), 21);
    }
    let began = Instant::now();
    let ended = all_sessions_gone(&daemon).await;
    let idle = began.elapsed();
    assert!(
        idle >= Duration::from_secs(2) && idle < Duration::from_secs(15),
        "ended {idle:?} after the last message"
    );
    assert_eq!(ended[0]["ended_by"], "idle_timeout", "{ended:?}");
    assert_eq!(ended[0]["state"], "stopped");
    // A message to the ended session: the specification's 404.
    let (status, _) = list_tools(&daemon, "/v1/mcp/us", &session, 9).await;
    assert_eq!(status, 404);
    // A session id of another integration is not found there either.
    let session = open_raw(&daemon, "us").await;
    let (status, _) = list_tools(&daemon, "/v1/mcp/eu", &session, 10).await;
    assert_eq!(status, 404);
    // DELETE ends it at once.
    let response = daemon
        .http
        .delete(format!("{}/v1/mcp/us", daemon.base))
        .bearer_auth(CANARY_TOKEN)
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let ended = all_sessions_gone(&daemon).await;
    assert!(
        ended.iter().any(|s| s["ended_by"] == "session_closed"),
        "{ended:?}"
    );
}

#[tokio::test]
async fn a_session_ends_at_its_sandboxs_deadline() {
    let _one = ONE_AT_A_TIME.lock().await;
    let bed = TestBed::start_seeded();
    let daemon = daemon(&bed, "deadline", "max_lifetime = \"6s\"").await;
    let session = open_raw(&daemon, "us").await;
    let ended = all_sessions_gone(&daemon).await;
    assert_eq!(ended[0]["ended_by"], "deadline", "{ended:?}");
    assert_eq!(ended[0]["state"], "timed_out", "{ended:?}");
    // The session ends with its sandbox (the watcher closes it right after the end).
    wait_for("the session's 404", Duration::from_secs(10), || async {
        let (status, _) = list_tools(&daemon, "/v1/mcp/us", &session, 2).await;
        (status == 404).then_some(())
    })
    .await;
}

#[tokio::test]
async fn sessions_count_toward_max_running() {
    let _one = ONE_AT_A_TIME.lock().await;
    let bed = TestBed::start_seeded();
    let daemon = daemon(&bed, "capacity", "max_running = 1").await;
    let _first = open_raw(&daemon, "us").await;
    let response = daemon
        .http
        .post(format!("{}/v1/mcp/us", daemon.base))
        .bearer_auth(CANARY_TOKEN)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(initialize().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert!(response.headers().get("retry-after").is_some());
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["error"]["data"]["code"], "too_many_sandboxes",
        "{body}"
    );
    let (status, body) = daemon
        .call(
            "POST",
            "/v1/sandboxes",
            Some(CANARY_TOKEN),
            Some(r#"{"integration": "us", "command": ["true"]}"#),
        )
        .await;
    assert_eq!(status, 429, "{body}");
}

#[tokio::test]
async fn a_killed_daemons_session_sandbox_is_reaped_on_restart() {
    let _one = ONE_AT_A_TIME.lock().await;
    let bed = TestBed::start_seeded();
    let mut daemon = daemon(&bed, "kill", "").await;
    let _session = open_raw(&daemon, "us").await;
    assert_eq!(managed_containers(), 1);
    daemon.signal("KILL");
    daemon.exited().await;
    assert_eq!(managed_containers(), 1, "the sandbox outlived its daemon");

    let restarted = Daemon::start_configured(&bed, daemon.config.parent().unwrap(), &[], "", "");
    serving(&restarted).await;
    wait_for(
        "the orphan to be reaped",
        Duration::from_secs(30),
        || async { (managed_containers() == 0).then_some(()) },
    )
    .await;
    let (_, list) = restarted
        .call("GET", "/v1/sandboxes", Some(CANARY_TOKEN), None)
        .await;
    let sandboxes = list["sandboxes"].as_array().unwrap();
    assert!(
        sandboxes
            .iter()
            .any(|s| s["kind"] == "mcp_session" && s["ended_by"] == "shutdown"),
        "the audit log tells the interrupted session: {list}"
    );
}

#[tokio::test]
async fn exec_runs_in_a_running_sandbox_and_not_in_a_finished_one() {
    let _one = ONE_AT_A_TIME.lock().await;
    let bed = TestBed::start_seeded();
    let daemon = daemon(&bed, "exec", "").await;
    let (status, started) = daemon
        .call(
            "POST",
            "/v1/sandboxes",
            Some(CANARY_TOKEN),
            Some(r#"{"integration": "us", "command": ["sleep", "60"], "timeout": "90s"}"#),
        )
        .await;
    assert_eq!(status, 201, "{started}");
    let id = started["id"].as_str().unwrap();
    let path = format!("/v1/sandboxes/{id}/exec");

    let (status, ran) = daemon
        .call(
            "POST",
            &path,
            Some(CANARY_TOKEN),
            Some(r#"{"command": ["sh", "-c", "echo out; echo err >&2; id -u; exit 3"]}"#),
        )
        .await;
    assert_eq!(status, 200, "{ran}");
    assert_eq!(ran["exit_code"], 3, "{ran}");
    assert_eq!(
        ran["stdout"], "out\n65532\n",
        "as the sandbox's own user: {ran}"
    );
    assert_eq!(ran["stderr"], "err\n");
    assert_eq!(ran["timed_out"], false);
    assert!(ran["duration_ms"].as_u64().is_some());

    // The tools run next to the agent's code, with the sandbox's credentials.
    let (status, ran) = daemon
        .call(
            "POST",
            &path,
            Some(CANARY_TOKEN),
            Some(r#"{"command": ["autoheal", "tool", "whoami", "--output", "json"]}"#),
        )
        .await;
    assert_eq!(status, 200, "{ran}");
    let whoami: Value = serde_json::from_str(ran["stdout"].as_str().unwrap()).unwrap();
    assert_eq!(whoami["account"], "123456789012");

    // A timeout is kept.
    let (status, ran) = daemon
        .call(
            "POST",
            &path,
            Some(CANARY_TOKEN),
            Some(r#"{"command": ["sleep", "30"], "timeout": 1}"#),
        )
        .await;
    assert_eq!(status, 200, "{ran}");
    assert_eq!(ran["timed_out"], true, "{ran}");
    assert!(ran.get("exit_code").is_none(), "{ran}");
    assert!(ran["duration_ms"].as_u64().unwrap() < 5000, "{ran}");

    // Bad input is named.
    let (status, bad) = daemon
        .call(
            "POST",
            &path,
            Some(CANARY_TOKEN),
            Some(r#"{"command": []}"#),
        )
        .await;
    assert_eq!(status, 400, "{bad}");
    let (status, _) = daemon
        .call("POST", &path, None, Some(r#"{"command": ["true"]}"#))
        .await;
    assert_eq!(status, 401);
    let (status, _) = daemon
        .call(
            "POST",
            "/v1/sandboxes/000000000000/exec",
            Some(CANARY_TOKEN),
            Some(r#"{"command": ["true"]}"#),
        )
        .await;
    assert_eq!(status, 404);

    // Finished: 409.
    let (status, _) = daemon
        .call(
            "DELETE",
            &format!("/v1/sandboxes/{id}"),
            Some(CANARY_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, refused) = daemon
        .call(
            "POST",
            &path,
            Some(CANARY_TOKEN),
            Some(r#"{"command": ["true"]}"#),
        )
        .await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "not_running");
}

#[tokio::test]
async fn the_stdio_bridge_relays_a_local_client_to_a_session_sandbox() {
    let _one = ONE_AT_A_TIME.lock().await;
    let bed = TestBed::start_seeded();
    let daemon = daemon(&bed, "bridge", "idle_timeout = \"3s\"").await;
    let mut bridge = Command::new(env!("CARGO_BIN_EXE_autoheal"))
        .args(["mcp", "--daemon", &daemon.base, "--integration", "us"])
        .env("AUTOHEAL_API_TOKEN", CANARY_TOKEN)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = bridge.stdin.take().unwrap();
    let mut stdout = BufReader::new(bridge.stdout.take().unwrap());
    let mut ask = |message: Value| -> Option<Value> {
        writeln!(stdin, "{message}").unwrap();
        let id = message.get("id")?.clone();
        loop {
            let mut line = String::new();
            assert!(
                stdout.read_line(&mut line).unwrap() > 0,
                "the bridge closed stdout"
            );
            let answer: Value = serde_json::from_str(&line).unwrap();
            if answer["id"] == id {
                return Some(answer);
            }
        }
    };
    let init = ask(initialize()).unwrap();
    assert_eq!(init["result"]["serverInfo"]["name"], "autoheal", "{init}");
    ask(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    let tools = ask(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})).unwrap();
    assert_eq!(tools["result"]["tools"].as_array().unwrap().len(), 21);
    let who = ask(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "whoami", "arguments": {}}}))
    .unwrap();
    let text = who["result"]["content"][0]["text"].as_str().unwrap();
    let who: Value = serde_json::from_str(text).unwrap();
    assert_eq!(
        who["account"], "123456789012",
        "answered in the sandbox: {who}"
    );
    let running = session_sandboxes(&daemon).await;
    assert_eq!(
        running.len(),
        1,
        "the bridge's calls ran in one session sandbox"
    );

    // The daemon ends the idle session; the bridge's next call opens a new one.
    let ended = all_sessions_gone(&daemon).await;
    assert_eq!(ended[0]["ended_by"], "idle_timeout", "{ended:?}");
    let who = ask(json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
        "params": {"name": "whoami", "arguments": {}}}))
    .unwrap();
    assert!(who["result"]["content"][0]["text"].is_string(), "{who}");
    assert_eq!(
        session_sandboxes(&daemon).await.len(),
        2,
        "a new session, a new sandbox"
    );

    drop(stdin);
    let status = bridge.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let ended = all_sessions_gone(&daemon).await;
    assert!(
        ended.iter().any(|s| s["ended_by"] == "session_closed"),
        "closing the bridge closed its session: {ended:?}"
    );
}
