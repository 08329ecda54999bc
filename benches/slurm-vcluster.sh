#!/usr/bin/env bash
# benches/slurm-vcluster.sh — Debian's Slurm (slurm-wlm 22.05) on the project's virtual cluster
# (tests/cluster/vcluster), so Slurm can be timed beside gangway on the same virtual nodes.
#
#   tests/cluster/vcluster --prefix slb up 3
#   benches/slurm-vcluster.sh up                  # munged + slurmctld on the host, slurmd per node
#   source <(benches/slurm-vcluster.sh env)       # SLURM_CONF=...: sinfo/sbatch/srun talk to it
#   benches/slurm-vcluster.sh bench [--jobs 200]  # prints "slurm <metric> <value> <unit>" lines
#   benches/slurm-vcluster.sh down                # stops exactly what `up` started; idempotent
#   tests/cluster/vcluster --prefix slb down
#
# Options (before or after the command): --prefix P (default slb, the vcluster's prefix),
# --jobs K (bench: batch jobs to submit, default 200), --runs R (bench: timed runs per srun /
# squeue figure, default 10), --figures LIST (bench: subset of sbatch,srun,squeue,kill),
# --sched-params S / --cred-expire S (up: SchedulerParameters / AuthInfo cred_expire; default
# Slurm's own).  See benches/README-slurm.md.
#
# Everything lives in /run/gangway-slurm/P/ (never in the repo): slurm.conf, cgroup.conf, the munge
# key and socket, slurmctld state, slurmd spool dirs, logs, and the host PIDs we started.
#
# Exit codes: 0 ok · 1 failure · 2 usage · 77 skipped (not root, or slurm-wlm/munge not installed).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VC=$ROOT/tests/cluster/vcluster
readonly STATE_ROOT=/run/gangway-slurm
readonly EX_SKIP=77
PARTITION=""
CLUSTER=""

say()  { printf 'slurm-vcluster: %s\n' "$*" >&2; }
die()  { printf 'slurm-vcluster: error: %s\n' "$*" >&2; exit 1; }
skip() { printf 'slurm-vcluster: SKIP: %s\n' "$*" >&2; exit "$EX_SKIP"; }
usage() {
  cat <<'EOF'
usage: benches/slurm-vcluster.sh [--prefix P] [options] up|env|down|bench|status
  up      start munged + slurmctld on the host and slurmd in every node of vcluster P
  env     print export lines (SLURM_CONF=...) for the Slurm client commands
  down    stop exactly the processes `up` started (recorded host PIDs), remove the state dir
  bench   print "slurm <metric> <value> <unit>" lines (needs `up`)
  status  recorded processes and sinfo
  --prefix P        the vcluster's prefix (default slb)
  --jobs K          bench: sbatch jobs to submit (default 200)
  --runs R          bench: timed runs per srun/squeue figure, median reported (default 10)
  --figures LIST    bench: which figures, comma list of sbatch,srun,squeue,kill (default all)
  --sched-params S  up: SchedulerParameters=S (default: none, Slurm's defaults, which include
                    batch_sched_delay=3: batch jobs start at most every 3 s)
  --cred-expire S   up: AuthInfo cred_expire (Slurm's default 120 s; also the delay before a
                    requeued job may start again)
  --partition NAME  up: the one partition's name (default bench; later commands read it back)
  --cluster NAME    up: ClusterName (default gwP)
  --accounting      up: also a private MariaDB and slurmdbd, so that sacct works (needs the
                    packages slurmdbd and mariadb-server)
exit codes: 0 ok, 1 failure, 2 usage, 77 skipped (not root / slurm-wlm or munge missing)
EOF
}

PREFIX=slb
JOBS=200
RUNS=10
CRED_EXPIRE=""
ACCOUNTING=0
SCHED_PARAMS=""
FIGURES=sbatch,srun,squeue,kill
CMD=""
while (($#)); do
  case $1 in
    -p|--prefix) (($# >= 2)) || { usage >&2; exit 2; }; PREFIX=$2; shift 2 ;;
    --prefix=*) PREFIX=${1#*=}; shift ;;
    --jobs) (($# >= 2)) || { usage >&2; exit 2; }; JOBS=$2; shift 2 ;;
    --jobs=*) JOBS=${1#*=}; shift ;;
    --runs) (($# >= 2)) || { usage >&2; exit 2; }; RUNS=$2; shift 2 ;;
    --runs=*) RUNS=${1#*=}; shift ;;
    --sched-params) (($# >= 2)) || { usage >&2; exit 2; }; SCHED_PARAMS=$2; shift 2 ;;
    --sched-params=*) SCHED_PARAMS=${1#*=}; shift ;;
    --figures) (($# >= 2)) || { usage >&2; exit 2; }; FIGURES=$2; shift 2 ;;
    --figures=*) FIGURES=${1#*=}; shift ;;
    --cred-expire) (($# >= 2)) || { usage >&2; exit 2; }; CRED_EXPIRE=$2; shift 2 ;;
    --cred-expire=*) CRED_EXPIRE=${1#*=}; shift ;;
    --partition) (($# >= 2)) || { usage >&2; exit 2; }; PARTITION=$2; shift 2 ;;
    --partition=*) PARTITION=${1#*=}; shift ;;
    --cluster) (($# >= 2)) || { usage >&2; exit 2; }; CLUSTER=$2; shift 2 ;;
    --cluster=*) CLUSTER=${1#*=}; shift ;;
    --accounting) ACCOUNTING=1; shift ;;
    -h|--help) usage; exit 0 ;;
    up|env|down|bench|status) [[ -z $CMD ]] || { usage >&2; exit 2; }; CMD=$1; shift ;;
    *) printf 'slurm-vcluster: unknown argument %q\n' "$1" >&2; usage >&2; exit 2 ;;
  esac
done
[[ -n $CMD ]] || { usage >&2; exit 2; }
[[ $PREFIX =~ ^[a-z][a-z0-9]{0,9}$ ]] || { say "bad prefix '$PREFIX'"; exit 2; }
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || { say "--jobs wants a positive number"; exit 2; }
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { say "--runs wants a positive number"; exit 2; }
[[ -z $CRED_EXPIRE || $CRED_EXPIRE =~ ^[1-9][0-9]*$ ]] || { say "--cred-expire wants seconds"; exit 2; }
[[ $SCHED_PARAMS =~ ^[A-Za-z0-9_=,.:-]*$ ]] || { say "bad --sched-params '$SCHED_PARAMS'"; exit 2; }
[[ $PARTITION =~ ^[A-Za-z0-9_-]{0,30}$ ]] || { say "bad --partition '$PARTITION'"; exit 2; }
[[ $CLUSTER =~ ^[a-z0-9_-]{0,30}$ ]] || { say "bad --cluster '$CLUSTER' (Slurm wants lower case)"; exit 2; }
[[ $FIGURES =~ ^((sbatch|srun|squeue|kill),?)+$ ]] || { say "--figures: comma list of sbatch,srun,squeue,kill"; exit 2; }

STATE=$STATE_ROOT/$PREFIX
CONF=$STATE/slurm.conf
LOG=$STATE/log
PIDS=$STATE/pids
MUNGE_SOCK=$STATE/munge-sock/munge.socket
export SLURM_CONF=$CONF
# `up --partition` records the name, so that down/bench/status use it without being told again.
if [[ -z $PARTITION ]]; then
  PARTITION=$(cat "$STATE/partition" 2>/dev/null || echo bench)
fi

# ------------------------------------------------------------------------------ helpers
now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }   # wall clock, ms
now_us() { echo "${EPOCHREALTIME/./}"; }
# start time (field 22 of /proc/PID/stat) of a live, non-zombie process: guards against PID reuse
proc_start() { awk '{ sub(/.*\) /, ""); if ($1 != "Z") print $20 }' "/proc/$1/stat" 2>/dev/null || true; }
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) exit 1; if (NR % 2) print a[(NR + 1) / 2]; else printf "%.1f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
fmt1() { awk -v x="$1" 'BEGIN { printf "%.1f", x }'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b > 0 ? a / b : 0) }'; }

need_root() { [[ $(id -u) == 0 ]] || skip "needs root (the virtual cluster, munged and slurmd run as root)"; }

load_vcluster() {  # sets VCLUSTER_* from `vcluster env`
  local out
  out=$("$VC" --prefix "$PREFIX" env 2>&1) ||
    die "virtual cluster '$PREFIX' is not up: run tests/cluster/vcluster --prefix $PREFIX up 3 first ($out)"
  eval "$out"
  [[ ${VCLUSTER_N:-} =~ ^[0-9]+$ ]] || die "cannot read the node count from 'vcluster env'"
}

# Recorded processes: $PIDS/NAME holds "PID START" (host PIDs; START guards against reuse).
record() { echo "$2 $(proc_start "$2")" >"$PIDS/$1"; }
rec_alive() {  # NAME — the recorded process is still the one we started
  local pid st
  [[ -f $PIDS/$1 ]] && read -r pid st <"$PIDS/$1" && [[ -n ${pid:-} && -n ${st:-} && $(proc_start "$pid") == "$st" ]]
}
stop_pid() {  # PID START WHAT — SIGTERM, up to 5 s, then SIGKILL; only if PID still has START
  local pid=$1 st=$2 what=$3 t
  kill -TERM "$pid" 2>/dev/null || true
  for ((t = 0; t < 50; t++)); do [[ $(proc_start "$pid") == "$st" ]] || break; sleep 0.1; done
  if [[ $(proc_start "$pid") == "$st" ]]; then
    kill -KILL "$pid" 2>/dev/null || true
    say "stopped $what (pid $pid) with SIGKILL"
  else
    say "stopped $what (pid $pid)"
  fi
}
stop_rec() {  # NAME — stop the recorded process if it is still the one we started
  local name=$1 pid st c cst
  [[ -f $PIDS/$name ]] || return 0
  read -r pid st <"$PIDS/$name" || true
  if [[ -n ${pid:-} && -n ${st:-} && $(proc_start "$pid") == "$st" ]]; then
    # an nsenter we started: its child is the command it ran for us (slurmd); stop that first,
    # or it would be orphaned inside the node
    if [[ $name == nsenter-* ]]; then
      for c in $(cat "/proc/$pid/task/$pid/children" 2>/dev/null); do
        cst=$(proc_start "$c")
        if [[ -n $cst ]]; then stop_pid "$c" "$cst" "child $(cat "/proc/$c/comm" 2>/dev/null) of $name"; fi
      done
    fi
    stop_pid "$pid" "$st" "$name"
  fi
  rm -f "$PIDS/$name"
}

# A free TCP port on the host for slurmctld, derived from the prefix (so concurrent prefixes differ).
pick_port() {
  local h p k used
  h=$(printf '%s' "$PREFIX" | cksum | cut -d' ' -f1)
  used=$(ss -Hltn 2>/dev/null | awk '{ n = split($4, a, ":"); print a[n] }' | sort -u)
  for ((k = 0; k < 200; k++)); do
    p=$((17000 + ((h + k) % 2000) * 2))
    grep -qx "$p" <<<"$used" || { echo "$p"; return 0; }
  done
  return 1
}

# ------------------------------------------------------------------------------ up
write_config() {
  local i hw ctld_host
  # The real machine's hardware, as slurmd itself detects it (CPUs=2 here); every virtual node
  # gets the same, so Slurm schedules exactly the CPUs gangway sees on each node.
  hw=$(slurmd -C 2>/dev/null | head -1 | sed -e 's/^NodeName=[^ ]* //' -e 's/ RealMemory=[0-9]*//') ||
    die "slurmd -C failed"
  [[ $hw == *CPUs=* ]] || die "unexpected 'slurmd -C' output: $hw"
  # slurmctld only runs on a host named in SlurmctldHost; the address in parentheses is the bridge,
  # which is how the nodes (and the host's clients) reach it.  On the nodes "head" is that address.
  ctld_host=$(hostname -s)
  SLURMCTLD_PORT=$(pick_port) || die "no free port for slurmctld"

  cat >"$CONF" <<EOF
# generated by benches/slurm-vcluster.sh for vcluster '$PREFIX' — do not edit, 'down' removes it
ClusterName=${CLUSTER:-gw$PREFIX}
SlurmctldHost=$ctld_host($VCLUSTER_HOST_ADDR)
SlurmctldPort=$SLURMCTLD_PORT
SlurmdPort=6818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCK${CRED_EXPIRE:+,cred_expire=$CRED_EXPIRE}
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool/%n
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd-%n.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig=$STATE/plugstack.conf
# no systemd, no delegated cgroup tree in the nodes: track processes through /proc (each node has
# its own /proc: the vcluster mounts one per PID namespace) and do not bind tasks
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
$(if ((ACCOUNTING)); then
    echo "AccountingStorageType=accounting_storage/slurmdbd"
    echo "AccountingStorageHost=$VCLUSTER_HOST_ADDR"
    echo "AccountingStoragePort=$((SLURMCTLD_PORT + 1))"
    # The munge socket for connections to slurmdbd (AuthInfo's is not used for those).
    echo "AccountingStoragePass=$MUNGE_SOCK"
  else
    echo "AccountingStorageType=accounting_storage/none"
  fi)
JobCompType=jobcomp/filetxt
JobCompLoc=$LOG/jobcomp.log
MpiDefault=none
SwitchType=switch/none
LaunchType=launch/slurm
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
${SCHED_PARAMS:+SchedulerParameters=$SCHED_PARAMS
}ReturnToService=2
SlurmdTimeout=10
SlurmctldTimeout=30
MessageTimeout=5
TCPTimeout=2
KillWait=5
InactiveLimit=0
MinJobAge=60
MailProg=/bin/true
EOF
  for ((i = 1; i <= VCLUSTER_N; i++)); do
    local addr_var=VCLUSTER_NODE${i}_ADDR
    echo "NodeName=node$i NodeAddr=${!addr_var} NodeHostname=node$i $hw State=UNKNOWN" >>"$CONF"
  done
  echo "PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP" >>"$CONF"

  # cgroup.conf is read by slurmd even with proctrack/linuxproc + task/none; keep it inert
  cat >"$STATE/cgroup.conf" <<'EOF'
# generated by benches/slurm-vcluster.sh: no cgroup constraints (proctrack/linuxproc, task/none)
CgroupAutomount=no
ConstrainCores=no
ConstrainRAMSpace=no
ConstrainDevices=no
EOF
  : >"$STATE/plugstack.conf"   # not Debian's /etc/slurm/plugstack.conf(.d)
  chmod 644 "$CONF" "$STATE/cgroup.conf" "$STATE/plugstack.conf"
}

start_munged() {
  # One munged on the host serves every node: its socket is a path on the shared /run, and a
  # filesystem Unix socket is reachable from any network namespace.  munged insists that the
  # socket's directory is world-searchable and the key's directory is not.
  mkdir -p "$STATE/munge" "$STATE/munge-sock"
  chmod 700 "$STATE/munge"
  chmod 755 "$STATE/munge-sock"
  dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1024 count=1 status=none
  chmod 600 "$STATE/munge/munge.key"
  setsid munged -F --socket="$MUNGE_SOCK" --key-file="$STATE/munge/munge.key" \
    --pid-file="$STATE/munge/munged.pid" --seed-file="$STATE/munge/munged.seed" \
    --log-file="$LOG/munged.log" --num-threads=4 \
    </dev/null >>"$LOG/munged.out" 2>&1 &
  local pid=$! t
  for ((t = 0; t < 100; t++)); do [[ -n $(proc_start "$pid") ]] && break; sleep 0.01; done
  record munged "$pid"
  for ((t = 0; t < 100; t++)); do
    munge -S "$MUNGE_SOCK" -n </dev/null 2>/dev/null | unmunge -S "$MUNGE_SOCK" >/dev/null 2>&1 && return 0
    rec_alive munged || break
    sleep 0.1
  done
  die "munged did not come up (see $LOG/munged.out)"
}

# A free TCP port on the host at or above $1.
free_port_from() {
  local p used
  used=$(ss -Hltn 2>/dev/null | awk '{ n = split($4, a, ":"); print a[n] }' | sort -u)
  for ((p = $1; p < $1 + 2000; p++)); do
    grep -qx "$p" <<<"$used" || { echo "$p"; return 0; }
  done
  return 1
}

# --accounting: a MariaDB of our own (data, socket and log in the state dir, TCP on 127.0.0.1,
# no grant tables: nothing but slurmdbd reaches it) and slurmdbd on the host, beside slurmctld
# (its port + 1). slurmdbd reads slurmdbd.conf from SLURM_CONF's directory.
start_accounting() {
  local db=$STATE/db db_port pid t
  mkdir -p "$db"
  mariadb-install-db --no-defaults --datadir="$db/data" --user=root --skip-test-db \
    --auth-root-authentication-method=normal >>"$LOG/mariadb-install.out" 2>&1 ||
    die "mariadb-install-db failed (see $LOG/mariadb-install.out)"
  db_port=$(free_port_from $((SLURMCTLD_PORT + 4000))) || die "no free port for MariaDB"
  setsid mariadbd --no-defaults --datadir="$db/data" --socket="$db/mysqld.sock" \
    --port="$db_port" --bind-address=127.0.0.1 --user=root --skip-grant-tables \
    --pid-file="$db/mariadbd.pid" --log-error="$LOG/mariadbd.log" \
    </dev/null >>"$LOG/mariadbd.out" 2>&1 &
  pid=$!
  for ((t = 0; t < 100; t++)); do [[ -n $(proc_start "$pid") ]] && break; sleep 0.01; done
  record mariadbd "$pid"
  for ((t = 0; t < 300; t++)); do
    mariadb-admin --no-defaults --socket="$db/mysqld.sock" ping >/dev/null 2>&1 && break
    rec_alive mariadbd || die "mariadbd exited (see $LOG/mariadbd.log)"
    sleep 0.1
  done
  cat >"$STATE/slurmdbd.conf" <<EOF
# generated by benches/slurm-vcluster.sh for vcluster '$PREFIX'
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCK
DbdHost=$(hostname -s)
DbdAddr=$VCLUSTER_HOST_ADDR
DbdPort=$((SLURMCTLD_PORT + 1))
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$db_port
StorageUser=root
StorageLoc=slurm_acct_db
PidFile=$STATE/run/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
EOF
  chmod 600 "$STATE/slurmdbd.conf"
  setsid slurmdbd -D </dev/null >>"$LOG/slurmdbd.out" 2>&1 &
  pid=$!
  for ((t = 0; t < 100; t++)); do [[ -n $(proc_start "$pid") ]] && break; sleep 0.01; done
  record slurmdbd "$pid"
  local cluster=${CLUSTER:-gw$PREFIX} t0
  t0=$(now_ms)
  # The cluster must be known to slurmdbd before slurmctld registers with it.
  while (($(now_ms) - t0 < 30000)); do
    timeout 10 sacctmgr -i add cluster "$cluster" >/dev/null 2>&1 && return 0
    timeout 10 sacctmgr -n -P list cluster format=cluster 2>/dev/null | grep -qx "$cluster" && return 0
    rec_alive slurmdbd || break
    sleep 0.2
  done
  die "slurmdbd did not come up (see $LOG/slurmdbd.log, $LOG/slurmdbd.out)"
}

start_slurmctld() {
  setsid slurmctld -D -f "$CONF" </dev/null >>"$LOG/slurmctld.out" 2>&1 &
  local pid=$! t
  for ((t = 0; t < 100; t++)); do [[ -n $(proc_start "$pid") ]] && break; sleep 0.01; done
  record slurmctld "$pid"
  for ((t = 0; t < 150; t++)); do
    scontrol ping 2>/dev/null | grep -q 'is UP' && return 0
    rec_alive slurmctld || break
    sleep 0.2
  done
  die "slurmctld did not come up (see $LOG/slurmctld.log, $LOG/slurmctld.out)"
}

start_slurmd() {  # I — slurmd for nodeI inside the node, foreground, in its own session
  local i=$1 pid child t0
  mkdir -p "$STATE/spool/node$i"
  # `vcluster exec` execs nsenter, which forks the command into the node's PID namespace: $! is
  # nsenter, slurmd is its only child.  Record both host PIDs (inside the node slurmd has some
  # small PID, and the pid file it writes holds that, not the host PID).
  setsid "$VC" --prefix "$PREFIX" exec "node$i" /usr/sbin/slurmd -D -N "node$i" -f "$CONF" \
    </dev/null >>"$LOG/slurmd-node$i.out" 2>&1 &
  pid=$!
  record "nsenter-node$i" "$pid"   # at once: a failed `up` must still be able to stop it
  t0=$(now_ms)
  while (($(now_ms) - t0 < 15000)); do
    if [[ $(cat "/proc/$pid/comm" 2>/dev/null) == nsenter ]]; then
      # Not simply the first child: `vcluster exec` runs a process substitution just before it
      # execs nsenter, and that (finished, unreaped) child is inherited by nsenter too.
      # (Debian's /usr/sbin/slurmd is an alternatives link to slurmd-wlm: test the comm.)
      for child in $(cat "/proc/$pid/task/$pid/children" 2>/dev/null); do
        if [[ $(cat "/proc/$child/comm" 2>/dev/null) == slurmd* && -n $(proc_start "$child") ]]; then
          record "slurmd-node$i" "$child"
          return 0
        fi
      done
    fi
    [[ -n $(proc_start "$pid") ]] || break
    sleep 0.02
  done
  die "slurmd on node$i did not start (see $LOG/slurmd-node$i.out, $LOG/slurmd-node$i.log)"
}

node_states() { sinfo -h -N -p "$PARTITION" -o '%N %t' 2>/dev/null | sort -u; }

wait_idle() {  # TIMEOUT_S NODE... — until every named node is idle
  local timeout=$1 t0 n st ok
  shift
  t0=$(now_ms)
  while :; do
    ok=1
    for n in "$@"; do
      st=$(sinfo -h -N -n "$n" -o '%t' 2>/dev/null | head -1)
      [[ $st == idle ]] || { ok=0; break; }
    done
    ((ok)) && return 0
    if (($(now_ms) - t0 > timeout * 1000)); then
      say "nodes not idle after ${timeout} s; sinfo says:"
      node_states | sed 's/^/  /' >&2 || true
      say "logs: $LOG/slurmctld.log, $LOG/slurmd-nodeI.log, $LOG/slurmd-nodeI.out, $LOG/munged.log"
      return 1
    fi
    sleep 0.2
  done
}

all_alive() {
  local i
  rec_alive munged && rec_alive slurmctld || return 1
  for ((i = 1; i <= VCLUSTER_N; i++)); do rec_alive "slurmd-node$i" || return 1; done
}

up_failed() {
  local keep=/var/tmp/gangway-slurm-$PREFIX-failed-logs
  rm -rf "$keep"
  cp -r "$LOG" "$keep" 2>/dev/null && say "up failed; logs kept in $keep (state dir is removed)"
  do_down
}

cmd_up() {
  need_root
  local t
  for t in slurmctld slurmd munged munge sinfo sbatch srun squeue scontrol scancel; do
    command -v "$t" >/dev/null || skip "missing '$t': apt-get install slurm-wlm munge"
  done
  if ((ACCOUNTING)); then
    for t in slurmdbd sacctmgr mariadbd mariadb-install-db mariadb-admin; do
      command -v "$t" >/dev/null || skip "missing '$t' (--accounting): apt-get install slurmdbd mariadb-server"
    done
  fi
  load_vcluster
  if [[ -d $STATE ]]; then
    if all_alive; then
      say "slurm on vcluster '$PREFIX' already up (no-op); env: $0 --prefix $PREFIX env"
      return 0
    fi
    say "found a stale or partial state dir $STATE; taking it down first"
    do_down
  fi
  local t0 i
  t0=$(now_ms)
  trap up_failed EXIT
  mkdir -p "$STATE"/{ctld,spool,run,log,pids}
  chmod 755 "$STATE_ROOT" "$STATE"
  echo "$PARTITION" >"$STATE/partition"
  write_config
  start_munged
  if ((ACCOUNTING)); then start_accounting; fi
  start_slurmctld
  for ((i = 1; i <= VCLUSTER_N; i++)); do start_slurmd "$i"; done
  local nodes=()
  for ((i = 1; i <= VCLUSTER_N; i++)); do nodes+=("node$i"); done
  wait_idle 60 "${nodes[@]}" || die "slurm did not come up: not all nodes idle within 60 s"
  trap - EXIT
  say "slurm up on vcluster '$PREFIX': $VCLUSTER_N nodes idle in $(($(now_ms) - t0)) ms" \
      "(slurmctld $VCLUSTER_HOST_ADDR:$SLURMCTLD_PORT); env: $0 --prefix $PREFIX env"
  node_states | sed 's/^/  /' >&2
}

# ------------------------------------------------------------------------------ down
do_down() {
  [[ -d $STATE ]] || { say "slurm on '$PREFIX' is not up (no-op)"; return 0; }
  local f name i
  # cancel what is still queued/running, so no slurmstepd outlives its slurmd (best effort)
  if rec_alive slurmctld && rec_alive munged; then
    if [[ -n $(squeue -h -p "$PARTITION" -o %i 2>/dev/null | head -1) ]]; then
      scancel -p "$PARTITION" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do
        [[ -z $(squeue -h -p "$PARTITION" -o %i 2>/dev/null | head -1) ]] && break
        sleep 0.2
      done
    fi
  fi
  # slurmds (and their nsenter parents), then slurmctld, then munged
  for f in "$PIDS"/slurmd-node* "$PIDS"/nsenter-node*; do
    if [[ -f $f ]]; then stop_rec "$(basename "$f")"; fi
  done
  stop_rec slurmctld
  stop_rec slurmdbd
  stop_rec mariadbd
  stop_rec munged
  for f in "$PIDS"/*; do if [[ -f $f ]]; then stop_rec "$(basename "$f")"; fi; done
  rm -rf "$STATE"
  rmdir "$STATE_ROOT" 2>/dev/null || true
  say "slurm on '$PREFIX' down; removed $STATE"
}

cmd_down() {
  need_root
  do_down
}

# ------------------------------------------------------------------------------ env / status
cmd_env() {
  [[ -f $CONF ]] || die "slurm on '$PREFIX' is not up ($0 --prefix $PREFIX up)"
  echo "export SLURM_CONF=$CONF"
}

cmd_status() {
  [[ -d $STATE ]] || { say "slurm on '$PREFIX' is not up"; return 3; }
  local f name pid st
  for f in "$PIDS"/*; do
    [[ -f $f ]] || continue
    name=$(basename "$f"); read -r pid st <"$f"
    if rec_alive "$name"; then echo "$name pid $pid alive"; else echo "$name pid $pid dead"; fi
  done
  sinfo || true
}

# ------------------------------------------------------------------------------ bench
emit() { echo "slurm $1 $2 $3"; }   # the parseable lines go to stdout; notes go to stderr

queue_empty_wait() {  # TIMEOUT_S — until no job of ours is pending/running/completing
  local t0
  t0=$(now_ms)
  while [[ -n $(squeue -h -p "$PARTITION" -o %i 2>/dev/null | head -1) ]]; do
    (($(now_ms) - t0 < $1 * 1000)) || return 1
    sleep 0.1
  done
}

time_cmd_ms() {  # CMD... — one run, prints ms (fails if CMD fails)
  local a b
  a=$(now_us)
  "$@" >/dev/null 2>&1 || return 1
  b=$(now_us)
  awk -v d=$((b - a)) 'BEGIN { printf "%.1f\n", d / 1000 }'
}

median_ms() {  # CMD... — one warm-up, then RUNS timed runs; median in ms
  local r times=()
  "$@" >/dev/null 2>&1 || return 1
  for ((r = 0; r < RUNS; r++)); do times+=("$(time_cmd_ms "$@")") || return 1; done
  printf '%s\n' "${times[@]}" | median
}

bench_sbatch() {
  local k t0 t1 t2 sub
  queue_empty_wait 60 || die "queue not empty before the sbatch figure"
  say "submitting $JOBS x sbatch --wrap=true ..."
  t0=$(now_us)
  for ((k = 0; k < JOBS; k++)); do
    sbatch -Q -p "$PARTITION" -J gwb-true -N1 -n1 -o /dev/null -e /dev/null --chdir=/ --wrap=true ||
      die "sbatch failed at job $k"
  done
  t1=$(now_us)
  # poll until none of them is pending, running or completing (squeue omits finished jobs)
  local timeout_s=$((120 + JOBS * 2))
  while [[ -n $(squeue -h -p "$PARTITION" -n gwb-true -o %i 2>/dev/null | head -1) ]]; do
    (($(now_us) - t0 < timeout_s * 1000000)) || die "batch jobs not finished after ${timeout_s} s"
    sleep 0.1
  done
  t2=$(now_us)
  local sub_s all_s
  sub_s=$(awk -v d=$((t1 - t0)) 'BEGIN { printf "%.3f", d / 1e6 }')
  all_s=$(awk -v d=$((t2 - t0)) 'BEGIN { printf "%.3f", d / 1e6 }')
  emit sbatch_jobs "$JOBS" jobs
  emit sbatch_submit_time "$(fmt1 "$sub_s")" s
  emit sbatch_submit_rate "$(div "$JOBS" "$sub_s")" jobs/s
  emit sbatch_all_done_time "$(fmt1 "$all_s")" s
  emit sbatch_end_to_end_rate "$(div "$JOBS" "$all_s")" jobs/s
  # sanity check, not a figure: every one of them must have COMPLETED (jobcomp/filetxt log)
  local done_ok bad
  done_ok=$(grep -c 'Name=gwb-true .*JobState=COMPLETED' "$LOG/jobcomp.log" 2>/dev/null || true)
  bad=$(grep 'Name=gwb-true ' "$LOG/jobcomp.log" 2>/dev/null | grep -vc 'JobState=COMPLETED' || true)
  say "batch jobs completed: ${done_ok:-0} (other end states: ${bad:-0}; $LOG/jobcomp.log)"
  ((${bad:-0} == 0)) || say "warning: some batch jobs did not complete"
}

bench_srun() {
  local m
  m=$(median_ms srun -p "$PARTITION" -N3 -n3 true) || die "srun -N3 -n3 true failed"
  emit srun_N3_n3_true "$m" ms
  if m=$(median_ms srun -p "$PARTITION" -N3 -n12 --overcommit true); then
    emit srun_N3_n12_overcommit_true "$m" ms
  else
    say "srun -N3 -n12 --overcommit refused; timing -n6 instead"
    m=$(median_ms srun -p "$PARTITION" -N3 -n6 true) || die "srun -N3 -n6 true failed"
    emit srun_N3_n6_true "$m" ms
  fi
}

bench_squeue() {
  local k n m
  say "submitting 200 held jobs (sbatch -H) for the squeue figure ..."
  for ((k = 0; k < 200; k++)); do
    sbatch -Q -H -p "$PARTITION" -J gwb-held -N1 -n1 -o /dev/null --chdir=/ --wrap=true ||
      die "sbatch -H failed"
  done
  n=$(squeue -h -p "$PARTITION" -t PD -o %i | wc -l)
  ((n >= 200)) || die "expected 200 pending jobs, squeue shows $n"
  m=$(median_ms squeue -p "$PARTITION") || die "squeue failed"
  emit squeue_200_pending "$m" ms
  scancel -p "$PARTITION" -n gwb-held
  queue_empty_wait 60 || say "held jobs still listed after scancel"
}

bench_node_kill() {
  local id node i st nd t0 t_down="" t_run="" line reason
  queue_empty_wait 60 || die "queue not empty before the node-kill figure"
  id=$(sbatch --parsable -p "$PARTITION" -J gwb-requeue --requeue -N1 -n1 -o /dev/null --chdir=/ \
        --wrap='sleep 100000') || die "sbatch --requeue failed"
  id=${id%%;*}
  for ((i = 0; i < 300; i++)); do
    read -r st node < <(squeue -h -j "$id" -o '%T %N' 2>/dev/null) || true
    [[ ${st:-} == RUNNING && -n ${node:-} ]] && break
    sleep 0.1
  done
  [[ ${st:-} == RUNNING ]] || die "requeueable job $id did not start"
  [[ $node =~ ^node([0-9]+)$ ]] || die "unexpected node '$node' for job $id"
  local idx=${BASH_REMATCH[1]}
  say "job $id running on $node; vcluster kill $node"
  t0=$(now_us)
  "$VC" --prefix "$PREFIX" kill "$node" >&2
  local deadline=$((t0 + 600 * 1000000))
  while (($(now_us) < deadline)); do
    if [[ -z $t_down ]]; then
      nd=$(sinfo -h -N -n "$node" -o '%t' 2>/dev/null | head -1)
      if [[ $nd == down* ]]; then
        t_down=$(now_us)
        say "$node is '$nd' after $(awk -v d=$((t_down - t0)) 'BEGIN { printf "%.1f", d / 1e6 }') s"
      fi
    fi
    read -r st nd < <(squeue -h -j "$id" -o '%T %N' 2>/dev/null) || true
    if [[ ${st:-} == RUNNING && -n ${nd:-} && $nd != "$node" ]]; then t_run=$(now_us); break; fi
    sleep 0.2
  done
  if [[ -n $t_down ]]; then
    emit node_kill_to_down "$(awk -v d=$((t_down - t0)) 'BEGIN { printf "%.1f", d / 1e6 }')" s
  else
    emit node_kill_to_down unknown s
  fi
  if [[ -n $t_run ]]; then
    emit node_kill_to_requeued_running "$(awk -v d=$((t_run - t0)) 'BEGIN { printf "%.1f", d / 1e6 }')" s
    say "job $id running again on $nd"
  else
    reason=$(squeue -h -j "$id" -o '%T %r' 2>/dev/null || true)
    say "job $id not running again after 600 s (state/reason: $reason)"
    emit node_kill_to_requeued_running timeout s
  fi
  scontrol show job "$id" 2>/dev/null | grep -Eo '(Restarts|SubmitTime|EligibleTime|StartTime)=[^ ]*' | tr '\n' ' ' | sed 's/^/slurm-vcluster: job: /' >&2 || true
  echo >&2
  scancel "$id" 2>/dev/null || true
  # bring the node back ("reboot": fresh /tmp) and its slurmd; ReturnToService=2 makes it idle again
  "$VC" --prefix "$PREFIX" up "$VCLUSTER_N" >&2
  rm -f "$PIDS/slurmd-node$idx" "$PIDS/nsenter-node$idx"
  start_slurmd "$idx"
  wait_idle 60 "$node" || die "$node did not return to idle after the restart"
  say "$node back: $(sinfo -h -N -n "$node" -o '%N %t')"
}

cmd_bench() {
  need_root
  load_vcluster
  { [[ -d $STATE ]] && all_alive; } || die "slurm on '$PREFIX' is not (fully) up: $0 --prefix $PREFIX up"
  local i nodes=()
  for ((i = 1; i <= VCLUSTER_N; i++)); do nodes+=("node$i"); done
  wait_idle 30 "${nodes[@]}" || die "nodes not idle before the benchmark"
  ((VCLUSTER_N >= 3)) || die "the srun figures need 3 nodes (vcluster up 3)"
  say "nodes: $(sinfo -h -N -o '%N:%c' | sort -u | tr '\n' ' ')(node:CPUs)"
  say "config: $(scontrol show config 2>/dev/null | grep -E '^(SchedulerParameters|AuthInfo|SelectTypeParameters) ' | tr -s ' ' | tr '\n' ';')"
  [[ ,$FIGURES, == *,sbatch,* ]] && bench_sbatch
  [[ ,$FIGURES, == *,srun,* ]] && bench_srun
  [[ ,$FIGURES, == *,squeue,* ]] && bench_squeue
  [[ ,$FIGURES, == *,kill,* ]] && bench_node_kill
  return 0
}

case $CMD in
  up) cmd_up ;;
  down) cmd_down ;;
  env) cmd_env ;;
  status) cmd_status ;;
  bench) cmd_bench ;;
esac
