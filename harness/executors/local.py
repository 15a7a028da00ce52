"""Run a plan's launch command as a subprocess on this machine, streaming its output.

The child gets its own process group so that an interrupt or a timeout stops every rank that
torchrun started, not just torchrun.
"""
from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.spec import LaunchSpec

STOP_GRACE_S = 20


@dataclass(frozen=True)
class LocalOutcome:
    exit_code: int


def _stop_group(process: subprocess.Popen) -> None:
    """SIGTERM the whole group, then SIGKILL whatever is still there after the grace period."""
    for sig, wait_s in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def run_local(launch: LaunchSpec, *, log_path: Path, on_line: Callable[[str], None], cwd: Path) -> LocalOutcome:
    """Run to completion. On KeyboardInterrupt (Ctrl-C, SIGTERM or the run's timeout, all raised
    in this thread) every process of the group is stopped before the exception goes on."""
    env = {**os.environ, **launch.environment, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "a", buffering=1) as log:
        process = subprocess.Popen(
            list(launch.argv),
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        try:
            for line in process.stdout:
                log.write(line)
                on_line(line.rstrip("\n"))
            return LocalOutcome(exit_code=process.wait())
        except BaseException:
            _stop_group(process)
            raise
