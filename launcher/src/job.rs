//! A validated job request, and how a job ended.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::exit_status::RankStatus;
use crate::input::InputMode;
use crate::pmi::pmix::MpiKind;
use crate::pmi::server::PmiMode;
use crate::rank_env::ExportPolicy;

/// One SPMD job as the launcher runs it: every field already checked.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// The program, resolved to a path that exists and is executable.
    pub program: PathBuf,
    /// `argv[0]` as the user typed it.
    pub argv0: OsString,
    pub args: Vec<OsString>,
    pub ntasks: u32,
    /// `-c`: CPUs each rank gets (also its `OMP_NUM_THREADS` unless set).
    pub cpus_per_task: u32,
    /// Working directory of the ranks (the launcher's own when `None`).
    pub cwd: Option<PathBuf>,
    pub export: ExportPolicy,
    /// Prefix every output line with `RANK: `.
    pub label: bool,
    /// `--output` file pattern (stdout, and stderr too unless `error` is set).
    pub output: Option<String>,
    /// `--error` file pattern.
    pub error: Option<String>,
    /// Open the output files for appending (`--open-mode=append`), not truncated.
    pub append_output: bool,
    pub input: InputMode,
    pub kill_on_bad_exit: bool,
    pub time_limit: Option<Duration>,
    /// Between SIGTERM and SIGKILL when the job is stopped.
    pub kill_grace: Duration,
    pub pmi_mode: PmiMode,
    /// Which PMI services the ranks get (`--mpi`).
    pub mpi: MpiKind,
    pub job_id: String,
    /// This node's name.
    pub host: String,
    pub user: String,
    /// Progress messages on stderr.
    pub verbose: bool,
}

/// Why a job ended; the first cause wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEnd {
    /// Every rank exited 0.
    Success,
    /// A rank exited non-zero or was killed by a signal.
    RankFailed { rank: u32, pid: u32, status: RankStatus },
    /// A rank could not execute the program (exec failed with this errno).
    ExecFailed { rank: u32, errno: i32 },
    /// A rank called `MPI_Abort`.
    Aborted { rank: u32, code: i32 },
    /// The ranks could not wire up: a PMI protocol violation or a rank left without finalize.
    PmiFailed { reason: String },
    /// The `--time` limit was reached.
    TimeLimit,
    /// The user pressed Ctrl-C twice.
    Interrupted,
    /// A node stopped answering or its connection dropped while the job ran.
    NodeLost { node: String, reason: String },
    /// A node could not start its proxy or its ranks.
    NodeStartFailed { node: String, message: String },
}

/// What happened to a job.
#[derive(Debug, Clone)]
pub struct JobReport {
    pub end: JobEnd,
    /// Per rank: pid and exit status (`None` if it never started).
    pub ranks: Vec<Option<(u32, RankStatus)>>,
    /// Things the user should know although they did not fail the job.
    pub warnings: Vec<String>,
}

/// Why a job could not be started at all.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(transparent)]
    Program(#[from] crate::spawn::ProgramError),
    #[error(transparent)]
    Pattern(#[from] crate::output::PatternError),
    #[error("cannot open output file '{path}': {source}")]
    OutputFile { path: PathBuf, source: std::io::Error },
    #[error("cannot start rank {rank} ({program}): {source}")]
    Spawn { rank: u32, program: PathBuf, source: std::io::Error },
    #[error("{message}")]
    Node { message: String },
    #[error("cannot set up {what}: {source}")]
    Setup { what: &'static str, source: std::io::Error },
}
