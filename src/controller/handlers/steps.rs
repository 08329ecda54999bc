//! Steps inside a running job's allocation (`gangway run` with `GANGWAY_JOB_ID`): where a
//! step fits beside the job's other steps, its signed credential, and the steps that wait.

use gangway_containment::mib;
use gangway_topology::CpuSet;

use crate::controller::effects::{ConnId, Effects};
use crate::controller::launch::memory_limit;
use crate::controller::state::{Caller, Cluster, GrantedNode, Job, JobState, Step};
use crate::exit_code;
use crate::protocol::credential::step_credential_text;
use crate::protocol::{GrantNode, Reply, StepGrant, StepMemory, StepRequest};

impl Cluster {
    /// `gangway run` inside an allocation: a step on (part of) it, now or when it fits.
    pub fn step(&mut self, conn: ConnId, caller: &Caller, req: StepRequest, now: u64) -> Effects {
        let error =
            |code, message: String| Effects::reply_and_close(conn, Reply::Error { code, message });
        let Some(job) = self.jobs.get(&req.job) else {
            return error(
                exit_code::USAGE,
                format!("job {} does not exist (is GANGWAY_JOB_ID stale?)", req.job),
            );
        };
        if !caller.may_act_on(job) {
            return error(
                exit_code::PERMISSION_DENIED,
                format!("job {} belongs to {}", job.id, job.user),
            );
        }
        if job.state != JobState::Running {
            return error(
                exit_code::USAGE,
                format!(
                    "job {} is {}, not running; steps run only inside a running job",
                    job.id,
                    job.state.name()
                ),
            );
        }
        match self.place_step(&req) {
            StepFit::Now(cpus) => self.grant_step(conn, &req, cpus, now),
            StepFit::Later => {
                self.waiting_steps.push((conn, caller.clone(), req.clone()));
                let position = self.waiting_steps.len();
                let reason = "StepResources".into();
                Effects::reply(conn, Reply::Waiting { id: req.job, position, reason })
            }
            StepFit::Never(message) => error(exit_code::CANNOT_PLACE, message),
        }
    }

    /// Where a step goes within its job's allocation, given the CPUs other steps use.
    fn place_step(&self, req: &StepRequest) -> StepFit {
        let Some(job) = self.jobs.get(&req.job) else {
            return StepFit::Never("no such job".into());
        };
        // `-w`: the step runs on these nodes of the allocation only (Open MPI's mpirun starts
        // its daemons so, one per node it has not got one on).
        if let Some(n) = req.nodelist.iter().find(|n| !job.granted.iter().any(|g| g.node == **n)) {
            return StepFit::Never(format!("node {n} is not one of job {}'s nodes", job.id));
        }
        let candidates: Vec<&GrantedNode> = job
            .granted
            .iter()
            .filter(|g| req.nodelist.is_empty() || req.nodelist.contains(&g.node))
            .collect();
        let alloc_nodes = candidates.len() as u32;
        let nodes = req.nodes.unwrap_or_else(|| match req.ntasks {
            Some(n) => n.min(alloc_nodes),
            None => alloc_nodes,
        });
        if nodes == 0 || nodes > alloc_nodes {
            return StepFit::Never(format!(
                "the step asks for {nodes} nodes but job {} has {alloc_nodes}",
                job.id
            ));
        }
        let ntasks = req.ntasks.unwrap_or_else(|| {
            if req.nodes.is_some() {
                nodes * req.ntasks_per_node.unwrap_or(1)
            } else {
                job.ntasks()
            }
        });
        if ntasks < nodes {
            return StepFit::Never(format!(
                "-n {ntasks} is less than -N {nodes}: every node of a step runs a task"
            ));
        }
        let cpt = req.cpus_per_task.max(1);
        // Tasks per node, block-wise, as even as possible.
        let per_node: Vec<u32> =
            (0..nodes).map(|i| ntasks / nodes + u32::from(i < ntasks % nodes)).collect();
        if let Some(limit) = req.ntasks_per_node
            && per_node.iter().any(|&n| n > limit)
        {
            return StepFit::Never(format!(
                "-n {ntasks} on {nodes} nodes needs more than --ntasks-per-node={limit}"
            ));
        }
        // A step on fewer nodes than it could use goes to those with room for it first (in the
        // job's order), as Slurm places it: four `srun --exact -n1` run at once on a 2x2-CPU job
        // instead of waiting for the first node's CPUs.
        let mut candidates = candidates;
        if (nodes as usize) < candidates.len() {
            let used_on = |node: &str| -> usize {
                self.steps
                    .iter()
                    .filter(|s| s.job == job.id)
                    .flat_map(|s| s.cpus.iter())
                    .filter(|(n, _)| n == node)
                    .map(|(_, c)| c.len())
                    .sum()
            };
            let want = (per_node[0] * cpt) as usize;
            candidates.sort_by_key(|g| g.cpus.len().saturating_sub(used_on(&g.node)) < want);
            candidates.truncate(nodes as usize);
            candidates.sort_by_key(|g| job.granted.iter().position(|x| x.node == g.node));
        }
        // A step's own memory comes out of its job's on every node it may go to: more is
        // never there, whatever the other steps do (a refusal now, not a wait).
        if let Some(memory) = step_memory(req) {
            for g in &candidates {
                let cpus = (per_node[0] * cpt).min(g.cpus.len() as u32);
                if let Some(refusal) = memory_refusal(memory, cpus, job, g) {
                    return StepFit::Never(refusal);
                }
            }
        }
        let mut chosen = Vec::new();
        let mut any_could = true;
        for (i, g) in candidates.iter().take(nodes as usize).enumerate() {
            let all = g.cpus.clone();
            let want = per_node[i] * cpt;
            if want as usize > all.len() {
                // More tasks than CPUs: they share the node's CPUs (the step cannot bind).
                if self
                    .steps
                    .iter()
                    .any(|s| s.job == job.id && s.cpus.iter().any(|(n, _)| *n == g.node))
                {
                    any_could = false;
                }
                chosen.push((g.node.clone(), all, per_node[i]));
                continue;
            }
            let mut used = CpuSet::new();
            for s in self.steps.iter().filter(|s| s.job == job.id) {
                for (n, c) in &s.cpus {
                    if *n == g.node {
                        used = used.union(c);
                    }
                }
            }
            let free: Vec<u32> = all.difference(&used).iter().collect();
            if free.len() < want as usize {
                any_could = false;
                continue;
            }
            chosen.push((
                g.node.clone(),
                free.into_iter().take(want as usize).collect(),
                per_node[i],
            ));
        }
        if any_could { StepFit::Now(chosen) } else { StepFit::Later }
    }

    fn grant_step(
        &mut self,
        conn: ConnId,
        req: &StepRequest,
        cpus: Vec<(String, CpuSet, u32)>,
        now: u64,
    ) -> Effects {
        let Some(job) = self.jobs.get_mut(&req.job) else { return Effects::new() };
        let step = job.next_step;
        job.next_step += 1;
        let (id, attempt, uid, gid) = (job.id, job.attempt, job.uid, job.gid);
        self.touch_job(id);
        let nodes: Vec<GrantNode> = cpus
            .iter()
            .map(|(n, c, t)| {
                let rec = self.nodes.get(n);
                GrantNode {
                    name: n.clone(),
                    addr: rec.and_then(|r| r.addr.clone()).unwrap_or_else(|| n.clone()),
                    port: rec.map(|r| r.port).unwrap_or(0),
                    cpus: c.clone(),
                    ntasks: *t,
                    memory: step_memory(req).map(|m| m.on_node(c.len() as u32)),
                }
            })
            .collect();
        let text = step_credential_text(id, attempt, step, uid, gid, &nodes);
        let (credential, link_key) = match &self.signer {
            Some(k) => {
                let sealed = k.seal("step", &text);
                let link_key = k.step_psk(&sealed).to_hex();
                (sealed, link_key)
            }
            None => (text, String::new()),
        };
        self.steps.push(Step {
            job: id,
            step,
            conn,
            cpus: cpus.iter().map(|(n, c, _)| (n.clone(), c.clone())).collect(),
        });
        // Where it ran, for sacct's step lines (NodeList, AllocCPUS, NTasks, NNodes).
        let names: Vec<String> = cpus.iter().map(|(n, _, _)| n.clone()).collect();
        let list =
            gangway_launcher::nodes::hostlist::compress(&names).unwrap_or_else(|_| names.join(","));
        let ncpus: usize = cpus.iter().map(|(_, c, _)| c.len()).sum();
        let ntasks: u32 = cpus.iter().map(|(_, _, t)| t).sum();
        let detail = format!("step {step} on {list} cpus {ncpus} tasks {ntasks}: {}", req.command);
        self.event(now, Some(id), None, "step", detail);
        Effects::reply(conn, Reply::Step(StepGrant { job: id, step, nodes, credential, link_key }))
    }

    /// Steps that waited for CPUs: granted if they fit now, refused if their job ended.
    pub(super) fn retry_steps(&mut self, now: u64) -> Effects {
        let mut fx = Effects::new();
        let waiting = std::mem::take(&mut self.waiting_steps);
        for (conn, caller, req) in waiting {
            if self.jobs.get(&req.job).is_none_or(|j| j.state != JobState::Running) {
                let message = format!("job {} ended before the step could start", req.job);
                let reply = Reply::Error { code: exit_code::FAILURE, message };
                fx.append(Effects::reply_and_close(conn, reply));
                continue;
            }
            match self.place_step(&req) {
                StepFit::Now(cpus) => fx.append(self.grant_step(conn, &req, cpus, now)),
                _ => self.waiting_steps.push((conn, caller, req)),
            }
        }
        fx
    }
}

/// The step's own memory limit: none when it asks for 0 (Slurm's `--mem=0`, all the job has;
/// the command line drops it, a request from elsewhere may not, and a 0-byte limit would let
/// no process of the step start).
fn step_memory(req: &StepRequest) -> Option<StepMemory> {
    req.memory.filter(|m| m.on_node(1) > 0)
}

/// Why a step asking for `memory` on `cpus` CPUs of node `g` cannot run in `job`: more than
/// the job's memory there (`None`: it fits, or the job has no limit to fit in).
fn memory_refusal(memory: StepMemory, cpus: u32, job: &Job, g: &GrantedNode) -> Option<String> {
    let limit = memory_limit(job, g)?;
    let wanted = memory.on_node(cpus);
    if wanted <= limit {
        return None;
    }
    let asked = match memory {
        StepMemory::PerNode(bytes) => format!("--mem={}", mib(bytes)),
        StepMemory::PerCpu(bytes) => {
            format!("--mem-per-cpu={} times {cpus} CPUs = {}", mib(bytes), mib(wanted))
        }
    };
    Some(format!(
        "memory required by the step is not available: it asks for {asked} on {node}, but job {id} has {have} there; ask for at most that with {flag} (or none: the step then runs under the job's limit), or give the job more (--mem or --mem-per-cpu of sbatch/salloc)",
        node = g.node,
        id = job.id,
        have = mib(limit),
        flag = memory.flag(),
    ))
}

/// Whether a step fits in its job's allocation beside the job's other steps.
enum StepFit {
    /// On these nodes, these CPUs, so many tasks each.
    Now(Vec<(String, CpuSet, u32)>),
    /// Not while other steps hold the CPUs it needs.
    Later,
    /// Never: the message says why.
    Never(String),
}

#[cfg(test)]
mod tests {
    use crate::controller::scenario::{alice, alloc, closes, cluster, replies_to, root};
    use crate::exit_code;
    use crate::protocol::credential::StepCredential;
    use crate::protocol::{Reply, StepGrant, StepRequest};

    fn step(job: u64, ntasks: u32) -> StepRequest {
        StepRequest {
            job,
            ntasks: Some(ntasks),
            cpus_per_task: 1,
            command: "a.out".into(),
            ..StepRequest::default()
        }
    }

    fn grant(fx: &[crate::controller::effects::Effect], conn: u64) -> StepGrant {
        match replies_to(fx, conn)[..] {
            [Reply::Step(g)] => g.clone(),
            _ => panic!("no step grant to {conn}: {fx:?}"),
        }
    }

    #[test]
    fn a_step_gets_free_cpus_of_its_job_and_waits_while_other_steps_hold_them() {
        let mut c = cluster();
        c.submit(7, &root(), alloc(1, 2), 0);
        c.schedule(0);
        let first = grant(&c.step(20, &root(), step(1, 1), 10), 20);
        assert_eq!((first.job, first.step), (1, 0));
        assert_eq!(first.nodes[0].cpus.to_string(), "0");
        // No signer here: the credential is its text, and it names the step's CPUs.
        let cred = StepCredential::parse(&first.credential).expect("credential");
        assert_eq!((cred.job, cred.attempt, cred.step, cred.uid), (1, 1, 0, 0));
        assert_eq!(cred.nodes[0].1.to_string(), "0");
        let second = grant(&c.step(21, &root(), step(1, 1), 11), 21);
        assert_eq!((second.step, second.nodes[0].cpus.to_string()), (1, "1".to_string()));
        // Both CPUs are taken: the third waits, and gets one when the first step's client goes.
        let fx = c.step(22, &root(), step(1, 1), 12);
        assert!(
            matches!(replies_to(&fx, 22)[..], [Reply::Waiting { id: 1, position: 1, .. }]),
            "{fx:?}"
        );
        assert!(replies_to(&c.schedule(13), 22).is_empty(), "still taken");
        c.client_gone(20, 14);
        let third = grant(&c.schedule(15), 22);
        assert_eq!((third.step, third.nodes[0].cpus.to_string()), (2, "0".to_string()));
    }

    #[test]
    fn a_one_node_step_goes_to_a_node_of_the_job_with_room() {
        let mut c = cluster();
        c.submit(7, &root(), alloc(2, 2), 0);
        c.schedule(0);
        let first = grant(&c.step(20, &root(), step(1, 1), 10), 20);
        let second = grant(&c.step(21, &root(), step(1, 1), 11), 21);
        // One CPU per node: the second runs beside the first, on the other node.
        assert_ne!(first.nodes[0].name, second.nodes[0].name, "{first:?} {second:?}");
        let fx = c.step(22, &root(), step(1, 1), 12);
        assert!(matches!(replies_to(&fx, 22)[..], [Reply::Waiting { .. }]), "{fx:?}");
    }

    #[test]
    fn tasks_without_a_node_count_span_the_nodes_they_need_as_in_slurm() {
        use crate::controller::scenario::{batch, starts};
        let mut c = cluster();
        // Three 2-core nodes: -n 4 alone takes two of them, -n 4 -N 1 does not fit one.
        let mut spread = batch(1, 4);
        spread.shape.min_nodes = None;
        c.submit(7, &root(), spread, 0);
        let mut nodes: Vec<String> = starts(&c.schedule(0)).into_iter().map(|s| s.0).collect();
        nodes.sort();
        assert_eq!(nodes, ["n1", "n2"]);
        let fx = c.submit(8, &root(), batch(1, 4), 1);
        assert!(
            matches!(replies_to(&fx, 8)[..], [Reply::Error { code: exit_code::CANNOT_PLACE, .. }]),
            "{fx:?}"
        );
    }

    #[test]
    fn a_waiting_step_whose_job_ends_is_told_so() {
        let mut c = cluster();
        c.submit(7, &root(), alloc(1, 2), 0);
        c.schedule(0);
        c.step(20, &root(), step(1, 2), 1);
        c.step(21, &root(), step(1, 1), 2);
        c.done(7, 0, 3);
        let fx = c.schedule(4);
        assert!(
            matches!(replies_to(&fx, 21)[..], [Reply::Error { code: exit_code::FAILURE, .. }]),
            "{fx:?}"
        );
        assert!(closes(&fx, 21));
    }

    #[test]
    fn steps_run_only_in_a_running_job_of_their_user_and_within_it() {
        let mut c = cluster();
        let refused = |fx: &[crate::controller::effects::Effect], conn, code| {
            matches!(replies_to(fx, conn)[..], [Reply::Error { code: c, .. }] if *c == code)
                && closes(fx, conn)
        };
        let fx = c.step(20, &root(), step(9, 1), 0);
        assert!(refused(&fx, 20, exit_code::USAGE), "no such job: {fx:?}");
        // One pass each: the second (wider, so of higher priority) waits for the first's node.
        c.submit(7, &root(), alloc(1, 2), 0);
        c.schedule(0);
        c.submit(8, &root(), alloc(3, 3), 0);
        c.schedule(0);
        let fx = c.step(21, &alice(), step(1, 1), 1);
        assert!(refused(&fx, 21, exit_code::PERMISSION_DENIED), "{fx:?}");
        let fx = c.step(22, &root(), step(2, 1), 1);
        assert!(refused(&fx, 22, exit_code::USAGE), "job 2 is pending: {fx:?}");
        let mut two_nodes = step(1, 2);
        two_nodes.nodes = Some(2);
        let fx = c.step(23, &root(), two_nodes, 1);
        assert!(refused(&fx, 23, exit_code::CANNOT_PLACE), "job 1 has one node: {fx:?}");
    }

    #[test]
    fn a_step_with_a_nodelist_runs_on_those_nodes_of_the_job_only() {
        let mut c = cluster();
        c.submit(7, &root(), alloc(3, 3), 0);
        c.schedule(0);
        let mut two = step(1, 2);
        two.nodelist = vec!["n3".into(), "n2".into()];
        let g = grant(&c.step(20, &root(), two, 1), 20);
        let names: Vec<&str> = g.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["n2", "n3"]);
        let mut elsewhere = step(1, 1);
        elsewhere.nodelist = vec!["n9".into()];
        let fx = c.step(21, &root(), elsewhere, 1);
        assert!(
            matches!(replies_to(&fx, 21)[..], [Reply::Error { code: exit_code::CANNOT_PLACE, .. }]),
            "{fx:?}"
        );
    }
    #[test]
    fn a_steps_memory_is_its_limit_within_the_jobs_and_more_is_refused() {
        use crate::controller::scenario::batch;
        use crate::protocol::StepMemory;
        const MIB: u64 = 1 << 20;
        let mut c = cluster();
        let mut job = alloc(1, 2);
        job.shape.mem_per_node = Some(300 * MIB);
        c.submit(7, &root(), job, 0);
        // A job without a memory limit: a step's own is its only one.
        c.submit(8, &root(), batch(1, 2), 0);
        c.schedule(0);
        let with = |ntasks, memory| StepRequest { memory: Some(memory), ..step(1, ntasks) };
        let g = grant(&c.step(20, &root(), with(1, StepMemory::PerNode(50 * MIB)), 1), 20);
        assert_eq!(g.nodes[0].memory, Some(50 * MIB));
        let cred = StepCredential::parse(&g.credential).expect("credential");
        assert_eq!(cred.memory_on(0), Some(50 * MIB), "the agents are told: {}", g.credential);
        c.client_gone(20, 2);
        // --mem-per-cpu times the step's CPUs on the node.
        let g = grant(&c.step(21, &root(), with(2, StepMemory::PerCpu(150 * MIB)), 3), 21);
        assert_eq!(g.nodes[0].memory, Some(300 * MIB));
        c.client_gone(21, 4);
        // Over the job's 300 MiB: refused at once, naming the job's limit and the flag.
        for (conn, asked, names) in [
            (22, with(1, StepMemory::PerNode(301 * MIB)), "--mem=301 MiB"),
            (23, with(2, StepMemory::PerCpu(151 * MIB)), "--mem-per-cpu=151 MiB times 2 CPUs"),
        ] {
            let fx = c.step(conn, &root(), asked, 5);
            let [Reply::Error { code, message }] = &replies_to(&fx, conn)[..] else {
                panic!("not refused: {fx:?}");
            };
            assert_eq!(*code, exit_code::CANNOT_PLACE);
            assert!(message.contains(names), "{message}");
            assert!(message.contains("job 1 has 300 MiB there"), "{message}");
            assert!(closes(&fx, conn));
        }
        // 0 is no limit of its own (Slurm's --mem=0), not a 0-byte one.
        let zero = StepRequest { memory: Some(StepMemory::PerNode(0)), ..step(1, 1) };
        let g = grant(&c.step(26, &root(), zero, 5), 26);
        assert_eq!(g.nodes[0].memory, None);
        assert!(!g.credential.contains("memory="), "{}", g.credential);
        c.client_gone(26, 5);
        // No step memory: none in the grant nor the credential.
        let g = grant(&c.step(24, &root(), step(1, 1), 6), 24);
        assert_eq!(g.nodes[0].memory, None);
        assert!(!g.credential.contains("memory="), "{}", g.credential);
        let job2 = StepRequest { memory: Some(StepMemory::PerNode(1 << 40)), ..step(2, 1) };
        let g = grant(&c.step(25, &root(), job2, 7), 25);
        assert_eq!(g.nodes[0].memory, Some(1 << 40));
    }

    #[test]
    fn a_steps_memory_per_node_follows_slurms_rule() {
        use crate::protocol::StepMemory;
        assert_eq!(StepMemory::PerNode(5).on_node(8), 5);
        assert_eq!(StepMemory::PerCpu(5).on_node(8), 40);
        assert_eq!(StepMemory::PerCpu(5).on_node(0), 5, "a step holds at least one CPU");
        assert_eq!(StepMemory::PerCpu(u64::MAX).on_node(2), u64::MAX, "saturates");
    }
}
