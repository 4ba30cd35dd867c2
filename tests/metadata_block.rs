//! Sandboxes on a bridge network cannot reach the instance metadata service: the daemon
//! puts a `DOCKER-USER` rule in place before it starts one.
//!
//! No traffic may go to the real 169.254.169.254 (or anywhere but this machine), so the
//! test builds its own stand-in: a network namespace behind a veth pair holding a
//! benchmarking-range address (198.18.0.0/15) with a web server on it, routed from the host like
//! IMDS is on EC2 — through the forwarding path, where `DOCKER-USER` applies. The sandbox
//! config blocks that address instead of 169.254.169.254. A control run without the block
//! proves the stand-in is reachable, so the blocked run's failure means the rule worked.
//!
//! The egress fence is tested here too, from inside a sandbox: a test host beside the
//! stand-in (a web server and a DNS server that writes down every query), the stand-in, a
//! port on the host, the daemon's API, another sandbox on the same network (which has
//! inter-container traffic on, as Docker's default) and Docker's embedded resolver are
//! each refused — and
//! each refusal is told by the firewall and shown in the sandbox's record; the fence comes
//! back after a flush, and is first again after a foreign rule is put above it.
//!
//! Needs root (ip netns, iptables), as CI runs.

mod support;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use autoheal::api::{self, ApiLimits, AppState};
use autoheal::config::{Config, Secret, load_from_str};
use autoheal::credentials::RefreshPolicy;
use autoheal::lifecycle::LiveConfig;
use autoheal::sandbox::{
    FENCE_COMMENT, GUARD_COMMENT, RULE_COMMENT, SandboxManager, SandboxRequest, SandboxState,
};
use support::TestBed;

const TEST_IMAGE: &str = "autoheal-sandbox-test:latest";
/// All test addresses come from 198.18.0.0/15 (RFC 2544, benchmarking; never routed on the
/// Internet). The test refuses to run when this machine already uses any of that range:
/// other documentation ranges can be real here (this very machine's eth0 sits in TEST-NET-1).
const TEST_RANGE_PREFIXES: [&str; 2] = ["198.18.", "198.19."];
/// The stand-in for 169.254.169.254.
const FAKE_IMDS: &str = "198.18.214.254";
/// A test host beside it: a web server on port 80 and a DNS server on port 53 (UDP).
const TEST_HOST: &str = "198.18.214.253";
/// The veth link between the host and the namespace.
const HOST_SIDE: &str = "198.18.213.1";
const NS_SIDE: &str = "198.18.213.2";
/// The sandbox network's subnet.
const SANDBOX_SUBNET: &str = "198.18.215.0/24";

fn sh(args: &[&str]) -> std::process::Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn must(args: &[&str]) {
    let out = sh(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The namespace, veth pair, route, web server and Docker network of one test; all removed
/// on drop, whatever happened.
struct StandIn {
    netns: String,
    veth: String,
    network: String,
    server: Child,
    dns: Child,
    /// Where the DNS server writes a line per query it receives.
    dns_queries: std::path::PathBuf,
}

impl StandIn {
    async fn create() -> Self {
        let id = std::process::id() % 100_000;
        let netns = format!("ah-imds-{id}");
        let veth = format!("ahm{id}");
        let peer = format!("ahm{id}p");
        let network = format!("autoheal-test-mdblock-{id}");
        // A leftover from a killed run would make `ip` fail; start clean.
        let _ = sh(&["ip", "netns", "del", &netns]);
        let _ = sh(&["ip", "link", "del", &veth]);
        let _ = sh(&["docker", "network", "rm", &network]);
        for address in [FAKE_IMDS, TEST_HOST] {
            let _ = sh(&["ip", "route", "del", &format!("{address}/32")]);
        }
        for listing in [sh(&["ip", "-o", "addr"]), sh(&["ip", "route"])] {
            let text = String::from_utf8_lossy(&listing.stdout);
            assert!(
                !TEST_RANGE_PREFIXES.iter().any(|p| text.contains(p)),
                "this machine already uses 198.18.0.0/15, which the test needs for itself:\n{text}"
            );
        }
        must(&["ip", "netns", "add", &netns]);
        must(&[
            "ip", "link", "add", &veth, "type", "veth", "peer", "name", &peer,
        ]);
        must(&["ip", "link", "set", &peer, "netns", &netns]);
        must(&[
            "ip",
            "addr",
            "add",
            &format!("{HOST_SIDE}/30"),
            "dev",
            &veth,
        ]);
        must(&["ip", "link", "set", &veth, "up"]);
        let in_ns = |args: &[&str]| {
            let mut full = vec!["ip", "netns", "exec", &netns];
            full.extend_from_slice(args);
            must(&full);
        };
        in_ns(&["ip", "addr", "add", &format!("{NS_SIDE}/30"), "dev", &peer]);
        in_ns(&["ip", "link", "set", &peer, "up"]);
        in_ns(&["ip", "link", "set", "lo", "up"]);
        for address in [FAKE_IMDS, TEST_HOST] {
            in_ns(&["ip", "addr", "add", &format!("{address}/32"), "dev", "lo"]);
            must(&[
                "ip",
                "route",
                "replace",
                &format!("{address}/32"),
                "via",
                NS_SIDE,
            ]);
        }
        let webroot = std::env::temp_dir().join(format!("ah-imds-web-{id}"));
        std::fs::create_dir_all(&webroot).unwrap();
        std::fs::write(webroot.join("index.html"), "instance-metadata\n").unwrap();
        let server = Command::new("ip")
            .args([
                "netns",
                "exec",
                &netns,
                "python3",
                "-m",
                "http.server",
                "80",
            ])
            .args(["--bind", "0.0.0.0", "--directory"])
            .arg(&webroot)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("web server in the namespace");
        // A DNS server that answers nothing and writes down every query it gets.
        let dns_queries = webroot.join("dns-queries");
        std::fs::write(&dns_queries, "").unwrap();
        let dns_server = format!(
            "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('{TEST_HOST}', 53))\nwhile True:\n    data, peer = s.recvfrom(512)\n    with open({path:?}, 'a') as f:\n        f.write(repr(peer) + '\\n')\n",
            path = dns_queries.display().to_string()
        );
        let dns = Command::new("ip")
            .args(["netns", "exec", &netns, "python3", "-c", &dns_server])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("DNS server in the namespace");
        must(&[
            "docker",
            "network",
            "create",
            // The test range, never a real network's (Docker's default pool is 172.17/16+).
            "--subnet",
            SANDBOX_SUBNET,
            "--label",
            "autoheal.test=true",
            &network,
        ]);
        let stand_in = Self {
            netns,
            veth,
            network,
            server,
            dns,
            dns_queries,
        };
        let probe = format!(
            "import urllib.request; urllib.request.urlopen('http://{FAKE_IMDS}/', timeout=1)"
        );
        let netns = stand_in.netns.clone();
        support::wait_for("the stand-in web server", Duration::from_secs(10), || {
            let up = sh(&["ip", "netns", "exec", &netns, "python3", "-c", &probe])
                .status
                .success();
            async move { up.then_some(()) }
        })
        .await;
        stand_in
    }

    /// Queries the test DNS server received.
    fn dns_queries(&self) -> usize {
        std::fs::read_to_string(&self.dns_queries)
            .unwrap_or_default()
            .lines()
            .count()
    }

    fn forget_dns_queries(&self) {
        std::fs::write(&self.dns_queries, "").unwrap();
    }

    /// Our rules in DOCKER-USER that mention the stand-in address.
    fn rules(&self) -> Vec<String> {
        support::metadata_rules(FAKE_IMDS)
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        support::remove_metadata_rules(FAKE_IMDS);
        remove_fence_rules();
        for child in [&mut self.server, &mut self.dns] {
            let _ = child.kill();
            let _ = child.wait();
        }
        for address in [FAKE_IMDS, TEST_HOST] {
            let _ = sh(&["ip", "route", "del", &format!("{address}/32")]);
        }
        let _ = sh(&["ip", "link", "del", &self.veth]);
        let _ = sh(&["ip", "netns", "del", &self.netns]);
        let _ = sh(&["docker", "network", "rm", &self.network]);
    }
}

fn config(bed: &TestBed, network: &str, blocked: &str, egress: &str) -> Config {
    load_from_str(&bed.config_toml(&format!(
        r#"
[sandbox]
image = "{TEST_IMAGE}"
network = "{network}"
blocked_addresses = [{blocked}]
egress = "{egress}"

[[integration]]
name = "us"
account_id = "123456789012"
auth = "instance_role"
endpoint_url = "{{endpoint}}"
"#
    )))
    .expect("valid test config")
}

fn fetch_fake_imds() -> SandboxRequest {
    SandboxRequest {
        integration: "us".into(),
        // busybox nc, not wget: the static busybox's wget crashes in getaddrinfo.
        command: vec![
            "sh".into(),
            "-c".into(),
            format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {FAKE_IMDS} 80"),
        ],
        image: None,
        timeout: Some(Duration::from_secs(60)),
        env: BTreeMap::new(),
        capabilities: None,
        credentials: None,
    }
}

#[tokio::test]
async fn sandboxes_on_the_bridge_cannot_reach_the_metadata_address() {
    let log = capture_log();
    let bed = TestBed::start();
    let stand_in = StandIn::create().await;

    // Control: with nothing blocked, the stand-in answers from the sandbox network.
    let open = bed
        .sandbox_manager(&config(&bed, &stand_in.network, "", "open"))
        .await;
    let started = open.create(fetch_fake_imds()).await.expect("starts");
    let done = open.wait(&started.id).await.unwrap();
    assert_eq!(
        done.exit_code,
        Some(0),
        "control run must reach it: {done:?}"
    );
    let answer = done.stdout.as_deref().unwrap_or_default();
    assert!(answer.contains("instance-metadata"), "{done:?}");
    assert!(stand_in.rules().is_empty());

    // Blocked: the manager adds the rule before the sandbox starts; the fetch is refused.
    let blocked = bed
        .sandbox_manager(&config(
            &bed,
            &stand_in.network,
            &format!("\"{FAKE_IMDS}/32\""),
            "open",
        ))
        .await;
    for _ in 0..2 {
        let started = blocked.create(fetch_fake_imds()).await.expect("starts");
        let done = blocked.wait(&started.id).await.unwrap();
        assert_eq!(done.state, SandboxState::Exited, "{done:?}");
        assert_ne!(
            done.exit_code,
            Some(0),
            "the stand-in must be unreachable: {done:?}"
        );
        assert!(
            done.stderr
                .as_deref()
                .unwrap_or_default()
                .contains("refused"),
            "{done:?}"
        );
        assert_eq!(done.stdout.as_deref(), Some(""), "{done:?}");
    }
    // One rule however many sandboxes started, marked as ours, REJECTing.
    let rules = stand_in.rules();
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert!(rules[0].contains(RULE_COMMENT), "{rules:?}");
    assert!(rules[0].contains("-j REJECT"), "{rules:?}");

    // The egress fence (egress = "aws", the default), the stand-in blocked as IMDS too: the
    // fence's rules come first, so even IMDS's refusal is told. From inside the sandbox: the
    // test host (web and DNS), the IMDS stand-in, a port on the host itself, the daemon's API
    // (served on every address, the worst an operator can do), and a name lookup through
    // Docker's embedded resolver are each refused, and the sandbox's record says so.
    support::remove_metadata_rules(FAKE_IMDS);
    let host_port = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = host_port.local_addr().unwrap().port();
    // Accepts and closes at once, so a connection that gets through ends cleanly.
    std::thread::spawn(move || {
        for connection in host_port.incoming() {
            drop(connection);
        }
    });
    let fenced_config = config(
        &bed,
        &stand_in.network,
        &format!("\"{FAKE_IMDS}/32\""),
        "aws",
    );
    let fenced = bed.sandbox_manager(&fenced_config).await;
    let api_port = serve_api(&bed, &fenced_config, fenced.clone()).await;
    let gateway = SANDBOX_SUBNET.replace(".0/24", ".1");
    let probes = format!(
        "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {TEST_HOST} 80; echo \"test-host=$?\"
printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {FAKE_IMDS} 80; echo \"imds=$?\"
nc -w 3 {gateway} {port} </dev/null; echo \"host-port=$?\"
printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {gateway} {api_port}; echo \"api=$?\"
nslookup direct.attacker.example {TEST_HOST} >/dev/null 2>&1; echo \"dns-server=$?\"
nslookup embedded.attacker.example >/dev/null 2>&1; echo \"dns=$?\"
sleep 1
"
    );
    let mut ask = fetch_fake_imds();
    ask.command = vec!["sh".into(), "-c".into(), probes];
    // Another sandbox, listening on the same network.
    let (neighbour, neighbour_ip) = listening_sandbox(&open).await;
    ask.command[2].push_str(&format!(
        "nc -w 3 {neighbour_ip} 8080 </dev/null; echo \"neighbour=$?\"\nsleep 1\n"
    ));
    let open_done = open.run_to_end(ask.clone()).await.unwrap();
    let open_out = open_done.stdout.as_deref().unwrap_or_default();
    for reached in [
        "test-host=0",
        "imds=0",
        "host-port=0",
        "api=0",
        "neighbour=0",
    ] {
        assert!(
            open_out.contains(reached),
            "control: the open network reaches it ({reached}): {open_done:?}"
        );
    }
    assert!(
        stand_in.dns_queries() > 0,
        "control: the test DNS server hears the open network's query"
    );
    stand_in.forget_dns_queries();

    let done = fenced.run_to_end(ask).await.unwrap();
    let out = done.stdout.as_deref().unwrap_or_default();
    assert!(!out.contains("instance-metadata"), "{done:?}");
    let _ = open.stop(&neighbour).await;
    for refused in [
        "test-host=1",
        "imds=1",
        "host-port=1",
        "api=1",
        "neighbour=1",
    ] {
        assert!(
            out.contains(refused),
            "the fence refuses it ({refused}): {done:?}"
        );
    }
    assert!(
        !out.contains("dns-server=0") && !out.contains("dns=0"),
        "and name lookups: {done:?}"
    );
    assert_eq!(
        stand_in.dns_queries(),
        0,
        "not one query reached the test DNS server"
    );
    // Each refusal, told by the firewall, is in the sandbox's record.
    let told: Vec<(String, u16)> = done
        .egress_refused
        .iter()
        .map(|r| (r.host.clone(), r.port))
        .collect();
    for (host, port) in [
        (TEST_HOST, 80),
        (FAKE_IMDS, 80),
        (gateway.as_str(), port),
        (gateway.as_str(), api_port),
        (TEST_HOST, 53),
        (neighbour_ip.as_str(), 8080),
        // Docker's embedded resolver forwarding the name to the sandbox's DNS server.
        ("192.0.2.1", 53),
    ] {
        assert!(
            told.contains(&(host.to_owned(), port)),
            "{host}:{port} refused and told: {:?}",
            done.egress_refused
        );
    }
    // And logged: one warning per destination, naming the sandbox (never a payload).
    let logged = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    for (host, port) in [(TEST_HOST, 80), (FAKE_IMDS, 80), (TEST_HOST, 53)] {
        assert!(
            logged
                .lines()
                .any(|l| l.contains(&format!("sandbox={}", done.id))
                    && l.contains(&format!("host={host} "))
                    && l.contains(&format!("port={port} "))
                    && l.contains("decision=\"refused\"")),
            "{host}:{port} refused and logged:\n{logged}"
        );
    }
    assert!(
        done.egress_refused
            .iter()
            .all(|r| r.reason.starts_with("refused by the firewall (")),
        "{:?}",
        done.egress_refused
    );
    assert!(fenced.egress().firewall_refusals() >= 6);
    assert_eq!(
        fenced.egress().totals(),
        (0, 0),
        "no proxy connection counted"
    );
    let fence = fence_rules();
    assert_eq!(fence.len(), 6, "{fence:?}");
    assert_eq!(
        fence.iter().filter(|r| r.contains("-j NFLOG")).count(),
        2,
        "{fence:?}"
    );

    // A flush of DOCKER-USER while the daemon runs (what a firewall reload does): the health
    // check puts the fence and the IMDS rule back. Other rules in the chain (Docker's own, an
    // operator's) are put back by the test afterwards.
    let keeper = tokio::spawn(fenced.clone().run_health_checks());
    assert_eq!(stand_in.rules().len(), 1, "the IMDS rule is there");
    let saved = Command::new("iptables")
        .args(["-S", "DOCKER-USER"])
        .output()
        .unwrap();
    must(&["iptables", "-F", "DOCKER-USER"]);
    assert_eq!(fence_rules().len(), 4);
    assert!(stand_in.rules().is_empty());
    support::wait_for(
        "the fence and the IMDS rule to come back",
        autoheal::sandbox::HEALTH_CHECK_EVERY + Duration::from_secs(5),
        || {
            let back = fence_rules().len() == 6 && stand_in.rules().len() == 1;
            async move { back.then_some(()) }
        },
    )
    .await;
    for rule in String::from_utf8_lossy(&saved.stdout)
        .lines()
        .filter(|l| l.starts_with("-A ") && !l.contains("autoheal:"))
    {
        let _ = Command::new("sh")
            .args(["-c", &format!("iptables {rule}")])
            .output();
    }
    // A firewall manager putting its own ACCEPT above ours: the keeper puts ours first again.
    let foreign = [
        "-s",
        SANDBOX_SUBNET,
        "-m",
        "comment",
        "--comment",
        "test: a foreign rule",
        "-j",
        "ACCEPT",
    ];
    let inserted = Command::new("iptables")
        .args(["-I", "INPUT", "1"])
        .args(foreign)
        .output()
        .unwrap();
    assert!(inserted.status.success(), "{inserted:?}");
    let first_is_ours = || {
        let out = Command::new("iptables")
            .args(["-S", "INPUT"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.starts_with("-A "))
            .is_some_and(|l| l.contains(FENCE_COMMENT))
    };
    assert!(!first_is_ours());
    // First again, whole, and the rewrite's guard gone (the keeper is stopped next: not in
    // the middle of a rewrite).
    support::wait_for(
        "the fence to be first again",
        autoheal::sandbox::HEALTH_CHECK_EVERY + Duration::from_secs(5),
        || {
            let done = first_is_ours() && fence_rules().len() == 6 && guard_rules().is_empty();
            async move { done.then_some(()) }
        },
    )
    .await;
    let _ = Command::new("iptables")
        .args(["-D", "INPUT"])
        .args(foreign)
        .output();
    keeper.abort();

    // No sandbox starts unfenced: with the keeper stopped and the rules flushed, the next
    // start puts them back before its container runs.
    delete_forward_fence_rules();
    assert_eq!(fence_rules().len(), 4);
    let mut ask = fetch_fake_imds();
    ask.command = vec![
        "sh".into(),
        "-c".into(),
        format!("nc -w 5 {TEST_HOST} 80 </dev/null; echo \"test-host=$?\""),
    ];
    let done = fenced.run_to_end(ask).await.unwrap();
    assert!(
        done.stdout
            .as_deref()
            .unwrap_or_default()
            .contains("test-host=1"),
        "{done:?}"
    );
    assert_eq!(fence_rules().len(), 6);
}

/// A sandbox of `manager` that accepts connections on port 8080 until stopped, and its
/// address on the test network.
async fn listening_sandbox(manager: &Arc<SandboxManager>) -> (String, String) {
    let mut ask = fetch_fake_imds();
    ask.command = vec![
        "sh".into(),
        "-c".into(),
        "while true; do nc -l -p 8080 </dev/null; done".into(),
    ];
    let started = manager
        .create(ask)
        .await
        .expect("the listening sandbox starts");
    let name = format!("autoheal-sandbox-{}", started.id);
    let inspected = sh(&[
        "docker",
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &name,
    ]);
    let ip = String::from_utf8_lossy(&inspected.stdout).trim().to_owned();
    assert!(ip.starts_with("198.18.215."), "{inspected:?}");
    (started.id, ip)
}

/// Everything this test process logs, kept for the test to read (the daemon's log, as the
/// manager runs in-process).
fn capture_log() -> Arc<std::sync::Mutex<Vec<u8>>> {
    #[derive(Clone)]
    struct Shared(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Arc::new(std::sync::Mutex::new(Vec::new()));
    let writer = Shared(buffer.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    buffer
}

/// Deletes the fence's DOCKER-USER rules for the sandbox subnet, as a firewall reload would.
fn delete_forward_fence_rules() {
    for rule in fence_rules().iter().filter(|r| r.contains("DOCKER-USER")) {
        let spec = rule.replacen("-A ", "-D ", 1);
        let deleted = Command::new("sh")
            .args(["-c", &format!("iptables {spec}")])
            .output()
            .unwrap();
        assert!(deleted.status.success(), "{deleted:?}");
    }
}

/// Serves the daemon's API for `sandboxes` on every address (port chosen by the kernel).
async fn serve_api(bed: &TestBed, config: &Config, sandboxes: Arc<SandboxManager>) -> u16 {
    let policy = RefreshPolicy::for_sandboxes(config.sandbox.max_lifetime);
    let broker = Arc::new(bed.broker(&config.integrations, policy).await);
    let state = Arc::new(AppState::new(
        Arc::new(LiveConfig::new(config.clone(), broker)),
        sandboxes,
        Secret::new("metadata-block-test-api-token-0123"),
        ApiLimits::from(&config.server),
    ));
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(api::serve(listener, state, std::future::pending()));
    port
}

/// Our egress-fence rules for the sandbox subnet (DOCKER-USER and INPUT), as `-S` lists
/// them.
fn fence_rules() -> Vec<String> {
    subnet_rules_marked(FENCE_COMMENT)
}

/// The guards a fence rewrite puts up for the sandbox subnet, as `-S` lists them.
fn guard_rules() -> Vec<String> {
    subnet_rules_marked(GUARD_COMMENT)
}

/// The sandbox subnet's rules in DOCKER-USER and INPUT that carry `comment`.
fn subnet_rules_marked(comment: &str) -> Vec<String> {
    let mut rules = Vec::new();
    for chain in ["DOCKER-USER", "INPUT"] {
        let out = Command::new("iptables")
            .args(["-S", chain])
            .output()
            .expect("iptables");
        rules.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains(comment) && l.contains(SANDBOX_SUBNET))
                .map(str::to_owned),
        );
    }
    rules
}

fn remove_fence_rules() {
    for rule in fence_rules().into_iter().chain(guard_rules()) {
        let spec = rule.replacen("-A ", "-D ", 1);
        let _ = Command::new("sh")
            .args(["-c", &format!("iptables {spec}")])
            .output();
    }
}
