//! The `autoheal` binary: parse the command line, run the command, exit with its status.

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;

use autoheal::cli::{Cli, Command};
use autoheal::commands;
use autoheal::exit_code::Exit;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return match err.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => Exit::Ok.into(),
                _ => Exit::Usage.into(),
            };
        }
    };
    // The daemon serves many clients at once; every other command is one short task, for
    // which one thread starts faster and holds less memory (the tools run per question).
    let mut builder = if matches!(cli.command, Command::Serve) {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("autoheal: cannot start the async runtime: {err}");
            return Exit::Unavailable.into();
        }
    };
    runtime.block_on(commands::run(cli)).into()
}
