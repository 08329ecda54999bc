//! Builders for the controller's scenario tests: a three-node cluster with registered agents,
//! callers, submissions, and what to look for in [`Effects`]. Time is passed in as values.

use std::path::Path;

use crate::controller::config::Config;
use crate::controller::effects::{ConnId, Effect};
use crate::controller::state::{Caller, Cluster, Mono};
use crate::protocol::{FromAgent, JobId, JobKind, Registration, Reply, Shape, Submission, ToAgent};

/// Three nodes `n[1-3]` in one partition; heartbeats every second, suspect after 3 s, lost
/// after 6 s (lease 5.5 s), a 2 s kill grace.
pub fn config() -> Config {
    config_with("")
}

/// [`config`] with more sections after it (`[scheduling]`, `[[account]]`, `[[qos]]`, ...).
pub fn config_with(extra: &str) -> Config {
    let text = format!("{BASE}{extra}");
    Config::parse(&text, Path::new("t.toml")).expect("config")
}

/// [`cluster`] under [`config_with`]`(extra)`.
pub fn cluster_with(extra: &str) -> Cluster {
    let mut c = Cluster::new(config_with(extra), 0, Vec::new(), Vec::new(), 1, 0);
    c.listening(Mono(0));
    for i in 1..=3 {
        let name = format!("n{i}");
        c.from_agent(100 + i, &name, FromAgent::Register(registration(&name)), 0, Mono(0));
    }
    c
}

const BASE: &str = r#"
cluster = "t"
state_dir = "/nonexistent"
key_file = "/nonexistent"
heartbeat_interval = "1s"
suspect_timeout = "3s"
lost_timeout = "6s"
reconnect_grace = "1s"
kill_grace = "2s"
[[partition]]
name = "batch"
nodes = "n[1-3]"
default = true
"#;

/// An administrator.
pub fn root() -> Caller {
    Caller { uid: 0, gid: 0, user: "root".into(), admin: true }
}

/// A user who is no administrator.
pub fn alice() -> Caller {
    Caller { uid: 1000, gid: 1000, user: "alice".into(), admin: false }
}

/// A root agent's registration for node `name` (`n<i>`, at 10.0.0.<i>): 2 cores, nothing running.
pub fn registration(name: &str) -> Registration {
    let model = gangway_topology::Shape::new(1, 2, 1).build().expect("model");
    Registration {
        version: crate::protocol::VERSION,
        gangway_version: "test".into(),
        name: name.into(),
        topology: model.to_json(),
        addr: format!("10.0.0.{}", &name[1..]),
        port: 7718,
        running: Vec::new(),
        root: true,
        uid: Some(0),
        fenced: Vec::new(),
        releasing: Vec::new(),
    }
}

/// A cluster of three registered 2-core nodes (agent connections 101-103).
pub fn cluster() -> Cluster {
    cluster_with("")
}

/// A batch job over `nodes` nodes with `ntasks` tasks, requeued on node loss.
pub fn batch(nodes: u32, ntasks: u32) -> Submission {
    Submission {
        kind: JobKind::Batch,
        name: "job".into(),
        shape: Shape { min_nodes: Some(nodes), ntasks: Some(ntasks), ..Shape::default() },
        cwd: "/tmp".into(),
        env: Vec::new(),
        script: Some("#!/bin/sh\ntrue\n".into()),
        args: Vec::new(),
        command: "job.sh".into(),
        output: None,
        error: None,
        umask: None,
        requeue: true,
        hold: false,
        idempotency_key: None,
        end_handling: Default::default(),
        constraint: None,
        begin: None,
        dependency: None,
        kill_on_invalid_dep: None,
        comment: None,
        array: None,
    }
}

/// A one-task-per-index batch array (`--array=spec`), each task one core.
pub fn array(spec: &str) -> Submission {
    let mut sub = batch(1, 1);
    sub.array = Some(spec.parse().expect("array spec"));
    sub.output = Some("out_%A_%a.txt".into());
    sub
}

/// The job starts among `fx`: node, job, attempt.
pub fn starts(fx: &[Effect]) -> Vec<(String, JobId, u32)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::ToAgent { node, msg: ToAgent::Start(l) } => {
                Some((node.clone(), l.job, l.attempt))
            }
            _ => None,
        })
        .collect()
}

/// The agent connection of node `n<i>` in [`cluster`]: 100 + i.
pub fn conn_of(node: &str) -> ConnId {
    100 + node[1..].parse::<u64>().expect("n<i>")
}

/// Heartbeats from every node of [`cluster`] but `silent`, at `t` (wall and monotonic alike).
pub fn beat(c: &mut Cluster, silent: &str, t: u64) {
    for i in 1..=3u64 {
        let name = format!("n{i}");
        if name != silent {
            let hb = FromAgent::Heartbeat { load: 0.0, seq: t };
            let _acks = c.from_agent(100 + i, &name, hb, t, Mono(t));
        }
    }
}

/// The releases among `fx`: node, job, attempt.
pub fn releases(fx: &[Effect]) -> Vec<(String, JobId, u32)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::ToAgent { node, msg: ToAgent::Release { job, attempt } } => {
                Some((node.clone(), *job, *attempt))
            }
            _ => None,
        })
        .collect()
}

/// The replies among `fx` to connection `conn`.
pub fn replies_to(fx: &[Effect], conn: ConnId) -> Vec<&Reply> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::ToClient { conn: c, reply } if *c == conn => Some(reply),
            _ => None,
        })
        .collect()
}

/// An allocation (`gangway alloc`) over `nodes` nodes with `ntasks` tasks: held by the
/// connection that submits it.
pub fn alloc(nodes: u32, ntasks: u32) -> Submission {
    let mut sub = batch(nodes, ntasks);
    sub.kind = JobKind::Alloc;
    sub.script = None;
    sub.requeue = false;
    sub
}

/// Whether `fx` closes client connection `conn`.
pub fn closes(fx: &[Effect], conn: ConnId) -> bool {
    fx.iter().any(|e| matches!(e, Effect::CloseClient { conn: c } if *c == conn))
}
