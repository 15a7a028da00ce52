"""The headline numbers, computed here and nowhere else, for every format alike."""
from __future__ import annotations

import math

from .model import Evaluation, TrainPoint

DEFINITIONS = {
    "numbers": "sources.numbers: `events` when the numbers come from the harness worker's event "
               "stream (events.mllog, MLPerf-logging lines), `logs` when parsed from mmengine/mmseg "
               "text or JSON logs",
    "iterations": "the last training iteration with a logged train window",
    "max_iters": "the run's planned iterations, from the `[N/max]` counter of the train lines "
                 "(or the config dump when no train line was logged)",
    "batch_per_device": "images per device per iteration: the argument if given, else the "
                        "log's config dump (0.x `samples_per_gpu`, 1.x `train_dataloader."
                        "batch_size`, seed `BatchSize`)",
    "devices": "number of training processes/devices: the argument if given, else the log "
               "(1.x `GPU number`, 0.x `gpu_ids` / `Distributed training: False`, seed "
               "`RankSize`), else 1",
    "mean_iter_time_s": "mean of the logged train `time` values (s/iter, each the mean over "
                        "one logging window, includes data loading), excluding the first logged "
                        "window (warm-up)",
    "fps": "global images/s = batch_per_device x devices / mean of the logged train `time` "
           "values (s/iter, data loading included), excluding the first logged window (warm-up)",
    "fps_seed_definition": "the seed scripts' ActualFPS: devices x the maximum over logged "
                           "windows of the per-device `fps:` field (or batch_per_device / "
                           "`time` where no `fps:` is logged); a peak, optimistic",
    "final": "aAcc, mIoU, mAcc (percent) of the last evaluation in the log",
    "best": "aAcc, mIoU, mAcc (percent) of the evaluation with the highest mIoU (the seed "
            "scripts report this mIoU)",
    "per_class": "per-class IoU and Acc (percent) of the final evaluation",
    "evaluations_count": "number of evaluations (validation passes) found in the log",
    "final_loss": "the total `loss` of the last logged train window (the seed's ActualLoss)",
    "partial": "true when the run stopped before max_iters or a truncated line was ignored",
    "percent": "0.x logs write aAcc/mIoU/mAcc as fractions; they are shifted to percent "
               "exactly (decimal, 0.7704 -> 77.04); 1.x logs already write percent",
}

_METRICS = ("aAcc", "mIoU", "mAcc")


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def mean_iter_time(train: list[TrainPoint]) -> tuple[float | None, list[TrainPoint]]:
    """Mean of ``time`` over all windows but the first; also the windows used."""
    used = [pt for pt in train[1:] if _finite(pt.time)]
    if not used:
        return None, []
    return math.fsum(pt.time for pt in used) / len(used), used


def global_fps(batch: int | None, devices: int | None, mean_time: float | None) -> float | None:
    if batch is None or devices is None or not mean_time:
        return None
    return batch * devices / mean_time


def seed_fps(train: list[TrainPoint], batch: int | None,
             devices: int | None) -> tuple[float | None, TrainPoint | None]:
    """RANK_SIZE x max(fps:) as the seed scripts compute ActualFPS; the window it came from."""
    if devices is None:
        return None, None
    logged = [pt for pt in train if _finite(pt.fps)]
    if logged:
        peak = max(logged, key=lambda pt: pt.fps)
        return peak.fps * devices, peak
    if batch is None:
        return None, None
    timed = [pt for pt in train if _finite(pt.time) and pt.time > 0]
    if not timed:
        return None, None
    peak = min(timed, key=lambda pt: pt.time)  # max batch/time is at the min time
    return batch / peak.time * devices, peak


def scores(ev: Evaluation | None) -> dict[str, float | None]:
    return {k: (getattr(ev, k) if ev is not None else None) for k in _METRICS}


def final_and_best(evals: list[Evaluation]) -> tuple[Evaluation | None, Evaluation | None]:
    if not evals:
        return None, None
    ranked = [ev for ev in evals if _finite(ev.mIoU)]
    # The earliest evaluation wins a tie: it reached that mIoU first.
    best = max(ranked, key=lambda ev: ev.mIoU) if ranked else None
    return evals[-1], best
