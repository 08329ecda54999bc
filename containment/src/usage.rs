//! What a cgroup used, read at the end of a step or job, and the out-of-memory verdict.

use std::time::Duration;

/// CPU time and memory of everything that ran in one cgroup (its sub-cgroups included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub user: Duration,
    pub system: Duration,
    /// Highest memory use seen (v1 `memory.max_usage_in_bytes`, v2 `memory.peak`); `None`
    /// without the memory controller (or a v2 kernel before 5.19).
    pub peak_memory: Option<u64>,
    /// Tasks the kernel's OOM killer killed in it (v1 `memory.oom_control`, v2
    /// `memory.events`).
    pub oom_kills: u64,
    /// Times the memory limit was hit (v1 `memory.failcnt`, v2 `memory.events` `max`).
    pub limit_hits: u64,
}

impl Usage {
    /// The message that ends a job `OUT_OF_MEMORY`, naming the step and its limit; `None`
    /// when the OOM killer never struck here.
    pub fn out_of_memory(&self, step: &str, limit: Option<u64>) -> Option<String> {
        if self.oom_kills == 0 {
            return None;
        }
        let limit = match limit {
            Some(bytes) => format!("its memory limit of {}", mib(bytes)),
            None => "a memory limit above it".to_string(),
        };
        let peak = self.peak_memory.map(|p| format!(" (peak {})", mib(p))).unwrap_or_default();
        let kills = match self.oom_kills {
            1 => "a process".to_string(),
            n => format!("{n} processes"),
        };
        Some(format!(
            "{step} ran out of memory: the kernel's OOM killer killed {kills} at {limit}{peak}; \
             ask for more with --mem or --mem-per-cpu"
        ))
    }
}

/// Bytes as MiB with one decimal, the unit `--mem` counts in.
pub fn mib(bytes: u64) -> String {
    let m = bytes as f64 / f64::from(1 << 20);
    if m.fract() == 0.0 { format!("{m:.0} MiB") } else { format!("{m:.1} MiB") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oom_message_names_the_step_and_the_limit() {
        let used = Usage { oom_kills: 1, peak_memory: Some(100 << 20), ..Usage::default() };
        let msg = used.out_of_memory("step 0 of job 7", Some(100 << 20)).unwrap();
        assert!(msg.starts_with("step 0 of job 7 ran out of memory"), "{msg}");
        assert!(msg.contains("memory limit of 100 MiB"), "{msg}");
        assert_eq!(Usage::default().out_of_memory("step 0", Some(1)), None);
    }
}
