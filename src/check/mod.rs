//! Test Connection: can this integration's credentials be had, whose are they, and what may
//! they read? Shared by `autoheal check` and the API's `POST /v1/integrations/{name}/test`.
//!
//! Steps per integration: credentials from the broker; `sts:GetCallerIdentity`, compared with
//! the configured `account_id`; then every IAM action the tools use, by capability
//! (`probes.rs`, `actions.rs`). Every failure carries a hint that says what to fix;
//! `render.rs` prints it for people.

mod actions;
mod probes;
mod render;

use std::time::Duration;

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_types::error::display::DisplayErrorContext;
use serde::Serialize;

use crate::config::{IntegrationConfig, MIN_SESSION};
use crate::credentials::{
    CredentialBroker, CredentialError, CredentialState, FailureKind, Health, SessionRequest,
    rfc3339, sdk_config,
};
use crate::exit_code::Exit;

pub use actions::ActionReport;
pub use probes::{CapabilityReport, Status};
pub use render::render_text;

/// Test Connection needs credentials only for its own few calls.
const CHECK_CREDENTIAL_LIFETIME: Duration = Duration::from_secs(60);

/// Whose credentials they are.
#[derive(Debug, Clone, Serialize)]
pub struct Identity {
    pub account: String,
    pub arn: String,
}

/// How credentials went.
#[derive(Debug, Clone, Serialize)]
pub struct CredentialReport {
    /// `ok`, `degraded` (valid now, but the last refresh failed) or `unavailable`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// Test Connection's answer for one integration.
#[derive(Debug, Clone, Serialize)]
pub struct IntegrationReport {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    pub region: String,
    pub auth: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    pub credentials: CredentialReport,
    /// Absent when no credentials could be had, or GetCallerIdentity failed.
    pub identity: Option<Identity>,
    /// False when the identity's account differs from `account_id`.
    pub account_matches: bool,
    /// Problems with the identity itself (account mismatch, GetCallerIdentity failing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_hint: Option<String>,
    pub capabilities: Vec<CapabilityReport>,
    /// For per-sandbox sessions: whether a sandbox's own session can be had (a trust
    /// policy without `sts:TagSession` fails here, not at the first sandbox).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox_session: Option<SessionReport>,
    /// What works but is weaker than it should be (a bare instance role).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Whether a sandbox's own STS session could be made, as a sandbox would get it.
#[derive(Debug, Clone, Serialize)]
pub struct SessionReport {
    pub status: Status,
    /// The session name tried (`autoheal-sandbox-check-…`).
    pub session_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl IntegrationReport {
    /// How this integration alone would make `check` exit.
    pub fn exit(&self) -> Exit {
        if self.credentials.status == "unavailable" {
            Exit::Unavailable
        } else if !self.account_matches
            || self.capabilities.iter().any(|c| c.status == Status::Denied)
            || self
                .sandbox_session
                .as_ref()
                .is_some_and(|s| s.status == Status::Denied)
        {
            Exit::NoPerm
        } else if self.identity.is_none()
            || self.capabilities.iter().any(|c| c.status == Status::Error)
            || self
                .sandbox_session
                .as_ref()
                .is_some_and(|s| s.status == Status::Error)
        {
            Exit::Unavailable
        } else {
            Exit::Ok
        }
    }
}

/// `{"integrations": [...]}`, as `autoheal check --output json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub integrations: Vec<IntegrationReport>,
}

impl CheckReport {
    /// 69 when credentials cannot be had anywhere, else 77 when anything is denied or an
    /// account differs, else 69 for other failures, else 0.
    pub fn exit(&self) -> Exit {
        let exits: Vec<Exit> = self.integrations.iter().map(|i| i.exit()).collect();
        let unavailable_creds = self
            .integrations
            .iter()
            .any(|i| i.credentials.status == "unavailable");
        if unavailable_creds {
            Exit::Unavailable
        } else if exits.contains(&Exit::NoPerm) {
            Exit::NoPerm
        } else if exits.contains(&Exit::Unavailable) {
            Exit::Unavailable
        } else {
            Exit::Ok
        }
    }
}

/// Tests every integration in `names` concurrently.
pub async fn check_all(
    broker: &CredentialBroker,
    integrations: &[IntegrationConfig],
) -> CheckReport {
    let reports = integrations.iter().map(|i| test_connection(broker, i));
    CheckReport {
        integrations: futures_util::future::join_all(reports).await,
    }
}

/// Test Connection for one integration.
pub async fn test_connection(
    broker: &CredentialBroker,
    integration: &IntegrationConfig,
) -> IntegrationReport {
    let mut report = IntegrationReport {
        name: integration.name.clone(),
        account_id: integration.account_id.as_ref().map(|a| a.to_string()),
        region: integration.region.to_string(),
        auth: integration.auth.to_string(),
        role_arn: integration.role_arn.as_ref().map(|r| r.to_string()),
        credentials: CredentialReport {
            status: "ok",
            expires_at: None,
            kind: None,
            error: None,
            hint: None,
        },
        identity: None,
        account_matches: false,
        identity_hint: None,
        capabilities: Vec::new(),
        sandbox_session: None,
        warnings: integration.instance_profile_warning().into_iter().collect(),
    };
    let credentials = match broker
        .credentials_valid_for(&integration.name, CHECK_CREDENTIAL_LIFETIME)
        .await
    {
        Ok(credentials) => credentials,
        Err(err) => {
            report.credentials = unavailable(&err);
            return report;
        }
    };
    report.credentials.expires_at = credentials.expiry().map(rfc3339);
    if let Some(state) = broker
        .states()
        .into_iter()
        .find(|s| s.integration == integration.name)
    {
        degraded_if_failing(&mut report.credentials, &state);
    }
    let config = sdk_config(
        integration,
        Some(SharedCredentialsProvider::new(credentials)),
    )
    .await;

    let (identity, capabilities, sandbox_session) = tokio::join!(
        aws_sdk_sts::Client::new(&config)
            .get_caller_identity()
            .send(),
        Box::pin(probes::probe_all(&config, integration)),
        Box::pin(sandbox_session(broker, integration)),
    );
    report.capabilities = capabilities;
    report.sandbox_session = sandbox_session;
    match identity {
        Ok(answer) => {
            let account = answer.account().unwrap_or_default().to_owned();
            report.account_matches = integration
                .account_id
                .as_ref()
                .is_none_or(|expected| expected.as_str() == account);
            if !report.account_matches {
                report.identity_hint = Some(format!(
                    "the credentials belong to account {account}, but the integration says {}: fix \
                     account_id, or the role_arn so that it points into account {}",
                    integration
                        .account_id
                        .as_ref()
                        .map(|a| a.as_str())
                        .unwrap_or_default(),
                    integration
                        .account_id
                        .as_ref()
                        .map(|a| a.as_str())
                        .unwrap_or_default(),
                ));
            }
            report.identity = Some(Identity {
                account,
                arn: answer.arn().unwrap_or_default().to_owned(),
            });
        }
        Err(err) => {
            report.identity_hint = Some(format!(
                "sts:GetCallerIdentity failed ({}); it needs no permission, so the credentials or \
                 the STS endpoint are at fault",
                DisplayErrorContext(&err)
            ));
        }
    }
    report
}

/// Makes one sandbox session as a sandbox would get it (name, tags, the whole session
/// policy, STS's shortest length), when the integration has them.
async fn sandbox_session(
    broker: &CredentialBroker,
    integration: &IntegrationConfig,
) -> Option<SessionReport> {
    if !integration.per_sandbox_sessions() {
        return None;
    }
    let request = SessionRequest {
        sandbox_id: format!("check-{:08x}", fastrand::u32(..)),
        policy: crate::tools::policy::session_policy(&[]),
        lifetime: MIN_SESSION,
    };
    let session_name = request.session_name();
    Some(
        match broker.sandbox_session(&integration.name, &request).await {
            Ok(_) => SessionReport {
                status: Status::Allowed,
                session_name,
                kind: None,
                error: None,
                hint: None,
            },
            Err(err) => {
                let failure = match &err {
                    CredentialError::Unavailable { failure, .. } => Some(failure.clone()),
                    _ => None,
                };
                let denied = failure.as_ref().is_some_and(|f| {
                    matches!(
                        f.kind,
                        FailureKind::TagSessionDenied
                            | FailureKind::AssumeRoleDenied
                            | FailureKind::OidcDenied
                    )
                });
                SessionReport {
                    status: if denied {
                        Status::Denied
                    } else {
                        Status::Error
                    },
                    session_name,
                    kind: failure.as_ref().map(|f| f.kind.to_string()),
                    error: Some(
                        failure
                            .as_ref()
                            .map(|f| f.message.clone())
                            .unwrap_or_else(|| err.to_string()),
                    ),
                    hint: failure.map(|f| f.hint),
                }
            }
        },
    )
}

/// Credentials that work now but whose last refresh failed (static stability): `degraded`,
/// with what failed and the fix — the daemon's Test Connection shows it; a one-shot `check`
/// fetches afresh and so reports a failure as `unavailable` instead.
fn degraded_if_failing(report: &mut CredentialReport, state: &CredentialState) {
    if state.health(std::time::SystemTime::now()) == Health::Degraded
        && let Some(failure) = &state.last_error
    {
        report.status = "degraded";
        report.kind = Some(failure.kind.to_string());
        report.error = Some(format!("the last refresh failed: {}", failure.message));
        report.hint = Some(failure.hint.clone());
    }
}

fn unavailable(err: &CredentialError) -> CredentialReport {
    let (kind, error, hint) = match err {
        CredentialError::Unavailable { failure, .. } => (
            Some(failure.kind.to_string()),
            failure.message.clone(),
            Some(failure.hint.clone()),
        ),
        CredentialError::ExpiresTooSoon { last_failure, .. } => (
            last_failure.as_ref().map(|f| f.kind.to_string()),
            err.to_string(),
            last_failure.as_ref().map(|f| f.hint.clone()),
        ),
        CredentialError::UnknownIntegration { .. } => (None, err.to_string(), None),
    };
    CredentialReport {
        status: "unavailable",
        expires_at: None,
        kind,
        error: Some(error),
        hint,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::credentials::{FailureKind, SourceFailure};

    #[test]
    fn still_valid_credentials_after_a_failed_refresh_are_degraded_with_the_fix() {
        let mut report = CredentialReport {
            status: "ok",
            expires_at: None,
            kind: None,
            error: None,
            hint: None,
        };
        let mut state = CredentialState {
            integration: "prod".into(),
            expires_at: Some(SystemTime::now() + Duration::from_secs(600)),
            last_refresh: None,
            last_error: None,
            refreshes: 1,
            upstream_calls: 2,
            failures: BTreeMap::new(),
        };
        degraded_if_failing(&mut report, &state);
        assert_eq!(report.status, "ok", "no failure, nothing to say");
        state.last_error = Some(SourceFailure {
            kind: FailureKind::ImdsUnreachable,
            message: "IMDS did not answer".into(),
            hint: "check IMDS".into(),
        });
        degraded_if_failing(&mut report, &state);
        assert_eq!(report.status, "degraded");
        assert_eq!(report.kind.as_deref(), Some("imds_unreachable"));
        assert_eq!(report.hint.as_deref(), Some("check IMDS"));
    }
}
