//! `autoheal check`: Test Connection for every integration (or one), as text or JSON.
//!
//! Exit 0 when everything is allowed, 77 when something is denied or an account differs,
//! 69 when credentials cannot be had.

use crate::check::{check_all, render_text};
use crate::cli::{CheckArgs, Cli, Output};
use crate::credentials::CredentialBroker;
use crate::exit_code::Exit;
use crate::stdout::print_line;

pub async fn run(cli: &Cli, args: &CheckArgs) -> Exit {
    let config = match super::load_config_and_log(cli) {
        Ok(config) => config,
        Err(exit) => return exit,
    };
    let integrations: Vec<_> = match &args.integration {
        None => config.integrations.clone(),
        Some(name) => match config.integration(name) {
            Some(integration) => vec![integration.clone()],
            None => {
                let known: Vec<_> = config
                    .integrations
                    .iter()
                    .map(|i| i.name.as_str())
                    .collect();
                eprintln!(
                    "autoheal check: no integration named {name:?} (configured: {})",
                    known.join(", ")
                );
                return Exit::Usage;
            }
        },
    };
    let broker = CredentialBroker::from_config(&config).await;
    let report = check_all(&broker, &integrations).await;
    match args.output.output {
        Output::Json => {
            print_line(serde_json::to_string_pretty(&report).expect("the report serializes"))
        }
        Output::Text => print_line(render_text(&report).trim_end()),
    }
    report.exit()
}
