//! What a job's report says once it ended: the end, each rank's pid and status, and warnings
//! about ranks that never wired up through PMI.

use std::path::Path;

use super::policy::StopPolicy;
use crate::job::{JobEnd, JobReport};

/// The report of a job that ran under `policy`; `program` is what its ranks ran.
pub fn job_report(policy: &StopPolicy, program: &Path) -> JobReport {
    let spoke: Vec<bool> = policy.ranks().iter().map(|r| r.spoke_pmi).collect();
    JobReport {
        end: policy.end().cloned().unwrap_or(JobEnd::Success),
        ranks: policy.ranks().iter().map(|r| r.pid.zip(r.status)).collect(),
        warnings: pmi_warnings(&spoke, program),
    }
}

/// Warnings about ranks that did not wire up through PMI.
pub fn pmi_warnings(spoke: &[bool], program: &Path) -> Vec<String> {
    let silent: Vec<String> =
        spoke.iter().enumerate().filter(|(_, s)| !**s).map(|(r, _)| r.to_string()).collect();
    let talked = spoke.len() - silent.len();
    if talked > 0 && !silent.is_empty() {
        return vec![format!(
            "rank(s) {} never connected to PMI while {talked} other rank(s) did: they ran as separate \
             singletons (a different program, or an MPI whose wire-up this job did not serve: --mpi)",
            silent.join(",")
        )];
    }
    if talked == 0 && spoke.len() > 1 && links_open_mpi(program) {
        return vec![format!(
            "{} links Open MPI (libmpi.so.40), which wires up only through PMIx, and this job served \
             none: its {} ranks ran as singletons of size 1 (or, seeing SLURM_* variables, stopped in \
             MPI_Init as under srun); run it with --mpi=pmix or --mpi=auto (or set GANGWAY_MPI=auto) \
             on nodes with libpmix (Debian: libpmix2), or build it with MPICH (mpicc.mpich)",
            program.display(),
            spoke.len()
        )];
    }
    Vec::new()
}

fn links_open_mpi(program: &Path) -> bool {
    let needle = b"libmpi.so.40";
    std::fs::read(program)
        .map(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
        .unwrap_or(false)
}
