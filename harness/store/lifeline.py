"""Training never outlives the harness that runs it.

The harness holds an exclusive lock on ``<run>/.lock`` for the whole attempt (``RunDir.lock``);
the kernel drops it however the harness dies. Every worker process (each rank, locally or in a
container) is told the lock's path in ``HARNESS_RUN_LOCK`` and watches it: once nobody holds it,
the harness is gone, and the worker stops its process group instead of training on as an orphan
that a later ``--resume`` would race. Workers also hold a shared lock on ``HARNESS_TRAINER_LOCK``
while alive, so a resume can tell that an old trainer has not exited yet.

Under Slurm the run folder (and so the lock) is on the nodes' shared file system; a worker that
finds the lock free cancels the whole job (``scancel $SLURM_JOB_ID``). This needs flock locks
that every node sees: Linux NFS clients (v4, or v3 with the lock manager) and Lustre mounted with
``flock`` provide them; with node-local locks (Lustre ``localflock``, NFS ``nolock``) the lock
looks free on other nodes and their workers would stop at once.

Locally the launched process additionally gets a parent-death signal (``prctl``), which stops it
at once when the harness dies rather than at the next watch.
"""
from __future__ import annotations

import ctypes
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

from harness.core.flocks import lock_conflicts

ENV_RUN_LOCK = "HARNESS_RUN_LOCK"
ENV_TRAINER_LOCK = "HARNESS_TRAINER_LOCK"
WATCH_INTERVAL_S = 1.0
PR_SET_PDEATHSIG = 1


def set_parent_death_signal(sig: int = signal.SIGTERM, parent_pid: int | None = None) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux only). When the
    parent is already gone (it died before this ran), exit at once."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(128 + int(sig))


def _cancel_slurm_job() -> None:
    """Under Slurm the harness follows a batch job from outside it: stopping this node's ranks
    alone would leave the other nodes waiting in a collective. Cancel the whole job instead (best
    effort: inside a container without Slurm's commands the ranks' exit ends the job)."""
    job = os.environ.get("SLURM_JOB_ID")
    if job and shutil.which("scancel"):
        try:
            subprocess.run(["scancel", job], timeout=30, capture_output=True)
        except (OSError, subprocess.TimeoutExpired):
            pass


def _stop_everything(reason: str) -> None:
    print(f"harness.worker: {reason}; stopping", file=sys.stderr, flush=True)
    _cancel_slurm_job()
    try:
        os.killpg(os.getpgid(0), signal.SIGTERM)
    except OSError:
        pass
    time.sleep(5)
    os._exit(143)


def _watch(path: str, interval: float) -> None:
    while True:
        time.sleep(interval)
        if not lock_conflicts(path):
            _stop_everything(f"the harness running this run is gone (nobody holds {path})")


_trainer_fd: int | None = None


def install_from_environment(environ=os.environ) -> None:
    """Called first thing by every worker process: hold the trainer lock, watch the run lock."""
    global _trainer_fd
    trainer = environ.get(ENV_TRAINER_LOCK)
    if trainer and _trainer_fd is None:
        try:
            fd = os.open(trainer, os.O_RDWR | os.O_CREAT, 0o644)  # inherited by data loaders: fine
            fcntl.flock(fd, fcntl.LOCK_SH)
            _trainer_fd = fd
        except OSError:
            pass
    run_lock = environ.get(ENV_RUN_LOCK)
    if run_lock:
        if not lock_conflicts(run_lock):
            _stop_everything(f"no harness holds {run_lock}")
        threading.Thread(target=_watch, args=(run_lock, WATCH_INTERVAL_S), name="harness-lifeline", daemon=True).start()
