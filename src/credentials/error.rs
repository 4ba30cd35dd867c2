//! Why credentials could not be had, with a hint that says what to fix.
//!
//! The SDK's credential errors are classified into a few [`FailureKind`]s — the failures of
//! the setup guide's troubleshooting list — so metrics can count them by kind and Test
//! Connection can say what to do. No variant ever holds a secret.

use std::fmt;
use std::time::Duration;

use aws_config::imds::client::error::ImdsError;
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_sts::operation::assume_role::AssumeRoleError;
use aws_sdk_sts::operation::assume_role_with_web_identity::AssumeRoleWithWebIdentityError;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use serde::Serialize;

use crate::aws_error::code_and_message;
use crate::config::{AuthMethod, IntegrationConfig};

/// What kind of failure kept credentials away (also the `kind` label of failure metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// IMDS answered 404 for the role listing: no instance profile is attached.
    NoRoleAttached,
    /// IMDS did not answer (refused, unreachable, timed out).
    ImdsUnreachable,
    /// IMDS answered with an error status (500, 429 throttling, 401).
    ImdsError,
    /// The source answered with credentials that had already expired (IMDS during an
    /// outage of EC2's rotation): refused, never passed on with an invented expiry.
    ExpiredCredentials,
    /// STS refused `AssumeRole` (trust policy, permission, wrong ARN, external ID).
    AssumeRoleDenied,
    /// STS refused a sandbox's tagged session: the trust policy lacks `sts:TagSession`.
    TagSessionDenied,
    /// STS failed otherwise.
    StsError,
    /// The upstream call took longer than allowed.
    Timeout,
    /// The default chain (auth = "environment") found no credentials.
    NoCredentials,
    /// OIDC: no usable issuer (no [oidc] section, no signing key, an unreadable key).
    OidcIssuerUnusable,
    /// OIDC: STS rejected the token (`InvalidIdentityToken`).
    OidcTokenRejected,
    /// OIDC: STS refused `AssumeRoleWithWebIdentity` (`AccessDenied`: the trust policy).
    OidcDenied,
    /// OIDC: STS could not fetch the issuer's keys (`IDPCommunicationError`).
    OidcProviderUnreachable,
    /// OIDC: the provider refused a claim of the token (`IDPRejectedClaim`).
    OidcClaimRejected,
    /// Anything else; the message says what.
    Other,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoRoleAttached => "no_role_attached",
            Self::ImdsUnreachable => "imds_unreachable",
            Self::ImdsError => "imds_error",
            Self::ExpiredCredentials => "expired_credentials",
            Self::AssumeRoleDenied => "assume_role_denied",
            Self::TagSessionDenied => "tag_session_denied",
            Self::StsError => "sts_error",
            Self::Timeout => "timeout",
            Self::NoCredentials => "no_credentials",
            Self::OidcIssuerUnusable => "oidc_issuer_unusable",
            Self::OidcTokenRejected => "oidc_token_rejected",
            Self::OidcDenied => "oidc_denied",
            Self::OidcProviderUnreachable => "oidc_provider_unreachable",
            Self::OidcClaimRejected => "oidc_claim_rejected",
            Self::Other => "other",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One failed attempt to get credentials from the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceFailure {
    pub kind: FailureKind,
    /// What the SDK said (no secrets: credential errors never carry them).
    pub message: String,
    /// What to fix.
    pub hint: String,
}

impl fmt::Display for SourceFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}). Hint: {}", self.message, self.kind, self.hint)
    }
}

/// Why `credentials_valid_for` could not answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CredentialError {
    #[error("no integration named {name:?} (configured: {known})")]
    UnknownIntegration { name: String, known: String },
    #[error("integration {integration:?}: no credentials: {failure}")]
    Unavailable {
        integration: String,
        failure: Box<SourceFailure>,
    },
    #[error(
        "integration {integration:?}: the credentials on hand expire in {}s but {}s were asked for{}; {advice}",
        remaining.as_secs(), needed.as_secs(),
        last_failure.as_ref().map(|f| format!(" (last refresh failed: {f})")).unwrap_or_default()
    )]
    ExpiresTooSoon {
        integration: String,
        remaining: Duration,
        needed: Duration,
        last_failure: Option<Box<SourceFailure>>,
        advice: String,
    },
}

impl CredentialError {
    /// The failure kind, when the source failed.
    pub fn kind(&self) -> Option<FailureKind> {
        match self {
            Self::Unavailable { failure, .. } => Some(failure.kind),
            Self::ExpiresTooSoon { last_failure, .. } => last_failure.as_ref().map(|f| f.kind),
            Self::UnknownIntegration { .. } => None,
        }
    }
}

/// True when this process runs inside a container, where IMDS's hop limit matters.
fn in_container() -> bool {
    std::path::Path::new("/.dockerenv").exists()
        || std::fs::read_to_string("/proc/1/cgroup")
            .map(|c| c.contains("docker") || c.contains("containerd") || c.contains("kubepods"))
            .unwrap_or(false)
}

/// Classifies an SDK credentials error by walking its source chain: an IMDS error says
/// whether IMDS was unreachable or answered with an error status; an STS service error
/// carries its code. Text is only a fallback for errors the SDK keeps private.
pub fn classify(err: &CredentialsError, integration: &IntegrationConfig) -> SourceFailure {
    // Our own cache in the chain (the instance role behind an assumed role) classified the
    // failure already, with the IMDS error it saw: keep its kind and hint.
    if let Some(CredentialError::Unavailable { failure, .. }) =
        find_in_chain::<CredentialError>(err)
    {
        return (**failure).clone();
    }
    let rendered = DisplayErrorContext(err).to_string();
    let (kind, message) = match find_in_chain::<ImdsError>(err) {
        Some(ImdsError::ErrorResponse(answer)) => {
            let status = answer.response().status().as_u16();
            let kind = if status == 404 {
                FailureKind::NoRoleAttached
            } else {
                FailureKind::ImdsError
            };
            (kind, format!("IMDS answered HTTP {status}"))
        }
        Some(ImdsError::FailedToLoadToken(token)) if token.is_dispatch_failure() => (
            FailureKind::ImdsUnreachable,
            format!("could not reach IMDS for a session token: {rendered}"),
        ),
        Some(ImdsError::FailedToLoadToken(_)) => (
            FailureKind::ImdsError,
            format!("IMDS refused a session token: {rendered}"),
        ),
        Some(ImdsError::IoError(_) | ImdsError::Unexpected(_)) => (
            FailureKind::ImdsUnreachable,
            format!("IMDS did not answer: {rendered}"),
        ),
        Some(_) => (FailureKind::ImdsError, rendered),
        None => {
            let kind = classify_without_imds(err, &rendered, integration);
            let assume_role = find_in_chain::<SdkError<AssumeRoleError, HttpResponse>>(err);
            let web_identity =
                find_in_chain::<SdkError<AssumeRoleWithWebIdentityError, HttpResponse>>(err);
            let message = if kind == FailureKind::NoRoleAttached {
                "IMDS answered HTTP 404 for the instance's IAM role: none is attached".to_owned()
            } else if let Some((code, text)) = web_identity.map(code_and_message) {
                format!(
                    "sts:AssumeRoleWithWebIdentity failed: {}{}",
                    code.unwrap_or_else(|| rendered.clone()),
                    text.map(|t| format!(": {t}")).unwrap_or_default()
                )
            } else {
                match assume_role.map(code_and_message) {
                    Some((Some(code), Some(text))) => {
                        format!("sts:AssumeRole failed: {code}: {text}")
                    }
                    Some((Some(code), None)) => format!("sts:AssumeRole failed: {code}"),
                    _ => rendered,
                }
            };
            (kind, message)
        }
    };
    SourceFailure {
        kind,
        message,
        hint: hint(kind, integration),
    }
}

fn classify_without_imds(
    err: &CredentialsError,
    rendered: &str,
    integration: &IntegrationConfig,
) -> FailureKind {
    let lower = rendered.to_lowercase();
    if integration.auth == AuthMethod::Oidc {
        let code = find_in_chain::<SdkError<AssumeRoleWithWebIdentityError, HttpResponse>>(err)
            .and_then(|e| code_and_message(e).0);
        return match code.as_deref() {
            Some("InvalidIdentityToken") => FailureKind::OidcTokenRejected,
            Some("AccessDenied") => FailureKind::OidcDenied,
            Some("IDPCommunicationError") => FailureKind::OidcProviderUnreachable,
            Some("IDPRejectedClaim") => FailureKind::OidcClaimRejected,
            Some(_) => FailureKind::StsError,
            None if lower.contains("no usable oidc issuer") => FailureKind::OidcIssuerUnusable,
            None => FailureKind::StsError,
        };
    }
    if lower.contains("404 from imds") {
        return FailureKind::NoRoleAttached;
    }
    if lower.contains("imds") {
        return FailureKind::ImdsUnreachable;
    }
    if integration.role_arn.is_some() {
        let code = find_in_chain::<SdkError<AssumeRoleError, HttpResponse>>(err)
            .and_then(|e| code_and_message(e).0);
        return match code.as_deref() {
            Some("AccessDenied") => FailureKind::AssumeRoleDenied,
            _ if lower.contains("not authorized to perform: sts:assumerole") => {
                FailureKind::AssumeRoleDenied
            }
            _ => FailureKind::StsError,
        };
    }
    if integration.auth == AuthMethod::Environment
        && matches!(err, CredentialsError::CredentialsNotLoaded(_))
    {
        return FailureKind::NoCredentials;
    }
    FailureKind::Other
}

/// The first error of type `T` in `err`'s source chain.
fn find_in_chain<'a, T: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// The failure of an upstream call that took longer than `limit`.
pub fn timed_out(limit: Duration, integration: &IntegrationConfig) -> SourceFailure {
    SourceFailure {
        kind: FailureKind::Timeout,
        message: format!(
            "the credential source did not answer within {}s",
            limit.as_secs()
        ),
        hint: hint(FailureKind::Timeout, integration),
    }
}

/// What to fix, for each kind of failure.
pub fn hint(kind: FailureKind, integration: &IntegrationConfig) -> String {
    let role = integration
        .role_arn
        .as_ref()
        .map(|r| r.to_string())
        .unwrap_or_default();
    match kind {
        FailureKind::NoRoleAttached => "IMDS answered 404 for the role listing: no IAM role is attached to this instance. \
             Attach an instance profile: aws ec2 associate-iam-instance-profile --instance-id <id> \
             --iam-instance-profile Name=<profile> (see docs/setup-instance-role.md)."
            .into(),
        FailureKind::ImdsUnreachable => {
            let mut text = String::from(
                "the instance metadata service (IMDS) did not answer. Check it is enabled: \
                 aws ec2 modify-instance-metadata-options --instance-id <id> --http-endpoint enabled.",
            );
            if in_container() {
                text.push_str(
                    " autoheal runs in a container: IMDSv2 answers only as many network hops as \
                     the hop limit (default 1), so a container on a bridge network gets no answer. \
                     Run the daemon with host networking (the compose file does), or raise the \
                     limit: aws ec2 modify-instance-metadata-options --instance-id <id> \
                     --http-put-response-hop-limit 2.",
                );
            }
            text
        }
        FailureKind::ImdsError => "IMDS answered with an error (throttling or a fault). autoheal retries with \
             backoff and keeps serving still-valid credentials meanwhile; if it persists, check \
             the instance's metadata options (tokens required, hop limit)."
            .into(),
        FailureKind::ExpiredCredentials => "the credential source served credentials that had already expired. On EC2 \
             this means the instance profile's credentials are not being rotated (an IMDS or EC2 \
             problem); autoheal keeps serving credentials that are still valid, refuses sandboxes \
             it cannot cover, and retries with backoff. If it lasts, check the instance's IAM role \
             association (aws ec2 describe-iam-instance-profile-associations) and the host's clock."
            .into(),
        FailureKind::AssumeRoleDenied => format!(
            "sts:AssumeRole on {role} was denied. Check: (1) the role's trust policy in account {} \
             names this instance's role as principal (and requires the same sts:ExternalId as \
             external_id); (2) the instance role's own policy allows sts:AssumeRole on {role}; \
             (3) the role ARN is right and the role exists. `autoheal policy trust-cross-account` \
             prints the trust policy to attach.",
            integration
                .role_arn
                .as_ref()
                .map(|r| r.account_id().to_string())
                .unwrap_or_default()
        ),
        FailureKind::TagSessionDenied => format!(
            "STS refused the sandbox's own session on {role}: each sandbox's session carries the \
             session tags autoheal:sandbox and autoheal:integration, so the role's trust policy \
             must allow sts:TagSession next to {}. `autoheal policy {}` prints the trust policy \
             with it. Or set session = \"shared\" on the integration to give every sandbox the \
             integration's one session (no per-sandbox name, tags or narrowing).",
            match integration.auth {
                AuthMethod::Oidc => "sts:AssumeRoleWithWebIdentity",
                _ => "sts:AssumeRole",
            },
            match integration.auth {
                AuthMethod::Oidc => "trust-oidc --account <id>",
                _ => "trust-cross-account --source-role <instance role ARN>",
            }
        ),
        FailureKind::StsError => format!(
            "STS failed while assuming {role}. If it persists, check the region's STS endpoint is \
             reachable and the session duration ({}) is within the role's maximum.",
            humantime::format_duration(integration.session_duration)
        ),
        FailureKind::Timeout => "the credential source did not answer in time. On EC2, IMDS should answer in \
             milliseconds: check the instance's metadata options and, in a container, the hop limit."
            .into(),
        FailureKind::NoCredentials => "the AWS SDK's default chain found no credentials (auth = \"environment\"). \
             Set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE, or use \
             auth = \"instance_role\" on EC2."
            .into(),
        FailureKind::OidcIssuerUnusable => "the daemon cannot sign OIDC tokens: check the [oidc] section (issuer, \
             tenant_slug, key_dir) and create a key with `autoheal oidc keygen` (serve creates \
             one on first start); keys must be mode 0600."
            .into(),
        FailureKind::OidcTokenRejected => "STS rejected the token (InvalidIdentityToken). Check: (1) the IAM OIDC \
             provider's URL is exactly oidc.issuer (https, no trailing slash); (2) STS can fetch \
             <issuer>/.well-known/openid-configuration and jwks.json over public HTTPS — publish \
             them with `autoheal oidc publish --out DIR` after every `oidc keygen`; (3) the \
             host's clock is right (NTP). autoheal retried once with a fresh token."
            .into(),
        FailureKind::OidcDenied => format!(
            "sts:AssumeRoleWithWebIdentity on {role} was denied: the role's trust policy must name \
             the OIDC provider as Federated principal and require the audience \
             ({{tenant_slug}}-oidc-service) in its :aud condition. `autoheal policy trust-oidc \
             --account <id>` prints it; also check the role ARN."
        ),
        FailureKind::OidcProviderUnreachable => "STS could not reach the issuer to fetch its keys (IDPCommunicationError). \
             The published documents must be on public HTTPS (S3 + CloudFront); autoheal retries \
             with backoff meanwhile."
            .into(),
        FailureKind::OidcClaimRejected => "STS reached the issuer but a claim of the token was rejected \
             (IDPRejectedClaim). Check that the IAM OIDC provider's audience list (client IDs) holds \
             {tenant_slug}-oidc-service, and that the role's trust policy conditions on :aud and :sub \
             match what the tokens carry (`autoheal oidc token --integration NAME` shows them; \
             `autoheal policy trust-oidc` prints a matching policy)."
            .into(),
        FailureKind::Other => "see the message above; run `autoheal check` for a full diagnosis.".into(),
    }
}
