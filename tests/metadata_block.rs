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
//! Needs root (ip netns, iptables), as CI runs.

mod support;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use autoheal::config::{Config, load_from_str};
use autoheal::sandbox::{FENCE_COMMENT, RULE_COMMENT, SandboxRequest, SandboxState};
use support::TestBed;

const TEST_IMAGE: &str = "autoheal-sandbox-test:latest";
/// All test addresses come from 198.18.0.0/15 (RFC 2544, benchmarking; never routed on the
/// Internet). The test refuses to run when this machine already uses any of that range:
/// other documentation ranges can be real here (this very machine's eth0 sits in TEST-NET-1).
const TEST_RANGE_PREFIXES: [&str; 2] = ["198.18.", "198.19."];
/// The stand-in for 169.254.169.254.
const FAKE_IMDS: &str = "198.18.214.254";
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
        let _ = sh(&["ip", "route", "del", &format!("{FAKE_IMDS}/32")]);
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
        in_ns(&["ip", "addr", "add", &format!("{FAKE_IMDS}/32"), "dev", "lo"]);
        must(&[
            "ip",
            "route",
            "replace",
            &format!("{FAKE_IMDS}/32"),
            "via",
            NS_SIDE,
        ]);
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
            .args(["--bind", FAKE_IMDS, "--directory"])
            .arg(&webroot)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("web server in the namespace");
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

    /// Our rules in DOCKER-USER that mention the stand-in address.
    fn rules(&self) -> Vec<String> {
        support::metadata_rules(FAKE_IMDS)
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        support::remove_metadata_rules(FAKE_IMDS);
        remove_fence_rules();
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = sh(&["ip", "route", "del", &format!("{FAKE_IMDS}/32")]);
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

    // The egress fence (egress = "aws", the default), nothing blocked (the IMDS rule above
    // removed): the test host the open network reaches is refused, and so is a port on the
    // host itself.
    support::remove_metadata_rules(FAKE_IMDS);
    let host_port = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = host_port.local_addr().unwrap().port();
    // Accepts and closes at once, so a connection that gets through ends cleanly.
    std::thread::spawn(move || {
        for connection in host_port.incoming() {
            drop(connection);
        }
    });
    let gateway = SANDBOX_SUBNET.replace(".0/24", ".1");
    let both = format!(
        "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {FAKE_IMDS} 80; echo \"test-host=$?\"; nc -w 3 {gateway} {port} </dev/null; echo \"host-port=$?\"; nslookup example.com >/dev/null 2>&1; echo \"dns=$?\""
    );
    let mut ask = fetch_fake_imds();
    ask.command = vec!["sh".into(), "-c".into(), both];
    let open_done = open.run_to_end(ask.clone()).await.unwrap();
    let open_out = open_done.stdout.as_deref().unwrap_or_default();
    assert!(
        open_out.contains("instance-metadata") && open_out.contains("host-port=0"),
        "control: the open network reaches both: {open_done:?}"
    );
    let fenced = bed
        .sandbox_manager(&config(&bed, &stand_in.network, "", "aws"))
        .await;
    let done = fenced.run_to_end(ask).await.unwrap();
    let out = done.stdout.as_deref().unwrap_or_default();
    assert!(
        !out.contains("instance-metadata") && out.contains("test-host=1"),
        "the fence refuses the test host: {done:?}"
    );
    assert!(
        out.contains("host-port=1"),
        "and the host's own port: {done:?}"
    );
    assert!(!out.contains("dns=0"), "and name lookups: {done:?}");
    let fence = fence_rules();
    assert_eq!(fence.len(), 4, "{fence:?}");

    // A firewall flush while the daemon runs: the health check puts the fence back.
    let keeper = tokio::spawn(fenced.clone().run_health_checks());
    for rule in fence.iter().filter(|r| r.contains("DOCKER-USER")) {
        let spec = rule.replacen("-A ", "-D ", 1);
        let deleted = Command::new("sh")
            .args(["-c", &format!("iptables {spec}")])
            .output()
            .unwrap();
        assert!(deleted.status.success(), "{deleted:?}");
    }
    assert_eq!(fence_rules().len(), 3);
    support::wait_for(
        "the fence to come back",
        autoheal::sandbox::HEALTH_CHECK_EVERY + Duration::from_secs(5),
        || {
            let back = fence_rules().len() == 4;
            async move { back.then_some(()) }
        },
    )
    .await;
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
    support::wait_for(
        "the fence to be first again",
        autoheal::sandbox::HEALTH_CHECK_EVERY + Duration::from_secs(5),
        || {
            let first = first_is_ours();
            async move { first.then_some(()) }
        },
    )
    .await;
    let _ = Command::new("iptables")
        .args(["-D", "INPUT"])
        .args(foreign)
        .output();
    keeper.abort();
}

/// Our egress-fence rules for the sandbox subnet (DOCKER-USER and INPUT), as `-S` lists
/// them.
fn fence_rules() -> Vec<String> {
    let mut rules = Vec::new();
    for chain in ["DOCKER-USER", "INPUT"] {
        let out = Command::new("iptables")
            .args(["-S", chain])
            .output()
            .expect("iptables");
        rules.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains(FENCE_COMMENT) && l.contains(SANDBOX_SUBNET))
                .map(str::to_owned),
        );
    }
    rules
}

fn remove_fence_rules() {
    for rule in fence_rules() {
        let spec = rule.replacen("-A ", "-D ", 1);
        let _ = Command::new("sh")
            .args(["-c", &format!("iptables {spec}")])
            .output();
    }
}
