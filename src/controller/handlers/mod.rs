//! Every transition of the controller's state, as methods over [`Cluster`] grouped by concern.
//! Pure: the time comes in as values (wall milliseconds for records and time limits, [`Mono`]
//! for liveness), and each handler returns one [`Effects`] value for the server to carry out.
//!
//! Layers, each using only those below it: [`client`], [`agents`], [`liveness`], [`steps`] and
//! [`schedule`] (what the server calls) → [`requeue`] and [`release`] (how a job ends or goes
//! back to the queue) → the state, [`launch`](super::launch) and [`views`](super::views).
//! [`restart`] builds the state from what the store held.
//!
//! [`Cluster`]: super::state::Cluster
//! [`Mono`]: super::state::Mono
//! [`Effects`]: super::effects::Effects

pub mod agents;
pub mod arrays;
pub mod begin;
pub mod client;
pub mod dependencies;
pub mod liveness;
pub mod preempt;
pub mod reconfigure;
pub mod release;
pub mod requeue;
pub mod restart;
pub mod schedule;
pub mod steps;
pub mod test_only;
pub mod update;
