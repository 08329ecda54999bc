//! The controller: the cluster's queue and allocations. So far only its pure core, the gang
//! allocator ([`allocator`]); the I/O layer (store, RPC, agents) calls it with plain state.

pub mod allocator;
