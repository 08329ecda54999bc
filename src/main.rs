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
        Command::Alloc(args) => gangway::cli::alloc::main(*args),
        Command::Batch(args) => gangway::cli::batch::main(*args),
        Command::Queue(args) => gangway::cli::query::queue(args),
        Command::Cancel(args) => gangway::cli::control::cancel(args),
        Command::Nodes(args) => gangway::cli::query::nodes(args),
        Command::Show(args) => gangway::cli::query::show(args),
        Command::History(args) => gangway::cli::query::history(args),
        Command::Hold(args) => gangway::cli::control::hold(args, true),
        Command::Release(args) => gangway::cli::control::hold(args, false),
        Command::Drain(args) => gangway::cli::control::drain(args),
        Command::Resume(args) => gangway::cli::control::resume(args),
        Command::Token(args) => gangway::cli::control::token(args),
        Command::Keygen(args) => gangway::cli::control::keygen(args),
        Command::Controller(args) => gangway::cli::controller::controller(args),
        Command::Agent(args) => gangway::cli::controller::agent(*args),
        Command::Fence => gangway::agent::fence::main(),
        Command::Simulate(args) => gangway::cli::simulate::main(*args),
    };
    ExitCode::from(code)
}
