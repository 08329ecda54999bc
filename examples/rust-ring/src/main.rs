//! Token ring + allreduce over MPI, for `gangway run`.
//!
//! Output (stdout, one line each):
//! - every rank:  `ring: rank R received T from rank P` (P = R-1 mod N; rank 0 receives last)
//! - rank 0:      `ring: token T completed the ring (expected N)`
//! - rank 0:      `allreduce sum = S (expected E)` (E = N*(N+1)/2) and then `rust-ring ok`
//!
//! Rank 0 sends the token 1; every rank R>0 receives R and passes R+1 on, so rank 0
//! gets N back from rank N-1. With one rank the token is "passed" to itself without
//! messaging (`ring: rank 0 received 1 from rank 0`). Exit status 1 if any check fails
//! (then rank 0 prints `rust-ring FAILED` on stderr instead of `rust-ring ok`).

use mpi::traits::*;
use std::io::Write;

fn main() {
    let universe = mpi::initialize().expect("MPI initialisation failed");
    let world = universe.world();
    let rank = world.rank();
    let size = world.size();
    let mut failed = false;

    let next = (rank + 1) % size;
    let prev = (rank + size - 1) % size;

    if size == 1 {
        let token: i64 = 1;
        say(&format!("ring: rank {rank} received {token} from rank {prev}"));
        say(&format!("ring: token {token} completed the ring (expected 1)"));
    } else if rank == 0 {
        let token: i64 = 1;
        world.process_at_rank(next).send(&token);
        let (back, _status) = world.process_at_rank(prev).receive::<i64>();
        say(&format!("ring: rank {rank} received {back} from rank {prev}"));
        let expected = i64::from(size);
        say(&format!("ring: token {back} completed the ring (expected {expected})"));
        failed |= back != expected;
    } else {
        let (token, _status) = world.process_at_rank(prev).receive::<i64>();
        say(&format!("ring: rank {rank} received {token} from rank {prev}"));
        failed |= token != i64::from(rank);
        world.process_at_rank(next).send(&(token + 1));
    }

    let mine = i64::from(rank) + 1;
    let mut sum: i64 = 0;
    world.all_reduce_into(&mine, &mut sum, mpi::collective::SystemOperation::sum());
    let expected = i64::from(size) * (i64::from(size) + 1) / 2;
    failed |= sum != expected;

    // Combine everybody's verdict so rank 0 reports for the whole job.
    let local_bad = i32::from(failed);
    let mut any_bad: i32 = 0;
    world.all_reduce_into(&local_bad, &mut any_bad, mpi::collective::SystemOperation::max());

    if rank == 0 {
        say(&format!("allreduce sum = {sum} (expected {expected})"));
        if any_bad == 0 {
            say("rust-ring ok");
        } else {
            eprintln!("rust-ring FAILED");
        }
    }

    drop(universe); // MPI_Finalize
    std::process::exit(if failed || any_bad != 0 { 1 } else { 0 });
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
