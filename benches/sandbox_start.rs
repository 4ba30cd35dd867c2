//! Benchmark: how long a sandbox takes through the daemon, side by side with the Docker CLI.
//!
//!     scripts/testbed setup && scripts/build-sandbox-image --with-busybox \
//!         --tag autoheal-sandbox-test:latest && cargo bench --bench sandbox_start
//!
//! Starts `autoheal serve` (the release build under `cargo bench`) on the test bed, then
//! alternates, run by run: `POST /v1/sandboxes?wait=true` running `true`, and
//! `docker run --rm --network <same> --entrypoint true <same image>`. Both on the same bridge network,
//! where the daemon also checks its IMDS rule before each sandbox. Reports the median and
//! p90 of each and their ratio, and the daemon's resident memory when idle (after start-up)
//! and after the runs. Run by `cargo test` with 3 runs each as a smoke test.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{TestBed, percentile, wait_for};

const IMAGE: &str = "autoheal-sandbox-test:latest";
const TOKEN: &str = "bench-api-token-0123456789abcdef";
/// The rule the daemon writes for this address (test range 198.18.0.0/15) is ours to remove.
const BLOCKED: &str = "198.18.216.254";
/// The sandbox network the daemon creates: in the test range, never Docker's own pool.
const SUBNET: &str = "198.18.124.0/24";

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The daemon process, its network and rule; removed on drop.
struct Daemon {
    child: Child,
    network: String,
    dir: std::path::PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        support::remove_metadata_rules(BLOCKED);
        support::remove_rules_for_subnet(SUBNET);
        let _ = Command::new("docker")
            .args(["network", "rm", &self.network])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::main]
async fn main() {
    let runs = if std::env::args().any(|a| a == "--bench") {
        30
    } else {
        3
    };
    let bed = TestBed::start();
    let id = std::process::id();
    let dir = std::env::temp_dir().join(format!("autoheal-bench-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let port = support::free_port();
    let network = format!("autoheal-bench-{id}");
    let config = dir.join("autoheal.toml");
    std::fs::write(
        &config,
        bed.config_toml(&format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
api_token_file = "{dir}/api-token"
state_dir = "{dir}/state"

[sandbox]
image = "{IMAGE}"
network = "{network}"
subnet = "{SUBNET}"
blocked_addresses = ["{BLOCKED}"]

[[integration]]
name = "us"
account_id = "123456789012"
auth = "instance_role"
endpoint_url = "{{endpoint}}"
"#,
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
    let daemon = Daemon {
        child,
        network: network.clone(),
        dir,
    };
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    wait_for("the daemon to be ready", Duration::from_secs(60), || {
        let request = http.get(format!("{base}/readyz")).send();
        async move { request.await.ok().filter(|r| r.status() == 200) }
    })
    .await;
    let pid = daemon.child.id();
    let idle_rss = rss_kib(pid);

    let sandbox = || async {
        let answer: Value = http
            .post(format!("{base}/v1/sandboxes?wait=true"))
            .bearer_auth(TOKEN)
            .json(&json!({"integration": "us", "command": ["true"]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["exit_code"], 0, "{answer}");
    };
    // One of each first, unmeasured: the network exists and the image is warm for both.
    sandbox().await;
    let docker_run = || {
        let status = Command::new("docker")
            // As the daemon does: the command's first word is the entrypoint.
            .args([
                "run",
                "--rm",
                "--network",
                &network,
                "--entrypoint",
                "true",
                IMAGE,
            ])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    };
    docker_run();

    let (mut ours, mut cli) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let start = Instant::now();
        sandbox().await;
        ours.push(start.elapsed());
        let start = Instant::now();
        docker_run();
        cli.push(start.elapsed());
    }
    let busy_rss = rss_kib(pid);
    ours.sort();
    cli.sort();
    let (ours_p50, cli_p50) = (percentile(&ours, 0.5), percentile(&cli, 0.5));
    println!("sandbox start, {runs} runs each, alternating, image {IMAGE}, command `true`:");
    println!(
        "  POST /v1/sandboxes?wait=true   median {:>7.1} ms   p90 {:>7.1} ms",
        ours_p50.as_secs_f64() * 1e3,
        percentile(&ours, 0.9).as_secs_f64() * 1e3
    );
    println!(
        "  docker run --rm                median {:>7.1} ms   p90 {:>7.1} ms",
        cli_p50.as_secs_f64() * 1e3,
        percentile(&cli, 0.9).as_secs_f64() * 1e3
    );
    println!(
        "  ratio (daemon / docker CLI)    {:.2}",
        ours_p50.as_secs_f64() / cli_p50.as_secs_f64()
    );
    println!(
        "daemon resident memory: idle {:.1} MiB, after the runs {:.1} MiB",
        idle_rss as f64 / 1024.0,
        busy_rss as f64 / 1024.0
    );
    drop(daemon);
}
