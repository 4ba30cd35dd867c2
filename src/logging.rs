//! Tracing, set up once per process. Logs go to stderr: stdout belongs to command output
//! and to the MCP protocol.
//!
//! The filter is `RUST_LOG`-style, taken from `AUTOHEAL_LOG`, else `RUST_LOG`, else the
//! config's `log.filter`. The format is text (coloured on a terminal) or JSON lines.
//!
//! Whatever the filter says, some dependencies are held below the levels at which they log
//! request bodies: bollard logs every Docker request body at DEBUG (a container's
//! environment holds its credentials), and the HTTP stacks of the AWS SDK log wire data at
//! TRACE. Secrets must not reach a log line even when someone debugs.

use std::io::IsTerminal;

use tracing::{Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

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
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(filter_fn(below_secret_levels));
    let result = match format {
        LogFormat::Json => registry
            .with(fmt.json().flatten_event(true).with_current_span(false))
            .try_init(),
        LogFormat::Text => registry
            .with(fmt.with_ansi(std::io::stderr().is_terminal()))
            .try_init(),
    };
    // A second init (tests) keeps the first subscriber; nothing to do.
    let _ = result;
}

/// False for events of dependencies at levels where they log request or response bodies.
fn below_secret_levels(metadata: &Metadata<'_>) -> bool {
    let target = metadata.target();
    let level = *metadata.level();
    if target.starts_with("bollard") {
        return level <= Level::INFO;
    }
    if [
        "aws_smithy",
        "aws_sigv4",
        "aws_config",
        "aws_runtime",
        "hyper",
        "h2",
        "reqwest",
    ]
    .iter()
    .any(|prefix| target.starts_with(prefix))
    {
        return level <= Level::DEBUG;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_body_levels_of_dependencies_are_never_logged() {
        use tracing::callsite::Identifier;
        struct Site;
        impl tracing::callsite::Callsite for Site {
            fn set_interest(&self, _: tracing::subscriber::Interest) {}
            fn metadata(&self) -> &Metadata<'_> {
                unreachable!()
            }
        }
        static SITE: Site = Site;
        let meta = |target: &'static str, level: Level| {
            Metadata::new(
                "event",
                target,
                level,
                None,
                None,
                None,
                tracing::field::FieldSet::new(&[], Identifier(&SITE)),
                tracing::metadata::Kind::EVENT,
            )
        };
        assert!(!below_secret_levels(&meta("bollard::docker", Level::DEBUG)));
        assert!(below_secret_levels(&meta("bollard::docker", Level::INFO)));
        assert!(!below_secret_levels(&meta(
            "aws_smithy_runtime::client",
            Level::TRACE
        )));
        assert!(below_secret_levels(&meta(
            "aws_smithy_runtime::client",
            Level::DEBUG
        )));
        assert!(below_secret_levels(&meta(
            "autoheal::sandbox",
            Level::TRACE
        )));
    }
}
