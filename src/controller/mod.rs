//! The controller: the cluster's queue, nodes and allocations. Pure parts: the data
//! ([`state`]), the transitions over it grouped by concern ([`handlers`]), each returning one
//! [`effects::Effects`] value, and what commands print ([`views`], [`launch`]); jobs are placed
//! with the `gangway-scheduler` crate. I/O parts: the SQLite store ([`store`]) and the sockets
//! ([`server`]), the only place that talks to the world.

pub mod arrays;
pub mod books;
pub mod config;
pub mod config_scheduling;
pub mod dependencies;
pub mod disk;
pub mod effects;
pub mod handlers;
pub mod idempotency;
pub mod launch;
pub mod limits;
pub mod mail;
pub mod server;
pub mod slurm_env;
pub mod state;
pub mod store;
pub mod views;

#[cfg(test)]
pub(crate) mod scenario;
