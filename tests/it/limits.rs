//! Time limits and signals as Slurm does them, on a virtual cluster: a batch job over its time
//! limit ends TIMEOUT with Slurm's notice after its `--signal=B:` trap ran; a cancelled job's
//! notice; `--open-mode=append`.

use std::time::Duration;

use crate::controlled::{Managed, text};
use crate::support::wait_until;

#[test]
fn time_limit_signal_trap_notice_and_open_mode() {
    let Some(m) = Managed::up(1) else { return };

    // The trap runs 3 s before the 6 s limit, while the script's child keeps running; at the
    // limit the script dies of TERM and the job is TIMEOUT, not FAILED 143.
    let script = m.dir.join("trap.sh");
    std::fs::write(
        &script,
        "#!/bin/bash\n#SBATCH --time=0:06\n#SBATCH --signal=B:USR1@3\n\
         trap 'echo caught USR1 after $SECONDS s' USR1\n\
         echo start\nsleep 30 &\nwait\necho wait ended\nwait\necho never\n",
    )
    .unwrap();
    let id = m.submit(&[script.to_str().unwrap()]);
    m.wait_done(&[id], Duration::from_secs(30));
    let out = m.output_of(id);
    let job = m.job(id);
    eprintln!("job {id}: {} exit {}\n{out}", job["state"], job["exit_code"]);
    assert_eq!(job["state"], "TIMEOUT", "{job}\n{out}");
    let caught = out.lines().find(|l| l.starts_with("caught USR1 after ")).expect(&out);
    let secs: u64 =
        caught.trim_start_matches("caught USR1 after ").trim_end_matches(" s").parse().unwrap();
    assert!((2..=5).contains(&secs), "the warning came 3 s before the 6 s limit: {out}");
    assert!(out.contains("wait ended") && !out.contains("never"), "{out}");
    let notice = out
        .lines()
        .find(|l| l.starts_with(&format!("slurmstepd: error: *** JOB {id} ON node1 CANCELLED AT ")))
        .expect(&out);
    assert!(notice.ends_with(" DUE TO TIME LIMIT ***"), "{notice}");

    // A cancelled job's output says so, without a cause.
    let id = m.submit(&["--wrap", "echo running; sleep 60"]);
    wait_until("the job running", Duration::from_secs(20), || m.output_of(id).contains("running"));
    let out = m.cli_out(&["cancel", &id.to_string()]);
    assert!(out.status.success(), "{}", text(&out));
    m.wait_done(&[id], Duration::from_secs(20));
    wait_until("the notice written", Duration::from_secs(5), || m.output_of(id).contains("***"));
    let out = m.output_of(id);
    assert_eq!(m.job(id)["state"], "CANCELLED");
    let notice = out.lines().find(|l| l.contains("*** JOB")).expect(&out);
    assert!(
        notice.starts_with(&format!("slurmstepd: error: *** JOB {id} ON node1 CANCELLED AT "))
            && !notice.contains("DUE TO"),
        "{notice}"
    );

    // --open-mode=append keeps what the file held; truncate (the default) does not.
    let kept = m.dir.join("kept.out");
    std::fs::write(&kept, "from before\n").unwrap();
    let id =
        m.submit(&["-o", kept.to_str().unwrap(), "--open-mode=append", "--wrap", "echo appended"]);
    m.wait_done(&[id], Duration::from_secs(20));
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), "from before\nappended\n");
    let id = m.submit(&["-o", kept.to_str().unwrap(), "--wrap", "echo fresh"]);
    m.wait_done(&[id], Duration::from_secs(20));
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), "fresh\n");

    // --wait: the command ends with the job, with its exit code; a script from standard input.
    let out = m
        .cli()
        .args(["batch", "--wait", "-o", kept.to_str().unwrap()])
        .stdin(std::fs::File::open(write(&m, "stdin.sh", "#!/bin/sh\n#SBATCH -J piped\necho from stdin as $GANGWAY_JOB_NAME\nsleep 1\nexit 3\n")).unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        text(&out).contains("Submitted batch job") && text(&out).contains("FAILED"),
        "{}",
        text(&out)
    );
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), "from stdin as piped\n");
    let out = m.cli().args(["batch", "-W", "--wrap", "true"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

fn write(m: &Managed, name: &str, text: &str) -> std::path::PathBuf {
    let path = m.dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}
