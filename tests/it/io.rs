//! Output, input and environment of the ranks.

use std::collections::BTreeMap;

use crate::support::{gangway, program, run, run_with_input, scratch};

#[test]
fn label_prefixes_every_line_with_its_rank() {
    let out =
        run(gangway().args(["run", "-n", "3", "-l", "sh", "-c", "echo a; echo b >&2; echo c"]));
    out.assert_success();
    assert_eq!(out.sorted_lines(), ["0: a", "0: c", "1: a", "1: c", "2: a", "2: c"]);
    let mut err: Vec<&str> = out.stderr.lines().collect();
    err.sort_unstable();
    assert_eq!(err, ["0: b", "1: b", "2: b"]);
}

/// Each line is written in three pieces by four ranks at once; none may be torn apart,
/// and the unterminated last line of each rank must come out whole on a line of its own.
#[test]
fn lines_of_different_ranks_never_mix() {
    let lines = program("lines");
    for label in [false, true] {
        let mut cmd = gangway();
        cmd.args(["run", "-n", "4"]);
        if label {
            cmd.arg("-l");
        }
        let out = run(cmd.arg(&lines).args(["200", "--partial"]));
        out.assert_success();
        let mut per_rank = BTreeMap::new();
        for line in out.stdout.lines() {
            let body = if label {
                let (prefix, body) = line.split_once(": ").expect("labelled");
                assert!(
                    body.starts_with(&format!("rank {prefix} ")),
                    "label/rank mismatch: {line}"
                );
                body
            } else {
                line
            };
            let mut words = body.split(' ');
            assert_eq!(words.next(), Some("rank"), "torn line: {line:?}");
            let rank: u32 = words.next().unwrap().parse().unwrap();
            match words.next() {
                Some("line") => {
                    let _index: u32 = words.next().unwrap().parse().unwrap();
                    let payload = words.next().unwrap();
                    let c = (b'a' + rank as u8 % 26) as char;
                    assert!(
                        payload.len() == 120 && payload.chars().all(|x| x == c),
                        "torn line: {line:?}"
                    );
                    assert_eq!(words.next(), None, "two lines glued: {line:?}");
                    *per_rank.entry(rank).or_insert(0) += 1;
                }
                Some("partial") => assert_eq!(words.next(), None, "partial line glued: {line:?}"),
                _ => panic!("torn line: {line:?}"),
            }
        }
        assert_eq!(
            per_rank.into_iter().collect::<Vec<_>>(),
            [(0, 200), (1, 200), (2, 200), (3, 200)]
        );
        assert_eq!(out.stdout.matches("partial").count(), 4);
    }
}

#[test]
fn single_rank_output_passes_through_unchanged() {
    let out = run(gangway().args(["run", "printf", "no newline"]));
    out.assert_success();
    assert_eq!(out.stdout, "no newline");
}

#[test]
fn output_patterns_per_rank_and_shared() {
    let dir = scratch();
    let out = run(gangway().args(["run", "-n", "3", "-D"]).arg(dir.path()).args([
        "-o",
        "out-%j-%t.txt",
        "-e",
        "err-%2t.txt",
        "sh",
        "-c",
        "echo out $GANGWAY_RANK; echo err $GANGWAY_RANK >&2",
    ]));
    out.assert_success();
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 6, "{names:?}");
    assert_eq!(&names[..3], ["err-00.txt", "err-01.txt", "err-02.txt"]);
    let job = names[3].trim_start_matches("out-").split('-').next().unwrap().to_string();
    for rank in 0..3 {
        let o = std::fs::read_to_string(dir.path().join(format!("out-{job}-{rank}.txt"))).unwrap();
        assert_eq!(o, format!("out {rank}\n"));
        let e = std::fs::read_to_string(dir.path().join(format!("err-0{rank}.txt"))).unwrap();
        assert_eq!(e, format!("err {rank}\n"));
    }

    // Without %t all ranks share one file, and stderr follows stdout there.
    let shared = dir.path().join("all.txt");
    let out = run(gangway().args(["run", "-n", "4", "-l", "-o"]).arg(&shared).args([
        "sh",
        "-c",
        "echo o; echo e >&2",
    ]));
    out.assert_success();
    let text = std::fs::read_to_string(&shared).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["0: e", "0: o", "1: e", "1: o", "2: e", "2: o", "3: e", "3: o"]);
}

#[test]
fn stdin_goes_to_rank_0_by_default() {
    let input = b"line one\nline two\n";
    let out = run_with_input(gangway().args(["run", "-n", "3", "-l", "cat"]), Some(input));
    out.assert_success();
    assert_eq!(out.sorted_lines(), ["0: line one", "0: line two"]);

    let out =
        run_with_input(gangway().args(["run", "-n", "3", "-l", "--input=all", "cat"]), Some(input));
    out.assert_success();
    assert_eq!(out.sorted_lines().len(), 6);

    let out =
        run_with_input(gangway().args(["run", "-n", "3", "-l", "--input=2", "cat"]), Some(input));
    assert_eq!(out.sorted_lines(), ["2: line one", "2: line two"]);

    let out =
        run_with_input(gangway().args(["run", "-n", "2", "--input=none", "cat"]), Some(input));
    out.assert_success();
    assert!(out.stdout.is_empty());
}

fn rank_env(out: &str, rank: u32) -> BTreeMap<String, String> {
    let prefix = format!("{rank}: ");
    out.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn ranks_get_their_job_variables_and_never_pmi_version() {
    let out = run(gangway()
        .args(["run", "-n", "2", "-l", "env"])
        .env("PMI_VERSION", "2")
        .env("PMI_FD", "99"));
    out.assert_success();
    let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
    for rank in 0..2u32 {
        let env = rank_env(&out.stdout, rank);
        let get = |k: &str| {
            env.get(k).map(String::as_str).unwrap_or_else(|| panic!("rank {rank} lacks {k}"))
        };
        assert_eq!(get("GANGWAY_RANK"), rank.to_string());
        assert_eq!(get("GANGWAY_SIZE"), "2");
        assert_eq!(get("GANGWAY_LOCAL_RANK"), rank.to_string());
        assert_eq!(get("GANGWAY_LOCAL_SIZE"), "2");
        assert_eq!(get("GANGWAY_NODE_ID"), "0");
        assert_eq!(get("GANGWAY_NNODES"), "1");
        assert_eq!(get("GANGWAY_NODELIST"), host);
        assert_eq!(get("PMI_RANK"), rank.to_string());
        assert_eq!(get("PMI_SIZE"), "2");
        assert_eq!(get("MPI_LOCALRANKID"), rank.to_string());
        assert_eq!(get("MPI_LOCALNRANKS"), "2");
        assert_eq!(get("PMI_JOBID"), get("GANGWAY_JOB_ID"));
        assert_ne!(get("PMI_FD"), "99", "inherited PMI_FD must be replaced");
        assert!(!env.contains_key("PMI_VERSION") && !env.contains_key("PMI_SUBVERSION"));
        assert!(env.contains_key("PATH"));
    }
}

#[test]
fn export_policies() {
    let out = run(gangway()
        .args(["run", "-l", "--export=NONE,FOO=bar", "/usr/bin/env"])
        .env("KEEP", "x"));
    out.assert_success();
    let env = rank_env(&out.stdout, 0);
    assert_eq!(env.get("FOO").map(String::as_str), Some("bar"));
    assert!(!env.contains_key("KEEP") && !env.contains_key("PATH"));
    assert!(env.contains_key("GANGWAY_RANK"));

    let out = run(gangway().args(["run", "-l", "--export=KEEP", "/usr/bin/env"]).env("KEEP", "x"));
    let env = rank_env(&out.stdout, 0);
    assert_eq!(env.get("KEEP").map(String::as_str), Some("x"));
    assert!(!env.contains_key("PATH"));
}

#[test]
fn chdir_sets_the_ranks_working_directory() {
    let dir = scratch();
    let out = run(gangway().args(["run", "-n", "2", "-D"]).arg(dir.path()).arg("pwd"));
    out.assert_success();
    let want = dir.path().canonicalize().unwrap();
    for line in out.stdout.lines() {
        assert_eq!(std::path::Path::new(line).canonicalize().unwrap(), want);
    }
}

/// Regression: the launcher ignores SIGPIPE (Rust does), which must not leak into the ranks.
#[test]
fn ranks_get_the_default_sigpipe_action() {
    let script = "yes | head -1; grep SigIgn /proc/self/status";
    // Whatever this test harness itself ignores reaches gangway; SIGPIPE must not reach ranks.
    let out = run(gangway().args(["run", "-n", "2", "-l", "sh", "-c", script]));
    out.assert_success();
    assert!(!out.stderr.contains("Broken pipe"), "{}", out.stderr);
    let sigpipe_bit = 1u64 << (libc_sigpipe() - 1);
    for rank in 0..2 {
        assert!(out.stdout.contains(&format!("{rank}: y\n")), "{}", out.stdout);
        let ignored = out
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{rank}: SigIgn:\t")))
            .map(|mask| u64::from_str_radix(mask, 16).unwrap())
            .unwrap();
        assert_eq!(ignored & sigpipe_bit, 0, "rank {rank} ignores SIGPIPE: {ignored:x}");
    }
}

fn libc_sigpipe() -> u32 {
    nix::sys::signal::Signal::SIGPIPE as u32
}
