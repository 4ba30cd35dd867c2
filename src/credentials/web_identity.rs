//! `auth = "oidc"`: a token signed by the daemon's own issuer, exchanged for credentials with
//! `sts:AssumeRoleWithWebIdentity` (the SDK's STS client; the call is unsigned).
//!
//! Every call signs a fresh token. STS answering `InvalidIdentityToken` is retried once with a
//! new token (a token can expire in flight, or reach STS before its key's JWKS refresh);
//! other failures go to the cache, which backs off and keeps serving valid credentials.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, error::CredentialsError, future};
use aws_sdk_sts::error::SdkError;
use aws_sdk_sts::operation::assume_role_with_web_identity::AssumeRoleWithWebIdentityError;

use super::source::session_name;
use crate::config::IntegrationConfig;
use crate::oidc::{DEFAULT_TOKEN_LIFETIME, SharedIssuer, subject};

#[derive(Debug, Clone)]
pub struct WebIdentity {
    issuer: SharedIssuer,
    sts: aws_sdk_sts::Client,
    role_arn: String,
    session_name: String,
    subject: String,
    duration: Duration,
}

impl WebIdentity {
    pub fn new(
        issuer: SharedIssuer,
        sts: aws_sdk_sts::Client,
        integration: &IntegrationConfig,
    ) -> Self {
        Self {
            issuer,
            sts,
            role_arn: integration
                .role_arn
                .as_ref()
                .map(|r| r.to_string())
                .unwrap_or_default(),
            session_name: session_name(&integration.name),
            subject: subject(&integration.name, None),
            duration: integration.session_duration,
        }
    }

    async fn exchange(&self) -> Result<Credentials, SdkError<AssumeRoleWithWebIdentityError>> {
        let token = self
            .issuer
            .token(&self.subject, DEFAULT_TOKEN_LIFETIME, SystemTime::now())
            .map_err(SdkError::construction_failure)?;
        let answer = self
            .sts
            .assume_role_with_web_identity()
            .role_arn(&self.role_arn)
            .role_session_name(&self.session_name)
            .web_identity_token(token.token)
            .duration_seconds(self.duration.as_secs() as i32)
            .send()
            .await?;
        let creds = answer
            .credentials()
            .ok_or_else(|| SdkError::construction_failure("STS answered without credentials"))?;
        Ok(Credentials::new(
            creds.access_key_id(),
            creds.secret_access_key(),
            Some(creds.session_token().to_owned()),
            SystemTime::try_from(*creds.expiration()).ok(),
            "autoheal-oidc",
        ))
    }
}

impl ProvideCredentials for WebIdentity {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let first = self.exchange().await;
            let result = match first {
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_invalid_identity_token_exception()) =>
                {
                    self.exchange().await
                }
                other => other,
            };
            result.map_err(CredentialsError::provider_error)
        })
    }
}
