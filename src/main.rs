//! The `autoheal` binary: parse the command line, run the command, exit with its status.

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;

use autoheal::cli::Cli;
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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("autoheal: cannot start the async runtime: {err}");
            return Exit::Unavailable.into();
        }
    };
    runtime.block_on(commands::run(cli)).into()
}
