//! `autoheal serve`: the daemon.
//!
//! Order matters: the configuration is validated before any socket is bound; the first
//! credential attempt finishes before the API serves (failures are reported by `/readyz`,
//! not fatal); the audit log is opened (fatal when it cannot be) and what a previous run
//! left unfinished in it is closed; sandboxes a previous run left behind are removed; SIGTERM/SIGINT stop
//! accepting, let running sandboxes finish up to a grace period, then stop them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::api::{self, ApiLimits, AppState, token};
use crate::cli::Cli;
use crate::config;
use crate::credentials::CredentialBroker;
use crate::exit_code::Exit;
use crate::lifecycle::{self, LiveConfig, notify};
use crate::sandbox::{AuditLog, DEFAULT_OUTPUT_CAP, DockerBackend, SandboxBackend, SandboxManager};

/// How long running sandboxes may go on after SIGTERM before they are stopped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

pub async fn run(cli: &Cli) -> Exit {
    let config = match super::load_config_and_log(cli) {
        Ok(config) => config,
        Err(exit) => return exit,
    };
    let token = match token::load_or_create(&config.server.api_token_file) {
        Ok(token) => token,
        Err(err) => {
            tracing::error!("{err}");
            return Exit::Config;
        }
    };
    // Before anything serves: a daemon that cannot audit its sandboxes starts none.
    let audit = match AuditLog::open(&config.server.state_dir) {
        Ok(audit) => Arc::new(audit),
        Err(err) => {
            tracing::error!("{err}");
            return Exit::Config;
        }
    };
    let backend: Arc<dyn SandboxBackend> = match DockerBackend::connect(DEFAULT_OUTPUT_CAP) {
        Ok(backend) => Arc::new(backend),
        Err(err) => {
            tracing::error!("{err}");
            return Exit::Unavailable;
        }
    };
    // The issuer's first key is created here, so the broker and the API find one.
    if let Some(oidc) = &config.oidc
        && let Err(err) = crate::oidc::Issuer::load_or_create(oidc)
    {
        tracing::error!("OIDC issuer: {err}");
    }
    let broker = Arc::new(CredentialBroker::from_config(&config).await);
    broker.prime().await;
    broker.start_background_refresh();
    let listener = match TcpListener::bind(config.server.listen).await {
        Ok(listener) => listener,
        Err(err) => {
            tracing::error!(listen = %config.server.listen, error = %err, "cannot bind the API address");
            return Exit::Unavailable;
        }
    };
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    tracing::info!(listen = %config.server.listen, integrations = config.integrations.len(), "serving");
    let limits = ApiLimits::from(&config.server);
    // Tokens of an earlier run died with it; their files go too.
    crate::sandbox::clear_stale_tokens(&config.server.state_dir);
    let live = Arc::new(LiveConfig::new(config, broker));
    let sandboxes = Arc::new(SandboxManager::new(backend, live.clone()).with_audit(audit));
    let reaped = match sandboxes.reap_orphans().await {
        Ok(n) => {
            if n > 0 {
                tracing::warn!(count = n, "removed sandboxes left behind by an earlier run");
            }
            true
        }
        Err(err) => {
            tracing::warn!(error = %err, "Docker is not reachable yet; /readyz reports it");
            false
        }
    };
    // After the reap, so an interrupted sandbox is recorded as removed only when it is.
    if let Err(err) = sandboxes.restore_from_audit(reaped) {
        tracing::error!("{err}");
        return Exit::Config;
    }
    let health_checks = tokio::spawn(sandboxes.clone().run_health_checks());
    let state = Arc::new(AppState::new(
        live.clone(),
        sandboxes.clone(),
        token,
        limits,
    ));

    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(term), Ok(int)) => (term, int),
        _ => {
            tracing::error!("cannot install signal handlers");
            return Exit::Unavailable;
        }
    };
    let Ok(hup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot install the SIGHUP handler");
        return Exit::Unavailable;
    };
    tokio::spawn(reload_on_hangup(hup, cli.config.clone(), live.clone()));
    notify::ready();
    let watchdog = notify::start_watchdog();
    let stopping = async {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
        notify::stopping();
        // New sandboxes are refused from here; running ones get the grace period.
        sandboxes.shutdown(SHUTDOWN_GRACE).await;
    };
    api::serve(listener, state, stopping).await;
    health_checks.abort();
    live.current().broker.stop();
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
    tracing::info!("stopped");
    Exit::Ok
}

/// On each SIGHUP: load and validate the file again; put it in force when it is valid,
/// otherwise log every problem and keep the configuration in force.
async fn reload_on_hangup(mut hup: Signal, path: Option<PathBuf>, live: Arc<LiveConfig>) {
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the configuration");
        match config::load(path.as_deref()) {
            Ok(config) => {
                let summary = match lifecycle::reload(&live, config).await {
                    Ok(summary) => summary,
                    Err(reason) => {
                        tracing::error!(
                            "configuration reload rejected, keeping the one in force: {reason}"
                        );
                        continue;
                    }
                };
                tracing::info!(
                    added = ?summary.added,
                    removed = ?summary.removed,
                    changed = ?summary.changed,
                    "configuration reloaded; running sandboxes are unaffected"
                );
                if !summary.need_restart.is_empty() {
                    tracing::warn!(keys = ?summary.need_restart, "these changes take effect only after a restart");
                }
            }
            Err(err) => {
                tracing::error!("configuration reload rejected, keeping the one in force: {err}");
            }
        }
    }
}
