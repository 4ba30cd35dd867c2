//! The daemon's life: the configuration in force and its reload on SIGHUP (`live.rs`,
//! `reload.rs`), and systemd's notify protocol (`notify.rs`). Signals are handled by
//! `commands/serve.rs`, where the drain order lives.

mod live;
pub mod notify;
mod reload;

pub use live::{Generation, LiveConfig};
pub use reload::{ReloadSummary, reload};
