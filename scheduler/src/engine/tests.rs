//! Scenario tests of the engine, one policy at a time, with time passed in as values.

use std::time::Duration;

use super::*;
use crate::builder::ClusterBuilder;
use crate::decision::{AfterPreempt, Decision, PreemptCause};
use crate::policy::config::{
    AccountConfig, BackfillMode, Limits, PriorityWeights, QosConfig, UserConfig,
};
use crate::request::JobRequest;
use crate::types::Bytes;

const MIN: Duration = Duration::from_secs(60);

fn t(secs: u64) -> Timestamp {
    Timestamp::from_secs(secs)
}

/// A test world: a scheduler on `nodes` nodes of 16 cores (one thread each), and helpers.
struct World {
    s: Scheduler,
    now: Timestamp,
}

impl World {
    fn new(nodes: usize, config: SchedulerConfig) -> Self {
        let cluster = ClusterBuilder::new().nodes(nodes).shape(2, 8, 1).build().unwrap();
        World { s: Scheduler::new(cluster, config).unwrap(), now: t(0) }
    }

    fn mode(nodes: usize, backfill: BackfillMode) -> Self {
        Self::new(
            nodes,
            SchedulerConfig {
                backfill,
                weights: PriorityWeights::zero(),
                ..SchedulerConfig::default()
            },
        )
    }

    fn at(&mut self, secs: u64) -> &mut Self {
        self.now = t(secs);
        self
    }

    fn submit(&mut self, id: JobId, request: JobRequest) {
        self.submit_as(id, request, "ann", None, None);
    }

    fn submit_as(
        &mut self,
        id: JobId,
        request: JobRequest,
        user: &str,
        account: Option<&str>,
        qos: Option<&str>,
    ) {
        let mut job = NewJob::new(id, request.submitted(self.now), user);
        job.account = account.map(str::to_owned);
        job.qos = qos.map(str::to_owned);
        self.s.submit(job, self.now).unwrap();
    }

    fn pass(&mut self) -> Pass {
        let p = self.s.pass(self.now, Budget::unlimited());
        assert!(p.done);
        p
    }

    fn end(&mut self, id: JobId) {
        self.s.handle(Event::Ended { job: id, requeue: false }, self.now);
    }

    fn reason(&self, id: JobId) -> Option<PendingReason> {
        self.s.job(id).and_then(|j| j.reason)
    }

    fn running(&self, id: JobId) -> bool {
        self.s.job(id).is_some_and(|j| j.running)
    }
}

fn started(p: &Pass) -> Vec<(JobId, bool)> {
    p.decisions
        .iter()
        .filter_map(|d| match d {
            Decision::Start { start, backfilled, .. } => Some((start.job, *backfilled)),
            _ => None,
        })
        .collect()
}

fn whole(nodes: u32) -> JobRequest {
    JobRequest::new().nodes(nodes, nodes).ntasks_per_node(16)
}

/// node1 full until 100 s, node2 half busy until 300 s; a two-node job must wait for node1.
fn easy_world(backfill: BackfillMode) -> World {
    let mut w = World::mode(3, backfill);
    w.submit(
        1,
        JobRequest::new().nodelist(&["node1"]).ntasks(16).time_limit(100 * Duration::from_secs(1)),
    );
    w.submit(
        2,
        JobRequest::new().nodelist(&["node2"]).ntasks(8).time_limit(300 * Duration::from_secs(1)),
    );
    assert_eq!(started(&w.pass()).len(), 2);
    w
}

#[test]
fn easy_backfills_short_jobs_and_protects_the_reservation() {
    let mut w = easy_world(BackfillMode::Easy);
    w.at(1);
    w.submit(3, whole(2).time_limit(10 * MIN));
    w.submit(4, JobRequest::new().ntasks(4).time_limit(Duration::from_secs(50)));
    w.submit(5, JobRequest::new().ntasks(16).time_limit(10 * MIN));
    w.submit(6, JobRequest::new().ntasks(4).time_limit(10 * MIN));
    let p = w.pass();
    // Job 3 needs node1 and node3 (node2 is busy for 300 s): it reserves them at 100 s.
    let s = w.s.job(3).unwrap();
    assert_eq!(s.reason, Some(PendingReason::Resources));
    let e = s.expected.unwrap();
    assert_eq!(e.at, t(100));
    assert_eq!(e.nodes, vec!["node1".to_owned(), "node3".to_owned()]);
    // Job 4 ends before 100 s: backfilled (packed onto node2). Job 5 would hold node3 past
    // 100 s: it waits (Priority). Job 6 fits in what is left of node2, which the reservation
    // does not need.
    let st = started(&p);
    assert!(st.contains(&(4, true)), "{st:?}");
    assert!(st.contains(&(6, true)), "{st:?}");
    assert_eq!(w.reason(5), Some(PendingReason::Priority));
    // node1's job ends on time: job 3 starts where it was promised.
    w.at(100);
    w.end(1);
    w.end(4);
    let p = w.pass();
    assert!(started(&p).contains(&(3, false)));
    assert!(w.running(3));
}

#[test]
fn no_backfill_keeps_the_order() {
    let mut w = easy_world(BackfillMode::None);
    w.at(1);
    w.submit(3, whole(2).time_limit(10 * MIN));
    w.submit(4, JobRequest::new().ntasks(4).time_limit(Duration::from_secs(50)));
    let p = w.pass();
    assert!(started(&p).is_empty());
    assert_eq!(w.reason(3), Some(PendingReason::Resources));
    assert_eq!(w.reason(4), Some(PendingReason::Priority));
    assert!(w.s.job(3).unwrap().expected.is_none(), "no reservations without backfill");
}

#[test]
fn conservative_reserves_for_every_blocked_job() {
    let mut w = easy_world(BackfillMode::Conservative);
    w.at(1);
    w.submit(3, whole(2).time_limit(10 * MIN));
    w.submit(4, whole(3).time_limit(10 * MIN));
    w.submit(5, JobRequest::new().ntasks(4).time_limit(Duration::from_secs(50)));
    w.submit(6, JobRequest::new().ntasks(8).time_limit(100 * MIN));
    let p = w.pass();
    assert_eq!(w.s.job(3).unwrap().expected.unwrap().at, t(100));
    // Job 4 needs all three nodes: after job 2 (300 s) and after job 3 (100 s + 10 min).
    assert_eq!(w.s.job(4).unwrap().expected.unwrap().at, t(700));
    let st = started(&p);
    assert!(st.contains(&(5, true)), "{st:?}");
    // Job 6 would run into job 4's reservation on node2: it may not start.
    assert!(!st.iter().any(|&(j, _)| j == 6), "{st:?}");
    assert!(w.s.job(6).unwrap().expected.is_some(), "it holds a reservation of its own");
}

#[test]
fn jobs_without_a_limit_get_the_partition_default() {
    let cluster = ClusterBuilder::new()
        .nodes(2)
        .shape(2, 8, 1)
        .partition(
            "batch",
            crate::cluster::PartitionLimits::new().default_time(100 * Duration::from_secs(1)),
        )
        .build()
        .unwrap();
    let config = SchedulerConfig { weights: PriorityWeights::zero(), ..SchedulerConfig::default() };
    let mut w = World { s: Scheduler::new(cluster, config).unwrap(), now: t(0) };
    w.submit(1, JobRequest::new().nodelist(&["node1"]).ntasks(16));
    w.pass();
    w.submit(2, whole(2));
    w.pass();
    assert_eq!(w.s.job(2).unwrap().expected.unwrap().at, t(100), "job 1 ends by the default");
}

#[test]
fn priority_is_explained_and_orders_the_queue() {
    let config = SchedulerConfig {
        weights: PriorityWeights { age: 100, size: 0, partition: 0, qos: 1000, fairshare: 0 },
        max_age: Duration::from_secs(1000),
        qos: vec![QosConfig::new("normal", 0), QosConfig::new("high", 10)],
        ..SchedulerConfig::default()
    };
    let mut w = World::new(1, config);
    w.submit(1, whole(1).time_limit(MIN));
    w.pass();
    w.submit_as(2, JobRequest::new().ntasks(16), "ann", None, None);
    w.at(500);
    w.submit_as(3, JobRequest::new().ntasks(16), "ann", None, Some("high"));
    let mut nice = NewJob::new(4, JobRequest::new().ntasks(16).submitted(t(500)), "ann");
    nice.nice = 30;
    w.s.submit(nice, t(500)).unwrap();
    w.at(1000);
    w.end(1);
    let p = w.pass();
    assert_eq!(started(&p), vec![(3, false)], "QOS beats age");
    let e = w.s.explain(2).unwrap();
    assert_eq!(e.total, w.s.job(2).unwrap().priority);
    assert_eq!(e.total, 100, "waited the whole max_age");
    let e4 = w.s.explain(4).unwrap();
    assert_eq!(e4.total, 50 - 30);
    assert_eq!(e4.terms.iter().map(|t| t.points).sum::<i64>(), e4.total);
}

#[test]
fn fair_share_puts_the_lighter_user_first() {
    let config = SchedulerConfig {
        weights: PriorityWeights { age: 0, size: 0, partition: 0, qos: 0, fairshare: 1000 },
        half_life: Duration::from_secs(3600),
        full_pass_interval: Duration::ZERO,
        ..SchedulerConfig::default()
    };
    let mut w = World::new(1, config);
    w.submit_as(1, whole(1).time_limit(10 * MIN), "heavy", None, None);
    w.pass();
    w.at(600);
    w.end(1);
    w.submit_as(2, whole(1), "heavy", None, None);
    w.submit_as(3, whole(1), "light", None, None);
    let p = w.pass();
    assert_eq!(started(&p), vec![(3, false)]);
    let rows = w.s.shares(w.now);
    let heavy = rows.iter().find(|r| r.user.as_deref() == Some("heavy")).unwrap();
    let light = rows.iter().find(|r| r.user.as_deref() == Some("light")).unwrap();
    assert!(heavy.usage > 0.0 && heavy.factor.unwrap() < light.factor.unwrap());
    // Usage survives a restart through the records the controller stores.
    let records = w.s.usage(w.now);
    let mut again = World::new(1, w.s.config().clone());
    again.s.restore_usage(&records);
    assert_eq!(again.s.usage(w.now), records);
}

fn quota_config(lend: bool) -> SchedulerConfig {
    let mut a = AccountConfig::new("a");
    a.limits.cpus = Some(16);
    a.borrow = true;
    let mut b = AccountConfig::new("b");
    b.limits.cpus = Some(16);
    b.lend = lend;
    SchedulerConfig {
        weights: PriorityWeights::zero(),
        accounts: vec![a, b],
        users: vec![
            UserConfig { name: "ann".into(), default_account: "a".into(), shares: 1 },
            UserConfig { name: "bob".into(), default_account: "b".into(), shares: 1 },
        ],
        ..SchedulerConfig::default()
    }
}

#[test]
fn an_account_over_its_quota_waits_with_the_reason() {
    let mut w = World::new(4, quota_config(false));
    w.submit_as(1, whole(1), "ann", None, None);
    w.submit_as(2, JobRequest::new().ntasks(4), "ann", None, None);
    w.submit_as(3, JobRequest::new().ntasks(4), "bob", None, None);
    let p = w.pass();
    assert_eq!(started(&p), vec![(1, false), (3, false)]);
    assert_eq!(w.reason(2), Some(PendingReason::AccountCpuLimit));
    let examined = w.pass().examined;
    assert_eq!(examined, 0, "a parked job costs nothing until its account frees something");
    w.at(10);
    w.end(1);
    assert!(started(&w.pass()).contains(&(2, false)));
    assert!(w.s.over_quota().is_empty());
}

#[test]
fn unused_quota_is_lent_and_reclaimed() {
    let mut w = World::new(4, quota_config(true));
    w.submit_as(1, whole(1), "ann", None, None);
    w.pass();
    // Over a's quota: borrows b's unused 16 CPUs, and is marked preemptable.
    w.submit_as(2, whole(1), "ann", None, None);
    let p = w.pass();
    let borrowed = p.decisions.iter().find_map(|d| match d {
        Decision::Start { start, borrowed_from, .. } if start.job == 2 => {
            Some(borrowed_from.clone())
        }
        _ => None,
    });
    assert_eq!(borrowed, Some(vec!["b".to_owned()]));
    assert!(w.s.job(2).unwrap().preemptable);
    // b wants its quota back: job 2 is preempted for job 3.
    w.at(60);
    w.submit_as(3, JobRequest::new().ntasks(8), "bob", None, None);
    let p = w.pass();
    let pre: Vec<_> = p
        .decisions
        .iter()
        .filter_map(|d| if let Decision::Preempt(x) = d { Some(x.clone()) } else { None })
        .collect();
    assert_eq!(pre.len(), 1);
    assert_eq!((pre[0].victim, pre[0].by), (2, 3));
    assert_eq!(pre[0].cause, PreemptCause::QuotaReclaim { lender: "b".into() });
    assert_eq!(w.reason(3), Some(PendingReason::QuotaReclaim));
    assert!(w.s.over_quota().is_empty());
    // Asking again does not preempt more.
    w.at(61);
    w.s.handle(Event::Release(99), w.now);
    assert!(w.pass().decisions.iter().all(|d| !matches!(d, Decision::Preempt(_))));
    w.at(120);
    w.s.handle(Event::Ended { job: 2, requeue: true }, w.now);
    let p = w.pass();
    assert!(started(&p).contains(&(3, false)));
    assert!(!w.running(2), "the requeued borrower waits again");
}

#[test]
fn a_high_qos_job_preempts_the_cheapest_set() {
    let mut high = QosConfig::new("high", 100);
    high.preempt = vec!["low".into()];
    let mut low = QosConfig::new("low", 0);
    low.grace = Duration::from_secs(30);
    let config = SchedulerConfig {
        weights: PriorityWeights::zero(),
        qos: vec![low, high],
        ..SchedulerConfig::default()
    };
    let mut w = World::new(2, config);
    // Four low jobs of 8 cores; the older ones have run longer (more work to lose).
    for (id, at) in [(1, 0), (2, 100), (3, 200), (4, 300)] {
        w.at(at);
        w.submit(id, JobRequest::new().ntasks(8));
        w.pass();
    }
    w.at(400);
    w.submit_as(5, JobRequest::new().ntasks(16), "ann", None, Some("high"));
    let p = w.pass();
    let mut victims: Vec<JobId> = p
        .decisions
        .iter()
        .filter_map(|d| match d {
            Decision::Preempt(x) => {
                assert_eq!(x.grace, Duration::from_secs(30));
                assert_eq!(x.then, AfterPreempt::Requeue);
                Some(x.victim)
            }
            _ => None,
        })
        .collect();
    victims.sort_unstable();
    // The two youngest jobs lose the least work; they share a node, so the gang fits there.
    assert_eq!(victims, vec![3, 4]);
    assert_eq!(w.reason(5), Some(PendingReason::Preemption));
    assert_eq!(w.s.job(5).unwrap().expected.map(|e| e.at), Some(t(430)), "the room is claimed");
    w.at(430);
    w.s.handle(Event::Ended { job: 3, requeue: true }, w.now);
    assert!(started(&w.pass()).is_empty(), "still waiting for job 4");
    w.s.handle(Event::Ended { job: 4, requeue: true }, w.now);
    assert!(started(&w.pass()).contains(&(5, false)));
    assert!(w.s.job(3).is_some_and(|j| !j.running), "requeued");
}

#[test]
fn dependency_blocked_jobs_cost_nothing() {
    let mut w = World::mode(1, BackfillMode::Easy);
    for id in 1..=100 {
        let mut job = NewJob::new(id, JobRequest::new(), "ann");
        job.dependency = true;
        w.s.submit(job, w.now).unwrap();
    }
    let p = w.pass();
    assert_eq!(p.examined, 0);
    assert_eq!(w.reason(7), Some(PendingReason::Dependency));
    w.s.handle(Event::DependenciesMet(7), w.now);
    let p = w.pass();
    assert_eq!((p.examined, started(&p)), (1, vec![(7, false)]));
}

#[test]
fn held_jobs_wait_until_released() {
    let mut w = World::mode(1, BackfillMode::Easy);
    w.submit(1, JobRequest::new().held());
    assert!(started(&w.pass()).is_empty());
    assert_eq!(w.reason(1), Some(PendingReason::Held));
    w.s.handle(Event::Release(1), w.now);
    assert_eq!(started(&w.pass()), vec![(1, false)]);
}

#[test]
fn a_pass_is_bounded_and_carries_on() {
    let mut w = World::mode(1, BackfillMode::Easy);
    w.submit(1, whole(1));
    for id in 2..=21 {
        w.submit(id, JobRequest::new());
    }
    let first = w.s.pass(w.now, Budget::jobs(5));
    assert_eq!(first.examined, 5);
    assert!(!first.done);
    let mut examined = first.examined;
    loop {
        let p = w.s.pass(w.now, Budget::jobs(5));
        examined += p.examined;
        if p.done {
            break;
        }
    }
    assert_eq!(examined, 21, "every job looked at once");
    // One new job: decided on its own.
    w.submit(22, JobRequest::new());
    assert_eq!(w.pass().examined, 1);
}

#[test]
fn node_down_reasons_and_recovery() {
    let mut w = World::mode(2, BackfillMode::Easy);
    w.s.handle(
        Event::NodeHealth { node: "node2".into(), health: NodeHealth::Down, reason: None },
        w.now,
    );
    w.submit(1, whole(2));
    w.submit(2, JobRequest::new().nodelist(&["node2"]));
    w.pass();
    assert_eq!(w.reason(1), Some(PendingReason::NodeDown));
    assert_eq!(w.reason(2), Some(PendingReason::NodeDown));
    w.s.handle(
        Event::NodeHealth { node: "node2".into(), health: NodeHealth::Up, reason: None },
        w.now,
    );
    let st = started(&w.pass());
    assert!(st.contains(&(1, false)) || st.contains(&(2, false)));
}

#[test]
fn a_bad_reload_changes_nothing() {
    let mut w = World::new(1, quota_config(false));
    let mut bad = quota_config(false);
    bad.accounts[0].parent = Some("nowhere".into());
    let err = w.s.reconfigure(bad, w.now).unwrap_err();
    assert!(err.to_string().contains("nowhere"));
    assert_eq!(w.s.config(), &quota_config(false));
    // A good reload keeps jobs and usage.
    w.submit_as(
        1,
        JobRequest::new().memory(crate::request::MemoryRequest::PerNode(Bytes::gib(1))),
        "ann",
        None,
        None,
    );
    let mut good = quota_config(false);
    good.accounts[0].limits = Limits::default();
    w.s.reconfigure(good, w.now).unwrap();
    assert_eq!(started(&w.pass()), vec![(1, false)]);
}

#[test]
fn submissions_are_checked() {
    let mut q = QosConfig::new("short", 0);
    q.max_wall = Some(MIN);
    let mut config = quota_config(false);
    config.qos = vec![QosConfig::new("normal", 0), q];
    config.accounts[0].limits.queued_jobs = Some(1);
    let mut w = World::new(1, config);
    let job = |id, user: &str| NewJob::new(id, JobRequest::new(), user);
    assert!(matches!(w.s.submit(job(1, "zed"), w.now), Err(SubmitError::NoAccount(_))));
    let mut other = job(1, "ann");
    other.account = Some("b".into());
    assert!(matches!(w.s.submit(other, w.now), Err(SubmitError::NotMember { .. })));
    let mut long = NewJob::new(1, JobRequest::new().time_limit(2 * MIN), "ann");
    long.qos = Some("short".into());
    assert!(w.s.submit(long, w.now).unwrap_err().to_string().contains("QOS 'short'"));
    w.s.submit(job(1, "ann"), w.now).unwrap();
    assert_eq!(w.s.submit(job(1, "ann"), w.now), Err(SubmitError::Duplicate(1)));
    assert!(matches!(w.s.submit(job(2, "ann"), w.now), Err(SubmitError::QueuedLimit(_))));
}

#[test]
fn running_jobs_are_recovered_after_a_restart() {
    let mut w = World::mode(1, BackfillMode::Easy);
    w.submit(1, whole(1).time_limit(MIN));
    let p = w.pass();
    let start = p
        .decisions
        .iter()
        .find_map(|d| match d {
            Decision::Start { start, .. } => Some(start.clone()),
            _ => None,
        })
        .unwrap();
    // A new scheduler (the controller restarted) learns the running job from its store.
    let mut again = World::mode(1, BackfillMode::Easy);
    let job = NewJob::new(1, whole(1).time_limit(MIN), "ann");
    again.s.recover(job, &start, t(0)).unwrap();
    assert!(again.running(1));
    again.at(10);
    again.submit(2, JobRequest::new());
    again.pass();
    assert_eq!(again.reason(2), Some(PendingReason::Resources));
    assert_eq!(again.s.job(2).unwrap().expected.map(|e| e.at), Some(t(60)));
    again.at(60);
    again.end(1);
    assert_eq!(started(&again.pass()), vec![(2, false)]);
    // Recording the same grants twice is refused.
    let dup = NewJob::new(3, whole(1), "ann");
    assert!(again.s.recover(dup, &start, t(60)).is_err());
}

#[test]
fn restored_usage_is_not_charged_twice_for_a_job_still_running() {
    let config = SchedulerConfig {
        half_life: Duration::from_secs(1_000_000_000),
        full_pass_interval: Duration::ZERO,
        ..SchedulerConfig::default()
    };
    let mut w = World::new(1, config);
    w.submit_as(1, whole(1), "ann", None, None);
    w.pass();
    w.at(600);
    let stored = w.s.usage(w.now);
    let charged = stored.iter().find(|r| r.user == "ann").unwrap().value;
    assert!(charged > 0.0);
    // A restart: the running job is recovered with its grants from its start, then the
    // stored usage comes back (or the other way round); either way it is charged once.
    let start = {
        let cluster = w.s.cluster();
        let node = &cluster.nodes()[0];
        let a = node.allocations()[0].clone();
        crate::JobStart {
            job: 1,
            partition: cluster.partitions()[0].name.clone(),
            time_limit: None,
            nodes: vec![crate::NodeGrant {
                node: node.name().to_owned(),
                node_index: 0,
                cpus: a.cpus.clone(),
                memory: a.memory,
                gpus: a.gpus.clone(),
                exclusive: a.exclusive,
                tasks: Vec::new(),
            }],
        }
    };
    for usage_first in [true, false] {
        let mut again = World::new(1, w.s.config().clone());
        again.now = w.now;
        let job = NewJob::new(1, whole(1), "ann");
        if usage_first {
            again.s.restore_usage(&stored);
        }
        again.s.recover(job, &start, Timestamp(0)).unwrap();
        if !usage_first {
            again.s.restore_usage(&stored);
        }
        let after = again.s.usage(w.now);
        let value = after.iter().find(|r| r.user == "ann").unwrap().value;
        assert!(
            (value - charged).abs() < 1e-6,
            "{value} vs {charged} (usage first: {usage_first})"
        );
    }
}
