//! Scheduling policy: the configuration ([`config`]), the account tree with fair share and
//! decayed usage ([`accounts`]), quotas with lending ([`quota`]) and multifactor priority
//! ([`priority`]). Pure functions and plain data; the engine applies them.

pub mod accounts;
pub mod config;
pub mod priority;
pub mod quota;

use std::collections::HashMap;

use accounts::Tree;
use config::{ConfigError, Limits, QosConfig, SchedulerConfig};

/// A checked configuration, compiled: names resolved to indexes.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub config: SchedulerConfig,
    pub tree: Tree,
    pub qos: Vec<QosConfig>,
    qos_index: HashMap<String, u16>,
    pub default_qos: u16,
    /// `preempts[a][b]`: jobs of QOS `a` may preempt jobs of QOS `b`.
    preempts: Vec<Vec<bool>>,
    pub max_qos_priority: u32,
    partition_priority: HashMap<String, u32>,
    pub max_partition_priority: u32,
    /// No account or QOS has a limit on running jobs: every quota check says yes.
    pub unlimited: bool,
}

impl Policy {
    /// Checks and compiles a configuration.
    pub fn new(config: SchedulerConfig) -> Result<Self, ConfigError> {
        config.check()?;
        let tree = Tree::new(&config);
        let qos = if config.qos.is_empty() {
            vec![QosConfig::new("normal", 0)]
        } else {
            config.qos.clone()
        };
        let qos_index: HashMap<String, u16> =
            qos.iter().enumerate().map(|(i, q)| (q.name.clone(), i as u16)).collect();
        let default_qos =
            config.default_qos.as_ref().and_then(|d| qos_index.get(d).copied()).unwrap_or(0);
        let preempts = qos
            .iter()
            .map(|q| {
                let mut row = vec![false; qos.len()];
                for t in &q.preempt {
                    if let Some(cell) = qos_index.get(t).and_then(|&i| row.get_mut(i as usize)) {
                        *cell = true;
                    }
                }
                row
            })
            .collect();
        let max_qos_priority = qos.iter().map(|q| q.priority).max().unwrap_or(0);
        let partition_priority: HashMap<String, u32> =
            config.partition_priority.iter().cloned().collect();
        let max_partition_priority = partition_priority.values().copied().max().unwrap_or(0);
        let limited = |l: &Limits| {
            l.cpus.is_some()
                || l.gpus.is_some()
                || l.memory.is_some()
                || l.nodes.is_some()
                || l.running_jobs.is_some()
        };
        let unlimited = !tree.accounts.iter().any(|a| limited(&a.limits))
            && !qos.iter().any(|q| limited(&q.limits));
        Ok(Self {
            config,
            tree,
            qos,
            qos_index,
            default_qos,
            preempts,
            max_qos_priority,
            partition_priority,
            max_partition_priority,
            unlimited,
        })
    }

    /// A QOS by name.
    pub fn qos_named(&self, name: &str) -> Option<u16> {
        self.qos_index.get(name).copied()
    }

    /// The QOS at `id`.
    pub fn qos(&self, id: u16) -> Option<&QosConfig> {
        self.qos.get(id as usize)
    }

    /// The limits of QOS `id`.
    pub fn qos_limits(&self, id: u16) -> Limits {
        self.qos(id).map(|q| q.limits).unwrap_or_default()
    }

    /// Whether jobs of QOS `a` may preempt jobs of QOS `b`.
    pub fn preempts(&self, a: u16, b: u16) -> bool {
        self.preempts.get(a as usize).and_then(|r| r.get(b as usize)).copied().unwrap_or(false)
    }

    /// Whether jobs of QOS `a` may preempt anything.
    pub fn preempts_any(&self, a: u16) -> bool {
        self.preempts.get(a as usize).is_some_and(|r| r.iter().any(|&x| x))
    }

    /// The QOS factor of QOS `id`.
    pub fn qos_factor(&self, id: u16) -> f32 {
        let p = self.qos(id).map_or(0, |q| q.priority);
        if self.max_qos_priority == 0 { 0.0 } else { p as f32 / self.max_qos_priority as f32 }
    }

    /// The partition factor of the named partition.
    pub fn partition_factor(&self, name: &str) -> f32 {
        let p = self.partition_priority.get(name).copied().unwrap_or(0);
        if self.max_partition_priority == 0 {
            0.0
        } else {
            p as f32 / self.max_partition_priority as f32
        }
    }
}
