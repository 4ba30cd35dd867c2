//! systemd's notify protocol, when `NOTIFY_SOCKET` is set (a `Type=notify` unit):
//! `READY=1` once the API listens and the first credential attempt has finished,
//! `WATCHDOG=1` at half of `WATCHDOG_USEC` while the process runs, `STOPPING=1` when the
//! drain begins. Without `NOTIFY_SOCKET` every call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::task::JoinHandle;

fn send(state: NotifyState<'_>) {
    if let Err(err) = sd_notify::notify(&[state]) {
        tracing::warn!(error = %err, "cannot notify systemd");
    }
}

/// Startup is finished.
pub fn ready() {
    send(NotifyState::Ready);
}

/// Shutdown has begun.
pub fn stopping() {
    send(NotifyState::Stopping);
}

/// Pets the watchdog at half its interval, when systemd asked for one.
pub fn start_watchdog() -> Option<JoinHandle<()>> {
    let interval = sd_notify::watchdog_enabled()? / 2;
    let interval = interval.max(Duration::from_millis(10));
    tracing::info!(
        interval_ms = interval.as_millis() as u64,
        "systemd watchdog enabled"
    );
    Some(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        loop {
            ticks.tick().await;
            send(NotifyState::Watchdog);
        }
    }))
}
