"""Redundancy plans (ReMeCo Section 3) as plain data, and the plan-reduction heuristic.

A plan says, for every layer, neuron and weight slice, how many physical copies the
crossbars hold (always ``2**k`` so that averaging is a shift), plus how many whole copies
of the network run side by side (committee machine, outputs averaged). Every copy is a
different physical column with its own faults.

Plans (``PLAN_NAMES``)
-----------------------
``base``             no redundancy.
``committee``        the whole network ``2**k`` times (default 2), logits averaged.
``layer_averaging``  every neuron of every layer ``2**k`` times, averaged after every layer.
``sensitive_neuron`` only the most sensitive ``neuron_fraction`` of each layer's neurons
                     (default 80 %) copied, all slices.
``msb``              as sensitive_neuron, but only the most significant ``msb_slices``
                     slice(s) of those neurons copied.
``sensitive_layer``  as msb, with no copies in the least sensitive layers: layers whose
                     sensitivity is below ``layer_threshold`` (default 10 %) of the most
                     sensitive layer's, or an explicit ``drop_layers`` list. The last
                     layer always keeps its copies.

The heuristic :func:`reduce_plan` starts from layer averaging and removes redundancy
from the least sensitive neurons, then slices, then layers, keeping each step only while
accuracy stays within a tolerance of the start; it returns every trial so that the
accuracy / overhead trade-off can be shown.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # sensitivity imports torch; a plan itself is plain data (loaded on a board)
    from .sensitivity import Sensitivity

__all__ = ["PLAN_NAMES", "RedundancyPlan", "make_plan", "copies_to_log2", "Trial", "reduce_plan"]

PLAN_NAMES = ("base", "committee", "layer_averaging", "sensitive_neuron", "msb", "sensitive_layer")


def copies_to_log2(copies: int) -> int:
    """``copies`` (a power of two, 1..256) -> ``log2(copies)``; anything else is a ValueError."""
    if isinstance(copies, bool) or not isinstance(copies, (int, np.integer)) or copies < 1 or copies > 256:
        raise ValueError(f"copies must be a power of two in [1, 256], got {copies!r}")
    if copies & (copies - 1):
        raise ValueError(f"copies must be a power of two (averaging is a shift), got {copies}")
    return int(copies).bit_length() - 1


@dataclass(frozen=True)
class RedundancyPlan:
    """Copies of every (layer, neuron, slice) and of the whole network.

    Attributes
    ----------
    name:
        Plan name.
    copies_log2:
        Per layer, an int array ``(neurons, n_slices)``; ``2**k`` copies.
    committee_log2:
        ``2**committee_log2`` whole-network copies, logits averaged.
    """

    name: str
    copies_log2: tuple[np.ndarray, ...]
    committee_log2: int = 0

    def __post_init__(self) -> None:
        if not 0 <= int(self.committee_log2) <= 4:
            raise ValueError(f"committee_log2 must be in [0, 4], got {self.committee_log2}")
        for i, k in enumerate(self.copies_log2):
            k = np.asarray(k)
            if k.ndim != 2 or not np.issubdtype(k.dtype, np.integer) or (k.size and (k.min() < 0 or k.max() > 8)):
                raise ValueError(f"copies_log2[{i}] must be an integer (neurons, slices) array in [0, 8]")

    @property
    def extra_columns_fraction(self) -> float:
        """Physical columns added by the plan, as a fraction of the base network's."""
        base = sum(k.size for k in self.copies_log2)
        used = sum(int((2 ** np.asarray(k)).sum()) for k in self.copies_log2)
        total = used * (1 << self.committee_log2)
        return (total - base) / base if base else 0.0

    def to_dict(self) -> dict:
        """JSON-friendly view."""
        return {
            "name": self.name,
            "committee_log2": int(self.committee_log2),
            "copies_log2": [np.asarray(k).tolist() for k in self.copies_log2],
        }

    @classmethod
    def from_dict(cls, data: dict) -> "RedundancyPlan":
        """Inverse of :meth:`to_dict`."""
        return cls(
            str(data["name"]),
            tuple(np.asarray(k, dtype=np.int64).reshape(len(k), -1) for k in data["copies_log2"]),
            int(data.get("committee_log2", 0)),
        )


def _top_neurons(scores: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean mask of the ``ceil(fraction * n)`` highest scores (ties: lower index first)."""
    n = scores.size
    count = int(np.ceil(fraction * n - 1e-9))
    order = np.argsort(-scores, kind="stable")
    mask = np.zeros(n, dtype=bool)
    mask[order[:count]] = True
    return mask


def make_plan(
    name: str,
    layer_neurons: Sequence[int],
    sensitivity: Sensitivity | None = None,
    *,
    n_slices: int = 2,
    copies: int = 2,
    neuron_fraction: float = 0.8,
    msb_slices: int = 1,
    layer_threshold: float = 0.1,
    drop_layers: Sequence[int] | None = None,
    mode: str = "paper",
) -> RedundancyPlan:
    """Build one of the named plans (see the module docstring).

    Parameters
    ----------
    name:
        One of :data:`PLAN_NAMES`.
    layer_neurons:
        Output neurons of every layer, in order.
    sensitivity:
        Needed by the sensitivity-guided plans.
    n_slices:
        Weight slices per neuron.
    copies:
        Copies of a redundant neuron (or of the network for the committee); a power of 2.
    neuron_fraction:
        Fraction of each layer's neurons copied (most sensitive first), in (0, 1].
    msb_slices:
        Most significant slices copied by ``msb`` and ``sensitive_layer``.
    layer_threshold:
        Relative layer sensitivity below which ``sensitive_layer`` drops a layer's copies.
    drop_layers:
        Explicit layer indices without copies (overrides ``layer_threshold``).
    mode:
        Sensitivity reading, see :mod:`remeco.models.sensitivity`.
    """
    if name not in PLAN_NAMES:
        raise ValueError(f"plan must be one of {PLAN_NAMES}, got {name!r}")
    k = copies_to_log2(copies)
    sizes = [int(n) for n in layer_neurons]
    if not sizes or min(sizes) < 1:
        raise ValueError(f"layer_neurons must be a non-empty list of positive sizes, got {list(layer_neurons)}")
    if not 1 <= n_slices <= 8:
        raise ValueError(f"n_slices must be in [1, 8], got {n_slices}")
    if not 0.0 < neuron_fraction <= 1.0:
        raise ValueError(f"neuron_fraction must be in (0, 1], got {neuron_fraction}")
    if not 1 <= msb_slices <= n_slices:
        raise ValueError(f"msb_slices must be in [1, {n_slices}], got {msb_slices}")
    if not 0.0 <= layer_threshold <= 1.0:
        raise ValueError(f"layer_threshold must be in [0, 1], got {layer_threshold}")
    zeros = [np.zeros((n, n_slices), dtype=np.int64) for n in sizes]
    if name == "base":
        return RedundancyPlan(name, tuple(zeros))
    if name == "committee":
        return RedundancyPlan(name, tuple(zeros), committee_log2=k)
    if name == "layer_averaging":
        return RedundancyPlan(name, tuple(np.full((n, n_slices), k, dtype=np.int64) for n in sizes))
    if sensitivity is None:
        raise ValueError(f"plan {name!r} needs the network's sensitivity")
    scores = sensitivity.neuron(mode)
    if [s.size for s in scores] != sizes:
        raise ValueError(
            f"sensitivity has layers of {[s.size for s in scores]} neurons, the network {sizes}"
        )
    for index, s in enumerate(scores):
        if not np.isfinite(np.asarray(s, dtype=np.float64)).all():
            # NaN would make the ranking (and so the plan) arbitrary, without an error
            raise ValueError(f"sensitivity of layer {index} holds NaN or infinite values")
    plan = []
    for n, s in zip(sizes, scores):
        mask = _top_neurons(np.asarray(s), neuron_fraction)
        layer = np.zeros((n, n_slices), dtype=np.int64)
        if name == "sensitive_neuron":
            layer[mask, :] = k
        else:
            layer[mask, n_slices - msb_slices :] = k
        plan.append(layer)
    if name == "sensitive_layer":
        last = len(sizes) - 1
        if drop_layers is None:
            rel = sensitivity.layer(mode) / max(float(sensitivity.layer(mode).max()), 1e-300)
            drop = [i for i in range(last) if rel[i] < layer_threshold]
        else:
            drop = [int(i) for i in drop_layers]
            bad = [i for i in drop if not 0 <= i < len(sizes)]
            if bad:
                raise ValueError(f"drop_layers names unknown layer(s) {bad}; the network has layers 0..{last}")
            if last in drop:
                raise ValueError(f"drop_layers must not include the last layer ({last}): it always keeps its copies")
        for i in drop:
            plan[i][:] = 0
    return RedundancyPlan(name, tuple(plan))


@dataclass(frozen=True)
class Trial:
    """One step of :func:`reduce_plan`: what was tried, its accuracy and overhead."""

    step: str
    plan: RedundancyPlan
    accuracy: float
    overhead: float
    kept: bool


def reduce_plan(
    evaluate: Callable[[RedundancyPlan], float],
    layer_neurons: Sequence[int],
    sensitivity: Sensitivity,
    *,
    tolerance: float = 0.005,
    fractions: Sequence[float] = (0.9, 0.8, 0.6, 0.4, 0.2),
    n_slices: int = 2,
    copies: int = 2,
    mode: str = "paper",
) -> tuple[RedundancyPlan, list[Trial]]:
    """ReMeCo's heuristic: drop redundancy from insensitive neurons, slices and layers.

    Starting from layer averaging (accuracy ``a0``), it tries, in order: copying only the
    most sensitive fraction of neurons (``fractions``, largest first, stopping at the
    first that loses accuracy), copying only their MSB slice, and then removing copies
    from whole layers in order of increasing sensitivity (never the last layer). A step is
    kept while ``accuracy >= a0 - tolerance``.

    Parameters
    ----------
    evaluate:
        Plan -> mean accuracy over chip instances (fractions in [0, 1]).
    layer_neurons, sensitivity, n_slices, copies, mode:
        As for :func:`make_plan`.
    tolerance:
        Accuracy (absolute fraction) one may give up against layer averaging.
    fractions:
        Neuron fractions to try, in decreasing order.

    Returns
    -------
    The chosen plan and every trial in order.
    """
    if not 0.0 <= tolerance < 1.0:
        raise ValueError(f"tolerance must be in [0, 1), got {tolerance}")
    common = dict(n_slices=n_slices, copies=copies, mode=mode)
    trials: list[Trial] = []

    def attempt(step: str, plan: RedundancyPlan, floor: float | None) -> bool:
        acc = float(evaluate(plan))
        kept = floor is None or acc >= floor
        trials.append(Trial(step, plan, acc, plan.extra_columns_fraction, kept))
        return kept

    best = make_plan("layer_averaging", layer_neurons, **common)
    attempt("layer averaging", best, None)
    floor = trials[0].accuracy - tolerance
    fraction = 1.0
    for f in sorted(fractions, reverse=True):
        plan = make_plan("sensitive_neuron", layer_neurons, sensitivity, neuron_fraction=f, **common)
        if not attempt(f"top {f:.0%} neurons", plan, floor):
            break
        best, fraction = plan, f
    plan = make_plan("msb", layer_neurons, sensitivity, neuron_fraction=fraction, **common)
    msb = attempt(f"MSB only, top {fraction:.0%} neurons", plan, floor)
    if msb:
        best = plan
    dropped: list[int] = []
    order = [int(i) for i in np.argsort(sensitivity.layer(mode), kind="stable") if i != len(layer_neurons) - 1]
    for layer in order:
        candidate = make_plan(
            "sensitive_layer", layer_neurons, sensitivity, neuron_fraction=fraction,
            msb_slices=1 if msb else n_slices, drop_layers=dropped + [layer], **common,
        )
        if not attempt(f"no copies in layer {layer}", candidate, floor):
            break
        dropped.append(layer)
        best = candidate
    return best, trials
