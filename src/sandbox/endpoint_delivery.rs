//! One sandbox's credentials by the container-credentials protocol (`credentials =
//! "endpoint"`): where it finds the endpoint, its token on disk, how its credentials are
//! renewed, and the grant that ends it all when the sandbox ends.
//!
//! The sandbox's environment holds `AWS_CONTAINER_CREDENTIALS_FULL_URI` and
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`; the token itself is a file, bind-mounted
//! read-only at [`TOKEN_PATH_IN_SANDBOX`] from `{server.state_dir}/sandbox-tokens/<id>`
//! (directory 0700: no other local user reads it), so `docker inspect` shows a path, never
//! a secret. When the daemon itself runs in a container, the engine must be told where the
//! host sees that directory: `AUTOHEAL_HOST_STATE_DIR` (the compose file sets it).

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use aws_credential_types::Credentials;

use super::SandboxError;
use super::backend::SandboxBackend;
use super::credentials_endpoint::{CredentialsEndpoint, Registration, Renew};
use super::credentials_route::SANDBOX_FACING_ADDRESS;
use super::credentials_server::{CREDENTIALS_PATH, CredentialsServer};
use super::spec::MountedFile;
use crate::config::Secret;
use crate::credentials::{CredentialBroker, CredentialError, SessionRequest};

/// Where a sandbox finds its token.
pub const TOKEN_PATH_IN_SANDBOX: &str = "/run/autoheal/credentials-token";
/// The tokens' directory under `server.state_dir`.
pub const TOKEN_DIR: &str = "sandbox-tokens";
/// Where the engine sees `server.state_dir`, when not where the daemon sees it.
pub const HOST_STATE_DIR_ENV: &str = "AUTOHEAL_HOST_STATE_DIR";

/// The URI a sandbox on `network` asks, after making sure the endpoint listens where that
/// URI leads: 127.0.0.1 for `host` networking; for a bridge, the bridge's gateway, reached
/// as 169.254.170.2:80 through a DNAT rule.
pub async fn offer(
    server: &Arc<CredentialsServer>,
    backend: &dyn SandboxBackend,
    network: &str,
) -> Result<String, SandboxError> {
    let unavailable = |reason: String| SandboxError::CredentialsEndpoint {
        network: network.to_owned(),
        reason,
    };
    if network == "none" {
        return Err(unavailable(
            "a sandbox without a network cannot reach any endpoint".into(),
        ));
    }
    if network == "host" {
        let address = server
            .listen_on(IpAddr::V4(Ipv4Addr::LOCALHOST))
            .await
            .map_err(|e| unavailable(format!("cannot listen on 127.0.0.1: {e}")))?;
        return Ok(format!("http://{address}{CREDENTIALS_PATH}"));
    }
    let gateway = backend
        .network_gateway(network)
        .await?
        .ok_or_else(|| unavailable("the network has no IPv4 gateway to listen on".into()))?;
    let address = server
        .listen_on(gateway)
        .await
        .map_err(|e| unavailable(format!("cannot listen on the gateway {gateway}: {e}")))?;
    backend.route_credentials(network, address).await?;
    server.remember_route(network, address);
    Ok(format!("http://{SANDBOX_FACING_ADDRESS}{CREDENTIALS_PATH}"))
}

/// A sandbox's place at the endpoint: while it lives, its token is served; dropping it
/// revokes the token and deletes its file.
#[derive(Debug)]
pub struct EndpointGrant {
    endpoint: Arc<CredentialsEndpoint>,
    sandbox_id: String,
    token_file: PathBuf,
    /// The token file as the engine mounts it.
    pub mount: MountedFile,
}

impl EndpointGrant {
    /// Registers the sandbox and writes its token file under `state_dir`.
    pub fn issue(
        endpoint: &Arc<CredentialsEndpoint>,
        state_dir: &Path,
        registration: Registration,
    ) -> Result<Self, SandboxError> {
        let sandbox_id = registration.sandbox_id.clone();
        let token = endpoint.register(registration);
        let dir = state_dir.join(TOKEN_DIR);
        // The grant exists before the file: any failure below revokes the token.
        let grant = Self {
            endpoint: endpoint.clone(),
            sandbox_id: sandbox_id.clone(),
            token_file: dir.join(&sandbox_id),
            mount: MountedFile {
                host_path: host_view(state_dir).join(TOKEN_DIR).join(&sandbox_id),
                container_path: TOKEN_PATH_IN_SANDBOX.to_owned(),
            },
        };
        write_token(&dir, &grant.token_file, &token).map_err(|e| {
            SandboxError::Internal(format!(
                "cannot write the sandbox's credentials token under {}: {e} (server.state_dir must be writable by the daemon)",
                dir.display()
            ))
        })?;
        Ok(grant)
    }
}

impl Drop for EndpointGrant {
    fn drop(&mut self) {
        self.endpoint.revoke(&self.sandbox_id);
        if let Err(err) = std::fs::remove_file(&self.token_file)
            && err.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(sandbox = %self.sandbox_id, error = %err, "could not delete a sandbox's token file (its token is revoked anyway)");
        }
    }
}

/// Deletes token files a previous daemon left (their tokens died with it).
pub fn clear_stale_tokens(state_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(state_dir.join(TOKEN_DIR)) else {
        return;
    };
    for entry in entries.flatten() {
        let _ = std::fs::remove_file(entry.path());
    }
}

/// `state_dir` as the container engine sees it.
fn host_view(state_dir: &Path) -> PathBuf {
    std::env::var_os(HOST_STATE_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| state_dir.to_owned())
}

/// Writes the token: the directory 0700 (only the daemon's user enters it), the file 0444
/// (the sandbox's user, another uid, reads it through its own mount). Modes are set
/// explicitly: the daemon's umask (the systemd unit's is 0077) must not take the sandbox's
/// read permission away.
fn write_token(dir: &Path, file: &Path, token: &Secret) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let _ = std::fs::remove_file(file);
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .open(file)?;
    out.write_all(token.expose().as_bytes())?;
    out.set_permissions(std::fs::Permissions::from_mode(0o444))
}

/// Renews a sandbox's own session: the same name, tags and policy, as long as the sandbox
/// still needs (STS's minimum and the role's cap apply).
#[derive(Debug)]
pub struct RenewOwnSession {
    pub broker: Arc<CredentialBroker>,
    pub integration: String,
    pub session: SessionRequest,
    pub needed_until: SystemTime,
    pub margin: std::time::Duration,
}

#[async_trait]
impl Renew for RenewOwnSession {
    async fn renew(&self) -> Result<Credentials, CredentialError> {
        let left = self
            .needed_until
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let request = SessionRequest {
            lifetime: left + self.margin,
            ..self.session.clone()
        };
        self.broker
            .sandbox_session(&self.integration, &request)
            .await
    }
}

/// Renews from the integration's shared cache (which refreshes ahead of expiry itself):
/// credentials valid for `wanted` when it has them, else for `at_least` (a source whose
/// credentials are short-lived, such as an instance role about to rotate).
#[derive(Debug)]
pub struct RenewShared {
    pub broker: Arc<CredentialBroker>,
    pub integration: String,
    pub wanted: std::time::Duration,
    pub at_least: std::time::Duration,
}

#[async_trait]
impl Renew for RenewShared {
    async fn renew(&self) -> Result<Credentials, CredentialError> {
        match self
            .broker
            .credentials_valid_for(&self.integration, self.wanted)
            .await
        {
            Err(CredentialError::ExpiresTooSoon { .. }) => {
                self.broker
                    .credentials_valid_for(&self.integration, self.at_least)
                    .await
            }
            other => other,
        }
    }
}
