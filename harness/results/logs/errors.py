"""The one exception the log parsers raise."""
from __future__ import annotations

from harness.core.errors import BadInput


class LogParseError(BadInput):
    """A log could not be parsed at all (binary, empty, unknown format, malformed mandatory line).

    A metric that is merely absent is never an error: it comes back as None.
    """

    def __init__(self, path: object, line: int | None, reason: str) -> None:
        self.path = str(path)
        self.line = line
        self.reason = reason
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        # One line, always: callers print it as-is after a prefix.
        return f"{where}: {' '.join(self.reason.split())}"
