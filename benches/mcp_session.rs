//! Benchmark: a tool call inside one MCP session's sandbox, side by side with the bare CLI
//! call and with a sandbox per call — the same question (`alarms_list`), the same run.
//!
//!     scripts/testbed setup && scripts/build-sandbox-image --with-busybox \
//!         --tag autoheal-sandbox-test:latest && cargo bench --bench mcp_session
//!
//! Starts `autoheal serve` (the release build under `cargo bench`) on the seeded test bed,
//! sandboxes on the host network (what the tool-call baseline measured). Then, in rounds:
//! - **session**: one session opened with rmcp's client at `/v1/mcp/us`, `alarms_list` called
//!   in it again and again (no process, no container per call);
//! - **bare CLI**: `autoheal tool alarms_list` as a process on the host with the test bed's keys;
//! - **sandbox per call**: `POST /v1/sandboxes?wait=true` running the same command.
//!
//! - **the AWS call alone**: `DescribeAlarms` from this process's SDK client, warm — the floor
//!   every way of asking shares (the emulator's own time).
//!
//! And the session's set-up — `initialize` until the first answer — against
//! `docker run --rm` of the same image answering the same question. Reports p50 and p90 of
//! each. Under `--bench` asserts the targets: the session's p50 no slower than the bare CLI's,
//! and at least 20× faster than a sandbox per call — on the whole call in a release build
//! (`cargo bench`); in a debug build, where the emulator call and the unoptimised tool take
//! tens of milliseconds whatever the path, on what each path adds to the AWS call alone.
//! `cargo test` runs a few of each as a smoke test.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::json;
use support::daemon::{CANARY_TOKEN, Daemon, serving};
use support::{TestBed, percentile};

const IMAGE: &str = "autoheal-sandbox-test:latest";
const ARGS: &str = r#"{"state": "ALARM"}"#;

fn report(name: &str, mut times: Vec<Duration>) -> Duration {
    times.sort();
    let p50 = percentile(&times, 0.5);
    println!(
        "  {name:<38} n={:<3} p50 {:>8.1} ms   p90 {:>8.1} ms",
        times.len(),
        p50.as_secs_f64() * 1e3,
        percentile(&times, 0.9).as_secs_f64() * 1e3
    );
    p50
}

type Session = rmcp::service::RunningService<rmcp::RoleClient, ClientConfig>;

async fn open(daemon: &Daemon) -> Session {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(format!("{}/v1/mcp/us", daemon.base))
            .auth_header(CANARY_TOKEN),
    );
    ClientConfig::default()
        .serve(transport)
        .await
        .unwrap_or_else(|e| panic!("open a session: {e}\n{}", daemon.log()))
}

async fn call(session: &Session) {
    let arguments = serde_json::from_str::<serde_json::Value>(ARGS).unwrap();
    let params = CallToolRequestParams::new("alarms_list")
        .with_arguments(arguments.as_object().unwrap().clone());
    let result = session.peer().call_tool(params).await.unwrap();
    assert_ne!(result.is_error, Some(true), "{result:?}");
}

async fn aws_call_alone(client: &aws_sdk_cloudwatch::Client) {
    client
        .describe_alarms()
        .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
        .alarm_types(aws_sdk_cloudwatch::types::AlarmType::MetricAlarm)
        .alarm_types(aws_sdk_cloudwatch::types::AlarmType::CompositeAlarm)
        .send()
        .await
        .unwrap();
}

fn bare_cli(bed: &TestBed) {
    let out = bed
        .tool_command()
        .args(["tool", "alarms_list", "--args", ARGS, "--output", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

async fn sandbox_per_call(daemon: &Daemon) {
    let body = json!({"integration": "us",
        "command": ["autoheal", "tool", "alarms_list", "--args", ARGS, "--output", "json"]});
    let (status, answer) = daemon
        .call(
            "POST",
            "/v1/sandboxes?wait=true",
            Some(CANARY_TOKEN),
            Some(&body.to_string()),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["exit_code"], 0, "{answer}");
}

fn docker_run(bed: &TestBed) {
    let out = Command::new("docker")
        .args([
            "run",
            "--rm",
            "--network",
            "host",
            "--entrypoint",
            "autoheal",
        ])
        .args(["-e", &format!("AWS_ENDPOINT_URL={}", bed.endpoint)])
        .args([
            "-e",
            "AWS_ACCESS_KEY_ID=testbed",
            "-e",
            "AWS_SECRET_ACCESS_KEY=testbed",
        ])
        .args([
            "-e",
            "AWS_REGION=us-east-1",
            "-e",
            "AWS_EC2_METADATA_DISABLED=true",
        ])
        .args([
            IMAGE,
            "tool",
            "alarms_list",
            "--args",
            ARGS,
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[tokio::main]
async fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (rounds, calls_per_round, setups): (usize, usize, usize) =
        if bench { (5, 10, 10) } else { (1, 3, 2) };
    let bed = TestBed::start_seeded();
    let dir = std::env::temp_dir().join(format!("autoheal-bench-mcp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let daemon = Daemon::start(&bed, &dir);
    serving(&daemon).await;

    let session = open(&daemon).await;
    call(&session).await; // warm: the sandbox's first call resolves and connects
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&bed.sdk_config().await);
    aws_call_alone(&cloudwatch).await;
    let (mut in_session, mut cli, mut per_call) = (Vec::new(), Vec::new(), Vec::new());
    let mut floor = Vec::new();
    for _ in 0..rounds {
        for _ in 0..calls_per_round {
            let began = Instant::now();
            aws_call_alone(&cloudwatch).await;
            floor.push(began.elapsed());
        }
        for _ in 0..calls_per_round {
            let began = Instant::now();
            call(&session).await;
            in_session.push(began.elapsed());
        }
        for _ in 0..calls_per_round {
            let began = Instant::now();
            bare_cli(&bed);
            cli.push(began.elapsed());
        }
        for _ in 0..calls_per_round {
            let began = Instant::now();
            sandbox_per_call(&daemon).await;
            per_call.push(began.elapsed());
        }
    }
    session.cancel().await.unwrap();

    let (mut setup, mut docker) = (Vec::new(), Vec::new());
    for _ in 0..setups {
        let began = Instant::now();
        let session = open(&daemon).await;
        call(&session).await;
        setup.push(began.elapsed());
        session.cancel().await.unwrap();
        let began = Instant::now();
        docker_run(&bed);
        docker.push(began.elapsed());
    }

    println!("alarms_list, the same run (host network, seeded test bed):");
    let session_p50 = report("in one MCP session", in_session);
    let cli_p50 = report("bare CLI (a process per call)", cli);
    let per_call_p50 = report("a sandbox per call (API, wait)", per_call);
    let floor_p50 = report("the AWS call alone (SDK, in-process)", floor);
    let ratio_cli = session_p50.as_secs_f64() / cli_p50.as_secs_f64();
    let speedup = per_call_p50.as_secs_f64() / session_p50.as_secs_f64();
    let added = |p50: Duration| p50.saturating_sub(floor_p50).as_secs_f64().max(1e-4);
    let added_speedup = added(per_call_p50) / added(session_p50);
    println!("  session / bare CLI: {ratio_cli:.2}×   sandbox per call / session: {speedup:.1}×");
    println!(
        "  added to the AWS call: session {:.1} ms, bare CLI {:.1} ms, sandbox per call {:.1} ms \
         → sandbox per call / session: {added_speedup:.1}×",
        added(session_p50) * 1e3,
        added(cli_p50) * 1e3,
        added(per_call_p50) * 1e3
    );
    println!("session set-up (initialize → first answer) against docker run of the same image:");
    let setup_p50 = report("open a session + first call", setup);
    let docker_p50 = report("docker run --rm (one call)", docker);
    println!(
        "  set-up / docker run: {:.2}×",
        setup_p50.as_secs_f64() / docker_p50.as_secs_f64()
    );
    if bench {
        assert!(
            session_p50 <= cli_p50,
            "a call in a session should be no slower than the bare CLI call"
        );
        let (measured, what) = if cfg!(debug_assertions) {
            (
                added_speedup,
                "what each adds to the AWS call (debug build)",
            )
        } else {
            (speedup, "the whole call (release build)")
        };
        assert!(
            measured >= 20.0,
            "a call in a session should be at least 20× faster than a sandbox per call, on {what}: {measured:.1}×"
        );
    }
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}
