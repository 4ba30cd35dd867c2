//! A sandbox's own STS session: one `sts:AssumeRole` (or `AssumeRoleWithWebIdentity`) per
//! sandbox, so what one sandbox holds is narrowed, short-lived and traceable to it.
//!
//! Each session is
//! - **named after the sandbox** (`RoleSessionName` = `autoheal-sandbox-<id>`): CloudTrail's
//!   `assumed-role/<role>/autoheal-sandbox-<id>` says which sandbox made each call;
//! - **tagged** `autoheal:sandbox` and `autoheal:integration` (AssumeRole's `Tags`; for web
//!   identity, the token's `https://aws.amazon.com/tags` claim). Either way the role's trust
//!   policy must allow `sts:TagSession`;
//! - **narrowed** by an inline session policy (built by the caller from the tool catalogue):
//!   STS grants the intersection with the role's own policies;
//! - **as long as the sandbox** (at least STS's 15-minute minimum).
//!
//! The source credentials of an `AssumeRole` come from the broker's cached instance role, so
//! IMDS is not asked per sandbox; web identity needs none (the daemon signs the token).

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, future};
use aws_sdk_sts::types::Tag;
use std::sync::Arc;

use super::cache::CredentialCache;
use super::error::{CredentialError, SourceFailure, classify};
use super::web_identity::WebIdentity;
use crate::config::{IntegrationConfig, MIN_SESSION, ROLE_CHAINING_MAX_SESSION, Secret};

/// Tag keys every sandbox session carries (for CloudTrail, and for conditions in policies).
pub const TAG_SANDBOX: &str = "autoheal:sandbox";
pub const TAG_INTEGRATION: &str = "autoheal:integration";
/// How long the source credentials must still be valid when a session is asked for: the
/// STS call takes well under a second; a minute forgives a slow STS.
const SOURCE_VALIDITY: Duration = Duration::from_secs(60);

/// What one sandbox's session is asked to be.
#[derive(Debug, Clone)]
pub struct SessionRequest {
    pub sandbox_id: String,
    /// The inline session policy document (JSON).
    pub policy: String,
    /// How long the credentials must last: the sandbox's life plus its start margin.
    pub lifetime: Duration,
}

impl SessionRequest {
    /// `RoleSessionName`: `autoheal-sandbox-<id>` (STS allows `[\w+=,.@-]`, 2-64).
    pub fn session_name(&self) -> String {
        sandbox_session_name(&self.sandbox_id)
    }
}

/// The STS session name of a sandbox's own session.
pub fn sandbox_session_name(sandbox_id: &str) -> String {
    format!("autoheal-sandbox-{sandbox_id}")
}

/// The `DurationSeconds` asked of STS for credentials that must last `lifetime`: rounded up
/// to a second, at least STS's minimum, at most `cap` (the caller then sees an expiry
/// earlier than it needs and shortens the sandbox's deadline).
pub fn session_length(lifetime: Duration, cap: Duration) -> Duration {
    let whole = Duration::from_secs(lifetime.as_secs() + u64::from(lifetime.subsec_nanos() > 0));
    whole.max(MIN_SESSION).min(cap)
}

/// STS's limit on a session tag's value.
const MAX_TAG_VALUE_CHARS: usize = 256;

/// A tag value STS accepts (`[\p{L}\p{Z}\p{N}_.:/=+\-@]`, at most 256): sandbox ids and
/// integration names already are; anything else becomes `-`.
fn tag_value(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || " _.:/=+-@".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(MAX_TAG_VALUE_CHARS)
        .collect()
}

/// How one integration makes its sandboxes' sessions.
#[derive(Debug, Clone)]
pub enum SessionMinter {
    /// `sts:AssumeRole` of `role_arn`, signed with the instance role's cached credentials.
    AssumeRole {
        sts: aws_sdk_sts::Client,
        role_arn: String,
        external_id: Option<Secret>,
    },
    /// `sts:AssumeRoleWithWebIdentity` with a token the daemon signs for the sandbox.
    WebIdentity(WebIdentity),
}

impl SessionMinter {
    /// An STS client for `AssumeRole` calls signed with `source`'s credentials. The SDK's
    /// identity cache is off: `source` is our lifetime-aware cache already.
    pub fn assume_role(
        sdk: &aws_config::SdkConfig,
        source: Arc<CredentialCache>,
        integration: &IntegrationConfig,
    ) -> Self {
        let config = aws_sdk_sts::config::Builder::from(sdk)
            .credentials_provider(CachedSource(source))
            .identity_cache(aws_sdk_sts::config::IdentityCache::no_cache())
            .build();
        Self::AssumeRole {
            sts: aws_sdk_sts::Client::from_conf(config),
            role_arn: integration
                .role_arn
                .as_ref()
                .map(|r| r.to_string())
                .unwrap_or_default(),
            external_id: integration.external_id.clone(),
        }
    }

    /// One session for one sandbox: exactly one STS call (web identity: one retry with a
    /// fresh token when STS rejects the first, as for the shared session).
    pub async fn mint(
        &self,
        integration: &IntegrationConfig,
        request: &SessionRequest,
    ) -> Result<Credentials, CredentialError> {
        let failed = |err: CredentialsError| CredentialError::Unavailable {
            integration: integration.name.clone(),
            failure: Box::new(session_failure(&err, integration)),
        };
        match self {
            Self::AssumeRole {
                sts,
                role_arn,
                external_id,
            } => {
                let tags = [
                    (TAG_SANDBOX, request.sandbox_id.as_str()),
                    (TAG_INTEGRATION, integration.name.as_str()),
                ]
                .into_iter()
                .map(|(key, value)| Tag::builder().key(key).value(tag_value(value)).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| failed(CredentialsError::unhandled(e)))?;
                let cap = integration.session_duration.min(ROLE_CHAINING_MAX_SESSION);
                let length = session_length(request.lifetime, cap);
                let answer = sts
                    .assume_role()
                    .role_arn(role_arn)
                    .role_session_name(request.session_name())
                    .policy(&request.policy)
                    .set_tags(Some(tags))
                    .set_external_id(external_id.as_ref().map(|id| id.expose().to_owned()))
                    .duration_seconds(length.as_secs() as i32)
                    .send()
                    .await
                    .map_err(|e| failed(CredentialsError::provider_error(e)))?;
                let creds = answer.credentials().ok_or_else(|| {
                    failed(CredentialsError::unhandled(
                        "STS answered without credentials",
                    ))
                })?;
                Ok(Credentials::new(
                    creds.access_key_id(),
                    creds.secret_access_key(),
                    Some(creds.session_token().to_owned()),
                    SystemTime::try_from(*creds.expiration()).ok(),
                    "autoheal-sandbox-session",
                ))
            }
            Self::WebIdentity(source) => source
                .sandbox_session(&integration.name, request)
                .await
                .map_err(failed),
        }
    }
}

/// A sandbox-session failure classified like the integration's own, with the one hint only
/// a tagged session needs: a trust policy without `sts:TagSession`.
fn session_failure(err: &CredentialsError, integration: &IntegrationConfig) -> SourceFailure {
    let mut failure = classify(err, integration);
    if failure.message.to_lowercase().contains("sts:tagsession") {
        failure.kind = super::FailureKind::TagSessionDenied;
        failure.hint = super::hint(failure.kind, integration);
    }
    failure
}

/// The instance role's cached credentials as an SDK credentials provider (for signing the
/// sandbox sessions' `AssumeRole`).
#[derive(Debug)]
struct CachedSource(Arc<CredentialCache>);

impl ProvideCredentials for CachedSource {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            self.0
                .valid_for(SOURCE_VALIDITY)
                .await
                .map_err(CredentialsError::provider_error)
        })
    }
}

/// The cached instance role as a provider others can chain on (the shared session's
/// `AssumeRoleProvider`).
pub fn cached_source(
    cache: Arc<CredentialCache>,
) -> aws_credential_types::provider::SharedCredentialsProvider {
    aws_credential_types::provider::SharedCredentialsProvider::new(CachedSource(cache))
}

#[cfg(test)]
mod tests {
    use aws_config::{BehaviorVersion, Region, SdkConfig};
    use aws_credential_types::credential_fn::provide_credentials_fn;
    use aws_credential_types::provider::SharedCredentialsProvider;
    use aws_smithy_http_client::test_util::{ReplayEvent, StaticReplayClient};
    use aws_smithy_types::body::SdkBody;

    use super::*;
    use crate::config::load_from_str;
    use crate::credentials::clock::SystemClock;
    use crate::credentials::{FailureKind, RefreshPolicy};

    // moto gap (TESTING.md 4): moto accepts session tags whatever the trust policy says, so
    // STS's refusal of a tagged session is replayed here.
    #[tokio::test]
    async fn a_trust_policy_without_tag_session_gets_a_hint_that_says_so() {
        let config = load_from_str(
            "[[integration]]\nname = \"prod\"\naccount_id = \"123456789012\"\n\
             auth = \"instance_role\"\nrole_arn = \"arn:aws:iam::123456789012:role/AutohealReadOnlyRole\"\n",
        )
        .unwrap();
        let integration = config.integrations[0].clone();
        let source = Arc::new(CredentialCache::new(
            integration.clone(),
            SharedCredentialsProvider::new(provide_credentials_fn(|| async {
                Ok(Credentials::new(
                    "ASIAINSTANCE",
                    "secret",
                    Some("token".into()),
                    Some(SystemTime::now() + Duration::from_secs(3600)),
                    "test",
                ))
            })),
            Arc::new(SystemClock),
            RefreshPolicy::for_sandboxes(Duration::from_secs(900)),
        ));
        let http = StaticReplayClient::new(vec![ReplayEvent::new(
            http::Request::builder()
                .uri("https://sts.us-east-1.amazonaws.com/")
                .body(SdkBody::empty())
                .unwrap(),
            http::Response::builder()
                .status(403)
                .body(SdkBody::from(
                    "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error>\
                     <Type>Sender</Type><Code>AccessDenied</Code><Message>User: \
                     arn:aws:sts::123456789012:assumed-role/AutohealInstanceRole/i-0abc is not \
                     authorized to perform: sts:TagSession on resource: \
                     arn:aws:iam::123456789012:role/AutohealReadOnlyRole</Message></Error>\
                     <RequestId>r</RequestId></ErrorResponse>",
                ))
                .unwrap(),
        )]);
        let sdk = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .http_client(http.clone())
            .build();
        let minter = SessionMinter::assume_role(&sdk, source, &integration);
        let request = SessionRequest {
            sandbox_id: "0123456789ab".into(),
            policy: "{}".into(),
            lifetime: Duration::from_secs(90),
        };
        let err = minter.mint(&integration, &request).await.unwrap_err();
        let CredentialError::Unavailable { failure, .. } = &err else {
            panic!("{err}");
        };
        assert_eq!(failure.kind, FailureKind::TagSessionDenied, "{failure:?}");
        assert!(failure.hint.contains("sts:TagSession"), "{}", failure.hint);
        assert!(
            failure.hint.contains("trust-cross-account"),
            "{}",
            failure.hint
        );
        assert!(
            failure.hint.contains("session = \"shared\""),
            "{}",
            failure.hint
        );
        let sent = http.actual_requests().next().unwrap();
        let body = String::from_utf8_lossy(sent.body().bytes().unwrap()).into_owned();
        assert!(
            body.contains("Tags.member.1.Key=autoheal%3Asandbox"),
            "{body}"
        );
        assert!(
            body.contains("RoleSessionName=autoheal-sandbox-0123456789ab"),
            "{body}"
        );
        assert_eq!(http.actual_requests().count(), 1, "a denial is not retried");
    }

    #[test]
    fn session_lengths_cover_the_sandbox_within_sts_limits() {
        let hour = ROLE_CHAINING_MAX_SESSION;
        assert_eq!(session_length(Duration::from_secs(90), hour), MIN_SESSION);
        assert_eq!(
            session_length(Duration::from_millis(1_800_500), hour),
            Duration::from_secs(1801)
        );
        assert_eq!(session_length(Duration::from_secs(7200), hour), hour);
    }

    #[test]
    fn session_names_and_tags_fit_sts_alphabets() {
        let name = sandbox_session_name("0123456789ab");
        assert_eq!(name, "autoheal-sandbox-0123456789ab");
        assert!(name.len() <= 64);
        assert_eq!(tag_value("prod-eu.1"), "prod-eu.1");
        assert_eq!(tag_value("a#b"), "a-b");
    }
}
