//! The controller: the cluster's queue, nodes and allocations. Pure parts: the state model
//! with every transition ([`cluster`]), which places jobs with the `gangway-scheduler` crate;
//! I/O parts: the SQLite store ([`store`]) and the sockets ([`server`]).

pub mod cluster;
pub mod config;
pub mod config_scheduling;
pub mod disk;
pub mod idempotency;
pub mod limits;
pub mod server;
pub mod store;
