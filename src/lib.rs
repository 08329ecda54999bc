//! gangway: the `gangway` binary's commands, as a library so integration tests can reach them.

pub mod cli;
pub mod controller;
pub mod exit_code;
