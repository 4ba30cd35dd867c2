//! Benchmark: what a sandbox's own STS session costs at start, side by side with the
//! integration's shared session, and how often STS and IMDS are asked.
//!
//!     scripts/testbed setup && scripts/build-sandbox-image --with-busybox \
//!         --tag autoheal-sandbox-test:latest && cargo bench --bench sandbox_session
//!
//! Starts `autoheal serve` on the test bed with two integrations on the same role, one with
//! `session = "per_sandbox"` (the default) and one with `session = "shared"`, and alternates
//! `POST /v1/sandboxes` running `true` on each, 30 times, timing the start (until the 201:
//! the container runs); a third series asks the own session with `"credentials":
//! "endpoint"` (a token file and the endpoint instead of keys). Reports the medians and
//! the per-sandbox session's extra share of the start time (the goal: under 10%), the STS
//! calls per per-sandbox sandbox (exactly 1) and the IMDS credential fetches per 100
//! sandboxes (at most 1: the instance role is cached). Run by `cargo test` with 3 runs each
//! as a smoke test, which checks the counts.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{TestBed, wait_for};

const IMAGE: &str = "autoheal-sandbox-test:latest";
const TOKEN: &str = "bench-api-token-0123456789abcdef";
const ROLE: &str = "arn:aws:iam::210987654321:role/AutohealReadOnlyRole";

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

/// The daemon process; stopped on drop.
struct Daemon {
    child: Child,
    dir: std::path::PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::main]
async fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (runs, extra) = if bench { (30, 40) } else { (3, 0) };
    let bed = TestBed::start();
    let dir = std::env::temp_dir().join(format!("autoheal-bench-session-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = support::free_port();
    let config = dir.join("autoheal.toml");
    let integration = |name: &str, session: &str| {
        format!(
            "[[integration]]\nname = \"{name}\"\naccount_id = \"210987654321\"\nauth = \"instance_role\"\n\
             role_arn = \"{ROLE}\"\nsession = \"{session}\"\nendpoint_url = \"{{endpoint}}\"\n"
        )
    };
    std::fs::write(
        &config,
        bed.config_toml(&format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\napi_token_file = \"{dir}/api-token\"\n\
             state_dir = \"{dir}/state\"\n\n[sandbox]\nimage = \"{IMAGE}\"\nnetwork = \"host\"\n\
             max_running = 4\n\n{}\n{}",
            integration("own", "per_sandbox"),
            integration("shared", "shared"),
            dir = dir.display()
        )),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_autoheal"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &bed.imds_endpoint)
        .env("AUTOHEAL_API_TOKEN", TOKEN)
        .env("AUTOHEAL_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start autoheal serve");
    let _daemon = Daemon { child, dir };
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    wait_for("the daemon to be ready", Duration::from_secs(60), || {
        let request = http.get(format!("{base}/readyz")).send();
        async move { request.await.ok().filter(|r| r.status() == 200) }
    })
    .await;
    // Times the start (POST → 201: the container runs), then waits for the end so the next
    // start finds a free slot. Answers the sandbox id.
    let sandbox = |integration: &'static str, credentials: &'static str| {
        let http = http.clone();
        let base = base.clone();
        async move {
            let start = Instant::now();
            let answer: Value = http
                .post(format!("{base}/v1/sandboxes"))
                .bearer_auth(TOKEN)
                .json(&json!({"integration": integration, "command": ["true"],
                              "credentials": credentials}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let took = start.elapsed();
            let id = answer["id"]
                .as_str()
                .unwrap_or_else(|| panic!("{answer}"))
                .to_owned();
            wait_for("the sandbox to end", Duration::from_secs(60), || {
                let request = http
                    .get(format!("{base}/v1/sandboxes/{id}"))
                    .bearer_auth(TOKEN)
                    .send();
                async move {
                    let info: Value = request.await.ok()?.json().await.ok()?;
                    (info["state"] != "running").then_some(())
                }
            })
            .await;
            (took, id)
        }
    };
    // One of each first, unmeasured: the image is warm and the shared session cached.
    sandbox("own", "env").await;
    sandbox("shared", "env").await;
    sandbox("own", "endpoint").await;
    bed.clear_sts_requests().await;
    let imds_before = bed.imds_state().await["counters"]["credential_gets"]
        .as_u64()
        .unwrap();

    let (mut own, mut shared, mut endpoint) = (Vec::new(), Vec::new(), Vec::new());
    let mut own_ids = Vec::new();
    for _ in 0..runs {
        let (took, id) = sandbox("own", "env").await;
        own.push(took);
        own_ids.push(id);
        shared.push(sandbox("shared", "env").await.0);
        let (took, id) = sandbox("own", "endpoint").await;
        endpoint.push(took);
        own_ids.push(id);
    }
    for _ in 0..extra {
        own_ids.push(sandbox("own", "env").await.1);
    }
    let own_sandboxes = own_ids.len() as u64;
    let sts: Vec<Value> = bed.sts_requests().await;
    let mut named: Vec<String> = sts
        .iter()
        .filter_map(|r| r["RoleSessionName"].as_str().map(str::to_owned))
        .collect();
    let mut expected: Vec<String> = own_ids
        .iter()
        .map(|id| format!("autoheal-sandbox-{id}"))
        .collect();
    named.sort();
    expected.sort();
    let per_sandbox_calls = named.len() as u64;
    let imds_calls = bed.imds_state().await["counters"]["credential_gets"]
        .as_u64()
        .unwrap()
        - imds_before;
    let (own_p50, shared_p50, endpoint_p50) = (median(own), median(shared), median(endpoint));
    let extra_share = (own_p50.as_secs_f64() - shared_p50.as_secs_f64()) / own_p50.as_secs_f64();
    println!("sandbox start, {runs} runs each, alternating, image {IMAGE}, command `true`:");
    println!(
        "  own session per sandbox   median {:>7.1} ms",
        own_p50.as_secs_f64() * 1e3
    );
    println!(
        "  shared session            median {:>7.1} ms",
        shared_p50.as_secs_f64() * 1e3
    );
    println!(
        "  own session, endpoint     median {:>7.1} ms (token file, listener, no keys in env)",
        endpoint_p50.as_secs_f64() * 1e3
    );
    println!(
        "  the own session's share of the start time: {:.1}% (goal: under 10%)",
        extra_share * 100.0
    );
    println!(
        "  STS calls per sandbox with its own session: {:.2} ({per_sandbox_calls} for {own_sandboxes}); all STS calls in the runs: {}",
        per_sandbox_calls as f64 / own_sandboxes as f64,
        sts.len()
    );
    println!(
        "  IMDS credential fetches per 100 sandboxes: {:.2} ({imds_calls} for {})",
        imds_calls as f64 * 100.0 / (own_sandboxes + runs as u64) as f64,
        own_sandboxes + runs as u64
    );
    assert_eq!(
        named, expected,
        "exactly one STS call per sandbox with its own session, named after it; none for the shared session"
    );
    assert!(
        imds_calls <= 1,
        "the instance role is cached: {imds_calls} IMDS fetches"
    );
}
