//! Real Open MPI programs under the PMIx server, on this machine: `gangway-pmix-host` (the
//! test host in `src/bin`) starts the server, registers a job of N ranks, starts them with the
//! environment from `setup_fork` and serves their events.
//!
//! Needs Debian's `openmpi-bin`, `libopenmpi-dev` and `libpmix2` (and `python3-mpi4py` for the
//! mpi4py test). Without them each test skips, loudly; with `GANGWAY_REQUIRE_PMIX=1` (CI) a
//! skip is a failure instead.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking; that is their job"
)]

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
        for name in ["hello", "abort", "killed", "spawn", "names"] {
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
    host_with(args, program, &[])
}

fn host_with(args: &[&str], program: &[&str], env: &[(&str, &Path)]) -> Run {
    let start = Instant::now();
    let Output { status, stdout, stderr } = Command::new(HOST)
        .args(args)
        .arg("--")
        .args(program)
        .envs(env.iter().copied())
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

/// The variable that puts a job's Open MPI shared-memory segments in `segments`, and a check
/// that none is left there: Open MPI registers each with the server for clean-up
/// (`PMIx_Job_control`), which libpmix does when the namespace is deregistered, however the
/// ranks ended.
const SEGMENT_DIR: &str = "OMPI_MCA_btl_vader_backing_directory";

fn assert_no_segments_left(segments: &Path) {
    let left: Vec<_> = std::fs::read_dir(segments)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let _ = std::fs::remove_dir_all(segments);
    assert!(left.is_empty(), "the job left {left:?} in {}", segments.display());
}

#[test]
fn mpi_abort_reaches_the_host_with_its_status() {
    let Some(dir) = programs() else { return };
    let segments = shm_dir(dir, "abort");
    let run = host_with(
        &["-n", "2", "--timeout", "60"],
        &[dir.join("abort").to_str().unwrap()],
        &[(SEGMENT_DIR, &segments)],
    );
    assert!(run.stderr.contains(":0: status 3"), "an Abort event with status 3 from rank 0");
    assert!(run.stderr.contains("rank 0 called abort with status 3"));
    assert_eq!(run.code, Some(3), "the job's status is the abort's");
    assert_no_segments_left(&segments);
}

#[test]
fn a_killed_rank_is_reported_lost_and_the_others_do_not_hang() {
    let Some(dir) = programs() else { return };
    // Only PMIx's view may stop this job: the host ignores the rank's exit itself.
    let segments = shm_dir(dir, "killed");
    let run = host_with(
        &["-n", "4", "--timeout", "60", "--pmix-events-only"],
        &[dir.join("killed").to_str().unwrap()],
        &[(SEGMENT_DIR, &segments)],
    );
    assert!(run.stderr.contains("client lost gangway-host-"), "the owner saw the client go");
    assert!(run.stderr.contains("PMIx lost rank 3 before it finalized"));
    assert_eq!(run.code, Some(1), "a failure, not a timeout");
    assert!(run.took < Duration::from_secs(30), "took {:?}", run.took);
    assert_no_segments_left(&segments);
}

#[test]
fn mpi_comm_spawn_is_refused_and_the_owner_told_why() {
    let Some(dir) = programs() else { return };
    let run = host(&["-n", "1", "--timeout", "60"], &[dir.join("spawn").to_str().unwrap()]);
    assert_eq!(run.stdout, "spawn failed\n", "the rank's MPI_Comm_spawn returned an error");
    assert!(run.stderr.contains("asked to spawn [\"/bin/true\"]"), "a SpawnRefused event");
    assert_eq!(run.code, Some(0), "and the rank went on to finalize");
}

#[test]
fn publish_lookup_and_unpublish_go_through_the_owner() {
    let Some(dir) = programs() else { return };
    let run = host(&["-n", "2", "--timeout", "60"], &[dir.join("names").to_str().unwrap()]);
    assert_eq!(run.code, Some(0));
    assert_eq!(sorted_lines(&run.stdout), vec!["lookup ok port-A", "publish ok", "unpublish ok"]);
    assert!(run.stderr.contains(":0 published gangway-svc"), "a Publish event");
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

/// Plays the launcher's root for `--nodes` hosts: each fence, reads one frame from every node
/// (kind 1, u32 LE length, data), then sends every node the concatenation (kind 2). Returns
/// the size of each fence's total data once all nodes hung up.
fn fence_root(listener: std::os::unix::net::UnixListener, nodes: usize) -> Vec<usize> {
    use std::io::{Read, Write};
    // Bounded waits everywhere: a node host that died early must fail the test, not hang it.
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut conns = Vec::new();
    while conns.len() < nodes {
        match listener.accept() {
            Ok((conn, _)) => {
                conn.set_nonblocking(false).unwrap();
                conn.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                conns.push(conn);
            }
            #[expect(clippy::disallowed_methods, reason = "a plain test thread polling a file")]
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("only {} of {nodes} nodes connected: {e}", conns.len()),
        }
    }
    let mut fences = Vec::new();
    'fences: loop {
        let mut all = Vec::new();
        for conn in &mut conns {
            let mut head = [0u8; 5];
            if conn.read_exact(&mut head).is_err() {
                break 'fences;
            }
            assert_eq!(head[0], 1, "a fence-up frame");
            let mut data = vec![0u8; u32::from_le_bytes(head[1..].try_into().unwrap()) as usize];
            conn.read_exact(&mut data).unwrap();
            all.extend(data);
        }
        let mut frame = vec![2u8];
        frame.extend_from_slice(&u32::try_from(all.len()).unwrap().to_le_bytes());
        frame.extend_from_slice(&all);
        for conn in &mut conns {
            conn.write_all(&frame).unwrap();
        }
        fences.push(all.len());
    }
    fences
}

/// A fresh directory for one job's (or pretend node's) Open MPI shared-memory segments.
fn shm_dir(dir: &Path, name: &str) -> PathBuf {
    let d = dir.join(format!("shm-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn two_servers_exchange_fence_data_like_two_nodes() {
    let Some(dir) = programs() else { return };
    let socket = dir.join(format!("root-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&socket);
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let root = std::thread::spawn(move || fence_root(listener, 2));
    let nspace = format!("gangway-two-nodes-{}", std::process::id());
    let hello = dir.join("hello");
    let segments: Vec<PathBuf> = (0..2).map(|node| shm_dir(dir, &format!("node{node}"))).collect();
    let nodes: Vec<_> = (0..2u32)
        .map(|node| {
            Command::new(HOST)
                .args(["-n", "4", "--nodes", "2", "--node", &node.to_string(), "--timeout", "60"])
                .arg("--root")
                .arg(&socket)
                .args(["--nspace", &nspace, "--"])
                .arg(&hello)
                // Ranks on different pretend nodes talk TCP: keep it on loopback.
                .env("OMPI_MCA_btl_tcp_if_include", "lo")
                // Open MPI names its shared-memory segments after the host name, job and local
                // rank, which the two pretend nodes share: give each node its own directory,
                // as real nodes have their own /dev/shm.
                .env(SEGMENT_DIR, &segments[node as usize])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<Output> = nodes.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    let fences = root.join().unwrap();
    let _ = std::fs::remove_file(&socket);
    for d in &segments {
        let _ = std::fs::remove_dir_all(d);
    }
    let mut lines = Vec::new();
    for (node, out) in outputs.iter().enumerate() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!(
            "--- node {node}: {:?}\n{}{stderr}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(out.status.success(), "node {node}");
        // Open MPI fences the whole namespace (one wildcard process) and collects the modex.
        assert!(stderr.contains("fence of 1 proc(s), collect=true"), "the modex went to the host");
        assert!(stderr.contains("fence released with"), "and came back through the root");
        assert!(
            stderr.lines().any(|l| l.contains("direct modex of") && l.ends_with(" bytes")),
            "Server::dmodex_request returned the rank's blob"
        );
        lines.extend(sorted_lines(&String::from_utf8_lossy(&out.stdout)));
    }
    lines.sort();
    assert_eq!(lines, (0..4).map(|r| format!("hello from {r}/4 sum=6")).collect::<Vec<_>>());
    eprintln!("fences through the root, total bytes each: {fences:?}");
    assert!(fences.first().is_some_and(|&n| n > 0), "the first fence carried both nodes' data");
}
