#!/usr/bin/env bash
# Build the local base image pspnet-repro/base:bookworm, only if it is absent.
#
# Why: no container registry is reachable from these machines, so `FROM debian:bookworm` cannot be
# pulled. We debootstrap a minimal Debian bookworm from the same apt mirror the host uses and
# `docker import` it. Every Dockerfile takes its base as `ARG BASE_IMAGE`, so CI passes this one and
# users with a registry pass an official image instead.
#
# Needs: a running engine (bash .ci/docker-up.sh; DOCKER_HOST set or .ci-state/docker.env present).
# Env:   BASE_TAG (default pspnet-repro/base:bookworm), DEBIAN_MIRROR (default: the host's first
#        deb.debian.org-style URI from /etc/apt/sources.list.d/*.sources).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TAG="${BASE_TAG:-pspnet-repro/base:bookworm}"
log() { echo "base-image: $*" >&2; }

if [ -z "${DOCKER_HOST:-}" ] && [ -f "$REPO/.ci-state/docker.env" ]; then
  # shellcheck disable=SC1091
  . "$REPO/.ci-state/docker.env"
fi

if docker image inspect "$TAG" >/dev/null 2>&1; then
  log "$TAG already present"; exit 0
fi

# The host's Debian mirror (the first URI of a deb822 source whose suites include bookworm).
host_mirror() {
  awk '/^URIs:/ {u=$2} /^Suites:/ && /(^| )bookworm( |$)/ && u {print u; exit}' \
    /etc/apt/sources.list.d/*.sources 2>/dev/null
}
MIRROR="${DEBIAN_MIRROR:-$(host_mirror)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"

command -v debootstrap >/dev/null || { log "debootstrap missing: run .ci/docker-up.sh"; exit 1; }

ROOTFS="$(mktemp -d /var/tmp/pspnet-base.XXXXXX)"
trap 'rm -rf "$ROOTFS"' EXIT
t0=$SECONDS
log "debootstrap bookworm from $MIRROR"
debootstrap --variant=minbase bookworm "$ROOTFS" "$MIRROR" >&2

# Copy the host's apt sources (only the Debian ones that are enabled) so `apt-get` inside builds
# uses the same reachable mirror; other vendors' lists would need keys the image lacks.
rm -f "$ROOTFS/etc/apt/sources.list"
for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list; do
  [ -f "$f" ] || continue
  grep -q 'debian' "$f" || continue
  grep -qE 'nodesource|google' "$f" && continue
  cp "$f" "$ROOTFS/etc/apt/sources.list.d/$(basename "$f")"
done
# Keep the image small: no apt caches, no docs we never read.
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*

tar -C "$ROOTFS" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["/bin/bash"]' \
  - "$TAG" >/dev/null
log "built $TAG in $((SECONDS - t0)) s"
