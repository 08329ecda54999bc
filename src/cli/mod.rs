//! The command line: one module per subcommand, each turning clap's flags into a checked request;
//! beside them the pieces several share (typed flag values, the job shape, the wait for an
//! allocation, the one error type).

pub mod accounting;
pub mod agent;
pub mod alloc;
pub mod allocation;
pub mod array_rows;
pub mod batch;
pub mod begin_time;
pub mod cancel;
pub mod controller;
pub mod daemon;
pub mod directives;
pub mod drain;
pub mod error;
pub mod flag_values;
pub mod history;
pub mod hold;
pub mod job_extras;
pub mod keygen;
pub mod nodes;
pub mod ok_reply;
pub mod proxy;
pub mod query;
pub mod queue;
pub mod reconfigure;
pub mod run;
pub mod shape;
pub mod share;
pub mod show;
pub mod simulate;
pub mod slurm;
pub mod submission;
pub mod token;
pub mod topology;
pub mod user;

use clap::{Parser, Subcommand};

/// gangway: gang allocations and an MPI launcher in one binary.
#[derive(Debug, Parser)]
#[command(name = "gangway", version, propagate_version = true)]
#[command(about = "Launch MPI and other SPMD jobs: `gangway run -n 4 ./a.out`")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run N copies (ranks) of a program, wired up for MPI through PMI.
    Run(Box<run::RunArgs>),
    /// The per-node helper of a multi-node run (started by gangway itself over SSH).
    #[command(hide = true)]
    Proxy(proxy::ProxyArgs),
    /// Show this machine's hardware (packages, NUMA nodes, caches, cores, PUs, GPUs).
    Topology(topology::TopologyArgs),
    /// Wait for an allocation, then run a command (or a shell) in it (like salloc).
    Alloc(Box<alloc::AllocArgs>),
    /// Submit a batch script (like sbatch).
    Batch(Box<batch::BatchArgs>),
    /// Pending and running jobs (like squeue).
    Queue(queue::QueueArgs),
    /// Cancel jobs, or signal them (like scancel).
    Cancel(cancel::CancelArgs),
    /// The cluster's nodes: state, CPUs, memory, load (like sinfo).
    Nodes(nodes::NodesArgs),
    /// Everything about one job or node (like scontrol show).
    Show(show::ShowArgs),
    /// Finished jobs with exit codes (like sacct).
    History(history::HistoryArgs),
    /// Keep pending jobs from starting.
    Hold(hold::JobIds),
    /// Let held jobs start.
    Release(hold::JobIds),
    /// Take nodes out of service (administrators).
    Drain(drain::DrainArgs),
    /// Put drained nodes back in service (administrators).
    Resume(drain::ResumeArgs),
    /// Print a token for reaching the controller over TCP (GANGWAY_TOKEN), valid for --valid.
    Token(token::TokenArgs),
    /// Write a new cluster key file.
    Keygen(keygen::KeygenArgs),
    /// The cluster's controller daemon: queue, allocations, state in SQLite.
    Controller(controller::ControllerArgs),
    /// The per-node daemon: registers, heartbeats, runs job steps.
    Agent(Box<agent::AgentArgs>),
    /// The agent's fencer (started by the agent itself): kills its jobs when its lease runs out.
    #[command(hide = true)]
    Fence,
    /// Replay a workload on simulated nodes, in virtual time, through the scheduler.
    Simulate(Box<simulate::SimulateArgs>),
    /// Make srun, sbatch, salloc, squeue, scancel, sinfo, sacct and scontrol (symlinks to this
    /// binary) in a directory, for Slurm users' scripts and habits.
    InstallSlurmCommands(slurm::install::InstallArgs),
    /// Fair share by account and user: shares, usage, factor (like sshare).
    Share(share::ShareArgs),
    /// Reload the controller's scheduling policy from its file (administrators).
    Reconfigure(reconfigure::ReconfigureArgs),
}
