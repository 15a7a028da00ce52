#!/usr/bin/env bash
# Stop the Docker engine that .ci/docker-up.sh started (exactly that one, by its pidfile) and undo
# what it changed on the host where that is easy: ip_forward, the iptables FORWARD policy, the
# DOCKER* iptables chains and rules, and the docker0 bridge. Images stay in the data root (deleting
# a big data root is slow, and keeping it makes the next start and build fast).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN_DIR="${PSPNET_DOCKER_RUN:-/run/pspnet-repro-docker}"
PIDFILE="$RUN_DIR/dockerd.pid"
HOSTSTATE="$RUN_DIR/host-state"
log() { echo "docker-down: $*" >&2; }

stop_engine() {
  if [ ! -f "$PIDFILE" ]; then log "no pidfile at $PIDFILE: nothing to stop"; return 0; fi
  local pid; pid="$(cat "$PIDFILE")"
  if ! kill -0 "$pid" 2>/dev/null; then log "dockerd $pid is not running"; rm -f "$PIDFILE"; return 0; fi
  # SIGTERM lets dockerd stop its containers, unmount and stop its containerd.
  kill -TERM "$pid"
  local i
  for i in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || { log "stopped dockerd $pid"; rm -f "$PIDFILE"; return 0; }
    sleep 0.5
  done
  log "dockerd $pid ignored SIGTERM for 30 s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$PIDFILE"
}

# Delete every rule that jumps to or mentions a DOCKER chain or docker0, then the chains.
clean_iptables() {
  command -v iptables >/dev/null || return 0
  local table rule chain
  for table in filter nat; do
    iptables -t "$table" -S 2>/dev/null | grep -E '^-A ' | grep -E 'DOCKER|docker0' | sed 's/^-A //' |
      while read -r rule; do
        # shellcheck disable=SC2086
        eval iptables -t "$table" -D $rule 2>/dev/null || true
      done
    for chain in $(iptables -t "$table" -S 2>/dev/null | awk '/^-N DOCKER/ {print $2}'); do
      iptables -t "$table" -F "$chain" 2>/dev/null || true
      iptables -t "$table" -X "$chain" 2>/dev/null || true
    done
  done
}

restore_host() {
  [ -f "$HOSTSTATE" ] || return 0
  # Another engine (e.g. a system dockerd) still needs its rules, bridge and forwarding.
  if pgrep -x dockerd >/dev/null 2>&1; then
    log "another dockerd runs: leaving iptables, ip_forward and docker0 alone"; return 0
  fi
  # shellcheck disable=SC1090
  . "$HOSTSTATE"
  clean_iptables
  if [ -n "${FORWARD_POLICY:-}" ]; then iptables -P FORWARD "$FORWARD_POLICY" 2>/dev/null || true; fi
  echo "${IP_FORWARD:-0}" > /proc/sys/net/ipv4/ip_forward 2>/dev/null || true
  ip link delete docker0 2>/dev/null || true
  rm -f "$HOSTSTATE"
  log "restored ip_forward=${IP_FORWARD:-0}, FORWARD policy ${FORWARD_POLICY:-unchanged}"
}

stop_engine
restore_host
rm -f "$REPO/.ci-state/docker.env"
