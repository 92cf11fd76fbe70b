"""cocotb bench: :class:`remeco.rtl.averager.Averager` == ``average_columns`` / ``average_copies``.

Parameters: ``y_width``, ``n_slices``, ``slice_bits``, ``max_copies_log2``, ``neurons``
(per layer), ``layers``, ``seed``, ``valid_prob``, ``ready_prob``. Each random layer gets a
redundancy plan drawn from three families (uniform ``k`` per neuron = sensitive-neuron
plans, ``k`` only on the upper slices = MSB plans, independent ``k`` per (neuron, slice)),
is laid out by :func:`remeco.models.mapping.map_layer`, and its column values are random
(a quarter of the layers use only 0 and the largest value, to hit the sum's width).
"""

from __future__ import annotations

import cocotb
import numpy as np

from ..models.emulation import EmulationFormat, average_columns
from ..models.mapping import map_layer
from ..models.periphery import averaged_order, column_descriptors
from ..rtl.averager import Averager
from .common import random_case, reset_case


def design(p: dict) -> Averager:
    """The component under test for the bench parameters ``p``."""
    return Averager(p["y_width"], p["n_slices"], p["max_copies_log2"])


def random_plan(rng: np.random.Generator, n: int, n_slices: int, max_k: int, family: int) -> np.ndarray:
    """A ``(neurons, n_slices)`` copies_log2 plan of one of three families."""
    if family == 0:  # sensitive neurons: some neurons get 2**k copies of every slice
        k = np.where(rng.random(n) < 0.5, rng.integers(1, max_k, size=n, endpoint=True), 0)
        return np.repeat(k[:, None], n_slices, axis=1)
    if family == 1:  # MSB redundancy: only the upper slices are copied
        k = np.zeros((n, n_slices), dtype=np.int64)
        k[:, n_slices // 2:] = rng.integers(0, max_k, size=(n, n_slices - n_slices // 2), endpoint=True)
        return k
    return rng.integers(0, max_k, size=(n, n_slices), endpoint=True)


def make_layers(rng: np.random.Generator, p: dict, count: int):
    """Beats (one per used physical column) and expected ``(a, slice, end)`` outputs."""
    fmt = EmulationFormat(rows=1, cols=8, slice_bits=p["slice_bits"], n_slices=p["n_slices"], code_bits=24)
    beats: dict[str, list[int]] = {k: [] for k in ("y", "slice", "k", "first", "last", "end")}
    expected: list[tuple[int, int, int]] = []
    top = (1 << p["y_width"]) - 1
    for i in range(count):
        plan = random_plan(rng, p["neurons"], p["n_slices"], p["max_copies_log2"], i % 3)
        mapped = map_layer(np.zeros((1, p["neurons"]), dtype=np.int64), fmt, plan)
        d = column_descriptors(mapped)
        n_cols = mapped.physical_columns
        if i % 4 == 3:
            y = rng.choice([0, top], size=n_cols)
        else:
            y = rng.integers(0, top, size=n_cols, endpoint=True)
        for c in range(n_cols):
            beats["y"].append(int(y[c]))
            for f in ("slice", "k", "first", "last", "end"):
                beats[f].append(int(getattr(d, f)[c]))
        avg = average_columns(y, mapped)  # (n_slices, neurons)
        neuron, slc = averaged_order(mapped)
        last_cols = np.flatnonzero(d.last[:n_cols] == 1)
        expected.extend(
            (int(avg[s, j]), int(s), int(d.end[c])) for j, s, c in zip(neuron, slc, last_cols)
        )
    return beats, expected


def _outputs(words, pout) -> list[tuple[int, int, int]]:
    cols = pout.unpack_many(words)
    return list(zip(cols["a"], cols["slice"], cols["end"]))


@cocotb.test()
async def random_plans(dut):
    """Random layers and plans, random idle cycles and backpressure."""
    await random_case(dut, "random_plans", design, make_layers, lambda p: p["layers"], "(a, slice, end)",
                      outputs=_outputs)


@cocotb.test()
async def reset_mid_transfer(dut):
    """Reset in the middle of a layer; copies summed before it must not leak after it."""
    await reset_case(dut, "reset_mid_transfer", design, make_layers, (3, 3), "(a, slice, end)", outputs=_outputs)
