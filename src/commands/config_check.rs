//! `autoheal config check`: validate the configuration and print the effective result.
//!
//! Every problem is listed at once, each named by its key; the exit status is 78 when there
//! is any. Secrets (external IDs) print as `**REDACTED**`. Warnings (a bare instance role,
//! host networking) go to stderr and do not change the exit status.

use serde_json::json;

use crate::cli::{Cli, Output};
use crate::config::{self, ConfigError};
use crate::exit_code::Exit;
use crate::stdout::print_line;

pub fn run(cli: &Cli, output: Output) -> Exit {
    match config::load(cli.config.as_deref()) {
        Ok(config) => {
            for warning in config.warnings() {
                eprintln!("autoheal: warning: {warning}");
            }
            match output {
                Output::Text => print_line(config.to_toml().trim_end()),
                Output::Json => print_line(format!("{:#}", config.to_json())),
            }
            Exit::Ok
        }
        Err(err) => {
            match output {
                Output::Text => eprintln!("autoheal: {err}"),
                Output::Json => print_line(format!("{:#}", error_document(&err))),
            }
            Exit::Config
        }
    }
}

fn error_document(err: &ConfigError) -> serde_json::Value {
    let issues: Vec<_> = match err {
        ConfigError::Invalid { issues, .. } => issues
            .iter()
            .map(|i| json!({"key": i.key, "message": i.message}))
            .collect(),
        _ => Vec::new(),
    };
    json!({"error": {"code": "invalid_config", "message": err.to_string(), "issues": issues}})
}
