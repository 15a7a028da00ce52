"""Talking to a Slurm cluster through its own commands (``sbatch``, ``scontrol``, ``scancel``):
submit a batch script, read a job's state, cancel it, and follow the job's per-node log files.

Accounting is often off (``sacct`` then knows nothing), so jobs are followed with ``scontrol show
job``, which keeps a finished job for ``MinJobAge`` seconds.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.errors import BadInput, EnvironmentNotReady

COMMAND_TIMEOUT_S = 60


@dataclass(frozen=True)
class JobInfo:
    job_id: str
    state: str  # e.g. RUNNING, COMPLETED, CANCELLED
    exit_code: int  # the batch script's exit code (the part before ':')
    signal: int
    nodes: str
    reason: str


def require_slurm() -> None:
    missing = [c for c in ("sbatch", "scontrol", "scancel") if shutil.which(c) is None]
    if missing:
        raise EnvironmentNotReady(
            f"no Slurm client here ({', '.join(missing)} not on PATH): run from a Slurm login node, "
            "or start the test cluster with `bash .ci/slurm-up.sh`"
        )


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except FileNotFoundError:
        require_slurm()
        raise
    except subprocess.TimeoutExpired:
        raise EnvironmentNotReady(f"`{' '.join(argv)}` did not answer in {COMMAND_TIMEOUT_S} s: is slurmctld up?") from None


def submit(script: Path, arguments: Sequence[str] = ()) -> str:
    """``sbatch --parsable ARGUMENTS SCRIPT`` -> the job id. A rejected job (unknown partition, more
    nodes than the partition has, a bad gres) is bad input; a controller that does not answer is not."""
    require_slurm()
    done = _run(["sbatch", "--parsable", *arguments, str(script)])
    if done.returncode != 0:
        message = " ".join(done.stderr.split()) or f"exit code {done.returncode}"
        if "Unable to contact" in message or "Connection refused" in message:
            raise EnvironmentNotReady(f"sbatch: the Slurm controller does not answer ({message})")
        raise BadInput(f"{script}: sbatch refused the job: {message}")
    return done.stdout.strip().split(";")[0]


_FIELD = re.compile(r"(\w+)=(\S*)")


def job_info(job_id: str) -> JobInfo | None:
    """The job as ``scontrol show job -o`` sees it; None when Slurm no longer knows the id."""
    done = _run(["scontrol", "show", "job", "-o", job_id])
    if done.returncode != 0 or not done.stdout.strip():
        return None
    fields = dict(_FIELD.findall(done.stdout))
    code, _, sig = fields.get("ExitCode", "0:0").partition(":")
    return JobInfo(
        job_id=job_id,
        state=fields.get("JobState", "UNKNOWN"),
        exit_code=int(code or 0),
        signal=int(sig or 0),
        nodes=fields.get("NodeList", ""),
        reason=fields.get("Reason", ""),
    )


def cancel(job_id: str) -> None:
    _run(["scancel", job_id])


class LogFollower:
    """Copies what the job's log files gain into ``train.log`` (each line once, whole lines only)
    and hands the first node's lines to ``on_line`` for progress."""

    def __init__(self, sources: Callable[[], list[Path]], log_path: Path, on_line: Callable[[str], None] | None,
                 progress_source: str):
        self._sources = sources
        self._log_path = log_path
        self._on_line = on_line
        self._progress_source = progress_source
        self._offsets: dict[Path, int] = {}
        self._pending: dict[Path, bytes] = {}

    def skip_existing(self) -> None:
        """Start after what the sources hold now (an earlier attempt's lines are in train.log already)."""
        for path in self._sources():
            try:
                self._offsets[path] = path.stat().st_size
            except FileNotFoundError:
                continue

    def poll(self, *, final: bool = False) -> None:
        with open(self._log_path, "ab") as log:
            for path in self._sources():
                try:
                    with open(path, "rb") as handle:
                        handle.seek(self._offsets.get(path, 0))
                        chunk = handle.read()
                except FileNotFoundError:
                    continue
                self._offsets[path] = self._offsets.get(path, 0) + len(chunk)
                data = self._pending.pop(path, b"") + chunk
                *lines, rest = data.split(b"\n")
                if final and rest:
                    lines, rest = [*lines, rest], b""
                if rest:
                    self._pending[path] = rest
                for raw in lines:
                    log.write(raw + b"\n")
                    if self._on_line and path.name == self._progress_source:
                        self._on_line(raw.decode("utf-8", "replace").rstrip("\r"))


def follow(job_id: str, follower: LogFollower, *, poll_s: float = 1.0,
           on_state: Callable[[JobInfo], None] | None = None) -> JobInfo:
    """Poll until the job leaves the active states; returns the last thing Slurm said of it."""
    from harness.slurm import run_state_of

    last: JobInfo | None = None
    while True:
        info = job_info(job_id)
        follower.poll()
        if info is None:
            # Slurm forgot the job (MinJobAge passed, or the controller restarted without state).
            follower.poll(final=True)
            return last or JobInfo(job_id, "UNKNOWN", -1, 0, "", "Slurm no longer knows the job")
        if on_state and (last is None or info.state != last.state):
            on_state(info)
        last = info
        if run_state_of(info.state) is not None:
            follower.poll(final=True)
            return info
        time.sleep(poll_s)
