//! The daemon's life with its supervisor: systemd's notify protocol (`notify.rs`).
//! Signals are handled by `commands/serve.rs`, where the drain order lives.

pub mod notify;
