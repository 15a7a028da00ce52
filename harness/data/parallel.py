"""A process pool over many small files, with a progress bar on stderr."""
from __future__ import annotations

import multiprocessing
import signal
import sys
import threading
import time
from typing import Callable, Iterable, Iterator, Sequence, TextIO, TypeVar

from harness.core.progress import TerminalBar, text_bar

T = TypeVar("T")
R = TypeVar("R")


class ProgressBar:
    """A rich bar on a terminal; on a log file, a line per quarter so logs stay short."""

    def __init__(self, total: int, label: str, stream: TextIO | None = sys.stderr):
        self.total, self.label, self.stream = total, label, stream
        self.done = 0
        self.started = time.monotonic()
        tty = bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())
        self.bar = TerminalBar(stream, f"{label}:", "rate") if tty else None
        self._last_quarter = -1
        self._last_draw = 0.0

    def update(self, n: int) -> None:
        self.done += n
        if self.stream is None:
            return
        if self.bar is not None:
            now = time.monotonic()
            if now - self._last_draw > 0.1 or self.done >= self.total:
                self._last_draw = now
                self.bar.update(self.done, self.total, rate=f"{self._rate():.0f}/s")
            return
        quarter = 4 * self.done // max(self.total, 1)
        if quarter != self._last_quarter:
            self._last_quarter = quarter
            print(self._line(), file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def _rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def _line(self) -> str:
        fraction = self.done / max(self.total, 1)
        return f"{self.label}: {text_bar(self.done, self.total)} {self.done}/{self.total} ({100 * fraction:.0f}%) {self._rate():.0f}/s"


def _chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _pool_context():
    # fork starts workers in milliseconds with our imports already done; but forking a process
    # that runs other threads (the run path may) can deadlock, so then use forkserver.
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _default_signals() -> None:
    # Forked workers inherit the parent's handlers (`harness run` turns SIGTERM into
    # KeyboardInterrupt); the pool stops its workers with SIGTERM, which must just end them.
    # Ctrl-C is the parent's to handle.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def parallel_map(
    func: Callable[[Sequence[T]], list[R]],
    items: Sequence[T],
    workers: int,
    bar: ProgressBar | None = None,
    chunk: int | None = None,
) -> Iterator[R]:
    """Yield ``func(chunk)``'s results (one per item) for chunks of ``items``, in any order.

    ``func`` takes a whole chunk so per-task pickling and IPC is paid once per few dozen files,
    not per file (mmengine's ``track_parallel_progress`` pays it per file).
    """
    items = list(items)
    if not items:
        return
    size = chunk or max(1, min(64, len(items) // (max(workers, 1) * 8) or 1))
    chunks = _chunks(items, size)
    if workers <= 1 or len(chunks) == 1:
        yield from _serial(func, chunks, bar)
        return
    with _pool_context().Pool(min(workers, len(chunks)), initializer=_default_signals) as pool:
        for results in pool.imap_unordered(func, chunks):
            if bar:
                bar.update(len(results))
            yield from results


def _serial(func, chunks, bar) -> Iterable:
    for part in chunks:
        results = func(part)
        if bar:
            bar.update(len(results))
        yield from results


def stream_map(func: Callable[[Sequence[T]], list[R]], chunks: Iterable[Sequence[T]], workers: int,
               bar: ProgressBar | None = None) -> Iterator[R]:
    """``parallel_map`` over chunks that are produced while it runs (read from an archive stream):
    at most two chunks per worker are in flight, so memory stays bounded however long the stream."""
    if workers <= 1:
        yield from _serial(func, chunks, bar)
        return
    from collections import deque

    with _pool_context().Pool(workers, initializer=_default_signals) as pool:
        pending: deque = deque()
        for part in chunks:
            pending.append(pool.apply_async(func, (part,)))
            while len(pending) >= 2 * workers or (pending and pending[0].ready()):
                results = pending.popleft().get()
                if bar:
                    bar.update(len(results))
                yield from results
        while pending:
            results = pending.popleft().get()
            if bar:
                bar.update(len(results))
            yield from results
