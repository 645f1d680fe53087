#!/usr/bin/env bash
# Start (or stop) a real one-node Slurm cluster on this machine, for mpidml's Slurm tests.
#
#   slurm/start-local-slurm.sh          install slurm+munge if missing, (re)start, wait for the node
#   slurm/start-local-slurm.sh --stop   cancel jobs and stop the daemons started here
#
# Needs root and Debian's package archive (apt). Idempotent: an already running cluster
# with the same configuration is left alone. Environment: MPIDML_SLURM_CPUS (CPUs the node
# advertises, default 8 — more than the cores, so 4-task jobs oversubscribe on purpose),
# MPIDML_SLURM_TIMEOUT (seconds to wait for the node, default 60).
set -euo pipefail

cpus=${MPIDML_SLURM_CPUS:-8}
timeout=${MPIDML_SLURM_TIMEOUT:-60}
conf=/etc/slurm/slurm.conf
base=/var/lib/mpidml-slurm            # state, spool, logs, pid files
say() { printf '[mpidml-slurm] %s\n' "$*"; }
die() { printf '[mpidml-slurm] ERROR: %s\n' "$*" >&2; exit 1; }

running() {   # running PIDFILE COMM: the pid in PIDFILE is alive and named COMM
    local pid
    [[ -s $1 ]] && pid=$(<"$1") && [[ -d /proc/$pid && $(cat /proc/$pid/comm 2>/dev/null) == "$2" ]] &&
        ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null
}

stop_one() {  # stop_one PIDFILE COMM
    running "$1" "$2" || { rm -f "$1"; return 0; }
    local pid; pid=$(<"$1")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do running "$1" "$2" || break; sleep 0.2; done
    running "$1" "$2" && kill -9 "$pid" 2>/dev/null || true
    rm -f "$1"
    say "stopped $2"
}

if [[ ${1:-} == --stop ]]; then
    if running "$base/slurmctld.pid" slurmctld; then
        mapfile -t jobs < <(timeout 10 squeue -h -o %A 2>/dev/null || true)
        ((${#jobs[@]})) && timeout 10 scancel "${jobs[@]}" 2>/dev/null || true
    fi
    stop_one "$base/slurmd.pid" slurmd
    stop_one "$base/slurmctld.pid" slurmctld
    [[ -e $base/munged.started-here ]] && { stop_one /run/munge/munged.pid munged; rm -f "$base/munged.started-here"; }
    exit 0
fi
[[ -z ${1:-} ]] || die "usage: $0 [--stop]"
[[ $(id -u) == 0 ]] || die "needs root (installs packages and starts daemons)"

started=$SECONDS
missing=()
for pkg in slurmctld slurmd slurm-client munge; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
mkdir -p "$base"/{state,spool,log}

# munge: authentication between the Slurm daemons and clients
[[ -s /etc/munge/munge.key ]] || mungekey --create --keyfile=/etc/munge/munge.key
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
install -d -o munge -g munge /run/munge /var/log/munge /var/lib/munge
if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged || die "munged did not start (see /var/log/munge/munged.log)"
    touch "$base/munged.started-here"
fi

mem_mb=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
new_conf=$(cat <<CONF
# Written by mpidml's slurm/start-local-slurm.sh (one node, for tests); rewritten on each start.
ClusterName=mpidml-local
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$base/state
SlurmdSpoolDir=$base/spool
SlurmctldPidFile=$base/slurmctld.pid
SlurmdPidFile=$base/slurmd.pid
SlurmctldLogFile=$base/log/slurmctld.log
SlurmdLogFile=$base/log/slurmd.log
MailProg=/bin/true
# no systemd or cgroups on these machines
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# the MPICH wheel speaks PMI-2 (srun --mpi=pmix has no PMIx library here)
MpiDefault=pmi2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SlurmctldTimeout=10
SlurmdTimeout=60
MessageTimeout=20
KillWait=5
InactiveLimit=0
MinJobAge=300
SchedulerParameters=batch_sched_delay=0
# advertise MPIDML_SLURM_CPUS CPUs whatever the hardware has
SlurmdParameters=config_overrides
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
)
changed=0
if [[ ! -f $conf || $(<"$conf") != "$new_conf" ]]; then
    mkdir -p /etc/slurm && printf '%s\n' "$new_conf" >"$conf" && changed=1
fi
if ((changed)) || ! running "$base/slurmctld.pid" slurmctld || ! running "$base/slurmd.pid" slurmd; then
    stop_one "$base/slurmd.pid" slurmd
    stop_one "$base/slurmctld.pid" slurmctld
    slurmctld -c || die "slurmctld failed; see $base/log/slurmctld.log"
    slurmd -N localhost || die "slurmd failed; see $base/log/slurmd.log"
fi
deadline=$((SECONDS + timeout))
until [[ $(sinfo -h -N -n localhost -o %t 2>/dev/null | head -n1) =~ ^(idle|mix|alloc)$ ]]; do
    if ((SECONDS > deadline)); then
        sinfo -R >&2 || true
        tail -n 20 "$base/log/slurmctld.log" "$base/log/slurmd.log" >&2 || true
        die "node localhost not up after ${timeout}s"
    fi
    sleep 0.5
done
say "up: node localhost, partition debug, $cpus CPUs, in $((SECONDS - started)) s"
