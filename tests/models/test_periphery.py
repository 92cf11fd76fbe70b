"""Column descriptors and bias: the streaming view of emulation steps 5-7."""

from __future__ import annotations

import numpy as np
import pytest

from remeco.models.emulation import EmulationFormat, average_columns, average_copies
from remeco.models.mapping import map_layer
from remeco.models.periphery import add_bias, averaged_order, column_descriptors

FMT = EmulationFormat(rows=8, cols=8, slice_bits=4, n_slices=2, code_bits=10, code_frac=4)


def _plans(n):
    rng = np.random.default_rng(11)
    yield np.zeros((n, 2), dtype=np.int64)
    yield np.repeat(rng.integers(0, 3, size=n)[:, None], 2, axis=1)  # per neuron
    yield np.stack([np.zeros(n, np.int64), rng.integers(0, 4, size=n)], axis=1)  # MSB only
    yield rng.integers(0, 4, size=(n, 2))  # per (neuron, slice)
    yield np.stack([rng.integers(1, 4, size=n), np.zeros(n, np.int64)], axis=1)  # LSB only


@pytest.mark.parametrize("plan", list(_plans(7)))
def test_streaming_descriptors_reproduce_average_columns(plan):
    """Running sums driven only by the descriptors give the model's averages, in order."""
    mapped = map_layer(np.zeros((3, 7), dtype=np.int64), FMT, plan)
    d = column_descriptors(mapped)
    assert len(d) == mapped.col_tiles * FMT.cols
    rng = np.random.default_rng(5)
    y = rng.integers(0, 1 << 18, size=mapped.physical_columns)
    sums = [0] * FMT.n_slices
    emitted = []
    for c in range(len(d)):
        if not d.used[c]:
            continue
        s = int(d.slice[c])
        sums[s] = (0 if d.first[c] else sums[s]) + int(y[c])
        if d.last[c]:
            emitted.append(int(average_copies(sums[s], int(d.k[c]))))
    avg = average_columns(y, mapped)
    neuron, slc = averaged_order(mapped)
    assert emitted == [int(avg[s, j]) for j, s in zip(neuron, slc)]
    assert sorted(zip(neuron, slc)) == [(j, s) for j in range(7) for s in range(2)]


def test_descriptor_flags():
    plan = np.array([[0, 2], [1, 1], [0, 0]])
    mapped = map_layer(np.zeros((2, 3), dtype=np.int64), FMT, plan)
    d = column_descriptors(mapped)
    p = mapped.physical_columns
    assert p == (1 + 4) + (2 + 2) + (1 + 1)
    assert int(d.used.sum()) == p and not d.used[p:].any()
    assert int(d.end.sum()) == 3 and list(np.flatnonzero(d.end)) == [4, 8, 10]
    assert int(d.last.sum()) == int(d.first.sum()) == 6
    assert np.array_equal(d.k[:p], plan[mapped.col_neuron, mapped.col_slice])
    # every neuron's end column is the last copy of some slice
    assert (d.last[d.end == 1] == 1).all()


def test_add_bias():
    acc = np.array([-5, 0, 7, 1 << 40])
    bias = np.array([3, -2, 0, -1])
    assert np.array_equal(add_bias(acc, bias), [-2, -2, 7, (1 << 40) - 1])
    assert np.array_equal(add_bias(acc, 2), acc + 2)
