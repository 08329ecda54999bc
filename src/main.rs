//! Entry point: parse the command line, run the subcommand, turn the outcome into an exit code.

fn main() {}
