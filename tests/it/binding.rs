//! Rank placement and binding: on this machine (visible in /proc), and planned for the
//! real-machine hwloc exports with `--dry-run`.

use crate::support::{gangway, repo_root, run};

fn export(name: &str) -> String {
    repo_root().join("topology/tests/data").join(name).display().to_string()
}

fn allowed_cpus(stdout: &str, rank: u32) -> String {
    let prefix = format!("{rank}: Cpus_allowed_list:\t");
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("rank {rank}:\n{stdout}"))
        .to_string()
}

fn machine_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

#[test]
fn ranks_are_bound_to_their_own_cores_by_default() {
    let n = machine_cpus().min(4) as u32;
    let script = "grep Cpus_allowed_list /proc/self/status; echo \"env: $GANGWAY_CPUS\"";
    let out = run(gangway().args(["run", "-l", "-n", &n.to_string(), "sh", "-c", script]));
    out.assert_success();
    let mut seen = Vec::new();
    for rank in 0..n {
        let cpus = allowed_cpus(&out.stdout, rank);
        assert!(
            !cpus.contains(',') && !cpus.contains('-'),
            "rank {rank} has more than one CPU: {cpus}"
        );
        assert!(
            out.stdout.contains(&format!("{rank}: env: {cpus}\n")),
            "GANGWAY_CPUS differs:\n{}",
            out.stdout
        );
        assert!(!seen.contains(&cpus), "two ranks share CPU {cpus}");
        seen.push(cpus);
    }
}

#[test]
fn oversubscribed_ranks_stay_unbound_unless_asked() {
    let n = (machine_cpus() + 1).to_string();
    let out = run(gangway().args([
        "run",
        "-l",
        "-n",
        &n,
        "sh",
        "-c",
        "grep Cpus_allowed_list /proc/self/status",
    ]));
    out.assert_success();
    let all = allowed_cpus(&out.stdout, 0);
    for rank in 1..=machine_cpus() as u32 {
        assert_eq!(allowed_cpus(&out.stdout, rank), all);
    }
    // Insisting on cores without --oversubscribe cannot work: a clear error, nothing started.
    let out = run(gangway().args(["run", "-n", &n, "--cpu-bind=cores", "echo", "started"]));
    assert_eq!(out.code(), 121, "{}", out.stderr);
    assert!(
        out.stderr.contains("lower --ntasks or --cpus-per-task, or add --oversubscribe"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty());
    let out = run(gangway().args(["run", "-n", &n, "--cpu-bind=cores", "--oversubscribe", "true"]));
    out.assert_success();
}

#[test]
fn explicit_none_and_omp_threads() {
    let out = run(gangway().args([
        "run",
        "--cpu-bind=none",
        "-c",
        "2",
        "sh",
        "-c",
        "grep Cpus_allowed_list /proc/self/status; echo omp=$OMP_NUM_THREADS",
    ]));
    out.assert_success();
    assert!(out.stdout.contains("omp=2"), "{}", out.stdout);
    // Unbound: the rank keeps every CPU this process may use.
    let ours = std::fs::read_to_string("/proc/self/status").unwrap();
    let ours = ours.lines().find(|l| l.starts_with("Cpus_allowed_list:")).unwrap();
    assert!(out.stdout.contains(ours), "expected '{ours}' in:\n{}", out.stdout);
    let out = run(gangway()
        .args(["run", "sh", "-c", "echo omp=$OMP_NUM_THREADS"])
        .env("OMP_NUM_THREADS", "7"));
    assert_eq!(out.stdout, "omp=7\n", "a set OMP_NUM_THREADS is kept");
}

#[test]
fn memory_binding_shows_in_numa_maps() {
    let out = run(gangway().args([
        "run",
        "--mem-bind=local",
        "sh",
        "-c",
        "head -1 /proc/self/numa_maps; echo mem=$GANGWAY_MEM_NODES",
    ]));
    out.assert_success();
    assert!(out.stdout.contains(" bind:0 "), "{}", out.stdout);
    assert!(out.stdout.contains("mem=0"), "{}", out.stdout);
}

/// `--dry-run` maps for real machines, as users will read them.
#[test]
fn dry_run_maps_of_real_machines() {
    let cases: &[(&str, &[&str])] = &[
        ("16em64t-4s2c2t.xml", &["-n", "8"]),
        ("16em64t-4s2c2t.xml", &["-n", "4", "-c", "2", "--mem-bind=local"]),
        ("16em64t-4s2c2t.xml", &["-n", "16", "--cpu-bind=threads", "-m", "block:block"]),
        ("16amd64-8n2c-cpusets.xml", &["-n", "6", "--cpu-bind=numa"]),
        ("16amd64-8n2c-cpusets.xml", &["-n", "12"]),
        ("24em64t-2n6c2t-pci.xml", &["-n", "4", "-c", "3", "--cpu-bind=cores", "--mem-bind=local"]),
        ("24em64t-2n6c2t-pci.xml", &["-n", "2", "--cpu-bind=sockets", "-m", "cyclic:cyclic"]),
        ("64intel64-fakeKNL-SNC4-hybrid.xml", &["-n", "4", "-c", "4", "--mem-bind=local"]),
        (
            "64intel64-fakeKNL-SNC4-hybrid.xml",
            &["-n", "8", "--hint=nomultithread", "--cpu-bind=l3"],
        ),
    ];
    let mut transcript = String::new();
    for (file, args) in cases {
        let out = run(gangway()
            .args(["run", "--dry-run", "--topology-xml", &export(file)])
            .args(*args)
            .arg("./app"));
        out.assert_success();
        transcript.push_str(&format!(
            "$ gangway run --dry-run --topology-xml {file} {} ./app\n{}\n",
            args.join(" "),
            out.stdout
        ));
    }
    insta::assert_snapshot!(transcript);
}

#[test]
fn dry_run_json_is_machine_readable() {
    let out = run(gangway().args([
        "run",
        "--dry-run",
        "--json",
        "--synthetic",
        "pack:2 numa:2 core:4 pu:2",
        "-n",
        "4",
        "-c",
        "2",
        "./app",
    ]));
    out.assert_success();
    let value: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let ranks = value["ranks"].as_array().unwrap();
    assert_eq!(ranks.len(), 4);
    assert!(ranks.iter().all(|r| r["cpus"].as_str().is_some()), "{}", out.stdout);
}

#[test]
fn topology_command_counts_match_hwloc() {
    let out = run(gangway().args(["topology", "--synthetic", "pack:2 numa:2 core:8 pu:2"]));
    out.assert_success();
    assert!(out.stdout.starts_with("Machine: 2 packages, 4 NUMA nodes"), "{}", out.stdout);
    assert!(out.stdout.contains("32 cores, 64 PUs"), "{}", out.stdout);
    let out = run(gangway().args(["topology"]));
    out.assert_success();
    let cpus = machine_cpus();
    assert!(out.stdout.contains(&format!("{cpus} PUs")), "{}", out.stdout);
    let out = run(gangway().args([
        "topology",
        "--json",
        "--topology-xml",
        &export("24em64t-2n6c2t-pci.xml"),
    ]));
    out.assert_success();
    let value: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(value["cores"].as_array().unwrap().len(), 12);
    assert_eq!(value["pus"].as_array().unwrap().len(), 24);
}

#[test]
fn bad_binding_input_names_the_flag() {
    let cases: &[(&[&str], i32, &str)] = &[
        (&["run", "--cpu-bind=bogus", "true"], 2, "--cpu-bind: unknown binding 'bogus'"),
        (&["run", "--mem-bind=far", "true"], 2, "--mem-bind"),
        (&["run", "-m", "zigzag", "true"], 2, "--distribution"),
        (&["run", "--hint=fast", "true"], 2, "--hint"),
        (&["run", "-c", "0", "true"], 2, "-c/--cpus-per-task must be at least 1"),
        (&["run", "--json", "true"], 2, "--dry-run"),
        (&["run", "--topology-xml", "/x.xml", "true"], 2, "--dry-run"),
        (
            &[
                "run",
                "-n",
                "4",
                "--cpu-bind=map_cpu:0,1,2,3,4",
                "--dry-run",
                "--synthetic",
                "pack:1 core:8 pu:1",
                "true",
            ],
            121,
            "map_cpu lists 5 CPUs for 4 tasks",
        ),
        (
            &["run", "-c", "64", "--dry-run", "--synthetic", "pack:1 core:8 pu:1", "true"],
            121,
            "--cpus-per-task=64 is more than a node has: node 0 allows 8 cores",
        ),
        (&["run", "--dry-run", "--synthetic", "pack:2 banana:3", "true"], 2, "--synthetic"),
        (&["topology", "--synthetic", "pack:0"], 2, "--synthetic"),
    ];
    for (args, code, expect) in cases {
        let out = run(gangway().args(*args));
        assert_eq!(out.code(), *code, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(expect), "{args:?}: expected '{expect}' in:\n{}", out.stderr);
    }
    let dir = crate::support::scratch();
    let bad = dir.path().join("broken.xml");
    std::fs::write(&bad, "<topology><object type=").unwrap();
    let out = run(gangway().arg("topology").arg("--topology-xml").arg(&bad));
    assert_eq!(out.code(), 2, "{}", out.stderr);
    assert!(out.stderr.contains("--topology-xml"), "{}", out.stderr);
}
