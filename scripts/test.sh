#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and end-to-end tests (real MPICH, real processes,
# real sshd on namespace nodes). Tests that need root skip with a loud message when not root.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -q -- -D warnings
make -s -C examples
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# The tests write to a file, not to our pipe, and the file is followed until cargo ends: a process a
# test failed to end keeps the file open, never this script's output (a CI run waits for that pipe
# to close). The whole run is bounded so that a hang fails loudly instead of stalling CI.
limit=${GANGWAY_TEST_TIMEOUT:-2700}
started=$(date +%s)
timeout --kill-after=30 "$limit" cargo test --workspace --all-targets >"$log" 2>&1 &
cargo_pid=$!
tail -n +1 -f --pid="$cargo_pid" "$log"
status=0
wait "$cargo_pid" || status=$?
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
  echo "test.sh: the tests ran longer than ${limit}s and were stopped (GANGWAY_TEST_TIMEOUT)" >&2
fi
# One closing line over every test binary (cargo prints one per binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' "$log"
echo "test.sh: cargo test took $(($(date +%s) - started)) s"
# Name (and end) what the tests left running: any process still holding the log is one of ours.
left=""
for fd in /proc/[0-9]*/fd/[12]; do
  if [ "$(readlink "$fd" 2>/dev/null)" = "$log" ]; then
    pid=${fd#/proc/}; pid=${pid%%/*}
    case " $left " in *" $pid "*) ;; *) left="$left $pid" ;; esac
  fi
done
for pid in $left; do
  echo "test.sh: LEFT RUNNING by a test, ended now: pid $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" >&2
  kill -KILL "$pid" 2>/dev/null || true
done
exit "$status"
