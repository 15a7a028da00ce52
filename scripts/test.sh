#!/usr/bin/env bash
# The whole test suite on a fresh machine: install what the tests need, start this project's own
# Docker engine when we may (root: .ci/docker-up.sh installs Debian's docker.io and starts dockerd
# on its own socket) and a two-node Slurm cluster (.ci/slurm-up.sh), run pytest, stop exactly those again.
#
# PSPNET_REQUIRE_DOCKER=1 (set by .ci/run) makes an engine that cannot be started an error, and the
# container tests fail instead of skipping. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python -m pip install -q -e ".[train,test,k8s,tracking]"

started_engine=0
started_slurm=0
stop_services() {
  if [ "$started_engine" = 1 ]; then bash .ci/docker-down.sh || true; fi
  if [ "$started_slurm" = 1 ]; then bash .ci/slurm-down.sh || true; fi
}
trap stop_services EXIT

if [ "${PSPNET_SKIP_DOCKER:-0}" != 1 ] && [ "$(id -u)" = 0 ]; then
  if exports="$(bash .ci/docker-up.sh)"; then
    eval "$exports"
    started_engine=1
  elif [ "${PSPNET_REQUIRE_DOCKER:-0}" = 1 ]; then
    echo "scripts/test.sh: could not start the Docker engine (PSPNET_REQUIRE_DOCKER=1)" >&2
    exit 1
  else
    echo "scripts/test.sh: no Docker engine: the container tests will skip" >&2
  fi
fi

# The CPU image (and its local Debian base) the container tests need, built in the background
# while the tests that need no image run: on a fresh machine the build is mostly downloads. The
# tests' cpu_image fixture waits for this build (PSPNET_PREBUILD_PID) instead of starting its own.
if [ "$started_engine" = 1 ] && [ "${PSPNET_PREBUILD:-1}" = 1 ]; then
  mkdir -p .ci-state
  ( { docker image inspect pspnet-repro/base:bookworm >/dev/null 2>&1 || bash .ci/base-image.sh; } \
      && python -m harness image build cpu --base pspnet-repro/base:bookworm ) > .ci-state/prebuild.log 2>&1 &
  export PSPNET_PREBUILD_PID=$!
fi

# A real two-node Slurm cluster (slurmctld + two slurmd + munge) for the Slurm executor's tests.
if [ "${PSPNET_SKIP_SLURM:-0}" != 1 ] && [ "$(id -u)" = 0 ]; then
  if exports="$(bash .ci/slurm-up.sh)"; then
    eval "$exports"
    started_slurm=1
  elif [ "${PSPNET_REQUIRE_SLURM:-0}" = 1 ]; then
    echo "scripts/test.sh: could not start the Slurm cluster (PSPNET_REQUIRE_SLURM=1)" >&2
    exit 1
  else
    echo "scripts/test.sh: no Slurm cluster: the Slurm tests will skip" >&2
  fi
fi

# Two workers: a test often waits on subprocesses, the engine or the cluster, so a second one
# fills the idle core. Tests on the one engine or the one cluster stay on one worker
# (tests/conftest.py). Two trainings at once must not each spin a thread per core (OpenMP's busy
# waiting made them ten times slower), so every CPU rank gets one thread (PSPNET_CPU_THREADS).
# PSPNET_TEST_WORKERS=0 runs everything in this process, one test after another.
workers="${PSPNET_TEST_WORKERS:-2}"
if [ "$workers" != 0 ]; then
  export PSPNET_CPU_THREADS="${PSPNET_CPU_THREADS:-1}"  # runs the harness plans (containers too)
  export OMP_NUM_THREADS="$PSPNET_CPU_THREADS"          # torch inside the test processes themselves
fi
python -m pytest -ra --durations=15 -n "$workers" --dist loadgroup "$@"
