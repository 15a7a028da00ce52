"""The worker's event streams checked by MLCommons' own compliance checker against our ruleset.

``events.yaml`` (package data) states what a harness event stream must hold: ``run_start`` once
and first, the run's settings before the first training window, every evaluation's accuracy
(0-100) with its iteration, every window's time, ``run_stop`` once and last with its status, and
each value's type and range. ``last_attempt.yaml`` adds that the run's last stream ends with
``run_stop``: a run killed and resumed leaves one stream per attempt (``work_dir/<timestamp>/``),
and only a stream that a later attempt follows may end without it.

Each stream goes through the harness's own bounded parse first (size cap, every line a JSON event
with the fields mllog writes, only keys the ruleset knows), then a copy of the parsed events is
checked by ``mlperf_logging.compliance_checker`` in this process with warnings as errors
(``official.py``); each failure comes back as one line naming the stream's line, the key and the
rule (``failures.py``). The ruleset is ours and ships with the package: the checker evaluates the
rule text as Python, so a ruleset is never taken from a bundle or a run folder.
"""
from __future__ import annotations

import json
import tempfile
from functools import lru_cache
from pathlib import Path

from ..detect import holds_logs
from ..errors import LogParseError
from ..events import FILE_NAME, PREFIX, read_events
from .failures import describe, one_line_each
from .official import run_checker

RULESET = Path(__file__).resolve().with_name("events.yaml")
LAST_ATTEMPT_RULESET = Path(__file__).resolve().with_name("last_attempt.yaml")
# A month-long run logging every 50 iterations writes a few MB; the checker keeps every line in
# memory (parsed, several times its size), so a larger stream is refused rather than read.
MAX_STREAM_BYTES = 64 << 20
MAX_LINES = 20  # per stream; a stream broken everywhere says so without flooding the output
_LAST_ATTEMPT_NOTE = (" in the run's last attempt (only a stream that a later attempt of the run follows "
                      "may end without run_stop)")


@lru_cache(maxsize=1)
def ruleset_keys() -> frozenset[str]:
    """The keys the ruleset names: the keys the worker writes."""
    import yaml

    entries = yaml.safe_load(RULESET.read_text(encoding="utf-8"))
    return frozenset(e["KEY"]["NAME"] for e in entries if "KEY" in e)


def _as_checked(event: dict) -> str:
    """The event as the checker reads it: ASCII (it reads latin-1), one line, and no second
    ``:::MLLOG`` inside a string (it cuts every line at the last one). ``\\u003a`` is ``:`` to
    JSON, and a ``:`` in JSON text is never part of an escape, so the value is unchanged."""
    text = json.dumps(event, ensure_ascii=True)
    return PREFIX + text.replace(PREFIX.rstrip(), "\\u003a" + PREFIX.rstrip()[1:])


def _bounded_parse(path: Path, name: str) -> tuple[list[tuple[int, dict]], list[str]]:
    """The stream's events, or the lines that make it unfit for the checker."""
    try:
        if path.is_symlink():
            return [], [f"{name}: is a link; not followed"]
        size = path.stat().st_size
        if size > MAX_STREAM_BYTES:
            return [], [f"{name}: {size} bytes, over the {MAX_STREAM_BYTES >> 20} MiB an event stream is checked up to"]
        events, _ = read_events(path)  # a last line cut short is left out: it was never written whole
    except LogParseError as exc:
        return [], [str(exc).replace(str(path), name, 1)]
    except OSError as exc:
        return [], [f"{name}: {exc.strerror or exc}"]
    known, problems = ruleset_keys(), []
    for lineno, event in events:
        key, time_ms = event["key"], event["time_ms"]
        if not isinstance(key, str) or key not in known:
            shown = json.dumps(key)[:60]  # quoted and escaped: the key is untrusted text
            problems.append(f"{name}:{lineno}: key {shown} is not a key of the harness's event stream "
                            f"(the ruleset {RULESET.name} names them all)")
        elif isinstance(time_ms, bool) or not isinstance(time_ms, (int, float)):
            problems.append(f"{name}:{lineno}: {key}: time_ms is not a number")
    return events, problems


def check_stream(path: Path, *, last_attempt: bool = True, name: str | None = None) -> list[str]:
    """One line per failure of the stream at ``path`` (empty: it complies). ``last_attempt``:
    no later attempt of the run follows it, so it must end with ``run_stop``. ``name``: how to
    call the file in the lines (default: its path)."""
    name = name or str(path)
    events, problems = _bounded_parse(path, name)
    if problems:
        return _capped(problems, name)
    lines = [_as_checked(event) for _, event in events]
    with tempfile.TemporaryDirectory(prefix="harness-compliance-") as tmp:
        copy, log = Path(tmp) / FILE_NAME, Path(tmp) / "compliance_checker.log"
        copy.write_text("".join(f"{line}\n" for line in lines), encoding="ascii")
        rulesets = [RULESET, LAST_ATTEMPT_RULESET] if last_attempt else [RULESET]
        recorded = run_checker(copy, rulesets, log)
    failures = describe(recorded[0], events, lines)
    if last_attempt:
        failures += describe(recorded[1], events, lines, occurrence_note=_LAST_ATTEMPT_NOTE)
    return _capped(one_line_each(failures, name), name)


def _capped(lines: list[str], name: str) -> list[str]:
    if len(lines) <= MAX_LINES:
        return lines
    return [*lines[:MAX_LINES], f"{name}: ... and {len(lines) - MAX_LINES} more failures"]


def attempt_streams(work_dir: Path) -> list[tuple[Path, bool]]:
    """``[(events.mllog, is the run's last attempt)]`` of a run's ``work_dir``, oldest first:
    one mmengine timestamp folder per (re)start, named so that they sort in time."""
    attempts = sorted(d for d in work_dir.iterdir()
                      if d.is_dir() and not d.is_symlink() and (holds_logs(d) or (d / FILE_NAME).exists()))
    return [(d / FILE_NAME, i == len(attempts) - 1) for i, d in enumerate(attempts)
            if (d / FILE_NAME).exists() or (d / FILE_NAME).is_symlink()]


def check_run(work_dir: Path, *, name: str | None = None) -> tuple[int, list[str]]:
    """``(streams checked, failure lines)`` for every attempt's stream of a run; a run without
    event streams (text logs only) has nothing to check. ``name``: how to call ``work_dir``."""
    name = name or str(work_dir)
    streams = attempt_streams(work_dir)
    failures = [line for stream, last in streams
                for line in check_stream(stream, last_attempt=last,
                                         name=f"{name}/{stream.relative_to(work_dir).as_posix()}")]
    return len(streams), failures
