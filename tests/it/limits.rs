//! Time limits and signals as Slurm does them, on a virtual cluster: a batch job over its time
//! limit ends TIMEOUT with Slurm's notice after its `--signal=B:` trap ran; a cancelled job's
//! notice; `--open-mode=append`.

use std::time::Duration;

use crate::controlled::{Managed, Setup, text};
use crate::support::wait_until;

#[test]
fn time_limit_signal_trap_notice_and_open_mode() {
    // The mail program: a script that appends its arguments to a file.
    let mail_dir = crate::support::scratch();
    let mailed = mail_dir.path().join("mailed");
    let program = mail_dir.path().join("mail");
    let body = format!("#!/bin/sh\necho \"$*\" >> {}\n", mailed.display());
    std::fs::write(&program, body).unwrap();
    std::fs::set_permissions(&program, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .unwrap();
    let setup = Setup {
        config: format!(
            "mail_program = \"{}\"\n[node.node2]\nfeatures = [\"bigmem\", \"ib\"]\n",
            program.display()
        ),
        ..Setup::default()
    };
    let Some(m) = Managed::up_with(2, setup) else { return };

    // The trap runs 3 s before the 6 s limit, while the script's child keeps running; at the
    // limit the script dies of TERM and the job is TIMEOUT, not FAILED 143.
    let script = m.dir.join("trap.sh");
    std::fs::write(
        &script,
        "#!/bin/bash\n#SBATCH --time=0:06\n#SBATCH --signal=B:USR1@3\n\
         #SBATCH --mail-type=BEGIN,FAIL,TIME_LIMIT_50 --mail-user=ann@example.org\n\
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
    wait_until("three mails", Duration::from_secs(5), || {
        std::fs::read_to_string(&mailed).unwrap_or_default().lines().count() == 3
    });
    let mails = std::fs::read_to_string(&mailed).unwrap();
    let lines: Vec<&str> = mails.lines().collect();
    let name = format!("-s Slurm Job_id={id} Name=trap.sh");
    assert!(lines[0].starts_with(&format!("{name} Began, Queued time 00:00:0")), "{mails}");
    assert!(
        lines[1].starts_with(&format!("{name} Reached 50% of time limit, Run time 00:00:0")),
        "{mails}"
    );
    assert!(lines[2].starts_with(&format!("{name} Failed, Run time 00:00:0")), "{mails}");
    assert!(lines[2].ends_with(", TIMEOUT, ExitCode 143 ann@example.org"), "{mails}");

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

    // --constraint places on the node with the features; one no node has is refused.
    let id = m.submit(&["-C", "bigmem&ib", "--wrap", "hostname"]);
    m.wait_done(&[id], Duration::from_secs(20));
    assert_eq!(m.output_of(id).trim(), "node2");
    let out = m.cli_out(&["batch", "--constraint=gpu|a100", "--wrap", "true"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("--constraint=gpu|a100: no node has these features"),
        "{}",
        text(&out)
    );

    // --begin: pending with BeginTime, then started no earlier than asked.
    let id = m.submit(&["--begin=now+3", "--comment", "run 7 of the sweep", "--wrap", "true"]);
    let shown = text(&m.cli_out(&["show", "job", &id.to_string()]));
    assert!(shown.contains("   Comment=run 7 of the sweep"), "{shown}");
    wait_until("the job pending with BeginTime", Duration::from_secs(2), || {
        let job = m.job(id);
        job["state"] == "PENDING" && job["reason"] == "BeginTime"
    });
    m.wait_done(&[id], Duration::from_secs(20));
    let job = m.job(id);
    let waited = job["start_time"].as_u64().unwrap() - job["submit_time"].as_u64().unwrap();
    assert!((2_500..6_000).contains(&waited), "started {waited} ms after submission: {job}");
}

fn write(m: &Managed, name: &str, text: &str) -> std::path::PathBuf {
    let path = m.dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}
