//! A job's identifier: a leaf that every message module names.

/// A job's identifier.
pub type JobId = u64;
