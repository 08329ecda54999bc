//! The launcher's side of a multi-node job: builds the proxy tree, starts its top over SSH,
//! owns the job-wide PMI root, watches every node's pings, and makes every decision.

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gangway_link::Psk;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until, timeout_at};

use super::callback::{Arrival, CallbackListener, link_child};
use super::node::{never_called_back, proxy_argv, start_line};
use super::protocol::{
    BootstrapConfig, Down, Envelope, NodeJob, PROTOCOL_VERSION, RemoteEnd, Stream, Subtree, Up,
};
use crate::binding::BindingOptions;
use crate::bootstrap::{self, HostSpec, RemoteCommand};
use crate::exit_status::RankStatus;
use crate::input::InputMode;
use crate::job::{JobEnd, JobReport, JobSpec, LaunchError};
use crate::nodes::{Node, hostlist};
use crate::output::{self, OutputSink};
use crate::pmi::mapping::process_mapping;
use crate::pmi::root::{RootInput, RootOutput, RootPmi};
use crate::rank_env;
use crate::signals::CaughtSignals;
use crate::supervisor::{OutputRoutes, Supervisor, pmi_warnings};

/// Where and how a multi-node job runs.
#[derive(Debug, Clone)]
pub struct ClusterPlan {
    /// The nodes used, in node-id order.
    pub nodes: Vec<Node>,
    /// The node of every rank.
    pub node_of_rank: Vec<u32>,
    pub bootstrap: BootstrapConfig,
    /// The `gangway` binary on the nodes.
    pub proxy_path: String,
    /// How many proxies each proxy (and the launcher) starts.
    pub tree_width: usize,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub binding: BindingOptions,
}

/// Arranges node ids 0..n into a tree: the launcher starts the first `width`, each of those
/// starts up to `width` more, and so on (breadth first, so the depth is log_width(n)).
pub fn tree_shape(n: usize, width: usize) -> Vec<(usize, Vec<usize>)> {
    let width = width.max(1);
    // children[i] for node i, and the launcher's own list at the end.
    let mut children = vec![Vec::new(); n + 1];
    for node in 0..n {
        let parent = if node < width { n } else { (node - width) / width };
        children[parent].push(node);
    }
    let top = children.pop().unwrap_or_default();
    let mut shape = vec![(n, top)];
    shape.extend(children.into_iter().enumerate());
    shape
}

fn subtree_of(node: usize, children: &[Vec<usize>], jobs: &[NodeJob], nodes: &[Node]) -> Subtree {
    Subtree {
        host: nodes[node].name.clone(),
        user: nodes[node].user.clone(),
        port: nodes[node].port,
        job: jobs[node].clone(),
        below: children[node].iter().map(|&c| subtree_of(c, children, jobs, nodes)).collect(),
    }
}

/// Runs the job on the plan's nodes and waits for it to end.
pub async fn run_cluster(spec: JobSpec, plan: ClusterPlan) -> Result<JobReport, LaunchError> {
    let n = spec.ntasks;
    let nnodes = plan.nodes.len();
    let mut routes = OutputRoutes::open(&spec)?;
    let sink = OutputSink::start(std::mem::take(&mut routes.files));
    let Some(out) = sink.sender() else {
        return Err(LaunchError::Setup {
            what: "the output thread",
            source: std::io::Error::other("spawn"),
        });
    };
    let say = |msg: String| {
        let _ = out.send((output::STDERR, format!("gangway: {msg}\n").into_bytes()));
    };
    let started = std::time::Instant::now();

    let names: Vec<&str> = plan.nodes.iter().map(|n| n.name.as_str()).collect();
    let nodelist = hostlist::compress(&names).unwrap_or_else(|_| names.join(","));
    let base_env = rank_env::base_environment(&spec.export, std::env::vars_os());
    use std::os::unix::ffi::OsStrExt;
    let env: Vec<(Vec<u8>, Vec<u8>)> =
        base_env.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())).collect();
    let mapping = process_mapping(&plan.node_of_rank);
    // Remote ranks start where this command was typed (as with mpiexec and srun), not in the
    // login's home directory; the program path must not depend on either.
    let here = std::env::current_dir().ok();
    let cwd = spec.cwd.clone().or(here.clone());
    let program = match (&here, spec.program.is_relative()) {
        (Some(dir), true) => dir.join(&spec.program),
        _ => spec.program.clone(),
    };
    let jobs: Vec<NodeJob> = (0..nnodes)
        .map(|node| NodeJob {
            node_id: node as u32,
            nnodes: nnodes as u32,
            nodelist: nodelist.clone(),
            job_id: spec.job_id.clone(),
            size: n,
            ranks: (0..n).filter(|r| plan.node_of_rank[*r as usize] == node as u32).collect(),
            program: program.as_os_str().as_bytes().to_vec(),
            argv0: spec.argv0.as_bytes().to_vec(),
            args: spec.args.iter().map(|a| a.as_bytes().to_vec()).collect(),
            cwd: cwd.as_ref().map(|c| c.as_os_str().as_bytes().to_vec()),
            env: env.clone(),
            label: spec.label,
            input: spec.input,
            kvsname: format!("kvs_{}_0", spec.job_id),
            process_mapping: mapping.clone(),
            pmi_mode: spec.pmi_mode,
            binding: plan.binding.clone(),
            bootstrap: plan.bootstrap.clone(),
            proxy_path: plan.proxy_path.clone(),
            ping_interval_ms: plan.ping_interval.as_millis() as u64,
            ping_timeout_ms: plan.ping_timeout.as_millis() as u64,
        })
        .collect();
    let shape = tree_shape(nnodes, plan.tree_width);
    let mut children = vec![Vec::new(); nnodes];
    let mut top = Vec::new();
    for (parent, kids) in shape {
        if parent == nnodes {
            top = kids;
        } else {
            children[parent] = kids;
        }
    }
    let subtrees: Vec<Subtree> =
        top.iter().map(|&t| subtree_of(t, &children, &jobs, &plan.nodes)).collect();

    // The job's call-back key: proxies get it in their start line and must prove they hold it.
    let key = Psk::random();
    let mut callbacks = CallbackListener::bind(key.clone())
        .await
        .map_err(|source| LaunchError::Setup { what: "the proxy listener", source })?;
    let port = callbacks.port();
    let bootstrap = plan.bootstrap.build().map_err(|e| LaunchError::Setup {
        what: "the SSH bootstrap",
        source: std::io::Error::other(e),
    })?;
    let mut caught = CaughtSignals::install()
        .map_err(|source| LaunchError::Setup { what: "signal handlers", source })?;

    // Start the top of the tree, all at once; never more than one session per node.
    let mut starting = JoinSet::new();
    for (i, sub) in subtrees.iter().enumerate() {
        let host = HostSpec { host: sub.host.clone(), user: sub.user.clone(), port: sub.port };
        let argv = proxy_argv(&plan.proxy_path, sub.job.node_id);
        let b = Arc::clone(&bootstrap);
        starting.spawn(async move { (i, bootstrap::start_async(b, host, argv).await) });
    }
    let mut sessions: Vec<RemoteCommand> = Vec::new();
    let mut address: HashMap<u32, String> = HashMap::new();
    let mut start_error = None;
    while let Some(Ok((i, result))) = starting.join_next().await {
        match result {
            Ok(cmd) => {
                address.insert(subtrees[i].job.node_id, cmd.peer_addr.ip().to_string());
                if let Some(stdin) = &cmd.stdin {
                    let back = SocketAddr::new(cmd.local_addr.ip(), port);
                    let _ = stdin.write(start_line(&key, back).into_bytes());
                }
                sessions.push(cmd);
            }
            Err(e) => {
                start_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    if let Some(message) = start_error {
        for s in &sessions {
            s.terminate();
        }
        // The writer thread ends only when every sender is gone.
        drop(out);
        sink.finish();
        return Err(LaunchError::Node { message });
    }

    // Down: one writer per top proxy; a router picks the subtree for addressed messages.
    let mut route: HashMap<u32, usize> = HashMap::new();
    for (i, sub) in subtrees.iter().enumerate() {
        for id in sub.node_ids() {
            route.insert(id, i);
        }
    }
    let (up_tx, mut up_rx) = unbounded_channel::<Up>();
    let mut writers: Vec<Option<UnboundedSender<Envelope>>> = vec![None; subtrees.len()];
    let connect_deadline = Instant::now() + plan.ping_timeout.max(Duration::from_secs(10));
    let mut waiting = subtrees.len();
    let mut other_version = None;
    // Each call-back is handshaken on its own task: whatever else connects here (idle or
    // garbage connections, a wrong key) cannot hold up the proxies.
    while waiting > 0 {
        let caller = match timeout_at(connect_deadline, callbacks.next()).await {
            Ok(Some(Arrival::Proxy(caller))) => caller,
            Ok(Some(Arrival::WrongVersion { version })) => {
                if other_version.replace(version).is_none() {
                    say(format!(
                        "a proxy speaks protocol {version}, this gangway {PROTOCOL_VERSION}; install the same version everywhere"
                    ));
                }
                continue;
            }
            _ => break,
        };
        let node_id = caller.node_id;
        let Some(&i) = route.get(&node_id).filter(|i| subtrees[**i].job.node_id == node_id) else {
            continue;
        };
        // A second call-back for one node (only a holder of the key could make it) is ignored.
        if writers[i].is_some() {
            continue;
        }
        let lost = "its connection dropped".to_string();
        let tx =
            link_child(caller.reader, caller.writer, subtrees[i].node_ids(), up_tx.clone(), lost);
        let _ = tx
            .send(Envelope { to: Some(node_id), msg: Down::Start(Box::new(subtrees[i].clone())) });
        writers[i] = Some(tx);
        waiting -= 1;
    }
    let refused = callbacks.refused();
    // Nobody else has business on the port once the proxies are in.
    drop(callbacks);
    let (down_tx, mut down_rx) = unbounded_channel::<Envelope>();
    let router_writers = writers.clone();
    let router_route = route.clone();
    tokio::spawn(async move {
        while let Some(env) = down_rx.recv().await {
            match env.to {
                None => {
                    for w in router_writers.iter().flatten() {
                        let _ = w.send(env.clone());
                    }
                }
                Some(id) => {
                    if let Some(Some(w)) =
                        router_route.get(&id).and_then(|i| router_writers.get(*i))
                    {
                        let _ = w.send(env);
                    }
                }
            }
        }
    });

    let mut sup =
        Supervisor::new(vec![None; n as usize], spec.kill_grace, &say, Some(down_tx.clone()));
    let mut lost: Vec<bool> = vec![false; nnodes];
    let mut last_seen: Vec<Instant> = vec![Instant::now(); nnodes];
    let mut node_started = vec![false; nnodes];
    let ranks_of: Vec<Vec<u32>> = jobs.iter().map(|j| j.ranks.clone()).collect();
    let node_name = |node: u32, address: &HashMap<u32, String>| {
        let name = &plan.nodes[node as usize].name;
        match address.get(&node) {
            Some(a) if a != name => format!("{name} ({a})"),
            _ => name.clone(),
        }
    };
    // Proxies that never called back: their nodes are lost before they start.
    for (i, w) in writers.iter().enumerate() {
        if w.is_none() {
            let node = subtrees[i].job.node_id;
            let reason = format!("its proxy {}", never_called_back(refused, other_version));
            say(format!("node {} could not start: {reason}", node_name(node, &address)));
            sup.fail(JobEnd::NodeStartFailed {
                node: plan.nodes[node as usize].name.clone(),
                message: reason,
            });
            for id in subtrees[i].node_ids() {
                lost[id as usize] = true;
                for &r in &ranks_of[id as usize] {
                    sup.alive[r as usize] = false;
                }
            }
            sup.begin_stop();
        }
    }
    forward_stdin(spec.input, &plan.node_of_rank, down_tx.clone());

    let mut root = RootPmi::new(nnodes as u32);
    let deadline = spec.time_limit.map(|limit| Instant::now() + limit);
    let mut next_ping = Instant::now();
    let mut ping_seq = 0u64;
    if spec.verbose {
        let others = match refused {
            0 => String::new(),
            n => format!(" ({n} other connection(s) to the call-back port refused)"),
        };
        say(format!(
            "job {}: {} proxies called back in {:.1} ms{others}",
            spec.job_id,
            subtrees.len(),
            started.elapsed().as_secs_f64() * 1e3
        ));
    }

    while sup.running() {
        tokio::select! {
            Some(msg) = up_rx.recv() => match msg {
                Up::Started { node_id, pids, address: a } => {
                    node_started[node_id as usize] = true;
                    address.entry(node_id).or_insert(a);
                    for (rank, pid) in pids {
                        if let Some(p) = sup.pids.get_mut(rank as usize) {
                            *p = Some(pid);
                        }
                    }
                    if spec.verbose && node_started.iter().all(|s| *s) {
                        say(format!("job {}: all {n} ranks started in {:.1} ms", spec.job_id, started.elapsed().as_secs_f64() * 1e3));
                    }
                }
                Up::StartFailed { node_id, message } => {
                    say(format!("node {} could not start: {message}", node_name(node_id, &address)));
                    sup.fail(JobEnd::NodeStartFailed { node: plan.nodes[node_id as usize].name.clone(), message });
                    for &r in &ranks_of[node_id as usize] {
                        sup.alive[r as usize] = false;
                    }
                    sup.begin_stop();
                }
                Up::Output { rank, stream, bytes } => {
                    if let Some(&(o, e)) = routes.rank.get(rank as usize) {
                        let _ = out.send((if stream == Stream::Stdout { o } else { e }, bytes));
                    }
                }
                Up::Exited { rank, pid, end } => {
                    if let Some(p) = sup.pids.get_mut(rank as usize) {
                        *p = Some(pid);
                    }
                    if sup.alive.get(rank as usize).copied().unwrap_or(false) {
                        match end {
                            RemoteEnd::Status(status) => sup.rank_exited(rank, status, spec.kill_on_bad_exit),
                            RemoteEnd::SetupFailed { errno } => {
                                sup.exec_failed(rank, crate::spawn::SetupStep::Exec, errno, &spec.program)
                            }
                        }
                    }
                }
                Up::Pmi(event) => sup.pmi_event(event),
                Up::Fence { node_id, epoch, pairs } => {
                    for o in root.handle(RootInput::FenceUp { node: node_id, epoch, pairs }) {
                        route_root(o, &down_tx);
                    }
                }
                Up::Name { node_id, id, request } => {
                    for o in root.handle(RootInput::NameUp { node: node_id, id, request }) {
                        route_root(o, &down_tx);
                    }
                }
                Up::Pong { node_id, .. } => {
                    if let Some(t) = last_seen.get_mut(node_id as usize) {
                        *t = Instant::now();
                    }
                }
                Up::Lost { node_ids, reason } => {
                    for node in node_ids {
                        node_lost(node, &reason, &mut lost, &mut sup, &ranks_of, &plan.nodes, &address, &node_name);
                    }
                }
                Up::Hello { .. } => {}
            },
            sig = caught.recv() => sup.on_signal(sig),
            _ = sleep_until(next_ping) => {
                ping_seq += 1;
                next_ping = Instant::now() + plan.ping_interval;
                let _ = down_tx.send(Envelope { to: None, msg: Down::Ping(ping_seq) });
                let now = Instant::now();
                for node in 0..nnodes {
                    if !lost[node] && now.duration_since(last_seen[node]) > plan.ping_timeout {
                        let reason = format!("no ping reply for {:.0} s", plan.ping_timeout.as_secs_f64());
                        node_lost(node as u32, &reason, &mut lost, &mut sup, &ranks_of, &plan.nodes, &address, &node_name);
                    }
                }
            }
            _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() && sup.end.is_none() => {
                sup.on_time_limit(&spec.job_id, spec.time_limit.unwrap_or_default());
            }
            _ = sleep_until(sup.kill_at.unwrap_or_else(Instant::now)), if sup.kill_at.is_some() => {
                sup.kill_now();
            }
            _ = sleep_until(sup.settle_by.unwrap_or_else(Instant::now)), if sup.settle_by.is_some() => {}
        }
    }

    if spec.verbose {
        sup.say_summary(&spec.job_id, started.elapsed());
    }
    // Every rank's output arrived before its exit (the proxies see to that). Closing the
    // connections ends the proxies, which kill whatever their ranks left.
    drop(down_tx);
    drop(writers);
    for s in &sessions {
        s.terminate();
    }
    let warnings = pmi_warnings(&sup.spoke, &spec.program);
    let end = sup.end.clone().unwrap_or(JobEnd::Success);
    let ranks = sup.pids.iter().zip(&sup.statuses).map(|(p, s)| p.zip(*s)).collect();
    drop(sup);
    drop(out);
    sink.finish();
    Ok(JobReport { end, ranks, warnings })
}

fn route_root(output: RootOutput, down: &UnboundedSender<Envelope>) {
    let envelope = match output {
        RootOutput::FenceDown { epoch, pairs } => {
            Envelope { to: None, msg: Down::FenceDone { epoch, pairs } }
        }
        RootOutput::NameDown { node, id, reply } => {
            Envelope { to: Some(node), msg: Down::Name { id, reply } }
        }
    };
    let _ = down.send(envelope);
}

#[allow(clippy::too_many_arguments)]
fn node_lost(
    node: u32,
    reason: &str,
    lost: &mut [bool],
    sup: &mut Supervisor<'_>,
    ranks_of: &[Vec<u32>],
    nodes: &[Node],
    address: &HashMap<u32, String>,
    node_name: &dyn Fn(u32, &HashMap<u32, String>) -> String,
) {
    let Some(flag) = lost.get_mut(node as usize) else { return };
    // Nothing more comes from the node: its exited ranks will never be settled.
    for &r in ranks_of.get(node as usize).map(Vec::as_slice).unwrap_or_default() {
        sup.forget_unsettled(r);
    }
    if *flag {
        return;
    }
    *flag = true;
    let ranks = &ranks_of[node as usize];
    let had_live_ranks = ranks.iter().any(|r| sup.alive[*r as usize]);
    if !had_live_ranks && sup.end.is_some() {
        return;
    }
    (sup.say_fn())(format!("{} lost: {reason}", node_name(node, address)));
    for &r in ranks {
        if sup.alive[r as usize] {
            sup.alive[r as usize] = false;
            sup.statuses[r as usize] = Some(RankStatus::Signaled(libc::SIGKILL));
        }
    }
    sup.fail(JobEnd::NodeLost {
        node: nodes[node as usize].name.clone(),
        reason: reason.to_string(),
    });
    sup.begin_stop();
}

/// Sends our stdin to the node of the rank that reads it, or to every node (`--input`).
fn forward_stdin(mode: InputMode, node_of_rank: &[u32], down: UnboundedSender<Envelope>) {
    let node = match mode {
        InputMode::None => return,
        InputMode::All => None,
        InputMode::Rank(rank) => match node_of_rank.get(rank as usize) {
            Some(&node) => Some(node),
            None => return,
        },
    };
    let _ = std::thread::Builder::new().name("gangway-stdin".into()).spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => {
                    if down
                        .send(Envelope { to: node, msg: Down::Input(buf[..k].to_vec()) })
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
        let _ = down.send(Envelope { to: node, msg: Down::InputEnd });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_shapes() {
        // Flat when the width covers every node.
        assert_eq!(tree_shape(3, 8)[0], (3, vec![0, 1, 2]));
        // Width 2 over 7 nodes: the launcher starts 0 and 1; 0 starts 2, 3; 1 starts 4, 5; 2 starts 6.
        let shape = tree_shape(7, 2);
        assert_eq!(shape[0], (7, vec![0, 1]));
        assert_eq!(shape[1], (0, vec![2, 3]));
        assert_eq!(shape[2], (1, vec![4, 5]));
        assert_eq!(shape[3], (2, vec![6]));
        // Every node has exactly one parent.
        let mut seen: Vec<usize> = tree_shape(100, 3).into_iter().flat_map(|(_, k)| k).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
    }
}
