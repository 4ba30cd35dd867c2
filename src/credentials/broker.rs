//! The credential broker: one lifetime-aware cache per integration, and their background
//! refreshers; one session per sandbox for integrations that assume a role. Everything that
//! needs AWS credentials on the daemon side asks here.
//!
//! The instance role is cached once (`instance_source`) for every integration that assumes
//! a role from it: their shared sessions chain on it and their sandboxes' sessions are signed
//! with it, so IMDS is asked once per instance-credential lifetime, not per sandbox.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_credential_types::Credentials;
use tokio::task::JoinHandle;

use aws_credential_types::provider::SharedCredentialsProvider;

use super::cache::{CredentialCache, CredentialState};
use super::clock::{Clock, SystemClock};
use super::error::{CredentialError, FailureKind, SourceFailure};
use super::sandbox_session::{SessionMinter, SessionRequest};
use super::schedule::RefreshPolicy;
use super::source::{InstanceRole, IssuerState, provider_for, sdk_config};
use super::web_identity::WebIdentity;
use crate::config::{AuthMethod, Config, IntegrationConfig, SessionMode};
use crate::oidc::{Issuer, IssuerCell, SharedIssuer};

/// Validity the cached instance role keeps on hand for signing STS calls: five minutes is
/// far more than a call takes, and well inside IMDS's rotation (it serves new credentials
/// long before the old expire).
pub const SOURCE_KEEP_VALID_FOR: Duration = Duration::from_secs(5 * 60);

#[derive(Debug)]
pub struct CredentialBroker {
    caches: BTreeMap<String, Arc<CredentialCache>>,
    /// The instance role, cached, when some integration assumes a role from it.
    instance_source: Option<Arc<CredentialCache>>,
    /// How each `session = "per_sandbox"` integration makes its sandboxes' sessions.
    minters: BTreeMap<String, Arc<SessionMinter>>,
    /// The daemon's OIDC issuer, for `auth = "oidc"` and the documents the API serves.
    issuer: IssuerState,
    refreshers: Mutex<Vec<JoinHandle<()>>>,
}

impl CredentialBroker {
    /// A broker for every integration of `config`, on the real clock, keeping credentials
    /// valid for the longest sandbox plus a start margin.
    pub async fn from_config(config: &Config) -> Self {
        let policy = RefreshPolicy::for_sandboxes(config.sandbox.max_lifetime);
        Self::new(
            &config.integrations,
            &InstanceRole::new(),
            load_issuer(config).map(|r| r.map(|i| Arc::new(IssuerCell::new(i)))),
            Arc::new(SystemClock),
            policy,
        )
        .await
    }

    pub async fn new(
        integrations: &[IntegrationConfig],
        instance_role: &InstanceRole,
        issuer: IssuerState,
        clock: Arc<dyn Clock>,
        policy: RefreshPolicy,
    ) -> Self {
        let instance_source = needs_instance_source(integrations)
            .then(|| instance_source(instance_role, clock.clone()));
        let mut caches = Vec::new();
        let mut minters = BTreeMap::new();
        for integration in integrations {
            let provider =
                provider_for(integration, instance_role, &instance_source, &issuer).await;
            if let Some(minter) = minter_for(integration, &instance_source, &issuer).await {
                minters.insert(integration.name.clone(), Arc::new(minter));
            }
            caches.push(CredentialCache::new(
                integration.clone(),
                provider,
                clock.clone(),
                policy.clone(),
            ));
        }
        let mut broker = Self::with_caches(caches);
        broker.issuer = issuer;
        broker.instance_source = instance_source;
        broker.minters = minters;
        broker
    }

    /// A broker over caches built by the caller (tests inject their own sources this way).
    pub fn with_caches(caches: Vec<CredentialCache>) -> Self {
        Self {
            caches: caches
                .into_iter()
                .map(|c| (c.integration().name.clone(), Arc::new(c)))
                .collect(),
            instance_source: None,
            minters: BTreeMap::new(),
            refreshers: Mutex::new(Vec::new()),
            issuer: None,
        }
    }

    /// The OIDC issuer, when one is configured and its keys loaded.
    pub fn issuer(&self) -> Option<&SharedIssuer> {
        self.issuer.as_ref().and_then(|i| i.as_ref().ok())
    }

    /// The broker for a reloaded `config`: integrations whose settings did not change keep
    /// their cache (and so their credentials, with no upstream call); new or changed ones
    /// get a fresh cache. Answers it with the names of the fresh ones.
    ///
    /// The OIDC issuer is read again (new keys from `oidc keygen`, a changed `[oidc]`). When
    /// only its keys changed, they are swapped into the issuer in force and OIDC
    /// integrations keep their credentials. When `[oidc]` is configured but its keys cannot
    /// be loaded (an unreadable key, say one `sudo oidc keygen` left owned by root), the
    /// reload is refused as a whole: the generation in force keeps serving.
    pub async fn successor(&self, config: &Config) -> Result<(Self, Vec<String>), String> {
        let policy = RefreshPolicy::for_sandboxes(config.sandbox.max_lifetime);
        let instance_role = InstanceRole::new();
        let (issuer, issuer_changed) = match (config.oidc.as_ref(), load_issuer(config)) {
            (Some(_), Some(Err(reason))) => {
                return Err(format!("the OIDC issuer's keys cannot be loaded: {reason}"));
            }
            (_, Some(Ok(loaded))) => match self.issuer() {
                Some(cell) if same_identity(&cell.current(), &loaded) => {
                    cell.replace(loaded);
                    (Some(Ok(cell.clone())), false)
                }
                _ => (Some(Ok(Arc::new(IssuerCell::new(loaded)))), true),
            },
            (_, other) => {
                let changed = self.issuer.is_some() || other.is_some();
                (
                    other.map(|r| r.map(|i| Arc::new(IssuerCell::new(i)))),
                    changed,
                )
            }
        };
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let instance_source = if needs_instance_source(&config.integrations) {
            Some(
                self.instance_source
                    .clone()
                    .unwrap_or_else(|| instance_source(&instance_role, clock.clone())),
            )
        } else {
            None
        };
        let mut caches = BTreeMap::new();
        let mut minters = BTreeMap::new();
        let mut fresh = Vec::new();
        for integration in &config.integrations {
            let kept = self.caches.get(&integration.name).filter(|cache| {
                cache.integration() == integration
                    && *cache.policy() == policy
                    && !(issuer_changed && integration.auth == AuthMethod::Oidc)
            });
            let cache = match kept {
                Some(cache) => cache.clone(),
                None => {
                    fresh.push(integration.name.clone());
                    let provider =
                        provider_for(integration, &instance_role, &instance_source, &issuer).await;
                    Arc::new(CredentialCache::new(
                        integration.clone(),
                        provider,
                        clock.clone(),
                        policy.clone(),
                    ))
                }
            };
            caches.insert(integration.name.clone(), cache);
            if let Some(minter) = minter_for(integration, &instance_source, &issuer).await {
                minters.insert(integration.name.clone(), Arc::new(minter));
            }
        }
        let broker = Self {
            caches,
            instance_source,
            minters,
            refreshers: Mutex::new(Vec::new()),
            issuer,
        };
        Ok((broker, fresh))
    }

    /// One first attempt for each of `names`, concurrently (see [`Self::prime`]).
    pub async fn prime_only(&self, names: &[String]) {
        let attempts = self
            .caches
            .iter()
            .filter(|(name, _)| names.contains(name))
            .map(|(_, cache)| cache.refresh());
        futures_util::future::join_all(attempts).await;
    }

    /// The cache of one integration.
    pub fn cache(&self, integration: &str) -> Result<&Arc<CredentialCache>, CredentialError> {
        self.caches
            .get(integration)
            .ok_or_else(|| CredentialError::UnknownIntegration {
                name: integration.to_owned(),
                known: self.caches.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }

    /// Credentials of `integration` that stay valid for at least `needed`.
    pub async fn credentials_valid_for(
        &self,
        integration: &str,
        needed: Duration,
    ) -> Result<Credentials, CredentialError> {
        self.cache(integration)?.valid_for(needed).await
    }

    /// A sandbox's own STS session (see `sandbox_session.rs`): exactly one STS call.
    pub async fn sandbox_session(
        &self,
        integration: &str,
        request: &SessionRequest,
    ) -> Result<Credentials, CredentialError> {
        let cache = self.cache(integration)?;
        let config = cache.integration();
        let Some(minter) = self.minters.get(integration) else {
            let kind = if config.auth == AuthMethod::Oidc {
                FailureKind::OidcIssuerUnusable
            } else {
                FailureKind::Other
            };
            return Err(CredentialError::Unavailable {
                integration: integration.to_owned(),
                failure: Box::new(SourceFailure {
                    kind,
                    message: "this integration cannot make per-sandbox sessions now".into(),
                    hint: if kind == FailureKind::Other {
                        "per-sandbox sessions need a role to assume (role_arn); set session = \"shared\" otherwise".into()
                    } else {
                        super::hint(kind, config)
                    },
                }),
            });
        };
        match minter.mint(config, request).await {
            Err(CredentialError::Unavailable { failure, .. })
                if matches!(
                    failure.kind,
                    FailureKind::AssumeRoleDenied | FailureKind::OidcDenied
                ) && cache.state().health(std::time::SystemTime::now())
                    == crate::credentials::Health::Healthy =>
            {
                // The integration's own (untagged, unnarrowed) session of the same role works:
                // what differs is the session tags. STS says only "not authorized to perform
                // sts:AssumeRoleWithWebIdentity" for web identity, so say what it means.
                let kind = FailureKind::TagSessionDenied;
                Err(CredentialError::Unavailable {
                    integration: integration.to_owned(),
                    failure: Box::new(SourceFailure {
                        kind,
                        message: format!(
                            "{} (the integration's own session of the same role works, so the \
                             sandbox session's tags are what is refused)",
                            failure.message
                        ),
                        hint: super::hint(kind, config),
                    }),
                })
            }
            other => other,
        }
    }

    /// Every integration's credential state, in name order.
    pub fn states(&self) -> Vec<CredentialState> {
        self.caches.values().map(|c| c.state()).collect()
    }

    /// One first attempt for every integration, concurrently; failures are recorded in the
    /// states (the daemon serves and reports them rather than refusing to start).
    pub async fn prime(&self) {
        let attempts = self.caches.values().map(|cache| cache.refresh());
        futures_util::future::join_all(attempts).await;
    }

    /// Starts one background refresher per integration (idempotent).
    pub fn start_background_refresh(&self) {
        let mut refreshers = self.refreshers.lock().expect("refreshers lock");
        if !refreshers.is_empty() {
            return;
        }
        for cache in self.caches.values().chain(&self.instance_source) {
            refreshers.push(tokio::spawn(cache.clone().run_refresher()));
        }
    }

    /// Stops the background refreshers.
    pub fn stop(&self) {
        for task in self.refreshers.lock().expect("refreshers lock").drain(..) {
            task.abort();
        }
    }
}

impl Drop for CredentialBroker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// True when some integration assumes a role from the instance role.
fn needs_instance_source(integrations: &[IntegrationConfig]) -> bool {
    integrations
        .iter()
        .any(|i| i.auth == AuthMethod::InstanceRole && i.role_arn.is_some())
}

/// The instance role behind one cache. It is nobody's integration: the name says what it is
/// in logs, and the hints are those of a bare `instance_role`. It only signs STS calls, so
/// it keeps [`SOURCE_KEEP_VALID_FOR`] on hand, whatever the sandboxes' lifetime (instance
/// credentials last hours; asking for more than they give would poll IMDS in vain).
fn instance_source(instance_role: &InstanceRole, clock: Arc<dyn Clock>) -> Arc<CredentialCache> {
    let policy = RefreshPolicy::for_sandboxes(Duration::ZERO);
    let policy = RefreshPolicy {
        keep_valid_for: SOURCE_KEEP_VALID_FOR,
        ..policy
    };
    let identity = IntegrationConfig {
        name: "(instance role)".into(),
        account_id: None,
        region: crate::config::ambient_region(),
        auth: AuthMethod::InstanceRole,
        role_arn: None,
        external_id: None,
        session: SessionMode::Shared,
        session_duration: crate::config::DEFAULT_SESSION_DURATION,
        endpoint_url: None,
    };
    Arc::new(CredentialCache::new(
        identity,
        SharedCredentialsProvider::new(instance_role.clone()),
        clock,
        policy,
    ))
}

/// How `integration` makes its sandboxes' sessions, when it has them.
async fn minter_for(
    integration: &IntegrationConfig,
    instance_source: &Option<Arc<CredentialCache>>,
    issuer: &IssuerState,
) -> Option<SessionMinter> {
    if !integration.per_sandbox_sessions() {
        return None;
    }
    match integration.auth {
        AuthMethod::InstanceRole => {
            let sdk = sdk_config(integration, None).await;
            Some(SessionMinter::assume_role(
                &sdk,
                instance_source.clone()?,
                integration,
            ))
        }
        AuthMethod::Oidc => {
            let issuer = issuer.as_ref()?.as_ref().ok()?;
            let sts = aws_sdk_sts::Client::new(&sdk_config(integration, None).await);
            Some(SessionMinter::WebIdentity(WebIdentity::new(
                issuer.clone(),
                sts,
                integration,
            )))
        }
        AuthMethod::Environment => None,
    }
}

/// The issuer of `config`'s [oidc] section with the keys on disk (none is created here).
fn load_issuer(config: &Config) -> Option<Result<Issuer, String>> {
    config.oidc.as_ref().map(|oidc| {
        Issuer::load(oidc)
            .map_err(|e| e.to_string())
            .and_then(|issuer| {
                if issuer.keys.is_empty() {
                    Err(crate::oidc::OidcError::NoKey {
                        dir: oidc.key_dir.clone(),
                    }
                    .to_string())
                } else {
                    Ok(issuer)
                }
            })
    })
}

/// Whether two issuers are the same to STS (URL and audience): then only their keys differ.
fn same_identity(a: &Issuer, b: &Issuer) -> bool {
    a.url == b.url && a.audience == b.audience
}
