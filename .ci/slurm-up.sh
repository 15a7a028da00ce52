#!/usr/bin/env bash
# A real two-node Slurm cluster on this one host, from Debian's packages (slurmctld, slurmd, munge):
# nodes n1 and n2 are two slurmd daemons (`slurmd -N n1`, `slurmd -N n2`) on 127.0.0.1 with their
# own ports, one partition `debug`. Accounting is off (jobs are followed with squeue/scontrol).
#
# Needs root. Idempotent: a cluster already answering is left as it is. Prints nothing on stdout
# but `export` lines (eval them); stops with .ci/slurm-down.sh.
set -euo pipefail
STATE=${PSPNET_SLURM_STATE:-/run/pspnet-repro-slurm}
CONF=/etc/slurm/slurm.conf
log() { echo "slurm-up: $*" >&2; }

if [ "$(id -u)" != 0 ]; then log "needs root"; exit 1; fi
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  log "installing slurmctld, slurmd, slurm-client, munge (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  (apt-get install -y -q slurmd slurmctld slurm-client munge >/dev/null 2>&1) \
    || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q slurmd slurmctld slurm-client munge >/dev/null)
fi

if scontrol ping 2>/dev/null | grep -q "is UP" && sinfo -h -o "%T" 2>/dev/null | grep -q idle; then
  log "a cluster already answers"; echo "export PSPNET_SLURM=1"; exit 0
fi

mkdir -p "$STATE"/{ctld,n1,n2} /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
chmod 0755 /run/munge
[ -s /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
if ! pgrep -x munged >/dev/null; then runuser -u munge -- /usr/sbin/munged; fi

cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 4 ))
mkdir -p /etc/slurm
cat > "$CONF" <<CONF
# Written by pspnet-repro .ci/slurm-up.sh: two nodes on one host.
ClusterName=pspnet
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=16817
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/%n
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd-%n.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd-%n.log
KillWait=10
InactiveLimit=0
MinJobAge=600
NodeName=n1 NodeAddr=127.0.0.1 Port=17001 CPUs=$cpus RealMemory=$mem State=UNKNOWN
NodeName=n2 NodeAddr=127.0.0.1 Port=17002 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=n1,n2 Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF

/usr/sbin/slurmctld
for node in n1 n2; do /usr/sbin/slurmd -N "$node"; done
for _ in $(seq 1 60); do
  if [ "$(sinfo -h -o '%T' 2>/dev/null | sort -u | tr -d '\n')" = idle ]; then
    log "two nodes up: $(sinfo -h -N -o '%N:%T' | tr '\n' ' ')"
    echo "export PSPNET_SLURM=1"; exit 0
  fi
  sleep 1
done
log "nodes did not become idle: $(sinfo -h -N -o '%N:%T' 2>&1 | tr '\n' ' ')"
tail -5 "$STATE"/*.log >&2 || true
exit 1
