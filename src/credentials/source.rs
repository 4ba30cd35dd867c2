//! Where an integration's credentials come from, built on aws-config's own providers.
//!
//! - `instance_role`: the EC2 instance role through IMDSv2 (`ImdsCredentialsProvider`); the
//!   endpoint follows the standard `AWS_EC2_METADATA_SERVICE_ENDPOINT` (tests point it at the
//!   test bed's emulator);
//! - `instance_role` + `role_arn`: `sts:AssumeRole` chained on the instance role
//!   (`AssumeRoleProvider::build_from_provider`), with external ID, session name and length;
//! - `oidc`: a token from the daemon's own issuer, exchanged with
//!   `sts:AssumeRoleWithWebIdentity` (`web_identity.rs`);
//! - `environment`: the SDK's default chain, for development.
//!
//! None of them caches: the lifetime-aware cache in front (`cache.rs`) decides when to call.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_config::imds::client::Client as ImdsClient;
use aws_config::imds::credentials::ImdsCredentialsProvider;
use aws_config::provider_config::ProviderConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_config::{Region, SdkConfig};
use aws_credential_types::provider::{
    ProvideCredentials, SharedCredentialsProvider, error::CredentialsError, future,
};
use aws_smithy_async::time::StaticTimeSource;

use super::cache::CredentialCache;
use super::sandbox_session::cached_source;
use super::web_identity::WebIdentity;
use crate::config::{AuthMethod, IntegrationConfig};
use crate::oidc::SharedIssuer;

/// IMDS is link-local and answers in milliseconds; a second is plenty.
const IMDS_TIMEOUT: Duration = Duration::from_secs(1);
/// Tries per IMDS request (the SDK retries 5xx and timeouts with backoff).
const IMDS_ATTEMPTS: u32 = 3;

/// Builds the credential source of `integration`; `instance_role` is the host's IMDS access,
/// and `instance_source` the same behind the broker's cache, which an assumed role chains
/// on (so IMDS is asked once for all of them).
pub async fn provider_for(
    integration: &IntegrationConfig,
    instance_role: &InstanceRole,
    instance_source: &Option<Arc<CredentialCache>>,
    issuer: &IssuerState,
) -> SharedCredentialsProvider {
    match integration.auth {
        AuthMethod::Environment => SharedCredentialsProvider::new(
            DefaultCredentialsChain::builder()
                .region(Region::new(integration.region.to_string()))
                .build()
                .await,
        ),
        AuthMethod::InstanceRole => {
            let instance_role = instance_role.clone();
            match &integration.role_arn {
                None => SharedCredentialsProvider::new(instance_role),
                Some(role_arn) => {
                    let mut builder = AssumeRoleProvider::builder(role_arn.as_str())
                        .session_name(session_name(&integration.name))
                        .session_length(integration.session_duration)
                        .region(Region::new(integration.region.to_string()))
                        .configure(&sdk_config(integration, None).await);
                    if let Some(external_id) = &integration.external_id {
                        builder = builder.external_id(external_id.expose());
                    }
                    let source = match instance_source {
                        Some(cache) => cached_source(cache.clone()),
                        None => SharedCredentialsProvider::new(instance_role),
                    };
                    SharedCredentialsProvider::new(builder.build_from_provider(source).await)
                }
            }
        }
        AuthMethod::Oidc => match issuer {
            Some(Ok(issuer)) => {
                let sts = aws_sdk_sts::Client::new(&sdk_config(integration, None).await);
                SharedCredentialsProvider::new(WebIdentity::new(issuer.clone(), sts, integration))
            }
            Some(Err(reason)) => SharedCredentialsProvider::new(Unavailable(reason.clone())),
            None => SharedCredentialsProvider::new(Unavailable(
                "the configuration has no [oidc] section".into(),
            )),
        },
    }
}

/// The SDK configuration for calls made on behalf of `integration`: its region, its
/// endpoint override, and (when given) its credentials.
pub async fn sdk_config(
    integration: &IntegrationConfig,
    credentials: Option<SharedCredentialsProvider>,
) -> SdkConfig {
    let mut loader = crate::aws_sdk::loader(integration.region.as_str());
    if let Some(endpoint) = &integration.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some(credentials) = credentials {
        loader = loader.credentials_provider(credentials);
    }
    loader.load().await
}

/// A recognisable STS session name: `autoheal-<integration>@<host>`, in STS's alphabet
/// (`[\w+=,.@-]`, 2-64 characters), so CloudTrail shows who assumed the role and from where.
pub fn session_name(integration: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let raw = if host.is_empty() {
        format!("autoheal-{integration}")
    } else {
        format!("autoheal-{integration}@{host}")
    };
    let clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    clean
}

/// The instance role through IMDSv2, asked afresh on every call, with the expiry IMDS gave.
///
/// `ImdsCredentialsProvider` does two things that are right for a plain SDK client and wrong
/// for us: it hands back its last credentials when IMDS fails, and when IMDS serves a
/// document whose `Expiration` has passed it invents a new one, now + 15–20 minutes
/// (`maybe_extend_expiration`). The cache in front must see the failure and the *real*
/// expiry, or it would give a sandbox expired keys with a made-up lifetime. So each call
/// uses a new provider (no last credentials) over one shared IMDS client (which keeps the
/// session token), and that provider's clock is frozen at the epoch: it asks its clock only
/// to decide whether an expiry has passed, so it never extends one, and the cache — on the
/// real clock — sees the document's own `Expiration`.
#[derive(Debug, Clone)]
pub struct InstanceRole {
    client: ImdsClient,
}

impl InstanceRole {
    /// IMDS at the standard endpoint (`AWS_EC2_METADATA_SERVICE_ENDPOINT` or 169.254.169.254).
    pub fn new() -> Self {
        Self {
            client: Self::client_builder().build(),
        }
    }

    /// IMDS at an explicit endpoint (tests, and hosts with a non-standard metadata address).
    pub fn with_endpoint(endpoint: &str) -> Result<Self, String> {
        let builder = Self::client_builder()
            .endpoint(endpoint)
            .map_err(|e| format!("not an IMDS endpoint: {endpoint:?} ({e})"))?;
        Ok(Self {
            client: builder.build(),
        })
    }

    fn client_builder() -> aws_config::imds::client::Builder {
        ImdsClient::builder()
            .connect_timeout(IMDS_TIMEOUT)
            .read_timeout(IMDS_TIMEOUT)
            .max_attempts(IMDS_ATTEMPTS)
    }
}

impl Default for InstanceRole {
    fn default() -> Self {
        Self::new()
    }
}

impl ProvideCredentials for InstanceRole {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let never_extend = ProviderConfig::without_region()
                .with_time_source(StaticTimeSource::new(SystemTime::UNIX_EPOCH));
            ImdsCredentialsProvider::builder()
                .configure(&never_extend)
                .imds_client(self.client.clone())
                .build()
                .provide_credentials()
                .await
        })
    }
}

/// The daemon's OIDC issuer as the broker sees it: none configured, or loaded, or why not.
pub type IssuerState = Option<Result<SharedIssuer, String>>;

/// `auth = "oidc"` without a usable issuer: fails with the reason, every time.
#[derive(Debug)]
struct Unavailable(String);

impl ProvideCredentials for Unavailable {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::ready(Err(CredentialsError::not_loaded(format!(
            "no usable OIDC issuer: {}",
            self.0
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_fit_sts_rules() {
        let name = session_name("production aws/with#odd chars and a very long name indeed");
        assert!(name.len() <= 64 && name.len() >= 2, "{name}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)),
            "{name}"
        );
        assert!(name.starts_with("autoheal-production-aws-with-odd"));
    }
}
