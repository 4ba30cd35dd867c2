//! The API served in this process over the fake sandbox backend: thousands of sandboxes
//! without Docker (memory stays flat), and what the unauthenticated endpoints may say when
//! credentials degrade. One test binary of its own, so the RSS it measures is its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use autoheal::api::{self, ApiLimits, AppState};
use autoheal::config::{Secret, load_from_str};
use autoheal::credentials::clock::SystemClock;
use autoheal::credentials::{CredentialBroker, CredentialCache, RefreshPolicy};
use autoheal::lifecycle::LiveConfig;
use autoheal::sandbox::{FakeBackend, SandboxManager};
use aws_credential_types::Credentials;
use aws_credential_types::credential_fn::provide_credentials_fn;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::provider::error::CredentialsError;
use serde_json::{Value, json};

const TOKEN: &str = "in-process-api-token-0123456789";
/// Would show up if an account ID, role ARN or STS message leaked from /readyz or /metrics.
const ROLE: &str = "arn:aws:iam::210987654321:role/AutohealCrossAccountRole";
const STS_TEXT: &str = "User: arn:aws:sts::111111111111:assumed-role/x is not authorized";

struct Served {
    base: String,
    http: reqwest::Client,
    failing: Arc<AtomicBool>,
    broker: Arc<CredentialBroker>,
}

/// The API on a free port, over `FakeBackend`, with one integration whose source the test
/// can make fail.
async fn serve(sandbox_toml: &str) -> Served {
    serve_with("", sandbox_toml).await
}

async fn serve_with(server_toml: &str, sandbox_toml: &str) -> Served {
    let config = load_from_str(&format!(
        "[server]\n{server_toml}\n[sandbox]\n{sandbox_toml}\n[[integration]]\nname = \"prod\"\naccount_id = \"210987654321\"\nauth = \"instance_role\"\nrole_arn = \"{ROLE}\"\nsession = \"shared\"\n"
    ))
    .unwrap();
    let failing = Arc::new(AtomicBool::new(false));
    let source = failing.clone();
    let provider = SharedCredentialsProvider::new(provide_credentials_fn(move || {
        let failing = source.load(Ordering::SeqCst);
        async move {
            if failing {
                return Err(CredentialsError::provider_error(STS_TEXT));
            }
            Ok(Credentials::new(
                "ASIAFAKE",
                "fake-secret",
                Some("fake-token".into()),
                Some(SystemTime::now() + Duration::from_secs(3600)),
                "test",
            ))
        }
    }));
    let cache = CredentialCache::new(
        config.integrations[0].clone(),
        provider,
        Arc::new(SystemClock),
        RefreshPolicy::for_sandboxes(config.sandbox.max_lifetime),
    );
    let broker = Arc::new(CredentialBroker::with_caches(vec![cache]));
    broker.prime().await;
    let live = Arc::new(LiveConfig::new(config.clone(), broker.clone()));
    let sandboxes = Arc::new(SandboxManager::new(
        Arc::new(FakeBackend::new()),
        live.clone(),
    ));
    let state = Arc::new(AppState::new(
        live,
        sandboxes,
        Secret::new(TOKEN),
        ApiLimits::from(&config.server),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(api::serve(listener, state, std::future::pending()));
    Served {
        base,
        http: reqwest::Client::new(),
        failing,
        broker,
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_sandboxes_in_a_row_keep_memory_flat() {
    let served = serve("").await;
    // Three 15 KiB arguments echoed back: 45 KiB of output per sandbox, 90 MB in all.
    let word = "x".repeat(15 * 1024);
    let body = json!({"integration": "prod", "command": ["echo", word, word, word]}).to_string();
    let mut marks = Vec::new();
    for i in 1..=2000 {
        let answer: Value = served
            .http
            .post(format!("{}/v1/sandboxes?wait=true", served.base))
            .bearer_auth(TOKEN)
            .body(body.clone())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["exit_code"], 0, "{answer}");
        assert_eq!(
            answer["stdout"].as_str().map(str::len),
            Some(3 * 15 * 1024 + 3)
        );
        if i % 500 == 0 {
            marks.push(rss_kib());
        }
    }
    let list: Value = served
        .http
        .get(format!("{}/v1/sandboxes", served.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kept = list["sandboxes"].as_array().unwrap().len();
    println!(
        "2000 fake sandboxes, 45 KiB output each (90 MB in all): RSS after 500/1000/1500/2000 = {marks:?} KiB; {kept} kept"
    );
    assert_eq!(kept, 500, "sandbox.history's default");
    // Measured from 1000 on: the history is full from 500, and the allocator's per-thread
    // arenas take a few hundred more sandboxes to settle (from 500, runs of the same code
    // grew 10–17 MiB, so a bound there flaked). Kept output would add 45 KiB per sandbox:
    // ~44 MiB over these 1000.
    let growth = marks[3].saturating_sub(marks[1]);
    assert!(
        growth < 16 * 1024,
        "RSS grew {growth} KiB from 1000 to 2000 sandboxes (bound: 16 MiB; unbounded it would be ~44 MiB)"
    );
}

#[tokio::test]
async fn readiness_degrades_without_saying_accounts_roles_or_sts_text() {
    let served = serve("").await;
    let get = |path: &str| {
        let request = served.http.get(format!("{}{path}", served.base));
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    let (status, ready) = get("/readyz").await;
    assert_eq!((status, ready.as_str()), (200, r#"{"ready":true}"#));

    served.failing.store(true, Ordering::SeqCst);
    let _ = served.broker.cache("prod").unwrap().refresh().await;
    let (status, ready) = get("/readyz").await;
    assert_eq!(
        status, 200,
        "still-valid credentials keep it ready: {ready}"
    );
    let ready: Value = serde_json::from_str(&ready).unwrap();
    assert!(
        ready["degraded"][0]
            .as_str()
            .unwrap()
            .contains("integration prod"),
        "{ready}"
    );
    let (_, metrics) = get("/metrics").await;
    assert!(
        metrics.contains("autoheal_credential_degraded{integration=\"prod\"} 1"),
        "{metrics}"
    );

    for (path, text) in [("/readyz", ready.to_string()), ("/metrics", metrics)] {
        for secret in [
            "210987654321",
            ROLE,
            "111111111111",
            "not authorized",
            "fake-secret",
        ] {
            assert!(!text.contains(secret), "{path} says {secret:?}: {text}");
        }
    }
    // The details are there for whoever holds the token.
    let details = served
        .http
        .get(format!("{}/v1/integrations", served.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(details.contains("not authorized"), "{details}");
}

#[tokio::test]
async fn beyond_max_running_the_api_answers_429_with_retry_after() {
    let served = serve("max_running = 1").await;
    let post = |body: &'static str| {
        served
            .http
            .post(format!("{}/v1/sandboxes", served.base))
            .bearer_auth(TOKEN)
            .body(body)
            .send()
    };
    let first = post(r#"{"integration": "prod", "command": ["sleep", "30"]}"#)
        .await
        .unwrap();
    assert_eq!(first.status(), 201);
    let second = post(r#"{"integration": "prod", "command": ["true"]}"#)
        .await
        .unwrap();
    assert_eq!(second.status(), 429);
    assert_eq!(second.headers()["retry-after"], "2");
    let body: Value = second.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_sandboxes");
}

/// Reads from `stream` until the daemon closes it; answers what it sent and how long it took.
async fn until_closed(stream: &mut tokio::net::TcpStream) -> (String, Duration) {
    use tokio::io::AsyncReadExt;
    let began = std::time::Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the daemon kept the connection open for 10 s"),
        }
    }
    (String::from_utf8_lossy(&seen).into_owned(), began.elapsed())
}

#[tokio::test]
async fn idle_keep_alives_and_slow_bodies_are_cut_at_their_timeouts() {
    use tokio::io::AsyncWriteExt;
    let served = serve_with(
        "header_read_timeout = \"1s\"\nbody_read_timeout = \"1s\"\nidle_timeout = \"3s\"",
        "",
    )
    .await;
    let address = served.base.trim_start_matches("http://").to_owned();

    // One whole request on a keep-alive connection, then silence: closed after the idle
    // timeout (3 s), not the head timeout (1 s) — a pooled connection is not a slow head.
    let mut idle = tokio::net::TcpStream::connect(&address).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let (answer, took) = until_closed(&mut idle).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        took > Duration::from_secs(2) && took < Duration::from_secs(6),
        "idle keep-alive closed after {took:?}"
    );

    // Half a head: closed at the head timeout.
    let mut half = tokio::net::TcpStream::connect(&address).await.unwrap();
    half.write_all(b"GET /healthz HTT").await.unwrap();
    let (_, took) = until_closed(&mut half).await;
    assert!(
        took < Duration::from_secs(3),
        "half a head closed after {took:?}"
    );

    // A head, then a body that never comes: 408 after ~1 s, and closed.
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    slow.write_all(
        format!(
            "POST /v1/sandboxes HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\ncontent-length: 100\r\n\r\n{{\"integ"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let (answer, took) = until_closed(&mut slow).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_read_timeout"), "{answer}");
    assert!(
        took < Duration::from_secs(3),
        "slow body cut after {took:?}"
    );

    // A head larger than 16 KiB is refused.
    let mut big = tokio::net::TcpStream::connect(&address).await.unwrap();
    let filler = "x".repeat(20 * 1024);
    let _ = big
        .write_all(format!("GET /healthz HTTP/1.1\r\nx-filler: {filler}\r\n\r\n").as_bytes())
        .await;
    let (answer, _) = until_closed(&mut big).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );
}
