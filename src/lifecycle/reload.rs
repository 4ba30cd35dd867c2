//! SIGHUP: put a new configuration in force without dropping anything that runs.
//!
//! The caller loads and validates the file first; a config with errors never gets here (the
//! old one stays, the errors are logged). Nor does one whose OIDC keys cannot be loaded:
//! [`reload`] refuses it before anything is swapped. Here the new broker keeps the caches of unchanged
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

/// Puts `config` in force, or answers why it cannot be (the generation in force stays).
pub async fn reload(live: &LiveConfig, mut config: Config) -> Result<ReloadSummary, String> {
    let old = live.current();
    let (broker, fresh) = old.broker.successor(&config).await?;
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
    if config.server.state_dir != old.config.server.state_dir {
        summary.need_restart.push("server.state_dir");
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
    // The egress proxy takes these when the daemon starts.
    if config.sandbox.blocked_addresses != old.config.sandbox.blocked_addresses {
        summary.need_restart.push("sandbox.blocked_addresses");
    }
    if config.sandbox.upstream_proxy != old.config.sandbox.upstream_proxy {
        summary.need_restart.push("sandbox.upstream_proxy");
    }
    // What needs a restart stays as it is until then, so the generation tells the truth.
    config.server = old.config.server.clone();
    config.log = old.config.log.clone();
    config.sandbox.blocked_addresses = old.config.sandbox.blocked_addresses.clone();
    config.sandbox.upstream_proxy = old.config.sandbox.upstream_proxy.clone();
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
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::config::load_from_str;
    use crate::credentials::CredentialBroker;
    use crate::oidc::{KeyAlgorithm, KeyRing};

    fn config(key_dir: &std::path::Path) -> Config {
        load_from_str(&format!(
            "[oidc]\nissuer = \"https://oidc.example.com/acme\"\ntenant_slug = \"acme\"\nkey_dir = \"{}\"\n\n\
             [[integration]]\nname = \"federated\"\naccount_id = \"210987654321\"\nauth = \"oidc\"\n\
             role_arn = \"arn:aws:iam::210987654321:role/AutohealOidcRole\"\n",
            key_dir.display()
        ))
        .unwrap()
    }

    async fn live_with_one_key(name: &str) -> (std::path::PathBuf, LiveConfig) {
        let dir =
            std::env::temp_dir().join(format!("autoheal-reload-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        KeyRing::generate(&dir, KeyAlgorithm::Es256, SystemTime::now()).unwrap();
        let config = config(&dir);
        let broker = Arc::new(CredentialBroker::from_config(&config).await);
        (dir, LiveConfig::new(config, broker))
    }

    #[tokio::test]
    async fn a_reload_whose_keys_cannot_be_loaded_is_refused_and_the_old_one_serves() {
        let (dir, live) = live_with_one_key("unreadable").await;
        let before = live.current();
        // A second key others could read (what a careless copy leaves): the ring refuses it.
        let key = KeyRing::generate(
            &dir,
            KeyAlgorithm::Es256,
            SystemTime::now() + Duration::from_secs(1),
        )
        .unwrap();
        std::fs::set_permissions(&key.path, std::fs::Permissions::from_mode(0o644)).unwrap();

        let refused = reload(&live, config(&dir)).await.unwrap_err();
        assert!(
            refused.contains("OIDC") && refused.contains("chmod 600"),
            "{refused}"
        );
        assert!(
            Arc::ptr_eq(&before, &live.current()),
            "the generation in force stays"
        );
        assert_eq!(
            live.current()
                .broker
                .issuer()
                .unwrap()
                .current()
                .keys
                .all()
                .len(),
            1
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn the_egress_proxys_addresses_and_upstream_wait_for_a_restart() {
        let (dir, live) = live_with_one_key("egress").await;
        let mut changed = config(&dir);
        changed.sandbox.blocked_addresses =
            vec![crate::config::Cidr::parse("198.18.9.9/32").unwrap()];
        changed.sandbox.upstream_proxy =
            Some(crate::config::UpstreamProxy::parse("http://proxy.example:3128").unwrap());
        let before = live.current().config.sandbox.clone();
        let summary = reload(&live, changed).await.unwrap();
        assert_eq!(
            summary.need_restart,
            ["sandbox.blocked_addresses", "sandbox.upstream_proxy"]
        );
        let after = live.current().config.sandbox.clone();
        assert_eq!(
            after.blocked_addresses, before.blocked_addresses,
            "the one in force stays"
        );
        assert_eq!(after.upstream_proxy, None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_reload_with_only_new_keys_keeps_the_cached_credentials() {
        let (dir, live) = live_with_one_key("rotated").await;
        let cache_before = live.current().broker.cache("federated").unwrap().clone();
        KeyRing::generate(
            &dir,
            KeyAlgorithm::Es256,
            SystemTime::now() + Duration::from_secs(1),
        )
        .unwrap();

        let summary = reload(&live, config(&dir)).await.unwrap();
        assert!(
            summary.changed.is_empty() && summary.added.is_empty(),
            "{summary:?}"
        );
        let after = live.current();
        assert!(
            Arc::ptr_eq(&cache_before, after.broker.cache("federated").unwrap()),
            "same cache, same credentials, no upstream call"
        );
        assert_eq!(
            after.broker.issuer().unwrap().current().keys.all().len(),
            2,
            "new key in force"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
