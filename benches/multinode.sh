#!/usr/bin/env bash
# benches/multinode.sh - multi-node launch latency on a 3-node virtual cluster, side by side in
# one run: `gangway run` vs MPICH's `mpiexec.hydra -launcher ssh` vs Open MPI's `mpirun.openmpi`,
# plus the floor (one parallel round of `ssh nodeI true` to the 3 nodes, measured again before
# each N's row).
#
#   sudo benches/multinode.sh                    # gangway from target/release/gangway
#   RUNS=20 NS="3 12" sudo -E benches/multinode.sh
#
# It brings up its own cluster (tests/cluster/vcluster up 3 --prefix $PREFIX) and always tears it
# down (trap on EXIT/INT/TERM/HUP). Needs root (the harness does), hyperfine, python3, and the MPI
# builds: `make -C examples ofi` (the PyPI mpich wheel: its mpiexec.hydra and examples/bin-ofi/hello)
# and, for the mpirun column, openmpi-bin + libopenmpi-dev and `make -C examples openmpi`
# (examples/bin-openmpi/hello). Missing builds are made.
#
# Environment:
#   GANGWAY       gangway binary (default target/release/gangway, relative to the repo root)
#   GANGWAY_ARGS  host selection for gangway, word-split after the vcluster env is loaded, so
#                 '$VCLUSTER_…' references work (single-quote them). Default:
#                 '--hostfile $VCLUSTER_HOSTFILE --ssh-config $VCLUSTER_SSH_CONFIG' (the cluster's
#                 ssh config: User gwtest, its key, its known_hosts).
#   GANGWAY_PPN_FLAG  gangway's ranks-per-node flag (default --ntasks-per-node)
#   RUNS          timed runs per command (default 10, at least 10)
#   WARMUP        warm-up runs per command (default 1)
#   NS            total rank counts, multiples of 3, placed in blocks of N/3 per node (default
#                 "3 12 48"; 12 and 48 oversubscribe the 2-core host)
#   HYDRA         mpiexec.hydra to use (default: the wheel's, target/mpich-wheel/prefix/bin/…;
#                 HYDRA=mpiexec.hydra for Debian's — but Debian's MPICH/UCX hello hangs across
#                 these nodes, so hydra's hello is then skipped unless HYDRA_HELLO is set)
#   MPIRUN        Open MPI launcher (default mpirun.openmpi)
#   CMD_TIMEOUT   seconds before one launch counts as hung and is killed (default 60); every
#                 timed command runs under `timeout -k 5 CMD_TIMEOUT` (same for all columns)
#   PREFIX        vcluster prefix (default mnb<pid in hex>, unique per run)
#   OUT_DIR       hyperfine JSON, logs, ssh wrapper (default: a new temp directory, printed)
#
# Programs: `true` and the MPI hello (allreduce) at each N. Each launcher runs the hello built
# for its own MPI: gangway and hydra run examples/bin-ofi/hello (wheel MPICH, ch4:ofi; ranks get
# MPIR_CVAR_CH4_NETMOD=ofi FI_PROVIDER=tcp from the environment, hydra also by -genv), mpirun runs
# examples/bin-openmpi/hello. Every command is run once untimed first and must succeed (the hello's rank 0 must print "allreduce ok") before it is
# timed; a launcher that fails gets "fail" in its cell, one that hangs (a run exceeded
# CMD_TIMEOUT) "hang", one not run "-"; never a number. Cells are hyperfine medians.
#
# Exit status: 0 everything ran; 3 gangway missing or unable to launch across the nodes (the
# others are still measured); 1 some command failed; 2 missing tool; 77 vcluster skipped.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2

GANGWAY=${GANGWAY:-target/release/gangway}
GANGWAY_ARGS=${GANGWAY_ARGS:-'--hostfile $VCLUSTER_HOSTFILE --ssh-config $VCLUSTER_SSH_CONFIG'}
GANGWAY_PPN_FLAG=${GANGWAY_PPN_FLAG:---ntasks-per-node}
RUNS=${RUNS:-10}
WARMUP=${WARMUP:-1}
NS=${NS:-"3 12 48"}
CMD_TIMEOUT=${CMD_TIMEOUT:-60}
WHEEL_PREFIX=$ROOT/target/mpich-wheel/prefix
HYDRA=${HYDRA:-$WHEEL_PREFIX/bin/mpiexec.hydra}
MPIRUN=${MPIRUN:-mpirun.openmpi}
PREFIX=${PREFIX:-mnb$(printf %x $$)}
OUT_DIR=${OUT_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/gangway-multinode.XXXXXX")}
VC=$ROOT/tests/cluster/vcluster
HELLO_OFI=$ROOT/examples/bin-ofi/hello
HELLO_OMPI=$ROOT/examples/bin-openmpi/hello
NNODES=3

die() { echo "multinode.sh: $*" >&2; exit 2; }
note() { echo "multinode.sh: $*" >&2; }

command -v hyperfine >/dev/null || die "hyperfine not found (apt-get install hyperfine)"
command -v python3 >/dev/null || die "python3 not found"
[ "$RUNS" -ge 10 ] 2>/dev/null || die "RUNS must be a number >= 10 (got '$RUNS')"
for n in $NS; do
    [ "$n" -ge "$NNODES" ] 2>/dev/null && [ $((n % NNODES)) = 0 ] || die "NS entries must be multiples of $NNODES (got '$n')"
done
[[ $PREFIX =~ ^[a-z][a-z0-9]{0,9}$ ]] || die "bad PREFIX '$PREFIX'"

# --- builds ----------------------------------------------------------------------------------
if [ ! -x "$HELLO_OFI" ] || [ ! -x "$WHEEL_PREFIX/bin/mpiexec.hydra" ]; then
    note "building the mpich wheel examples (make -C examples ofi) ..."
    make -s -C examples ofi >&2 || die "make -C examples ofi failed"
fi
have_mpirun=1
if ! command -v "$MPIRUN" >/dev/null; then
    have_mpirun=0
    note "$MPIRUN not found (apt-get install openmpi-bin libopenmpi-dev): mpirun column skipped"
elif [ ! -x "$HELLO_OMPI" ]; then
    note "building Open MPI's hello (make -C examples openmpi) ..."
    make -s -C examples openmpi >&2 || { have_mpirun=0; note "make -C examples openmpi failed: mpirun column skipped"; }
fi
command -v "$HYDRA" >/dev/null || die "$HYDRA not found"
hydra_hello=$HELLO_OFI
if [ "$HYDRA" != "$WHEEL_PREFIX/bin/mpiexec.hydra" ] && [ -z "${HYDRA_HELLO:-}" ]; then
    hydra_hello=""
    note "HYDRA=$HYDRA is not the wheel's: hydra's hello skipped (set HYDRA_HELLO=prog to force one)"
elif [ -n "${HYDRA_HELLO:-}" ]; then
    hydra_hello=$HYDRA_HELLO
fi

have_gangway=1
gangway_why=""
if [ ! -x "$GANGWAY" ]; then
    have_gangway=0
    gangway_why="binary not found at '$GANGWAY' (cargo build --release, or set GANGWAY=path)"
fi

# --- the cluster -----------------------------------------------------------------------------
mkdir -p "$OUT_DIR" || die "cannot create $OUT_DIR"
cleanup() {
    "$VC" down --prefix "$PREFIX" >/dev/null 2>&1 || "$VC" down --prefix "$PREFIX" >&2
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

up_out=$("$VC" up "$NNODES" --prefix "$PREFIX" 2>&1)
rc=$?
if [ "$rc" = 77 ]; then
    echo "$up_out" >&2
    note "SKIP: no virtual cluster"
    exit 77
elif [ "$rc" != 0 ]; then
    echo "$up_out" >&2
    note "vcluster up failed (exit $rc)"
    exit 1
fi
env_out=$("$VC" env --prefix "$PREFIX") || { note "vcluster env failed"; exit 1; }
eval "$env_out"
read -r -a NODES <<<"$VCLUSTER_NODES"
read -r -a ADDRS <<<"$VCLUSTER_ADDRS"

# ssh wrapper for hydra (-launcher-exec) and for the floor; runs on the host only.
SSH_WRAP=$OUT_DIR/vc-ssh
printf '#!/bin/sh\nexec ssh -F %s "$@"\n' "$VCLUSTER_SSH_CONFIG" >"$SSH_WRAP"
chmod +x "$SSH_WRAP"
# The floor: one parallel round of `ssh nodeI true` to every node.
FLOOR=$OUT_DIR/ssh-round
{
    echo '#!/bin/sh'
    for h in "${NODES[@]}"; do echo "ssh -F '$VCLUSTER_SSH_CONFIG' $h true &"; done
    echo 'wait'
} >"$FLOOR"
chmod +x "$FLOOR"
# Open MPI hostfile by address (the host cannot resolve nodeI; ssh -F maps the names, but
# orted/mpirun then try to resolve them, which costs time). One slot per node: more ranks
# than that is oversubscription, which Open MPI then knows about (it yields when idle).
OMPI_HOSTS=$OUT_DIR/hosts.openmpi
for a in "${ADDRS[@]}"; do echo "$a slots=1"; done >"$OMPI_HOSTS"

# Ranks of the wheel's MPICH use libfabric (ch4:ofi), not the bundled UCX, and libfabric's tcp
# provider: the one MPICH picks by default, `sockets`, hung in MPI_Init in about 1 of 25 runs here.
export MPIR_CVAR_CH4_NETMOD=ofi FI_PROVIDER=tcp

eval "set -- $GANGWAY_ARGS"
GW_HOST_ARGS=("$@")

echo "# multi-node launch benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname), $(nproc) CPUs, $(uname -sr)"
echo "# vcluster '$PREFIX': ${NNODES} nodes ${VCLUSTER_ADDRS}, host ${VCLUSTER_HOST_ADDR}, ssh as ${VCLUSTER_USER}"
echo "# $(hyperfine --version); hydra: $HYDRA ($("$HYDRA" --version 2>/dev/null | awk -F: '/Version:/ {gsub(/ /,"",$2); print $2; exit}'))"
if [ "$have_mpirun" = 1 ]; then
    echo "# mpirun: $(command -v "$MPIRUN") ($("$MPIRUN" --version 2>/dev/null | head -1))"
fi
echo "# medians of $RUNS runs (+$WARMUP warm-up) each; hyperfine JSON and logs in $OUT_DIR"

failed=0
# check NAME PROG -- CMD...: one untimed run; for the hello, rank 0's "allreduce ok" is required.
check() {
    local name=$1 prog=$2; shift 3
    local rc=0
    timeout -k 5 "$CMD_TIMEOUT" "$@" >"$OUT_DIR/$name.out" 2>"$OUT_DIR/$name.err" </dev/null || rc=$?
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        note "'$*' HUNG (killed after ${CMD_TIMEOUT} s): $(tail -n 3 "$OUT_DIR/$name.err" | tr '\n' ' ')"
        touch "$OUT_DIR/$name.hang"
        return 1
    elif [ "$rc" != 0 ]; then
        note "'$*' failed (exit $rc): $(tail -n 3 "$OUT_DIR/$name.err" | tr '\n' ' ')"
        touch "$OUT_DIR/$name.fail"
        return 1
    fi
    if [ "$prog" = hello ] && ! grep -q '^allreduce ok' "$OUT_DIR/$name.out"; then
        note "'$*': no 'allreduce ok' in the output ($OUT_DIR/$name.out)"
        touch "$OUT_DIR/$name.fail"
        return 1
    fi
    return 0
}
# measure NAME PROG -- CMD...
measure() {
    local name=$1 prog=$2
    check "$@" || { failed=1; return; }
    shift 3
    if ! hyperfine -N --style none --runs "$RUNS" --warmup "$WARMUP" \
            --export-json "$OUT_DIR/$name.json" -- \
            "$(printf '%q ' timeout -k 5 "$CMD_TIMEOUT" "$@")" \
            >/dev/null 2>"$OUT_DIR/$name.err"; then
        if grep -q -E 'exit code: (124|137)' "$OUT_DIR/$name.err"; then
            note "'$*' HUNG in a timed run (killed after ${CMD_TIMEOUT} s)"
            touch "$OUT_DIR/$name.hang"
        else
            note "hyperfine failed for '$*': $(tail -n 3 "$OUT_DIR/$name.err" | tr '\n' ' ')"
            touch "$OUT_DIR/$name.fail"
        fi
        rm -f "$OUT_DIR/$name.json"
        failed=1
    fi
}

# Can this gangway launch across the nodes at all? One rank per node must print 3 hostnames.
if [ "$have_gangway" = 1 ]; then
    if ! "$GANGWAY" run --help 2>/dev/null | grep -q -e '--hostfile'; then
        have_gangway=0
        gangway_why="'$GANGWAY run' has no --hostfile option: multi-node launch not built yet"
    else
        rc=0
        out=$(timeout 30 "$GANGWAY" run "${GW_HOST_ARGS[@]}" -n "$NNODES" "$GANGWAY_PPN_FLAG" 1 hostname </dev/null 2>"$OUT_DIR/gangway-probe.err") || rc=$?
        got=$(printf '%s\n' "$out" | sort | tr '\n' ' ')
        want=$(printf '%s\n' "${NODES[@]}" | sort | tr '\n' ' ')
        if [ "$rc" != 0 ] || [ "$got" != "$want" ]; then
            have_gangway=0
            gangway_why="cannot run across the nodes yet: '$GANGWAY run ${GW_HOST_ARGS[*]} -n $NNODES $GANGWAY_PPN_FLAG 1 hostname' exit $rc, printed '${got% }' (want '${want% }'): $(tail -n 2 "$OUT_DIR/gangway-probe.err" | tr '\n' ' ')"
        fi
    fi
fi
if [ "$have_gangway" = 1 ]; then
    echo "# gangway: $GANGWAY ($("$GANGWAY" --version 2>/dev/null | head -1)) run ${GW_HOST_ARGS[*]}"
else
    echo "# gangway: SKIPPED, $gangway_why"
    note "gangway column SKIPPED: $gangway_why"
fi

TRUE_BIN=$(type -P true)
for n in $NS; do
    ppn=$((n / NNODES))
    # The floor is measured again for every N, so each row compares with a floor taken at the
    # same time (the load on a shared machine drifts).
    note "measuring the ssh floor (n=$n row) ..."
    measure "floor-ssh-$n" true -- "$FLOOR"
    for prog in true hello; do
        note "measuring n=$n ($ppn per node) $prog ..."
        if [ "$prog" = true ]; then
            hp=$TRUE_BIN; op=$TRUE_BIN; gp=$TRUE_BIN
        else
            hp=$hydra_hello; op=$HELLO_OMPI; gp=$HELLO_OFI
        fi
        if [ -n "$hp" ]; then
            measure "hydra-$prog-$n" "$prog" -- "$HYDRA" -launcher ssh -launcher-exec "$SSH_WRAP" \
                -localhost "$VCLUSTER_HOST_ADDR" -f "$VCLUSTER_HOSTFILE" -ppn "$ppn" -n "$n" \
                -genv MPIR_CVAR_CH4_NETMOD ofi -genv FI_PROVIDER tcp "$hp"
        fi
        if [ "$have_mpirun" = 1 ]; then
            ompi=("$MPIRUN")
            [ "$(id -u)" = 0 ] && ompi+=(--allow-run-as-root)
            measure "mpirun-$prog-$n" "$prog" -- "${ompi[@]}" --mca plm_rsh_agent ssh \
                --mca plm_rsh_args "-F $VCLUSTER_SSH_CONFIG" --hostfile "$OMPI_HOSTS" \
                --oversubscribe -n "$n" --map-by "ppr:$ppn:node" "$op"
        fi
        if [ "$have_gangway" = 1 ]; then
            measure "gangway-$prog-$n" "$prog" -- "$GANGWAY" run \
                "${GW_HOST_ARGS[@]}" -n "$n" "$GANGWAY_PPN_FLAG" "$ppn" "$gp"
        fi
    done
done

python3 - "$OUT_DIR" "$NS" "$NNODES" <<'PY'
import json, os, sys
out, ns, nn = sys.argv[1], sys.argv[2].split(), int(sys.argv[3])

def median_ms(name):
    try:
        with open(os.path.join(out, name + ".json")) as f:
            return json.load(f)["results"][0]["median"] * 1000.0
    except (OSError, KeyError, IndexError, ValueError):
        return None

def cell(name):
    x = median_ms(name)
    if x is not None:
        return f"{x:.0f}"
    for mark in ("hang", "fail"):
        if os.path.exists(os.path.join(out, f"{name}.{mark}")):
            return mark
    return "-"

ratio = lambda a, b: "-" if a is None or b is None or b == 0 else f"{a / b:.2f}x"

hdr = ("N", "per node", "program", "ssh floor ms", "hydra ms", "mpirun ms", "gangway ms",
       "gangway/hydra", "gangway/mpirun", "gangway/floor")
rows = []
for n in ns:
    for prog in ("true", "hello"):
        hy, mr, gw, floor = (median_ms(f"{k}-{n}") for k in (f"hydra-{prog}", f"mpirun-{prog}",
                                                              f"gangway-{prog}", "floor-ssh"))
        rows.append((n, int(n) // nn, prog, cell(f"floor-ssh-{n}"), cell(f"hydra-{prog}-{n}"),
                     cell(f"mpirun-{prog}-{n}"), cell(f"gangway-{prog}-{n}"),
                     ratio(gw, hy), ratio(gw, mr), ratio(gw, floor)))
w = [max(len(str(r[i])) for r in rows + [hdr]) for i in range(len(hdr))]
line = lambda r: "  ".join(str(c).ljust(w[i]) if i == 2 else str(c).rjust(w[i]) for i, c in enumerate(r))
print()
print(line(hdr))
print("  ".join("-" * x for x in w))
for r in rows:
    print(line(r))
print()
print(f"ssh floor = one parallel round of `ssh -F cfg nodeI true` to the {nn} nodes (as gwtest), measured per N")
print("hydra: wheel MPICH's mpiexec.hydra -launcher ssh; mpirun: Open MPI's mpirun.openmpi (its own hello)")
print("hang = a run exceeded CMD_TIMEOUT and was killed; fail = non-zero exit or no 'allreduce ok'; - = not run")
print("target (issue 4): gangway/hydra <= 0.7x, gangway/mpirun <= 0.5x, gangway/floor <= 1.2x")
PY

if [ "$have_gangway" = 0 ]; then
    note "gangway column empty: $gangway_why"
    exit 3
fi
exit "$failed"
