"""Statistics of accuracies over chip instances: summaries and paired differences.

A campaign evaluates every plan on the same chip instances, and the instances are paired
across plans (:func:`remeco.models.chip.layer_draws`), so the right comparison of two
plans is the *paired* difference per instance, whose spread is much smaller than that of
either accuracy when the instances are correlated.

Confidence intervals are Student-t intervals of the mean, ``mean +- t(1 - alpha/2, n-1)
s / sqrt(n)`` with ``s`` the sample standard deviation (ddof 1): they assume the
instances are independent draws and the mean is about normal, which holds well for
accuracies over tens of instances. With fewer than two values there is no interval:
``None`` (``null`` in JSON), never NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["mean_ci", "summarize", "paired_difference"]


def _values(values: Sequence[float] | np.ndarray, name: str = "values") -> np.ndarray:
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite")
    return a


def mean_ci(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> list[float] | None:
    """Student-t confidence interval ``[lo, hi]`` of the mean of ``values``; ``None`` for one value.

    Parameters
    ----------
    values:
        Finite numbers (e.g. one accuracy per chip instance).
    confidence:
        Coverage of the interval, in (0, 1).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    a = _values(values)
    if a.size < 2:
        return None
    from scipy.stats import t

    mean = float(a.mean())
    half = float(t.ppf(0.5 + confidence / 2, a.size - 1)) * float(a.std(ddof=1)) / math.sqrt(a.size)
    return [mean - half, mean + half]


def summarize(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> dict:
    """``{"mean", "median", "std", "ci95"}`` of ``values`` (``std`` with ddof 1, 0 for one
    value; ``ci95`` from :func:`mean_ci` at ``confidence``, ``None`` for one value)."""
    a = _values(values)
    return {
        "mean": float(a.mean()),
        "median": float(np.median(a)),
        "std": float(a.std(ddof=1)) if a.size > 1 else 0.0,
        "ci95": mean_ci(a, confidence),
    }


def paired_difference(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray,
                      confidence: float = 0.95) -> dict:
    """Mean of ``a[i] - b[i]`` over paired instances and its confidence interval.

    Returns ``{"mean": float, "ci95": [lo, hi] or None}``; an interval that excludes 0
    resolves the two (at ``confidence``).
    """
    x, y = _values(a, "a"), _values(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"paired values must have one length, got {x.size} and {y.size}")
    d = x - y
    return {"mean": float(d.mean()), "ci95": mean_ci(d, confidence)}
