//! Benchmark: 1,000 concurrent credential requests through the broker (cache cold, cache hot)
//! side by side with the same load on a bare aws-config `AssumeRoleProvider`, all chained on
//! the instance role from the test bed's IMDSv2 emulator and moto's STS.
//!
//!     scripts/testbed setup && cargo bench --bench credential_broker
//!
//! Reports wall time, per-request latency (p50, p99) and upstream calls (IMDS credential
//! GETs, STS AssumeRole calls). Run by `cargo test` with 20 requests as a smoke test.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use autoheal::config::load_from_str;
use autoheal::credentials::{CredentialBroker, InstanceRole, RefreshPolicy};
use aws_config::sts::AssumeRoleProvider;
use aws_credential_types::provider::ProvideCredentials;
use support::{TestBed, percentile};

const ROLE: &str = "arn:aws:iam::210987654321:role/AutohealCrossAccountRole";
const NEEDED: Duration = Duration::from_secs(15 * 60);

struct Run {
    name: &'static str,
    wall: Duration,
    latencies: Vec<Duration>,
    imds_gets: u64,
    sts_calls: usize,
}

async fn imds_gets(bed: &TestBed) -> u64 {
    bed.imds_state().await["counters"]["credential_gets"]
        .as_u64()
        .unwrap_or_default()
}

/// Runs `requests` concurrent calls of `call`, each answering the access key it got.
/// `seen` holds the keys earlier runs got, so only newly minted ones count as STS calls.
async fn load<F, Fut>(
    bed: &TestBed,
    name: &'static str,
    requests: usize,
    seen: &mut BTreeSet<String>,
    call: F,
) -> Run
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = String> + Send + 'static,
{
    let before = imds_gets(bed).await;
    let start = Instant::now();
    let tasks: Vec<_> = (0..requests)
        .map(|_| {
            let fut = call();
            tokio::spawn(async move {
                let t = Instant::now();
                let key = fut.await;
                (t.elapsed(), key)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(requests);
    let mut keys = BTreeSet::new();
    for task in tasks {
        let (latency, key) = task.await.expect("request task");
        latencies.push(latency);
        keys.insert(key);
    }
    let wall = start.elapsed();
    latencies.sort();
    Run {
        name,
        wall,
        latencies,
        imds_gets: imds_gets(bed).await - before,
        // Every AssumeRole call mints a new access key; the new keys handed out count them.
        sts_calls: keys.iter().filter(|k| seen.insert((*k).clone())).count(),
    }
}

#[tokio::main]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let requests = if full { 1000 } else { 20 };
    let bed = TestBed::start_with(&["--seed-account", "210987654321"]);
    let integration = load_from_str(&format!(
        "[[integration]]\nname = \"cross\"\naccount_id = \"210987654321\"\nauth = \"instance_role\"\n\
         role_arn = \"{ROLE}\"\nendpoint_url = \"{}\"\n",
        bed.endpoint
    ))
    .unwrap()
    .integrations;
    let imds = InstanceRole::with_endpoint(&bed.imds_endpoint).unwrap();

    let broker = Arc::new(
        bed.broker(&integration, RefreshPolicy::for_sandboxes(NEEDED))
            .await,
    );
    let request = |broker: Arc<CredentialBroker>| {
        move || {
            let broker = broker.clone();
            async move {
                broker
                    .credentials_valid_for("cross", NEEDED)
                    .await
                    .expect("broker credentials")
                    .access_key_id()
                    .to_owned()
            }
        }
    };
    let mut seen = BTreeSet::new();
    let cold = load(
        &bed,
        "broker, cache cold",
        requests,
        &mut seen,
        request(broker.clone()),
    )
    .await;
    let hot = load(
        &bed,
        "broker, cache hot",
        requests,
        &mut seen,
        request(broker.clone()),
    )
    .await;

    let sdk_config = autoheal::credentials::sdk_config(&integration[0], None).await;
    let bare = Arc::new(
        AssumeRoleProvider::builder(ROLE)
            .session_name("bench-bare")
            .configure(&sdk_config)
            .build_from_provider(imds.clone())
            .await,
    );
    let baseline = load(&bed, "bare AssumeRoleProvider", requests, &mut seen, || {
        let bare = bare.clone();
        async move {
            bare.provide_credentials()
                .await
                .expect("bare provider credentials")
                .access_key_id()
                .to_owned()
        }
    })
    .await;

    println!("\n{requests} concurrent requests for credentials valid 15 minutes");
    println!(
        "{:<26} {:>9} {:>9} {:>9} {:>10} {:>10}",
        "", "wall ms", "p50 ms", "p99 ms", "IMDS GETs", "STS calls"
    );
    for run in [&cold, &hot, &baseline] {
        println!(
            "{:<26} {:>9.1} {:>9.2} {:>9.2} {:>10} {:>10}",
            run.name,
            run.wall.as_secs_f64() * 1000.0,
            percentile(&run.latencies, 0.5).as_secs_f64() * 1000.0,
            percentile(&run.latencies, 0.99).as_secs_f64() * 1000.0,
            run.imds_gets,
            run.sts_calls,
        );
    }
    println!(
        "ratio bare/broker-cold wall time: {:.1}x; upstream calls {} vs {}",
        baseline.wall.as_secs_f64() / cold.wall.as_secs_f64(),
        baseline.imds_gets as usize + baseline.sts_calls,
        cold.imds_gets as usize + cold.sts_calls,
    );
    assert_eq!(cold.sts_calls, 1, "the cold broker makes one STS call");
    assert_eq!(
        (hot.imds_gets, hot.sts_calls),
        (0, 0),
        "the hot broker makes no upstream call"
    );
}
