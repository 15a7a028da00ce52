"""Every reported number as a flat ``name -> value`` dict, from logs or from a ``result.json``.

``recompute_numbers`` parses a run's logs (its event stream when it has one) and
``result_numbers`` reads the same names out of a stored ``result.json``; a checker (``harness
verify``) compares the two dicts key by key, so a number edited in either place shows up by name.
Names: ``iterations``, ``fps``, ``final.mIoU``, ``best.aAcc``, ``train[50].loss`` (the window
logged at iteration 50), ``evaluations[1].mIoU`` (the second evaluation), ...
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.store.layout import WORK_DIR
from harness.store.records import Evaluation, Metrics, TrainPoint

from .registry import parse_logs

SCALARS = ("iterations", "max_iters", "mean_iter_time_s", "fps", "fps_seed_definition",
           "evaluations_count", "final_loss")
# The result record's own fields (harness.store.records), so the two sides cannot list different ones.
SCORES = tuple(Metrics.model_fields)
WINDOW_FIELDS = tuple(name for name in TrainPoint.model_fields if name != "iter")  # a window is named by its iter
EVAL_FIELDS = tuple(name for name in Evaluation.model_fields if name != "source")

Number = float | int | None


def run_log_paths(source: Path | str | Sequence[Path | str]) -> list[Path]:
    """A harness run folder stands for its ``work_dir`` (one sub-folder per (re)start); anything
    else (log files, an mmengine work_dir, a timestamp folder) for itself."""
    if isinstance(source, (str, Path)):
        source = [source]
    out = []
    for item in map(Path, source):
        work_dir = item / WORK_DIR
        out.append(work_dir if item.is_dir() and work_dir.is_dir() else item)
    return out


def recompute_numbers(source: Path | str | Sequence[Path | str], *,
                      batch_per_device: int | None = None,
                      devices: int | None = None) -> dict[str, Number]:
    """Parse the logs again and name every number a ``result.json`` reports from them.

    Pass the same ``batch_per_device``/``devices`` that built the result (the recipe's batch and
    the plan's world size); raises ``LogParseError`` when the logs cannot be parsed.
    """
    parsed = parse_logs(run_log_paths(source), batch_per_device=batch_per_device,
                        devices=devices).to_dict()
    return result_numbers(parsed)


def result_numbers(result: Mapping[str, Any]) -> dict[str, Number]:
    """The same names read from a ``result.json`` (or ``LogResult.to_dict()``)."""
    out: dict[str, Number] = {name: result.get(name) for name in SCALARS}
    for group in ("final", "best"):
        scores = result.get(group) or {}
        for score in SCORES:
            out[f"{group}.{score}"] = scores.get(score)
    for window in result.get("train") or []:
        for name in WINDOW_FIELDS:
            out[f"train[{window['iter']}].{name}"] = window.get(name)
    for index, ev in enumerate(result.get("evaluations") or []):
        for name in EVAL_FIELDS:
            out[f"evaluations[{index}].{name}"] = ev.get(name)
    return out
