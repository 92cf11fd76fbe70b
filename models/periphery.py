"""The emulation steps as the RTL periphery streams them (contract additions for the PE).

:mod:`remeco.models.emulation` states every arithmetic rule; this module adds the two
things a streaming circuit needs on top, stated once for the RTL (:mod:`remeco.rtl.pe`)
and its benches:

Bias (:func:`add_bias`)
    Step 7's ``t = acc + bias`` as a function (``acc = to_accumulator(z, code_frac)``).

Column descriptors (:func:`column_descriptors`)
    The PE streams a layer's physical columns in layout order (column tile by column
    tile, column by column; see :mod:`remeco.models.mapping`). For averaging (step 5)
    and slice recombination (step 6) each physical column carries a descriptor: its
    ``slice``, the slice's ``k`` (``2**k`` copies), ``first`` (copy 0), ``last`` (copy
    ``2**k - 1``, the average is due), ``end`` (the neuron's last physical column) and
    ``used`` (0 for padding columns of the last column tile, which are dropped). The
    averaged values leave in the order of their ``last`` columns
    (:func:`averaged_order`).

Stream order of one input vector (what :class:`remeco.rtl.pe.ProcessingElement` does)
    for each column tile ``ct`` of the layer: for each row tile ``rt``: for each input
    bit ``b`` (LSB first): the bit plane ``b`` of ``x[rt*rows : (rt+1)*rows]`` drives tile
    ``t = tile_index(rt, ct, col_tiles)`` (``col_tiles``: the column tiles the PE holds,
    at least the layer's), whose columns convert one per cycle. Shift-and-add
    restarts a column at ``(rt, b) = (0, 0)`` and emits it at
    ``(row_tiles - 1, input_bits - 1)``; outputs then follow in physical-column order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["add_bias", "ColumnDescriptors", "column_descriptors", "averaged_order", "tile_index"]


def add_bias(acc: np.ndarray, bias: np.ndarray | int) -> np.ndarray:
    """``t = acc + bias`` (step 7), int64, bias broadcast over ``acc`` (accumulator units)."""
    b = np.asarray(bias, dtype=np.int64)
    return np.asarray(acc, dtype=np.int64) + b


def tile_index(row_tile: int, col_tile: int, col_tiles: int) -> int:
    """Flat index of a (row tile, column tile) pair in the PE's tile memory."""
    return row_tile * col_tiles + col_tile


@dataclass(frozen=True)
class ColumnDescriptors:
    """Per physical column (``col_tiles * cols`` of them, padding included) of a layer.

    Attributes
    ----------
    slice, k, first, last, end, used:
        ``(col_tiles * cols,)`` integer arrays, see the module docstring.
    """

    slice: np.ndarray
    k: np.ndarray
    first: np.ndarray
    last: np.ndarray
    end: np.ndarray
    used: np.ndarray

    def __len__(self) -> int:
        return int(self.slice.size)

    def as_dict(self) -> dict[str, np.ndarray]:
        """Field name -> array."""
        return {f: getattr(self, f) for f in ("slice", "k", "first", "last", "end", "used")}


def column_descriptors(mapped) -> ColumnDescriptors:
    """Descriptors of every physical column of a :class:`~remeco.models.mapping.MappedLayer`."""
    fmt = mapped.fmt
    total = mapped.col_tiles * fmt.cols
    p = mapped.physical_columns
    neuron, slc, copy = mapped.col_neuron, mapped.col_slice, mapped.col_copy
    k = mapped.copies_log2[neuron, slc]
    out = {name: np.zeros(total, dtype=np.int64) for name in ("slice", "k", "first", "last", "end", "used")}
    out["slice"][:p] = slc
    out["k"][:p] = k
    out["first"][:p] = copy == 0
    out["last"][:p] = copy == (1 << k) - 1
    nxt = np.append(neuron[1:], -1)
    out["end"][:p] = neuron != nxt
    out["used"][:p] = 1
    return ColumnDescriptors(**out)


def averaged_order(mapped) -> tuple[np.ndarray, np.ndarray]:
    """``(neuron, slice)`` of the averaged values in the order the averager emits them."""
    d = column_descriptors(mapped)
    cols = np.flatnonzero((d.used == 1) & (d.last == 1))
    return mapped.col_neuron[cols], mapped.col_slice[cols]
