//! Typed GPUs end to end: an agent whose hwloc model has a Tesla K40m and an AMD Radeon R9
//! (mixed models on one machine); `sbatch --gres=gpu:k40m:1` gets the K40m, its
//! `CUDA_VISIBLE_DEVICES` says so, `scontrol`/`sinfo`/`squeue` show the types, a step takes the
//! job's typed GPU, and a type no node has is refused at submission naming the types there are.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::controlled::{Managed, Setup, text};

#[test]
fn a_typed_gpu_request_gets_that_model_and_an_unknown_type_is_refused() {
    let xml =
        crate::support::repo_root().join("topology/tests/data/32em64t-2n8c2t-pci-normalio.xml");
    let setup = Setup {
        agent_args: vec!["--topology-xml".into(), xml.display().to_string()],
        ..Default::default()
    };
    let Some(m) = Managed::up_with(1, setup) else { return };
    let path = m.slurm_path();
    let slurm = |command: &str, args: &[&str]| {
        let cli = m.cli();
        Command::new(command)
            .envs(cli.get_envs().filter_map(|(k, v)| Some((k, v?))))
            .env("PATH", &path)
            .env_remove("SLURM_JOB_ID")
            .current_dir(&m.dir)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };

    // The node reports its GPUs by type.
    let sinfo = slurm("sinfo", &["-h", "-o", "%G"]);
    assert_eq!(text(&sinfo).trim(), "gpu:k40m:1,gpu:r9:1", "{}", m.logs());

    // In #SBATCH lines, as a template writes it; a step inside asks for one GPU per task.
    let script = m.dir.join("k40m.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\n#SBATCH --gres=gpu:k40m:1\n#SBATCH --time=5\n\
         echo JOB CUDA=$CUDA_VISIBLE_DEVICES GANGWAY_GPUS=$GANGWAY_GPUS TYPE=$GANGWAY_GPU_TYPE JOB_GPUS=$SLURM_JOB_GPUS\n\
         srun --gpus-per-task=k40m:1 sh -c 'echo STEP CUDA=$CUDA_VISIBLE_DEVICES'\n\
         sleep 2\n",
    )
    .unwrap();
    let sub = slurm("sbatch", &["--parsable", script.to_str().unwrap()]);
    assert!(sub.status.success(), "{}", text(&sub));
    let id: u64 = text(&sub).trim().parse().unwrap();
    crate::support::wait_until("the job to run", Duration::from_secs(20), || {
        m.job(id)["state"] == "RUNNING"
    });
    let node = text(&slurm("scontrol", &["show", "node", "node1"]));
    assert!(node.contains("Gres=gpu:k40m:1,gpu:r9:1"), "{node}");
    assert!(node.contains("GresUsed=gpu:k40m:1,gpu:r9:0"), "{node}");
    assert!(node.contains("gres/gpu=2") && node.contains("AllocTRES=cpu="), "{node}");
    let shown = text(&slurm("scontrol", &["show", "job", &id.to_string()]));
    assert!(shown.contains("TresPerTask=gres/gpu:k40m:1"), "{shown}");
    let queue = text(&slurm("squeue", &["-h", "-o", "%i %b"]));
    assert_eq!(queue.trim(), format!("{id} gres/gpu:k40m:1"), "{queue}");
    m.wait_done(&[id], Duration::from_secs(30));
    let out = m.output_of(id);
    assert_eq!(m.job(id)["state"], "COMPLETED", "{out}\n{}", m.logs());
    // GPU 0 is the K40m in the model (GPU 1 the Radeon): numbered by the machine's index here
    // (the stand-in model's device nodes do not exist, so nothing is confined).
    assert!(out.contains("JOB CUDA=0 GANGWAY_GPUS=0 TYPE=k40m JOB_GPUS=0"), "{out}\n{}", m.logs());
    assert!(out.contains("STEP CUDA=0"), "{out}\n{}", m.logs());

    // The other model by its type; a step asking for another type than the job's is refused.
    let id = m.submit(&[
        "--gpus=R9:1",
        "--wrap",
        &format!(
            "echo CUDA=$CUDA_VISIBLE_DEVICES; {} run --gpus-per-task=k40m:1 true; echo step=$?",
            m.gangway_bin().display()
        ),
    ]);
    m.wait_done(&[id], Duration::from_secs(30));
    let out = m.output_of(id);
    assert!(out.contains("CUDA=1\n"), "{out}\n{}", m.logs());
    assert!(out.contains("the job's GPUs are of type 'r9'") && out.contains("step=2"), "{out}");

    eprintln!("typed GPUs:\n{node}{shown}{queue}{out}");
    // A type no node has: refused at submission, naming it and the types there are.
    let refused = slurm("sbatch", &["--gres=gpu:v100:1", "--wrap", "true"]);
    let said = text(&refused);
    assert_eq!(refused.status.code(), Some(121), "CANNOT_PLACE: {said}");
    assert!(said.contains("type 'v100'") && said.contains("k40m, r9"), "{said}");
}
