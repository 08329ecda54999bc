//! One command's request to the owner task: refusals that need no state (a script too big, a
//! full disk), the dispatch to the handlers, and whether the answer may leave before the next
//! commit (it only read the state, or changed nothing).

use crate::controller::config::Config;
use crate::controller::disk::{Disk, human};
use crate::controller::effects::{ConnId, Effects};
use crate::controller::idempotency::check_key;
use crate::controller::state::{Caller, Cluster};
use crate::controller::store::Store;
use crate::exit_code;
use crate::protocol::{Reply, Request};

/// One client request: its effects, and whether they may leave at once (a read-only answer, or
/// a refusal: nothing changed) rather than after the next commit.
///
/// While a commit waits for disk space, a request that would change the state is refused with
/// exit code 119 instead of being carried out and held with its reply: what the controller holds
/// then grows only with what its agents report (bounded by the jobs they run), never with what
/// clients send. `done` still goes through (one per connection, which it closes).
pub(super) fn client_request(
    cluster: &mut Cluster,
    store: &Store,
    (config, disk): (&Config, &Disk),
    conn: ConnId,
    caller: &Caller,
    request: Request,
    now: u64,
) -> (Effects, bool) {
    if let Some(reply) = refuse_submission(&request, config, disk) {
        return (Effects::reply_and_close(conn, reply), true);
    }
    let read_only = is_read_only(&request);
    if !read_only
        && !matches!(request, Request::Done { .. })
        && let Err(no_room) = disk.holding()
    {
        let reply = Reply::Error { code: exit_code::NO_NEW_WORK, message: no_room.to_string() };
        return (Effects::reply(conn, reply), true);
    }
    (handle_request(cluster, store, conn, caller, request, now), read_only)
}

/// Requests whose answer only reads the state (and may leave while a commit waits for space).
fn is_read_only(r: &Request) -> bool {
    matches!(
        r,
        Request::Queue
            | Request::History { .. }
            | Request::Nodes
            | Request::ShowJob { .. }
            | Request::ShowNode { .. }
            | Request::Share
            | Request::TestOnly(_)
    )
}

/// The refusal of a submission the controller cannot take: a script over `max_script_size`,
/// or no room on the state disk (exit code 119).
fn refuse_submission(request: &Request, config: &Config, disk: &Disk) -> Option<Reply> {
    let Request::Submit(sub) = request else { return None };
    if let Some(Err(message)) = sub.idempotency_key.as_deref().map(check_key) {
        return Some(Reply::Error { code: exit_code::USAGE, message });
    }
    let script = sub.script.as_ref().map_or(0, |s| s.len() as u64);
    let max = config.limits.max_script_size;
    if script > max {
        return Some(Reply::Error {
            code: exit_code::USAGE,
            message: format!(
                "the script is {}, over this cluster's limit of {} (max_script_size in the controller's configuration); keep data in files the script reads",
                human(script),
                human(max)
            ),
        });
    }
    let incoming = serde_json::to_string(sub).map_or(0, |t| t.len() as u64);
    disk.admit(incoming)
        .err()
        .map(|e| Reply::Error { code: exit_code::NO_NEW_WORK, message: e.to_string() })
}

fn handle_request(
    cluster: &mut Cluster,
    store: &Store,
    conn: ConnId,
    caller: &Caller,
    request: Request,
    now: u64,
) -> Effects {
    let reply = |r: Reply| Effects::reply(conn, r);
    match request {
        Request::Submit(sub) => cluster.submit(conn, caller, *sub, now),
        Request::TestOnly(sub) => cluster.test_only(conn, caller, *sub, now),
        Request::Queue => reply(Reply::Jobs { jobs: cluster.queue() }),
        Request::History { limit } => reply(Reply::Jobs { jobs: cluster.history(limit) }),
        Request::Nodes => reply(Reply::Nodes { nodes: cluster.nodes(now) }),
        Request::ShowJob { id } => match cluster.job_info(id) {
            Some(mut info) => {
                match store.events_of(id) {
                    Ok(events) => info.events = events,
                    Err(e) => tracing::warn!(job = id, error = %e, "cannot read the job's events"),
                }
                reply(Reply::Job(Box::new(info)))
            }
            None => reply(Reply::Error {
                code: exit_code::FAILURE,
                message: format!("job {id} does not exist"),
            }),
        },
        Request::ShowNode { name } => match cluster.node_info(&name, now) {
            Some(info) => reply(Reply::Node(Box::new(info))),
            None => reply(Reply::Error {
                code: exit_code::FAILURE,
                message: format!("node '{name}' does not exist; see `gangway nodes`"),
            }),
        },
        Request::Cancel { ids, signal, user, tasks } => {
            cluster.cancel(conn, caller, &ids, &tasks, signal, user.as_deref(), now)
        }
        Request::Hold { ids } => cluster.set_held(conn, caller, &ids, true, now),
        Request::Release { ids } => cluster.set_held(conn, caller, &ids, false, now),
        Request::Update { id, changes } => cluster.update(conn, caller, id, &changes, now),
        Request::Requeue { ids } => cluster.requeue_asked(conn, caller, &ids, now),
        Request::Drain { nodes, reason } => {
            cluster.set_drain(conn, caller, &nodes, Some(reason), now)
        }
        Request::Resume { nodes } => cluster.set_drain(conn, caller, &nodes, None, now),
        Request::Step(step) => cluster.step(conn, caller, step, now),
        // Answered by the connection's task (the key stays out of the owner task's hands).
        Request::Token { .. } => Effects::new(),
        Request::Done { exit_code } => cluster.done(conn, exit_code, now),
        Request::Share => reply(Reply::Shares { rows: cluster.shares(now) }),
        Request::Reconfigure => {
            // The file is read here (the handlers do no I/O); the handler checks and applies.
            let loaded = Config::load(&cluster.config().path).map_err(|e| e.to_string());
            cluster.reconfigure(conn, caller, loaded, now)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::controller::effects::Effect;
    use crate::controller::state::Dirty;
    use crate::protocol::Submission;

    fn config(dir: &Path) -> Config {
        let text = format!(
            "cluster = \"t\"\nstate_dir = \"{}\"\nkey_file = \"/nonexistent\"\nmin_free_space = \"0\"\nstate_reserve = \"0\"\n[[partition]]\nname = \"batch\"\nnodes = \"n[1-2]\"\ndefault = true\n",
            dir.display()
        );
        Config::parse(&text, Path::new("t.toml")).expect("config")
    }

    fn held_job() -> Request {
        let sub: Submission = serde_json::from_value(serde_json::json!({
            "kind": "batch", "name": "t", "shape": {
                "min_nodes": null, "max_nodes": null, "ntasks": null, "ntasks_per_node": null,
                "cpus_per_task": null, "mem_per_node": null, "mem_per_cpu": null,
                "gpus_per_task": null, "exclusive": false, "partition": null,
                "time_limit_secs": null, "nodelist": [], "exclude": []},
            "cwd": "/", "env": [], "script": "#!/bin/sh\ntrue\n", "command": "t",
            "output": null, "error": null, "requeue": true, "hold": true
        }))
        .expect("submission");
        Request::Submit(Box::new(sub))
    }

    fn is_119(fx: &Effects) -> bool {
        matches!(
            fx.first(),
            Some(Effect::ToClient { reply: Reply::Error { code: exit_code::NO_NEW_WORK, .. }, .. })
        )
    }

    /// A client that keeps sending requests while the state disk is full (here: 10,000 holds and
    /// releases) makes the controller hold nothing more: each is refused at once with 119.
    #[test]
    fn while_a_commit_waits_for_space_changes_are_refused_at_once_not_held() {
        let dir = tempfile::tempdir().expect("dir");
        let config = config(dir.path());
        let mut store = Store::open(dir.path()).expect("store");
        let mut disk = Disk::new(dir.path(), &config.limits);
        let mut cluster = Cluster::new(config.clone(), 0, Vec::new(), Vec::new(), 1, 0);
        let root = Caller { uid: 0, gid: 0, user: "root".into(), admin: true };
        let ask = |cluster: &mut Cluster, disk: &Disk, store: &Store, r: Request| {
            client_request(cluster, store, (&config, disk), 7, &root, r, 1)
        };
        let (fx, at_once) = ask(&mut cluster, &disk, &store, held_job());
        assert!(!at_once && !is_119(&fx), "{fx:?}");
        assert!(disk.commit(&mut store, cluster.take_dirty()));

        // The disk fills: a change cannot be committed, and is held with its reply.
        store.cap_pages(Some(0));
        let (fx, at_once) = ask(&mut cluster, &disk, &store, Request::Release { ids: vec![1] });
        assert!(!at_once, "the first change is taken, its reply held: {fx:?}");
        let mut dirty = cluster.take_dirty();
        dirty.events[0].detail = "x".repeat(64 << 10);
        assert!(!disk.commit(&mut store, dirty), "the database cannot grow");

        let mut held = Effects::new();
        for i in 0..10_000 {
            let ids = vec![1];
            let r = if i % 2 == 0 { Request::Hold { ids } } else { Request::Release { ids } };
            let (fx, at_once) = ask(&mut cluster, &disk, &store, r);
            assert!(at_once && is_119(&fx), "request {i}: {fx:?}");
            if !at_once {
                held.append(fx);
            }
        }
        assert!(held.is_empty());
        let dirty = cluster.take_dirty();
        assert!(dirty.jobs.is_empty() && dirty.events.is_empty(), "nothing changed: {dirty:?}");
        // Queries are still answered, and a submission is refused (and its connection closed).
        let (fx, at_once) = ask(&mut cluster, &disk, &store, Request::Queue);
        assert!(at_once && matches!(fx[..], [Effect::ToClient { reply: Reply::Jobs { .. }, .. }]));
        let (fx, at_once) = ask(&mut cluster, &disk, &store, held_job());
        assert!(at_once && is_119(&fx) && matches!(fx[1], Effect::CloseClient { conn: 7 }));

        // Space returns: the held change commits, and changes are taken again.
        store.cap_pages(None);
        assert!(disk.commit(&mut store, Dirty::default()));
        let (fx, at_once) = ask(&mut cluster, &disk, &store, Request::Hold { ids: vec![1] });
        assert!(!at_once && !is_119(&fx), "{fx:?}");
    }
}
