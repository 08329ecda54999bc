#!/usr/bin/env bash
# benches/launch.sh - launch latency of `gangway run` vs `mpiexec.hydra`, side by side,
# in one run on this machine, plus the floor (plain fork+exec of N `true` and wait).
#
#   benches/launch.sh                       # gangway from target/release/gangway
#   GANGWAY=target/debug/gangway benches/launch.sh
#   RUNS=30 NS="1 4 16 32" benches/launch.sh
#
# Environment:
#   GANGWAY   gangway binary (default target/release/gangway, relative to the repo root)
#   RUNS      timed runs per command (default 20, at least 10)
#   WARMUP    warm-up runs per command (default 3)
#   NS        rank counts (default "1 4 16")
#   OUT_DIR   where hyperfine's JSON goes (default: a new temp directory, printed)
#
# Programs: (a) `true`, (b) examples/bin/hello (built with `make -C examples` if missing).
# Every cell is the median wall time of RUNS runs, from `hyperfine -N` (no shell),
# output discarded. The floor column is benches/floor.c (examples/bin/floor) running N
# copies of the same program directly, with no PMI and no I/O forwarding; for hello
# that means N unconnected MPI singletons, so it is only a rough reference.
#
# Exit status: 0 if everything ran; 3 if the gangway binary is missing (hydra and the
# floor are still measured); 1 if some command failed; 2 on a missing tool.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2

GANGWAY=${GANGWAY:-target/release/gangway}
RUNS=${RUNS:-20}
WARMUP=${WARMUP:-3}
NS=${NS:-"1 4 16"}
OUT_DIR=${OUT_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/gangway-bench.XXXXXX")}
HYDRA=${HYDRA:-mpiexec.hydra}
HELLO=examples/bin/hello
FLOOR=examples/bin/floor

die() { echo "launch.sh: $*" >&2; exit 2; }

command -v hyperfine >/dev/null || die "hyperfine not found (apt-get install hyperfine)"
command -v python3 >/dev/null || die "python3 not found"
command -v "$HYDRA" >/dev/null || die "$HYDRA not found (apt-get install mpich)"
[ "$RUNS" -ge 10 ] 2>/dev/null || die "RUNS must be a number >= 10 (got '$RUNS')"

if [ ! -x "$HELLO" ] || [ ! -x "$FLOOR" ]; then
    echo "building examples (make -C examples c) ..." >&2
    make -s -C examples c >&2 || die "make -C examples c failed"
fi
TRUE_BIN=$(type -P true) || die "no true(1) binary in PATH"

have_gangway=1
if [ ! -x "$GANGWAY" ]; then
    have_gangway=0
    echo "launch.sh: gangway binary NOT FOUND at '$GANGWAY'" >&2
    echo "           build it with 'cargo build --release' or set GANGWAY=path; measuring hydra and the floor only." >&2
fi
mkdir -p "$OUT_DIR"

echo "# launch benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname), $(nproc) CPUs, $(uname -sr)"
echo "# $(hyperfine --version); $("$HYDRA" --version 2>/dev/null | awk -F: '/Version:/ {gsub(/ /,"",$2); print "hydra " $2; exit}')"
if [ "$have_gangway" = 1 ]; then
    echo "# gangway: $GANGWAY ($("$GANGWAY" --version 2>/dev/null | head -1))"
fi
echo "# medians of $RUNS runs (+$WARMUP warm-up) each; hyperfine JSON in $OUT_DIR"

failed=0
# measure NAME -- CMD...: one hyperfine per command, so a failure is attributed.
measure() {
    local name=$1; shift; shift
    local json="$OUT_DIR/$name.json"
    # One untimed sanity run that shows the error if the command is broken.
    local rc=0
    "$@" >/dev/null 2>"$OUT_DIR/$name.err" </dev/null || rc=$?
    if [ "$rc" != 0 ]; then
        echo "launch.sh: '$*' failed (exit $rc): $(tail -n 3 "$OUT_DIR/$name.err" | tr '\n' ' ')" >&2
        failed=1
        return
    fi
    if ! hyperfine -N --style none --runs "$RUNS" --warmup "$WARMUP" \
            --export-json "$json" -- "$(printf '%q ' "$@")" >/dev/null 2>"$OUT_DIR/$name.err"; then
        echo "launch.sh: hyperfine failed for '$*': $(tail -n 3 "$OUT_DIR/$name.err" | tr '\n' ' ')" >&2
        rm -f "$json"
        failed=1
    fi
}

for n in $NS; do
    for prog in true hello; do
        if [ "$prog" = true ]; then p=$TRUE_BIN; else p=$ROOT/$HELLO; fi
        echo "measuring n=$n $prog ..." >&2
        measure "floor-$prog-$n" -- "$FLOOR" "$n" "$p"
        measure "hydra-$prog-$n" -- "$HYDRA" -n "$n" "$p"
        if [ "$have_gangway" = 1 ]; then
            measure "gangway-$prog-$n" -- "$GANGWAY" run -n "$n" "$p"
        fi
    done
done

python3 - "$OUT_DIR" "$NS" <<'PY'
import json, os, sys
out, ns = sys.argv[1], sys.argv[2].split()

def median_ms(name):
    path = os.path.join(out, name + ".json")
    try:
        with open(path) as f:
            return json.load(f)["results"][0]["median"] * 1000.0
    except (OSError, KeyError, IndexError, ValueError):
        return None

def fmt(x):
    return "-" if x is None else f"{x:.2f}"

def ratio(a, b):
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}x"

hdr = ("N", "program", "floor ms", "hydra ms", "gangway ms", "gangway/hydra", "gangway/floor")
rows = []
for n in ns:
    for prog in ("true", "hello"):
        fl, hy, gw = (median_ms(f"{k}-{prog}-{n}") for k in ("floor", "hydra", "gangway"))
        rows.append((n, prog, fmt(fl), fmt(hy), fmt(gw), ratio(gw, hy), ratio(gw, fl)))
w = [max(len(str(r[i])) for r in rows + [hdr]) for i in range(len(hdr))]
line = lambda r: "  ".join(str(c).rjust(w[i]) if i != 1 else str(c).ljust(w[i]) for i, c in enumerate(r))
print()
print(line(hdr))
print("  ".join("-" * x for x in w))
for r in rows:
    print(line(r))
print()
print("target (issue 2): gangway/hydra <= 0.5x, and gangway/floor <= 2x for `true`")
PY

if [ "$have_gangway" = 0 ]; then
    echo "launch.sh: gangway columns empty: binary not found at '$GANGWAY'" >&2
    exit 3
fi
exit "$failed"
