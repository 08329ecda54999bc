//! gangway's scheduling core: the cluster as the scheduler sees it, what jobs ask for, where
//! they go (gang placement over topology-aware grants) and why the others wait.
//!
//! Pure: no I/O, no clock, no threads. Time arrives as values ([`Timestamp`],
//! [`std::time::Duration`]); callers carry the decisions out (store them, tell the agents) and
//! then record them with [`ClusterState::allocate`].
//!
//! Dependencies point one way: `gangway-topology` ← `gangway-scheduler` ← the controller.

pub mod allocator;
pub mod builder;
pub mod cluster;
pub(crate) mod gang;
pub mod grant;
pub mod request;
pub mod types;
pub mod validate;

pub use allocator::{Decision, PendingReason, schedule};
pub use builder::ClusterBuilder;
pub use cluster::{
    Allocation, ClusterError, ClusterState, Node, NodeHealth, NodeState, Partition, PartitionLimits,
};
pub use grant::{JobStart, NodeGrant, TaskGrant};
pub use request::{JobRequest, MemoryRequest, PendingJob};
pub use types::{Bytes, JobId, Timestamp, format_duration};
pub use validate::{Rejection, validate};
