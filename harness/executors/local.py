"""Run a plan's launch command as a subprocess on this machine, streaming its output.

The child gets its own process group so that an interrupt or a timeout stops every rank that
torchrun started, not just torchrun.
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.spec import LaunchSpec

STOP_GRACE_S = 20


@dataclass(frozen=True)
class LocalOutcome:
    exit_code: int
    timed_out: bool = False
    interrupted: bool = False


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


def run_local(
    launch: LaunchSpec,
    *,
    log_path: Path,
    on_line: Callable[[str], None],
    cwd: Path,
    timeout_s: float | None = None,
) -> LocalOutcome:
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
        timer = None
        timed_out = threading.Event()
        if timeout_s:
            def _expire() -> None:
                timed_out.set()
                _stop_group(process)

            timer = threading.Timer(timeout_s, _expire)
            timer.daemon = True
            timer.start()
        try:
            for line in process.stdout:
                log.write(line)
                on_line(line.rstrip("\n"))
            code = process.wait()
        except KeyboardInterrupt:
            _stop_group(process)
            return LocalOutcome(exit_code=process.wait(), interrupted=True)
        finally:
            if timer:
                timer.cancel()
    return LocalOutcome(exit_code=code, timed_out=timed_out.is_set())
