//! The PMI service MPI ranks wire up through: PMI-1 and PMI-2 on one socket per rank.
//!
//! `wire` parses and formats both protocols, `node` is the per-node state machine (KVS staging,
//! fences, node attributes), `root` merges fences and owns the job-wide name service, `mapping`
//! writes `PMI_process_mapping`. All four are pure; `server` does the socket I/O.

pub mod mapping;
pub mod node;
pub mod peer;
pub mod root;
pub mod server;
pub mod wire;
