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

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;

use tokio::process::Command;

use crate::config::Cidr;

/// Where bridge sandboxes find the endpoint (`http://169.254.170.2/v1/credentials`).
pub const SANDBOX_FACING_ADDRESS: Ipv4Addr = Ipv4Addr::new(169, 254, 170, 2);
/// Marks our rules (`iptables -t nat -S PREROUTING`).
pub const ROUTE_COMMENT: &str = "autoheal: sandbox credentials endpoint";
const TABLE: &str = "nat";
const CHAIN: &str = "PREROUTING";

/// One check-delete-insert at a time: two starts at once must neither insert the rule twice
/// nor take each other's fresh rule for a stale one.
static KEEPER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Makes every IPv4 subnet's sandboxes reach `to` at 169.254.170.2:80: checks the rule,
/// and when it is missing deletes our stale ones for the subnet (a previous daemon's port)
/// and inserts it. Answers why not, when it cannot. Called before every start and by the
/// health check every few seconds, so a rule lost to a firewall reload comes back while
/// long sandboxes still need to renew.
pub async fn ensure(subnets: &[Cidr], to: SocketAddr) -> Result<(), String> {
    let _one_at_a_time = KEEPER.lock().await;
    let v4: Vec<&Cidr> = subnets.iter().filter(|s| s.is_ipv4()).collect();
    if v4.is_empty() {
        return Err("the network has no IPv4 subnet to write a rule for".into());
    }
    for subnet in v4 {
        let rule = rule(subnet, to);
        if iptables(&with_op("-C", &rule)).await?.is_ok() {
            continue;
        }
        for stale in stale_rules(subnet)
            .await?
            .into_iter()
            .filter(|stale| stale[1..] != rule[..])
        {
            let mut delete = vec!["-t".to_owned(), TABLE.to_owned(), "-D".to_owned()];
            delete.extend(stale);
            if let Err(message) = iptables(&delete).await? {
                tracing::warn!(%subnet, %message, "could not delete a stale credentials-endpoint rule");
            }
        }
        if let Err(message) = iptables(&with_op("-I", &rule)).await? {
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

/// Our rules for `subnet` as `iptables -S` prints them, minus the `-A`: each is what `-D`
/// takes to delete it.
async fn stale_rules(subnet: &Cidr) -> Result<Vec<Vec<String>>, String> {
    let listing = Command::new("iptables")
        .args(["-w", "5", "-t", TABLE, "-S", CHAIN])
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run iptables: {e}"))?;
    if !listing.status.success() {
        return Err(format!(
            "iptables -t {TABLE} -S {CHAIN} failed: {}",
            String::from_utf8_lossy(&listing.stderr).trim()
        ));
    }
    let source = subnet.to_string();
    Ok(String::from_utf8_lossy(&listing.stdout)
        .lines()
        .filter(|line| line.contains(ROUTE_COMMENT))
        .map(split_rule)
        .filter(|words| words.first().map(String::as_str) == Some("-A"))
        .filter(|words| words.windows(2).any(|w| w[0] == "-s" && w[1] == source))
        .map(|words| words[1..].to_vec())
        .collect())
}

/// Splits an `iptables -S` line into its words (double quotes group, as iptables prints a
/// comment with spaces).
fn split_rule(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// Runs `iptables -w 5 <args>`: `Ok(Ok)` on exit 0, `Ok(Err(message))` on exit 1 (no such
/// rule, for `-C`), `Err` when it cannot run or fails otherwise.
async fn iptables(args: &[String]) -> Result<Result<(), String>, String> {
    let output = Command::new("iptables")
        .args(["-w", "5"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run iptables: {e}"))?;
    let message = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    match output.status.code() {
        Some(0) => Ok(Ok(())),
        Some(1) => Ok(Err(message)),
        _ => Err(format!("iptables {} failed: {message}", args.join(" "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_rule_splits_into_what_delete_takes() {
        let line = r#"-A PREROUTING -s 198.18.100.0/24 -d 169.254.170.2/32 -p tcp -m tcp --dport 80 -m comment --comment "autoheal: sandbox credentials endpoint" -j DNAT --to-destination 198.18.100.1:40123"#;
        let words = split_rule(line);
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
