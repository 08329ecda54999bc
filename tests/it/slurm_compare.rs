//! Side by side with Debian's Slurm: the same unedited batch scripts run under Slurm (real
//! `sbatch`/`srun`/`squeue`, `benches/slurm-vcluster.sh` on the virtual cluster) and under gangway
//! (its Slurm-named links) on the same three nodes, and what each printed must agree once what
//! has to differ is normalised (job ids, times). The accepted differences are named here and in
//! docs/slurm.md ("Beside Slurm"); anything else that differs fails the test. Cases of several
//! jobs (an array, a dependency pipeline) are driver scripts that submit, wait and print.
//!
//! Accepted besides the variables named below: sacct's `Reason` (Slurm's is the last reason a job
//! waited for as slurmdbd got it, `Dependency` even for a job then cancelled for
//! `DependencyNeverSatisfied`; gangway's the reason at its end), printed but not compared.
//!
//! Without Slurm installed the test skips loudly; `GANGWAY_REQUIRE_SLURM=1` (CI) fails instead.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::controlled::{Managed, text};
use crate::support::{ofi_hello, repo_root};

/// One line per case: its name and its script. `@HELLO@` and `@LIB@` are the MPICH wheel's hello
/// program and libraries (the same text goes to both systems). Each script is submitted as
/// `sbatch --parsable -o NAME.out -e NAME.err NAME.sh` from a work directory of its own per system.
const CASES: &[(&str, &str)] = &[
    ("env", ENV),
    ("mpi", MPI),
    ("hybrid", HYBRID),
    ("farm", FARM),
    ("label", LABEL),
    ("timeout", TIMEOUT),
];

const ENV: &str = r#"#!/bin/bash
#SBATCH --job-name=envcase
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=2
env | grep '^SLURM_' | sort
[ "$SLURM_TASK_PID" = "$$" ] && echo "SLURM_TASK_PID is the script's pid"
srun -l env | grep -E '^[0-9]+: SLURM_' | sort
"#;

const MPI: &str = r#"#!/bin/bash
#SBATCH -N 3
#SBATCH --ntasks-per-node=1
export LD_LIBRARY_PATH=@LIB@
export MPIR_CVAR_CH4_NETMOD=ofi FI_PROVIDER=tcp
srun --mpi=pmi2 @HELLO@ | sort
"#;

const HYBRID: &str = r#"#!/bin/bash
#SBATCH -N 2
#SBATCH --ntasks-per-node=1
#SBATCH -c 2
export OMP_NUM_THREADS=$SLURM_CPUS_PER_TASK
echo "script omp=$OMP_NUM_THREADS cpt=$SLURM_CPUS_PER_TASK"
srun bash -c 'echo "rank $SLURM_PROCID of $SLURM_NTASKS on $(hostname) omp=$OMP_NUM_THREADS cpt=$SLURM_CPUS_PER_TASK"' | sort
"#;

const FARM: &str = r#"#!/bin/bash
#SBATCH -n 4
for i in 1 2 3 4; do
  srun --exact -n1 -c1 bash -c 'echo "step $SLURM_STEP_ID of $SLURM_STEP_NUM_TASKS task(s)"' >farm-$i.txt &
done
wait
cat farm-*.txt | sort
"#;

const LABEL: &str = r#"#!/bin/bash
#SBATCH -N 2
#SBATCH -n 4
srun -l hostname | sort
srun -l -n 2 --exact bash -c 'echo "rank $SLURM_PROCID local $SLURM_LOCALID node $SLURM_NODEID"' | sort
"#;

const TIMEOUT: &str = r#"#!/bin/bash
#SBATCH -J limit
#SBATCH -t 1
#SBATCH --signal=B:USR1@30
trap 'echo "caught USR1"' USR1
squeue -h -j $SLURM_JOB_ID -o '%i|%T|%j|%D|%C|%P'
echo started
while true; do sleep 1; done
"#;

/// Cases of several jobs: one line per case, its name and a driver script that `bash` runs in a
/// work directory of its own per system, with that system's commands first in `PATH`. The driver
/// writes and submits the jobs, waits for them (`ended`, from [`DRIVER_PRELUDE`]) and prints what
/// is compared, with the job ids it got replaced by their names.
const DRIVERS: &[(&str, &str)] = &[("array", ARRAY), ("deps", DEPS)];

/// `ended COUNT IDS`: waits until `sacct` lists COUNT jobs (or array tasks) of IDS, all ended. A
/// job counts once its record has a partition (see [`Env::ended`] on slurmdbd's early records).
const DRIVER_PRELUDE: &str = r#"set -u
ended() {
  for _ in $(seq 600); do
    s=$(sacct -X -n -P -j "$2" --format=Partition,State)
    n=$(printf '%s\n' "$s" | grep -c .)
    e=$(printf '%s\n' "$s" | grep -cE '^[^|]+[|](COMPLETED|FAILED|CANCELLED|TIMEOUT)')
    if [ "$n" = "$1" ] && [ "$e" = "$1" ]; then return; fi
    sleep 0.2
  done
  echo "not ended after 120 s: $s" >&2
  exit 1
}
"#;

/// A throttled array: each task prints its `SLURM_ARRAY_*` and when it started and ended; the
/// driver prints the tasks' files and outputs, whether the tasks' own times show at most 2 at
/// once, and the tasks' accounting; then an array one at a time cancelled while its first task
/// runs: how sacct shows the started task and the two that never started.
const ARRAY: &str = r#"cat >array.sh <<'EOF'
#!/bin/bash
#SBATCH --array=1-4%2
#SBATCH -o out_%A_%a.txt
echo "start $(date +%s.%N)"
env | grep '^SLURM_ARRAY_' | sort
sleep 2
echo "end $(date +%s.%N)"
EOF
A=$(sbatch --parsable array.sh)
ended 4 "$A"
ls out_* | sed "s/_${A}_/_A_/"
for i in 1 2 3 4; do
  echo "task $i:"
  grep -v -e '^start ' -e '^end ' "out_${A}_$i.txt" | sed "s/=$A\$/=A/"
done
most=$(cat out_* | awk '/^start /{print $2, 1} /^end /{print $2, -1}' | sort -k1,1n -k2,2n |
  awk '{n += $2; if (n > m) m = n} END {print m}')
echo "most at once: $most" >&2
[ "$most" -le 2 ] && echo "throttle held: at most 2 at once"
sacct -X -P -j "$A" --format=JobID,State,ExitCode | sed "s/^${A}_/A_/" | sort
printf '#!/bin/bash\n#SBATCH --array=1-3%%1\n#SBATCH -o /dev/null\nexec sleep 60\n' >long.sh
L=$(sbatch --parsable long.sh)
for _ in $(seq 300); do
  [ -n "$(squeue -h -j "$L" -t RUNNING -o %i)" ] && break
  sleep 0.2
done
scancel "$L"
ended 2 "$L"
sacct -X -P -j "$L" --format=JobID,State | sed "s/^${L}_/L_/" | sort
"#;

/// A pipeline: `b` after `ok` succeeded, `c` after `fail` failed, `d` after `fail` succeeded
/// with `--kill-on-invalid-dep=yes` (cancelled), `e` the same without it (left waiting, then
/// cancelled by the driver). Each job's output says what it found done when it ran.
const DEPS: &str = r#"job() { printf '#!/bin/bash\n%s\n' "$2" >"$1.sh"; }
job ok 'sleep 1; touch ok.done; echo "ok ran"'
job fail 'sleep 1; echo "fail ran"; exit 3'
job b '[ -e ok.done ] && echo "b ran after ok"'
job c 'echo "c ran after: $(cat fail.out)"'
job d 'echo "d ran"'
job e 'echo "e ran"'
sub() { n=$1; shift; sbatch --parsable -J "$n" -o "$n.out" "$@" "$n.sh"; }
A=$(sub ok)
F=$(sub fail)
B=$(sub b -d "afterok:$A")
C=$(sub c -d "afternotok:$F")
D=$(sub d -d "afterok:$F" --kill-on-invalid-dep=yes)
E=$(sub e -d "afterok:$F")
ended 5 "$A,$F,$B,$C,$D"
squeue -h -j "$E" -o '%j|%T|%r'
scancel "$E"
ended 6 "$A,$F,$B,$C,$D,$E"
for n in ok fail b c d e; do echo "$n.out: $(cat "$n.out" 2>/dev/null || echo none)"; done
sacct -X -P -j "$A,$F,$B,$C,$D,$E" --format=JobName,State,ExitCode
sacct -X -P -j "$A,$F,$B,$C,$D,$E" --format=JobName,Reason >&2
"#;

/// `SLURM_*` variables only Slurm sets, and why gangway does not (docs/slurm.md says the same).
const ONLY_SLURM: &[&str] = &[
    // Not set by Slurm: inherited from the submitting shell (gangway's is GANGWAY_CONTROLLER).
    "SLURM_CONF",
    // Slurm's internals: node aliases for cloud nodes, the submitter's nice value, the network
    // topology plugin's address, the controller's address and protocol version for clients.
    "SLURM_NODE_ALIASES",
    "SLURM_PRIO_PROCESS",
    "SLURM_TOPOLOGY_ADDR",
    "SLURM_TOPOLOGY_ADDR_PATTERN",
    "SLURM_WORKING_CLUSTER",
    // srun's own plumbing: the ports and address slurmstepd calls back on, srun's options
    // passed on to its tasks, and the launch node's address.
    "SLURM_STEP_LAUNCHER_PORT",
    "SLURM_SRUN_COMM_HOST",
    "SLURM_SRUN_COMM_PORT",
    "SLURM_LAUNCH_NODE_IPADDR",
    "SLURM_UMASK",
    "SLURM_DISTRIBUTION",
    "SLURM_CPU_BIND",
    "SLURM_CPU_BIND_LIST",
    "SLURM_CPU_BIND_TYPE",
    "SLURM_CPU_BIND_VERBOSE",
    "SLURM_LABELIO",
    "SLURM_EXPORT_ENV",
    // Heterogeneous jobs' per-component copy (Slurm's old name for het job components).
    "SLURM_JOB_CPUS_PER_NODE_PACK_GROUP_0",
];

/// `SLURM_*` variables only gangway sets.
const ONLY_GANGWAY: &[&str] = &[
    // Slurm sets them from the job's association; the Slurm here keeps accounting (slurmdbd)
    // but has no accounts or users in it, while gangway's scheduler always charges an account
    // and a QOS.
    "SLURM_JOB_ACCOUNT",
    "SLURM_JOB_QOS",
    // Newer Slurm (23.02 and later) sets it; 22.05 does not.
    "SLURM_JOB_NUM_TASKS",
];

/// Variables whose values differ by nature: process ids, and job ids (checked against the job).
const OWN_VALUES: &[&str] = &["SLURM_TASK_PID", "SLURM_JOB_ID", "SLURM_JOBID"];

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum System {
    Slurm,
    Gangway,
}

/// Slurm on the cluster's nodes; taken down on drop (before the cluster itself).
struct SlurmUp {
    prefix: String,
    conf: String,
}

impl Drop for SlurmUp {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("benches/slurm-vcluster.sh"))
            .args(["--prefix", &self.prefix, "down"])
            .stdin(Stdio::null())
            .output();
    }
}

/// Debian's Slurm with its accounting daemon and a database for it.
fn slurm_installed() -> bool {
    let daemons = ["slurmctld", "slurmd", "munged", "slurmdbd", "mariadbd"];
    daemons.iter().all(|d| Path::new("/usr/sbin").join(d).exists())
        && Path::new("/usr/bin/sbatch").exists()
}

/// What a finished job left: its output files and its system's accounting of it.
#[derive(Debug)]
struct Ran {
    name: &'static str,
    id: u64,
    stdout: String,
    stderr: String,
    /// The job's line and its steps' as `sacct -P` prints them.
    sacct: String,
}

#[test]
fn the_same_scripts_print_the_same_under_slurm_and_gangway() {
    if !slurm_installed() {
        let why = "Debian's Slurm is not installed (apt-get install slurm-wlm munge slurmdbd mariadb-server)";
        assert!(
            std::env::var_os("GANGWAY_REQUIRE_SLURM").is_none(),
            "GANGWAY_REQUIRE_SLURM: {why}"
        );
        eprintln!("SKIPPED: {why}: the side-by-side comparison with Slurm did not run");
        return;
    }
    let Some((hello, lib)) = ofi_hello() else { return };
    let Some(m) = Managed::up(3) else { return };
    let started = Instant::now();
    let slurm = slurm_up(&m);
    eprintln!("slurm and gangway up on vcluster {} in {:?}", m.vc.prefix, started.elapsed());

    let gangway_path = m.slurm_path();

    let work = |s: System| m.dir.join(format!("work-{s:?}").to_lowercase());
    let scripts: Vec<(&'static str, String)> = CASES
        .iter()
        .map(|(name, script)| {
            let text = script
                .replace("@HELLO@", &hello.display().to_string())
                .replace("@LIB@", &lib.display().to_string());
            (*name, text)
        })
        .collect();
    // Each system runs the cases one after the other (the nodes a job gets depend on what else
    // runs), and the two systems side by side.
    let env = Env { m: &m, slurm: &slurm, gangway_path };
    let (slurm_ran, gangway_ran) = std::thread::scope(|scope| {
        let one = |s: System| {
            let env = &env;
            let scripts = &scripts;
            let work = &work;
            scope.spawn(move || {
                std::fs::create_dir_all(work(s)).unwrap();
                let mut ran: Vec<Ran> =
                    scripts.iter().map(|(name, text)| env.run(s, &work(s), name, text)).collect();
                ran.extend(DRIVERS.iter().map(|(name, text)| env.drive(s, &work(s), name, text)));
                ran
            })
        };
        let a = one(System::Slurm);
        let b = one(System::Gangway);
        (a.join(), b.join())
    });
    let (slurm_ran, gangway_ran) = match (slurm_ran, gangway_ran) {
        (Ok(a), Ok(b)) => (a, b),
        (a, b) => {
            let why = |r: &std::thread::Result<Vec<Ran>>| match r {
                Err(e) => e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default(),
                Ok(_) => "ok".into(),
            };
            panic!("Slurm: {}\ngangway: {}\n{}", why(&a), why(&b), m.logs());
        }
    };
    eprintln!("all jobs of both systems done after {:?}", started.elapsed());
    let mut differences = Vec::new();
    for (a, b) in slurm_ran.iter().zip(&gangway_ran) {
        let na = normalise(a, &work(System::Slurm));
        let nb = normalise(b, &work(System::Gangway));
        if na != nb {
            differences.push(format!(
                "case {}:\n--- Slurm (job {}), normalised:\n{na}\n--- gangway (job {}), normalised:\n{nb}\n--- Slurm raw:\n{}{}\n--- gangway raw:\n{}{}",
                a.name, a.id, b.id, a.stdout, a.stderr, b.stdout, b.stderr
            ));
        }
    }
    assert!(differences.is_empty(), "{}\n{}", differences.join("\n\n"), m.logs());
    // The comparison is only worth something if the scripts did their work.
    let case = |name: &str| gangway_ran.iter().find(|r| r.name == name).unwrap();
    assert!(case("timeout").sacct.contains("|TIMEOUT|"), "{:?}", case("timeout"));
    assert!(case("timeout").stdout.contains("caught USR1"), "{:?}", case("timeout"));
    assert!(case("mpi").stdout.contains("allreduce ok"), "{:?}", case("mpi"));
    assert!(case("array").stdout.contains("throttle held"), "{:?}", case("array"));
    assert!(case("deps").stdout.contains("b.out: b ran after ok"), "{:?}", case("deps"));
    eprintln!("compared {} cases in {:?}", CASES.len() + DRIVERS.len(), started.elapsed());
}

/// Starts Slurm on `m`'s nodes with gangway's partition and cluster names, so that
/// `SLURM_JOB_PARTITION`, `SLURM_CLUSTER_NAME` and squeue's `%P` can be compared as they are.
fn slurm_up(m: &Managed) -> SlurmUp {
    let out = Command::new(repo_root().join("benches/slurm-vcluster.sh"))
        .args(["--prefix", &m.vc.prefix, "--partition", "batch", "--cluster", "it"])
        // Slurm's default starts batch jobs at most every 3 s.
        .args(["--sched-params", "batch_sched_delay=0", "--accounting", "up"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let up = SlurmUp {
        prefix: m.vc.prefix.clone(),
        conf: format!("/run/gangway-slurm/{}/slurm.conf", m.vc.prefix),
    };
    assert!(out.status.success(), "slurm-vcluster.sh up: {}", text(&out));
    up
}

/// What a client command of either system needs.
struct Env<'a> {
    m: &'a Managed,
    slurm: &'a SlurmUp,
    gangway_path: String,
}

impl Env<'_> {
    /// A Slurm command of system `s`, found through `PATH` as a user's shell finds it, with the
    /// submitting shell's environment less what would point either system elsewhere.
    fn command(&self, s: System, name: &str) -> Command {
        let mut c = Command::new(name);
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if k.starts_with("SLURM_") || k.starts_with("GANGWAY_") || k.starts_with("SBATCH_") {
                c.env_remove(k.as_ref());
            }
        }
        match s {
            System::Slurm => c
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("SLURM_CONF", &self.slurm.conf),
            System::Gangway => c
                .env("PATH", &self.gangway_path)
                .env("GANGWAY_CONTROLLER", self.m.dir.join("ctl.sock")),
        };
        c.stdin(Stdio::null());
        c
    }

    /// Submits one case's script from `work` and waits for the job's end.
    fn run(&self, s: System, work: &Path, name: &'static str, script: &str) -> Ran {
        std::fs::write(work.join(format!("{name}.sh")), script).unwrap();
        let out = self
            .command(s, "sbatch")
            .current_dir(work)
            .args(["--parsable", "-o", &format!("{name}.out"), "-e", &format!("{name}.err")])
            .arg(format!("{name}.sh"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{s:?} sbatch {name}: {}", text(&out));
        let id: u64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .split(';')
            .next()
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("{s:?} sbatch {name}: {}", text(&out)));
        let deadline = Instant::now() + Duration::from_secs(150);
        loop {
            if self.ended(s, id) {
                break;
            }
            assert!(Instant::now() < deadline, "{s:?} job {id} ({name}) not done after 150 s");
            std::thread::sleep(Duration::from_millis(200));
        }
        // Output reaches the files before the job's end is recorded, on both.
        let read = |ext: &str| {
            std::fs::read_to_string(work.join(format!("{name}.{ext}"))).unwrap_or_default()
        };
        Ran { name, id, stdout: read("out"), stderr: read("err"), sacct: self.sacct(s, id, &[]) }
    }

    /// Runs a driver in a directory of its own under `work`; it waits for its jobs itself.
    fn drive(&self, s: System, work: &Path, name: &'static str, driver: &str) -> Ran {
        let dir = work.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("driver.sh"), format!("{DRIVER_PRELUDE}{driver}")).unwrap();
        let out = self.command(s, "bash").current_dir(&dir).arg("driver.sh").output().unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        eprintln!("{s:?} {name}:\n{stdout}{stderr}");
        assert!(out.status.success(), "{s:?} driver {name}: {}", text(&out));
        Ran { name, id: 0, stdout, stderr, sacct: String::new() }
    }

    /// `sacct -P -j ID --format=SACCT` of system `s`, with `more` flags.
    fn sacct(&self, s: System, id: u64, more: &[&str]) -> String {
        let out = self
            .command(s, "sacct")
            .args(["-P", "-j", &id.to_string(), &format!("--format={SACCT}")])
            .args(more)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whether the job has ended by its system's `sacct`. A short job's record in slurmdbd
    /// may come from its steps' before its own start record (no partition yet, the name
    /// `allocation`): then its end is not taken as the record.
    fn ended(&self, s: System, id: u64) -> bool {
        let job = self.sacct(s, id, &["-X", "-n"]);
        let fields: Vec<&str> = job.trim().split('|').collect();
        let (partition, state) = (fields.get(2).unwrap_or(&""), fields.get(3).unwrap_or(&""));
        !partition.is_empty()
            && !state.is_empty()
            && !matches!(*state, "PENDING" | "RUNNING" | "REQUEUED" | "SUSPENDED" | "COMPLETING")
    }
}

/// The accounting fields compared (sacct's documented names).
const SACCT: &str = "JobID,JobName,Partition,State,ExitCode,NNodes,NTasks,AllocCPUS,NodeList";

/// What must agree, as text: the output with times and this job's id replaced, the `SLURM_*`
/// lines reduced to their names (by scope: the script, or task N of `srun -l`) and to the values
/// that must match, the stderr lines Slurm's own notices make, and the end.
fn normalise(r: &Ran, work: &Path) -> String {
    let id = r.id.to_string();
    let line_fix = |l: &str| {
        let l = l.replace(&work.display().to_string(), "WORK");
        let l = without_times(&l);
        let l = l.replace(&format!("*** JOB {id} ON "), "*** JOB ID ON ");
        // Debian builds Slurm for several slurmd per host, which names the node in the prefix.
        let l = match l.split_once(": error: ***") {
            Some((p, rest)) if p.starts_with("slurmstepd-") => {
                format!("slurmstepd: error: ***{rest}")
            }
            _ => l,
        };
        match l.strip_prefix(&format!("{id}|")) {
            Some(rest) => format!("ID|{rest}"),
            None => l,
        }
    };
    let mut out = Vec::new();
    for l in r.stdout.lines() {
        let (scope, rest) = match l.split_once(": ") {
            Some((n, rest)) if n.parse::<u32>().is_ok() => (format!("task {n}"), rest),
            _ => ("script".to_string(), l),
        };
        if let Some((k, v)) = rest.split_once('=').filter(|(k, _)| k.starts_with("SLURM_")) {
            if ONLY_SLURM.contains(&k) || ONLY_GANGWAY.contains(&k) {
                continue;
            }
            if OWN_VALUES.contains(&k) {
                // A job id must be this job's; a PID a number.
                let ok = if k.contains("JOB") { v == id } else { v.parse::<u32>().is_ok() };
                out.push(format!("{scope}: {k} {}", if ok { "ok" } else { v }));
            } else {
                out.push(format!("{scope}: {k}={}", line_fix(v)));
            }
            continue;
        }
        out.push(line_fix(l));
    }
    for l in r.stderr.lines().filter(|l| l.contains("*** JOB")) {
        out.push(format!("stderr: {}", line_fix(l)));
    }
    // Steps by where they ran, without their numbers: which of several concurrent steps is
    // numbered first, and so where it goes, is a matter of timing on both.
    let mut steps = Vec::new();
    for l in r.sacct.lines() {
        let Some(rest) = l.strip_prefix(&id) else {
            out.push(format!("sacct: {l}"));
            continue;
        };
        match rest.strip_prefix('.').and_then(|r| r.split_once('|')) {
            Some((step, fields)) if step.parse::<u32>().is_ok() => {
                steps.push(format!("sacct: ID.step|{fields}"))
            }
            _ => out.push(format!("sacct: ID{rest}")),
        }
    }
    steps.sort();
    out.extend(steps);
    out.join("\n")
}

/// `2026-12-06T15:52:51` → `TIME`.
fn without_times(l: &str) -> String {
    let shape = b"dddd-dd-ddTdd:dd:dd";
    let b = l.as_bytes();
    let mut s = String::new();
    let mut i = 0;
    while i < b.len() {
        let fits = b.len() - i >= shape.len()
            && shape.iter().zip(&b[i..]).all(
                |(p, c)| {
                    if *p == b'd' { c.is_ascii_digit() } else { p == c }
                },
            );
        if fits {
            s.push_str("TIME");
            i += shape.len();
        } else {
            let ch = l[i..].chars().next().unwrap();
            s.push(ch);
            i += ch.len_utf8();
        }
    }
    s
}
