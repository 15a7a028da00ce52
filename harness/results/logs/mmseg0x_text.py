"""mmseg 0.x text logs (mmcv 1.x ``TextLoggerHook``), from 0.10 (the seed, Ascend ``fps:``) to 0.30.

Train: ``Iter [50/10000]\\tlr: 9.955e-03, eta: 1:23:45, time: 1.086, data_time: 0.012, ...``
Val:   ``Iter(val) [1449]\\tmIoU: 0.7704, mAcc: 0.8652, aAcc: 0.9471`` -- fractions, converted
to percent; 0.11+ add ``IoU.<class>`` / ``Acc.<class>`` on that line.
"""
from __future__ import annotations

import re
from pathlib import Path

from .common import (
    EvalTables,
    fraction_to_percent,
    gpu_ids_count,
    located,
    split_per_class,
    text_fields,
    train_fields,
    train_point,
)
from .errors import LogParseError
from .model import Evaluation, FileRecords, Located
from .reader import Lines

NAME = "mmseg0x-text"

_TRAIN = re.compile(r"Iter \[(\d+)/(\d+)\]\s*(.*)")
_VAL = re.compile(r"Iter\(val\) \[(\d+)\]\s*(.*)")
_SAMPLES = re.compile(r"^ {4}samples_per_gpu\s*=\s*(\d+)")
_DIST = re.compile(r"Distributed training: (True|False)")
_MAX = re.compile(r"workflow: .*max: (\d+) iters")


def sniff(head: str) -> bool:
    return "Iter [" in head or " - mmseg - " in head


def parse(path: Path) -> FileRecords:
    p = str(path)
    rec = FileRecords(path=p, fmt=NAME, files=[p])
    tables = EvalTables(p)
    lines = Lines(path)
    header = True  # the config dump precedes the first train line
    distributed: bool | None = None
    ids: tuple[int, int] | None = None
    last_iter: int | None = None
    last_max: tuple[int, str] | None = None
    recognised = False
    for lineno, line in lines:
        i = line.find("Iter")
        if i >= 0:
            if line.startswith("Iter [", i):
                m = _TRAIN.match(line, i)
                if m:
                    header = False
                    pending = tables.summary_only_eval(last_iter)
                    if pending:
                        rec.evaluations.append(pending)
                    last_iter = int(m.group(1))
                    last_max = (lineno, m.group(2))
                    fields = train_fields(m.group(3), ", ", p, lineno)
                    rec.train.append(train_point(last_iter, fields, f"{p}:{lineno}"))
                    continue
            elif line.startswith("Iter(val) [", i):
                m = _VAL.match(line, i)
                if m:
                    header = False
                    rec.evaluations.append(_evaluation(m.group(2), last_iter, tables, rec, p,
                                                       lineno))
                    continue
        if line[:1] == "|" or line[:2] == " |":
            tables.feed(line, lineno)
            continue
        if header:
            recognised |= _header_line(line, lineno, rec, p)
            if line.startswith("gpu_ids"):
                n = gpu_ids_count(line.partition("=")[2])
                if n is not None:
                    ids = (n, lineno)
            elif "Distributed training:" in line:
                m = _DIST.search(line)
                if m:
                    distributed = m.group(1) == "True"
                    rec.metadata["distributed"] = distributed
                    rec.metadata["distributed_source"] = f"{p}:{lineno}"
    pending = tables.summary_only_eval(last_iter)
    if pending:
        rec.evaluations.append(pending)
    if last_max is not None:
        rec.max_iters = located(p, last_max[0], int(last_max[1]))
    if lines.truncated_tail:
        rec.truncated = True
        rec.warnings.append(lines.truncation_warning())
    _devices(rec, distributed, ids, p)
    if not (rec.train or rec.evaluations or recognised or ids or distributed is not None):
        raise LogParseError(path, None, "no mmseg 0.x train, val or config lines")
    return rec


def _header_line(line: str, lineno: int, rec: FileRecords, p: str) -> bool:
    if rec.batch_per_device is None and line.startswith("    samples_per_gpu"):
        m = _SAMPLES.match(line)
        if m:
            rec.batch_per_device = located(p, lineno, int(m.group(1)))
            return True
    elif rec.max_iters is None and "workflow:" in line:
        m = _MAX.search(line)
        if m:
            rec.max_iters = located(p, lineno, int(m.group(1)))
            return True
    return False


def _devices(rec: FileRecords, distributed: bool | None, ids, p: str) -> None:
    # mmseg >= 0.17 sets gpu_ids = range(world_size) for distributed runs; 0.10 (the seed) left
    # range(0, 1), so a distributed log with one gpu id does not tell the device count.
    if ids is not None and (ids[0] > 1 or not distributed):
        rec.devices = located(p, ids[1], ids[0])
    elif distributed:
        rec.devices_unknown = (f"{rec.metadata['distributed_source']}: distributed training, "
                               "but the log does not say on how many devices (pass --devices)")
    elif distributed is False:
        rec.devices = Located(1, rec.metadata["distributed_source"])


def _evaluation(rest: str, last_iter: int | None, tables: EvalTables, rec: FileRecords,
                p: str, lineno: int) -> Evaluation:
    ev = Evaluation(iteration=last_iter, source=f"{p}:{lineno}")
    for key, value in text_fields(rest, ", "):
        if key in ("aAcc", "mIoU", "mAcc"):
            v = fraction_to_percent(value)
            if v is not None and v > 100.0:
                # Not a fraction after all; never scale a number twice.
                v = float(value)
                rec.warnings.append(f"{p}:{lineno}: {key} {value} is not a fraction; "
                                    "taken as percent")
            setattr(ev, key, v)
            continue
        pc = split_per_class(key)
        if pc:
            ev.per_class.setdefault(pc[0], {})[pc[1]] = fraction_to_percent(value)
        else:
            try:
                ev.extra[key] = float(value)
            except ValueError:
                pass
    table = tables.take_per_class()
    if not ev.per_class:
        ev.per_class = table  # 0.10 prints per-class values only in the table
    return ev
