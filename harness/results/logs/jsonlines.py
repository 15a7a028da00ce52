"""JSON-lines reading shared by the 0.x ``.log.json`` and 1.x ``scalars.json`` formats."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from .errors import LogParseError
from .reader import Lines


class JsonRows:
    """Iterate ``(lineno, object)``; bare ``NaN`` tokens parse (Python's json accepts them).

    A malformed line in the middle is an error; a last line cut short is dropped (``truncated``
    set, ``warning`` says where), but kept when it is a complete object (JSON delimits itself).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.truncated = False
        self.warning = ""

    def __iter__(self) -> Iterator[tuple[int, dict]]:
        lines = Lines(self.path)
        loads = json.loads
        for lineno, line in lines:
            if not line.strip():
                continue
            yield lineno, self._object(loads, line, lineno)
        if lines.truncated_tail:
            try:
                obj = loads(lines.tail_text)
            except ValueError:
                obj = None
            if isinstance(obj, dict):
                yield lines.tail_lineno, obj
            else:
                self.truncated = True
                self.warning = lines.truncation_warning()

    def _object(self, loads, line: str, lineno: int) -> dict:
        try:
            obj = loads(line)
        except ValueError as exc:
            msg = getattr(exc, "msg", str(exc))
            raise LogParseError(self.path, lineno, f"invalid JSON line ({msg})") from None
        if not isinstance(obj, dict):
            raise LogParseError(self.path, lineno, "JSON line is not an object")
        return obj
