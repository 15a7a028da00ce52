"""Output that must never fail a run: the terminal may go away (a closed pipe, a dropped SSH
session), the disk may fill. The log file keeps everything it can; the terminal gets what it can."""
from __future__ import annotations

import errno
from pathlib import Path
from typing import TextIO


class SafeStream:
    """Writes to a terminal/pipe; once it is closed (EPIPE, EIO...) further output is dropped."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.closed = False

    def isatty(self) -> bool:
        try:
            return not self.closed and self.stream.isatty()
        except (OSError, ValueError):
            return False

    def write(self, text: str) -> None:
        if self.closed:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # BrokenPipeError, EIO from a hung-up terminal, closed file
            self.closed = True

    def flush(self) -> None:
        self.write("")


class LineWriter:
    """Appends lines to a run's log file, line-buffered. A full disk is remembered
    (``disk_full``) rather than raised, so the run is still stopped and recorded properly."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.path, "a", buffering=1, errors="replace")
        self.disk_full = False

    def write(self, text: str) -> None:
        if self._handle is None or self.disk_full:
            return
        try:
            self._handle.write(text)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            self.disk_full = True

    def close(self) -> None:
        if self._handle is None:
            return
        try:
            self._handle.close()
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            self.disk_full = True
        self._handle = None
