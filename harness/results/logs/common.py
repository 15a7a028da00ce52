"""Pieces the log formats share: numbers and percent, ``key: value`` fields, train points, eval
tables, config-dump values."""
from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from decimal import Decimal, InvalidOperation

from .errors import LogParseError
from .model import Evaluation, Located, TrainPoint


def to_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def number(v) -> float | None:
    """A JSON number as a float; None for anything else (strings, null, booleans)."""
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def fraction_to_percent(value: str | float | None) -> float | None:
    """0.7704 -> 77.04 exactly as written (decimal shift, no 77.03999999 binary noise).

    NaN (a class absent from the val set) comes back as None: not measured, not zero.
    """
    if value is None:
        return None
    text = repr(value) if isinstance(value, float) else value.strip()
    try:
        d = Decimal(text)
    except InvalidOperation:
        return None
    if not d.is_finite():
        return None
    return float(d.scaleb(2))


def percent(value: str | float | None) -> float | None:
    if value is None:
        return None
    v = value if isinstance(value, float) else to_float(value)
    if v is None or not math.isfinite(v):
        return None
    return v


# --- ``key: value`` fields of a text line, and the train point they make ---

TRAIN_FIELDS = ("lr", "time", "data_time", "loss", "fps")
# Keys of JSON train rows that say where the row is, not what was measured.
POSITION_KEYS = ("iter", "step", "epoch")


def text_fields(rest: str, separator: str) -> Iterator[tuple[str, str]]:
    """``(key, value)`` of each ``key: value`` piece of a log line (0.x joins them with ``", "``,
    1.x with two spaces); pieces without ``": "`` are skipped."""
    for piece in rest.split(separator):
        key, sep, value = piece.partition(": ")
        if sep:
            yield key.strip(), value


def train_fields(rest: str, separator: str, path: str, lineno: int) -> dict[str, float]:
    """The numbers of a text train line. ``eta`` is skipped before float() (so that no line pays
    for an exception; 0.x's ``eta: 1 day, 2:03:04`` also holds the separator); a core field that
    is not a number is an error naming the line, any other non-number is left out."""
    out: dict[str, float] = {}
    for key, value in text_fields(rest, separator):
        if key == "eta":
            continue
        try:
            out[key] = float(value)
        except ValueError:
            if key in TRAIN_FIELDS:
                raise LogParseError(path, lineno, f"malformed train line: {key} = {value!r}") from None
    return out


def train_point(it: int, values: Mapping, source: str, *, not_extra: tuple[str, ...] = ()) -> TrainPoint:
    """One ``TrainPoint`` from a line's or a row's values: the core fields, and every other
    number (but ``not_extra``) in ``extra``."""
    return TrainPoint(iter=it, **{f: number(values.get(f)) for f in TRAIN_FIELDS},
                      extra={k: v for k, v in values.items()
                             if k not in TRAIN_FIELDS and k not in not_extra and number(v) is not None},
                      source=source)


_METRIC_PREFIXES = ("IoU", "Acc", "Dice", "Fscore", "Precision", "Recall")


def split_per_class(key: str) -> tuple[str, str] | None:
    """``IoU.aeroplane`` -> (``aeroplane``, ``IoU``); None for anything else."""
    metric, dot, cls = key.partition(".")
    if dot and metric in _METRIC_PREFIXES and cls:
        return cls, metric
    return None


class EvalTables:
    """Collects the per-class and summary tables printed just before an ``Iter(val)`` line.

    Handles mmseg 0.10's AsciiTable (``| Scope | mIoU | mAcc | aAcc |`` / ``| global |``) and
    later PrettyTables (``| aAcc | mIoU | mAcc |``); values in tables are already percent.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.per_class: dict[str, dict[str, float | None]] = {}
        self.summary: dict[str, float | None] = {}
        self.summary_source = ""
        self._header: list[str] | None = None
        self._kind = ""

    def feed(self, line: str, lineno: int) -> None:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not cells or not cells[0]:
            return
        first = cells[0]
        if first == "Class":
            self._header, self._kind = cells, "class"
            self.per_class = {}
            return
        if first in ("Scope", "aAcc", "mIoU", "mAcc"):
            self._header, self._kind = cells, "summary"
            return
        if self._header is None or len(cells) != len(self._header):
            return
        if self._kind == "class":
            self.per_class[first] = {h: percent(v) for h, v in zip(self._header[1:], cells[1:])}
        else:
            values = cells[1:] if self._header[0] == "Scope" else cells
            names = self._header[1:] if self._header[0] == "Scope" else self._header
            self.summary = {n: percent(v) for n, v in zip(names, values)}
            self.summary_source = f"{self.path}:{lineno}"

    def take_per_class(self) -> dict[str, dict[str, float | None]]:
        out, self.per_class = self.per_class, {}
        self.summary, self._header = {}, None
        return out

    def summary_only_eval(self, iteration: int | None) -> Evaluation | None:
        """An evaluation from tables with no ``Iter(val)`` line after them (``tools/test.py``)."""
        if not self.summary:
            return None
        ev = Evaluation(iteration=iteration, aAcc=self.summary.get("aAcc"),
                        mIoU=self.summary.get("mIoU"), mAcc=self.summary.get("mAcc"),
                        per_class=self.per_class, source=self.summary_source)
        self.per_class, self.summary, self._header = {}, {}, None
        return ev


# --- config dump values (the text logs print the whole config before training) ---

_SAMPLES_PER_GPU = re.compile(r"^ {4}samples_per_gpu\s*=\s*(\d+)", re.M)
_GPU_IDS = re.compile(r"^gpu_ids\s*=\s*(.+?)\s*$", re.M)
_RANGE = re.compile(r"range\(\s*(?:(\d+)\s*,\s*)?(\d+)\s*\)")


def gpu_ids_count(text: str) -> int | None:
    """``range(0, 8)`` -> 8, ``[0, 1]`` -> 2; None when not understood."""
    m = _RANGE.search(text)
    if m:
        start = int(m.group(1) or 0)
        return max(int(m.group(2)) - start, 0)
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1].strip()
        return len([x for x in inner.split(",") if x.strip()]) if inner else 0
    return None


def samples_per_gpu(config_text: str) -> tuple[int, int] | None:
    """(value, 1-based line in ``config_text``) of ``data = dict(samples_per_gpu=N`` (0.x)."""
    m = _SAMPLES_PER_GPU.search(config_text)
    if not m:
        return None
    return int(m.group(1)), config_text.count("\n", 0, m.start()) + 1


def gpu_ids(config_text: str) -> tuple[int, int] | None:
    m = _GPU_IDS.search(config_text)
    if not m:
        return None
    n = gpu_ids_count(m.group(1))
    if n is None:
        return None
    return n, config_text.count("\n", 0, m.start()) + 1


class DataloaderBatch:
    """Finds ``batch_size`` of ``train_dataloader = dict(...)`` in a 1.x config dump, line by line."""

    _ONE_LINE = re.compile(r"^train_dataloader\s*=\s*dict\(.*?\bbatch_size\s*=\s*(\d+)")
    _CHILD = re.compile(r"^ {4}batch_size\s*=\s*(\d+)")

    def __init__(self) -> None:
        self.inside = False
        self.value: int | None = None

    def feed(self, line: str) -> int | None:
        if self.value is not None:
            return None
        if line.startswith("train_dataloader"):
            m = self._ONE_LINE.match(line)
            if m:
                self.value = int(m.group(1))
                return self.value
            self.inside = "dict(" in line
            return None
        if self.inside:
            if line[:1] not in (" ", "\t", ")") and line.strip():
                self.inside = False
                return None
            m = self._CHILD.match(line)
            if m:
                self.value = int(m.group(1))
                return self.value
        return None


def located(path: str, lineno: int, value) -> Located:
    return Located(value, f"{path}:{lineno}")
