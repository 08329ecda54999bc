//! The reservation profile: how each node's free resources change over time — running jobs
//! giving theirs back at their time limits, reservations taking and returning theirs — and
//! the earliest time and nodes at which a job's whole gang fits for its whole time limit.
//!
//! The sweep walks the profile's moments in time order, keeping each node's free resources
//! and a histogram of how many tasks each node could take; it runs the gang selection (the
//! same packing rule as a start now) only when the histogram says the gang could fit. Nodes
//! that are reserved later in the job's window are judged by their lowest point in it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::collections::binary_heap::PeekMut;
use std::time::Duration;

use crate::avail::{Avail, Need};
use crate::cluster::ClusterState;
use crate::gang::{Candidate, JobShape, select};
use crate::types::{JobId, Timestamp};

/// What a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A running job gives its resources back (at its time limit).
    Release,
    /// A reservation takes its resources.
    Take,
    /// A reservation gives them back.
    Return,
}

/// A change of one node's free resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Step {
    at: Timestamp,
    job: JobId,
    need: Need,
    kind: Kind,
}

impl Step {
    fn up(&self) -> bool {
        self.kind != Kind::Take
    }

    /// Where the step goes in a node's list: by time, gains before losses at one instant.
    fn order(&self) -> (Timestamp, bool) {
        (self.at, !self.up())
    }

    /// When the step happens, seen from `now`: a job past its time limit still holds its
    /// resources (it is being stopped), so its release is taken to come just after now.
    fn when(&self, now: Timestamp) -> Timestamp {
        if self.kind == Kind::Release && self.at <= now {
            now.after(Duration::from_millis(1))
        } else {
            self.at
        }
    }

    fn apply(&self, a: &mut Avail) {
        if self.up() {
            a.give(&self.need);
        } else {
            a.take(&self.need);
        }
    }
}

/// A job's place in the future: from `start` to `end` on these nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reservation {
    pub job: JobId,
    /// [`crate::Scheduler`]'s profile epoch when it was made: unchanged epoch, still earliest.
    pub epoch: u64,
    pub start: Timestamp,
    pub end: Timestamp,
    /// (node index, what it takes there, tasks there)
    pub nodes: Vec<(usize, Need, u32)>,
}

/// Where and when a gang fits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Slot {
    pub at: Timestamp,
    /// (node index, tasks)
    pub nodes: Vec<(usize, u32)>,
}

/// What a sweep looks for.
#[derive(Debug, Clone)]
pub(crate) struct Query<'a> {
    /// Usable nodes, in partition order.
    pub nodes: &'a [usize],
    /// Positions in `nodes` of the nodes the job must include.
    pub required: &'a [Option<usize>],
    pub shape: &'a JobShape,
    pub exclusive: bool,
    /// How long the job may run (`None`: no limit).
    pub duration: Option<Duration>,
    pub now: Timestamp,
    /// Look no further than this (the answer is then "not before").
    pub horizon: Timestamp,
}

/// Every node's future steps.
#[derive(Debug, Clone, Default)]
pub(crate) struct Profile {
    steps: Vec<Vec<Step>>,
}

impl Profile {
    /// An empty profile for `nodes` nodes.
    pub fn new(nodes: usize) -> Self {
        Self { steps: vec![Vec::new(); nodes] }
    }

    /// Keeps a node's steps in time order and, at one instant, what comes back before what
    /// is taken: a window ending at `t` and one starting at `t` do not overlap. In insertion
    /// order instead, a reservation made later (re-planned in place) could put its return
    /// after another's take at the same instant, and the sweep saw a dip that never happens —
    /// a job re-planned in its own old slot found it "full" and was pushed back.
    fn insert(&mut self, node: usize, step: Step) {
        if let Some(steps) = self.steps.get_mut(node) {
            let at = steps.partition_point(|s| s.order() <= step.order());
            steps.insert(at, step);
        }
    }

    /// A running job gives `need` back on `node` at `at` (its time limit).
    pub fn add_release(&mut self, node: usize, job: JobId, need: Need, at: Timestamp) {
        if at != Timestamp::NEVER {
            self.insert(node, Step { at, job, need, kind: Kind::Release });
        }
    }

    /// Takes a reservation's resources for its window.
    pub fn add_reservation(&mut self, r: &Reservation) {
        for &(node, need, _) in &r.nodes {
            self.insert(node, Step { at: r.start, job: r.job, need, kind: Kind::Take });
            if r.end != Timestamp::NEVER {
                self.insert(node, Step { at: r.end, job: r.job, need, kind: Kind::Return });
            }
        }
    }

    /// Forgets every step of `job` on `nodes`.
    pub fn remove_job(&mut self, job: JobId, nodes: impl IntoIterator<Item = usize>) {
        for n in nodes {
            if let Some(steps) = self.steps.get_mut(n) {
                steps.retain(|s| s.job != job);
            }
        }
    }

    /// The least free on `node` from now on wherever a reservation holds resources, starting
    /// from `avail` free now: what a job running past the reservations' starts may use without
    /// delaying them. `None` when no reservation touches the node.
    pub fn spare(&self, node: usize, avail: Avail, now: Timestamp) -> Option<Avail> {
        let steps = self.steps.get(node)?;
        if !steps.iter().any(|s| s.kind == Kind::Take) {
            return None;
        }
        let mut a = avail;
        let mut began = false;
        for s in steps.iter().filter(|s| s.when(now) <= now) {
            s.apply(&mut a);
            began |= s.kind == Kind::Take;
        }
        let mut least = began.then_some(a);
        // Already in time order: an overdue release (moved to just after now) comes before
        // every step that is really in the future.
        for s in steps.iter().filter(|s| s.when(now) > now) {
            s.apply(&mut a);
            if s.kind == Kind::Take {
                least = Some(least.map_or(a, |l| l.min(a)));
            }
        }
        least
    }

    /// The earliest moment at or after `q.now` (and before `q.horizon`) at which the gang fits
    /// for its whole duration, with its nodes; `None` if it never does with these nodes.
    pub fn earliest(&self, cluster: &ClusterState, q: &Query<'_>) -> Option<Slot> {
        let mut sweep = Sweep::new(self, cluster, q)?;
        sweep.run(self, cluster, q)
    }
}

/// The state of one sweep.
struct Sweep {
    /// Free resources of each position at the current moment.
    cur: Vec<Avail>,
    /// Tasks each position can take for the whole window.
    caps: Vec<u32>,
    /// Positions by tasks they can take (capped at the job's task count).
    hist: Vec<u32>,
    /// No bucket above this one was ever used: a wide job's histogram is mostly empty
    /// (a node takes a few dozen tasks of thousands).
    high: usize,
    /// Each position's next future step: (time, position, index in the node's steps). The
    /// nodes' steps are each in time order already, so merging them as the sweep goes
    /// replaces sorting all of them up front (most sweeps stop early).
    heads: BinaryHeap<Reverse<(Timestamp, u32, u32)>>,
    /// Positions with a reservation starting in the future (judged by their window minimum).
    reserved: Vec<u32>,
    /// Per position, the index of the first step at or after the window's end when its cap
    /// was last computed ([`STALE`] once a step has happened there since). While nothing
    /// happens on a node and no new step enters its window, its cap cannot change.
    window_ends: Vec<u32>,
    /// Per position, the index of the node's first step after the last moment its cap was
    /// computed at: moments only move forward, so it only moves forward too.
    window_starts: Vec<u32>,
}

/// A position whose cap must be computed afresh.
const STALE: u32 = u32::MAX;

impl Sweep {
    fn new(profile: &Profile, cluster: &ClusterState, q: &Query<'_>) -> Option<Self> {
        let mut cur = Vec::with_capacity(q.nodes.len());
        let mut heads = BinaryHeap::with_capacity(q.nodes.len());
        let mut reserved = Vec::new();
        for (pos, &n) in q.nodes.iter().enumerate() {
            let mut a = Avail::now(cluster.nodes.get(n)?);
            let steps = profile.steps.get(n).map_or(&[][..], Vec::as_slice);
            let mut has_future_take = false;
            let mut first = None;
            for (k, s) in steps.iter().enumerate() {
                if s.when(q.now) > q.now {
                    first.get_or_insert(k);
                    has_future_take |= !s.up();
                } else {
                    s.apply(&mut a);
                }
            }
            if has_future_take {
                reserved.push(pos as u32);
            }
            if let Some(k) = first
                && let Some(s) = steps.get(k)
            {
                heads.push(Reverse((s.when(q.now), pos as u32, k as u32)));
            }
            cur.push(a);
        }
        let top = q.shape.ntasks as usize + 1;
        Some(Sweep {
            caps: vec![0; cur.len()],
            window_ends: vec![STALE; cur.len()],
            window_starts: vec![0; cur.len()],
            cur,
            hist: vec![0; top],
            high: 0,
            heads,
            reserved,
        })
    }

    /// Takes the earliest future step of all positions (by time, then position, then order
    /// on the node) and puts that position's next one in line.
    fn next_event(&mut self, profile: &Profile, q: &Query<'_>) -> Option<(Timestamp, u32, u32)> {
        let mut top = self.heads.peek_mut()?;
        let Reverse(event) = *top;
        let (_, pos, k) = event;
        let steps = q.nodes.get(pos as usize).and_then(|&n| profile.steps.get(n));
        let steps = steps.map_or(&[][..], Vec::as_slice);
        let from = k as usize + 1;
        // Past steps (already in `cur`) are skipped. A node's future steps' times rise with
        // their order: an overdue release (moved to just after now) comes before every step
        // that is really in the future.
        let next = steps.get(from..).unwrap_or_default().iter().zip(from..).find_map(|(s, k)| {
            let when = s.when(q.now);
            (when > q.now).then_some((when, pos, k as u32))
        });
        // In place: one sift instead of a pop and a push.
        match next {
            Some(next) => *top = Reverse(next),
            None => drop(PeekMut::pop(top)),
        }
        Some(event)
    }

    fn window_end(q: &Query<'_>, t: Timestamp) -> Timestamp {
        t.after_limit(q.duration)
    }

    /// Recomputes position `pos`'s cap at `t`, unless nothing that decides it changed.
    fn update_cap(
        &mut self,
        profile: &Profile,
        cluster: &ClusterState,
        q: &Query<'_>,
        pos: usize,
        t: Timestamp,
    ) {
        let end = Self::window_end(q, t);
        let known = self.window_ends.get(pos).copied().unwrap_or(STALE);
        if known != STALE {
            let steps = q.nodes.get(pos).and_then(|&n| profile.steps.get(n));
            let next = steps.and_then(|s| s.get(known as usize));
            if next.is_none_or(|s| s.at >= end) {
                return;
            }
        }
        let (cap, window_end) = self.cap_at(profile, cluster, q, pos, t);
        if let Some(e) = self.window_ends.get_mut(pos) {
            *e = window_end;
        }
        self.set_cap(pos, cap);
    }

    /// Tasks position `pos` can take from `t` for the job's whole window, and the index of
    /// the node's first step at or after the window's end ([`STALE`] for an unreserved
    /// position: its cap changes only with its own steps).
    fn cap_at(
        &mut self,
        profile: &Profile,
        cluster: &ClusterState,
        q: &Query<'_>,
        pos: usize,
        t: Timestamp,
    ) -> (u32, u32) {
        let (Some(&n), Some(&now)) = (q.nodes.get(pos), self.cur.get(pos)) else {
            return (0, STALE);
        };
        let Some(node) = cluster.nodes.get(n) else { return (0, STALE) };
        let mut least = now;
        let mut window_end = STALE;
        if self.reserved.binary_search(&(pos as u32)).is_ok() {
            let end = Self::window_end(q, t);
            let mut a = now;
            // Steps are in time order; overdue releases (first) only ever raise the level,
            // so skipping them can only make the minimum lower: safe.
            let steps = profile.steps.get(n).map_or(&[][..], Vec::as_slice);
            let mut from = self.window_starts.get(pos).map_or(0, |&k| k as usize);
            while steps.get(from).is_some_and(|s| s.at <= t) {
                from += 1;
            }
            if let Some(k) = self.window_starts.get_mut(pos) {
                *k = u32::try_from(from).unwrap_or(u32::MAX);
            }
            let mut k = from;
            for s in steps.get(from..).unwrap_or_default() {
                if s.at >= end {
                    break;
                }
                k += 1;
                s.apply(&mut a);
                if !s.up() {
                    least = least.min(a);
                }
            }
            window_end = u32::try_from(k).unwrap_or(STALE);
        }
        (q.shape.capacity(node, &least, q.exclusive), window_end)
    }

    fn set_cap(&mut self, pos: usize, cap: u32) {
        let top = self.hist.len() - 1;
        if let Some(old) = self.caps.get_mut(pos) {
            if let Some(h) = self.hist.get_mut((*old as usize).min(top)) {
                *h -= 1;
            }
            *old = cap;
        }
        let bucket = (cap as usize).min(top);
        if let Some(h) = self.hist.get_mut(bucket) {
            *h += 1;
        }
        self.high = self.high.max(bucket);
    }

    /// Whether the histogram allows the gang: enough usable nodes, and the biggest allowed
    /// number of them hold every task.
    fn may_fit(&self, shape: &JobShape) -> bool {
        let (mut taken, mut sum, mut usable) = (0u32, 0u64, 0u32);
        let used = self.hist.get(..=self.high).unwrap_or_default();
        for (cap, &count) in used.iter().enumerate().skip(1).rev() {
            usable += count;
            let take = count.min(shape.max_nodes.saturating_sub(taken));
            sum += u64::from(take) * cap as u64;
            taken += take;
        }
        usable >= shape.min_nodes && sum >= u64::from(shape.ntasks)
    }

    fn try_select(&self, q: &Query<'_>, t: Timestamp) -> Option<Slot> {
        let candidates: Vec<Candidate> = q
            .nodes
            .iter()
            .zip(self.caps.iter().zip(&self.cur))
            .map(|(&node, (&cap, cur))| Candidate { node, cap, partial: cur.busy() })
            .collect();
        let chosen = select(candidates.as_slice(), q.required, q.shape)?;
        let nodes = chosen
            .into_iter()
            .filter_map(|(pos, count)| Some((candidates.get(pos)?.node, count)))
            .collect();
        Some(Slot { at: t, nodes })
    }

    fn run(&mut self, profile: &Profile, cluster: &ClusterState, q: &Query<'_>) -> Option<Slot> {
        if let Some(h) = self.hist.first_mut() {
            *h = self.cur.len() as u32;
        }
        for pos in 0..self.cur.len() {
            self.update_cap(profile, cluster, q, pos, q.now);
        }
        if self.may_fit(q.shape)
            && let Some(slot) = self.try_select(q, q.now)
        {
            return Some(slot);
        }
        let mut touched: Vec<usize> = Vec::new();
        while let Some(&Reverse((t, ..))) = self.heads.peek() {
            if t >= q.horizon {
                return None;
            }
            touched.clear();
            let mut rose = false;
            while self.heads.peek().is_some_and(|&Reverse((at, ..))| at == t) {
                let Some((_, pos, k)) = self.next_event(profile, q) else { break };
                let pos = pos as usize;
                let Some(&n) = q.nodes.get(pos) else { continue };
                let Some(step) = profile.steps.get(n).and_then(|s| s.get(k as usize)) else {
                    continue;
                };
                if let Some(a) = self.cur.get_mut(pos) {
                    step.apply(a);
                }
                if let Some(e) = self.window_ends.get_mut(pos) {
                    *e = STALE;
                }
                rose |= step.up();
                if touched.last() != Some(&pos) {
                    touched.push(pos);
                }
            }
            if !rose {
                // Nothing came free: the gang cannot fit now if it did not before. Only
                // reserved positions (the only ones with takes) were touched, and their caps
                // are recomputed at the next moment anyway.
                continue;
            }
            // Reserved nodes' windows move with time even when nothing happens on them.
            // A position met twice costs only the check that its window did not change.
            for &pos in &touched {
                self.update_cap(profile, cluster, q, pos, t);
            }
            for i in 0..self.reserved.len() {
                let pos = self.reserved.get(i).map_or(usize::MAX, |&p| p as usize);
                self.update_cap(profile, cluster, q, pos, t);
            }
            if self.may_fit(q.shape)
                && let Some(slot) = self.try_select(q, t)
            {
                return Some(slot);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests;
