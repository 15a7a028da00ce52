"""mmseg 0.x ``<timestamp>.log.json``: line 1 is env/config, then one object per log call.

Val rows' ``iter`` is the number of val images, not the training iteration, so a val row is
attached to the train row before it. Values are fractions; bare ``NaN`` tokens occur.
"""
from __future__ import annotations

import re
from pathlib import Path

from .common import (
    POSITION_KEYS,
    fraction_to_percent,
    gpu_ids,
    located,
    number,
    samples_per_gpu,
    split_per_class,
    train_point,
)
from .errors import LogParseError
from .jsonlines import JsonRows
from .model import Evaluation, FileRecords

NAME = "mmseg0x-json"
_MAX_ITERS = re.compile(r"\bmax_iters\s*=\s*(\d+)")
_NOT_EXTRA = (*POSITION_KEYS, "mode", "memory")


def sniff(head: str) -> bool:
    first = head.lstrip()[:4096]
    return first.startswith("{") and ('"env_info"' in first or '"mode"' in first)


def parse(path: Path) -> FileRecords:
    p = str(path)
    rec = FileRecords(path=p, fmt=NAME, files=[p])
    last_iter: int | None = None
    reader = JsonRows(path)
    for lineno, row in reader:
        mode = row.get("mode")
        if mode is None:
            if "config" in row or "env_info" in row:
                _header(row, rec, p, lineno)
            continue
        if mode == "train":
            it = row.get("iter")
            if not isinstance(it, int):
                raise LogParseError(path, lineno, "train row without an integer 'iter'")
            last_iter = it
            rec.train.append(train_point(it, row, f"{p}:{lineno}", not_extra=_NOT_EXTRA))
        elif mode == "val":
            rec.evaluations.append(_evaluation(row, last_iter, p, lineno))
    if reader.truncated:
        rec.truncated = True
        rec.warnings.append(reader.warning)
    if not (rec.train or rec.evaluations or rec.batch_per_device):
        raise LogParseError(path, None, "no mmseg 0.x train or val rows")
    return rec


def _header(row: dict, rec: FileRecords, p: str, lineno: int) -> None:
    config = row.get("config")
    if isinstance(config, str):
        # The config is one JSON string on line 1; cite the line and the key inside it.
        b = samples_per_gpu(config)
        if b:
            rec.batch_per_device = located(p, lineno, b[0])
            rec.batch_per_device.source += f" (config line {b[1]})"
        m = _MAX_ITERS.search(config)
        if m:
            rec.max_iters = located(p, lineno, int(m.group(1)))
            rec.max_iters.source += f" (config line {config.count(chr(10), 0, m.start()) + 1})"
        g = gpu_ids(config)
        if g:
            rec.devices = located(p, lineno, g[0])
            rec.devices.source += f" (config gpu_ids, line {g[1]})"
    for key in ("mmseg_version", "exp_name", "seed"):
        if key in row:
            rec.metadata[key] = row[key]


def _evaluation(row: dict, last_iter: int | None, p: str, lineno: int) -> Evaluation:
    ev = Evaluation(iteration=last_iter, source=f"{p}:{lineno}")
    for key, value in row.items():
        if key in ("aAcc", "mIoU", "mAcc"):
            setattr(ev, key, fraction_to_percent(number(value)))
            continue
        pc = split_per_class(key)
        if pc:
            ev.per_class.setdefault(pc[0], {})[pc[1]] = fraction_to_percent(number(value))
    return ev
