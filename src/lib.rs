//! gangway: the `gangway` binary's commands, as a library so integration tests can reach them.

pub mod agent;
pub mod auth;
pub mod cli;
pub mod client;
pub mod controller;
pub mod exit_code;
pub mod protocol;
