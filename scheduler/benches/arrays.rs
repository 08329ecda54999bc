//! A job array waiting: what 100,000 pending tasks cost the scheduler when they wait as one
//! queued job (`NewJob::array`) on 10,000 busy nodes, beside the same tasks as 100,000 jobs.
//! Criterion times a full pass (priorities recomputed, every queued job judged) in both cases,
//! and the pass after one node frees (the array fills it with tasks); the memory held by the
//! waiting tasks is counted and printed. `cargo bench -p gangway-scheduler --bench arrays`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use gangway_scheduler::{
    ArrayTasks, Budget, ClusterBuilder, Decision, Event, JobRequest, NewJob, NodeHealth,
    PartitionLimits, Scheduler, SchedulerConfig, Timestamp,
};

/// Counts live heap bytes, so the memory of the waiting tasks is measured.
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

/// Nodes and tasks: the under `cargo bench`, a hundredth as a test.
fn scale() -> (usize, u32) {
    if std::env::args().any(|a| a == "--bench") { (10_000, 100_000) } else { (100, 1_000) }
}

const NOW: Timestamp = Timestamp(1_000_000);

/// Every node busy with a whole-node job (ids 1..=nodes), nothing waiting.
fn busy() -> Scheduler {
    let (nodes, _) = scale();
    let limits =
        PartitionLimits::new().default_time(Duration::from_secs(86_400)).default_partition();
    let cluster = ClusterBuilder::new()
        .nodes(nodes)
        .shape(2, 64, 1)
        .partition("batch", limits)
        .build()
        .unwrap_or_else(|e| panic!("cluster: {e}"));
    let mut s = Scheduler::new(cluster, SchedulerConfig::default())
        .unwrap_or_else(|e| panic!("config: {e}"));
    for id in 1..=nodes as u64 {
        let whole = JobRequest::new().nodes(1, 1).ntasks_per_node(128).exclusive();
        let _ = s.submit(NewJob::new(id, whole.submitted(NOW), "owner"), NOW);
    }
    let started = s.pass(NOW, Budget::unlimited()).started;
    assert_eq!(started, nodes, "every node busy");
    s
}

fn task() -> JobRequest {
    JobRequest::new().ntasks(1).time_limit(Duration::from_secs(3_600)).submitted(NOW)
}

/// The busy cluster with the tasks waiting: as one array (`true`) or as one job each.
fn waiting(as_array: bool) -> (Scheduler, isize) {
    let (nodes, tasks) = scale();
    let mut s = busy();
    let before = LIVE.load(Ordering::Relaxed);
    let first = nodes as u64 + 1;
    if as_array {
        let mut job = NewJob::new(first, task(), "ann");
        job.array = Some(ArrayTasks { pending: tasks, running: 0, throttle: None });
        let _ = s.submit(job, NOW);
    } else {
        for id in first..first + u64::from(tasks) {
            let _ = s.submit(NewJob::new(id, task(), "ann"), NOW);
        }
    }
    let bytes = LIVE.load(Ordering::Relaxed) - before;
    s.set_next_id(first + u64::from(tasks));
    let pass = s.pass(NOW, Budget::unlimited());
    assert_eq!(pass.started, 0, "nothing fits");
    (s, bytes)
}

fn bench(c: &mut Criterion) {
    let (nodes, tasks) = scale();
    let mut group = c.benchmark_group("arrays");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for as_array in [true, false] {
        let (mut s, bytes) = waiting(as_array);
        let what = if as_array { "one array of" } else { "single jobs," };
        eprintln!(
            "{what} {tasks} tasks waiting: {bytes} bytes in the books ({} queued)",
            s.queued()
        );
        let interval = s.config().full_pass_interval;
        let mut now = NOW;
        let name = format!("full pass, {what} {tasks} tasks waiting on {nodes} busy nodes");
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    now = now.after(interval);
                    // A node's health reported again: everything is judged afresh.
                    let node = s.cluster().nodes()[0].name().to_owned();
                    s.handle(Event::NodeHealth { node, health: NodeHealth::Up, reason: None }, now);
                    let t = Instant::now();
                    let pass = black_box(s.pass(now, Budget::unlimited()));
                    total += t.elapsed();
                    assert!(pass.full && pass.started == 0);
                }
                total
            })
        });
    }
    // A node frees (its job ends, later the tasks the array put there): the array fills it
    // with 128 tasks in the pass that follows; its pending count is put back each time.
    let (mut s, _) = waiting(true);
    let array = nodes as u64 + 1;
    let mut ended: Vec<u64> = vec![1];
    let mut now = NOW;
    let name = format!("a node frees, the waiting array fills it ({nodes} nodes)");
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                now = now.after(Duration::from_millis(10));
                for job in ended.drain(..) {
                    s.handle(Event::Ended { job, requeue: false }, now);
                }
                s.update_array(array, tasks, None, now);
                let t = Instant::now();
                let pass = black_box(s.pass(now, Budget::unlimited()));
                total += t.elapsed();
                ended.extend(pass.decisions.iter().filter_map(|d| match d {
                    Decision::Start { start, array: Some(_), .. } => Some(start.job),
                    _ => None,
                }));
                assert_eq!(ended.len(), 128, "a whole node of tasks");
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
