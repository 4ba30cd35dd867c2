//! SIGHUP: put a new configuration in force without dropping anything that runs.
//!
//! The caller loads and validates the file first; a config with errors never gets here (the
//! old one stays, the errors are logged). Here the new broker keeps the caches of unchanged
//! integrations, the generations are swapped, the old refreshers stop and the new ones
//! start. Running sandboxes are untouched: they hold their credentials already and end at
//! their own deadline, even when their integration was removed.

use serde::Serialize;

use super::live::{Generation, LiveConfig};
use crate::config::Config;

/// What a reload changed, for the log line.
#[derive(Debug, Default, PartialEq, Serialize)]
pub struct ReloadSummary {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Integrations whose settings changed (their credentials are fetched anew).
    pub changed: Vec<String>,
    /// Keys that only take effect after a restart (the listener, the token file).
    pub need_restart: Vec<&'static str>,
}

/// Puts `config` in force.
pub async fn reload(live: &LiveConfig, mut config: Config) -> ReloadSummary {
    let old = live.current();
    let (broker, fresh) = old.broker.successor(&config).await;
    let known = |c: &Config, name: &str| c.integration(name).is_some();
    let mut summary = ReloadSummary::default();
    for name in fresh {
        if known(&old.config, &name) {
            summary.changed.push(name);
        } else {
            summary.added.push(name);
        }
    }
    summary.removed = old
        .config
        .integrations
        .iter()
        .filter(|i| !known(&config, &i.name))
        .map(|i| i.name.clone())
        .collect();
    if config.server.listen != old.config.server.listen {
        summary.need_restart.push("server.listen");
    }
    if config.server.api_token_file != old.config.server.api_token_file {
        summary.need_restart.push("server.api_token_file");
    }
    if config.log.format != old.config.log.format {
        summary.need_restart.push("log.format");
    }
    if config.log.filter != old.config.log.filter {
        summary.need_restart.push("log.filter");
    }
    // What needs a restart stays as it is until then, so the generation tells the truth.
    config.server = old.config.server.clone();
    config.log = old.config.log.clone();
    let new_names: Vec<String> = summary
        .added
        .iter()
        .chain(&summary.changed)
        .cloned()
        .collect();
    broker.prime_only(&new_names).await;
    let broker = std::sync::Arc::new(broker);
    let replaced = live.replace(Generation {
        config,
        broker: broker.clone(),
    });
    replaced.broker.stop();
    broker.start_background_refresh();
    summary
}
