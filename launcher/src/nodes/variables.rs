//! The environment variables a foreign allocation (Slurm, PBS) names its nodes in.

/// Variable holding the Slurm allocation's hostlist.
pub const SLURM_JOB_NODELIST: &str = "SLURM_JOB_NODELIST";
/// Older name of [`SLURM_JOB_NODELIST`], still set by Slurm; read when the new one is absent.
pub const SLURM_NODELIST: &str = "SLURM_NODELIST";
/// Variable holding the Slurm allocation's tasks per node (`2(x3),1`).
pub const SLURM_TASKS_PER_NODE: &str = "SLURM_TASKS_PER_NODE";
/// Variable holding the path of the PBS/Torque node file.
pub const PBS_NODEFILE: &str = "PBS_NODEFILE";
