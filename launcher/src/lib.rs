//! Starts the ranks of one SPMD job and supervises them until the job ends.

pub mod pmi;
