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

use std::process::Stdio;

use tokio::process::Command;

use super::SandboxError;
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
                    Ok(Outcome::Yes) => continue,
                    Ok(Outcome::No(_)) => {}
                    Err(reason) => {
                        return Err(SandboxError::MetadataBlock {
                            network: network.to_owned(),
                            reason,
                        });
                    }
                }
                match run(tool, "-I", &rule).await {
                    Ok(Outcome::Yes) => {
                        tracing::info!(%network, %subnet, %blocked, "blocked the metadata address for sandboxes ({CHAIN} rule added)");
                    }
                    Ok(Outcome::No(reason)) | Err(reason) => {
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

/// What the firewall tool said: yes (exit 0), or no with its message (exit 1: for `-C`, "no
/// such rule").
enum Outcome {
    Yes,
    No(String),
}

/// Runs `tool -w 5 <op> DOCKER-USER <rule>`; an error means it could not run or failed in a
/// way other than "no such rule".
async fn run(tool: &str, op: &str, rule: &[String]) -> Result<Outcome, String> {
    let output = Command::new(tool)
        .args(["-w", "5", op, CHAIN])
        .args(rule)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run {tool}: {e}"))?;
    let message = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    match output.status.code() {
        Some(0) => Ok(Outcome::Yes),
        Some(1) if op == "-C" => Ok(Outcome::No(message)),
        _ => Err(format!("{tool} {op} {CHAIN} failed: {message}")),
    }
}
