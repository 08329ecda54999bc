//! `gangway run`'s flags and their validation into a [`RunRequest`]: the launcher's
//! [`JobSpec`], where the ranks go, and the flags only a controller uses, every value typed.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use gangway_launcher::binding::{BindingOptions, Machine};
use gangway_launcher::bootstrap::ssh_config::HostKeyPolicy;
use gangway_launcher::input::InputMode;
use gangway_launcher::job::JobSpec;
use gangway_launcher::layout::LayoutRequest;
use gangway_launcher::nodes::NodeRequest;
use gangway_launcher::output::{PatternVars, expand_pattern};
use gangway_launcher::pmi::pmix::MpiKind;
use gangway_launcher::pmi::server::PmiMode;
use gangway_launcher::proxy::protocol::{BootstrapConfig, LauncherKind};
use gangway_launcher::rank_env::ExportPolicy;
use gangway_launcher::spawn::resolve_program;
use gangway_launcher::time_limit::parse_duration;
use gangway_topology::GpuType;

use crate::cli::error::CliError;
use crate::cli::flag_values::{MemorySize, NodeList, TimeLimit};
use crate::cli::shape::{GpuCount, even_share, memory_flag, node_list_flag};

const EXAMPLES: &str = "\
Examples:
  gangway run -n 4 ./hello                 4 MPI ranks on this machine
  gangway run -n 8 -l ./hello              prefix each output line with its rank: '3: ...'
  gangway run -n 4 -o out-%j-%t.txt ./app  one output file per rank (%j job, %t rank, %N host)
  gangway run -n 2 --input=all cat         every rank reads gangway's stdin
  gangway run -n 16 -t 10 ./solver         stop the job after 10 minutes
  gangway run -n 2 --export=NONE,PATH env  only PATH (and gangway's variables) reach the ranks
  gangway run -n 4 -c 2 --dry-run ./app     show which cores each rank would get
  gangway run -n 4 --cpu-bind=numa --mem-bind=local ./app
  gangway run --hosts node[1-3] -n 6 ./app  2 ranks on each of 3 nodes, over SSH
  gangway run --hostfile hosts.txt -n 8 ./app
With a controller (docs/cluster.md; GANGWAY_CONTROLLER or /run/gangway/controller.sock):
  gangway run -N 3 -n 6 ./app              allocate 3 nodes, run, release (a job of its own)
  gangway run ./app                        inside `gangway alloc`/a batch script: a step on all of it
  gangway run -N 1 -n 2 ./app              a step on part of the allocation
  gangway run -n 2 --gpus-per-task=1 ./app a step, one of the job's GPUs per rank
  gangway run -n 1 --mem=50M ./app          a step held to 50 MiB of its job's memory
                                           (over it: OOM-killed, the job goes on)
  gangway run -n 2 --gpus-per-task=a100:1 ./app   a job of its own: one A100 per rank

Exit status: 0 when every rank exited 0; otherwise the failing rank's code (128+N for signal N),
the MPI_Abort code, or one of gangway's own: 2 usage, 120 PMI failure, 121 cannot place,
122 node lost, 124 time limit, 125 launch failed, 126 not executable, 127 not found,
130 stopped by Ctrl-C; with a controller also 116 unreachable, 118 job cancelled or lost
(docs/exit-codes.md).";

/// Flags of `gangway run`, mirroring srun's where they overlap.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct RunArgs {
    /// Number of ranks (tasks) to start (default 1; inside an allocation: the allocation's).
    #[arg(short = 'n', long = "ntasks", value_name = "N")]
    pub ntasks: Option<u32>,

    /// Working directory of the ranks (default: the current one).
    #[arg(short = 'D', long = "chdir", value_name = "DIR")]
    pub chdir: Option<PathBuf>,

    /// Environment for the ranks: ALL, NONE, or a list such as ALL,OMP_NUM_THREADS=4 or PATH,HOME.
    #[arg(long, value_name = "LIST", default_value = "ALL")]
    pub export: String,

    /// Prefix every line of output with the rank that wrote it ("3: ...").
    #[arg(short = 'l', long)]
    pub label: bool,

    /// Write stdout (and stderr, unless --error is given) to files named by this pattern:
    /// %j job id, %t rank, %n node id, %N host name, %u user, %% percent sign.
    #[arg(short = 'o', long, value_name = "PATTERN")]
    pub output: Option<String>,

    /// Write stderr to files named by this pattern (same escapes as --output).
    #[arg(short = 'e', long, value_name = "PATTERN")]
    pub error: Option<String>,

    /// Which ranks read gangway's stdin: a rank number, "all" or "none".
    #[arg(short = 'i', long, value_name = "RANK|all|none", default_value = "0")]
    pub input: String,

    /// Stop the whole job when one rank fails (exits non-zero or is killed): 1 (default) or 0.
    #[arg(
        short = 'K',
        long,
        value_name = "0|1",
        num_args = 0..=1,
        // `-K prog` is the flag and the program, never the flag's value (as srun reads it).
        require_equals = true,
        default_value = "1",
        default_missing_value = "1"
    )]
    pub kill_on_bad_exit: String,

    /// Time limit: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS (0 = none).
    #[arg(short = 't', long, value_name = "TIME")]
    pub time: Option<String>,

    /// When stopping the job: how long after SIGTERM to send SIGKILL (e.g. 5, 500ms, 1m).
    #[arg(long, value_name = "DURATION", default_value = "5s")]
    pub kill_grace: String,

    /// CPUs per rank (cores, or hardware threads with --cpu-bind=threads); also OMP_NUM_THREADS.
    #[arg(short = 'c', long, value_name = "N", default_value_t = 1)]
    pub cpus_per_task: u32,

    /// Bind ranks to: none, threads, cores, l3, numa (ldoms), sockets, map_cpu:LIST,
    /// mask_cpu:LIST. Default: cores when the ranks fit, none when they oversubscribe.
    #[arg(long, value_name = "TYPE")]
    pub cpu_bind: Option<String>,

    /// Rank order across nodes and sockets: block, cyclic or plane=N, then :block, :cyclic or
    /// :fcyclic within a node (default block:cyclic).
    #[arg(short = 'm', long, value_name = "DIST")]
    pub distribution: Option<String>,

    /// nomultithread: one hardware thread per core; multithread: count threads as CPUs.
    #[arg(long, value_name = "HINT")]
    pub hint: Option<String>,

    /// Memory policy: local (allocate on the NUMA nodes of the rank's CPUs) or none.
    #[arg(long, value_name = "TYPE", default_value = "none")]
    pub mem_bind: String,

    /// At most this many ranks per socket.
    #[arg(long, value_name = "N")]
    pub ntasks_per_socket: Option<u32>,

    /// GPUs per rank, the ones nearest its cores (sets CUDA_VISIBLE_DEVICES/ROCR_VISIBLE_DEVICES);
    /// TYPE:N (k40m:1) for a job of its own, or a step of a job of that type.
    #[arg(long, value_name = "[TYPE:]N", conflicts_with_all = ["gpus", "gres"])]
    pub gpus_per_task: Option<GpuCount>,

    /// Which GPUs each rank gets: closest, those nearest its cores (Slurm's --gpu-bind=closest;
    /// the one rule here, what --gpus-per-task does anyway). Others (map_gpu, mask_gpu, single,
    /// none) are refused. Example: `gangway run -n 2 --gpus-per-task=1 --gpu-bind=closest ./app`
    #[arg(long, value_name = "TYPE")]
    pub gpu_bind: Option<String>,

    /// GPUs in all, split evenly among the ranks (Slurm's srun --gpus).
    #[arg(short = 'G', long, value_name = "[TYPE:]N", conflicts_with = "gres")]
    pub gpus: Option<GpuCount>,

    /// GPUs on each node, split among its ranks: gpu:N or gpu:TYPE:N (Slurm's srun --gres).
    #[arg(long, value_name = "gpu[:TYPE][:N]", value_parser = crate::cli::shape::gres_gpus)]
    pub gres: Option<GpuCount>,

    /// Allow more ranks than CPUs (binding is then relaxed).
    #[arg(long)]
    pub oversubscribe: bool,

    /// Print where each rank would run (rank, host, cores, PUs, NUMA, GPUs) and launch nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// With --dry-run: print the map as JSON.
    #[arg(long, requires = "dry_run")]
    pub json: bool,

    /// With --dry-run: plan for the machine in this hwloc XML export instead of this one.
    #[arg(long, value_name = "FILE", requires = "dry_run", conflicts_with = "synthetic")]
    pub topology_xml: Option<PathBuf>,

    /// With --dry-run: plan for an hwloc synthetic machine, e.g. "pack:2 numa:2 core:8 pu:2".
    #[arg(long, value_name = "DESC", requires = "dry_run")]
    pub synthetic: Option<String>,

    /// Run on these hosts (comma-separated; hostlist expressions like node[1-4]; host:N gives N
    /// slots; ssh://user@host:port for a login and port).
    #[arg(long, value_name = "LIST", conflicts_with = "hostfile")]
    pub hosts: Option<String>,

    /// Run on the hosts in this file (one per line, host:slots, or Open MPI's "host slots=N").
    #[arg(long, value_name = "FILE")]
    pub hostfile: Option<PathBuf>,

    /// Use the first N of the hosts.
    #[arg(short = 'N', long, value_name = "N")]
    pub nodes: Option<u32>,

    /// Exactly this many ranks on each node.
    #[arg(long, value_name = "N")]
    pub ntasks_per_node: Option<u32>,

    /// How to start the per-node proxies: ssh (built in), openssh (the ssh program) or local.
    #[arg(long, value_enum, default_value = "ssh")]
    pub launcher: LauncherArg,

    /// The gangway binary on the nodes (default: this one's path, for a shared file system).
    #[arg(long, value_name = "PATH")]
    pub proxy_path: Option<String>,

    /// How many proxies the launcher, and each proxy, starts (a fan-out tree).
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub tree_width: usize,

    /// How often the launcher pings every node.
    #[arg(long, value_name = "DURATION", default_value = "1s")]
    pub ping_interval: String,

    /// A node that has not answered for this long is lost: the job stops (exit code 122).
    #[arg(long, value_name = "DURATION", default_value = "3s")]
    pub ping_timeout: String,

    /// SSH: read only this config file (like ssh -F).
    #[arg(long, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,

    /// SSH: try this key file first (like ssh -i).
    #[arg(long, value_name = "FILE")]
    pub ssh_identity: Vec<PathBuf>,

    /// SSH host keys: strict (known_hosts must match), accept-new, or off (never check).
    #[arg(long, value_name = "POLICY")]
    pub host_key_checking: Option<String>,

    /// How ranks reach the PMI service: an inherited socket (fd) or a TCP port (port).
    #[arg(long, value_enum, default_value = "fd")]
    pub pmi: PmiArg,

    /// Which MPI wire-up the ranks get: pmi2 (PMI-1/PMI-2: MPICH, Intel MPI), pmix (PMIx: Open
    /// MPI; fails where libpmix is missing), none, or auto (both side by side: each rank uses
    /// what its MPI speaks). Default $GANGWAY_MPI, else the cluster's `mpi_default` for a job
    /// of its own, else pmi2 (a PMIx server costs ~10 ms of CPU per node).
    /// Slurm's spellings (pmi2, pmix_v4) work too.
    /// Examples: `gangway run -n 4 --mpi=pmix ./ompi_hello`, `gangway run -n 4 --mpi=pmi2 ./mpich_hello`.
    #[arg(long, value_name = "KIND", env = "GANGWAY_MPI")]
    pub mpi: Option<MpiKind>,

    /// With a controller: the partition to run in.
    #[arg(short = 'p', long, value_name = "NAME")]
    pub partition: Option<String>,

    /// With a controller: the account charged (default: yours; see `gangway share`).
    #[arg(short = 'A', long, value_name = "NAME")]
    pub account: Option<String>,

    /// With a controller: the quality of service (default: the cluster's default QOS).
    #[arg(long, value_name = "NAME")]
    pub qos: Option<String>,

    /// With a controller: lower the job's priority by N points (bare --nice: 100).
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "100", allow_negative_numbers = true)]
    pub nice: Option<i32>,

    /// Memory per node (512M, 4G): with a controller, what the job asks for (a step inside a
    /// job: the step's own limit, within the job's; 0: the job's); on this machine, as root,
    /// the run's memory limit (swap off), enforced by its cgroup (0: no limit).
    #[arg(long, value_name = "SIZE")]
    pub mem: Option<String>,

    /// Memory per CPU (512M): with a controller, what the job asks for on each node (times its
    /// CPUs there; a step inside a job: the step's own limit, times the step's CPUs on each
    /// node); on this machine, as root, the run's limit is it times -n times -c.
    #[arg(long, value_name = "SIZE", conflicts_with = "mem")]
    pub mem_per_cpu: Option<String>,

    /// With a controller: whole nodes, shared with no other job.
    #[arg(long)]
    pub exclusive: bool,

    /// With a controller: nodes the job must use.
    #[arg(short = 'w', long, value_name = "LIST")]
    pub nodelist: Option<String>,

    /// With a controller: nodes the job must not use.
    #[arg(short = 'x', long, value_name = "LIST")]
    pub exclude: Option<String>,

    /// With a controller: the job's name.
    #[arg(short = 'J', long, value_name = "NAME")]
    pub job_name: Option<String>,

    /// With a controller: if a node fails, queue the job again and rerun it.
    #[arg(long)]
    pub requeue: bool,

    /// With a controller, as a job of its own: start after other jobs (afterok:ID, afterany:ID,
    /// singleton...; see `gangway batch --help`).
    #[arg(short = 'd', long, value_name = "LIST")]
    pub dependency: Option<crate::protocol::dependency::Dependency>,

    /// With --dependency: yes cancels the job if its dependency can never be satisfied.
    #[arg(long, value_name = "yes|no", value_parser = crate::cli::shape::parse_yes_no)]
    pub kill_on_invalid_dep: Option<bool>,

    /// Print progress to stderr; twice (-vv) also every PMI message.
    #[arg(short = 'v', long, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Output and error files: truncate (default) or append.
    #[arg(long, value_name = "MODE")]
    pub open_mode: Option<crate::cli::batch::OpenMode>,

    #[command(flatten)]
    pub extras: crate::cli::job_extras::JobExtras,

    /// The program and its arguments.
    #[arg(required = true, trailing_var_arg = true, value_name = "PROGRAM [ARGS]...")]
    pub command: Vec<OsString>,
}

/// `--launcher` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LauncherArg {
    Ssh,
    Openssh,
    Local,
}

/// `--pmi` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PmiArg {
    Fd,
    Port,
}

/// A checked `gangway run` request: the job, where its ranks go, and what to do with it.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub spec: JobSpec,
    pub binding: BindingOptions,
    pub machine: Machine,
    pub dry_run: bool,
    pub json: bool,
    /// Where the nodes come from (`--hosts`, `--hostfile`, a Slurm or PBS allocation).
    pub node_request: NodeRequest,
    pub layout: LayoutRequest,
    pub bootstrap: BootstrapConfig,
    pub proxy_path: String,
    pub tree_width: usize,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// `-n` as given (inside an allocation, none means the allocation's tasks).
    pub ntasks_given: Option<u32>,
    /// Whether `--mpi` or `GANGWAY_MPI` chose the MPI kind (else a controller's default may).
    pub mpi_given: bool,
    /// The flags only a controller uses.
    pub cluster: ClusterFlags,
}

/// `run` flags that only matter when a controller allocates the nodes (checked all the same,
/// so a bad value is refused before anything starts).
#[derive(Debug, Clone, Default)]
pub struct ClusterFlags {
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    pub nice: i32,
    pub mem: Option<MemorySize>,
    pub mem_per_cpu: Option<MemorySize>,
    pub exclusive: bool,
    pub nodelist: NodeList,
    pub exclude: NodeList,
    pub job_name: Option<String>,
    pub requeue: bool,
    pub time: Option<TimeLimit>,
    pub dependency: Option<crate::protocol::dependency::Dependency>,
    pub kill_on_invalid_dep: Option<bool>,
    /// The GPUs' type (`--gpus-per-task=k40m:1`).
    pub gpu_type: Option<GpuType>,
    /// `--signal`, `--mail-type`/`--mail-user`, `--constraint`: for a job of its own only.
    pub extras: crate::cli::job_extras::JobExtras,
}

impl RunArgs {
    /// Checks every flag and resolves the program; errors name the flag and the fix.
    pub fn into_request(self) -> Result<RunRequest, CliError> {
        let usage = CliError::Usage;
        let ntasks_given = self.ntasks;
        let ntasks = self.ntasks.unwrap_or(1);
        if ntasks == 0 {
            return Err(usage("-n/--ntasks must be at least 1".into()));
        }
        if self.cpus_per_task == 0 {
            return Err(usage("-c/--cpus-per-task must be at least 1".into()));
        }
        let option = |e: gangway_topology::OptionError| usage(e.to_string());
        if let Some(bind) = &self.gpu_bind {
            gpu_bind(bind).map_err(usage)?;
        }
        // Every GPU flag as GPUs per rank: `--gpus` split over the ranks, `--gres` over each
        // node's (as many nodes as given, else one).
        let per_node =
            self.ntasks_per_node.unwrap_or_else(|| ntasks.div_ceil(self.nodes.unwrap_or(1).max(1)));
        let (gpus, gpus_per_task) = match (&self.gpus_per_task, &self.gpus, &self.gres) {
            (Some(g), ..) => (Some(g.clone()), g.count),
            (None, Some(g), _) => {
                let share = even_share("--gpus", g.count, ntasks, "ranks");
                (Some(g.clone()), share.map_err(|e| usage(e.to_string()))?)
            }
            (None, None, Some(g)) => {
                let share = even_share("--gres", g.count, per_node, "ranks per node");
                (Some(g.clone()), share.map_err(|e| usage(e.to_string()))?)
            }
            (None, None, None) => (None, 0),
        };
        let binding = BindingOptions {
            cpu_bind: self.cpu_bind.as_deref().map(str::parse).transpose().map_err(option)?,
            cpus_per_task: self.cpus_per_task,
            tasks_per_socket: self.ntasks_per_socket,
            distribution: match &self.distribution {
                Some(d) => d.parse().map_err(option)?,
                None => Default::default(),
            },
            hint: match &self.hint {
                Some(h) => h.parse().map_err(option)?,
                None => Default::default(),
            },
            mem_bind: self.mem_bind.parse().map_err(option)?,
            gpus_per_task,
            oversubscribe: self.oversubscribe,
        };
        let node_request =
            NodeRequest { hosts: self.hosts.clone(), hostfile: self.hostfile.clone() };
        let layout = LayoutRequest {
            ntasks,
            nodes: self.nodes,
            tasks_per_node: self.ntasks_per_node,
            distribution: binding.distribution.node,
            oversubscribe: self.oversubscribe,
        };
        let ping_interval = parse_duration(&self.ping_interval)
            .map_err(|e| usage(format!("--ping-interval: {e}")))?;
        let ping_timeout = parse_duration(&self.ping_timeout)
            .map_err(|e| usage(format!("--ping-timeout: {e}")))?;
        if ping_interval.is_zero() || ping_timeout <= ping_interval {
            return Err(usage(
                "--ping-timeout must be longer than --ping-interval, and both above 0".into(),
            ));
        }
        if self.tree_width == 0 {
            return Err(usage("--tree-width must be at least 1".into()));
        }
        if let Some(policy) = &self.host_key_checking {
            policy
                .parse::<HostKeyPolicy>()
                .map_err(|e| usage(format!("--host-key-checking: {e}")))?;
        }
        let bootstrap = BootstrapConfig {
            kind: match self.launcher {
                LauncherArg::Ssh => LauncherKind::Ssh,
                LauncherArg::Openssh => LauncherKind::OpenSsh,
                LauncherArg::Local => LauncherKind::Local,
            },
            config_file: self.ssh_config.clone(),
            identity_files: self.ssh_identity.clone(),
            host_key_policy: self.host_key_checking.clone(),
            connect_timeout_ms: None,
            agent_credential: None,
            agent_hosts: Vec::new(),
            agent_link_key: None,
        };
        let proxy_path = match &self.proxy_path {
            Some(p) => p.clone(),
            None => std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "gangway".into()),
        };
        let machine = match (&self.topology_xml, &self.synthetic) {
            (Some(path), _) => Machine::XmlFile(path.clone()),
            (None, Some(desc)) => Machine::Synthetic(desc.clone()),
            (None, None) => Machine::Local,
        };
        let export: ExportPolicy = self.export.parse().map_err(|e| usage(format!("{e}")))?;
        let input: InputMode = self.input.parse().map_err(|e| usage(format!("{e}")))?;
        if let InputMode::Rank(r) = input
            && r >= ntasks
        {
            return Err(usage(format!(
                "--input {r}: the job has {} rank(s), numbered 0-{}",
                ntasks,
                ntasks - 1
            )));
        }
        let kill_on_bad_exit = match self.kill_on_bad_exit.as_str() {
            "1" | "yes" | "true" => true,
            "0" | "no" | "false" => false,
            other => return Err(usage(format!("--kill-on-bad-exit '{other}': expected 0 or 1"))),
        };
        let time = match &self.time {
            Some(t) => Some(t.parse::<TimeLimit>().map_err(|e| usage(format!("-t/--time: {e}")))?),
            None => None,
        };
        let kill_grace =
            parse_duration(&self.kill_grace).map_err(|e| usage(format!("--kill-grace: {e}")))?;
        if let Some(dir) = &self.chdir
            && !dir.is_dir()
        {
            return Err(usage(format!("--chdir '{}': not a directory", dir.display())));
        }
        for (flag, pattern) in [("-o/--output", &self.output), ("-e/--error", &self.error)] {
            if let Some(p) = pattern {
                let probe = PatternVars { job_id: "1", rank: 0, node_id: 0, host: "h", user: "u" };
                expand_pattern(p, &probe).map_err(|e| usage(format!("{flag}: {e}")))?;
            }
        }
        let mut command = self.command.into_iter();
        let argv0 = command.next().ok_or_else(|| usage("no program given".into()))?;
        // A dry run only plans (perhaps for another machine): the program need not exist here.
        let program = if self.dry_run {
            PathBuf::from(&argv0)
        } else {
            resolve_program(
                &argv0.to_string_lossy(),
                self.chdir.as_deref(),
                std::env::var_os("PATH"),
            )
            .map_err(CliError::Program)?
        };
        // Only `%u` in a pattern needs the user name, and looking it up may go through NSS.
        let wants_user = [&self.output, &self.error]
            .iter()
            .any(|p| p.as_ref().is_some_and(|p| p.contains("%u")));
        let user = if wants_user { crate::cli::user::current_user() } else { String::new() };
        let host = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "localhost".into());
        let mpi_given = self.mpi.is_some();
        let spec = JobSpec {
            program,
            argv0,
            args: command.collect(),
            ntasks,
            cpus_per_task: self.cpus_per_task,
            cwd: self.chdir,
            export,
            label: self.label,
            output: self.output,
            error: self.error,
            append_output: self.open_mode == Some(crate::cli::batch::OpenMode::Append),
            input,
            kill_on_bad_exit,
            time_limit: time.and_then(TimeLimit::duration),
            kill_grace,
            pmi_mode: match self.pmi {
                PmiArg::Fd => PmiMode::Fd,
                PmiArg::Port => PmiMode::Port,
            },
            mpi: self.mpi.unwrap_or(MpiKind::Pmi2),
            job_id: std::process::id().to_string(),
            host,
            user,
            verbose: self.verbose > 0,
        };
        let cluster = ClusterFlags {
            partition: self.partition,
            account: self.account,
            qos: self.qos,
            nice: self.nice.unwrap_or(0),
            mem: self.mem.as_deref().map(|m| memory_flag("--mem", m)).transpose()?,
            mem_per_cpu: self
                .mem_per_cpu
                .as_deref()
                .map(|m| memory_flag("--mem-per-cpu", m))
                .transpose()?,
            exclusive: self.exclusive,
            nodelist: node_list_flag("--nodelist", self.nodelist.as_deref())?,
            exclude: node_list_flag("--exclude", self.exclude.as_deref())?,
            job_name: self.job_name,
            requeue: self.requeue,
            time,
            dependency: self.dependency,
            kill_on_invalid_dep: self.kill_on_invalid_dep,
            gpu_type: gpus.and_then(|g| g.gpu_type).filter(|_| gpus_per_task > 0),
            extras: self.extras,
        };
        Ok(RunRequest {
            spec,
            binding,
            machine,
            dry_run: self.dry_run,
            json: self.json,
            node_request,
            layout,
            bootstrap,
            proxy_path,
            tree_width: self.tree_width,
            ping_interval,
            ping_timeout,
            ntasks_given,
            mpi_given,
            cluster,
        })
    }
}

/// `--gpu-bind`: `closest` is what placement does for every rank with GPUs (the topology
/// crate's one GPU rule, nearest the rank's CPUs first, none shared), so it is taken as said;
/// Slurm's other kinds would need another rule and are refused by name.
fn gpu_bind(value: &str) -> Result<(), String> {
    if value == "closest" {
        return Ok(());
    }
    Err(format!(
        "--gpu-bind={value}: only closest is supported (each rank gets the GPUs nearest its cores, as --gpus-per-task does anyway); map_gpu, mask_gpu, single and none are not"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_bind_takes_closest_and_refuses_the_others_by_name() {
        assert_eq!(gpu_bind("closest"), Ok(()));
        for other in ["none", "single:1", "map_gpu:0,1", "mask_gpu:0x1", "verbose,closest", ""] {
            let e = gpu_bind(other).unwrap_err();
            assert!(e.starts_with(&format!("--gpu-bind={other}: only closest")), "{e}");
        }
    }
}
