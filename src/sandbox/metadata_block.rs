//! Keeps sandboxes on a bridge network away from the instance metadata service.
//!
//! A container on a Docker bridge reaches 169.254.169.254 through the host's forwarding
//! path, and IMDS would hand it the host's own instance-role credentials — far more than the
//! integration it was started for. The hop limit of 1 stops IMDSv2 token answers from
//! crossing the bridge, but only for IMDSv2 and only while the host keeps that setting; so
//! the daemon also puts one rule per (sandbox subnet, blocked address) at the top of
//! Docker's `DOCKER-USER` chain, which Docker evaluates before its own forwarding rules and
//! never rewrites:
//!
//! ```text
//! iptables -I DOCKER-USER -s <sandbox subnet> -d 169.254.169.254/32 -j REJECT
//! ```
//!
//! REJECT rather than DROP, so a tool that tries IMDS fails at once instead of hanging. When
//! a rule cannot be checked or added (no `iptables`, not root / no CAP_NET_ADMIN, Docker
//! without iptables), sandboxes on that network are refused with what to do.

use super::SandboxError;
use super::iptables;
use crate::config::Cidr;

/// Marks our rules so an operator can tell them apart (`iptables -S DOCKER-USER`).
pub const RULE_COMMENT: &str = "autoheal: sandboxes must not reach instance metadata";
/// The chain Docker reserves for its users' rules, evaluated before Docker's own.
const CHAIN: &str = "DOCKER-USER";

/// The addresses to block, and how to reach the firewall.
#[derive(Debug, Clone)]
pub struct MetadataBlock {
    blocked: Vec<Cidr>,
}

impl MetadataBlock {
    pub fn new(blocked: Vec<Cidr>) -> Self {
        Self { blocked }
    }

    /// Makes sure every blocked address is unreachable from every subnet of the sandbox
    /// network: checks each rule and inserts the missing ones. Idempotent. `host` and
    /// `none` have no subnet of their own to filter (the daemon warns about `host` at start).
    pub async fn ensure(&self, network: &str, subnets: &[Cidr]) -> Result<(), SandboxError> {
        if matches!(network, "host" | "none") {
            return Ok(());
        }
        if !self.blocked.is_empty() && subnets.is_empty() {
            return Err(SandboxError::MetadataBlock {
                network: network.to_owned(),
                reason: "the network has no IP subnet to write a rule for".into(),
            });
        }
        let _one_at_a_time = iptables::KEEPER.lock().await;
        for subnet in subnets {
            for blocked in self
                .blocked
                .iter()
                .filter(|b| b.is_ipv4() == subnet.is_ipv4())
            {
                let rule = rule(subnet, blocked);
                let tool = if subnet.is_ipv4() {
                    "iptables"
                } else {
                    "ip6tables"
                };
                let check = run(tool, "-C", &rule).await;
                match check {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(reason) => {
                        return Err(SandboxError::MetadataBlock {
                            network: network.to_owned(),
                            reason,
                        });
                    }
                }
                match run(tool, "-I", &rule).await {
                    Ok(_) => {
                        tracing::info!(%network, %subnet, %blocked, "blocked the metadata address for sandboxes ({CHAIN} rule added)");
                    }
                    Err(reason) => {
                        return Err(SandboxError::MetadataBlock {
                            network: network.to_owned(),
                            reason,
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

/// The rule's arguments after the chain name (the same for `-C` and `-I`).
fn rule(subnet: &Cidr, blocked: &Cidr) -> Vec<String> {
    [
        "-s",
        &subnet.to_string(),
        "-d",
        &blocked.to_string(),
        "-m",
        "comment",
        "--comment",
        RULE_COMMENT,
        "-j",
        "REJECT",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// Runs `tool -w 5 <op> DOCKER-USER <rule>`: `Ok(true)` on success, `Ok(false)` for a
/// `-C` that found no such rule; an error means it could not run or failed otherwise.
async fn run(tool: &str, op: &str, rule: &[String]) -> Result<bool, String> {
    let mut args = vec![op.to_owned(), CHAIN.to_owned()];
    args.extend(rule.iter().cloned());
    match iptables::run_tool(tool, &args).await? {
        Ok(()) => Ok(true),
        Err(_) if op == "-C" => Ok(false),
        Err(message) => Err(format!("{tool} {op} {CHAIN} failed: {message}")),
    }
}
