//! What `gangway queue`, `nodes`, `show job|node` and `history` print: the controller's view as
//! tables shaped like squeue/sinfo/scontrol/sacct (pure, for snapshots; the commands themselves
//! are one module each).

use std::fmt::Write as _;

use gangway_topology::human_bytes;

use super::accounting;
use super::slurm::tres;
use crate::protocol::{JobInfo, NodeInfo};

/// `[D-]H:MM:SS` as squeue prints times.
pub fn clock(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h) {
        (0, 0) => format!("{m}:{s:02}"),
        (0, _) => format!("{h}:{m:02}:{s:02}"),
        _ => format!("{d}-{h:02}:{m:02}:{s:02}"),
    }
}

pub fn short_state(state: &str) -> &'static str {
    match state {
        "PENDING" => "PD",
        "RUNNING" => "R",
        "COMPLETED" => "CD",
        "FAILED" => "F",
        "CANCELLED" => "CA",
        "TIMEOUT" => "TO",
        "NODE_FAIL" => "NF",
        "OUT_OF_MEMORY" => "OOM",
        _ => "?",
    }
}

fn nodelist(j: &JobInfo) -> String {
    gangway_launcher::nodes::hostlist::compress(&j.nodes).unwrap_or_else(|_| j.nodes.join(","))
}

fn field(j: &JobInfo, c: char, now: u64) -> String {
    let used =
        j.start_time.map(|s| (j.end_time.unwrap_or(now).saturating_sub(s)) / 1000).unwrap_or(0);
    match c {
        'i' => j.label(),
        'P' => j.partition.clone(),
        'j' => j.name.clone(),
        'u' => j.user.clone(),
        't' => short_state(&j.state).into(),
        'T' => j.state.clone(),
        'M' => clock(used),
        'l' => j.time_limit.map(clock).unwrap_or_else(|| "UNLIMITED".into()),
        'D' => (if j.nodes.is_empty() {
            j.shape.min_nodes.unwrap_or(1) as usize
        } else {
            j.nodes.len()
        })
        .to_string(),
        'C' => j.cpus.to_string(),
        'R' => {
            if j.state == "PENDING" {
                format!("({})", j.reason)
            } else {
                nodelist(j)
            }
        }
        'r' => j.reason.clone(),
        'p' => j.position.map(|p| p.to_string()).unwrap_or_default(),
        'N' => nodelist(j),
        'a' => j.sched.as_ref().map(|s| s.account.clone()).unwrap_or_default(),
        'q' => j.sched.as_ref().map(|s| s.qos.clone()).unwrap_or_default(),
        'Q' => j.sched.as_ref().map_or(j.priority.to_string(), |s| s.priority.to_string()),
        'S' => match j.sched.as_ref().and_then(|s| s.expected_start) {
            Some(t) => time_of(Some(t)),
            None if j.state == "PENDING" => "N/A".into(),
            None => time_of(j.start_time),
        },
        'Y' => match j.sched.as_ref().filter(|s| !s.expected_nodes.is_empty()) {
            Some(s) => gangway_launcher::nodes::hostlist::compress(&s.expected_nodes)
                .unwrap_or_else(|_| s.expected_nodes.join(",")),
            None => "(null)".into(),
        },
        'E' => j.dependency.clone().unwrap_or_else(|| "(null)".into()),
        _ => format!("%{c}"),
    }
}

fn header(c: char) -> &'static str {
    match c {
        'i' => "JOBID",
        'P' => "PARTITION",
        'j' => "NAME",
        'u' => "USER",
        't' => "ST",
        'T' => "STATE",
        'M' => "TIME",
        'l' => "TIME_LIMIT",
        'D' => "NODES",
        'C' => "CPUS",
        'R' => "NODELIST(REASON)",
        'r' => "REASON",
        'p' => "POSITION",
        'N' => "NODELIST",
        'a' => "ACCOUNT",
        'q' => "QOS",
        'Q' => "PRIORITY",
        'S' => "START_TIME",
        'Y' => "SCHEDNODES",
        'E' => "DEPENDENCY",
        _ => "?",
    }
}

/// Renders jobs as a table per an squeue-style format (pure, for snapshots).
pub fn render_queue(jobs: &[JobInfo], format: &str, header_line: bool, now: u64) -> String {
    let fields: Vec<char> = format
        .split_whitespace()
        .filter_map(|f| f.strip_prefix('%').and_then(|f| f.chars().last()))
        .collect();
    let mut rows: Vec<Vec<String>> = Vec::new();
    if header_line {
        rows.push(fields.iter().map(|c| header(*c).to_string()).collect());
    }
    for j in jobs {
        rows.push(fields.iter().map(|c| field(j, *c, now)).collect());
    }
    table(&rows)
}

fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                let _ = write!(line, "{c:<w$}  ", w = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Renders nodes like sinfo's node-oriented long form (pure, for snapshots).
pub fn render_nodes(nodes: &[NodeInfo]) -> String {
    let mut rows = vec![
        ["NODE", "STATE", "CPUS(A/I/T)", "MEMORY", "LOAD", "PARTITIONS", "REASON"]
            .map(String::from)
            .to_vec(),
    ];
    for n in nodes {
        rows.push(vec![
            n.name.clone(),
            n.state.clone(),
            format!(
                "{}/{}/{}",
                n.cpus_alloc,
                n.cpus_total.saturating_sub(n.cpus_alloc),
                n.cpus_total
            ),
            if n.memory_total > 0 { human_bytes(n.memory_total) } else { "-".into() },
            n.load.map(|l| format!("{l:.2}")).unwrap_or_else(|| "-".into()),
            n.partitions.join(","),
            n.reason.clone().unwrap_or_else(|| "none".into()),
        ]);
    }
    table(&rows)
}

fn time_of(ms: Option<u64>) -> String {
    match ms {
        Some(t) => humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(t),
        )
        .to_string(),
        None => "-".into(),
    }
}

/// `show job` text (pure, for snapshots).
pub fn render_job(j: &JobInfo) -> String {
    let mut s = String::new();
    let _ =
        writeln!(s, "JobId={} Name={} User={}({}) Kind={:?}", j.id, j.name, j.user, j.uid, j.kind);
    let _ = writeln!(
        s,
        "   State={} Reason={} Attempt={} Requeue={} Held={}",
        j.state,
        j.reason,
        j.attempt,
        u8::from(j.requeue),
        u8::from(j.held)
    );
    if let Some(a) = &j.array {
        let _ = writeln!(s, "   {}", array_fields(a));
    }
    if let Some(p) = j.position {
        let _ = writeln!(s, "   QueuePosition={p}");
    }
    if let Some(sc) = &j.sched {
        let _ = writeln!(
            s,
            "   Account={} QOS={} Nice={} Priority={}{}",
            sc.account,
            sc.qos,
            j.shape.nice,
            sc.priority,
            if sc.preemptable { " Preemptable=1" } else { "" }
        );
        // Factor by factor: the points add up to the priority.
        let terms: Vec<String> = sc
            .factors
            .iter()
            .map(|(name, value, weight, points)| format!("{name}={points} ({value}x{weight})"))
            .collect();
        if !terms.is_empty() {
            let _ = writeln!(s, "   PriorityFactors: {} = {}", terms.join(" + "), sc.priority);
        }
        if let Some(t) = sc.expected_start {
            let nodes = gangway_launcher::nodes::hostlist::compress(&sc.expected_nodes)
                .unwrap_or_else(|_| sc.expected_nodes.join(","));
            let _ = writeln!(s, "   ExpectedStart={} SchedNodeList={nodes}", time_of(Some(t)));
        }
    }
    let _ = writeln!(
        s,
        "   ExitCode={}",
        j.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "-".into())
    );
    let _ = writeln!(
        s,
        "   SubmitTime={} StartTime={} EndTime={}",
        time_of(Some(j.submit_time)),
        time_of(j.start_time),
        time_of(j.end_time)
    );
    let _ = writeln!(
        s,
        "   Partition={} TimeLimit={}",
        j.partition,
        j.time_limit.map(clock).unwrap_or_else(|| "UNLIMITED".into())
    );
    let sh = &j.shape;
    let _ = writeln!(
        s,
        "   NumNodes={} NumTasks={} CPUsPerTask={} NumCPUs={} Exclusive={}",
        match (sh.min_nodes, sh.max_nodes) {
            (Some(a), Some(b)) => format!("{a}-{b}"),
            (Some(a), None) => a.to_string(),
            _ => "1".into(),
        },
        j.ntasks,
        sh.cpus_per_task.unwrap_or(1),
        j.cpus,
        u8::from(sh.exclusive)
    );
    if let Some(tres) = tres::per_task(j) {
        let _ = writeln!(s, "   TresPerTask={tres}");
    }
    let _ = writeln!(
        s,
        "   NodeList={}",
        if j.nodes.is_empty() { "(null)".into() } else { nodelist(j) }
    );
    for (node, cpus) in &j.cpu_map {
        let _ = writeln!(s, "     Node={node} CPU_IDs={cpus}");
    }
    let _ = writeln!(s, "   Command={}", j.command);
    let _ = writeln!(s, "   WorkDir={}", j.cwd);
    if let Some(c) = &j.comment {
        let _ = writeln!(s, "   Comment={c}");
    }
    if let Some(d) = &j.dependency {
        let _ = writeln!(s, "   Dependency={d}");
    }
    if let Some(o) = &j.output {
        let _ = writeln!(s, "   StdOut={o}");
    }
    if let Some(e) = &j.error {
        let _ = writeln!(s, "   StdErr={e}");
    }
    s.push_str(&super::accounting::render_usage(j));
    if !j.events.is_empty() {
        let _ = writeln!(s, "   Events:");
        for (t, kind, detail) in &j.events {
            let _ = writeln!(s, "     {} {kind} {detail}", time_of(Some(*t)));
        }
    }
    s
}

/// `show node` text (pure, for snapshots).
pub fn render_node(n: &NodeInfo) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "NodeName={} State={} Reason={}",
        n.name,
        n.state,
        n.reason.clone().unwrap_or_else(|| "none".into())
    );
    let _ = writeln!(
        s,
        "   Address={} AgentVersion={}",
        n.addr.clone().unwrap_or_else(|| "-".into()),
        n.agent_version.clone().unwrap_or_else(|| "-".into())
    );
    let _ = writeln!(s, "   Hardware={}", n.hardware);
    let _ = writeln!(
        s,
        "   CPUTot={} CPUAlloc={} RealMemory={} AllocMem={} Gpus={}",
        n.cpus_total,
        n.cpus_alloc,
        human_bytes(n.memory_total),
        human_bytes(n.memory_alloc),
        n.gpus
    );
    if n.gpus > 0 {
        let _ = writeln!(s, "   Gres={} GresUsed={}", n.gres(), n.gres_used());
    }
    let _ = writeln!(
        s,
        "   Partitions={} Load={}",
        n.partitions.join(","),
        n.load.map(|l| format!("{l:.2}")).unwrap_or_else(|| "-".into())
    );
    if let Some(ms) = n.last_heartbeat_ms_ago {
        let _ = writeln!(s, "   LastHeartbeat={:.1}s ago", ms as f64 / 1000.0);
    }
    for (job, cpus) in &n.cpu_map {
        let _ = writeln!(s, "   Job={job} CPU_IDs={cpus}");
    }
    s
}

/// Slurm's `ArrayJobId=7 ArrayTaskId=3-999 ArrayTaskThrottle=50` of an array or a task.
pub fn array_fields(a: &crate::protocol::ArrayInfo) -> String {
    let tasks = match (a.task, &a.pending) {
        (Some(i), _) => i.to_string(),
        (None, Some(p)) if !p.is_empty() => p.to_string(),
        (None, _) => "(none pending)".to_string(),
    };
    let mut line = format!("ArrayJobId={} ArrayTaskId={tasks}", a.job);
    if let Some(t) = a.throttle {
        line.push_str(&format!(" ArrayTaskThrottle={t}"));
    }
    line
}

/// `history` table (pure).
pub fn render_history(jobs: &[JobInfo]) -> String {
    let mut rows = vec![
        "JOBID NAME USER STATE EXITCODE ELAPSED NODES NODELIST ATTEMPTS TOTALCPU MAXMEM"
            .split(' ')
            .map(String::from)
            .collect::<Vec<_>>(),
    ];
    for j in jobs {
        let elapsed = match (j.start_time, j.end_time) {
            (Some(s), Some(e)) => clock(e.saturating_sub(s) / 1000),
            _ => "0:00".into(),
        };
        rows.push(vec![
            j.label(),
            j.name.clone(),
            j.user.clone(),
            j.state.clone(),
            j.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
            elapsed,
            j.nodes.len().to_string(),
            if j.nodes.is_empty() { "-".into() } else { nodelist(j) },
            j.attempt.to_string(),
            accounting::job_totals(&j.usage)
                .map(|t| accounting::cpu_time(t.cpu_us()))
                .unwrap_or_else(|| "-".into()),
            accounting::memory(accounting::job_totals(&j.usage).and_then(|t| t.peak)),
        ]);
    }
    table(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Shape;

    fn job(id: u64, state: &str, nodes: &[&str], reason: &str) -> JobInfo {
        let running = state != "PENDING";
        JobInfo {
            name: format!("sim{id}"),
            user: "alice".into(),
            uid: 1000,
            reason: reason.into(),
            partition: "batch".into(),
            nodes: nodes.iter().map(|s| s.to_string()).collect(),
            ntasks: 4,
            cpus: 4,
            submit_time: 1_800_000_000_000,
            start_time: running.then_some(1_800_000_010_000),
            time_limit: Some(3600),
            command: "/home/alice/sim.sh".into(),
            cwd: "/home/alice".into(),
            output: Some("sim-%j.out".into()),
            cpu_map: nodes.iter().map(|n| (n.to_string(), "0-1".to_string())).collect(),
            shape: Shape { min_nodes: Some(2), ntasks: Some(4), ..Shape::default() },
            position: (!running).then_some(1),
            ..crate::cli::array_rows::test_line(id, state, None)
        }
    }

    #[test]
    fn queue_table() {
        let jobs = vec![
            job(7, "RUNNING", &["node1", "node2"], "None"),
            job(8, "PENDING", &[], "Resources"),
            job(9, "PENDING", &[], "Priority"),
        ];
        insta::assert_snapshot!(render_queue(
            &jobs,
            "%i %P %j %u %t %M %D %R",
            true,
            1_800_000_135_000
        ));
        insta::assert_snapshot!(
            "queue_custom_format",
            render_queue(&jobs, "%i %T %r %p", false, 0)
        );
    }

    #[test]
    fn the_dependency_left_is_a_queue_field() {
        let mut waiting = job(8, "PENDING", &[], "Dependency");
        waiting.dependency = Some("afterok:7(unfulfilled)".into());
        let jobs = [waiting, job(9, "PENDING", &[], "Priority")];
        assert_eq!(
            render_queue(&jobs, "%i %E", true, 0)
                .lines()
                .map(str::split_whitespace)
                .map(Iterator::collect::<Vec<_>>)
                .collect::<Vec<_>>(),
            [vec!["JOBID", "DEPENDENCY"], vec!["8", "afterok:7(unfulfilled)"], vec!["9", "(null)"]]
        );
    }

    #[test]
    fn nodes_table() {
        let node = |name: &str, state: &str, alloc: u32, reason: Option<&str>| NodeInfo {
            name: name.into(),
            state: state.into(),
            reason: reason.map(String::from),
            partitions: vec!["batch".into()],
            cpus_total: 16,
            cpus_alloc: alloc,
            memory_total: 64 << 30,
            memory_alloc: 0,
            gpus: 0,
            gpu_types: Vec::new(),
            gpus_alloc: 0,
            load: Some(1.5),
            addr: Some("10.0.0.1".into()),
            hardware: "2 packages, 2 NUMA, 16 cores, 32 PUs".into(),
            jobs: vec![7],
            cpu_map: vec![(7, "0-1".into())],
            last_heartbeat_ms_ago: Some(400),
            agent_version: Some("0.1.0".into()),
        };
        let nodes = vec![
            node("node1", "mixed", 2, None),
            node("node2", "idle", 0, None),
            node("node3", "down", 0, Some("lost: no heartbeat within the lost timeout")),
        ];
        insta::assert_snapshot!(render_nodes(&nodes));
        insta::assert_snapshot!("show_node", render_node(&nodes[0]));
    }

    #[test]
    fn show_job_text() {
        let mut j = job(7, "RUNNING", &["node1", "node2"], "None");
        j.events = vec![
            (1_800_000_000_000, "submit".into(), "Batch by alice".into()),
            (1_800_000_010_000, "start".into(), "attempt 1 on node1,node2".into()),
        ];
        insta::assert_snapshot!(render_job(&j));
    }
}
