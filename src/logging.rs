//! Tracing, set up once per process. Logs go to stderr: stdout belongs to command output
//! and to the MCP protocol.
//!
//! The filter is `RUST_LOG`-style, taken from `AUTOHEAL_LOG`, else `RUST_LOG`, else the
//! config's `log.filter`. The format is text (coloured on a terminal) or JSON lines.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Environment variable that overrides every other filter setting.
pub const LOG_FILTER_ENV: &str = "AUTOHEAL_LOG";

/// Installs the global subscriber. `default_filter` applies when no variable is set.
pub fn init(format: LogFormat, default_filter: &str) {
    let directives = std::env::var(LOG_FILTER_ENV)
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| default_filter.to_owned());
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|err| {
        eprintln!("autoheal: ignoring log filter {directives:?} ({err}); using \"info\"");
        EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
    // A second init (tests) keeps the first subscriber; nothing to do.
    let _ = result;
}
