"""``harness data fetch``: the registry's archives into the download cache, each verified.

One flock per cache (``<cache>/.fetch.lock``) so two fetches never write the same ``.part``. Each
archive is tried from every source in order (``--mirror`` flags, then ``$PSPNET_MIRRORS``, then
the registry's URLs) until one delivers bytes with the registry's md5. If none does: exit 2 when
every source that answered offered wrong bytes (the data on offer is bad), exit 3 when some source
could not be reached at all (the network or the mirror list is the problem).
"""
from __future__ import annotations

import fcntl
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from harness.core.errors import BadInput, EnvironmentNotReady
from harness.core.fileio import file_digest
from harness.data.download import RetryPolicy, Unreachable, WrongBytes, fetch_from, part_paths, source_for
from harness.data.registry import Archive, LoadedRegistry

MIRRORS_VARIABLE = "PSPNET_MIRRORS"  # whitespace-separated mirror folders (URLs or paths)
BACKOFF_VARIABLE = "PSPNET_FETCH_BACKOFF_S"  # the first retry's wait; tests shorten it
LOCK_NAME = ".fetch.lock"


def env_mirrors() -> list[str]:
    return os.environ.get(MIRRORS_VARIABLE, "").split()


def retry_policy() -> RetryPolicy:
    value = os.environ.get(BACKOFF_VARIABLE)
    if value is None:
        return RetryPolicy()
    try:
        backoff = float(value)
    except ValueError:
        raise BadInput(f"{BACKOFF_VARIABLE}={value!r}: expected a number of seconds") from None
    if not backoff >= 0:
        raise BadInput(f"{BACKOFF_VARIABLE}={value!r}: expected a number of seconds >= 0")
    return RetryPolicy(backoff_s=backoff)


def sources(archive: Archive, mirrors: list[str]) -> list[str]:
    return [source_for(m, archive.file) for m in mirrors] + list(archive.urls)


@dataclass
class FetchPlan:
    """What a fetch will do: per archive, the bytes still to download; and the disk that needs."""

    cache: Path
    todo: dict[str, int] = field(default_factory=dict)  # name -> bytes still to download
    present: list[str] = field(default_factory=list)  # names already in the cache (verified on use)
    unpack_bytes: int = 0

    @property
    def download_bytes(self) -> int:
        return sum(self.todo.values())


def plan_fetch(registry: LoadedRegistry, names: list[str], cache: Path, *, prepare: bool) -> FetchPlan:
    plan = FetchPlan(Path(cache))
    for name in names:
        archive = registry.archive(name)
        final, part, _ = part_paths(cache, archive)
        if final.is_file():
            plan.present.append(name)
        else:
            have = part.stat().st_size if part.is_file() else 0
            plan.todo[name] = max(archive.size - have, 0)
        if prepare:
            plan.unpack_bytes += archive.unpacked_bytes
    return plan


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def describe(plan: FetchPlan, registry: LoadedRegistry, devkit: Path | None) -> list[str]:
    lines = []
    for name, missing in plan.todo.items():
        archive = registry.archive(name)
        lines.append(f"download {archive.file} ({human(archive.size)}, {human(missing)} still to fetch, "
                     f"md5 {archive.md5}) into {plan.cache}")
    for name in plan.present:
        lines.append(f"have {registry.archive(name).file} in {plan.cache} (its md5 is checked before use)")
    if devkit is not None:
        lines.append(f"prepare the dataset in {devkit} (up to {human(plan.unpack_bytes)})")
    lines.append(f"disk needed: {human(plan.download_bytes + plan.unpack_bytes)} "
                 f"(free: {human(free_bytes(plan.cache))} at {plan.cache})")
    return lines


def free_bytes(path: Path) -> int:
    path = Path(path).absolute()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def check_space(plan: FetchPlan) -> None:
    needed = plan.download_bytes + plan.unpack_bytes
    free = free_bytes(plan.cache)
    if needed > free:
        raise EnvironmentNotReady(f"{plan.cache}: needs {human(needed)} of disk, {human(free)} free; "
                                  "free space or pass --cache/--voc on a bigger disk")


@contextmanager
def cache_lock(cache: Path, stream: TextIO | None) -> Iterator[None]:
    cache.mkdir(parents=True, exist_ok=True)
    fd = os.open(cache / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if stream:
                print(f"fetch: waiting for another fetch into {cache} to finish", file=stream, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def archive_sources(registry: LoadedRegistry, paths: dict[str, Path]) -> dict:
    """What the manifest records about where the dataset came from."""
    return {"registry": registry.identity(),
            "archives": {name: {"file": str(Path(path).resolve()), "md5": registry.archive(name).md5,
                                "size": registry.archive(name).size} for name, path in paths.items()}}


def verify_cached(archive: Archive, path: Path) -> None:
    """A file under its final name was verified when it got there; a wrong one (copied in by hand,
    edited) is refused, never used."""
    got = file_digest(path, "md5")
    if got != archive.md5:
        raise BadInput(f"{path}: md5 mismatch: expected {archive.md5}, got {got}; remove it and fetch again")


def fetch_one(archive: Archive, cache: Path, mirrors: list[str], *, retry: RetryPolicy,
              stream: TextIO | None) -> Path:
    final = Path(cache) / archive.file
    if final.is_file():
        verify_cached(archive, final)
        return final
    wrong, unreachable = [], []
    for source in sources(archive, mirrors):
        progress = DownloadProgress(archive.file, source, stream)
        try:
            path = fetch_from(source, archive, cache, retry=retry, progress=progress.update)
        except WrongBytes as exc:
            wrong.append(str(exc))
            _say(stream, f"fetch: {exc}")
            continue
        except Unreachable as exc:
            unreachable.append(str(exc))
            _say(stream, f"fetch: {archive.file}: {exc}; trying the next source")
            continue
        finally:
            progress.close()
        _say(stream, f"fetch: {archive.file}: verified (md5 {archive.md5}) from {source}")
        return path
    if wrong and not unreachable:
        raise BadInput(wrong[-1] if len(wrong) == 1 else
                       f"{archive.file}: every source offered wrong bytes; last: {wrong[-1]}")
    raise EnvironmentNotReady(f"{archive.file}: no source could be used ({len(unreachable)} unreachable, "
                              f"{len(wrong)} with wrong bytes); last: {(unreachable or wrong)[-1]}")


def fetch_archives(registry: LoadedRegistry, names: list[str], cache: Path, mirrors: list[str], *,
                   stream: TextIO | None = sys.stderr) -> dict[str, Path]:
    retry = retry_policy()
    with cache_lock(Path(cache), stream):
        return {name: fetch_one(registry.archive(name), Path(cache), mirrors, retry=retry, stream=stream)
                for name in names}


def _say(stream: TextIO | None, line: str) -> None:
    if stream:
        print(line, file=stream, flush=True)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class DownloadProgress:
    """Bytes, rate and time left: a rich bar on a terminal, a plain line per 10% (or per 30 s) in a log."""

    def __init__(self, name: str, source: str, stream: TextIO | None):
        self.name, self.source, self.stream = name, source, stream
        self.started = time.monotonic()
        self.first: int | None = None
        self._bar = self._task = None
        self._last_line, self._last_tenth = 0.0, -1
        if stream is not None and getattr(stream, "isatty", lambda: False)():
            from rich.console import Console
            from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                       TransferSpeedColumn)

            console = Console(file=stream, force_terminal=True, highlight=False)
            self._bar = Progress(TextColumn(f"fetch {name}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                                 TimeRemainingColumn(), console=console)

    def update(self, have: int, total: int) -> None:
        if self.first is None:
            self.first = have
            if self._bar is not None:
                self._bar.start()
                self._task = self._bar.add_task("", total=total, completed=have)
        if self._bar is not None:
            self._bar.update(self._task, completed=have)
            return
        if self.stream is None:
            return
        now, tenth = time.monotonic(), 10 * have // max(total, 1)
        if tenth != self._last_tenth or now - self._last_line > 30:
            self._last_tenth, self._last_line = tenth, now
            print(self.line(have, total, now), file=self.stream, flush=True)

    def line(self, have: int, total: int, now: float) -> str:
        elapsed = max(now - self.started, 1e-6)
        rate = (have - (self.first or 0)) / elapsed
        left = f"{_duration((total - have) / rate)} left" if rate > 0 else "time left unknown"
        return (f"fetch: {self.name} {human(have)}/{human(total)} ({100 * have / max(total, 1):.0f}%) "
                f"{human(rate)}/s, {left}")

    def close(self) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.stop()
