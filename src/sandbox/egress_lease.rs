//! One bridge sandbox's way out: the egress proxy's address it is given, and its admission
//! to the proxy, which ends when the sandbox ends.
//!
//! The sandbox's environment carries `HTTPS_PROXY`/`HTTP_PROXY` (and the lower-case forms)
//! with the proxy on its bridge's gateway, and `NO_PROXY` for the credentials endpoint's
//! addresses (the SDKs ask those directly). Its `AWS_ENDPOINT_URL`, when the integration's
//! points at the host's loopback, names [`crate::egress::MAPPED_ENDPOINT_HOST`] instead.

use std::net::IpAddr;
use std::sync::Arc;

use super::SandboxError;
use super::backend::SandboxBackend;
use super::credentials_server::CredentialsServer;
use super::egress_fence::Fence;
use crate::egress::{EgressProxy, SandboxEgress};

/// Addresses the SDKs reach directly, never through the proxy: the credentials endpoint's.
pub const NO_PROXY: &str = "169.254.170.2,169.254.170.23";

/// The proxy URL for sandboxes on bridge `network`, after making sure the proxy and the
/// credentials endpoint listen on the bridge's gateway and that the network is fenced: from
/// it, those two are all that is reachable. Answers the fence too (the health check keeps
/// it).
pub async fn offer(
    proxy: &Arc<EgressProxy>,
    credentials: &Arc<CredentialsServer>,
    backend: &dyn SandboxBackend,
    network: &str,
) -> Result<(String, Fence), SandboxError> {
    let unavailable = |reason: String| SandboxError::Egress {
        network: network.to_owned(),
        reason,
    };
    let gateway = backend
        .network_gateway(network)
        .await?
        .ok_or_else(|| unavailable("the network has no IPv4 gateway for the proxy".into()))?;
    let address = proxy
        .listen_on(gateway)
        .await
        .map_err(|e| unavailable(format!("cannot listen on the gateway {gateway}: {e}")))?;
    let endpoint = credentials
        .listen_on(gateway)
        .await
        .map_err(|e| unavailable(format!("cannot listen on the gateway {gateway}: {e}")))?;
    let mut fence = Fence {
        open: vec![address, endpoint],
        log_group: proxy.firewall_log_group().await,
    };
    if let Err(err) = backend.fence_egress(network, &fence).await {
        // A host whose firewall has no NFLOG target would otherwise refuse every start: the
        // fence without its telling is still the fence.
        if fence.log_group.is_none() {
            return Err(err);
        }
        fence.log_group = None;
        backend.fence_egress(network, &fence).await?;
        proxy.stop_firewall_log();
        tracing::warn!(%network, error = %err, "the egress fence could not be written with its NFLOG rules, so it was written without: refusals at the firewall are no longer reported per sandbox (until the daemon restarts)");
    }
    Ok((format!("http://{address}"), fence))
}

/// A sandbox's admission to the proxy; dropping it releases the address (its tunnels close
/// and nothing more goes out for it).
#[derive(Debug)]
pub struct EgressLease {
    proxy: Arc<EgressProxy>,
    address: IpAddr,
    pub egress: Arc<SandboxEgress>,
}

impl EgressLease {
    pub fn new(proxy: Arc<EgressProxy>, address: IpAddr, egress: Arc<SandboxEgress>) -> Self {
        Self {
            proxy,
            address,
            egress,
        }
    }
}

impl Drop for EgressLease {
    fn drop(&mut self) {
        self.proxy.release(self.address, &self.egress);
    }
}
