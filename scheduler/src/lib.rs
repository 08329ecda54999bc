//! gangway's scheduling core: the cluster as the scheduler sees it, what jobs ask for, where
//! they go (gang placement over topology-aware grants), when the others should start and why
//! they wait — and a simulator that drives the same code in virtual time.
//!
//! The controller holds one [`Scheduler`]: it submits jobs ([`Scheduler::submit`]), reports
//! what happened ([`Event`]: a job ended, was cancelled, held, released, a node changed), asks
//! for passes ([`Scheduler::pass`], bounded by a [`Budget`], carried on in the next call) and
//! carries out the [`Decision`]s (start with these grants; wait for this reason, expected then
//! and there; preempt this job, with a grace, then requeue or cancel). Usage for fair share is
//! state the controller stores ([`Scheduler::usage`], [`Scheduler::restore_usage`]); a reload
//! is [`Scheduler::reconfigure`], checked before anything changes.
//!
//! Pure: no I/O, no clock, no threads. Time arrives as values ([`Timestamp`],
//! [`std::time::Duration`]); a caller that wants timings lends a clock closure.
//!
//! Dependencies point one way: `gangway-topology` ← `gangway-scheduler` ← the controller.

pub mod allocator;
pub(crate) mod avail;
pub mod builder;
pub mod cluster;
pub mod decision;
pub mod engine;
pub(crate) mod gang;
pub mod grant;
pub(crate) mod grant_placement;
pub(crate) mod hash;
pub mod policy;
pub(crate) mod rejection;
pub mod request;
pub mod sim;
pub mod types;
pub mod validate;

pub use allocator::schedule;
pub use builder::ClusterBuilder;
pub use cluster::{
    Allocation, ClusterError, ClusterState, Node, NodeHealth, NodeState, Partition, PartitionLimits,
};
pub use decision::{
    AfterPreempt, Decision, ExpectedStart, PendingReason, PreemptCause, Preemption,
};
pub use engine::{
    ArrayTasks, Budget, Event, JobStatus, NewJob, Pass, Scheduler, ShareRow, SubmitError,
};
pub use grant::{JobStart, NodeGrant, TaskGrant};
pub use policy::accounts::UsageRecord;
pub use policy::config::{
    AccountConfig, BackfillMode, ConfigError, Limits, PriorityWeights, QosConfig, SchedulerConfig,
    UserConfig,
};
pub use policy::priority::{Factor, PriorityExplanation, Term};
pub use policy::quota::Tally;
pub use request::{JobRequest, MemoryRequest, PendingJob};
pub use types::{Bytes, JobId, Timestamp, format_duration};
pub use validate::{Rejection, validate};
