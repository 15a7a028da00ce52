"""Talking to a Slurm cluster through its own commands (``sbatch``, ``scontrol``, ``scancel``):
submit a batch script, read a job's state, cancel it, and follow the job's per-node log files.

Accounting is often off (``sacct`` then knows nothing), so jobs are followed with ``scontrol show
job``, which keeps a finished job for ``MinJobAge`` seconds.

A controller restart is routine on a real cluster (an upgrade, a failover): while ``slurmctld`` does
not answer, the job goes on on its nodes, so following waits it out with a bounded back-off
(``Backoff``: 1, 2, 4, 8, then every 15 s) for up to ``OUTAGE_LIMIT_S`` before giving up.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import BadInput, EnvironmentNotReady

COMMAND_TIMEOUT_S = 60
OUTAGE_LIMIT_S = 120  # how long a controller may be away before the harness stops following


class ControllerUnreachable(EnvironmentNotReady):
    """slurmctld does not answer (stopped, restarting, or the network to it is down)."""


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
        raise ControllerUnreachable(f"`{' '.join(argv)}` did not answer in {COMMAND_TIMEOUT_S} s: is slurmctld up?") from None


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
    """The job as ``scontrol show job -o`` sees it; None when Slurm no longer knows the id;
    ControllerUnreachable when the controller does not answer (it knows nothing either way then)."""
    done = _run(["scontrol", "show", "job", "-o", job_id])
    if done.returncode != 0 and "Invalid job id" not in done.stderr:
        raise ControllerUnreachable(f"scontrol: {' '.join(done.stderr.split()) or f'exit code {done.returncode}'}")
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


class Backoff:
    """The waits between tries while the controller is away: ``first_s``, doubling up to ``cap_s``;
    ``failed()`` is None once ``limit_s`` have passed since the first failure of this outage."""

    def __init__(self, limit_s: float = OUTAGE_LIMIT_S, first_s: float = 1, cap_s: float = 15,
                 clock: Callable[[], float] = time.monotonic):
        self.limit_s, self._first_s, self._cap_s, self._clock = limit_s, first_s, cap_s, clock
        self._since: float | None = None
        self._next = first_s

    def failed(self) -> float | None:
        """A try failed: how long to wait before the next, or None to give up."""
        now = self._clock()
        if self._since is None:
            self._since = now
        left = self._since + self.limit_s - now
        if left <= 0:
            return None
        delay, self._next = min(self._next, left), min(self._next * 2, self._cap_s)
        return delay

    def answered(self) -> None:
        self._since, self._next = None, self._first_s

    @property
    def outage_s(self) -> float:
        return 0.0 if self._since is None else self._clock() - self._since


def follow(job_id: str, follower: LogFollower, *, poll_s: float = 1.0,
           on_state: Callable[[JobInfo], None] | None = None, backoff: Backoff | None = None) -> JobInfo:
    """Poll until the job leaves the active states; returns the last thing Slurm said of it. A
    controller that does not answer is retried (``Backoff``); ControllerUnreachable after its limit."""
    from harness.executors.slurm_batch import run_state_of

    backoff = backoff or Backoff()
    last: JobInfo | None = None
    while True:
        try:
            info = job_info(job_id)
        except ControllerUnreachable as exc:
            follower.poll()  # the nodes write on: their logs are followed through the outage
            first_failure = backoff.outage_s == 0
            delay = backoff.failed()
            if delay is None:
                raise ControllerUnreachable(f"the Slurm controller did not answer for {backoff.limit_s:.0f} s while "
                                            f"following job {job_id} ({exc})") from None
            if first_failure:
                print(f"harness: the Slurm controller does not answer ({exc}); retrying for up to "
                      f"{backoff.limit_s:.0f} s", file=sys.stderr, flush=True)
            time.sleep(delay)
            continue
        backoff.answered()
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
