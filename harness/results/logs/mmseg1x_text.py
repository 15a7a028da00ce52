"""mmseg 1.x text logs (mmengine ``LogProcessor``): two-space separated, no commas, percent.

Train: ``Iter(train) [  50/20000]  lr: 9.9563e-03  eta: ...  time: 0.2820  data_time: 0.0014``
Val:   ``Iter(val) [1449/1449]  aAcc: 86.1000  mIoU: 45.9200  mAcc: 60.9600`` after a per-class
table; ``Iter(val) [500/1449]  eta: ...`` progress lines carry no metrics and are skipped.
"""
from __future__ import annotations

import re
from pathlib import Path

from .common import (
    DataloaderBatch,
    EvalTables,
    located,
    percent,
    split_per_class,
    text_fields,
    train_fields,
    train_point,
)
from .errors import LogParseError
from .model import Evaluation, FileRecords, Located
from .reader import Lines

NAME = "mmseg1x-text"

_TRAIN = re.compile(r"Iter\(train\) \[\s*(\d+)/\s*(\d+)\]\s*(.*)")
# tools/test.py logs its metrics as Iter(test); they belong to no training iteration.
_VAL = re.compile(r"Iter\((val|test)\) \[\s*(\d+)/\s*(\d+)\]\s*(.*)")
_DIST = re.compile(r"Distributed training: (True|False)")
_WORLD = re.compile(r"(?:GPU number|world_size)\s*[:=]\s*(\d+)")
_MAX = re.compile(r"\bmax_iters\s*=\s*(\d+)")


def sniff(head: str) -> bool:
    return "Iter(train) [" in head or " - mmengine - " in head


def parse(path: Path) -> FileRecords:
    p = str(path)
    rec = FileRecords(path=p, fmt=NAME, files=[p])
    tables = EvalTables(p)
    batch = DataloaderBatch()
    lines = Lines(path)
    header = True
    distributed: bool | None = None
    dist_source = ""
    world: Located | None = None
    cfg_max: Located | None = None
    last_iter: int | None = None
    last_max: tuple[int, str] | None = None
    for lineno, line in lines:
        i = line.find("Iter(")
        if i >= 0:
            if line.startswith("Iter(train) [", i):
                m = _TRAIN.match(line, i)
                if m:
                    header = False
                    last_iter = int(m.group(1))
                    last_max = (lineno, m.group(2))
                    fields = train_fields(m.group(3), "  ", p, lineno)
                    rec.train.append(train_point(last_iter, fields, f"{p}:{lineno}"))
                    continue
            elif line.startswith("Iter(val) [", i) or line.startswith("Iter(test) [", i):
                m = _VAL.match(line, i)
                if m and ("mIoU:" in line or "aAcc:" in line):
                    header = False
                    it = last_iter if m.group(1) == "val" else None
                    rec.evaluations.append(_evaluation(m.group(4), it, tables, p, lineno))
                continue
        if line[:1] == "|":
            tables.feed(line, lineno)
            continue
        if header:
            if batch.feed(line) is not None:
                rec.batch_per_device = located(p, lineno, batch.value)
            elif "Distributed training:" in line:
                m = _DIST.search(line)
                if m:
                    distributed, dist_source = m.group(1) == "True", f"{p}:{lineno}"
            elif "GPU number" in line or "world_size" in line:
                m = _WORLD.search(line)
                if m and world is None:
                    world = located(p, lineno, int(m.group(1)))
            elif cfg_max is None and "max_iters" in line:
                m = _MAX.search(line)
                if m:
                    cfg_max = located(p, lineno, int(m.group(1)))
    rec.max_iters = located(p, last_max[0], int(last_max[1])) if last_max else cfg_max
    if lines.truncated_tail:
        rec.truncated = True
        rec.warnings.append(lines.truncation_warning())
    if world is not None:
        rec.devices = world
    elif distributed:
        rec.devices_unknown = (f"{dist_source}: distributed training, but the log does not say "
                               "on how many devices (pass --devices)")
    elif distributed is False:
        rec.devices = Located(1, dist_source)
    if not (rec.train or rec.evaluations or rec.batch_per_device or distributed is not None):
        raise LogParseError(path, None, "no mmseg 1.x train, val or config lines")
    return rec


def _evaluation(rest: str, last_iter: int | None, tables: EvalTables, p: str,
                lineno: int) -> Evaluation:
    ev = Evaluation(iteration=last_iter, source=f"{p}:{lineno}")
    for key, value in text_fields(rest, "  "):
        if key in ("aAcc", "mIoU", "mAcc"):
            setattr(ev, key, percent(value))
        elif split_per_class(key) is None:
            v = percent(value)
            if v is not None:
                ev.extra[key] = v
    ev.per_class = tables.take_per_class()
    return ev
