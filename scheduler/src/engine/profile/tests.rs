//! Tests of the reservation profile: earliest slots for gangs around running jobs and other
//! reservations, windows, exclusivity, overdue jobs, and what a reserved node can spare.

use std::time::Duration;

use super::*;
use crate::builder::ClusterBuilder;
use crate::cluster::ClusterState;
use crate::request::JobRequest;

fn t(secs: u64) -> Timestamp {
    Timestamp::from_secs(secs)
}

/// `n` nodes of 8 cores (one thread each).
fn cluster(n: usize) -> ClusterState {
    ClusterBuilder::new().nodes(n).shape(1, 8, 1).build().unwrap()
}

fn cores(units: u32) -> Need {
    Need { units, ..Need::default() }
}

/// Marks `units` cores of node `n` as held by `job` until `until` (a running job).
fn run(c: &mut ClusterState, p: &mut Profile, job: JobId, n: usize, units: u32, until: Timestamp) {
    let request = JobRequest::new().nodelist(&[&format!("node{}", n + 1)]).ntasks(units);
    let d = crate::allocator::schedule(c, &[crate::request::PendingJob { id: job, request }]);
    for s in &d {
        if let crate::allocator::Decision::Start(s) = s {
            c.allocate(s).unwrap();
        }
    }
    p.add_release(n, job, cores(units), until);
}

fn query<'a>(
    nodes: &'a [usize],
    required: &'a [Option<usize>],
    shape: &'a JobShape,
    d: u64,
    now: u64,
) -> Query<'a> {
    Query {
        nodes,
        required,
        shape,
        exclusive: false,
        duration: Some(Duration::from_secs(d)),
        now: t(now),
        horizon: Timestamp::NEVER,
    }
}

#[test]
fn a_gang_waits_for_enough_whole_nodes() {
    let mut c = cluster(3);
    let mut p = Profile::new(3);
    run(&mut c, &mut p, 1, 0, 8, t(100));
    run(&mut c, &mut p, 2, 1, 4, t(300));
    let nodes = [0, 1, 2];
    let two_full = JobShape::of(&JobRequest::new().nodes(2, 2).ntasks_per_node(8));
    let slot = p.earliest(&c, &query(&nodes, &[], &two_full, 50, 0)).unwrap();
    assert_eq!(slot.at, t(100));
    assert_eq!(slot.nodes, vec![(0, 8), (2, 8)]);
    // Three whole nodes: only once node2's job is done too.
    let three = JobShape::of(&JobRequest::new().nodes(3, 3).ntasks_per_node(8));
    assert_eq!(p.earliest(&c, &query(&nodes, &[], &three, 50, 0)).unwrap().at, t(300));
    // What fits now starts now, packed onto the busy node first.
    let small = JobShape::of(&JobRequest::new().ntasks(4));
    let now = p.earliest(&c, &query(&nodes, &[], &small, 50, 0)).unwrap();
    assert_eq!((now.at, now.nodes.clone()), (t(0), vec![(1, 4)]));
}

#[test]
fn reservations_block_their_window_only() {
    let c = cluster(1);
    let mut p = Profile::new(1);
    let r =
        Reservation { job: 9, epoch: 0, start: t(100), end: t(200), nodes: vec![(0, cores(8), 8)] };
    p.add_reservation(&r);
    let nodes = [0];
    let whole = JobShape::of(&JobRequest::new().ntasks(8));
    // 50 s fits before the reservation; 150 s does not, and must wait for its end.
    assert_eq!(p.earliest(&c, &query(&nodes, &[], &whole, 50, 0)).unwrap().at, t(0));
    assert_eq!(p.earliest(&c, &query(&nodes, &[], &whole, 150, 0)).unwrap().at, t(200));
    // Unlimited jobs never fit before a reservation.
    let mut q = query(&nodes, &[], &whole, 1, 0);
    q.duration = None;
    assert_eq!(p.earliest(&c, &q).unwrap().at, t(200));
    // What a job running past the reservation's start may use there: nothing.
    assert_eq!(p.spare(0, Avail::now(&c.nodes()[0]), t(0)).unwrap().units(), 0);
    p.remove_job(9, [0]);
    assert!(p.spare(0, Avail::now(&c.nodes()[0]), t(0)).is_none());
}

#[test]
fn a_job_past_its_limit_frees_its_cores_just_after_now() {
    let mut c = cluster(1);
    let mut p = Profile::new(1);
    run(&mut c, &mut p, 1, 0, 8, t(100));
    let nodes = [0];
    let one = JobShape::of(&JobRequest::new().ntasks(1));
    // At 500 s the job should long be over; it is still being stopped.
    let slot = p.earliest(&c, &query(&nodes, &[], &one, 10, 500)).unwrap();
    assert_eq!(slot.at, Timestamp(500_001));
}

#[test]
fn exclusive_gangs_need_idle_nodes_for_the_whole_window() {
    let mut c = cluster(2);
    let mut p = Profile::new(2);
    run(&mut c, &mut p, 1, 0, 1, t(100));
    let r =
        Reservation { job: 9, epoch: 0, start: t(150), end: t(160), nodes: vec![(1, cores(1), 1)] };
    p.add_reservation(&r);
    let nodes = [0, 1];
    let shape = JobShape::of(&JobRequest::new().ntasks(1));
    let mut q = query(&nodes, &[], &shape, 200, 0);
    q.exclusive = true;
    // node2 is idle now but reserved at 150, inside a 200 s window; node1 is idle from 100.
    let slot = p.earliest(&c, &q).unwrap();
    assert_eq!((slot.at, slot.nodes.clone()), (t(100), vec![(0, 1)]));
    // A 100 s window ends before the reservation: node2 will do now.
    let mut short = query(&nodes, &[], &shape, 100, 0);
    short.exclusive = true;
    assert_eq!(p.earliest(&c, &short).unwrap().nodes, vec![(1, 1)]);
}

#[test]
fn required_nodes_and_the_horizon() {
    let mut c = cluster(2);
    let mut p = Profile::new(2);
    run(&mut c, &mut p, 1, 1, 8, t(400));
    let nodes = [0, 1];
    let shape = JobShape::of(&JobRequest::new().ntasks(2));
    let required = [Some(1)];
    let slot = p.earliest(&c, &query(&nodes, &required, &shape, 10, 0)).unwrap();
    assert_eq!((slot.at, slot.nodes.clone()), (t(400), vec![(1, 2)]));
    let mut q = query(&nodes, &required, &shape, 10, 0);
    q.horizon = t(300);
    assert!(p.earliest(&c, &q).is_none(), "not before the horizon");
}

#[test]
fn a_window_ending_when_another_begins_leaves_no_dip_whatever_the_order_they_were_made() {
    let c = cluster(1);
    let mut p = Profile::new(1);
    let later =
        Reservation { job: 8, epoch: 0, start: t(200), end: t(300), nodes: vec![(0, cores(4), 4)] };
    let earlier =
        Reservation { job: 9, epoch: 0, start: t(100), end: t(200), nodes: vec![(0, cores(4), 4)] };
    // The later window is booked first, as when the earlier one is re-planned in place.
    p.add_reservation(&later);
    p.add_reservation(&earlier);
    let nodes = [0];
    let half = JobShape::of(&JobRequest::new().ntasks(4));
    // Half the node stays free all along: at 200 one gives back what the other takes.
    assert_eq!(p.earliest(&c, &query(&nodes, &[], &half, 300, 0)).unwrap().at, t(0));
    assert_eq!(p.spare(0, Avail::now(&c.nodes()[0]), t(0)).unwrap().units(), 4);
}
