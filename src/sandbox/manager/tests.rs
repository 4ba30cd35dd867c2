//! The manager's rules on the fake backend: admission, images, lifetime, shutdown race,
//! engine outages, history. No Docker, no root, no network.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::credential_fn::provide_credentials_fn;
use aws_credential_types::provider::SharedCredentialsProvider;

use super::*;
use crate::config::load_from_str;
use crate::credentials::clock::SystemClock;
use crate::credentials::{CredentialCache, RefreshPolicy};
use crate::sandbox::{FakeBackend, FaultyBackend, Operation};

/// A manager on `backend` whose one integration (`prod`) has credentials valid for an hour.
fn manager_on(backend: Arc<dyn SandboxBackend>, sandbox_toml: &str) -> Arc<SandboxManager> {
    let config = load_from_str(&format!(
        "[sandbox]\n{sandbox_toml}\n[[integration]]\nname = \"prod\"\naccount_id = \"123456789012\"\nauth = \"environment\"\n"
    ))
    .expect("test config");
    let provider = SharedCredentialsProvider::new(provide_credentials_fn(|| async {
        Ok(Credentials::new(
            "ASIAFAKE",
            "secret",
            Some("token".into()),
            Some(SystemTime::now() + Duration::from_secs(3600)),
            "test",
        ))
    }));
    let cache = CredentialCache::new(
        config.integrations[0].clone(),
        provider,
        Arc::new(SystemClock),
        RefreshPolicy::for_sandboxes(config.sandbox.max_lifetime),
    );
    let broker = Arc::new(CredentialBroker::with_caches(vec![cache]));
    Arc::new(SandboxManager::new(
        backend,
        Arc::new(LiveConfig::new(config, broker)),
    ))
}

fn ask(command: &[&str]) -> SandboxRequest {
    SandboxRequest {
        integration: "prod".into(),
        command: command.iter().map(|s| s.to_string()).collect(),
        image: None,
        timeout: Some(Duration::from_secs(60)),
        env: BTreeMap::new(),
        capabilities: None,
        credentials: None,
    }
}

async fn until_gone(fake: &FakeBackend) {
    for _ in 0..500 {
        if fake.existing() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{} containers still exist", fake.existing());
}

#[tokio::test]
async fn beyond_max_running_nothing_starts_and_the_answer_is_429() {
    let fake = FakeBackend::new();
    let manager = manager_on(Arc::new(fake.clone()), "max_running = 2");
    let a = manager.create(ask(&["sleep", "30"])).await.unwrap();
    manager.create(ask(&["sleep", "30"])).await.unwrap();
    let refused = manager.create(ask(&["sleep", "30"])).await.unwrap_err();
    assert_eq!(refused.http_status(), 429);
    assert_eq!(refused.retry_after(), Some(RETRY_AFTER));
    assert!(
        refused.to_string().contains("sandbox.max_running"),
        "{refused}"
    );
    assert_eq!(fake.starts(), 2, "nothing was started for the refused one");

    manager.stop(&a.id).await.unwrap();
    manager
        .create(ask(&["true"]))
        .await
        .expect("a slot came back");
    manager.shutdown(Duration::ZERO).await;
    until_gone(&fake).await;
}

#[tokio::test]
async fn five_hundred_concurrent_requests_never_run_more_than_the_maximum() {
    let fake = FakeBackend::new();
    let manager = manager_on(Arc::new(fake.clone()), "max_running = 8");
    let requests: Vec<_> = (0..500)
        .map(|_| {
            let manager = manager.clone();
            tokio::spawn(async move { manager.create(ask(&["sleep", "0.05"])).await })
        })
        .collect();
    let (mut started, mut refused) = (0, 0);
    for request in requests {
        match request.await.unwrap() {
            Ok(_) => started += 1,
            Err(err) if err.http_status() == 429 => refused += 1,
            Err(err) => panic!("unexpected answer: {err}"),
        }
    }
    assert_eq!(started + refused, 500);
    assert!(started >= 8, "at least the first eight start: {started}");
    assert!(fake.peak_existing() <= 8, "peak {}", fake.peak_existing());
    until_gone(&fake).await;
    assert_eq!(manager.running(), 0);
}

#[tokio::test]
async fn only_allowed_images_without_volumes_run() {
    let fake = FakeBackend::new()
        .with_image("tools:1", &[])
        .with_image("leaky:1", &["/data"])
        .with_image("elsewhere:1", &[]);
    let manager = manager_on(
        Arc::new(fake.clone()),
        "images = [\"tools:1\", \"leaky:1\"]",
    );
    let mut request = ask(&["true"]);
    request.image = Some("elsewhere:1".into());
    let err = manager.create(request).await.unwrap_err();
    assert_eq!(err.code(), "image_not_allowed");
    assert!(
        err.to_string()
            .contains("autoheal-sandbox:latest, tools:1, leaky:1"),
        "{err}"
    );

    let mut request = ask(&["true"]);
    request.image = Some("leaky:1".into());
    let err = manager.create(request).await.unwrap_err();
    assert_eq!(err.code(), "image_declares_volumes");
    assert!(err.to_string().contains("/data"), "{err}");

    let mut request = ask(&["echo", "hi"]);
    request.image = Some("tools:1".into());
    let info = manager.create(request).await.unwrap();
    assert_eq!(info.image, "tools:1");
    assert_eq!(fake.starts(), 1, "only the allowed image ran");
    assert_eq!(
        manager.wait(&info.id).await.unwrap().stdout.as_deref(),
        Some("hi\n")
    );
}

#[tokio::test]
async fn the_deadline_shown_is_the_deadline_enforced() {
    let fake = FaultyBackend::new(FakeBackend::new());
    // Slow set-up must not stretch the deadline beyond what was announced.
    fake.slow(Operation::PrepareNetwork, Duration::from_millis(400));
    let manager = manager_on(Arc::new(fake.clone()), "");
    let mut request = ask(&["sleep", "30"]);
    request.timeout = Some(Duration::from_secs(1));
    let info = manager.create(request).await.unwrap();
    let deadline = humantime::parse_rfc3339(&info.deadline).unwrap();
    let created = humantime::parse_rfc3339(&info.created_at).unwrap();
    assert_eq!(
        deadline.duration_since(created).unwrap(),
        Duration::from_secs(1)
    );
    let ended = manager.wait(&info.id).await.unwrap();
    let ended_at = SystemTime::now();
    assert_eq!(ended.state, SandboxState::TimedOut);
    assert!(ended.timed_out);
    assert!(
        ended_at.duration_since(deadline).unwrap_or_default() < Duration::from_millis(300),
        "stopped at the announced deadline, not 400 ms later"
    );
}

#[tokio::test]
async fn a_start_in_flight_at_shutdown_is_stopped_with_the_others() {
    let fake = FaultyBackend::new(FakeBackend::new());
    fake.slow(Operation::Start, Duration::from_millis(300));
    let manager = manager_on(Arc::new(fake.clone()), "");
    let starting = {
        let manager = manager.clone();
        tokio::spawn(async move { manager.create(ask(&["sleep", "600"])).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    manager.shutdown(Duration::ZERO).await;
    let info = starting
        .await
        .unwrap()
        .expect("the start in flight completes");
    assert_eq!(manager.get(&info.id).unwrap().state, SandboxState::Stopped);
    assert_eq!(fake.inner().existing(), 0, "nothing left running");
    let refused = manager.create(ask(&["true"])).await.unwrap_err();
    assert_eq!(refused.code(), "shutting_down");
}

#[tokio::test]
async fn a_caller_that_hangs_up_mid_start_leaves_no_unwatched_container() {
    let fake = FaultyBackend::new(FakeBackend::new());
    fake.slow(Operation::Start, Duration::from_millis(200));
    let manager = manager_on(Arc::new(fake.clone()), "");
    let mut request = ask(&["sleep", "600"]);
    request.timeout = Some(Duration::from_secs(1));
    let caller = {
        let manager = manager.clone();
        tokio::spawn(async move { manager.create(request).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    caller.abort();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let list = manager.list();
    assert_eq!(list.len(), 1, "the start finished and is watched");
    let ended = manager.wait(&list[0].id).await.unwrap();
    assert_eq!(ended.state, SandboxState::TimedOut, "its deadline held");
    until_gone(fake.inner()).await;
}

#[tokio::test]
async fn an_engine_outage_is_a_503_and_is_recovered_from_without_a_restart() {
    let fake = FaultyBackend::new(FakeBackend::new());
    let manager = manager_on(Arc::new(fake.clone()), "");
    let running = manager.create(ask(&["sleep", "0.5"])).await.unwrap();
    let lost = fake.inner().leave_behind("lost00000000");

    fake.set_down(true);
    let refused = manager.create(ask(&["true"])).await.unwrap_err();
    assert_eq!(refused.http_status(), 503);
    assert_eq!(refused.code(), "docker_unavailable");
    assert_eq!(manager.running(), 1, "the refused start gave its slot back");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    fake.set_down(false);

    let ended = manager.wait(&running.id).await.unwrap();
    assert_eq!(ended.state, SandboxState::Exited, "{ended:?}");
    // Its removal failed while the engine was away; the one left behind is unowned too.
    assert_eq!(manager.reap_orphans().await.unwrap(), 2);
    assert_eq!(
        fake.inner().existing(),
        0,
        "{lost} and the finished one are gone"
    );
    manager.create(ask(&["true"])).await.expect("serves again");
}

#[tokio::test]
async fn reaping_leaves_running_and_starting_sandboxes_alone() {
    let fake = FakeBackend::new();
    let manager = manager_on(Arc::new(fake.clone()), "");
    let running = manager.create(ask(&["sleep", "30"])).await.unwrap();
    fake.leave_behind("orphan000000");
    assert_eq!(manager.reap_orphans().await.unwrap(), 1);
    assert_eq!(fake.existing(), 1);
    assert_eq!(
        manager.get(&running.id).unwrap().state,
        SandboxState::Running
    );
    manager.shutdown(Duration::ZERO).await;
}

#[tokio::test]
async fn a_failed_start_gives_its_slot_back_and_says_what_failed() {
    let fake = FaultyBackend::new(FakeBackend::new());
    fake.fail(Operation::Start, 1);
    let manager = manager_on(Arc::new(fake.clone()), "max_running = 1");
    let err = manager.create(ask(&["true"])).await.unwrap_err();
    assert_eq!(err.http_status(), 503);
    assert!(err.to_string().contains("Start"), "{err}");
    assert_eq!(manager.running(), 0);
    manager
        .create(ask(&["true"]))
        .await
        .expect("the slot is free");
}

#[tokio::test]
async fn history_is_bounded_and_listings_carry_no_output() {
    let fake = FakeBackend::new();
    let manager = manager_on(Arc::new(fake.clone()), "history = 50");
    for _ in 0..300 {
        let info = manager.create(ask(&["echo", "hello"])).await.unwrap();
        manager.wait(&info.id).await.unwrap();
    }
    assert_eq!(manager.known(), 50);
    let list = manager.list();
    assert_eq!(list.len(), 50);
    assert!(
        list.iter()
            .all(|i| i.stdout.is_none() && i.stderr.is_none())
    );
    let one = manager.get(&list[0].id).unwrap();
    assert_eq!(
        one.stdout.as_deref(),
        Some("hello\n"),
        "the whole record has it"
    );
}

/// A fresh directory for `server.state_dir`.
fn state_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("autoheal-manager-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn endpoint_toml(network: &str, state: &std::path::Path) -> String {
    format!(
        "network = \"{network}\"\ncredentials = \"endpoint\"\n[server]\nstate_dir = \"{}\"",
        state.display()
    )
}

#[tokio::test]
async fn an_endpoint_token_lives_exactly_as_long_as_its_sandbox() {
    let state = state_dir();
    let tokens = state.join(crate::sandbox::TOKEN_DIR);
    let faulty = FaultyBackend::new(FakeBackend::new());
    let manager = manager_on(Arc::new(faulty.clone()), &endpoint_toml("host", &state));

    let running = manager.create(ask(&["sleep", "30"])).await.unwrap();
    assert_eq!(running.credentials, CredentialsDelivery::Endpoint);
    assert_eq!(manager.credentials_endpoint().len(), 1);
    assert!(tokens.join(&running.id).exists());
    manager.stop(&running.id).await.unwrap();
    assert!(
        manager.credentials_endpoint().is_empty(),
        "revoked at the end"
    );
    assert!(!tokens.join(&running.id).exists(), "its file deleted");

    // A start that fails leaves no token behind either.
    faulty.fail(Operation::Start, 1);
    manager.create(ask(&["true"])).await.unwrap_err();
    assert!(manager.credentials_endpoint().is_empty());
    assert_eq!(std::fs::read_dir(&tokens).unwrap().count(), 0);

    // Per request: keys in the environment instead.
    let mut keys = ask(&["true"]);
    keys.credentials = Some(CredentialsDelivery::Env);
    let done = manager.run_to_end(keys).await.unwrap();
    assert_eq!(done.credentials, CredentialsDelivery::Env);
    std::fs::remove_dir_all(&state).unwrap();
}

#[tokio::test]
async fn the_endpoint_is_refused_where_a_sandbox_cannot_reach_it() {
    let state = state_dir();
    // A sandbox without a network reaches no endpoint.
    let manager = manager_on(Arc::new(FakeBackend::new()), &endpoint_toml("none", &state));
    let refused = manager.create(ask(&["true"])).await.unwrap_err();
    assert_eq!(
        (refused.http_status(), refused.code()),
        (503, "credentials_endpoint_unavailable"),
        "{refused}"
    );
    assert!(
        refused.to_string().contains("credentials = \"env\""),
        "{refused}"
    );
    assert_eq!(manager.running(), 0);
    std::fs::remove_dir_all(&state).unwrap();
}
