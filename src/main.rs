//! Entry point: parse the command line, run the subcommand, turn the outcome into an exit code.

use std::process::ExitCode;

use clap::Parser;
use gangway::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Run(args) => gangway::cli::run::main(*args),
        Command::Topology(args) => gangway::cli::topology::main(args),
        Command::Proxy(args) => gangway::cli::proxy::main(args),
    };
    ExitCode::from(code)
}
