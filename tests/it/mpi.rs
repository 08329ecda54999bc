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

#[test]
fn mpi_name_service_goes_through_pmi() {
    let nameserv = program("nameserv");
    for n in ["2", "4"] {
        let out = run(gangway().args(["run", "-n", n]).arg(&nameserv));
        out.assert_success();
        assert!(out.stdout.contains(&format!("nameserv ok ({n} ranks)")), "{}", out.stdout);
    }
}

/// A rank that speaks PMI (here: a PMI-1 init/finalize exchange spoken by bash over PMI_FD)
/// next to ranks that never do: the job succeeds, with a warning that names the silent ranks.
#[test]
fn ranks_that_never_connect_while_others_did_are_named() {
    let script = r#"
        if [ "$GANGWAY_RANK" = 0 ]; then
            printf 'cmd=init pmi_version=1 pmi_subversion=1\n' >&$PMI_FD
            read -r reply <&$PMI_FD
            echo "$reply"
            printf 'cmd=finalize\n' >&$PMI_FD
            read -r reply <&$PMI_FD
            echo "$reply"
        fi"#;
    let out = run(gangway().args(["run", "-n", "3", "bash", "-c", script]));
    out.assert_success();
    assert_eq!(
        out.sorted_lines(),
        ["cmd=finalize_ack", "cmd=response_to_init pmi_version=1 pmi_subversion=1 rc=0"]
    );
    assert!(
        out.stderr
            .contains("warning: rank(s) 1,2 never connected to PMI while 1 other rank(s) did"),
        "{}",
        out.stderr
    );
}

/// Malformed PMI from a rank ends the job cleanly (never a panic or a hang) and names the rank.
#[test]
fn malformed_pmi_fails_the_job_and_names_the_rank() {
    let script = r#"printf 'cmd=init pmi_version=1 pmi_subversion=1\n' >&$PMI_FD; read -r r <&$PMI_FD
                    printf 'cmd=put kvsname=x novalue\n' >&$PMI_FD; sleep 5"#;
    let out = run(gangway().args(["run", "-n", "2", "bash", "-c", script]));
    assert_eq!(out.code(), 120, "{}", out.stderr);
    assert!(out.stderr.contains("sent a malformed PMI message"), "{}", out.stderr);
    assert!(out.stderr.contains("`novalue` has no `=`"), "{}", out.stderr);
}
