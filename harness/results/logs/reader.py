"""Reading a log file as lines: binary/empty checks, CRLF, launcher prefixes, truncated tail.

Streams the file so that a multi-gigabyte log costs time, not memory.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from .errors import LogParseError

_SNIFF_BYTES = 8192
# Log lines are at most a few kilobytes (a config dump's longest line); a "line" of megabytes is
# not a log, and reading it whole would cost its size in memory.
MAX_LINE_CHARS = 1 << 20
# torchrun --tee/--redirects (``[default0]:``), torch >= 2.2 rank tags (``[rank0]: ``), mpirun
# --tag-output (``[1,0]<stdout>:``). Exactly the tag: the config dump's indentation is data.
_PREFIX = re.compile(r"^(?:\[rank\d+\]: |\[default\d+\]:|\[\d+,\d+\]<std(?:out|err)>:)")


def strip_prefix(line: str) -> str:
    if line[:1] == "[":
        return _PREFIX.sub("", line, count=1)
    return line


def check_readable(path: Path) -> bytes:
    """Return the file's first bytes; raise for missing, unreadable, empty or binary files."""
    try:
        with open(path, "rb") as f:
            head = f.read(_SNIFF_BYTES)
            while head and not head.strip():  # leading blank space is not content
                more = f.read(_SNIFF_BYTES)
                if not more:
                    break
                head = more
    except IsADirectoryError:
        raise LogParseError(path, None, "is a directory with no recognisable logs") from None
    except OSError as exc:
        raise LogParseError(path, None, exc.strerror or str(exc)) from None
    if not head.strip():
        raise LogParseError(path, None, "empty file")
    if b"\x00" in head:
        raise LogParseError(path, None, "binary file (NUL bytes), not a text log")
    return head


class Lines:
    """Iterate ``(lineno, text)`` with line ends and launcher prefixes removed.

    A last line without a line end is a write cut short (the run was killed or the copy
    truncated); it is held back and ``truncated_tail`` is set, so that no number is read from
    half a line. ``tail_text`` keeps it for formats whose lines are self-delimiting (JSON).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.truncated_tail = False
        self.tail_text = ""
        self.tail_lineno = 0

    def __iter__(self) -> Iterator[tuple[int, str]]:
        # newline="" keeps the terminators so a missing one is visible, and splits on a lone
        # "\r" too, which is what mmcv progress bars write into captured stdout.
        with open(self.path, encoding="utf-8", errors="replace", newline="") as f:
            lineno = 0
            for raw in iter(lambda: f.readline(MAX_LINE_CHARS), ""):
                lineno += 1
                if len(raw) >= MAX_LINE_CHARS and raw[-1:] not in ("\n", "\r"):
                    raise LogParseError(self.path, lineno, f"a line longer than {MAX_LINE_CHARS} characters; not a text log")
                if raw[-1:] == "\n":
                    text = raw[:-2] if raw[-2:] == "\r\n" else raw[:-1]
                elif raw[-1:] == "\r":
                    text = raw[:-1]
                else:
                    # Only the last line can lack a terminator.
                    if raw.strip():
                        self.truncated_tail = True
                        self.tail_text = strip_prefix(raw)
                        self.tail_lineno = lineno
                    return
                yield lineno, (strip_prefix(text) if text[:1] == "[" else text)

    def truncation_warning(self) -> str:
        return (f"{self.path}:{self.tail_lineno}: last line has no line end (truncated write); "
                "ignored")
