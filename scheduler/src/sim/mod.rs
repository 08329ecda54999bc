//! The simulator: workloads (SWF traces, or generated ones), a virtual-time engine driving the
//! same [`crate::Scheduler`] the controller holds, the figures a run is judged by, and an SVG
//! picture of it. Pure like the rest of the crate: files are read and written by the caller,
//! and the only clock is one the caller may lend for timings.

pub mod engine;
pub mod generate;
pub mod metrics;
pub mod svg;
pub mod swf;

pub use engine::{
    JobOutcome, Observer, Sample, SimJob, SimOptions, SimReport, simulate, simulate_observed,
};
pub use generate::{GeneratorConfig, Rng, generate};
pub use metrics::{Metrics, SLOWDOWN_THRESHOLD, quantile};
pub use swf::{Swf, SwfError, SwfJob};
