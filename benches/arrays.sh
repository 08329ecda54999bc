#!/usr/bin/env bash
# benches/arrays.sh - what a 100,000-task job array costs the controller: the time to submit it
# (one request, one row), to list the queue with it waiting, the size of its row, and that a
# `kill -9` of the controller loses nothing of it. The scheduling pass with it waiting is timed
# by the criterion bench beside it: `cargo bench -p gangway-scheduler --bench arrays`.
#
#   benches/arrays.sh                            # gangway from target/release/gangway
#   GANGWAY=target/debug/gangway benches/arrays.sh
#   TASKS=1000000 benches/arrays.sh              # indexes 0..TASKS-1 (max_array_size follows)
#
# The controller runs alone on this machine with three configured nodes that never register:
# nothing starts, so the array stays whole and waiting, the case the issue asks about.
# Prints one line per figure; exit status 0 when every step worked, 1 otherwise, 2 on a
# missing binary.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GANGWAY=${GANGWAY:-$ROOT/target/release/gangway}
TASKS=${TASKS:-100000}
[ -x "$GANGWAY" ] || { echo "arrays.sh: no gangway binary at $GANGWAY (cargo build --release)" >&2; exit 2; }

dir=$(mktemp -d /tmp/gangway-arrays-bench.XXXXXX)
pid=""
stop() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
}
trap 'stop; rm -rf "$dir"' EXIT

"$GANGWAY" keygen "$dir/key" >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$dir/gangway.toml" <<EOF
cluster = "bench"
listen = "127.0.0.1:$port"
socket = "$dir/ctl.sock"
state_dir = "$dir/state"
key_file = "$dir/key"
max_array_size = $((TASKS + 1))
[[partition]]
name = "batch"
nodes = "node[1-3]"
default = true
EOF

start() {
  rm -f "$dir/ctl.sock"
  "$GANGWAY" controller --config "$dir/gangway.toml" --log warn </dev/null >>"$dir/controller.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do [ -S "$dir/ctl.sock" ] && return 0; sleep 0.05; done
  echo "arrays.sh: the controller did not start:" >&2; cat "$dir/controller.log" >&2; exit 1
}
ms() { date +%s%N; }
export GANGWAY_CONTROLLER="$dir/ctl.sock"

start
last=$((TASKS - 1))
t0=$(ms)
id=$("$GANGWAY" batch --parsable --array="0-$last%50" --wrap true </dev/null)
t1=$(ms)
echo "submit --array=0-$last%50: $(( (t1 - t0) / 1000000 )) ms (job $id; one request, the CLI's start included)"
t0=$(ms)
line=$("$GANGWAY" queue --noheader -o '%i %t %r' </dev/null | tr -s ' ')
t1=$(ms)
echo "queue with it waiting: $(( (t1 - t0) / 1000000 )) ms, one line: $line"
rows=$(python3 -c "import sqlite3,sys; d=sqlite3.connect('$dir/state/gangway.db'); print(d.execute('select count(*), sum(length(data)) from jobs').fetchone())")
echo "stored: (rows, bytes) = $rows"
kill -9 "$pid"; wait "$pid" 2>/dev/null || true; pid=""
t0=$(ms)
start
t1=$(ms)
after=$("$GANGWAY" queue --noheader -o '%i %t' </dev/null | tr -s ' ')
echo "restart after kill -9: $(( (t1 - t0) / 1000000 )) ms to the socket; queue: $after"
[ "$after" = "${id}_[0-$last%50] PD" ] || { echo "arrays.sh: the array did not come back whole" >&2; exit 1; }
