//! Lets bridge sandboxes reach the credentials endpoint at 169.254.170.2:80.
//!
//! The AWS SDKs take plain-HTTP container credentials only from loopback or from
//! 169.254.170.2 / 169.254.170.23; a bridge sandbox's loopback is its own, so the daemon
//! answers on 169.254.170.2 the way the ECS agent does — but without the agent's
//! `route_localnet` (which opens the host's loopback to its bridges). One rule per sandbox
//! subnet in the `nat` table's `PREROUTING` chain sends the address to where the daemon
//! listens on the bridge's own gateway address:
//!
//! ```text
//! iptables -t nat -I PREROUTING -s <subnet> -d 169.254.170.2/32 -p tcp --dport 80 \
//!     -j DNAT --to-destination <gateway>:<port>
//! ```
//!
//! The port is the daemon's (chosen by the kernel at start), so a rule a previous daemon
//! left for the same subnet is deleted when a new one is written. Only this address and port
//! are redirected: the instance metadata address stays blocked (`metadata_block.rs`).

use super::iptables;
use crate::config::Cidr;
use std::net::{Ipv4Addr, SocketAddr};

/// Where bridge sandboxes find the endpoint (`http://169.254.170.2/v1/credentials`).
pub const SANDBOX_FACING_ADDRESS: Ipv4Addr = Ipv4Addr::new(169, 254, 170, 2);
/// Marks our rules (`iptables -t nat -S PREROUTING`).
pub const ROUTE_COMMENT: &str = "autoheal: sandbox credentials endpoint";
const TABLE: &str = "nat";
const CHAIN: &str = "PREROUTING";

/// Makes every IPv4 subnet's sandboxes reach `to` at 169.254.170.2:80: checks the rule,
/// and when it is missing deletes our stale ones for the subnet (a previous daemon's port)
/// and inserts it. Answers why not, when it cannot. Called before every start and by the
/// health check every few seconds, so a rule lost to a firewall reload comes back while
/// long sandboxes still need to renew.
pub async fn ensure(subnets: &[Cidr], to: SocketAddr) -> Result<(), String> {
    let _one_at_a_time = iptables::KEEPER.lock().await;
    let v4: Vec<&Cidr> = subnets.iter().filter(|s| s.is_ipv4()).collect();
    if v4.is_empty() {
        return Err("the network has no IPv4 subnet to write a rule for".into());
    }
    for subnet in v4 {
        let rule = rule(subnet, to);
        if iptables::run(&with_op("-C", &rule)).await?.is_ok() {
            continue;
        }
        let source = subnet.to_string();
        iptables::delete_where(TABLE, CHAIN, ROUTE_COMMENT, |words| {
            iptables::has_source(words, &source) && words[2..] != rule[..]
        })
        .await?;
        if let Err(message) = iptables::run(&with_op("-I", &rule)).await? {
            return Err(format!("iptables -t nat -I {CHAIN} failed: {message}"));
        }
        tracing::info!(%subnet, %to, "bridge sandboxes reach the credentials endpoint at {SANDBOX_FACING_ADDRESS}:80 ({TABLE} {CHAIN} rule added)");
    }
    Ok(())
}

/// The rule's arguments after the chain name.
fn rule(subnet: &Cidr, to: SocketAddr) -> Vec<String> {
    [
        "-s",
        &subnet.to_string(),
        "-d",
        &format!("{SANDBOX_FACING_ADDRESS}/32"),
        "-p",
        "tcp",
        "-m",
        "tcp",
        "--dport",
        "80",
        "-m",
        "comment",
        "--comment",
        ROUTE_COMMENT,
        "-j",
        "DNAT",
        "--to-destination",
        &to.to_string(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

fn with_op(op: &str, rule: &[String]) -> Vec<String> {
    let mut args = vec![
        "-t".to_owned(),
        TABLE.to_owned(),
        op.to_owned(),
        CHAIN.to_owned(),
    ];
    args.extend(rule.iter().cloned());
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_rule_splits_into_what_delete_takes() {
        let line = r#"-A PREROUTING -s 198.18.100.0/24 -d 169.254.170.2/32 -p tcp -m tcp --dport 80 -m comment --comment "autoheal: sandbox credentials endpoint" -j DNAT --to-destination 198.18.100.1:40123"#;
        let words = iptables::split_rule(line);
        assert_eq!(words[0], "-A");
        assert!(words.contains(&ROUTE_COMMENT.to_owned()));
        assert_eq!(words.last().unwrap(), "198.18.100.1:40123");
        let subnet = Cidr::parse("198.18.100.0/24").unwrap();
        let to: SocketAddr = "198.18.100.1:40123".parse().unwrap();
        assert_eq!(
            &words[2..],
            &rule(&subnet, to)[..],
            "what -S prints is what -C/-I took"
        );
    }
}
