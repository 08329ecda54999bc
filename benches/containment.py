#!/usr/bin/env python3
"""benches/containment.py - what containment (cgroups) costs on the launch path, side by side in
one run: `gangway run -n 4 true` on this machine with and without the run's cgroup
(GANGWAY_NO_CGROUPS=1), and a managed `gangway run -N3 -n12 --oversubscribe true` on a 3-node
virtual cluster whose agents run jobs in cgroups, then with `--no-cgroups`, then in cgroups
again, then without (two rounds each, so drift on a busy machine hits both sides).

    sudo python3 benches/containment.py                 # gangway from target/debug/gangway
    GANGWAY=target/release/gangway RUNS=20 sudo -E python3 benches/containment.py

FAVORDYNMODS=on remounts the cgroup2 mount with `favordynmods` first and has the agents ask for it
(GANGWAY_CGROUP_FAVORDYNMODS=1; without it a join to a cgroup may wait for an RCU grace period);
FAVORDYNMODS=off clears it first; unset leaves the mounts as they are. `join_write` times one `cgroup.procs` write.

Prints `gangway <metric> <value> <unit>` lines (medians of RUNS runs after one warm-up), then
each pair with its difference and ratio (with / without). The issue's target: under 1 ms added
per node. Needs root (cgroups, the virtual cluster); exit 77 when the cluster cannot run.
"""
import json, os, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VC = os.path.join(ROOT, "tests/cluster/vcluster")
GW = os.path.abspath(os.environ.get("GANGWAY", os.path.join(ROOT, "target/debug/gangway")))
RUNS = max(10, int(os.environ.get("RUNS", "10")))
SETTLE = 0.02
PREFIX = os.environ.get("PREFIX", "cc%x" % (os.getpid() & 0xffff))
results = {}


def say(metric, value, unit):
    results[metric] = (value, unit)
    print(f"gangway {metric} {value:.3f} {unit}", flush=True)


def sh(*args, **kw):
    return subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True, **kw)


def times_ms(cmd, env, cwd=None, runs=RUNS):
    """RUNS timings (ms) of `cmd` after one warm-up run."""
    out = []
    for i in range(runs + 1):
        t = time.perf_counter()
        r = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, stdin=subprocess.DEVNULL)
        took = (time.perf_counter() - t) * 1e3
        if r.returncode != 0:
            raise RuntimeError(f"{cmd}: {r.stdout}{r.stderr}")
        if i > 0:
            out.append(took)
        # What a run leaves to finish off its path (a local run's cgroup watcher removes its
        # cgroup after the launcher exits) is done before the next one is timed.
        time.sleep(SETTLE)
    return out


def cgroup2_mount():
    for line in open("/proc/self/mountinfo"):
        before, after = line.split(" - ", 1)
        if after.startswith("cgroup2 "):
            return before.split(" ")[4], after.split(" ")[2].strip()
    return None, ""


def set_favordynmods(on):
    """Remounts the cgroup2 mount with or without `favordynmods` (and its other options)."""
    import ctypes
    point, opts = cgroup2_mount()
    if point is None or ("favordynmods" in opts.split(",")) == on:
        return
    data = ",".join([o for o in opts.split(",") if o not in ("rw", "ro", "favordynmods")]
                    + (["favordynmods"] if on else []))
    libc = ctypes.CDLL(None, use_errno=True)
    MS_REMOUNT, MS_RELATIME = 32, 1 << 21
    if libc.mount(b"cgroup2", point.encode(), b"cgroup2", MS_REMOUNT | MS_RELATIME, data.encode()) != 0:
        raise OSError(ctypes.get_errno(), "remount of the cgroup2 mount")


def join_write(label):
    """Median time (ms) of one write of a child's pid to a memory cgroup's cgroup.procs."""
    probe = f"/sys/fs/cgroup/memory/gangway-bench-probe-{os.getpid()}"
    os.makedirs(probe, exist_ok=True)
    took = []
    try:
        for _ in range(RUNS):
            pid = os.fork()
            if pid == 0:
                time.sleep(0.05)
                os._exit(0)
            t = time.perf_counter()
            with open(f"{probe}/cgroup.procs", "w") as f:
                f.write(str(pid))
            took.append((time.perf_counter() - t) * 1e3)
            os.waitpid(pid, 0)
    finally:
        os.rmdir(probe)
    say(f"join_write ({label}, favordynmods={'favordynmods' in cgroup2_mount()[1].split(',')})",
        statistics.median(took), "ms")


def local():
    """`gangway run -n 4 true`, with and without its cgroup, alternating run by run."""
    on = dict(os.environ)
    on.pop("GANGWAY_NO_CGROUPS", None)
    off = dict(os.environ, GANGWAY_NO_CGROUPS="1")
    cmd = [GW, "run", "-n", "4", "true"]
    with_cg, without = [], []
    times_ms(cmd, on, runs=1)
    for _ in range(RUNS):
        with_cg += times_ms(cmd, on, runs=1)
        without += times_ms(cmd, off, runs=1)
    say("local_n4_cgroups", statistics.median(with_cg), "ms")
    say("local_n4_no_cgroups", statistics.median(without), "ms")


def managed():
    up = sh(VC, "up", "3", "--prefix", PREFIX)
    if up.returncode == 77:
        print("SKIP managed:", up.stderr.strip())
        return 77
    if up.returncode != 0:
        print(up.stdout, up.stderr)
        return 1
    env = dict(l[7:].split("=", 1) for l in sh(VC, "env", "--prefix", PREFIX).stdout.splitlines() if l.startswith("export "))
    env = {k: v.strip('"') for k, v in env.items()}
    work = tempfile.mkdtemp(prefix="gangway-bench-", dir="/var/tmp")
    os.chmod(work, 0o755)
    procs, agents = [], []
    try:
        bindir = os.path.join(work, "bin")
        os.makedirs(bindir)
        gw = os.path.join(bindir, "gangway")
        subprocess.run(["cp", GW, gw], check=True)
        sh(gw, "keygen", f"{work}/key")
        port = 17900 + os.getpid() % 200
        with open(f"{work}/gangway.toml", "w") as f:
            f.write(f'cluster = "bench"\nlisten = "0.0.0.0:{port}"\nsocket = "{work}/ctl.sock"\n'
                    f'state_dir = "{work}/state"\nkey_file = "{work}/key"\nheartbeat_interval = "250ms"\n'
                    f'suspect_timeout = "750ms"\nlost_timeout = "1500ms"\nfence_margin = "500ms"\n'
                    f'[[partition]]\nname = "batch"\nnodes = "node[1-3]"\ndefault = true\n')
        log = open(f"{work}/controller.log", "w")
        procs.append(subprocess.Popen([gw, "controller", "-C", f"{work}/gangway.toml", "--log", "warn"],
                                      stdout=log, stderr=log, stdin=subprocess.DEVNULL))
        cenv = dict(os.environ, GANGWAY_CONTROLLER=f"{work}/ctl.sock")
        cenv.pop("GANGWAY_NO_CGROUPS", None)

        def idle():
            r = subprocess.run([gw, "nodes", "--json"], env=cenv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
            try:
                return sum(n["state"] == "idle" for n in json.loads(r.stdout)) == 3
            except Exception:
                return False

        def start_agents(cgroups):
            for i in range(1, 4):
                alog = open(f"{work}/agent{i}-{'cgroups' if cgroups else 'none'}.log", "a")
                extra = [] if cgroups else ["--no-cgroups"]
                aenv = dict(os.environ)
                if os.environ.get("FAVORDYNMODS") == "on":
                    aenv["GANGWAY_CGROUP_FAVORDYNMODS"] = "1"
                agents.append(subprocess.Popen(
                    [VC, "--prefix", PREFIX, "exec", f"node{i}", gw, "agent", "--controller",
                     f"{env['VCLUSTER_HOST_ADDR']}:{port}", "--key-file", f"{work}/key",
                     "--spool", "/tmp/gangway-spool", "--cgroup-root", f"gangway-{PREFIX}-node{i}",
                     "--log", "warn,gangway::agent::cgroups=debug,gangway::agent::steps=debug", *extra],
                    stdout=alog, stderr=alog, stdin=subprocess.DEVNULL, env=aenv))
            wait(idle, 30, "agents registered")

        def stop_agents():
            # SIGTERM to each agent (the child of its nsenter wrapper, by pid), then the
            # wrappers end.
            for a in agents:
                for pid in children(a.pid):
                    try:
                        os.kill(pid, 15)
                    except ProcessLookupError:
                        pass
            for a in agents:
                try:
                    a.wait(timeout=10)
                except Exception:
                    a.kill()
                    a.wait()
            agents.clear()
            wait(lambda: not idle(), 10, "agents gone")

        cmd = [gw, "run", "-N3", "-n12", "--oversubscribe", "true"]
        with_cg, without, rounds = [], [], []
        for cgroups in (True, False, True, False):
            start_agents(cgroups)
            took = times_ms(cmd, cenv, cwd=work, runs=RUNS)
            (with_cg if cgroups else without).extend(took)
            rounds.append(("cgroups" if cgroups else "none", statistics.median(took)))
            stop_agents()
        say("managed_N3_n12_cgroups", statistics.median(with_cg), "ms")
        say("managed_N3_n12_no_cgroups", statistics.median(without), "ms")
        # The same mode's two rounds differ by drift alone: the noise a difference between the
        # modes must clear before it means anything.
        print("managed rounds (median each): " + ", ".join(f"{m} {v:.1f} ms" for m, v in rounds))
        say("managed same-mode drift (cgroups)", abs(rounds[0][1] - rounds[2][1]), "ms")
        say("managed same-mode drift (none)", abs(rounds[1][1] - rounds[3][1]), "ms")
        # The agents' own account of the cgroup work (per node and job), from their logs:
        # what a noisy machine's end-to-end medians cannot resolve.
        import re
        spent = {}
        for i in range(1, 4):
            for mode in ("cgroups", "none"):
                for line in open(f"{work}/agent{i}-{mode}.log"):
                    m = re.search(r" cgroup_us=(\d+)", line)
                    if m:
                        what = "job cgroup made" if "job cgroup made" in line else \
                            "step cgroup made ahead, narrowed" if "narrowed" in line else \
                            "step cgroup made (ahead, or at the launch)" if "part cgroup made" in line else \
                            "one-step job's step ended (its leftovers killed)" if "in its job's cgroup" in line else \
                            "step cgroup ended" if "step_" in line else "job cgroup ended"
                        spent.setdefault(what, []).append(int(m.group(1)) / 1000)
                    # The agent's whole share of a step's launch path, with and without cgroups:
                    # launch request checked -> proxy spawned (its cgroup joined before exec),
                    # and proxy exited -> its figures read, before the exit frame.
                    for key, what in (("launch_us", "step launch to proxy started"),
                                      ("cgroup_ready_us", "step launch to its cgroup ready"),
                                      ("exit_us", "proxy exit to exit frame")):
                        m = re.search(key + r"=(\d+)", line)
                        if m:
                            spent.setdefault(f"{what} ({mode})", []).append(int(m.group(1)) / 1000)
        for what, ms in sorted(spent.items()):
            say(f"agent {what} (median of {len(ms)})", statistics.median(ms), "ms")
        if os.environ.get("KEEP"):
            print("logs kept in", work)
            return 0
        subprocess.run(["rm", "-rf", work])
        return 0
    finally:
        for p in procs + agents:
            try:
                p.kill()
                p.wait(timeout=5)
            except Exception:
                pass
        sh(VC, "down", "--prefix", PREFIX)
        for d in os.listdir("/sys/fs/cgroup"):
            for i in range(1, 4):
                path = f"/sys/fs/cgroup/{d}/gangway-{PREFIX}-node{i}"
                if os.path.isdir(path):
                    subprocess.run(["find", path, "-depth", "-type", "d", "-exec", "rmdir", "{}", ";"],
                                   capture_output=True)


def children(pid):
    out = []
    for task in os.listdir(f"/proc/{pid}/task") if os.path.isdir(f"/proc/{pid}/task") else []:
        try:
            out += [int(p) for p in open(f"/proc/{pid}/task/{task}/children").read().split()]
        except OSError:
            pass
    return out


def wait(cond, limit, what):
    end = time.time() + limit
    while time.time() < end:
        if cond():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def main():
    if os.geteuid() != 0:
        print("SKIP: containment needs root")
        return 77
    if os.environ.get("FAVORDYNMODS") in ("on", "off"):
        set_favordynmods(os.environ["FAVORDYNMODS"] == "on")
    join_write("before")
    local()
    code = managed()
    join_write("after")
    print()
    print(f"{'launch':<28}{'cgroups':>12}{'none':>12}{'added':>12}{'ratio':>8}")
    for name, on, off, nodes in (("run -n 4 true", "local_n4_cgroups", "local_n4_no_cgroups", 1),
                                 ("managed run -N3 -n12 true", "managed_N3_n12_cgroups", "managed_N3_n12_no_cgroups", 3)):
        if on in results and off in results:
            a, b = results[on][0], results[off][0]
            print(f"{name:<28}{a:>10.1f}ms{b:>10.1f}ms{a - b:>10.1f}ms{a / b:>8.2f}  ({(a - b) / nodes:.1f} ms per node)")
    return code


if __name__ == "__main__":
    sys.exit(main())
