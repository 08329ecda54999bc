//! End-to-end tests of the `gangway` binary with real MPICH programs, real processes and signals.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking; that is their job"
)]
#![expect(
    clippy::disallowed_methods,
    reason = "the tests are plain threads driving processes: a sleep blocks no runtime"
)]

mod arrays;
mod attack;
mod binding;
mod containment;
mod controlled;
mod dependencies;
mod failures;
mod io;
mod limits;
mod managed;
mod managed_containment;
mod mpi;
mod multinode;
mod pmix;
mod scheduling;
mod signals;
mod simulate;
mod slurm;
mod slurm_compare;
mod support;
mod typed_gpus;
mod usage;
