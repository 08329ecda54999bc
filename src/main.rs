//! Entry point: parse the command line, run the subcommand, and turn its outcome into an exit
//! code; the one place a command's failure is printed.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use gangway::cli::error::CliError;
use gangway::cli::{self, Cli, Command};
use gangway::exit_code;

fn main() -> ExitCode {
    let done = |()| exit_code::SUCCESS;
    if let Some(name) = cli::slurm::invoked_as() {
        let result = cli::slurm::main(name, std::env::args_os().skip(1).collect());
        return finish(result);
    }
    let result = match Cli::parse().command {
        Command::Run(args) => cli::run::main(*args),
        Command::Topology(args) => cli::topology::main(args).map(done),
        Command::Proxy(args) => cli::proxy::main(args).map(done),
        Command::Alloc(args) => cli::alloc::main(*args),
        Command::Batch(args) => cli::batch::main(*args, cli::batch::raw_args()),
        Command::Queue(args) => cli::queue::main(args).map(done),
        Command::Cancel(args) => cli::cancel::main(args).map(done),
        Command::Nodes(args) => cli::nodes::main(args).map(done),
        Command::Show(args) => cli::show::main(args).map(done),
        Command::History(args) => cli::history::main(args).map(done),
        Command::Hold(args) => cli::hold::main(args, true).map(done),
        Command::Release(args) => cli::hold::main(args, false).map(done),
        Command::Drain(args) => cli::drain::drain(args).map(done),
        Command::Resume(args) => cli::drain::resume(args).map(done),
        Command::Token(args) => cli::token::main(args).map(done),
        Command::Keygen(args) => cli::keygen::main(args).map(done),
        Command::Controller(args) => cli::controller::main(args).map(done),
        Command::Agent(args) => cli::agent::main(*args).map(done),
        Command::Fence => Ok(gangway::agent::fence::main()),
        Command::Simulate(args) => cli::simulate::main(*args).map(done),
        Command::InstallSlurmCommands(args) => cli::slurm::install::main(args).map(done),
        Command::Share(args) => cli::share::main(args).map(done),
        Command::Reconfigure(args) => cli::reconfigure::main(args).map(done),
    };
    finish(result)
}

/// The exit code of a command's outcome, its failure printed.
fn finish(result: Result<u8, CliError>) -> ExitCode {
    ExitCode::from(match result {
        Ok(code) => code,
        Err(error) => {
            report(&error);
            exit_code::for_error(&error)
        }
    })
}

/// Prints why a command failed, the way each kind has always been printed.
fn report(error: &CliError) {
    // Under a Slurm name the messages start as Slurm's do: `srun: error: ...`.
    let program = cli::slurm::invoked_as().unwrap_or("gangway");
    let mut stderr = std::io::stderr().lock();
    let _ = match error {
        // The controller's refusals hold one problem per line (a cancel of several jobs).
        CliError::Refused(refusal) => refusal
            .message
            .lines()
            .try_for_each(|line| writeln!(stderr, "{program}: error: {line}")),
        CliError::JobEnded(news) => writeln!(stderr, "{program}: {news}"),
        CliError::Proxy(message) => writeln!(stderr, "{message}"),
        other => writeln!(stderr, "{program}: error: {other}"),
    };
}
