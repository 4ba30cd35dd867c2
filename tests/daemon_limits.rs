//! `autoheal serve` under abuse and faults, as a separate process: a slow-loris flood, 500
//! concurrent sandbox requests against `max_running`, the Docker engine going away and
//! coming back (through a test-owned relay to the real engine), and IMDS serving expired
//! credentials. Each test prints its figures (`--nocapture` shows them).
//!
//! The daemon reaps every `autoheal.managed` container at start, so these tests hold
//! `SERIAL` (and cargo runs test binaries one after another).

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::daemon::{CANARY_TOKEN, Daemon, managed_containers, serving};
use support::{TestBed, rss_kib, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener, UnixStream};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const TOKEN: Option<&str> = Some(CANARY_TOKEN);

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("autoheal-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Is the connection closed by the daemon (EOF or reset), within `wait`?
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 512];
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue, // a 408/503 answer before the close
            Err(_) => return false,
        }
    }
}

/// Opens `count` connections that each send half a request line and nothing more; answers
/// how many the daemon closed (evicted to make room, or at the header timeout), the time
/// to open them, and the daemon's peak RSS meanwhile.
async fn slow_loris(address: &str, count: usize, pid: u32) -> (usize, Duration, u64) {
    let began = Instant::now();
    let mut attackers = Vec::with_capacity(count);
    let mut peak = 0;
    for i in 0..count {
        let mut stream = TcpStream::connect(address).await.expect("connect");
        let _ = stream.write_all(b"GET /healthz HTT").await;
        attackers.push(stream);
        if i % 250 == 0 {
            peak = peak.max(rss_kib(pid));
        }
    }
    let opened_in = began.elapsed();
    let mut closed = 0;
    for stream in &mut attackers {
        if closed_within(stream, Duration::from_secs(6)).await {
            closed += 1;
        }
    }
    (closed, opened_in, peak.max(rss_kib(pid)))
}

#[tokio::test]
async fn a_slow_loris_flood_is_bounded_and_healthz_answers_throughout() {
    const ATTACKERS: usize = 5000;
    let _serial = SERIAL.lock().await;
    let bed = TestBed::start();
    let dir = temp_dir("loris");
    let daemon = Daemon::start_configured(
        &bed,
        &dir,
        &[("AUTOHEAL_LOG", "info")],
        "max_connections = 512\nheader_read_timeout = \"3s\"",
        "",
    );
    serving(&daemon).await;
    let pid = daemon.child.id();
    let idle = rss_kib(pid);
    let address = daemon.base.trim_start_matches("http://").to_owned();

    // Health checks every 100 ms for the whole flood, each on a fresh connection.
    let flooding = Arc::new(AtomicBool::new(true));
    let (checks, failures) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let prober = {
        let (flooding, checks, failures) = (flooding.clone(), checks.clone(), failures.clone());
        let url = format!("{}/healthz", daemon.base);
        tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap();
            while flooding.load(Ordering::SeqCst) {
                checks.fetch_add(1, Ordering::SeqCst);
                match client.get(&url).send().await {
                    Ok(r) if r.status() == 200 => {}
                    _ => {
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    // Twice: the second flood shows the memory is a bound, not a leak that grows per flood.
    let (closed_1, took_1, peak_1) = slow_loris(&address, ATTACKERS, pid).await;
    let between = rss_kib(pid);
    let (closed_2, took_2, peak_2) = slow_loris(&address, ATTACKERS, pid).await;
    flooding.store(false, Ordering::SeqCst);
    prober.await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(pid);
    let (checks, failures) = (
        checks.load(Ordering::SeqCst),
        failures.load(Ordering::SeqCst),
    );
    println!(
        "slow-loris, 2 x {ATTACKERS} connections (max_connections 512): opened in {:.1}s / {:.1}s; \
         closed by the daemon {closed_1} / {closed_2}; RSS idle {idle} KiB, peak {peak_1} / {peak_2} KiB, \
         between {between} KiB, after {after} KiB; /healthz {} of {checks} answered 200",
        took_1.as_secs_f64(),
        took_2.as_secs_f64(),
        checks - failures
    );
    assert_eq!(
        (closed_1, closed_2),
        (ATTACKERS, ATTACKERS),
        "every half-sent request is closed"
    );
    assert_eq!(
        failures, 0,
        "/healthz answered throughout ({checks} checks)"
    );
    assert!(checks >= 10, "the prober ran during the flood");
    // 512 connections with at most a 16 KiB read buffer each (measured: +16 to +18 MiB; it
    // was +110 MiB while every connection reserved room for a whole handler's state).
    let bound = 32 * 1024;
    assert!(
        peak_1.max(peak_2) - idle < bound,
        "peak RSS grew by {} KiB (bound: 32 MiB)",
        peak_1.max(peak_2) - idle
    );
    assert!(
        peak_2 <= peak_1 + 8 * 1024,
        "a second flood raised the peak from {peak_1} to {peak_2} KiB: memory must not grow per flood"
    );
}

#[tokio::test]
async fn five_hundred_concurrent_sandbox_requests_never_run_more_than_max_running() {
    let _serial = SERIAL.lock().await;
    let bed = TestBed::start();
    let dir = temp_dir("burst");
    let daemon = Daemon::start_configured(&bed, &dir, &[], "", "max_running = 8");
    serving(&daemon).await;
    let peak = Arc::new(AtomicUsize::new(0));
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (peak, watching) = (peak.clone(), watching.clone());
        tokio::task::spawn_blocking(move || {
            while watching.load(Ordering::SeqCst) {
                peak.fetch_max(managed_containers(), Ordering::SeqCst);
            }
        })
    };
    let body = r#"{"integration": "us", "command": ["sleep", "1"]}"#;
    let client = reqwest::Client::new();
    let began = Instant::now();
    let requests: Vec<_> = (0..500)
        .map(|_| {
            let client = client.clone();
            let url = format!("{}/v1/sandboxes?wait=true", daemon.base);
            tokio::spawn(async move {
                let response = client
                    .post(url)
                    .bearer_auth(CANARY_TOKEN)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .expect("answered");
                let retry_after = response.headers().get("retry-after").cloned();
                (response.status().as_u16(), retry_after)
            })
        })
        .collect();
    let (mut ok, mut too_many) = (0, 0);
    for request in requests {
        match request.await.unwrap() {
            (200, _) => ok += 1,
            (429, Some(_)) => too_many += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    let took = began.elapsed();
    watching.store(false, Ordering::SeqCst);
    watcher.await.unwrap();
    let peak = peak.load(Ordering::SeqCst);
    println!(
        "burst: 500 concurrent POSTs answered in {:.1}s: {ok} ran (200), {too_many} refused (429 + Retry-After); at most {peak} containers at once",
        took.as_secs_f64()
    );
    assert_eq!(ok + too_many, 500);
    assert!(ok >= 8, "the first eight ran");
    assert!(peak <= 8, "{peak} containers at once");
    assert_eq!(managed_containers(), 0, "none left behind");
}

#[tokio::test]
async fn two_hundred_docker_sandboxes_in_a_row_keep_memory_flat() {
    let _serial = SERIAL.lock().await;
    let bed = TestBed::start();
    let dir = temp_dir("flat");
    let daemon = Daemon::start_configured(&bed, &dir, &[], "", "history = 50");
    serving(&daemon).await;
    let pid = daemon.child.id();
    let body =
        r#"{"integration": "us", "command": ["sh", "-c", "head -c 60000 /dev/zero | tr '\\0' x"]}"#;
    let mut after_warmup = 0;
    for i in 0..200 {
        let (status, answer) = daemon
            .call("POST", "/v1/sandboxes?wait=true", TOKEN, Some(body))
            .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["stdout"].as_str().map(str::len), Some(60000));
        if i == 49 {
            after_warmup = rss_kib(pid);
        }
    }
    let end = rss_kib(pid);
    let (_, list) = daemon.call("GET", "/v1/sandboxes", TOKEN, None).await;
    let list = list["sandboxes"].as_array().unwrap();
    println!(
        "200 Docker sandboxes (60 kB output each): RSS after 50 {after_warmup} KiB, after 200 {end} KiB; {} kept",
        list.len()
    );
    assert_eq!(list.len(), 50, "sandbox.history");
    assert!(
        list.iter().all(|s| s.get("stdout").is_none()),
        "no output in listings"
    );
    assert!(
        end.saturating_sub(after_warmup) < 8 * 1024,
        "RSS grew by {} KiB over 150 sandboxes (bound: 8 MiB)",
        end.saturating_sub(after_warmup)
    );
}

/// Asserts `/readyz` says 503 with `reason` among its reasons.
async fn not_ready_because(daemon: &Daemon, reason: &str) {
    let (status, ready) = daemon.call("GET", "/readyz", None, None).await;
    assert_eq!(status, 503, "{ready}");
    assert!(ready["reasons"].to_string().contains(reason), "{ready}");
}

/// Asserts a sandbox request (`true`) is refused with 503 and `code`; answers the error.
async fn refused_with(daemon: &Daemon, path: &str, code: &str) -> Value {
    let body = r#"{"integration": "us", "command": ["true"]}"#;
    let (status, refused) = daemon.call("POST", path, TOKEN, Some(body)).await;
    assert_eq!(status, 503, "{refused}");
    assert_eq!(refused["error"]["code"], code, "{refused}");
    refused
}

/// Waits until `/readyz` answers 200 again.
async fn ready_again(daemon: &Daemon, what: &str) {
    wait_for(what, Duration::from_secs(60), || async {
        let (status, _) = daemon.call("GET", "/readyz", None, None).await;
        (status == 200).then_some(())
    })
    .await;
}

/// A Unix-socket relay to the real Docker engine that the test can cut and restore.
struct DockerRelay {
    path: PathBuf,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl DockerRelay {
    fn start(path: &Path) -> Self {
        let mut relay = Self {
            path: path.to_owned(),
            task: None,
        };
        relay.restore();
        relay
    }

    /// Stops accepting and cuts every relayed connection.
    fn cut(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        let _ = std::fs::remove_file(&self.path);
    }

    fn restore(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let listener = UnixListener::bind(&self.path).expect("bind the relay socket");
        self.task = Some(tokio::spawn(async move {
            let mut pipes = tokio::task::JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                pipes.spawn(async move {
                    if let Ok(mut engine) = UnixStream::connect("/var/run/docker.sock").await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut engine).await;
                    }
                });
            }
        }));
    }
}

impl Drop for DockerRelay {
    fn drop(&mut self) {
        self.cut();
    }
}

#[tokio::test]
async fn the_engine_going_away_and_coming_back_is_recovered_from_without_a_restart() {
    let _serial = SERIAL.lock().await;
    let bed = TestBed::start();
    let dir = temp_dir("relay");
    let socket = dir.join("docker.sock");
    let mut relay = DockerRelay::start(&socket);
    let docker_host = format!("unix://{}", socket.display());
    let daemon = Daemon::start_with_env(&bed, &dir, &[("DOCKER_HOST", &docker_host)]);
    serving(&daemon).await;
    let (status, running) = daemon
        .call(
            "POST",
            "/v1/sandboxes",
            TOKEN,
            Some(r#"{"integration": "us", "command": ["sleep", "4"]}"#),
        )
        .await;
    assert_eq!(status, 201, "{running}");
    let id = running["id"].as_str().unwrap().to_owned();

    relay.cut();
    not_ready_because(&daemon, "Docker").await;
    refused_with(&daemon, "/v1/sandboxes", "docker_unavailable").await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    relay.restore();
    let recovered = Instant::now();
    ready_again(&daemon, "/readyz to say ready again").await;
    let finished: Value = wait_for(
        "the running sandbox to end",
        Duration::from_secs(30),
        || {
            let daemon = &daemon;
            let path = format!("/v1/sandboxes/{id}");
            async move {
                let (_, info) = daemon.call("GET", &path, TOKEN, None).await;
                (info["state"] != "running").then_some(info)
            }
        },
    )
    .await;
    wait_for(
        "what was lost meanwhile to be reaped",
        Duration::from_secs(30),
        || async { (managed_containers() == 0).then_some(()) },
    )
    .await;
    println!(
        "engine outage: recovered {:.1}s after the relay came back; the sandbox that ran through it ended {}",
        recovered.elapsed().as_secs_f64(),
        finished["state"]
    );
    let (status, answer) = daemon
        .call(
            "POST",
            "/v1/sandboxes?wait=true",
            TOKEN,
            Some(r#"{"integration": "us", "command": ["echo", "back"]}"#),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["stdout"], "back\n");
}

#[tokio::test]
async fn imds_serving_expired_credentials_never_reaches_a_sandbox() {
    let _serial = SERIAL.lock().await;
    let bed = TestBed::start();
    bed.configure_imds(serde_json::json!({"mode": "stale"}))
        .await;
    let dir = temp_dir("stale");
    let daemon = Daemon::start(&bed, &dir);
    serving(&daemon).await;

    not_ready_because(&daemon, "expired_credentials").await;
    let refused = refused_with(
        &daemon,
        "/v1/sandboxes?wait=true",
        "credentials_unavailable",
    )
    .await;
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired at"),
        "{refused}"
    );
    assert_eq!(managed_containers(), 0, "nothing started on expired keys");

    bed.configure_imds(serde_json::json!({"mode": "ok"})).await;
    ready_again(&daemon, "readiness once IMDS serves valid credentials").await;
    let imds_expiry = bed.imds_state().await["expiration"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, started) = daemon
        .call(
            "POST",
            "/v1/sandboxes?wait=true",
            TOKEN,
            Some(r#"{"integration": "us", "command": ["true"]}"#),
        )
        .await;
    assert_eq!(status, 200, "{started}");
    let told =
        humantime::parse_rfc3339(started["credentials_expire_at"].as_str().unwrap()).unwrap();
    let real = humantime::parse_rfc3339(&imds_expiry).unwrap();
    assert_eq!(
        told.duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        real.duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        "the sandbox is told the lifetime IMDS gave, not an invented one"
    );
}
