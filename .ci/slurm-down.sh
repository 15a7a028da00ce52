#!/usr/bin/env bash
# Stop the cluster .ci/slurm-up.sh started (slurmd n1/n2, slurmctld, munged).
set -uo pipefail
STATE=${PSPNET_SLURM_STATE:-/run/pspnet-repro-slurm}
for pidfile in "$STATE"/slurmd-n1.pid "$STATE"/slurmd-n2.pid "$STATE"/slurmctld.pid; do
  [ -s "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null
done
pkill -x munged 2>/dev/null
exit 0
