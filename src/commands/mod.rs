//! One file per command; `run` dispatches the parsed command line to them.

mod check;
mod config_check;
mod mcp;
mod oidc;
mod policy;
mod sandbox_run;
mod serve;
mod tool;
mod tools;

use crate::cli::{Cli, Command, ConfigCommand, SandboxCommand};
use crate::config::{self, Config};
use crate::exit_code::Exit;
use crate::logging;

/// Runs the command and says how the process should exit.
pub async fn run(cli: Cli) -> Exit {
    match &cli.command {
        Command::Config(ConfigCommand::Check(args)) => config_check::run(&cli, args.output),
        Command::Serve => serve::run(&cli).await,
        Command::Check(args) => check::run(&cli, args).await,
        Command::Tools(args) => tools::run(args),
        Command::Tool(args) => {
            quiet_logging(&cli);
            tool::run(args).await
        }
        Command::Mcp(args) => {
            quiet_logging(&cli);
            mcp::run(&cli, args).await
        }
        Command::Policy(args) => policy::run(&cli, args),
        Command::Sandbox(SandboxCommand::Run(args)) => sandbox_run::run(&cli, args).await,
        Command::Oidc(command) => oidc::run(&cli, command),
    }
}

/// Loads the configuration and starts logging as it says; on failure prints why and gives
/// the exit status (78).
pub fn load_config_and_log(cli: &Cli) -> Result<Config, Exit> {
    match config::load(cli.config.as_deref()) {
        Ok(config) => {
            logging::init(
                cli.log_format.unwrap_or(config.log.format),
                &config.log.filter,
            );
            Ok(config)
        }
        Err(err) => {
            eprintln!("autoheal: {err}");
            Err(Exit::Config)
        }
    }
}

/// The tools log only warnings (to stderr): their answer is what matters.
fn quiet_logging(cli: &Cli) {
    logging::init(cli.log_format.unwrap_or(config::LogFormat::Text), "warn");
}
