//! The firewall rules under both `iptables` flavours: the nft-based one (what Docker uses on
//! this machine) and the legacy one (older hosts, some Amazon Linux 2 images).
//!
//! Each flavour gets a fresh network namespace, so nothing touches this host's own tables:
//! the test runs itself again inside the namespace (`ip netns exec`), with `iptables` on its
//! `PATH` being that flavour. There it makes a `DOCKER-USER` chain as Docker would, then
//! checks what the daemon does: the egress fence (with its NFLOG rules) and the IMDS rule
//! written, the fence above the IMDS rule, a check with nothing to mend writing nothing, a
//! deleted rule and a foreign rule on top both mended by the next check, and no guard left
//! behind.
//!
//! Needs root (ip netns), as CI runs.

use std::path::Path;
use std::process::Command;

use autoheal::config::Cidr;
use autoheal::sandbox::{FENCE_COMMENT, Fence, GUARD_COMMENT, MetadataBlock, RULE_COMMENT};

/// Set in the child run: the flavour it checks.
const CHILD: &str = "AUTOHEAL_TEST_IPTABLES_FLAVOUR";
const SUBNET: &str = "198.18.230.0/24";
const GATEWAY: &str = "198.18.230.1";

#[test]
fn the_fence_and_the_imds_rule_are_written_and_kept_with_legacy_and_nft_iptables() {
    if let Ok(flavour) = std::env::var(CHILD) {
        return in_the_namespace(&flavour);
    }
    for (flavour, binary) in [("legacy", "iptables-legacy"), ("nf_tables", "iptables-nft")] {
        let found = which(binary).unwrap_or_else(|| panic!("{binary} is not installed"));
        let namespace = format!("ah-ipt-{}-{flavour}", std::process::id() % 100_000);
        let bin = std::env::temp_dir().join(&namespace);
        let _ = std::fs::remove_dir_all(&bin);
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(&found, bin.join("iptables")).unwrap();
        let _ = Command::new("ip")
            .args(["netns", "del", &namespace])
            .output();
        assert!(
            Command::new("ip")
                .args(["netns", "add", &namespace])
                .status()
                .unwrap()
                .success()
        );
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
        let child = Command::new("ip")
            .args(["netns", "exec", &namespace])
            .arg(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "the_fence_and_the_imds_rule_are_written_and_kept_with_legacy_and_nft_iptables",
                "--nocapture",
            ])
            .env(CHILD, flavour)
            .env("PATH", path)
            .output()
            .unwrap();
        let _ = Command::new("ip")
            .args(["netns", "del", &namespace])
            .output();
        let _ = std::fs::remove_dir_all(&bin);
        assert!(
            child.status.success() && String::from_utf8_lossy(&child.stdout).contains("1 passed"),
            "{flavour}:\n{}\n{}",
            String::from_utf8_lossy(&child.stdout),
            String::from_utf8_lossy(&child.stderr)
        );
    }
}

fn which(binary: &str) -> Option<std::path::PathBuf> {
    ["/usr/sbin", "/sbin", "/usr/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(binary))
        .find(|path| path.exists())
}

fn iptables(args: &[&str]) -> String {
    let out = Command::new("iptables").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "iptables {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `-A` lines of a chain.
fn rules(chain: &str) -> Vec<String> {
    iptables(&["-S", chain])
        .lines()
        .filter(|l| l.starts_with("-A "))
        .map(str::to_owned)
        .collect()
}

fn in_the_namespace(flavour: &str) {
    assert!(
        iptables(&["--version"]).contains(flavour),
        "this run's iptables is {flavour}"
    );
    iptables(&["-N", "DOCKER-USER"]);
    iptables(&["-A", "DOCKER-USER", "-j", "RETURN"]);
    let subnets = [Cidr::parse(SUBNET).unwrap()];
    let fence = Fence {
        open: vec![
            format!("{GATEWAY}:40001").parse().unwrap(),
            format!("{GATEWAY}:40002").parse().unwrap(),
        ],
        log_group: Some(16712),
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let imds = MetadataBlock::new(vec![Cidr::parse("169.254.169.254/32").unwrap()]);
        imds.ensure("autoheal-test", &subnets).await.unwrap();
        autoheal::sandbox::ensure_egress_fence(&subnets, &fence)
            .await
            .unwrap();
        // The IMDS rule came first; the fence's check put itself above it.
        autoheal::sandbox::ensure_egress_fence(&subnets, &fence)
            .await
            .unwrap();
    });
    let forward = rules("DOCKER-USER");
    assert_eq!(forward.len(), 4, "{forward:?}");
    assert!(
        forward[0].contains("-j NFLOG --nflog-group 16712") && forward[0].contains(FENCE_COMMENT),
        "{forward:?}"
    );
    assert!(
        forward[1].contains("-j REJECT") && forward[1].contains(FENCE_COMMENT),
        "{forward:?}"
    );
    assert!(forward[2].contains(RULE_COMMENT), "{forward:?}");
    let input = rules("INPUT");
    assert_eq!(input.len(), 4, "{input:?}");
    assert!(input[0].contains("--dport 40001") && input[0].contains("-j ACCEPT"));
    assert!(input[1].contains("--dport 40002") && input[1].contains("-j ACCEPT"));
    assert!(input[2].contains("-j NFLOG") && input[3].contains("-j REJECT"));

    // A check with nothing to mend writes nothing: counters set on the first rule of each
    // chain survive it (a rewrite would zero them).
    for chain in ["DOCKER-USER", "INPUT"] {
        let first =
            rules(chain)[0].replacen(&format!("-A {chain} "), &format!("-R {chain} 1 -c 7 7 "), 1);
        let out = Command::new("sh")
            .args(["-c", &format!("iptables {first}")])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    runtime.block_on(async {
        autoheal::sandbox::ensure_egress_fence(&subnets, &fence)
            .await
            .unwrap();
    });
    for chain in ["DOCKER-USER", "INPUT"] {
        let counted = iptables(&["-v", "-S", chain]);
        let first = counted.lines().find(|l| l.starts_with("-A ")).unwrap();
        assert!(first.contains("-c 7 7"), "{chain} was rewritten: {counted}");
    }

    // A lost rule, and a foreign ACCEPT on top: the next check mends both.
    let lost = forward[1].replacen("-A ", "-D ", 1);
    let out = Command::new("sh")
        .args(["-c", &format!("iptables {lost}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    iptables(&["-I", "INPUT", "1", "-s", SUBNET, "-j", "ACCEPT"]);
    runtime.block_on(async {
        autoheal::sandbox::ensure_egress_fence(&subnets, &fence)
            .await
            .unwrap();
    });
    assert_eq!(rules("DOCKER-USER")[..2], forward[..2]);
    let input_now = rules("INPUT");
    assert_eq!(input_now[..4], input[..], "{input_now:?}");
    for chain in ["DOCKER-USER", "INPUT"] {
        assert!(
            !rules(chain).iter().any(|r| r.contains(GUARD_COMMENT)),
            "no guard left in {chain}"
        );
    }
}
