//! The PMI service MPI ranks wire up through: PMI-1 and PMI-2 on one socket per rank.
//!
//! `wire` parses and formats both protocols, `node` is the per-node state machine (KVS staging,
//! fences, node attributes), `limits` bounds what ranks may store, `root` merges fences and owns
//! the job-wide name service, `mapping` writes `PMI_process_mapping`. These are pure; `server`
//! does the socket I/O (`events` is what it reports), and `peer` tells who owns a connection to the `PMI_PORT` listener.
//! `pmix` is the PMIx server beside them (Open MPI), `pmix_root` its job-wide fence collector
//! and direct-modex router, `pmix_names` its job-wide name service (both pure).

pub mod events;
pub mod limits;
pub mod mapping;
pub mod node;
pub mod peer;
pub mod pmix;
pub mod pmix_names;
pub mod pmix_root;
pub mod root;
pub mod server;
pub mod wire;
