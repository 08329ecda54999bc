//! End-to-end tests of the `gangway` binary with real MPICH programs, real processes and signals.

// Test helpers fail the test by panicking; that is their job.
#![allow(clippy::unwrap_used)]

mod attack;
mod binding;
mod controlled;
mod failures;
mod io;
mod managed;
mod mpi;
mod multinode;
mod signals;
mod support;
mod usage;
