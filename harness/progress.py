"""Progress while training: the current iteration, ETA and loss, read from mmengine's log lines."""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import TextIO

TRAIN_LINE = re.compile(r"Iter\(train\)\s*\[\s*(\d+)/(\d+)\].*?eta:\s*(\S+).*?\bloss:\s*([0-9.eE+-]+|nan)")
VAL_LINE = re.compile(r"Iter\((?:val|test)\)\s*\[\s*(\d+)/(\d+)\]\s+aAcc:\s*([0-9.]+)\s+mIoU:\s*([0-9.]+)")


@dataclass
class Progress:
    """Echoes the log (unless quiet) and draws a one-line bar on a terminal, or prints a
    ``progress:`` line per logged window when the output is not a terminal."""

    stream: TextIO = sys.stderr
    quiet: bool = False
    last: str = ""

    def __post_init__(self) -> None:
        from harness.output import SafeStream

        # A closed pipe or a hung-up terminal drops the output; the run and its log go on.
        self.stream = SafeStream(self.stream) if not isinstance(self.stream, SafeStream) else self.stream
        self.tty = self.stream.isatty()

    def feed(self, line: str) -> None:
        train = TRAIN_LINE.search(line)
        val = VAL_LINE.search(line)
        if not self.quiet:
            self._clear()
            self.stream.write(line + "\n")
        if train:
            done, total, eta, loss = int(train[1]), int(train[2]), train[3], train[4]
            width = 30
            filled = int(width * done / max(total, 1))
            self.last = f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} ({100 * done // max(total, 1)}%) eta {eta} loss {loss}"
            self._draw()
        elif val:
            self._clear()
            self.stream.write(f"evaluation: aAcc {val[3]} mIoU {val[4]}\n")
            self._draw()

    def _clear(self) -> None:
        if self.tty and self.last:
            self.stream.write("\r\033[K")

    def _draw(self) -> None:
        if not self.last:
            return
        if self.tty:
            self.stream.write("\r" + self.last)
            self.stream.flush()
        elif self.quiet:
            self.stream.write(f"progress: {self.last}\n")

    def close(self) -> None:
        if self.tty and self.last:
            self.stream.write("\n")
            self.stream.flush()
