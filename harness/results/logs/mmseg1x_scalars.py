"""mmseg 1.x ``vis_data/scalars.json``: json lines, percent, full precision.

Train rows carry ``step`` (and ``iter`` in newer mmengine); the val row has only ``step``,
which is the training iteration it belongs to. A ``config.py`` beside it gives the batch.
"""
from __future__ import annotations

from pathlib import Path

from .common import POSITION_KEYS, DataloaderBatch, located, number, train_point
from .errors import LogParseError
from .jsonlines import JsonRows
from .model import Evaluation, FileRecords

NAME = "mmseg1x-scalars"


def sniff(head: str) -> bool:
    first = head.lstrip()[:4096]
    return first.startswith("{") and '"step"' in first and '"mode"' not in first


def parse(path: Path) -> FileRecords:
    p = str(path)
    rec = FileRecords(path=p, fmt=NAME, files=[p])
    reader = JsonRows(path)
    for lineno, row in reader:
        if "mIoU" in row or "aAcc" in row or "mAcc" in row:
            step = row.get("step")
            rec.evaluations.append(Evaluation(
                iteration=step if isinstance(step, int) else None,
                aAcc=number(row.get("aAcc")), mIoU=number(row.get("mIoU")),
                mAcc=number(row.get("mAcc")), source=f"{p}:{lineno}"))
        elif "loss" in row or "lr" in row:
            it = row.get("iter", row.get("step"))
            if not isinstance(it, int):
                raise LogParseError(path, lineno, "train row without an integer 'iter'/'step'")
            rec.train.append(train_point(it, row, f"{p}:{lineno}", not_extra=POSITION_KEYS))
    if reader.truncated:
        rec.truncated = True
        rec.warnings.append(reader.warning)
    if not (rec.train or rec.evaluations):
        raise LogParseError(path, None, "no mmseg 1.x scalar rows (no loss/lr or mIoU keys)")
    _sibling_config(path, rec)
    return rec


def _sibling_config(path: Path, rec: FileRecords) -> None:
    cfg = path.parent / "config.py"
    if not cfg.is_file():
        return
    batch = DataloaderBatch()
    try:
        with open(cfg, encoding="utf-8", errors="replace") as f:
            for lineno, line in enumerate(f, 1):
                if batch.feed(line.rstrip("\r\n")) is not None:
                    rec.batch_per_device = located(str(cfg), lineno, batch.value)
                    return
    except OSError:
        return
