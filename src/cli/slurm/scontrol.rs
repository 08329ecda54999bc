//! `scontrol`: `show job|node|partition` in Slurm's `Key=Value` layout, `hold`, `release`,
//! `update JobId=N` of a pending job's `TimeLimit`, `Partition` and `JobName`, `requeue` of
//! running or finished batch jobs.

use std::ffi::OsString;
use std::fmt::Write as _;

use super::time::{elapsed, local};
use super::tres;
use crate::cli::array_rows;
use crate::cli::begin_time::now_ms;
use crate::cli::error::{CliError, ask};
use crate::cli::flag_values::TimeLimit;
use crate::cli::query::array_fields;
use crate::protocol::array::JobAddress;
use crate::protocol::{JobInfo, JobUpdate, NodeInfo, Reply, Request};

const USAGE: &str = "scontrol show job [ID] | show node [NAME] | show partition [NAME] | hold ID... | release ID... | update JobId=ID [TimeLimit=T] [Partition=P] [JobName=N] [Dependency=D] [ArrayTaskThrottle=N] | requeue ID...";

/// Runs `scontrol`.
pub fn main(args: Vec<OsString>) -> Result<(), CliError> {
    let words: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let words: Vec<&str> =
        words.iter().map(String::as_str).filter(|w| *w != "-d" && *w != "--details").collect();
    let usage = |m: String| Err(CliError::Usage(m));
    match words.as_slice() {
        [] | ["-h"] | ["--help"] | ["help"] => {
            println!("usage: {USAGE}\n(gangway's scontrol: docs/slurm.md)");
            Ok(())
        }
        ["show", what, rest @ ..] => show(what, rest.first().copied()),
        [verb @ ("hold" | "release"), ids @ ..] if !ids.is_empty() => {
            let ids = job_ids(ids)?;
            let request =
                if *verb == "hold" { Request::Hold { ids } } else { Request::Release { ids } };
            ask(&request).map(drop)
        }
        ["update", pairs @ ..] => {
            let (id, changes) = update_request(pairs)?;
            ask(&Request::Update { id, changes }).map(drop)
        }
        ["requeue", ids @ ..] if !ids.is_empty() => {
            ask(&Request::Requeue { ids: job_ids(ids)? }).map(drop)
        }
        [verb @ ("requeuehold" | "suspend" | "resume" | "top" | "uhold"), ..] => usage(format!(
            "{verb}: not supported by gangway yet (docs/slurm.md); supported: {USAGE}"
        )),
        [other, ..] => usage(format!("'{other}' is not supported; supported: {USAGE}")),
    }
}

/// `JobId=7 TimeLimit=30 Partition=p JobName=x` (keys in any case) as the request's parts.
pub fn update_request(pairs: &[&str]) -> Result<(u64, JobUpdate), CliError> {
    let usage = |m: String| CliError::Usage(m);
    let mut id = None;
    let mut changes = JobUpdate::default();
    for pair in pairs {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| usage(format!("update: '{pair}' is not KEY=VALUE")))?;
        match key.to_ascii_lowercase().as_str() {
            "jobid" => id = Some(job_ids(&[value])?.first().copied().unwrap_or(0)),
            "timelimit" => {
                let limit: TimeLimit =
                    value.parse().map_err(|e| usage(format!("update: TimeLimit={value}: {e}")))?;
                changes.time_limit_secs = Some(limit.protocol_secs());
            }
            "partition" => changes.partition = Some(value.to_string()),
            "jobname" | "name" => changes.name = Some(value.to_string()),
            "dependency" => {
                let change =
                    value.parse().map_err(|e| usage(format!("update: Dependency={value}: {e}")))?;
                changes.dependency = Some(change);
            }
            "arraytaskthrottle" => {
                let n: u32 = value.parse().map_err(|_| {
                    usage(format!(
                        "update: ArrayTaskThrottle={value}: give a number of tasks (0: no limit)"
                    ))
                })?;
                changes.array_throttle = Some(n);
            }
            _ => {
                return Err(usage(format!(
                    "update: {key} cannot be changed by gangway (JobId=, TimeLimit=, Partition=, JobName=, Dependency=, ArrayTaskThrottle=)"
                )));
            }
        }
    }
    let id = id.ok_or_else(|| usage("update: give JobId=ID".into()))?;
    if changes == JobUpdate::default() {
        return Err(usage(
            "update: nothing to change (TimeLimit=, Partition=, JobName=, Dependency=, ArrayTaskThrottle=)"
                .into(),
        ));
    }
    Ok((id, changes))
}

fn job_ids(words: &[&str]) -> Result<Vec<u64>, CliError> {
    words
        .iter()
        .flat_map(|w| w.split(','))
        .map(|i| i.parse().map_err(|_| CliError::Usage(format!("'{i}' is not a job id"))))
        .collect()
}

fn show(what: &str, name: Option<&str>) -> Result<(), CliError> {
    let unexpected = |r: Reply| Err(CliError::UnexpectedReply(Box::new(r)));
    match (what, name) {
        ("job" | "jobs" | "jobid", Some(word)) if word.contains('_') => {
            // An array task, started (its own job) or pending (a line of the array's).
            let address: JobAddress = word.parse().map_err(|e| CliError::Usage(format!("{e}")))?;
            let wanted = [address];
            let mut lines = match ask(&Request::Queue)? {
                Reply::Jobs { jobs } => array_rows::select(&wanted, jobs),
                other => return unexpected(other),
            };
            if lines.is_empty()
                && let Reply::Jobs { jobs } = ask(&Request::History { limit: 1_000_000 })?
            {
                lines = array_rows::select(&wanted, jobs);
            }
            if lines.is_empty() {
                return Err(CliError::Failed(format!("job {word} does not exist")));
            }
            let text: Vec<String> = lines.iter().map(|j| render_job(j, now_ms())).collect();
            print!("{}", text.join("\n"));
        }
        ("job" | "jobs" | "jobid", Some(id)) => {
            let id = job_ids(&[id])?.first().copied().unwrap_or(0);
            match ask(&Request::ShowJob { id })? {
                Reply::Job(j) => print!("{}", render_job(&j, now_ms())),
                other => return unexpected(other),
            }
        }
        ("job" | "jobs", None) => match ask(&Request::Queue)? {
            Reply::Jobs { jobs } => {
                let text: Vec<String> = jobs.iter().map(|j| render_job(j, now_ms())).collect();
                print!("{}", text.join("\n"));
            }
            other => return unexpected(other),
        },
        ("node" | "nodes", _) => match ask(&Request::Nodes)? {
            Reply::Nodes { nodes } => {
                let text: Vec<String> = nodes
                    .iter()
                    .filter(|n| name.is_none_or(|x| x == n.name))
                    .map(render_node)
                    .collect();
                if text.is_empty() {
                    return Err(CliError::Usage(format!("Node {} not found", name.unwrap_or(""))));
                }
                print!("{}", text.join("\n"));
            }
            other => return unexpected(other),
        },
        ("partition" | "partitions", _) => match ask(&Request::Nodes)? {
            Reply::Nodes { nodes } => {
                let text = render_partitions(&nodes, name);
                if text.is_empty() {
                    return Err(CliError::Usage(format!(
                        "Partition {} not found",
                        name.unwrap_or("")
                    )));
                }
                print!("{text}");
            }
            other => return unexpected(other),
        },
        _ => {
            return Err(CliError::Usage(format!("show {what}: use job, node or partition")));
        }
    }
    Ok(())
}

fn unknown(ms: Option<u64>) -> String {
    ms.map(|m| local(Some(m))).unwrap_or_else(|| "Unknown".into())
}

fn hostlist(nodes: &[String]) -> String {
    if nodes.is_empty() {
        return "(null)".into();
    }
    gangway_launcher::nodes::hostlist::compress(nodes).unwrap_or_else(|_| nodes.join(","))
}

/// Slurm's `ExitCode=code:signal`.
///
/// A job that its time limit or a cancel ended is `0:0` as in Slurm (whose job record keeps no
/// code then); the signal that ended its script shows on the `.batch` line
/// ([`batch_exit_code`]).
pub fn exit_code(j: &JobInfo) -> String {
    match j.exit_code {
        Some(c) if c > 128 && matches!(j.state.as_str(), "CANCELLED" | "TIMEOUT") => "0:0".into(),
        _ => batch_exit_code(j),
    }
}

/// The batch script's `code:signal`.
pub fn batch_exit_code(j: &JobInfo) -> String {
    match j.exit_code {
        Some(c) if c > 128 && matches!(j.state.as_str(), "CANCELLED" | "TIMEOUT") => {
            format!("0:{}", c - 128)
        }
        Some(c) => format!("{c}:0"),
        None => "0:0".into(),
    }
}

/// `scontrol show job` (pure, for snapshots).
pub fn render_job(j: &JobInfo, now: u64) -> String {
    let mut s = String::new();
    let run =
        j.start_time.map(|st| j.end_time.unwrap_or(now).saturating_sub(st) / 1000).unwrap_or(0);
    let sh = &j.shape;
    let _ = writeln!(s, "JobId={} JobName={}", j.id, j.name);
    if let Some(a) = &j.array {
        let _ = writeln!(s, "   {}", array_fields(a));
    }
    let _ = writeln!(s, "   UserId={}({}) Account=(null) QOS=normal", j.user, j.uid);
    let _ = writeln!(
        s,
        "   Priority={} JobState={} Reason={} Dependency={}",
        j.priority,
        j.state,
        j.reason,
        j.dependency.as_deref().unwrap_or("(null)")
    );
    let _ = writeln!(
        s,
        "   Requeue={} Restarts={} BatchFlag={} ExitCode={}",
        u8::from(j.requeue),
        j.attempt.saturating_sub(1),
        u8::from(j.kind == crate::protocol::JobKind::Batch),
        exit_code(j)
    );
    let _ = writeln!(
        s,
        "   RunTime={} TimeLimit={}",
        elapsed(run),
        j.time_limit.map(elapsed).unwrap_or_else(|| "UNLIMITED".into())
    );
    let _ = writeln!(s, "   SubmitTime={}", local(Some(j.submit_time)));
    let _ = writeln!(s, "   StartTime={} EndTime={}", unknown(j.start_time), unknown(j.end_time));
    let _ = writeln!(s, "   Partition={}", j.partition);
    let _ = writeln!(s, "   NodeList={}", hostlist(&j.nodes));
    let nodes = if j.nodes.is_empty() { sh.min_nodes.unwrap_or(1) as usize } else { j.nodes.len() };
    let _ = writeln!(
        s,
        "   NumNodes={} NumCPUs={} NumTasks={} CPUs/Task={}",
        nodes,
        j.cpus,
        j.ntasks,
        sh.cpus_per_task.unwrap_or(1)
    );
    let mem = match (sh.mem_per_node, sh.mem_per_cpu) {
        (Some(b), _) => format!("MinMemoryNode={}M", b >> 20),
        (None, Some(b)) => format!("MinMemoryCPU={}M", b >> 20),
        (None, None) => "MinMemoryNode=0".into(),
    };
    let _ = writeln!(s, "   {mem}");
    if let Some(tres) = tres::per_task(j) {
        let _ = writeln!(s, "   TresPerTask={tres}");
    }
    let _ = writeln!(s, "   Command={}", j.command);
    let _ = writeln!(s, "   WorkDir={}", j.cwd);
    if let Some(o) = &j.output {
        let _ = writeln!(s, "   StdOut={o}");
    }
    if let Some(e) = j.error.as_ref().or(j.output.as_ref()) {
        let _ = writeln!(s, "   StdErr={e}");
    }
    s
}

fn mb(bytes: u64) -> u64 {
    bytes >> 20
}

/// `scontrol show node` (pure, for snapshots).
pub fn render_node(n: &NodeInfo) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "NodeName={} NodeAddr={}", n.name, n.addr.as_deref().unwrap_or(&n.name));
    let _ = writeln!(
        s,
        "   CPUAlloc={} CPUTot={} CPULoad={}",
        n.cpus_alloc,
        n.cpus_total,
        n.load.map(|l| format!("{l:.2}")).unwrap_or_else(|| "N/A".into())
    );
    let _ = writeln!(s, "   Gres={}", n.gres());
    let _ = writeln!(s, "   GresUsed={}", n.gres_used());
    let _ = writeln!(s, "   RealMemory={} AllocMem={}", mb(n.memory_total), mb(n.memory_alloc));
    let gres = |gpus: u32| if gpus > 0 { format!(",gres/gpu={gpus}") } else { String::new() };
    let _ = writeln!(
        s,
        "   CfgTRES=cpu={},mem={}M,billing={}{}",
        n.cpus_total,
        mb(n.memory_total),
        n.cpus_total,
        gres(n.gpus)
    );
    let _ = writeln!(
        s,
        "   AllocTRES={}",
        if n.cpus_alloc == 0 && n.gpus_alloc == 0 {
            String::new()
        } else {
            format!("cpu={},mem={}M{}", n.cpus_alloc, mb(n.memory_alloc), gres(n.gpus_alloc))
        }
    );
    let _ = writeln!(s, "   State={}", n.state.to_ascii_uppercase());
    let _ = writeln!(s, "   Partitions={}", n.partitions.join(","));
    if let Some(r) = &n.reason {
        let _ = writeln!(s, "   Reason={r}");
    }
    s
}

/// `scontrol show partition`: each partition the nodes name (pure, for snapshots).
pub fn render_partitions(nodes: &[NodeInfo], only: Option<&str>) -> String {
    let mut names: Vec<&str> =
        nodes.iter().flat_map(|n| n.partitions.iter().map(String::as_str)).collect();
    names.sort_unstable();
    names.dedup();
    let mut out = Vec::new();
    for p in names.into_iter().filter(|p| only.is_none_or(|o| o == *p)) {
        let members: Vec<&NodeInfo> =
            nodes.iter().filter(|n| n.partitions.iter().any(|x| x == p)).collect();
        let list: Vec<String> = members.iter().map(|n| n.name.clone()).collect();
        let cpus: u32 = members.iter().map(|n| n.cpus_total).sum();
        out.push(format!(
            "PartitionName={p}\n   State=UP MaxTime=UNLIMITED\n   Nodes={}\n   TotalCPUs={cpus} TotalNodes={}\n",
            hostlist(&list),
            members.len()
        ));
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_pairs_become_one_request() {
        let (id, c) =
            update_request(&["JobId=7", "TimeLimit=1:30:00", "partition=debug", "JobName=x"])
                .unwrap();
        assert_eq!(id, 7);
        assert_eq!(
            c,
            JobUpdate {
                name: Some("x".into()),
                partition: Some("debug".into()),
                time_limit_secs: Some(5400),
                dependency: None,
                array_throttle: None,
            }
        );
        assert!(
            update_request(&["JobId=7"]).unwrap_err().to_string().contains("nothing to change")
        );
        assert!(
            update_request(&["JobId=7", "NumNodes=3"])
                .unwrap_err()
                .to_string()
                .contains("NumNodes cannot")
        );
        assert!(update_request(&["TimeLimit=5"]).unwrap_err().to_string().contains("JobId="));
    }

    #[test]
    fn typed_gpus_show_as_slurm_prints_them() {
        use crate::protocol::{GpuTypeCount, Shape};
        let mut node = crate::cli::slurm::sinfo::tests::node("node1", "mixed", 2);
        let typed = |name: &str, alloc| GpuTypeCount { name: name.into(), total: 1, alloc };
        node.gpus = 3;
        node.gpu_types = vec![typed("k40m", 1), typed("r9", 0)];
        node.gpus_alloc = 2;
        assert_eq!(node.gres(), "gpu:k40m:1,gpu:r9:1,gpu:1");
        assert_eq!(node.gres_used(), "gpu:k40m:1,gpu:r9:0,gpu:1");
        let shown = render_node(&node);
        assert!(shown.contains("   Gres=gpu:k40m:1,gpu:r9:1,gpu:1\n"), "{shown}");
        assert!(shown.contains("CfgTRES=cpu=4,mem=8192M,billing=4,gres/gpu=3\n"), "{shown}");
        assert!(shown.contains("AllocTRES=cpu=2,mem=0M,gres/gpu=2\n"), "{shown}");
        node.gpus = 0;
        node.gpu_types.clear();
        assert_eq!((node.gres(), node.gres_used()), ("(null)".into(), "(null)".into()));

        let job = JobInfo {
            ntasks: 4,
            shape: Shape {
                gpus_per_task: Some(1),
                gpu_type: Some("k40m".parse().unwrap()),
                ..Shape::default()
            },
            ..crate::cli::array_rows::test_line(7, "PENDING", None)
        };
        assert!(render_job(&job, 0).contains("   TresPerTask=gres/gpu:k40m:1\n"));
    }
}
