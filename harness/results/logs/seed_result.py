"""The seed scripts' result files (``output/<Network>/<id>/<CaseName>.log``): ``Key = Value``.

They hold only what the scripts computed: ``ActualFPS`` (RANK_SIZE x peak per-card ``fps:``),
``mIoU`` (best evaluation, a fraction), ``ActualLoss`` (last ``loss:``); no per-window data.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

from .common import fraction_to_percent, located, to_float
from .errors import LogParseError
from .model import FileRecords
from .reader import Lines

NAME = "seed-result"
KEYS = ("Network", "RankSize", "BatchSize", "DeviceType", "CaseName", "ActualFPS",
        "TrainingTime", "mIoU", "ActualLoss", "E2ETrainingTime", "ValTime", "E2EValTime")
_KV = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")
_SNIFF = re.compile(r"^\s*(?:" + "|".join(KEYS) + r")\s*=", re.M)


def sniff(head: str) -> bool:
    return len(_SNIFF.findall(head[:8192])) >= 2


def parse(path: Path) -> FileRecords:
    p = str(path)
    rec = FileRecords(path=p, fmt=NAME, files=[p])
    lines = Lines(path)
    found: dict[str, tuple[str, int]] = {}
    for lineno, line in lines:
        m = _KV.match(line)
        if m:
            found[m.group(1)] = (m.group(2), lineno)  # last one wins, as a shell `source` would
    if lines.truncated_tail:
        rec.truncated = True
        rec.warnings.append(lines.truncation_warning())
    if not any(k in found for k in KEYS):
        raise LogParseError(path, None, "no seed result `Key = Value` lines")
    fields, where = {}, {}
    for key, (value, lineno) in found.items():
        num = int(value) if value.isdigit() else to_float(value)
        fields[key], where[key] = (value if num is None else num), f"{p}:{lineno}"
    rec.metadata["seed_fields"], rec.metadata["seed_sources"] = fields, where
    _int(found, "RankSize", rec, "devices", p)
    _int(found, "BatchSize", rec, "batch_per_device", p)
    for key, name in (("ActualFPS", "fps_seed_definition"), ("ActualLoss", "final_loss")):
        if key in found:
            value, lineno = found[key]
            num = _number(value, p, lineno)
            if num is not None:
                rec.reported[name] = located(p, lineno, num)
    if "mIoU" in found:
        value, lineno = found["mIoU"]
        v = _number(value, p, lineno)
        if v is not None and v > 1.0:
            rec.warnings.append(f"{p}:{lineno}: mIoU {value} is not a fraction; taken as percent")
            rec.reported["best_mIoU"] = located(p, lineno, v)
        elif v is not None:
            rec.reported["best_mIoU"] = located(p, lineno, fraction_to_percent(value))
    rec.warnings.append(f"{p}: seed result file: ActualFPS is RANK_SIZE x the peak 50-iteration "
                        "window, mIoU the best evaluation; no mean time, aAcc, mAcc or final "
                        "evaluation is recorded")
    return rec


def _number(value: str, p: str, lineno: int) -> float | None:
    # An empty value is what the scripts write when grep found nothing: absent, not malformed.
    if not value:
        return None
    num = to_float(value)
    if num is None:
        raise LogParseError(p, lineno, f"not a number: {value!r}")
    return num


def _int(found: dict, key: str, rec: FileRecords, attr: str, p: str) -> None:
    if key not in found:
        return
    value, lineno = found[key]
    num = _number(value, p, lineno)
    if num is None:
        return
    if not math.isfinite(num) or num != int(num) or num < 1:
        raise LogParseError(p, lineno, f"{key} is not a positive integer: {value!r}")
    setattr(rec, attr, located(p, lineno, int(num)))
