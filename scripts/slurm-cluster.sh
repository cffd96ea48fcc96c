#!/usr/bin/env bash
# A throw-away one-node Slurm cluster on this machine, for the real-Slurm tests (tests/test_slurm.py)
# and for trying `corebench run --executor slurm` without a cluster.
#
#   scripts/slurm-cluster.sh start [--clean]   install the Debian packages if missing, start munged,
#                                              slurmctld and slurmd, wait until the node takes jobs
#   scripts/slurm-cluster.sh stop              cancel every job, stop the daemons, kill leftover job processes
#   scripts/slurm-cluster.sh status            exit 0 when the node takes jobs, 1 when it does not, 3 when down
#
# Root only (apt-get, the munge key, slurmd). Debian/Ubuntu: slurmctld slurmd slurm-client munge
# (Slurm 22.05 on Debian 12), installed without recommends. The daemons are started directly
# (no systemd). The config goes to /etc/slurm/slurm.conf, the path the Debian tools read, so
# sbatch, squeue and submitit need no SLURM_CONF. `start` is idempotent and serialised with flock;
# it restarts the daemons (cancelling jobs) only when the config it would write differs.
# Accounting is off, so `sacct` fails: put scripts/slurm-bin first on PATH (a stand-in answering
# submitit's one query from `scontrol show job`).
#
# Knobs: COREBENCH_SLURM_DIR (state: spool, saved jobs, logs, pids; default /var/lib/corebench-slurm),
#        COREBENCH_SLURM_TIMEOUT (seconds to wait for the node, default 60),
#        COREBENCH_SLURM_CRED_EXPIRE (default 5; also how long a requeued job waits before it may
#        start again: Slurm's default of 120 s would make every requeue take two minutes).
# A failure prints one line "slurm-cluster: <reason> (see <log>)" on stderr and exits 1.
set -uo pipefail

STATE="${COREBENCH_SLURM_DIR:-/var/lib/corebench-slurm}"
CONF=/etc/slurm/slurm.conf
PARTITION=debug
WAIT_S="${COREBENCH_SLURM_TIMEOUT:-60}"
NODE="$(hostname -s)"
MUNGE_KEY=/etc/munge/munge.key
MUNGE_RUN=/run/munge
PACKAGES="slurmctld slurmd slurm-client munge"

die() { echo "slurm-cluster: $*" >&2; exit 1; }
say() { echo "slurm-cluster: $*" >&2; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1" 2>/dev/null)" 2>/dev/null; }
node_state() { timeout 10 sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null | head -n1; }

install_packages() {
  local b
  for b in slurmctld slurmd sbatch scontrol sinfo munged munge unmunge; do
    command -v "$b" >/dev/null 2>&1 || break
    [ "$b" = unmunge ] && return 0
  done
  command -v apt-get >/dev/null 2>&1 || die "Slurm is not installed and there is no apt-get to install it"
  local log="$STATE/log/apt.log"
  say "installing $PACKAGES (apt-get, no recommends; log $log)"
  export DEBIAN_FRONTEND=noninteractive
  # the package index of a fresh machine may be missing or stale: update once and retry
  apt-get install -y -q --no-install-recommends $PACKAGES >"$log" 2>&1 \
    || { apt-get update -q >>"$log" 2>&1; apt-get install -y -q --no-install-recommends $PACKAGES >>"$log" 2>&1; } \
    || die "apt-get install $PACKAGES failed (see $log)"
  hash -r
  command -v slurmctld >/dev/null 2>&1 || die "slurmctld still missing after apt-get (see $log)"
}

start_munge() {
  local fresh_key=0 i
  if [ ! -s "$MUNGE_KEY" ]; then
    fresh_key=1
    mkdir -p "$(dirname "$MUNGE_KEY")"
    mungekey --create --keyfile="$MUNGE_KEY" --force >/dev/null 2>&1 \
      || dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
  fi
  mkdir -p "$MUNGE_RUN" /var/lib/munge /var/log/munge
  chown munge:munge "$(dirname "$MUNGE_KEY")" "$MUNGE_KEY" "$MUNGE_RUN" /var/lib/munge /var/log/munge
  chmod 700 "$(dirname "$MUNGE_KEY")" /var/lib/munge /var/log/munge
  chmod 400 "$MUNGE_KEY"
  chmod 755 "$MUNGE_RUN"
  if [ "$fresh_key" = 0 ] && alive "$MUNGE_RUN/munged.pid" && munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    return 0
  fi
  alive "$MUNGE_RUN/munged.pid" && kill "$(cat "$MUNGE_RUN/munged.pid")" 2>/dev/null && sleep 0.5
  rm -f "$MUNGE_RUN/munged.pid" "$MUNGE_RUN"/munge.socket.2*
  runuser -u munge -- /usr/sbin/munged --force 9>&- >>"$STATE/log/munged.start.log" 2>&1 \
    || die "munged did not start (see /var/log/munge/munged.log)"
  for i in $(seq 50); do
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "munged runs but munge -n | unmunge fails (see /var/log/munge/munged.log)"
}

render_conf() {
  local cpus mem host="$NODE" addr=""
  cpus="$(nproc)"
  # 90 % of the memory: slurmd must always find at least RealMemory or it drains the node
  mem="$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)"
  [ "${mem:-0}" -gt 0 ] || mem=1000
  if ! getent hosts "$NODE" >/dev/null 2>&1; then host="$NODE(127.0.0.1)"; addr="NodeAddr=127.0.0.1 "; fi
  cat <<EOF
# Written by corebench scripts/slurm-cluster.sh: a one-node test cluster. Edits are overwritten.
ClusterName=corebench
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=cred_expire=${COREBENCH_SLURM_CRED_EXPIRE:-5}
MpiDefault=none
MailProg=/bin/true
SwitchType=switch/none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobRequeue=1
StateSaveLocation=$STATE/statesave
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
# react within a second: no batch delay, frequent (backfill) passes for jobs freed by
# dependencies or by a requeue's wait; short kill wait (submitit ignores SIGTERM)
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=5,sched_min_interval=100000,bf_interval=2,batch_sched_delay=0
KillWait=2
MessageTimeout=10
SlurmdTimeout=30
SlurmctldTimeout=30
InactiveLimit=0
MinJobAge=300
Waittime=0
NodeName=$NODE ${addr}CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
}

started() {  # a daemonised $1 writes its pid file a moment after its launcher returns: wait for it
  local i
  for i in $(seq 50); do alive "$STATE/run/$1.pid" && return 0; sleep 0.1; done
  return 1
}

descendants() { local c; for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do echo "$c"; descendants "$c"; done; }

stop_daemons() {
  local ids i pid name orphans=""
  if alive "$STATE/run/slurmctld.pid"; then
    # cancel every job, or the next start brings them back from the saved state
    ids="$(timeout 10 squeue -h -o %A 2>/dev/null)"
    if [ -n "$ids" ]; then
      timeout 15 scancel --full --quiet $ids >/dev/null 2>&1
      for i in $(seq 60); do  # submitit ignores SIGTERM: the kill comes after KillWait
        [ -z "$(timeout 5 squeue -h -t running,completing -o %A 2>/dev/null)" ] && break
        sleep 0.25
      done
    fi
  fi
  # job steps outlive `scontrol shutdown`: note them now, kill what is left at the end
  for pid in $(pgrep -x slurmstepd 2>/dev/null); do orphans="$orphans $pid $(descendants "$pid")"; done
  alive "$STATE/run/slurmctld.pid" && timeout 15 scontrol shutdown >/dev/null 2>&1
  for name in slurmctld slurmd; do
    alive "$STATE/run/$name.pid" || continue
    pid="$(cat "$STATE/run/$name.pid")"
    for i in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      [ "$i" = 10 ] && kill -TERM "$pid" 2>/dev/null
      sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null
  done
  for pid in $orphans; do kill -KILL "$pid" 2>/dev/null; done
  rm -f "$STATE/run/slurmctld.pid" "$STATE/run/slurmd.pid"
}

cmd_start() {
  local clean=0 st tries=0 deadline
  [ "${1:-}" = "--clean" ] && clean=1
  mkdir -p "$STATE"/statesave "$STATE"/spool "$STATE"/run "$STATE"/log /etc/slurm 2>/dev/null \
    || die "cannot create $STATE"
  install_packages
  start_munge
  render_conf >"$STATE/slurm.conf.new"
  if [ "$clean" = 0 ] && alive "$STATE/run/slurmctld.pid" && alive "$STATE/run/slurmd.pid" \
      && cmp -s "$STATE/slurm.conf.new" "$CONF"; then
    case "$(node_state)" in
      idle|mixed|allocated|completing) rm -f "$STATE/slurm.conf.new"; say "running (node $NODE)"; return 0 ;;
    esac
  fi
  if alive "$STATE/run/slurmctld.pid" || alive "$STATE/run/slurmd.pid"; then
    say "restarting the daemons (config changed or node unusable; running jobs are cancelled)"
    stop_daemons
  fi
  mv -f "$STATE/slurm.conf.new" "$CONF"
  if [ "$clean" = 1 ]; then slurmctld -c; else slurmctld; fi 9>&- >>"$STATE/log/slurmctld.start.log" 2>&1 \
    || { stop_daemons; die "slurmctld did not start (see $STATE/log/slurmctld.log)"; }
  started slurmctld || { stop_daemons; die "slurmctld did not start (see $STATE/log/slurmctld.log)"; }
  for _ in $(seq 50); do timeout 5 scontrol ping >/dev/null 2>&1 && break; sleep 0.2; done
  slurmd 9>&- >>"$STATE/log/slurmd.start.log" 2>&1 \
    || { stop_daemons; die "slurmd did not start (see $STATE/log/slurmd.log)"; }
  started slurmd || { stop_daemons; die "slurmd did not start (see $STATE/log/slurmd.log)"; }
  deadline=$(($(date +%s) + WAIT_S))
  while :; do
    st="$(node_state)"
    case "$st" in
      idle|mixed|allocated) say "up: node $NODE $st, partition $PARTITION, $CONF"; return 0 ;;
      down*|drain*|fail*)
        [ "$tries" -lt 3 ] && timeout 10 scontrol update nodename="$NODE" state=resume >/dev/null 2>&1
        tries=$((tries + 1)) ;;
    esac
    alive "$STATE/run/slurmctld.pid" || { stop_daemons; die "slurmctld died (see $STATE/log/slurmctld.log)"; }
    alive "$STATE/run/slurmd.pid" || { stop_daemons; die "slurmd died (see $STATE/log/slurmd.log)"; }
    [ "$(date +%s)" -lt "$deadline" ] \
      || { stop_daemons; die "node $NODE not ready after ${WAIT_S}s (state '${st:-no answer}'; see $STATE/log)"; }
    sleep 0.5
  done
}

cmd_stop() {
  stop_daemons
  if alive "$MUNGE_RUN/munged.pid"; then
    local pid
    pid="$(cat "$MUNGE_RUN/munged.pid")"
    kill "$pid" 2>/dev/null
    for _ in $(seq 25); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null
  fi
  say "stopped"
}

cmd_status() {
  local st
  alive "$STATE/run/slurmctld.pid" || { echo "slurmctld not running"; return 3; }
  alive "$STATE/run/slurmd.pid" || { echo "slurmd not running"; return 3; }
  st="$(node_state)"
  echo "node $NODE: ${st:-no answer}"
  case "$st" in idle|mixed|allocated|completing) return 0 ;; *) return 1 ;; esac
}

case "${1:-}" in
  start|stop)
    [ "$(id -u)" = 0 ] || die "needs root (apt-get, the munge key and slurmd run as root)"
    # one start or stop at a time (tests of several checkouts may start it together); the
    # daemons are started with fd 9 closed, or they would hold the lock for ever
    mkdir -p "$STATE" 2>/dev/null || die "cannot create $STATE"
    exec 9>"$STATE/.lock"
    flock 9
    if [ "$1" = start ]; then shift; cmd_start "$@"; else cmd_stop; fi ;;
  status) cmd_status ;;
  *) echo "usage: $0 start [--clean] | stop | status" >&2; exit 2 ;;
esac
