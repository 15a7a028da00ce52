"""Run a plan's launch command as a subprocess on this machine, streaming its output.

The child gets its own process group so that an interrupt or a timeout stops every rank that
torchrun started, not just torchrun; and a parent-death signal, so that it dies with the harness
(see ``harness.store.lifeline``).
"""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import ClassVar

from harness.core.output import LineWriter
from harness.executors import register
from harness.executors.base import Executor, LineSink, Outcome
from harness.store.lifeline import ENV_RUN_LOCK, ENV_TRAINER_LOCK, set_parent_death_signal

STOP_GRACE_S = 20


class LocalExecutor(Executor):
    """Subprocesses here: ``python -m harness.worker`` or torchrun with N ranks."""

    name: ClassVar[str] = "local"

    def __init__(self) -> None:
        super().__init__()
        self._process: subprocess.Popen | None = None
        self._log: LineWriter | None = None
        self._on_line: LineSink = lambda line: None

    def start(self, plan, run, on_line: LineSink) -> None:
        launch = plan.launch
        env = {
            **os.environ, **launch.environment, "PYTHONUNBUFFERED": "1",
            ENV_RUN_LOCK: str(Path(run.lock_file).resolve()),
            ENV_TRAINER_LOCK: str(Path(run.trainer_lock_file).resolve()),
        }
        parent = os.getpid()
        self._on_line = on_line
        self._log = LineWriter(run.log_file)
        self._process = subprocess.Popen(
            list(launch.argv),
            cwd=run.path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            start_new_session=True,
            preexec_fn=lambda: set_parent_death_signal(signal.SIGTERM, parent),
        )

    def wait(self) -> Outcome:
        assert self._process is not None and self._log is not None, "start() first"
        for line in self._process.stdout:
            self._log.write(line)
            self._on_line(line.rstrip("\n"))
        code = self._process.wait()
        self._log.close()
        return Outcome(exit_code=code)

    def stop(self) -> None:
        """SIGTERM the whole group, then SIGKILL whatever is still there after the grace period."""
        process = self._process
        if process is None:
            return
        for sig, wait_s in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 5)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        if self._log is not None and process.stdout is not None:
            try:  # what the ranks printed while stopping belongs in the log
                for line in process.stdout:
                    self._log.write(line)
            except (OSError, ValueError):
                pass
            self._log.close()


register(LocalExecutor)
