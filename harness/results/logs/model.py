"""Result model shared by every log format.

``FileRecords`` is what one format module reads from one file; ``LogResult`` is what
``parse_logs`` hands back after stitching files and computing the headline numbers.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class TrainPoint:
    """One logged training window (mmseg logs a mean over ``log_config.interval`` iterations)."""

    iter: int
    lr: float | None = None
    time: float | None = None
    data_time: float | None = None
    loss: float | None = None
    fps: float | None = None  # the Ascend patch's per-card ``fps:`` field, when logged
    extra: dict[str, float] = field(default_factory=dict)
    source: str = ""


@dataclass
class Evaluation:
    """One validation pass; aAcc/mIoU/mAcc and per-class values are in percent."""

    iteration: int | None
    aAcc: float | None = None
    mIoU: float | None = None
    mAcc: float | None = None
    per_class: dict[str, dict[str, float | None]] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)
    source: str = ""


@dataclass
class Located:
    """A value and the ``file:line`` it was read from."""

    value: Any
    source: str


@dataclass
class FileRecords:
    """Everything one format module read from one file (or one 1.x timestamp folder)."""

    path: str
    fmt: str
    train: list[TrainPoint] = field(default_factory=list)
    evaluations: list[Evaluation] = field(default_factory=list)
    batch_per_device: Located | None = None
    devices: Located | None = None
    # Set when the log proves the run was distributed but does not say over how many devices.
    devices_unknown: str | None = None
    max_iters: Located | None = None
    # Numbers a format reports ready-made (the seed result files): name -> Located.
    reported: dict[str, Located] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    truncated: bool = False
    files: list[str] = field(default_factory=list)

    def first_iter(self) -> float:
        return self.train[0].iter if self.train else math.inf


@dataclass
class LogResult:
    format: str
    files: list[str]
    iterations: int | None
    max_iters: int | None
    train: list[TrainPoint]
    evaluations: list[Evaluation]
    batch_per_device: int | None
    devices: int | None
    mean_iter_time_s: float | None
    fps: float | None
    fps_seed_definition: float | None
    final: dict[str, float | None]
    best: dict[str, float | None]
    per_class: dict[str, dict[str, float | None]]
    evaluations_count: int
    final_loss: float | None
    definitions: dict[str, str]
    sources: dict[str, str]
    warnings: list[str]
    partial: bool
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return _json_safe(asdict(self))


def _json_safe(obj: Any) -> Any:
    # NaN/inf are not JSON; a NaN loss is reported in ``warnings`` and becomes null here.
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj
