//! The `autoheal` binary: parse the command line, run the command, exit with its status.

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;

use autoheal::cli::{Cli, Command};
use autoheal::commands;
use autoheal::exit_code::Exit;

/// Stack of each of the daemon's worker threads: the main thread's 8 MiB.
const WORKER_STACK_BYTES: usize = 8 * 1024 * 1024;

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
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        // Deep async call chains (Test Connection joins dozens of SDK calls) need more than
        // a worker thread's default 2 MiB in debug builds; untouched stack costs no memory.
        builder.thread_stack_size(WORKER_STACK_BYTES);
        builder
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
