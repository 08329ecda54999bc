//! The sweep of orphaned cgroups under the gangway root: a job's or run's cgroup whose owner
//! is gone (the agent was killed and restarted, the launcher got SIGKILL) still holds whatever
//! escaped it; the sweep kills that and removes the cgroup.

use std::path::PathBuf;
use std::time::Duration;

use crate::Cgroups;
use crate::kill::{kill_all, remove_tree};

/// What a sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    /// Cgroups removed (names under the root).
    pub removed: Vec<String>,
    /// Processes killed in them.
    pub killed: usize,
    /// Cgroups that could not be emptied or removed, and why.
    pub failed: Vec<(String, String)>,
}

/// Sub-directory names of any of `dirs` (v1 keeps one copy of the tree per hierarchy).
pub(crate) fn subdirectories(dirs: &[PathBuf]) -> Vec<String> {
    let mut names: Vec<String> = dirs
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names.dedup();
    names
}

pub(crate) fn sweep(
    cg: &dyn Cgroups,
    live: &dyn Fn(&str) -> bool,
    budget: Duration,
) -> SweepReport {
    let mut report = SweepReport::default();
    for name in cg.children("") {
        if live(&name) {
            continue;
        }
        let done = kill_all(cg, &name, budget).and_then(|killed| {
            report.killed += killed.killed;
            remove_tree(cg, &name)
        });
        match done {
            Ok(()) => report.removed.push(name),
            Err(e) => report.failed.push((name, e.to_string())),
        }
    }
    report
}
