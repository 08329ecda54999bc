//! Why a node source could not produce its nodes: [`NodeSourceError`], and [`SlurmError`] for
//! the Slurm variables. Messages say where the problem is and what to write instead.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

use super::spec::SpecError;
use super::variables::{SLURM_JOB_NODELIST, SLURM_TASKS_PER_NODE};

/// Why a node source could not produce its nodes. Messages say where the problem is (the flag,
/// `file:line`, or the variable) and what to write instead.
#[derive(Debug, Error)]
pub enum NodeSourceError {
    /// `--hosts` did not parse.
    #[error("--hosts: {problem}")]
    Hosts {
        /// What is wrong.
        problem: SpecError,
    },
    /// One line of a hostfile (or of a PBS node file) did not parse.
    #[error("{file}:{line}: {problem}")]
    Line {
        /// The file as given.
        file: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        problem: SpecError,
    },
    /// A hostfile or node file without any host.
    #[error(
        "{file}: no hosts in the file (write one host per line, e.g. 'node1' or 'node1 slots=4')"
    )]
    NoHosts {
        /// The file as given.
        file: String,
    },
    /// The file could not be read.
    #[error("cannot read {what} {}: {source}", .path.display())]
    Read {
        /// `"hostfile"` or `"PBS_NODEFILE"`.
        what: &'static str,
        /// The path as given.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The Slurm variables did not parse or disagree.
    #[error(transparent)]
    Slurm(#[from] SlurmError),
    /// Both explicit flags at once: which one was meant is a guess we do not make.
    #[error("give either --hosts or --hostfile, not both")]
    BothGiven,
}

/// Why the Slurm variables could not be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SlurmError {
    /// The node list did not expand.
    #[error("{SLURM_JOB_NODELIST}='{value}': {problem}")]
    NodeList {
        /// The variable's value (shortened).
        value: String,
        /// What is wrong.
        problem: SpecError,
    },
    /// A piece of the tasks variable is not `N` or `N(xK)` with N, K >= 1.
    #[error(
        "{SLURM_TASKS_PER_NODE}='{value}': '{part}' is not a task count like '2' or a repeated \
         count like '2(x3)' (counts and repeats are whole numbers >= 1)"
    )]
    BadTasks {
        /// The variable's value (shortened).
        value: String,
        /// The offending piece.
        part: String,
    },
    /// The two variables describe different numbers of nodes.
    #[error(
        "{SLURM_TASKS_PER_NODE}='{tasks}' covers {counted} nodes but {SLURM_JOB_NODELIST}='{nodelist}' \
         names {nodes} (are both from the same job? unset them to run outside the allocation)"
    )]
    Mismatch {
        /// `SLURM_TASKS_PER_NODE` (shortened).
        tasks: String,
        /// Nodes it covers.
        counted: u128,
        /// `SLURM_JOB_NODELIST` (shortened).
        nodelist: String,
        /// Nodes that names.
        nodes: usize,
    },
}
