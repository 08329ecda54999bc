//! Starts the ranks of one SPMD job and supervises them until the job ends.

pub mod binding;
pub mod bootstrap;
pub mod exit_status;
pub mod flow;
pub mod input;
pub mod job;
pub mod layout;
pub mod local_run;
pub mod nodes;
pub mod output;
pub mod output_routes;
pub mod pmi;
pub mod proxy;
pub mod rank_env;
pub mod ranks;
pub mod run_cgroup;
pub mod signals;
pub mod spawn;
pub mod supervisor;
pub mod time_limit;
