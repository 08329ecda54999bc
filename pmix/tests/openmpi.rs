//! Real Open MPI programs under the PMIx server, on this machine: `gangway-pmix-host` (the
//! test host in `src/bin`) starts the server, registers a job of N ranks, starts them with the
//! environment from `setup_fork` and serves their events.
//!
//! Needs Debian's `openmpi-bin`, `libopenmpi-dev` and `libpmix2` (and `python3-mpi4py` for the
//! mpi4py test). Without them each test skips, loudly; with `GANGWAY_REQUIRE_PMIX=1` (CI) a
//! skip is a failure instead.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const HOST: &str = env!("CARGO_BIN_EXE_gangway-pmix-host");

fn skip(why: &str) {
    if std::env::var_os("GANGWAY_REQUIRE_PMIX").is_some() {
        panic!("GANGWAY_REQUIRE_PMIX is set but {why}");
    }
    eprintln!("SKIPPED: {why}");
}

/// The test programs built with `mpicc.openmpi`, once per test binary; `None` (after a loud
/// skip) when Open MPI or libpmix is missing.
fn programs() -> Option<&'static Path> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        if gangway_pmix_sys::load().is_err() {
            return Err("libpmix cannot be loaded (install libpmix2)".into());
        }
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs");
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pmix-openmpi");
        std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
        for name in ["hello", "abort", "killed"] {
            let status = Command::new("mpicc.openmpi")
                .arg("-O1")
                .arg("-o")
                .arg(out.join(name))
                .arg(src.join(format!("{name}.c")))
                .status()
                .map_err(|e| format!("mpicc.openmpi not runnable ({e}): install libopenmpi-dev"))?;
            if !status.success() {
                return Err(format!("mpicc.openmpi failed on {name}.c"));
            }
        }
        Ok(out)
    });
    match built {
        Ok(dir) => Some(dir.as_path()),
        Err(why) => {
            skip(why);
            None
        }
    }
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

fn host(args: &[&str], program: &[&str]) -> Run {
    let start = Instant::now();
    let Output { status, stdout, stderr } = Command::new(HOST)
        .args(args)
        .arg("--")
        .args(program)
        .output()
        .expect("run gangway-pmix-host");
    let run = Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        took: start.elapsed(),
    };
    eprintln!("--- host {args:?} {program:?}: {:?} in {:?}", run.code, run.took);
    eprintln!("{}{}", run.stdout, run.stderr);
    run
}

fn sorted_lines(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s.lines().map(str::to_owned).collect();
    v.sort();
    v
}

#[test]
fn hello_allreduce_and_barrier_at_1_2_and_4_ranks() {
    let Some(dir) = programs() else { return };
    let hello = dir.join("hello");
    for n in [1u32, 2, 4] {
        let run = host(&["-n", &n.to_string(), "--timeout", "60"], &[hello.to_str().unwrap()]);
        assert_eq!(run.code, Some(0), "{n} ranks");
        let sum: u32 = (0..n).sum();
        let mut want: Vec<String> =
            (0..n).map(|r| format!("hello from {r}/{n} sum={sum}")).collect();
        want.sort();
        assert_eq!(sorted_lines(&run.stdout), want, "{n} ranks, each once, right sum");
        for r in 0..n {
            assert!(run.stderr.contains(&format!(":{r}\n")), "rank {r} connected");
        }
        assert_eq!(run.stderr.matches("pmix-host: finalized ").count(), n as usize);
        assert!(run.stderr.contains(&format!("all {n} ranks finalized and exited")));
    }
}

#[test]
fn mpi_abort_reaches_the_host_with_its_status() {
    let Some(dir) = programs() else { return };
    let run = host(&["-n", "2", "--timeout", "60"], &[dir.join("abort").to_str().unwrap()]);
    assert!(run.stderr.contains(":0: status 3"), "an Abort event with status 3 from rank 0");
    assert!(run.stderr.contains("rank 0 called abort with status 3"));
    assert_eq!(run.code, Some(3), "the job's status is the abort's");
}

#[test]
fn a_killed_rank_is_reported_lost_and_the_others_do_not_hang() {
    let Some(dir) = programs() else { return };
    // Only PMIx's view may stop this job: the host ignores the rank's exit itself.
    let run = host(
        &["-n", "4", "--timeout", "60", "--pmix-events-only"],
        &[dir.join("killed").to_str().unwrap()],
    );
    assert!(run.stderr.contains("client lost gangway-host-"), "the owner saw the client go");
    assert!(run.stderr.contains("PMIx lost rank 3 before it finalized"));
    assert_eq!(run.code, Some(1), "a failure, not a timeout");
    assert!(run.took < Duration::from_secs(30), "took {:?}", run.took);
}

#[test]
fn mpi4py_allreduce() {
    let Some(_) = programs() else { return };
    let python = "/usr/bin/python3";
    let has_mpi4py = Command::new(python)
        .args(["-c", "import mpi4py"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !has_mpi4py {
        skip("Debian's mpi4py is not installed (apt-get install python3-mpi4py)");
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/allreduce.py");
    let run = host(&["-n", "3", "--timeout", "90"], &[python, script.to_str().unwrap()]);
    assert_eq!(run.code, Some(0));
    assert_eq!(
        sorted_lines(&run.stdout),
        vec!["mpi4py 0/3 sum=3", "mpi4py 1/3 sum=3", "mpi4py 2/3 sum=3"]
    );
}

#[test]
fn without_libpmix_the_host_fails_with_the_package_name() {
    let Some(dir) = programs() else { return };
    let out = Command::new(HOST)
        .env(gangway_pmix_sys::LIBRARY_ENV, "libpmix-not-installed.so.2")
        .args(["-n", "2", "--", dir.join("hello").to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("install the libpmix2 package"), "{stderr}");
    assert!(out.stdout.is_empty(), "no rank was started");
}
