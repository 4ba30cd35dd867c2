//! `auth = "oidc"`: a token signed by the daemon's own issuer, exchanged for credentials with
//! `sts:AssumeRoleWithWebIdentity` (the SDK's STS client; the call is unsigned).
//!
//! The same source makes the integration's shared session and each sandbox's own
//! (`sandbox_session`: its subject, session tags and session policy).
//!
//! Every call signs a fresh token. STS answering `InvalidIdentityToken` is retried once with a
//! new token (a token can expire in flight, or reach STS before its key's JWKS refresh);
//! other failures go to the cache, which backs off and keeps serving valid credentials.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, error::CredentialsError, future};
use aws_sdk_sts::error::SdkError;
use aws_sdk_sts::operation::assume_role_with_web_identity::AssumeRoleWithWebIdentityError;

use super::sandbox_session::{SessionRequest, TAG_INTEGRATION, TAG_SANDBOX, session_length};
use super::source::session_name;
use crate::config::IntegrationConfig;
use crate::oidc::{DEFAULT_TOKEN_LIFETIME, SessionTagsClaim, SharedIssuer, subject};

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

    /// One `AssumeRoleWithWebIdentity` with a fresh token: the integration's shared session
    /// when `sandbox` is `None`, else that sandbox's own.
    async fn exchange(
        &self,
        sandbox: Option<(&str, &SessionRequest)>,
    ) -> Result<Credentials, SdkError<AssumeRoleWithWebIdentityError>> {
        let issuer = self.issuer.current();
        let now = SystemTime::now();
        let token = match sandbox {
            None => issuer.token(&self.subject, DEFAULT_TOKEN_LIFETIME, now),
            Some((integration, request)) => issuer.token_with_tags(
                &subject(integration, Some(&request.sandbox_id)),
                SessionTagsClaim::new([
                    (TAG_SANDBOX, request.sandbox_id.as_str()),
                    (TAG_INTEGRATION, integration),
                ]),
                DEFAULT_TOKEN_LIFETIME,
                now,
            ),
        }
        .map_err(SdkError::construction_failure)?;
        let call = self
            .sts
            .assume_role_with_web_identity()
            .role_arn(&self.role_arn)
            .web_identity_token(token.token);
        let call = match sandbox {
            None => call
                .role_session_name(&self.session_name)
                .duration_seconds(self.duration.as_secs() as i32),
            Some((_, request)) => call
                .role_session_name(request.session_name())
                .policy(&request.policy)
                .duration_seconds(session_length(request.lifetime, self.duration).as_secs() as i32),
        };
        let answer = call.send().await?;
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

    /// The exchange, retried once with a new token when STS rejects the token (it can expire
    /// in flight, or reach STS before its key's JWKS refresh).
    async fn exchange_retrying(
        &self,
        sandbox: Option<(&str, &SessionRequest)>,
    ) -> Result<Credentials, CredentialsError> {
        let result = match self.exchange(sandbox).await {
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_invalid_identity_token_exception()) =>
            {
                self.exchange(sandbox).await
            }
            other => other,
        };
        result.map_err(CredentialsError::provider_error)
    }

    /// A sandbox's own session: subject `integration:<name>:sandbox:<id>`, tags in the
    /// token's `https://aws.amazon.com/tags` claim, the request's session policy and length.
    pub async fn sandbox_session(
        &self,
        integration: &str,
        request: &SessionRequest,
    ) -> Result<Credentials, CredentialsError> {
        self.exchange_retrying(Some((integration, request))).await
    }
}

impl ProvideCredentials for WebIdentity {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.exchange_retrying(None))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use aws_config::{BehaviorVersion, Region, SdkConfig};
    use aws_smithy_http_client::test_util::{ReplayEvent, StaticReplayClient};
    use aws_smithy_types::body::SdkBody;

    use super::*;
    use crate::config::load_from_str;
    use crate::credentials::{FailureKind, classify};
    use crate::oidc::{Issuer, IssuerCell, KeyAlgorithm, KeyRing};

    // moto gap (TESTING.md 3/4): moto accepts any web-identity token and answers 500 under
    // enforcement, so STS's rejections are replayed here.
    fn sts_error(code: &str, message: &str) -> ReplayEvent {
        ReplayEvent::new(
            http::Request::builder()
                .uri("https://sts.us-east-1.amazonaws.com/")
                .body(SdkBody::empty())
                .unwrap(),
            http::Response::builder()
                .status(400)
                .body(SdkBody::from(format!(
                    "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error>\
                     <Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>\
                     <RequestId>r</RequestId></ErrorResponse>"
                )))
                .unwrap(),
        )
    }

    fn source(events: Vec<ReplayEvent>) -> (WebIdentity, StaticReplayClient, IntegrationConfig) {
        let dir = std::env::temp_dir().join(format!(
            "autoheal-webid-{}-{}",
            std::process::id(),
            fastrand::u32(..)
        ));
        KeyRing::generate(&dir, KeyAlgorithm::Es256, SystemTime::now()).unwrap();
        let config = load_from_str(&format!(
            "[oidc]\nissuer = \"https://oidc.example.com/acme\"\ntenant_slug = \"acme\"\nkey_dir = \"{}\"\n\n\
             [[integration]]\nname = \"prod\"\naccount_id = \"210987654321\"\nauth = \"oidc\"\n\
             role_arn = \"arn:aws:iam::210987654321:role/AutohealOidcRole\"\n",
            dir.display()
        ))
        .unwrap();
        let issuer = Arc::new(IssuerCell::new(
            Issuer::load(config.oidc.as_ref().unwrap()).unwrap(),
        ));
        let http = StaticReplayClient::new(events);
        let sdk = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .http_client(http.clone())
            .build();
        let integration = config.integrations[0].clone();
        let source = WebIdentity::new(issuer, aws_sdk_sts::Client::new(&sdk), &integration);
        (source, http, integration)
    }

    #[tokio::test]
    async fn an_invalid_token_is_retried_once_then_explained() {
        let (source, http, integration) = source(vec![
            sts_error(
                "InvalidIdentityToken",
                "Couldn't retrieve verification key from your identity provider",
            ),
            sts_error(
                "InvalidIdentityToken",
                "Couldn't retrieve verification key from your identity provider",
            ),
        ]);
        let err = source.provide_credentials().await.unwrap_err();
        assert_eq!(
            http.actual_requests().count(),
            2,
            "one retry with a fresh token"
        );
        let tokens: Vec<String> = http
            .actual_requests()
            .map(|r| String::from_utf8_lossy(r.body().bytes().unwrap()).into_owned())
            .collect();
        assert!(tokens[0].contains("Action=AssumeRoleWithWebIdentity"));
        assert_ne!(tokens[0], tokens[1], "each attempt carries a new token");
        let failure = classify(&err, &integration);
        assert_eq!(failure.kind, FailureKind::OidcTokenRejected, "{failure:?}");
        assert!(
            failure.message.contains("InvalidIdentityToken"),
            "{}",
            failure.message
        );
        assert!(failure.hint.contains("oidc publish"), "{}", failure.hint);
    }

    #[tokio::test]
    async fn a_denied_web_identity_points_at_the_trust_policy() {
        let (source, http, integration) = source(vec![sts_error(
            "AccessDenied",
            "Not authorized to perform sts:AssumeRoleWithWebIdentity",
        )]);
        let err = source.provide_credentials().await.unwrap_err();
        assert_eq!(http.actual_requests().count(), 1, "a denial is not retried");
        let failure = classify(&err, &integration);
        assert_eq!(failure.kind, FailureKind::OidcDenied);
        assert!(failure.hint.contains("trust-oidc"), "{}", failure.hint);
    }

    #[tokio::test]
    async fn a_rejected_claim_is_not_called_an_unreachable_provider() {
        let (source, _http, integration) = source(vec![sts_error(
            "IDPRejectedClaim",
            "Incorrect token audience",
        )]);
        let err = source.provide_credentials().await.unwrap_err();
        let failure = classify(&err, &integration);
        assert_eq!(failure.kind, FailureKind::OidcClaimRejected, "{failure:?}");
        assert!(failure.hint.contains(":aud"), "{}", failure.hint);
        assert!(!failure.hint.contains("public HTTPS"), "{}", failure.hint);
    }
}
