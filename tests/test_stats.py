"""Group statistics and Welch's t-test on known answers."""
from __future__ import annotations

import math

import pytest

from harness.results.stats import describe, welch_t_test


def test_describe_known_values():
    got = describe([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0])
    assert (got.n, got.mean, got.min, got.max, got.median, got.missing) == (8, 5.0, 2.0, 9.0, 4.5, 0)
    assert got.sd == pytest.approx(math.sqrt(32 / 7))  # sample sd (n-1), not population


def test_describe_leaves_out_missing_values_and_counts_them():
    got = describe([77.0, None, float("nan"), 79.0])
    assert (got.n, got.mean, got.missing) == (2, 78.0, 2)
    assert got.sd == pytest.approx(math.sqrt(2))


def test_describe_one_and_no_values():
    one = describe([3])
    assert (one.n, one.mean, one.sd, one.median) == (1, 3.0, None, 3.0)
    none = describe([None])
    assert none.n == 0 and none.mean is None and none.missing == 1
    assert describe([]).to_dict()["n"] == 0


def test_welch_matches_the_formula():
    a, b = [77.0, 77.4, 76.8, 77.2], [75.1, 75.9, 75.4, 76.3]
    got = welch_t_test(a, b)
    ma, mb = sum(a) / 4, sum(b) / 4
    va = sum((x - ma) ** 2 for x in a) / 3
    vb = sum((x - mb) ** 2 for x in b) / 3
    assert got.t == pytest.approx((ma - mb) / math.sqrt(va / 4 + vb / 4))
    assert got.p < 0.01 and got.significant and got.alpha == 0.05


def test_welch_noise_is_not_significant():
    got = welch_t_test([77.0, 78.5, 76.2], [77.3, 76.9, 78.0])
    assert got.p > 0.05 and not got.significant
    assert welch_t_test([77.0, 78.5, 76.2], [77.3, 76.9, 78.0], alpha=0.99).significant


def test_welch_cannot_run():
    small = welch_t_test([1.0], [2.0, 3.0])
    assert small.t is None and small.p is None and not small.significant and "at least 2" in small.reason
    flat = welch_t_test([1.0, 1.0], [1.0, 1.0, None])
    assert flat.p is None and "zero spread" in flat.reason
    with pytest.raises(ValueError):
        welch_t_test([1, 2], [3, 4], alpha=1.5)
