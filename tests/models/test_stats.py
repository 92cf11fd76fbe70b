import json
import math

import numpy as np
import pytest

from remeco.models.stats import mean_ci, paired_difference, summarize


def test_t_interval_of_known_values():
    # mean 3, s = sqrt(2.5), t(0.975, 4) = 2.7764451051977987 (tables: 2.776)
    lo, hi = mean_ci([1, 2, 3, 4, 5])
    half = 2.7764451051977987 * math.sqrt(2.5) / math.sqrt(5)
    assert (lo, hi) == pytest.approx((3 - half, 3 + half), rel=1e-12)
    assert (lo, hi) == pytest.approx((1.0368, 4.9632), abs=1e-4)
    # two values: t(0.975, 1) = 12.7062047361747
    lo, hi = mean_ci([0.9, 0.95])
    assert hi - 0.925 == pytest.approx(12.7062047361747 * 0.025 * math.sqrt(2) / math.sqrt(2), rel=1e-12)
    assert mean_ci([2.0, 2.0, 2.0]) == [2.0, 2.0]
    # 99 %: t(0.995, 4) = 4.604094871350383
    w95, w99 = (np.diff(mean_ci([1, 2, 3, 4, 5], confidence=c))[0] for c in (0.95, 0.99))
    assert w99 / w95 == pytest.approx(4.604094871350383 / 2.7764451051977987, rel=1e-12)


def test_summary_matches_numpy_and_one_value_has_no_interval():
    s = summarize([0.9, 0.8, 1.0, 0.7])
    assert s["mean"] == pytest.approx(0.85) and s["median"] == pytest.approx(0.85)
    assert s["std"] == pytest.approx(np.std([0.9, 0.8, 1.0, 0.7], ddof=1))
    one = summarize([0.93])
    assert one == {"mean": 0.93, "median": 0.93, "std": 0.0, "ci95": None}
    assert json.loads(json.dumps(one)) == one  # valid JSON: null, not NaN


def test_paired_difference_uses_the_per_instance_differences():
    a = np.array([0.90, 0.80, 0.95, 0.70])
    b = a - np.array([0.01, 0.02, 0.03, 0.02])  # large spread, tiny and steady difference
    d = paired_difference(a, b)
    assert d["mean"] == pytest.approx(0.02)
    lo, hi = d["ci95"]
    half = 3.182446305284263 * np.std([0.01, 0.02, 0.03, 0.02], ddof=1) / 2  # t(0.975, 3)
    assert (lo, hi) == pytest.approx((0.02 - half, 0.02 + half), rel=1e-9)
    assert lo > 0  # resolved, although the unpaired intervals overlap
    assert mean_ci(a)[0] < mean_ci(b)[1]
    assert paired_difference([0.9], [0.8]) == {"mean": pytest.approx(0.1), "ci95": None}
    assert paired_difference(a, a) == {"mean": 0.0, "ci95": [0.0, 0.0]}


@pytest.mark.parametrize("bad", [[], [[1, 2]], [1, float("nan")]])
def test_bad_values_are_refused(bad):
    with pytest.raises(ValueError):
        mean_ci(bad)


def test_paired_lengths_and_confidence_are_checked():
    with pytest.raises(ValueError, match="one length"):
        paired_difference([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="confidence"):
        mean_ci([1, 2], confidence=1.0)
