//! `autoheal serve`: the daemon.
//!
//! Order matters: the configuration is validated before any socket is bound; the first
//! credential attempt finishes before the API serves (failures are reported by `/readyz`,
//! not fatal); sandboxes a previous run left behind are removed; SIGTERM/SIGINT stop
//! accepting, let running sandboxes finish up to a grace period, then stop them.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use crate::api::{self, AppState, token};
use crate::cli::Cli;
use crate::credentials::CredentialBroker;
use crate::exit_code::Exit;
use crate::lifecycle::notify;
use crate::sandbox::{DEFAULT_OUTPUT_CAP, DockerBackend, SandboxManager};

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
    let backend = match DockerBackend::connect(DEFAULT_OUTPUT_CAP) {
        Ok(backend) => backend,
        Err(err) => {
            tracing::error!("{err}");
            return Exit::Unavailable;
        }
    };
    let broker = Arc::new(CredentialBroker::from_config(&config).await);
    broker.prime().await;
    broker.start_background_refresh();
    match backend.reap_orphans().await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(count = n, "removed sandboxes left behind by an earlier run"),
        Err(err) => tracing::warn!(error = %err, "Docker is not reachable yet; /readyz reports it"),
    }
    let listener = match TcpListener::bind(config.server.listen).await {
        Ok(listener) => listener,
        Err(err) => {
            tracing::error!(listen = %config.server.listen, error = %err, "cannot bind the API address");
            return Exit::Unavailable;
        }
    };
    let sandboxes = Arc::new(SandboxManager::new(backend, broker.clone(), &config));
    tracing::info!(listen = %config.server.listen, integrations = config.integrations.len(), "serving");
    let state = Arc::new(AppState {
        config,
        broker: broker.clone(),
        sandboxes: sandboxes.clone(),
        token,
    });

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
    // SIGHUP must not end the daemon (its default action); reloading is not built yet.
    if let Ok(mut hup) = signal(SignalKind::hangup()) {
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::warn!(
                    "SIGHUP: configuration reload is not built in this version; restart the service to apply changes"
                );
            }
        });
    }
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
    broker.stop();
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
    tracing::info!("stopped");
    Exit::Ok
}
