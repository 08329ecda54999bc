//! Real MPICH programs (C and Rust) and Slurm's PMI-2 client under `gangway run`.

use crate::support::{gangway, program, run};

/// Every rank reports once, rank 0 reports the right allreduce sum, exit 0.
fn check_hello(stdout: &str, n: u32) {
    for rank in 0..n {
        let prefix = format!("hello from rank {rank} of {n} on ");
        let count = stdout.lines().filter(|l| l.starts_with(&prefix)).count();
        assert_eq!(count, 1, "rank {rank} greeted {count} times:\n{stdout}");
    }
    let expected = n * (n + 1) / 2;
    assert!(
        stdout.contains(&format!("allreduce sum = {expected} (expected {expected})")),
        "wrong or missing allreduce:\n{stdout}"
    );
    assert!(stdout.contains("allreduce ok"), "{stdout}");
}

#[test]
fn c_hello_at_1_2_4_8_ranks() {
    let hello = program("hello");
    for n in [1, 2, 4, 8] {
        let out = run(gangway().args(["run", "-n", &n.to_string()]).arg(&hello));
        out.assert_success();
        check_hello(&out.stdout, n);
    }
}

#[test]
fn c_hello_over_pmi_port_with_initack() {
    let hello = program("hello");
    for n in [1, 3] {
        let out = run(gangway().args(["run", "--pmi=port", "-n", &n.to_string()]).arg(&hello));
        out.assert_success();
        check_hello(&out.stdout, n);
    }
}

#[test]
fn rust_ring_at_1_2_4_8_ranks() {
    let ring = program("rust-ring");
    for n in [1u32, 2, 4, 8] {
        let out = run(gangway().args(["run", "-n", &n.to_string()]).arg(&ring));
        out.assert_success();
        for rank in 0..n {
            let from = (rank + n - 1) % n;
            let token = if rank == 0 { n } else { rank };
            let line = format!("ring: rank {rank} received {token} from rank {from}");
            assert_eq!(
                out.stdout.lines().filter(|l| *l == line).count(),
                1,
                "missing '{line}':\n{}",
                out.stdout
            );
        }
        let expected = n * (n + 1) / 2;
        assert!(
            out.stdout.contains(&format!("allreduce sum = {expected} (expected {expected})")),
            "{}",
            out.stdout
        );
        assert!(out.stdout.contains("rust-ring ok"), "{}", out.stdout);
    }
}

#[test]
fn pmi2_client_exchanges_keys_among_4_ranks() {
    let exchange = program("pmi2_exchange");
    for mode in ["fd", "port"] {
        let out = run(gangway().args(["run", "-n", "4", &format!("--pmi={mode}")]).arg(&exchange));
        out.assert_success();
        for rank in 0..4 {
            let prefix = format!("pmi2: rank {rank} of 4 jobid ");
            let line = out.stdout.lines().find(|l| l.starts_with(&prefix));
            let line =
                line.unwrap_or_else(|| panic!("rank {rank} missing ({mode}):\n{}", out.stdout));
            assert!(
                line.contains("kvs ok (3 keys) nodeattr ok mapping (vector,(0,1,4))"),
                "{line}"
            );
        }
    }
}

#[test]
fn mpi_abort_stops_the_job_with_its_code() {
    let hello = program("hello");
    let out = run(gangway().args(["run", "-n", "4"]).arg(&hello).args([
        "--abort",
        "7",
        "--abort-rank",
        "2",
    ]));
    assert_eq!(out.code(), 7, "{}", out.stderr);
    assert!(out.stderr.contains("rank 2 called MPI_Abort with code 7"), "{}", out.stderr);
}
