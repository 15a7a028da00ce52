"""Group statistics for repeated runs, and whether two groups differ by more than noise.

Pure functions over plain numbers: the run records and the report decide what to feed them.
None and NaN values (a failed member, a metric not measured) are left out and counted as such,
never treated as zero.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass

DEFAULT_ALPHA = 0.05


@dataclass(frozen=True)
class GroupStats:
    """n, mean, sample sd (n-1; None below two values), min, max, median of the usable values."""

    n: int
    mean: float | None
    sd: float | None
    min: float | None
    max: float | None
    median: float | None
    missing: int = 0  # values given but unusable (None/NaN)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class WelchTest:
    """Welch's unequal-variance t-test of two groups; t and p are None when it cannot be run."""

    t: float | None
    p: float | None
    alpha: float
    significant: bool
    reason: str = ""  # why t/p are None

    def to_dict(self) -> dict:
        return asdict(self)


def usable(values: Iterable[float | int | None]) -> tuple[list[float], int]:
    """The finite values as floats, and how many were None/NaN/inf."""
    kept, missing = [], 0
    for value in values:
        if value is None or isinstance(value, bool) or not math.isfinite(value):
            missing += 1
        else:
            kept.append(float(value))
    return kept, missing


def describe(values: Iterable[float | int | None]) -> GroupStats:
    kept, missing = usable(values)
    if not kept:
        return GroupStats(n=0, mean=None, sd=None, min=None, max=None, median=None, missing=missing)
    return GroupStats(
        n=len(kept),
        mean=statistics.fmean(kept),
        sd=statistics.stdev(kept) if len(kept) > 1 else None,
        min=min(kept),
        max=max(kept),
        median=statistics.median(kept),
        missing=missing,
    )


def welch_t_test(a: Iterable[float | int | None], b: Iterable[float | int | None], *,
                 alpha: float = DEFAULT_ALPHA) -> WelchTest:
    """Two-sided Welch's t-test (``scipy.stats.ttest_ind(equal_var=False)``).

    ``significant`` is ``p < alpha``. Fewer than two values on a side, or no spread at all on
    both sides, gives no test (t and p None, not significant, ``reason`` says why) rather than
    scipy's NaN.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    xs, _ = usable(a)
    ys, _ = usable(b)
    if len(xs) < 2 or len(ys) < 2:
        return WelchTest(None, None, alpha, False,
                         f"needs at least 2 values per group (got {len(xs)} and {len(ys)})")
    if statistics.variance(xs) == 0 and statistics.variance(ys) == 0:
        return WelchTest(None, None, alpha, False, "both groups have zero spread")
    from scipy import stats

    result = stats.ttest_ind(xs, ys, equal_var=False)
    t, p = float(result.statistic), float(result.pvalue)
    return WelchTest(t, p, alpha, p < alpha)
