"""Progress while training: the current iteration, ETA and loss, read from mmengine's log lines.

On a terminal a rich progress bar stays at the bottom with the log scrolling above it; on a pipe
or file (CI, ``tee``) there is no bar: ``--quiet`` prints a ``progress:`` line per logged window
instead. A closed pipe or a hung-up terminal drops the output (``harness.core.output.SafeStream``);
the run and its log go on."""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from typing import TextIO

TRAIN_LINE = re.compile(r"Iter\(train\)\s*\[\s*(\d+)/(\d+)\].*?eta:\s*(\S+).*?\bloss:\s*([0-9.eE+-]+|nan)")
VAL_LINE = re.compile(r"Iter\((?:val|test)\)\s*\[\s*(\d+)/(\d+)\]\s+aAcc:\s*([0-9.]+)\s+mIoU:\s*([0-9.]+)")
BAR_WIDTH = 30


def text_bar(done: int, total: int) -> str:
    """``[#####.....]`` for the lines written to pipes and files, where no bar is redrawn."""
    filled = int(BAR_WIDTH * done / max(total, 1))
    return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}]"


class TerminalBar:
    """One rich progress bar on a terminal; lines printed through it scroll above the bar.

    Redrawn only when told (no refresh thread writing behind the caller's back). ``fields`` name
    the values shown after the counts, filled by ``update``."""

    def __init__(self, stream: TextIO, label: str, *fields: str):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn

        self.console = Console(file=stream, force_terminal=True, highlight=False, emoji=False, soft_wrap=True)
        columns = [TextColumn(label)] if label else []
        columns += [BarColumn(bar_width=BAR_WIDTH), MofNCompleteColumn(), TaskProgressColumn()]
        columns += [TextColumn(f"{name} {{task.fields[{name}]}}") for name in fields]
        self._bar = Progress(*columns, console=self.console, auto_refresh=False)
        self._fields = fields
        self._task = None

    def update(self, done: int, total: int, **values: object) -> None:
        if self._task is None:
            self._bar.start()
            self._task = self._bar.add_task("", total=total, **{name: "" for name in self._fields})
        self._bar.update(self._task, completed=done, total=total, **values)
        self._bar.refresh()

    def print(self, line: str) -> None:
        self.console.print(line, markup=False)  # a log line is text, never rich markup

    def close(self) -> None:
        if self._task is not None:
            self._bar.stop()  # leaves the last state of the bar on the screen
            self._task = None


@dataclass
class Progress:
    """Echoes the log (unless quiet) and draws a bar on a terminal, or prints a ``progress:``
    line per logged window when quiet and the output is not a terminal."""

    stream: TextIO = sys.stderr
    quiet: bool = False
    last: str = ""
    bar: TerminalBar | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        from harness.core.output import SafeStream

        self.stream = SafeStream(self.stream) if not isinstance(self.stream, SafeStream) else self.stream
        self.tty = self.stream.isatty()
        if self.tty and self.bar is None:
            self.bar = TerminalBar(self.stream, "", "eta", "loss")

    def feed(self, line: str) -> None:
        train = TRAIN_LINE.search(line)
        val = VAL_LINE.search(line)
        if not self.quiet:
            self._say(line)
        if train:
            done, total, eta, loss = int(train[1]), int(train[2]), train[3], train[4]
            self.last = f"{text_bar(done, total)} {done}/{total} ({100 * done // max(total, 1)}%) eta {eta} loss {loss}"
            if self.bar is not None:
                self.bar.update(done, total, eta=eta, loss=loss)
            elif self.quiet:
                self.stream.write(f"progress: {self.last}\n")
        elif val:
            self._say(f"evaluation: aAcc {val[3]} mIoU {val[4]}")

    def _say(self, line: str) -> None:
        if self.bar is not None:
            self.bar.print(line)
        else:
            self.stream.write(line + "\n")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
