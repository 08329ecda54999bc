//! The scheduler at scale: 10,000 simulated nodes of 2 sockets × 64 cores (2 threads each),
//! 100,000 pending jobs of mixed shapes (one core to 256 nodes, limits from minutes to days).
//!
//! Targets (issue 11): a full pass (priorities + EASY) ≤ 1 s; an incremental decision after
//! one event p99 < 1 ms; ≥ 50,000 placements/s in a burst; ≤ 2 KB of memory per pending job.
//! Criterion times the passes; the p99, the burst rate and the memory per job are measured
//! here too and printed (a counting allocator gives the bytes).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use gangway_scheduler::sim::Rng;
use gangway_scheduler::{
    Budget, Bytes, ClusterBuilder, Event, JobRequest, MemoryRequest, NewJob, PartitionLimits,
    Scheduler, SchedulerConfig, Timestamp,
};

/// Counts live heap bytes, so memory per pending job is measured rather than guessed.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout, same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded as given.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The sizes: the under `cargo bench`; a hundredth when the bench runs as a test
/// (`cargo test --all-targets` runs it once, unoptimised, without `--bench`).
struct Scale {
    nodes: usize,
    pending: usize,
    burst: u64,
    events: u64,
}

fn scale() -> Scale {
    if std::env::args().any(|a| a == "--bench") {
        Scale { nodes: 10_000, pending: 100_000, burst: 50_000, events: 2_000 }
    } else {
        Scale { nodes: 100, pending: 1_000, burst: 500, events: 50 }
    }
}

fn scheduler() -> Scheduler {
    let limits = PartitionLimits::new()
        .max_time(Duration::from_secs(14 * 86_400))
        .default_time(Duration::from_secs(86_400))
        .default_partition();
    let cluster = ClusterBuilder::new()
        .nodes(scale().nodes)
        .shape(2, 64, 2)
        .memory_per_numa(Bytes::gib(256).get())
        .partition("batch", limits)
        .build()
        .unwrap_or_else(|e| panic!("cluster: {e}"));
    Scheduler::new(cluster, SchedulerConfig::default()).unwrap_or_else(|e| panic!("config: {e}"))
}

/// A job of a mixed queue: mostly small, some wide, a few very wide; limits minutes to days.
fn job(rng: &mut Rng, id: u64, now: Timestamp) -> NewJob {
    let limit = Duration::from_secs(60 * (5 + rng.next_u64() % (60 * 24 * 3)));
    let request = match rng.next_u64() % 100 {
        0..=49 => JobRequest::new().ntasks(1 + (rng.next_u64() % 16) as u32),
        50..=69 => JobRequest::new()
            .ntasks(8)
            .cpus_per_task(4)
            .memory(MemoryRequest::PerCpu(Bytes::gib(1))),
        70..=84 => JobRequest::new().nodes(1, 1).ntasks(64).cpus_per_task(2),
        85..=94 => {
            let n = 2 + (rng.next_u64() % 15) as u32;
            JobRequest::new().nodes(n, n).ntasks_per_node(128)
        }
        95..=98 => JobRequest::new().nodes(2, 8).ntasks(256).exclusive(),
        _ => {
            let n = 32 + (rng.next_u64() % 225) as u32;
            JobRequest::new().nodes(n, n).ntasks_per_node(32).cpus_per_task(4)
        }
    };
    let user = format!("u{}", rng.next_u64() % 64);
    NewJob::new(id, request.time_limit(limit).submitted(now), &user)
}

/// The scheduler after its first pass over 100,000 pending jobs: the cluster full, the rest
/// waiting with an EASY reservation.
fn loaded() -> (Scheduler, Rng, u64, Vec<u64>) {
    let mut s = scheduler();
    let mut rng = Rng::new(11);
    let now = Timestamp::from_secs(1_000);
    let pending = scale().pending;
    for id in 1..=pending as u64 {
        // At the test scale (100 nodes) the widest jobs do not fit and are refused.
        let _ = s.submit(job(&mut rng, id, now), now);
    }
    let t = Instant::now();
    let first = s.pass(now, Budget::unlimited());
    let running: Vec<u64> = first
        .decisions
        .iter()
        .filter_map(|d| match d {
            gangway_scheduler::Decision::Start { start, .. } => Some(start.job),
            _ => None,
        })
        .collect();
    eprintln!(
        "first pass: {} started, {} examined, {} decisions in {:.3} s",
        first.started,
        first.examined,
        first.decisions.len(),
        t.elapsed().as_secs_f64()
    );
    (s, rng, pending as u64 + 1, running)
}

/// A running job to end (0, no job, when none runs: the event is then ignored).
fn take_one(running: &mut Vec<u64>, rng: &mut Rng) -> u64 {
    if running.is_empty() {
        return 0;
    }
    let i = (rng.next_u64() as usize) % running.len();
    running.swap_remove(i)
}

fn p99(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v.get(v.len() * 99 / 100).copied().unwrap_or_default()
}

fn bench(c: &mut Criterion) {
    // Memory per pending job: live heap before and after queueing 100,000 jobs.
    let mut s = scheduler();
    let mut rng = Rng::new(7);
    let before = LIVE.load(Ordering::Relaxed);
    let size = scale();
    for id in 1..=size.pending as u64 {
        let _ = s.submit(job(&mut rng, id, Timestamp(0)), Timestamp(0));
    }
    let bytes = LIVE.load(Ordering::Relaxed) - before;
    let per_job = bytes / size.pending as isize;
    eprintln!("memory: {per_job} bytes per pending job ({} jobs)", s.queued());
    drop(s);

    // Burst: 50,000 one-to-sixteen-core jobs onto the empty cluster in one pass.
    let mut s = scheduler();
    let mut rng = Rng::new(3);
    for id in 1..=size.burst {
        let request = JobRequest::new().ntasks(1 + (rng.next_u64() % 16) as u32);
        let _ = s.submit(NewJob::new(id, request.submitted(Timestamp(0)), "burst"), Timestamp(0));
    }
    let t = Instant::now();
    let pass = s.pass(Timestamp(0), Budget::unlimited());
    let secs = t.elapsed().as_secs_f64();
    eprintln!(
        "burst: {} placements in {secs:.3} s = {:.0} placements/s",
        pass.started,
        pass.started as f64 / secs
    );
    drop(s);

    let (mut s, mut rng, mut next, mut running) = loaded();
    let mut now = Timestamp::from_secs(1_000);
    let interval = s.config().full_pass_interval;

    // Incremental decisions: one event (a submission, or a running job ending), then the pass
    // that follows it, bounded to BUDGET jobs as the controller runs it between full passes.
    const BUDGET: usize = 32;
    let mut submit_times = Vec::new();
    let mut end_times = Vec::new();
    let mut decisions: Vec<Duration> = Vec::new();
    let origin = Instant::now();
    let mut clock = || origin.elapsed().as_nanos() as u64;
    for i in 0..size.events {
        now = now.after(Duration::from_millis(10));
        let t = Instant::now();
        let pass = if i % 2 == 0 {
            let _ = s.submit(job(&mut rng, next, now), now);
            next += 1;
            let p = s.pass_timed(now, Budget::jobs(BUDGET), &mut clock);
            submit_times.push(t.elapsed());
            p
        } else {
            let victim = take_one(&mut running, &mut rng);
            s.handle(Event::Ended { job: victim, requeue: false }, now);
            let p = s.pass_timed(now, Budget::jobs(BUDGET), &mut clock);
            end_times.push(t.elapsed());
            p
        };
        decisions.extend(pass.decision_times.iter().map(|&ns| Duration::from_nanos(ns)));
        running.extend(pass.decisions.iter().filter_map(|d| match d {
            gangway_scheduler::Decision::Start { start, .. } => Some(start.job),
            _ => None,
        }));
    }
    eprintln!(
        "incremental: p99 {:?} per decision ({} decisions); p99 {:?} after a submission, p99 {:?} after a job end ({BUDGET}-job budget)",
        p99(decisions.clone()),
        decisions.len(),
        p99(submit_times),
        p99(end_times)
    );

    let mut group = c.benchmark_group("scheduler");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    // A full pass: priorities recomputed for ~100,000 waiting jobs, the EASY reservation
    // rebuilt, every job judged; made due by an event and the interval going by.
    group.bench_function("full pass, 100k pending on 10k nodes (EASY)", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                now = now.after(interval);
                let victim = take_one(&mut running, &mut rng);
                s.handle(Event::Ended { job: victim, requeue: false }, now);
                let _ = s.submit(job(&mut rng, next, now), now);
                next += 1;
                let t = Instant::now();
                let pass = black_box(s.pass(now, Budget::unlimited()));
                total += t.elapsed();
                assert!(pass.full && pass.done, "a full pass, to the end");
                running.extend(pass.decisions.iter().filter_map(|d| match d {
                    gangway_scheduler::Decision::Start { start, .. } => Some(start.job),
                    _ => None,
                }));
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
