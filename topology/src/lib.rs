//! The machine model gangway places ranks on: hardware discovery (hwloc) into a plain model,
//! CPU sets, pure rank placement, the one GPU-affinity rule, and the text views of both.
//!
//! Invariants: this crate never spawns processes, and placement never touches files or clocks;
//! only [`discover`](Topology::discover) and the XML loaders do I/O.

pub mod cpuset;
mod discover;
pub mod error;
pub mod gpu;
pub mod gpu_type;
pub mod model;
pub mod options;
pub mod placement;
pub mod render;
pub mod shape;

pub use cpuset::{CpuSet, CpuSetParseError, NodeSet};
pub use discover::available_cpus;
pub use error::TopologyError;
pub use gpu::GpuChooser;
pub use gpu_type::{GpuType, GpuTypeError};
pub use model::{
    Cache, CacheKind, Core, Counts, DeviceKind, Gpu, NumaNode, OsDevice, Package, Pu, Topology,
    TopologySource,
};
pub use options::{
    CpuBind, Distribution, Hint, MemBind, NodeDistribution, OptionError, SocketDistribution,
};
pub use placement::{
    AllocatedNode, Binding, CpuUnit, NodeSpec, Placement, PlacementError, PlacementNode,
    PlacementRequest, RankPlacement, place,
};
pub use render::{human_bytes, render_map, render_tree};
pub use shape::{PuNumbering, Shape};
