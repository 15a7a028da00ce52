"""Which format a file is, and which files a directory (an mmseg work_dir) stands for."""
from __future__ import annotations

from pathlib import Path

from . import (
    events,
    mmseg0x_json,
    mmseg0x_text,
    mmseg1x_scalars,
    mmseg1x_text,
    seed_result,
)
from .errors import LogParseError
from .reader import check_readable

_HEAD = 1 << 20
_CHUNK = 1 << 22
# Train/val line markers decide over logger names: they are what the parsers read.
_LINE_MARKERS = (("Iter(train) [", mmseg1x_text.NAME), ("Iter [", mmseg0x_text.NAME))
_NAME_MARKERS = ((" - mmengine - ", mmseg1x_text.NAME), (" - mmseg - ", mmseg0x_text.NAME))


def detect(path: Path) -> str:
    head_bytes = check_readable(path)
    head = head_bytes.decode("utf-8", errors="replace")
    if events.sniff(head):
        return events.NAME
    if head.lstrip().startswith("{"):
        if mmseg0x_json.sniff(head):
            return mmseg0x_json.NAME
        if mmseg1x_scalars.sniff(head):
            return mmseg1x_scalars.NAME
        raise LogParseError(path, 1, "JSON lines, but neither an mmseg 0.x log.json "
                                     "(`mode`/`env_info`) nor 1.x scalars (`step`)")
    if seed_result.sniff(head):
        return seed_result.NAME
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read(_HEAD)
        for marker, name in _LINE_MARKERS:
            if marker in text:
                return name
        for marker, name in _NAME_MARKERS:
            if marker in text:
                return name
        # A long log whose first MiB is noise: look for train lines further on, chunk by chunk,
        # keeping a small overlap so a marker split across chunks is still seen.
        tail = text[-16:]
        while True:
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            window = tail + chunk
            for marker, name in _LINE_MARKERS:
                if marker in window:
                    return name
            tail = chunk[-16:]
    raise LogParseError(path, None, "format not recognised: no mmseg train/val lines, "
                                    "JSON rows or seed `Key = Value` lines")


def expand(path: Path) -> list[Path]:
    """A file stands for itself; a directory for the logs of the run(s) inside it.

    A harness run's folder also holds the worker's event stream: then the events (numbers) and
    the text log (per-class tables) stand for it, not scalars.json. Events are used only when
    every (re)start of the run wrote them, so that one run is never read in two ways.
    """
    if not path.is_dir():
        if not path.exists():
            raise LogParseError(path, None, "no such file or directory")
        return [path]
    folders = [path] if _run_dir(path, with_events=False) else []
    if not folders:
        # A 1.x work_dir holds one timestamp folder per (re)start of the run.
        folders = [sub for sub in sorted(p for p in path.iterdir() if p.is_dir())
                   if _run_dir(sub, with_events=False)]
    with_events = bool(folders) and all((d / events.FILE_NAME).is_file() for d in folders)
    found = [f for d in folders for f in _run_dir(d, with_events=with_events)]
    if not found:
        raise LogParseError(path, None, "directory holds no *.log, *.log.json or "
                                        "vis_data/scalars.json")
    return found


def holds_logs(d: Path) -> bool:
    """Whether the folder holds logs of one (re)start of a run (as ``expand`` reads them)."""
    return bool(_run_dir(d, with_events=False))


def _run_dir(d: Path, *, with_events: bool) -> list[Path]:
    scalars = d / "vis_data" / "scalars.json"
    texts = sorted(p for p in d.glob("*.log") if p.is_file())
    if with_events and (d / events.FILE_NAME).is_file():
        return [d / events.FILE_NAME, *texts]
    if scalars.is_file():
        return texts + [scalars]
    if texts:
        return texts  # 0.x: the .log has all the .log.json has, plus tables and config
    return sorted(p for p in d.glob("*.log.json") if p.is_file())
