//! A controller on the host and one agent in each node of a virtual cluster, for the tests of
//! managed jobs (`managed.rs`) and the attack suite (`attack/`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::support::{
    VCluster, gangway, host_children, node_visible_dir, process_state, wait_until,
};

/// What a test changes before the controller first starts.
#[derive(Default)]
pub struct Setup {
    /// Extra top-level settings for the controller's TOML (e.g. limits).
    pub config: String,
    /// The controller's open-file limit, soft and hard.
    pub controller_nofile: Option<u64>,
    /// Called with the state directory (created, empty) before the controller starts: a test
    /// may mount a small file system there.
    #[expect(
        clippy::type_complexity,
        reason = "a one-off test hook: an alias named once would only hide what it is called with"
    )]
    pub prepare_state_dir: Option<Box<dyn FnOnce(&std::path::Path)>>,
    /// The agents' `--kill-grace` (default 1 s).
    pub agent_kill_grace: Option<&'static str>,
    /// More flags for every agent.
    pub agent_args: Vec<String>,
}

/// A controller on the host and one agent per node.
pub struct Managed {
    pub vc: VCluster,
    pub dir: PathBuf,
    pub port: u16,
    pub controller: Option<Child>,
    pub agents: BTreeMap<usize, Child>,
    /// `--synthetic` for the agents: nodes bigger than this machine.
    pub synthetic: Option<String>,
    /// The controller's open-file limit (see [`Setup`]).
    pub controller_nofile: Option<u64>,
    /// The agents' `--kill-grace`.
    pub agent_kill_grace: &'static str,
    /// More flags for every agent (see [`Setup`]).
    pub agent_args: Vec<String>,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0").unwrap().local_addr().unwrap().port()
}

impl Managed {
    pub fn up(nodes: usize) -> Option<Managed> {
        Managed::up_as(nodes, None)
    }

    pub fn up_as(nodes: usize, synthetic: Option<&str>) -> Option<Managed> {
        Managed::up_full(nodes, synthetic, Setup::default())
    }

    pub fn up_with(nodes: usize, setup: Setup) -> Option<Managed> {
        Managed::up_full(nodes, None, setup)
    }

    fn up_full(nodes: usize, synthetic: Option<&str>, setup: Setup) -> Option<Managed> {
        let vc = VCluster::up(nodes)?;
        let dir = node_visible_dir().join(format!("ctl-{}", vc.prefix));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("key");
        let out = gangway().arg("keygen").arg(&key).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let port = free_port();
        let names: Vec<String> = (1..=nodes).map(|i| format!("node{i}")).collect();
        let config = format!(
            "cluster = \"it\"\nlisten = \"0.0.0.0:{port}\"\nsocket = \"{d}/ctl.sock\"\nstate_dir = \"{d}/state\"\nkey_file = \"{d}/key\"\nheartbeat_interval = \"300ms\"\nsuspect_timeout = \"1s\"\nlost_timeout = \"2s\"\nreconnect_grace = \"500ms\"\nkill_grace = \"1s\"\n{extra}\n[[partition]]\nname = \"batch\"\nnodes = \"{}\"\ndefault = true\nmax_time = \"1:00:00\"\n",
            names.join(","),
            d = dir.display(),
            extra = setup.config,
        );
        std::fs::write(dir.join("gangway.toml"), config).unwrap();
        if let Some(prepare) = setup.prepare_state_dir {
            std::fs::create_dir_all(dir.join("state")).unwrap();
            prepare(&dir.join("state"));
        }
        let mut m = Managed {
            vc,
            dir,
            port,
            controller: None,
            agents: BTreeMap::new(),
            synthetic: synthetic.map(String::from),
            controller_nofile: setup.controller_nofile,
            agent_kill_grace: setup.agent_kill_grace.unwrap_or("1s"),
            agent_args: setup.agent_args,
        };
        m.start_controller();
        for i in 1..=nodes {
            m.start_agent(i);
        }
        m.wait_idle(nodes);
        Some(m)
    }

    pub fn gangway_bin(&self) -> PathBuf {
        node_visible_dir().join("bin/gangway")
    }

    /// Starts the controller and waits for its socket. At the first start, a port another test
    /// took between `free_port` and the controller's bind is replaced by a fresh one (agents
    /// have not been told the port yet); a restart keeps its port.
    pub fn start_controller(&mut self) {
        for _ in 0..5 {
            if self.try_start_controller() {
                return;
            }
            assert!(self.agents.is_empty(), "a restarted controller lost its port");
            let port = free_port();
            let path = self.dir.join("gangway.toml");
            let config = std::fs::read_to_string(&path).unwrap().replace(
                &format!("listen = \"0.0.0.0:{}\"", self.port),
                &format!("listen = \"0.0.0.0:{port}\""),
            );
            std::fs::write(&path, config).unwrap();
            self.port = port;
        }
        panic!("the controller found its port taken five times");
    }

    /// One start: true once the socket answers, false if the controller gave up because its
    /// port was taken; any other early exit fails the test with the log.
    fn try_start_controller(&mut self) -> bool {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("controller.log"))
            .unwrap();
        let mut cmd = Command::new(self.gangway_bin());
        cmd.args(["controller", "--config"])
            .arg(self.dir.join("gangway.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some(n) = self.controller_nofile {
            use std::os::unix::process::CommandExt;
            let limit = libc::rlimit { rlim_cur: n, rlim_max: n };
            // SAFETY: setrlimit is async-signal-safe and reads only the struct copied in here.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let log_path = self.dir.join("controller.log");
        let before = std::fs::metadata(&log_path).map(|m| m.len() as usize).unwrap_or(0);
        let mut child = cmd.spawn().unwrap();
        let sock = self.dir.join("ctl.sock");
        let mut exited = false;
        wait_until("the controller's socket", Duration::from_secs(10), || {
            exited = matches!(child.try_wait(), Ok(Some(_)));
            exited || std::os::unix::net::UnixStream::connect(&sock).is_ok()
        });
        if exited {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let this_start = log.get(before..).unwrap_or(&log);
            assert!(this_start.contains("Address already in use"), "the controller exited:\n{log}");
            return false;
        }
        self.controller = Some(child);
        true
    }

    pub fn kill_controller(&mut self) {
        if let Some(mut c) = self.controller.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = c.wait();
        }
    }

    /// `gangway agent` inside node `i`, with this controller's address and `key` (give it a
    /// `--spool`: one agent per spool).
    pub fn agent_command(&self, i: usize, key: &std::path::Path) -> Command {
        let host = &self.vc.env["VCLUSTER_HOST_ADDR"];
        let mut c = Command::new(crate::support::repo_root().join("tests/cluster/vcluster"));
        c.args(["--prefix", &self.vc.prefix, "exec", &format!("node{i}")])
            .arg(self.gangway_bin())
            .args(["agent", "--controller", &format!("{host}:{}", self.port), "--key-file"])
            .arg(key)
            .args(["--kill-grace", self.agent_kill_grace])
            .stdin(Stdio::null());
        c
    }

    pub fn start_agent(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("agent{i}.log")))
            .unwrap();
        let child = self
            .agent_command(i, &self.dir.join("key"))
            .args(["--spool", "/tmp/gangway-spool"])
            .args(["--cgroup-root", &self.cgroup_root(i)])
            .args(self.synthetic.iter().flat_map(|s| ["--synthetic", s.as_str()]))
            .args(&self.agent_args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.agents.insert(i, child);
    }

    /// Node `i`'s agent's cgroup root: its own (the nodes of every test cluster share this
    /// machine's kernel and their names).
    pub fn cgroup_root(&self, i: usize) -> String {
        format!("gangway-{}-node{i}", self.vc.prefix)
    }

    /// The cgroup directories of node `i`'s agent in every v1 hierarchy (empty on v2 only
    /// machines, or when they do not exist).
    pub fn cgroup_dirs(&self, i: usize) -> Vec<PathBuf> {
        let root = self.cgroup_root(i);
        std::fs::read_dir("/sys/fs/cgroup")
            .map(|d| d.flatten().map(|e| e.path().join(&root)).filter(|p| p.is_dir()).collect())
            .unwrap_or_default()
    }

    /// A `gangway` command talking to this controller.
    pub fn cli(&self) -> Command {
        let mut c = gangway();
        c.env("GANGWAY_CONTROLLER", self.dir.join("ctl.sock"));
        c.current_dir(&self.dir);
        c
    }

    pub fn cli_out(&self, args: &[&str]) -> Output {
        self.cli().args(args).stdin(Stdio::null()).output().unwrap()
    }

    pub fn nodes_json(&self) -> Vec<serde_json::Value> {
        let out = self.cli_out(&["nodes", "--json"]);
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }

    pub fn wait_idle(&self, n: usize) {
        wait_until("all nodes idle", Duration::from_secs(20), || {
            self.nodes_json().iter().filter(|v| v["state"] == "idle").count() == n
        });
    }

    pub fn submit(&self, args: &[&str]) -> u64 {
        let mut all = vec!["batch", "--parsable"];
        all.extend_from_slice(args);
        let out = self.cli_out(&all);
        assert!(out.status.success(), "batch {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }

    pub fn job(&self, id: u64) -> serde_json::Value {
        let out = self.cli_out(&["show", "job", &id.to_string(), "--json"]);
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }

    pub fn wait_done(&self, ids: &[u64], limit: Duration) {
        wait_until("jobs to finish", limit, || {
            let out = self.cli_out(&["queue", "--json"]);
            let q: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
            !q.iter().any(|j| ids.contains(&j["id"].as_u64().unwrap_or(0)))
        });
    }

    pub fn logs(&self) -> String {
        let mut s = String::new();
        for e in std::fs::read_dir(&self.dir).unwrap().flatten() {
            if e.file_name().to_string_lossy().ends_with(".log") {
                s.push_str(&format!(
                    "== {}\n{}\n",
                    e.file_name().to_string_lossy(),
                    std::fs::read_to_string(e.path()).unwrap_or_default()
                ));
            }
        }
        s
    }

    /// `gangway install-slurm-commands` into the test's directory (once): the PATH that finds
    /// the Slurm-named commands first.
    pub fn slurm_path(&self) -> String {
        let dir = self.dir.join("slurm-bin");
        if !dir.exists() {
            let out = Command::new(self.gangway_bin())
                .arg("install-slurm-commands")
                .arg(&dir)
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", text(&out));
        }
        format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default())
    }

    pub fn output_of(&self, id: u64) -> String {
        std::fs::read_to_string(self.dir.join(format!("gangway-{id}.out"))).unwrap_or_default()
    }
}

/// Kills every process in `dir` and below (a cgroup directory), then removes the directories,
/// deepest first.
fn remove_cgroup_tree(dir: &std::path::Path) {
    let subdirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect())
        .unwrap_or_default();
    for sub in &subdirs {
        remove_cgroup_tree(sub);
    }
    for _ in 0..100 {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        let pids: Vec<i32> = procs.lines().filter_map(|l| l.trim().parse().ok()).collect();
        // A frozen cgroup must thaw for its processes to die.
        let _ = std::fs::write(dir.join("freezer.state"), "THAWED");
        for pid in &pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        self.kill_controller();
        // Killing `nsenter` leaves the agent it started (and the agent's fencer) running in the
        // node until the cluster goes down, free to make cgroups again after the removal below.
        let mut inside = Vec::new();
        for a in self.agents.values() {
            for agent in host_children(a.id() as i32) {
                inside.push(agent);
                inside.extend(host_children(agent));
            }
        }
        for pid in &inside {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for (_, mut a) in std::mem::take(&mut self.agents) {
            let _ = a.kill();
            let _ = a.wait();
        }
        for _ in 0..250 {
            if inside.iter().all(|p| process_state(*p).is_none_or(|s| s == 'Z')) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // What the agents' cgroups still hold (an escaped daemon outlives a killed agent until
        // the next agent's sweep, which never comes here), and the directories.
        for i in 1..=16 {
            for dir in self.cgroup_dirs(i) {
                remove_cgroup_tree(&dir);
            }
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}
