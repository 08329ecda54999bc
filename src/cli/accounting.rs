//! What a job used, as `show job` and `history` print it (pure): the agents' per-node reports
//! of each part (`batch`, `step N`, `job`) folded into the job's totals, each part's totals,
//! and the job's CPU efficiency.
//!
//! A node's `job` report, read from the job's cgroup once everything of it there ended, covers
//! the whole job on that node; until it arrives (the job still runs, or ended a moment ago)
//! the node's parts are added up instead. CPU time adds up over nodes; peak memory is the
//! largest node's (each node's memory is its own limit), as Slurm's `MaxRSS` is per task.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::protocol::{JobInfo, PartUsage};

/// CPU time and peak memory of a job or part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Figures {
    pub user_us: u64,
    pub system_us: u64,
    /// The largest node's peak, bytes (None: no node counted memory).
    pub peak: Option<u64>,
}

impl Figures {
    pub fn cpu_us(&self) -> u64 {
        self.user_us + self.system_us
    }

    fn add_node(&mut self, u: &Figures) {
        self.user_us += u.user_us;
        self.system_us += u.system_us;
        self.peak = self.peak.max(u.peak);
    }

    fn of(u: &PartUsage) -> Figures {
        Figures { user_us: u.user_us, system_us: u.system_us, peak: u.peak_memory }
    }
}

/// The job's figures, if any part reported.
pub fn job_totals(usage: &[PartUsage]) -> Option<Figures> {
    if usage.is_empty() {
        return None;
    }
    let mut per_node: BTreeMap<&str, (Option<Figures>, Figures)> = BTreeMap::new();
    for u in usage {
        let entry = per_node.entry(u.node.as_str()).or_default();
        if u.part == "job" {
            entry.0 = Some(Figures::of(u));
        } else {
            let mut parts = entry.1;
            parts.user_us += u.user_us;
            parts.system_us += u.system_us;
            parts.peak = parts.peak.max(u.peak_memory);
            entry.1 = parts;
        }
    }
    let mut total = Figures::default();
    for (whole, parts) in per_node.values() {
        total.add_node(&whole.unwrap_or(*parts));
    }
    Some(total)
}

/// Each part's figures over its nodes (not the `job` reports), in order: `batch` first, then
/// the steps by number.
pub fn part_totals(usage: &[PartUsage]) -> Vec<(String, Figures, usize)> {
    let mut parts: BTreeMap<(u64, String), (Figures, usize)> = BTreeMap::new();
    for u in usage.iter().filter(|u| u.part != "job") {
        let order =
            u.part.strip_prefix("step ").and_then(|n| n.parse::<u64>().ok()).map_or(0, |n| n + 1);
        let entry = parts.entry((order, u.part.clone())).or_default();
        entry.0.add_node(&Figures::of(u));
        entry.1 += 1;
    }
    parts.into_iter().map(|((_, name), (f, nodes))| (name, f, nodes)).collect()
}

/// CPU time over allocated CPUs × elapsed, in percent (None: nothing to divide by).
pub fn efficiency(cpu_us: u64, cpus: u32, elapsed_ms: u64) -> Option<f64> {
    let capacity = f64::from(cpus) * elapsed_ms as f64 * 1000.0;
    (capacity > 0.0).then(|| cpu_us as f64 * 100.0 / capacity)
}

/// CPU time as `show job` and `history` print it: `M:SS.mmm`, with hours (`H:MM:SS`) past one
/// (sacct prints Slurm's own form, `slurm::time::cpu_time`).
pub fn cpu_time(us: u64) -> String {
    let ms = us / 1000;
    let (h, m, s, milli) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    if h > 0 { format!("{h}:{m:02}:{s:02}") } else { format!("{m}:{s:02}.{milli:03}") }
}

/// Bytes in MiB (one decimal), as `--mem` counts.
pub fn memory(bytes: Option<u64>) -> String {
    bytes.map(gangway_containment::mib).unwrap_or_else(|| "-".into())
}

/// The `show job` lines: the job's usage, its efficiency, and each part's.
pub fn render_usage(j: &JobInfo) -> String {
    let mut s = String::new();
    let Some(total) = job_totals(&j.usage) else { return s };
    let _ = writeln!(
        s,
        "   TotalCPU={} UserCPU={} SystemCPU={} MaxMemory={}",
        cpu_time(total.cpu_us()),
        cpu_time(total.user_us),
        cpu_time(total.system_us),
        memory(total.peak)
    );
    if let (Some(start), Some(end)) = (j.start_time, j.end_time) {
        let elapsed = end.saturating_sub(start);
        if let Some(pct) = efficiency(total.cpu_us(), j.cpus, elapsed) {
            let _ = writeln!(
                s,
                "   Efficiency: CPU {pct:.1}% ({} of {} CPUs x {:.1}s elapsed)",
                cpu_time(total.cpu_us()),
                j.cpus,
                elapsed as f64 / 1000.0
            );
        }
    }
    for (part, f, nodes) in part_totals(&j.usage) {
        let _ = writeln!(
            s,
            "     Step={part} Nodes={nodes} TotalCPU={} UserCPU={} SystemCPU={} MaxMemory={}",
            cpu_time(f.cpu_us()),
            cpu_time(f.user_us),
            cpu_time(f.system_us),
            memory(f.peak)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(node: &str, part: &str, cpu_ms: u64, peak_mib: u64) -> PartUsage {
        PartUsage {
            node: node.into(),
            part: part.into(),
            user_us: cpu_ms * 800,
            system_us: cpu_ms * 200,
            peak_memory: Some(peak_mib << 20),
            memory_limit: None,
            out_of_memory: None,
        }
    }

    #[test]
    fn a_nodes_job_report_replaces_its_parts_and_nodes_add_up() {
        let usage = vec![
            part("node1", "batch", 100, 10),
            part("node1", "step 0", 1000, 200),
            part("node2", "step 0", 1000, 150),
            // node1's whole job: what its parts add up to, and more (what ran in neither).
            part("node1", "job", 1200, 210),
        ];
        let t = job_totals(&usage).unwrap();
        assert_eq!(t.cpu_us(), 2_200_000);
        assert_eq!(t.peak, Some(210 << 20), "the largest node's peak");
        let parts = part_totals(&usage);
        assert_eq!(
            parts.iter().map(|(p, _, n)| (p.as_str(), *n)).collect::<Vec<_>>(),
            [("batch", 1), ("step 0", 2)]
        );
        assert_eq!(parts[1].1.cpu_us(), 2_000_000);
        assert_eq!(job_totals(&[]), None);
    }

    #[test]
    fn efficiency_is_cpu_time_over_allocated_cpus_times_elapsed() {
        // 2 CPUs for 10 s: 20 CPU-seconds; 5 used.
        assert_eq!(efficiency(5_000_000, 2, 10_000), Some(25.0));
        assert_eq!(efficiency(5_000_000, 0, 10_000), None);
        assert_eq!(efficiency(5_000_000, 2, 0), None);
    }

    #[test]
    fn cpu_time_reads_like_slurms_total_cpu() {
        assert_eq!(cpu_time(1_500_000), "0:01.500");
        assert_eq!(cpu_time(61_000_000), "1:01.000");
        assert_eq!(cpu_time(3_725_000_000), "1:02:05");
    }
}
