#!/usr/bin/env python3
"""benches/cluster.py - the controller and agents on a 3-node virtual cluster, timed, and Slurm
on the same kind of cluster when it is installed (benches/slurm-vcluster.sh), side by side.

    sudo python3 benches/cluster.py                 # gangway from target/release/gangway
    JOBS=1000 SLURM=0 sudo -E python3 benches/cluster.py

Measures: K `gangway batch --wrap true` submissions (one client after another, and 8 clients at
once), submissions/s and the time until all are done (jobs/s end to end); `gangway run -N3 -n3 true`
and `-N3 -n12 --oversubscribe true` end to end as jobs of their own and as steps inside an
allocation (median of RUNS); `gangway queue` with 200 pending jobs (median); and the time from
killing a node until its requeued job runs again elsewhere. Prints `gangway <metric> <value>
<unit>` lines, then a table beside Slurm's figures with ratios (gangway / slurm).

Environment: GANGWAY (binary), JOBS (default 1000), RUNS (default 10), SLURM (0: skip Slurm),
PREFIX (vcluster prefix, default cb<pid>). Needs root. Exit 77 when no virtual cluster can run.
"""
import json, os, statistics, subprocess, sys, tempfile, time, signal

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VC = os.path.join(ROOT, "tests/cluster/vcluster")
GW = os.path.abspath(os.environ.get("GANGWAY", os.path.join(ROOT, "target/release/gangway")))
JOBS = int(os.environ.get("JOBS", "1000"))
RUNS = max(3, int(os.environ.get("RUNS", "10")))
PREFIX = os.environ.get("PREFIX", "cb%x" % (os.getpid() & 0xffff))
results = {}


def say(metric, value, unit):
    results[metric] = (value, unit)
    print(f"gangway {metric} {value:.3f} {unit}", flush=True)


def sh(*args, **kw):
    return subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True, **kw)


def main():
    up = sh(VC, "up", "3", "--prefix", PREFIX)
    if up.returncode == 77:
        print("SKIP:", up.stderr.strip()); return 77
    if up.returncode != 0:
        print(up.stdout, up.stderr); return 1
    env = dict(l[7:].split("=", 1) for l in sh(VC, "env", "--prefix", PREFIX).stdout.splitlines() if l.startswith("export "))
    env = {k: v.strip('"') for k, v in env.items()}
    work = tempfile.mkdtemp(prefix="gangway-bench-", dir="/var/tmp")
    os.chmod(work, 0o755)
    procs = []
    try:
        code = bench(env, work, procs)
        if code == 0:
            subprocess.run(["rm", "-rf", work])
        return code
    except Exception:
        print(f"logs kept in {work}", file=sys.stderr)
        raise
    finally:
        for p in procs:
            try:
                p.kill(); p.wait(timeout=5)
            except Exception:
                pass
        sh(VC, "down", "--prefix", PREFIX)


def bench(env, work, procs):
    bindir = os.path.join(work, "bin"); os.makedirs(bindir)
    gw = os.path.join(bindir, "gangway")
    subprocess.run(["cp", GW, gw], check=True)
    sh(gw, "keygen", f"{work}/key")
    port = 17700 + os.getpid() % 200
    with open(f"{work}/gangway.toml", "w") as f:
        f.write(f'cluster = "bench"\nlisten = "0.0.0.0:{port}"\nsocket = "{work}/ctl.sock"\n'
                f'state_dir = "{work}/state"\nkey_file = "{work}/key"\nheartbeat_interval = "250ms"\n'
                # A node is lost after 1.5 s of silence; its agent's lease (1 s, four heartbeats)
                # ends 500 ms before that, so its jobs are dead by then (docs/cluster.md, Fencing).
                f'suspect_timeout = "750ms"\nlost_timeout = "1500ms"\nfence_margin = "500ms"\n'
                f'[[partition]]\nname = "batch"\nnodes = "node[1-3]"\ndefault = true\n')
    log = open(f"{work}/controller.log", "w")
    procs.append(subprocess.Popen([gw, "controller", "-C", f"{work}/gangway.toml", "--log", "warn"], stdout=log, stderr=log))
    for i in range(1, 4):
        alog = open(f"{work}/agent{i}.log", "w")
        procs.append(subprocess.Popen([VC, "--prefix", PREFIX, "exec", f"node{i}", gw, "agent", "--controller",
                                       f"{env['VCLUSTER_HOST_ADDR']}:{port}", "--key-file", f"{work}/key",
                                       "--spool", "/tmp/gangway-spool", "--log", "warn"], stdout=alog, stderr=alog))
    cenv = dict(os.environ, GANGWAY_CONTROLLER=f"{work}/ctl.sock")

    def gcmd(*a, check=True):
        r = subprocess.run([gw, *a], env=cenv, cwd=work, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise RuntimeError(f"gangway {' '.join(a)}: {r.stdout}{r.stderr}")
        return r

    def idle():
        try:
            return sum(n["state"] == "idle" for n in json.loads(gcmd("nodes", "--json").stdout)) == 3
        except Exception:
            return False

    wait(idle, 30, "agents registered")

    def queue_len():
        return len(json.loads(gcmd("queue", "--json").stdout))

    # 1. Submissions, one client after another, then 8 at once; then the time until all ran.
    os.makedirs(f"{work}/out", exist_ok=True)
    half = JOBS // 2
    t0 = time.perf_counter()
    for _ in range(half):
        gcmd("batch", "-o", "/dev/null", "--wrap", "true")
    seq = time.perf_counter() - t0
    say("submit_sequential", half / seq, "jobs/s")
    wait(lambda: queue_len() == 0, 600, "sequential jobs done")
    t0 = time.perf_counter()
    xargs = subprocess.run(f"seq {JOBS} | xargs -P 8 -I{{}} {gw} batch -o /dev/null --wrap true >/dev/null",
                           shell=True, env=cenv, cwd=work)
    par = time.perf_counter() - t0
    say("submit_parallel8", JOBS / par, "jobs/s")
    wait(lambda: queue_len() == 0, 900, "all jobs done")
    total = time.perf_counter() - t0
    say("batch_end_to_end", JOBS / total, "jobs/s")
    # The controller's own rate: 16 connections submitting in a loop, no process start per job.
    say("submit_controller", controller_rate(f"{work}/ctl.sock", work, 16, max(JOBS, 2000)), "jobs/s")
    wait(lambda: queue_len() == 0, 900, "socket-submitted jobs done")

    # 2. run as a job of its own, and as steps inside an allocation.
    def median_ms(cmd, inside=None):
        times = []
        for _ in range(RUNS + 1):
            t = time.perf_counter()
            r = subprocess.run(cmd, env=inside or cenv, cwd=work, capture_output=True, stdin=subprocess.DEVNULL)
            if r.returncode != 0:
                raise RuntimeError(f"{cmd}: {r.stdout}{r.stderr}")
            times.append((time.perf_counter() - t) * 1e3)
        return statistics.median(times[1:])

    say("run_N3_n3", median_ms([gw, "run", "-N3", "-n3", "true"]), "ms")
    say("run_N3_n12", median_ms([gw, "run", "-N3", "-n12", "--oversubscribe", "true"]), "ms")
    # Steps: a batch script times them from inside the allocation.
    script = f"""#!/bin/sh
python3 - <<'PY'
import subprocess, time, statistics
def m(cmd):
    ts=[]
    for _ in range({RUNS + 1}):
        t=time.perf_counter(); subprocess.run(cmd, check=True); ts.append((time.perf_counter()-t)*1e3)
    return statistics.median(ts[1:])
print("step_n3", m(["{gw}", "run", "-N3", "-n3", "true"]))
print("step_n12", m(["{gw}", "run", "-N3", "-n12", "--oversubscribe", "true"]))
PY
"""
    with open(f"{work}/steps.sh", "w") as f:
        f.write(script)
    jid = gcmd("batch", "--parsable", "-N3", "--exclusive", "-o", f"{work}/steps.out", f"{work}/steps.sh").stdout.strip()
    wait(lambda: queue_len() == 0, 300, "step job done")
    for line in open(f"{work}/steps.out"):
        k, v = line.split()
        say(k, float(v), "ms")

    # 3. queue with 200 pending.
    for _ in range(200):
        gcmd("batch", "-H", "-o", "/dev/null", "--wrap", "true")
    say("queue_200_pending", median_ms([gw, "queue"]), "ms")
    ids = [j["id"] for j in json.loads(gcmd("queue", "--json").stdout)]
    gcmd("cancel", *map(str, ids))

    # 4. Kill a node running a job: how long until the job runs again elsewhere.
    jid = gcmd("batch", "--parsable", "-w", "node2", "-o", "/dev/null", "--wrap", "sleep 600").stdout.strip()
    wait(lambda: json.loads(gcmd("show", "job", jid, "--json").stdout)["state"] == "RUNNING", 30, "job running")
    # -w pins it to node2; lift the pin so the requeued attempt may move (as `scontrol update`).
    t0 = time.perf_counter()
    sh(VC, "--prefix", PREFIX, "kill", "node2")
    wait(lambda: any(n["name"] == "node2" and n["state"] == "down" for n in json.loads(gcmd("nodes", "--json").stdout)), 30, "node2 down")
    say("node_down_after_kill", time.perf_counter() - t0, "s")
    # The pinned job fails with NodeFail is not what we time; time an unpinned one instead.
    sh(VC, "up", "3", "--prefix", PREFIX)
    alog = open(f"{work}/agent2b.log", "w")
    procs.append(subprocess.Popen([VC, "--prefix", PREFIX, "exec", "node2", gw, "agent", "--controller",
                                   f"{env['VCLUSTER_HOST_ADDR']}:{port}", "--key-file", f"{work}/key",
                                   "--spool", "/tmp/gangway-spool", "--log", "warn"], stdout=alog, stderr=alog))
    gcmd("cancel", jid, check=False)
    wait(idle, 30, "node2 back")
    jobs = [gcmd("batch", "--parsable", "-o", "/dev/null", "--wrap", "sleep 600").stdout.strip() for _ in range(6)]
    wait(lambda: all(json.loads(gcmd("show", "job", j, "--json").stdout)["state"] == "RUNNING" for j in jobs), 30, "6 running")
    on2 = [j for j in jobs if json.loads(gcmd("show", "job", j, "--json").stdout)["nodes"] == ["node2"]]
    gcmd("cancel", *[j for j in jobs if j not in on2][:1])  # free a CPU for the requeued one
    t0 = time.perf_counter()
    sh(VC, "--prefix", PREFIX, "kill", "node2")
    def again():
        info = [json.loads(gcmd("show", "job", j, "--json").stdout) for j in on2]
        return any(i["state"] == "RUNNING" and i["attempt"] == 2 for i in info)
    wait(again, 60, "requeued job running")
    say("requeued_running_after_kill", time.perf_counter() - t0, "s")
    gcmd("cancel", *jobs, check=False)
    return 0


def controller_rate(sock, work, conns, total):
    import socket, threading
    sub = {"submit": {"kind": "batch", "name": "rate", "shape": {"min_nodes": None, "max_nodes": None, "ntasks": None,
           "ntasks_per_node": None, "cpus_per_task": None, "mem_per_node": None, "mem_per_cpu": None,
           "gpus_per_task": None, "exclusive": False, "partition": None, "time_limit_secs": None,
           "nodelist": [], "exclude": []}, "cwd": work, "env": [], "script": "#!/bin/sh\ntrue\n", "args": [],
           "command": "rate", "output": "/dev/null", "error": None, "requeue": True, "hold": False}}
    line = (json.dumps(sub) + "\n").encode()
    per = total // conns
    def worker():
        for _ in range(per):
            c = socket.socket(socket.AF_UNIX); c.connect(sock); c.sendall(line)
            f = c.makefile("rb"); assert b"submitted" in f.readline(); c.close()
    ts = [threading.Thread(target=worker) for _ in range(conns)]
    t0 = time.perf_counter()
    for t in ts: t.start()
    for t in ts: t.join()
    return per * conns / (time.perf_counter() - t0)


def wait(cond, limit, what):
    end = time.time() + limit
    while time.time() < end:
        if cond():
            return
        time.sleep(0.02)
    raise RuntimeError(f"timed out waiting for {what}")


def slurm_side():
    script = os.path.join(ROOT, "benches/slurm-vcluster.sh")
    if os.environ.get("SLURM") == "0" or not os.path.exists(script):
        return {}
    pre = "slb%x" % (os.getpid() & 0xfff)
    if sh(VC, "up", "3", "--prefix", pre).returncode != 0:
        return {}
    try:
        if sh(script, "--prefix", pre, "up").returncode != 0:
            return {}
        r = sh(script, "--prefix", pre, "bench", "--jobs", "200")
        print(r.stdout, end="")
        out = {}
        for line in r.stdout.splitlines():
            w = line.split()
            if len(w) >= 4 and w[0] == "slurm":
                try:
                    out[w[1]] = (float(w[2]), w[3])
                except ValueError:
                    pass
        return out
    finally:
        sh(script, "--prefix", pre, "down")
        sh(VC, "down", "--prefix", pre)


if __name__ == "__main__":
    code = main()
    if code:
        sys.exit(code)
    slurm = slurm_side()
    pairs = [("submit_sequential", "sbatch_submit_rate"), ("submit_controller", "sbatch_submit_rate"),
             ("batch_end_to_end", "sbatch_end_to_end_rate"),
             ("run_N3_n3", "srun_N3_n3_true"), ("run_N3_n12", "srun_N3_n12_overcommit_true"),
             ("step_n3", "srun_N3_n3_true"), ("step_n12", "srun_N3_n12_overcommit_true"),
             ("queue_200_pending", "squeue_200_pending"), ("node_down_after_kill", "node_kill_to_down"),
             ("requeued_running_after_kill", "node_kill_to_requeued_running")]
    print("\n| metric | gangway | slurm | gangway/slurm |\n|---|---|---|---|")
    for g, s in pairs:
        gv = results.get(g)
        sv = slurm.get(s)
        ratio = f"{gv[0] / sv[0]:.2f}x" if gv and sv and sv[0] else "-"
        print(f"| {g} | {gv[0]:.1f} {gv[1]} | " + (f"{sv[0]:.1f} {sv[1]}" if sv else "-") + f" | {ratio} |" if gv else f"| {g} | - | - | - |")
