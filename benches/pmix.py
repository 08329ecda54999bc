#!/usr/bin/env python3
"""benches/pmix.py - Open MPI under `gangway run` (PMIx) vs Open MPI's own `mpirun.openmpi`.

The Open MPI hello (examples/hello.c built with mpicc.openmpi: MPI_Init, barrier, allreduce,
barrier, MPI_Finalize) at 4 ranks on this machine and at 12 ranks across 3 virtual nodes (4 per
node), each launcher timed in alternation, run after run, so both see the same machine load.
Prints the medians and the ratio gangway/mpirun per row, and a breakdown of where a gangway run's
time goes (from `gangway run -v`).

    sudo benches/pmix.py                     # gangway from target/release/gangway
    RUNS=20 sudo -E benches/pmix.py

Needs root (the virtual cluster), openmpi-bin + libopenmpi-dev, libpmix2. Brings up its own
cluster (tests/cluster/vcluster up 3 --prefix pmb<pid>) and always takes it down. Environment:
GANGWAY (binary, default target/release/gangway), RUNS (>= 10, default 10), CMD_TIMEOUT (s, 60).
Exit status: 0 ran; 1 a command failed; 2 missing tool; 77 no virtual cluster.
"""

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GANGWAY = os.path.join(ROOT, os.environ.get("GANGWAY", "target/release/gangway"))
RUNS = max(10, int(os.environ.get("RUNS", "10")))
TIMEOUT = int(os.environ.get("CMD_TIMEOUT", "60"))
MPIRUN = "mpirun.openmpi"
VCLUSTER = os.path.join(ROOT, "tests/cluster/vcluster")


def die(code, msg):
    print(f"pmix.py: {msg}", file=sys.stderr)
    sys.exit(code)


def timed(cmd, env=None):
    """Runs cmd once; returns (seconds, stdout, stderr) or raises on failure or hang."""
    start = time.perf_counter()
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=TIMEOUT, env=env)
    took = time.perf_counter() - start
    if p.returncode != 0 or "allreduce ok" not in p.stdout:
        raise RuntimeError(f"{' '.join(cmd)}: exit {p.returncode}\n{p.stdout}\n{p.stderr}")
    return took, p.stdout, p.stderr


def side_by_side(label, commands):
    """Times every command RUNS times, in alternation (one warm-up each first)."""
    times = {name: [] for name in commands}
    for name, cmd in commands.items():
        timed(cmd)
    for _ in range(RUNS):
        for name, cmd in commands.items():
            times[name].append(timed(cmd)[0])
    med = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    spread = {name: (min(t) * 1e3, max(t) * 1e3) for name, t in times.items()}
    return label, med, spread


def side_by_side_plain(commands):
    """Medians (ms) of commands that are not the hello, alternated like `side_by_side`."""
    times = {name: [] for name in commands}
    for _ in range(RUNS):
        for name, cmd in commands.items():
            start = time.perf_counter()
            subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT,
                           check=True)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def breakdown(cmd):
    """Where a gangway run's time goes, from its own -v lines (median over 5 runs)."""
    fields = {"started": [], "ended": []}
    for _ in range(5):
        _, _, err = timed(cmd[:2] + ["-v"] + cmd[2:])
        m = re.search(r"started \d+ rank\(s\) of \S+ in ([\d.]+) ms", err)
        m = m or re.search(r"all \d+ ranks started in ([\d.]+) ms", err)
        e = re.search(r"ended after ([\d.]+) ms", err)
        if m:
            fields["started"].append(float(m.group(1)))
        if e:
            fields["ended"].append(float(e.group(1)))
    return {k: statistics.median(v) for k, v in fields.items() if v}


def main():
    if os.geteuid() != 0:
        die(77, "needs root for the virtual cluster")
    for tool in (MPIRUN, "mpicc.openmpi"):
        if not shutil.which(tool):
            die(2, f"{tool} missing: apt-get install openmpi-bin libopenmpi-dev")
    if not os.access(GANGWAY, os.X_OK):
        die(2, f"{GANGWAY} missing: cargo build --release")
    subprocess.run(["make", "-s", "-C", os.path.join(ROOT, "examples"), "openmpi"], check=True)
    hello = os.path.join(ROOT, "examples/bin-openmpi/hello")

    # Somewhere every virtual node sees (their /tmp is their own).
    shared = tempfile.mkdtemp(prefix="gangway-pmix-bench-", dir="/var/tmp")
    os.chmod(shared, 0o755)
    for src, name in ((GANGWAY, "gangway"), (hello, "hello")):
        shutil.copy(src, os.path.join(shared, name))
        os.chmod(os.path.join(shared, name), 0o755)
    prefix = f"pmb{os.getpid() % 0xfffff:x}"
    rows = []
    try:
        up = subprocess.run([VCLUSTER, "up", "3", "--prefix", prefix], capture_output=True,
                            text=True)
        if up.returncode == 77:
            die(77, up.stderr.strip())
        if up.returncode != 0:
            die(1, f"vcluster up failed: {up.stderr}")
        env = dict(re.findall(r'^export (\w+)="?([^"\n]*)"?$', subprocess.run(
            [VCLUSTER, "env", "--prefix", prefix], capture_output=True, text=True).stdout, re.M))
        hosts_file = os.path.join(shared, "hosts.openmpi")
        with open(hosts_file, "w") as f:
            for a in env["VCLUSTER_ADDRS"].split():
                f.write(f"{a} slots=4\n")
        node_hello = os.path.join(shared, "hello")
        node_gangway = os.path.join(shared, "gangway")

        gw_local = [GANGWAY, "run", "-n", "4", "--mpi=pmix", hello]
        mr_local = [MPIRUN, "--allow-run-as-root", "--oversubscribe", "-n", "4", hello]
        rows.append(side_by_side("4 ranks, this machine", {"gangway": gw_local, "mpirun": mr_local}))

        gw_multi = [GANGWAY, "run", "--mpi=pmix", "--hosts", env["VCLUSTER_ADDRS"].replace(" ", ","),
                    "--ssh-config", env["VCLUSTER_SSH_CONFIG"], "--proxy-path", node_gangway,
                    "-D", shared, "-n", "12", "--ntasks-per-node", "4", node_hello]
        mr_multi = [MPIRUN, "--allow-run-as-root", "--mca", "plm_rsh_agent", "ssh",
                    "--mca", "plm_rsh_args", f"-F {env['VCLUSTER_SSH_CONFIG']}",
                    "--hostfile", hosts_file, "--oversubscribe", "-n", "12",
                    "--map-by", "ppr:4:node", node_hello]
        rows.append(side_by_side("12 ranks, 3 virtual nodes", {"gangway": gw_multi, "mpirun": mr_multi}))
        local_parts = breakdown(gw_local)
        multi_parts = breakdown(gw_multi)
        # What the launch alone costs, without MPI: no PMI at all, and with the PMIx server.
        floor = side_by_side_plain({
            "true, --mpi=none": [GANGWAY, "run", "-n", "4", "--mpi=none", "true"],
            "true, --mpi=pmix": [GANGWAY, "run", "-n", "4", "--mpi=pmix", "true"],
            "true, --mpi=auto": [GANGWAY, "run", "-n", "4", "--mpi=auto", "true"],
        })
    except RuntimeError as e:
        print(f"pmix.py: a run failed: {e}", file=sys.stderr)
        return 1
    finally:
        subprocess.run([VCLUSTER, "down", "--prefix", prefix], capture_output=True)
        shutil.rmtree(shared, ignore_errors=True)

    print(f"# Open MPI hello: gangway run --mpi=pmix vs {MPIRUN}, medians of {RUNS} alternated runs")
    print(f"# {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, {os.cpu_count()} CPUs; "
          f"{subprocess.run([MPIRUN, '--version'], capture_output=True, text=True).stdout.splitlines()[0]}")
    print(f"{'case':28} {'gangway ms':>11} {'mpirun ms':>10} {'gangway/mpirun':>15}   (min-max gangway | mpirun)")
    for label, med, spread in rows:
        g, m = med["gangway"], med["mpirun"]
        print(f"{label:28} {g:11.0f} {m:10.0f} {g / m:14.2f}x   "
              f"({spread['gangway'][0]:.0f}-{spread['gangway'][1]:.0f} | "
              f"{spread['mpirun'][0]:.0f}-{spread['mpirun'][1]:.0f})")
    print("# where gangway's time goes (its -v lines, median of 5): ranks started after "
          f"{local_parts.get('started', float('nan')):.0f} ms, job over after "
          f"{local_parts.get('ended', float('nan')):.0f} ms (4 local); started after "
          f"{multi_parts.get('started', float('nan')):.0f} ms, over after "
          f"{multi_parts.get('ended', float('nan')):.0f} ms (12 on 3 nodes). The rest of each run "
          "is the ranks' own MPI_Init/MPI_Finalize.")
    print("# launch floor, gangway run -n 4 true (no MPI_Init): " + ", ".join(
        f"{name} {ms:.1f} ms" for name, ms in floor.items()))
    print("# target (issue 14): gangway <= 0.25x mpirun")
    return 0


if __name__ == "__main__":
    sys.exit(main())
