//! Open MPI programs (PMIx) under `gangway run`: locally, across virtual nodes, as a managed
//! step; their failures; MPICH and Open MPI side by side with `--mpi=auto`; a node without
//! libpmix. Real Open MPI 4.1 and libpmix 4.2 (Debian's `openmpi-bin`, `libpmix2`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::controlled::{Managed, Setup};
use crate::support::{
    Finished, VCluster, gangway, node_visible_dir, openmpi_program, program, run,
};

/// Every rank greets once, rank 0 reports the right allreduce sum (examples/hello.c).
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
    assert!(stdout.contains("barrier passed") && stdout.contains("allreduce ok"), "{stdout}");
}

/// A private backing directory for one job's Open MPI shared-memory segments (btl/vader's
/// `vader_segment.*` files, normally straight in /dev/shm), so that what this job leaves behind
/// is told apart from the segments of jobs other tests run at the same time. Removed when
/// dropped.
struct SegmentDir(PathBuf);

impl SegmentDir {
    /// On /dev/shm itself, for a job on this machine.
    fn new(test: &str) -> SegmentDir {
        SegmentDir::under(std::path::Path::new("/dev/shm"), test)
    }

    /// In `parent`: the virtual nodes each have their own /dev/shm, so a job across them needs
    /// a directory they all see.
    fn under(parent: &std::path::Path, test: &str) -> SegmentDir {
        let dir = parent.join(format!("gangway-it-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // Like /dev/shm: the virtual nodes run the ranks as another user.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        SegmentDir(dir)
    }

    /// The variable that points the job's Open MPI ranks at this directory.
    fn env(&self) -> (&'static str, &std::path::Path) {
        ("OMPI_MCA_btl_vader_backing_directory", &self.0)
    }

    /// Open MPI registers each segment with the PMIx server for clean-up; the job, however it
    /// ended, must have left none.
    fn assert_empty(&self, out: &Finished) {
        let left: Vec<_> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(left.is_empty(), "the job left {left:?} in {}\n{}", self.0.display(), out.stderr);
    }
}

impl Drop for SegmentDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn open_mpi_hello_at_1_2_4_ranks_with_pmix_and_auto() {
    let Some(hello) = openmpi_program("hello") else { return };
    for (n, mpi) in [(1, "pmix"), (2, "pmix"), (4, "pmix"), (4, "auto")] {
        let out = run(gangway().args(["run", "-n", &n.to_string(), "--mpi", mpi]).arg(&hello));
        out.assert_success();
        check_hello(&out.stdout, n);
        assert!(!out.stderr.contains("warning"), "{}", out.stderr);
    }
}

/// Without PMIx an Open MPI program runs as N singletons, and the warning says what to do.
#[test]
fn open_mpi_without_pmix_is_n_singletons_with_a_warning() {
    let Some(hello) = openmpi_program("hello") else { return };
    let out = run(gangway().args(["run", "-n", "2", "--mpi=pmi2"]).arg(&hello));
    out.assert_success();
    assert_eq!(out.stdout.matches("hello from rank 0 of 1 on").count(), 2, "{}", out.stdout);
    assert!(
        out.stderr.contains("links Open MPI") && out.stderr.contains("--mpi=pmix"),
        "{}",
        out.stderr
    );
}

#[test]
fn open_mpi_abort_stops_the_job_with_its_code() {
    let Some(hello) = openmpi_program("hello") else { return };
    let segments = SegmentDir::new("abort");
    let (var, dir) = segments.env();
    let out = run(gangway()
        .args(["run", "-n", "4", "--mpi=pmix"])
        .arg(&hello)
        .args(["--abort", "7", "--abort-rank", "2"])
        .env(var, dir));
    assert_eq!(out.code(), 7, "{}", out.stderr);
    assert!(out.stderr.contains("rank 2 called MPI_Abort with code 7"), "{}", out.stderr);
    segments.assert_empty(&out);
}

/// A rank killed mid-run: the others, blocked in a barrier, are stopped; nothing hangs.
#[test]
fn a_killed_open_mpi_rank_ends_the_job_without_hanging() {
    let Some(killed) = openmpi_program("killed") else { return };
    let segments = SegmentDir::new("killed");
    let (var, dir) = segments.env();
    let start = Instant::now();
    let out = run(gangway().args(["run", "-n", "4", "--mpi=pmix"]).arg(&killed).env(var, dir));
    assert_eq!(out.code(), 128 + 9, "{}", out.stderr);
    assert!(out.stderr.contains("rank 3"), "{}", out.stderr);
    assert!(start.elapsed() < Duration::from_secs(20), "took {:?}", start.elapsed());
    segments.assert_empty(&out);
}

/// A rank that leaves with 0 but without MPI_Finalize fails the job as with PMI-1/2 (120).
#[test]
fn an_open_mpi_rank_exiting_without_finalize_fails_the_job() {
    let Some(prog) = openmpi_program("mpi_no_finalize") else { return };
    let segments = SegmentDir::new("no-finalize");
    let (var, dir) = segments.env();
    let out = run(gangway()
        .args(["run", "-n", "3", "--mpi=pmix"])
        .arg(&prog)
        .args(["1", "0"])
        .env(var, dir));
    assert_eq!(out.code(), 120, "{}", out.stderr);
    assert!(out.stderr.contains("rank 1 exited without calling MPI_Finalize"), "{}", out.stderr);
    segments.assert_empty(&out);
}

#[test]
fn mpi4py_allreduce_over_pmix() {
    if openmpi_program("hello").is_none() {
        return;
    }
    let python = "/usr/bin/python3";
    let has = std::process::Command::new(python).args(["-c", "import mpi4py"]).output();
    if !has.is_ok_and(|o| o.status.success()) {
        assert!(std::env::var_os("GANGWAY_REQUIRE_PMIX").is_none(), "python3-mpi4py missing");
        eprintln!("SKIPPED: Debian's mpi4py is not installed (apt-get install python3-mpi4py)");
        return;
    }
    let script = crate::support::repo_root().join("pmix/tests/programs/allreduce.py");
    let out = run(gangway().args(["run", "-n", "3", "--mpi=pmix", python]).arg(&script));
    out.assert_success();
    for r in 0..3 {
        assert!(out.stdout.contains(&format!("mpi4py {r}/3 sum=3")), "{}", out.stdout);
    }
}

/// One `gangway run` flag for every MPI: with `--mpi=auto` an MPICH program
/// wires up through PMI-1/2 and an Open MPI one through PMIx.
#[test]
fn mpich_and_open_mpi_programs_both_run_with_mpi_auto() {
    let Some(ompi) = openmpi_program("hello") else { return };
    let mpich = program("hello");
    for prog in [&mpich, &ompi] {
        let out = run(gangway().args(["run", "-n", "3", "--mpi=auto"]).arg(prog));
        out.assert_success();
        check_hello(&out.stdout, 3);
        assert!(!out.stderr.contains("warning"), "{}", out.stderr);
    }
}

/// A node without libpmix: a PMIx job fails at once naming the package; PMI-1/2 jobs, and
/// `auto` ones, are not affected.
#[test]
fn without_libpmix_pmix_jobs_fail_clearly_and_pmi2_jobs_run() {
    let mpich = program("hello");
    let missing = "/nonexistent/libpmix.so.2";
    let out = run(gangway()
        .args(["run", "-n", "2", "--mpi=pmix"])
        .arg(&mpich)
        .env("GANGWAY_PMIX_LIBRARY", missing));
    assert_ne!(out.code(), 0);
    assert!(out.stderr.contains("libpmix2") && out.stderr.contains(missing), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "no rank may start: {}", out.stdout);
    for mpi in ["pmi2", "auto"] {
        let out = run(gangway()
            .args(["run", "-n", "2", "--mpi", mpi])
            .arg(&mpich)
            .env("GANGWAY_PMIX_LIBRARY", missing));
        out.assert_success();
        check_hello(&out.stdout, 2);
    }
}

/// The Open MPI hello where every virtual node can run it.
fn staged_hello() -> Option<PathBuf> {
    staged("hello")
}

/// An Open MPI program where every virtual node can run it.
fn staged(name: &str) -> Option<PathBuf> {
    let built = openmpi_program(name)?;
    let staged = node_visible_dir().join(format!("bin/{name}-openmpi"));
    // Copied once: tests running at the same time may be executing it (ETXTBSY).
    if !staged.exists() {
        std::fs::copy(&built, &staged).unwrap();
        let _ = std::process::Command::new("chmod").arg("a+rx").arg(&staged).status();
    }
    Some(staged)
}

/// What `names_across` prints when every step went as expected, with `last` its last rank.
fn check_names_across(stdout: &str, n: u32) {
    let last = n - 1;
    for line in [
        "0: publish ok".to_owned(),
        format!("{last}: lookup ok port-across-{}", n * 7),
        format!("{last}: unpublish by another rank refused"),
        "0: duplicate publish refused".to_owned(),
        "0: unpublish ok".to_owned(),
        format!("{last}: lookup after unpublish not found"),
        format!("names across ok ({n} ranks)"),
    ] {
        assert!(stdout.lines().any(|l| l == line), "missing '{line}':\n{stdout}");
    }
}

/// MPI_Publish_name, MPI_Lookup_name, MPI_Unpublish_name on one node (the node's own table).
#[test]
fn open_mpi_names_on_one_node() {
    let Some(prog) = openmpi_program("names_across") else { return };
    let out = run(gangway().args(["run", "-n", "3", "--mpi=pmix"]).arg(&prog));
    out.assert_success();
    check_names_across(&out.stdout, 3);
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);
}

#[test]
fn open_mpi_across_three_nodes_fences_through_the_proxy_tree() {
    let Some(hello) = staged_hello() else { return };
    let Some(vc) = VCluster::up(3) else { return };
    for ppn in [1u32, 4] {
        let n = 3 * ppn;
        // Twelve Open MPI ranks poll busily on this machine's two cores beside the other tests:
        // a roomier ping timeout keeps this test about fences, not about an overloaded host.
        let out = run(vc
            .gangway_run()
            .args(["--hosts", &vc.hosts(), "--mpi=pmix", "-n", &n.to_string()])
            .args(["--ping-timeout", "10s"])
            .args(["--ntasks-per-node", &ppn.to_string()])
            .arg(&hello));
        out.assert_success();
        check_hello(&out.stdout, n);
        for rank in 0..n {
            let line = format!("hello from rank {rank} of {n} on node{}", rank / ppn + 1);
            assert!(out.stdout.lines().any(|l| l == line), "missing '{line}':\n{}", out.stdout);
        }
    }
    // Open MPI's lazy wire-up: remote ranks' data by direct modex, through the root.
    let out = run(vc
        .gangway_run()
        .args(["--hosts", &vc.hosts(), "-n", "6", "-vv", "--mpi=pmix"])
        .arg(&hello)
        .env("OMPI_MCA_pmix_base_async_modex", "1")
        .env("OMPI_MCA_pmix_base_collect_data", "0"));
    out.assert_success();
    check_hello(&out.stdout, 6);
    assert!(out.stderr.contains("PMIx direct modex"), "{}", out.stderr);
    // A name published on node1 is found on node3 through the root's table; only node1's rank
    // may unpublish it.
    let Some(names) = staged("names_across") else { return };
    let out = run(vc
        .gangway_run()
        .args(["--hosts", &vc.hosts(), "-n", "3", "--mpi=pmix", "-vv"])
        .arg(&names));
    out.assert_success();
    check_names_across(&out.stdout, 3);
    assert!(out.stderr.contains("rank 0 publishes [\"gangway-across-3\"]"), "{}", out.stderr);
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);
    // A rank killed on one node ends the job everywhere.
    let Some(killed) = openmpi_program("killed") else { return };
    let staged = node_visible_dir().join("bin/killed-openmpi");
    std::fs::copy(&killed, &staged).unwrap();
    let _ = std::process::Command::new("chmod").arg("a+rx").arg(&staged).status();
    // Each node's server removes its ranks' shared-memory segments.
    let segments = SegmentDir::under(node_visible_dir(), "killed-across");
    let (var, dir) = segments.env();
    let out = run(vc
        .gangway_run()
        .args(["--hosts", &vc.hosts(), "-n", "6", "--mpi=pmix"])
        .arg(&staged)
        .env(var, dir));
    assert_eq!(out.code(), 128 + 9, "{}", out.stderr);
    segments.assert_empty(&out);
}

#[test]
fn open_mpi_step_in_a_managed_batch_job() {
    let Some(hello) = staged_hello() else { return };
    let Some(m) = Managed::up(3) else { return };
    let script = format!(
        "#!/bin/sh\n#SBATCH -N 3\n#SBATCH --ntasks=6\n#SBATCH --mpi=pmix\necho mpi=$GANGWAY_MPI\n{} run {}\n",
        m.gangway_bin().display(),
        hello.display()
    );
    let path = m.dir.join("ompi.sh");
    std::fs::write(&path, script).unwrap();
    let id = m.submit(&[path.to_str().unwrap()]);
    m.wait_done(&[id], Duration::from_secs(60));
    let out = m.output_of(id);
    for r in 0..6 {
        assert!(out.contains(&format!("hello from rank {r} of 6 on node{}", r / 2 + 1)), "{out}");
    }
    assert!(out.contains("allreduce sum = 21 (expected 21)"), "{out}");
    // The directive reached the step as its default.
    assert!(out.contains("mpi=pmix"), "{out}");
    assert_eq!(m.job(id)["exit_code"], 0, "{out}");
}

#[test]
fn the_clusters_default_mpi_reaches_jobs_that_choose_none() {
    let Some(hello) = staged_hello() else { return };
    let setup = Setup { config: "mpi_default = \"pmix\"".into(), ..Setup::default() };
    let Some(m) = Managed::up_with(3, setup) else { return };
    // A batch job that names no MPI kind: its script and the step inside it get the site's.
    let script = |directive: &str| {
        format!(
            "#!/bin/sh\n#SBATCH -N 3\n#SBATCH --ntasks=6\n{directive}\necho mpi=$GANGWAY_MPI\n{} run {}\n",
            m.gangway_bin().display(),
            hello.display()
        )
    };
    let site = m.dir.join("site-default.sh");
    std::fs::write(&site, script("")).unwrap();
    // One that chooses pmi2 itself: the Open MPI ranks then get no PMIx, with the warning (they run
    // as singletons, or stop in MPI_Init when they see SLURM_* variables, as under srun).
    let own = m.dir.join("own-choice.sh");
    std::fs::write(&own, script("#SBATCH --mpi=pmi2")).unwrap();
    let submit = |path: &std::path::Path| {
        let out = m
            .cli()
            .env_remove("GANGWAY_MPI")
            .args(["batch", "--parsable"])
            .arg(path)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().parse::<u64>().unwrap()
    };
    let (site_id, own_id) = (submit(&site), submit(&own));
    m.wait_done(&[site_id, own_id], Duration::from_secs(90));
    let out = m.output_of(site_id);
    assert!(out.contains("mpi=pmix"), "{out}");
    check_hello(&out, 6);
    assert_eq!(m.job(site_id)["exit_code"], 0, "{out}");
    let out = m.output_of(own_id);
    assert!(out.contains("mpi=pmi2"), "{out}");
    assert!(no_pmix_reached(&out), "no PMIx expected:\n{out}");
    assert!(!out.contains("of 6 on"), "no PMIx expected:\n{out}");
    assert!(out.contains("--mpi=pmix or --mpi=auto"), "the singleton warning:\n{out}");
    // `gangway run` as a job of its own takes the default from its grant; --mpi still wins.
    let ran =
        run(m.cli().env_remove("GANGWAY_MPI").args(["run", "-N", "3", "-n", "6"]).arg(&hello));
    ran.assert_success();
    check_hello(&ran.stdout, 6);
    let ran = run(m
        .cli()
        .env_remove("GANGWAY_MPI")
        .args(["run", "-N", "3", "-n", "6", "--mpi=pmi2"])
        .arg(&hello));
    let both = format!("{}{}", ran.stdout, ran.stderr);
    assert!(no_pmix_reached(&both) && !both.contains("of 6 on"), "{both}");
    assert!(ran.stderr.contains("singleton"), "{}", ran.stderr);
}

/// Open MPI ranks that received no PMIx: singletons, or (seeing SLURM_* variables, as under
/// `srun --mpi=pmi2`) a refusal in MPI_Init.
fn no_pmix_reached(out: &str) -> bool {
    out.contains("hello from rank 0 of 1 on") || out.contains("direct launched using \"srun\"")
}
