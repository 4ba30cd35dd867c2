//! The firewall half of egress control: from a fenced sandbox subnet, only the daemon's own
//! sandbox-facing services are reachable — the egress proxy and the credentials endpoint,
//! both listening on the bridge's gateway. Everything else is refused: other hosts, other
//! sandboxes, the host's other ports (the API, SSH, a TCP Docker API), IMDS, DNS servers.
//!
//! Rules, per IPv4 subnet, marked with [`FENCE_COMMENT`]:
//!
//! ```text
//! DOCKER-USER (forwarded traffic, before Docker's own rules and our IMDS rule):
//!   -s <subnet> -m limit … -j NFLOG --nflog-group <group>   # tell the daemon
//!   -s <subnet> -j REJECT                                   # nothing leaves the bridge
//! INPUT (traffic to the host itself), in this order:
//!   -s <subnet> -d <gateway> -p tcp --dport <proxy>    -j ACCEPT
//!   -s <subnet> -d <gateway> -p tcp --dport <endpoint> -j ACCEPT
//!   -s <subnet> -m limit … -j NFLOG --nflog-group <group>
//!   -s <subnet> -j REJECT
//! ```
//!
//! REJECT rather than DROP, so a refused connection fails at once. The NFLOG rules (only
//! when the daemon reads a group: `crate::egress::firewall_log`) tell the daemon what was
//! refused, rate-limited, so each sandbox's record shows it. The DNAT to the
//! credentials endpoint (`credentials_route.rs`) happens before INPUT, so it arrives on the
//! endpoint's port. Docker's embedded resolver (127.0.0.11) forwards names it does not know
//! from the sandbox's own network namespace, so its queries meet the same REJECT: no name
//! lookup leaves the host (sandboxes need none — `HTTPS_PROXY` holds an address).
//!
//! [`ensure`] checks every rule and, when one is missing or the ports changed, deletes ours
//! for the subnet and writes them again in order — behind a guard: a plain REJECT for the
//! subnet, marked [`GUARD_COMMENT`], goes on top of both chains first and comes off last, so
//! the subnet is refused everything (never let through) while its rules are rewritten. It
//! runs before every start and with the health check, so rules lost to a firewall reload or
//! a Docker restart come back.

use std::net::{IpAddr, SocketAddr};

use super::iptables;
use crate::config::Cidr;
use crate::egress::{LOG_BURST, LOG_RATE};

/// Marks our rules (`iptables -S DOCKER-USER`, `iptables -S INPUT`).
pub const FENCE_COMMENT: &str = "autoheal: sandbox egress fence";
/// Marks the guard that refuses a subnet everything while its fence is rewritten (left
/// behind only by a daemon killed mid-rewrite; the next check removes it).
pub const GUARD_COMMENT: &str = "autoheal: sandbox egress guard, fence being rewritten";
/// The chain Docker evaluates before its own forwarding rules.
const FORWARD_CHAIN: &str = "DOCKER-USER";
const INPUT_CHAIN: &str = "INPUT";

/// What a fence leaves open, and where it tells what it refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The daemon's services on the bridge's gateway: the proxy, the credentials endpoint.
    pub open: Vec<SocketAddr>,
    /// The NFLOG group refusals are told on (`None`: they are not).
    pub log_group: Option<u16>,
}

/// Fences every subnet of a sandbox network so that only the fence's open services are
/// reachable from it. Answers why not, when it cannot.
pub async fn ensure(subnets: &[Cidr], fence: &Fence) -> Result<(), String> {
    if subnets.is_empty() {
        return Err("the network has no IP subnet to write rules for".into());
    }
    if let Some(v6) = subnets.iter().find(|s| !s.is_ipv4()) {
        return Err(format!(
            "the network has an IPv6 subnet ({v6}), which the egress fence does not cover; use an IPv4-only network"
        ));
    }
    let _one_at_a_time = iptables::KEEPER.lock().await;
    for subnet in subnets {
        let wanted = rules(subnet, fence);
        let mut complete = true;
        for (chain, rule) in &wanted {
            if iptables::run(&with_op("-C", chain, None, rule))
                .await?
                .is_err()
            {
                complete = false;
                break;
            }
        }
        if complete && in_order(subnet).await? && first_in_chains(subnet).await? {
            continue;
        }
        let source = subnet.to_string();
        let is_ours = |words: &[String]| iptables::has_source(words, &source);
        for chain in [FORWARD_CHAIN, INPUT_CHAIN] {
            iptables::delete_where("filter", chain, GUARD_COMMENT, is_ours).await?;
            let guard = with_op("-I", chain, Some(1), &guard(subnet));
            if let Err(message) = iptables::run(&guard).await? {
                return Err(format!("iptables -I {chain} failed: {message}"));
            }
        }
        for chain in [FORWARD_CHAIN, INPUT_CHAIN] {
            iptables::delete_where("filter", chain, FENCE_COMMENT, is_ours).await?;
        }
        // Inserted at the top in reverse, so they end up first and in order; the guard
        // stays until all are in (on a failure, it stays: the subnet is refused everything).
        for (chain, rule) in wanted.iter().rev() {
            if let Err(message) = iptables::run(&with_op("-I", chain, Some(1), rule)).await? {
                return Err(format!("iptables -I {chain} failed: {message}"));
            }
        }
        for chain in [FORWARD_CHAIN, INPUT_CHAIN] {
            iptables::delete_where("filter", chain, GUARD_COMMENT, is_ours).await?;
        }
        tracing::info!(%subnet, open = ?fence.open, log_group = ?fence.log_group, "sandbox egress fenced: only the daemon's proxy and credentials endpoint are reachable from the subnet");
    }
    Ok(())
}

/// Whether our INPUT rules for `subnet` come in order (the ACCEPTs before the NFLOG and the
/// REJECT: an allowed connection must not be told as refused).
async fn in_order(subnet: &Cidr) -> Result<bool, String> {
    let source = subnet.to_string();
    let ours: Vec<Vec<String>> = iptables::list("filter", INPUT_CHAIN)
        .await?
        .into_iter()
        .filter(|w| w.iter().any(|x| x == FENCE_COMMENT) && iptables::has_source(w, &source))
        .collect();
    let accepts = |w: &Vec<String>| w.iter().any(|x| x == "ACCEPT");
    let closing_at = ours.iter().position(|w| !accepts(w));
    Ok(match closing_at {
        Some(at) => !ours[at..].iter().any(accepts),
        None => false,
    })
}

/// Whether our rules for `subnet` come before any other in both chains: a firewall manager
/// (ufw, firewalld) reloading its own rules above ours could otherwise ACCEPT what we
/// REJECT, and our own IMDS rule above them would refuse IMDS untold.
async fn first_in_chains(subnet: &Cidr) -> Result<bool, String> {
    let source = subnet.to_string();
    for chain in [FORWARD_CHAIN, INPUT_CHAIN] {
        if !ours_first(&iptables::list("filter", chain).await?, &source) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether, in a chain's listing, every fence rule for `source` precedes every rule that is
/// not a fence's (other subnets' fences may sit among them).
fn ours_first(listing: &[Vec<String>], source: &str) -> bool {
    let appended = listing
        .iter()
        .filter(|words| words.first().map(String::as_str) == Some("-A"));
    let mut foreign_seen = false;
    for words in appended {
        let fence = words.iter().any(|w| w == FENCE_COMMENT);
        if !fence {
            foreign_seen = true;
        } else if foreign_seen && iptables::has_source(words, source) {
            return false;
        }
    }
    true
}

/// The rules for `subnet`, in order: (chain, arguments after the chain).
fn rules(subnet: &Cidr, fence: &Fence) -> Vec<(&'static str, Vec<String>)> {
    let source = subnet.to_string();
    let rule = |tail: &[&str]| {
        let mut words: Vec<String> = vec!["-s".into(), source.clone()];
        words.extend(tail.iter().map(|s| (*s).to_owned()));
        words
    };
    let comment = ["-m", "comment", "--comment", FENCE_COMMENT];
    let group = fence.log_group.map(|g| g.to_string());
    // Told (rate-limited), then refused.
    let closing = |chain: &'static str| {
        let mut closing = Vec::new();
        if let Some(group) = &group {
            let mut tail = vec![
                "-m",
                "limit",
                "--limit",
                LOG_RATE,
                "--limit-burst",
                LOG_BURST,
            ];
            tail.extend(comment);
            tail.extend(["-j", "NFLOG", "--nflog-group", group]);
            closing.push((chain, rule(&tail)));
        }
        let mut tail = comment.to_vec();
        tail.extend(["-j", "REJECT", "--reject-with", "icmp-port-unreachable"]);
        closing.push((chain, rule(&tail)));
        closing
    };
    let mut rules = closing(FORWARD_CHAIN);
    for service in fence
        .open
        .iter()
        .filter(|a| matches!(a.ip(), IpAddr::V4(_)))
    {
        let destination = format!("{}/32", service.ip());
        let port = service.port().to_string();
        let mut tail = vec![
            "-d",
            &destination,
            "-p",
            "tcp",
            "-m",
            "tcp",
            "--dport",
            &port,
        ];
        tail.extend(comment);
        tail.extend(["-j", "ACCEPT"]);
        rules.push((INPUT_CHAIN, rule(&tail)));
    }
    rules.extend(closing(INPUT_CHAIN));
    rules
}

/// The guard: everything from `subnet` refused, while its fence is rewritten.
fn guard(subnet: &Cidr) -> Vec<String> {
    let source = subnet.to_string();
    [
        "-s",
        &source,
        "-m",
        "comment",
        "--comment",
        GUARD_COMMENT,
        "-j",
        "REJECT",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

fn with_op(op: &str, chain: &str, position: Option<u32>, rule: &[String]) -> Vec<String> {
    let mut args = vec![op.to_owned(), chain.to_owned()];
    if let Some(position) = position {
        args.push(position.to_string());
    }
    args.extend(rule.iter().cloned());
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subnet_reaches_the_open_services_only_and_the_accepts_come_first() {
        let subnet = Cidr::parse("198.18.122.0/24").unwrap();
        let fence = Fence {
            open: vec![
                "198.18.122.1:40001".parse().unwrap(),
                "198.18.122.1:40002".parse().unwrap(),
            ],
            log_group: Some(16712),
        };
        let rules = rules(&subnet, &fence);
        let chains: Vec<&str> = rules.iter().map(|(c, _)| *c).collect();
        assert_eq!(
            chains,
            [
                "DOCKER-USER",
                "DOCKER-USER",
                "INPUT",
                "INPUT",
                "INPUT",
                "INPUT"
            ]
        );
        let text: Vec<String> = rules.iter().map(|(_, r)| r.join(" ")).collect();
        for told in [&text[0], &text[4]] {
            assert!(told.starts_with("-s 198.18.122.0/24 -m limit --limit 20/sec"));
            assert!(told.ends_with("-j NFLOG --nflog-group 16712"), "{told}");
        }
        assert!(text[1].starts_with("-s 198.18.122.0/24 ") && text[1].contains("-j REJECT"));
        assert!(text[2].contains("-d 198.18.122.1/32 -p tcp -m tcp --dport 40001"));
        assert!(text[2].ends_with("-j ACCEPT") && text[3].contains("--dport 40002"));
        assert!(text[5].ends_with("icmp-port-unreachable"));
        assert!(
            rules
                .iter()
                .all(|(_, r)| r.contains(&FENCE_COMMENT.to_owned()))
        );
        // Without a log group: the same fence, untold.
        let untold = super::rules(
            &subnet,
            &Fence {
                log_group: None,
                ..fence
            },
        );
        assert_eq!(untold.len(), 4);
        assert!(untold.iter().all(|(_, r)| !r.contains(&"NFLOG".to_owned())));
    }

    #[test]
    fn a_foreign_rule_above_ours_is_noticed() {
        let listing = |lines: &[&str]| -> Vec<Vec<String>> {
            lines.iter().map(|l| iptables::split_rule(l)).collect()
        };
        let ours = r#"-A DOCKER-USER -s 198.18.122.0/24 -m comment --comment "autoheal: sandbox egress fence" -j REJECT"#;
        let imds = r#"-A DOCKER-USER -s 198.18.122.0/24 -d 169.254.169.254/32 -m comment --comment "autoheal: sandboxes must not reach instance metadata" -j REJECT"#;
        let foreign = "-A DOCKER-USER -i br-1 -j ACCEPT";
        let docker_end = "-A DOCKER-USER -j RETURN";
        let subnet = "198.18.122.0/24";
        let fine = listing(&["-N DOCKER-USER", ours, imds, docker_end]);
        assert!(ours_first(&fine, subnet));
        // Our IMDS rule above the fence would refuse IMDS without telling: not first.
        let imds_above = listing(&["-N DOCKER-USER", imds, ours, docker_end]);
        assert!(!ours_first(&imds_above, subnet));
        assert!(ours_first(&listing(&["-P INPUT ACCEPT"]), subnet));
        let below = listing(&["-N DOCKER-USER", foreign, ours, docker_end]);
        assert!(!ours_first(&below, subnet));
        // Another subnet's fence below a foreign rule is that subnet's keeper's business.
        assert!(ours_first(&below, "198.18.121.0/24"));
    }
}
