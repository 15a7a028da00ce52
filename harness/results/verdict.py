"""Measured vs reference: speed is one-sided and relative, accuracy is in absolute points.

PASS    within tolerance
WARN    outside tolerance but within ``warn_points`` more points (accuracy) or 10 % more (speed)
FAIL    further off
MISSING the reference has the number but the run did not produce it
(no verdict when the reference has no number for it)
"""
from __future__ import annotations

from harness.planning.recipe import METRICS, Reference
from harness.store.records import Verdict

SPEED_WARN_BAND = 0.1


def _verdict(metric: str, status: str, measured: float | None, reference: float | None, reason: str) -> Verdict:
    return Verdict(metric=metric, status=status, measured=measured, reference=reference, reason=reason)


def judge_speed(measured: float | None, reference: Reference) -> Verdict:
    ref = reference.fps
    if ref is None:
        return _verdict("fps", "NONE", measured, None, "no reference fps")
    if measured is None:
        return _verdict("fps", "MISSING", None, ref, "the run produced no fps")
    ratio = measured / ref
    need = reference.tolerance.fps_ratio
    if ratio >= need:
        status = "PASS"
    elif ratio >= need - SPEED_WARN_BAND:
        status = "WARN"
    else:
        status = "FAIL"
    return _verdict("fps", status, measured, ref, f"{ratio:.3f}x reference (needs >= {need:.2f}x)")


def judge_accuracy(metric: str, measured: float | None, reference: Reference) -> Verdict:
    ref = getattr(reference, metric)
    if ref is None:
        return _verdict(metric, "NONE", measured, None, f"no reference {metric}")
    if measured is None:
        return _verdict(metric, "MISSING", None, ref, f"the run produced no {metric}")
    tolerance = reference.tolerance
    delta = measured - ref
    if delta >= -tolerance.accuracy_points:
        status = "PASS"
    elif delta >= -(tolerance.accuracy_points + tolerance.warn_points):
        status = "WARN"
    else:
        status = "FAIL"
    return _verdict(metric, status, measured, ref, f"{delta:+.2f} points (needs >= -{tolerance.accuracy_points:.2f})")


def judge_all(fps: float | None, metrics: dict[str, float | None], reference: Reference) -> list[Verdict]:
    verdicts = [judge_speed(fps, reference)]
    verdicts += [judge_accuracy(name, metrics.get(name), reference) for name in METRICS]
    return verdicts
