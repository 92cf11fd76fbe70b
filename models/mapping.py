"""Mapping of a layer's signed weights onto crossbar tiles.

Encoding
--------
A signed ``weight_bits`` weight ``w`` is offset-encoded, ``u = w + 2**(weight_bits-1)``
(so ``u`` is unsigned), then bit-sliced into ``n_slices`` digits of ``slice_bits``:
``u = sum_s d_s << (slice_bits * s)``, slice 0 least significant. Each digit is one
device programmed to level ``d_s``; one neuron occupies ``n_slices`` adjacent columns.
The offset is removed digitally (see :func:`remeco.models.emulation.combine_slices`).

Layout
------
The weight matrix ``(K inputs, N neurons)`` is cut into row tiles of ``rows`` inputs.
Physical columns are laid out neuron by neuron; within a neuron, copy by copy; within a
copy, slice 0 first. A copy may hold only some slices (MSB redundancy copies only the
upper slices), so neuron ``j`` has ``2**copies_log2[j, s]`` physical columns for slice
``s``. Physical columns are then packed into column tiles of ``cols`` columns. Every
(row tile, column tile) pair is one physical crossbar; every redundant copy is a
different physical column with its own devices and therefore its own faults. Unused
cells (padding) are programmed to level 0 and unused rows receive input 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .emulation import EmulationFormat

__all__ = ["slice_weights", "unslice_weights", "MappedLayer", "map_layer"]


def slice_weights(weights: np.ndarray, fmt: EmulationFormat) -> np.ndarray:
    """Signed weights ``(...)`` -> device levels ``(n_slices, ...)`` (offset encoding)."""
    w = np.asarray(weights)
    if not np.issubdtype(w.dtype, np.integer):
        raise ValueError(f"weights must be an integer array, got dtype {w.dtype}")
    lo, hi = -fmt.weight_offset, fmt.weight_offset - 1
    if w.size and (w.min() < lo or w.max() > hi):
        raise ValueError(f"weights must be in [{lo}, {hi}] for {fmt.weight_bits}-bit weights")
    u = w.astype(np.int64) + fmt.weight_offset
    mask = fmt.levels - 1
    return np.stack([(u >> (fmt.slice_bits * s)) & mask for s in range(fmt.n_slices)])


def unslice_weights(levels: np.ndarray, fmt: EmulationFormat) -> np.ndarray:
    """Inverse of :func:`slice_weights`: levels ``(n_slices, ...)`` -> signed weights."""
    d = np.asarray(levels, dtype=np.int64)
    if d.shape[0] != fmt.n_slices:
        raise ValueError(f"levels has {d.shape[0]} slices, format has {fmt.n_slices}")
    u = sum(d[s] << (fmt.slice_bits * s) for s in range(fmt.n_slices))
    return u - fmt.weight_offset


@dataclass(frozen=True)
class MappedLayer:
    """One layer's weights laid out on crossbar tiles (plain data).

    Attributes
    ----------
    fmt:
        Numeric format (tile size, slicing).
    weights:
        Signed integer weights ``(K, N)``.
    copies_log2:
        ``(N, n_slices)``: each (neuron, slice) has ``2**copies_log2`` physical columns.
    col_neuron, col_slice, col_copy:
        ``(P,)`` for every physical column: which neuron, slice and copy it holds.
    """

    fmt: EmulationFormat
    weights: np.ndarray
    copies_log2: np.ndarray
    col_neuron: np.ndarray
    col_slice: np.ndarray
    col_copy: np.ndarray

    @property
    def fan_in(self) -> int:
        """Number of inputs ``K``."""
        return int(self.weights.shape[0])

    @property
    def neurons(self) -> int:
        """Number of output neurons ``N``."""
        return int(self.weights.shape[1])

    @property
    def physical_columns(self) -> int:
        """Number of used physical columns ``P`` (all copies, all slices)."""
        return int(self.col_neuron.size)

    @property
    def row_tiles(self) -> int:
        """Number of tiles along the inputs."""
        return -(-self.fan_in // self.fmt.rows)

    @property
    def col_tiles(self) -> int:
        """Number of tiles along the physical columns."""
        return -(-self.physical_columns // self.fmt.cols)

    @property
    def tiles(self) -> int:
        """Number of physical crossbars."""
        return self.row_tiles * self.col_tiles

    @property
    def devices(self) -> int:
        """Number of programmed (used) devices."""
        return self.fan_in * self.physical_columns

    def target_levels(self) -> np.ndarray:
        """Device levels of every tile, ``(row_tiles, col_tiles, rows, cols)``; padding is 0."""
        fmt = self.fmt
        digits = slice_weights(self.weights, fmt)  # (S, K, N)
        per_col = digits[self.col_slice, :, self.col_neuron]  # (P, K)
        full = np.zeros((self.row_tiles * fmt.rows, self.col_tiles * fmt.cols), dtype=np.int64)
        full[: self.fan_in, : self.physical_columns] = per_col.T
        return full.reshape(self.row_tiles, fmt.rows, self.col_tiles, fmt.cols).transpose(0, 2, 1, 3)


def map_layer(
    weights: np.ndarray, fmt: EmulationFormat, copies_log2: np.ndarray | int | None = None
) -> MappedLayer:
    """Lay out a weight matrix ``(K, N)`` on tiles, with optional redundant copies.

    Parameters
    ----------
    weights:
        Signed integer weights, inputs along axis 0 and neurons along axis 1.
    fmt:
        Numeric format.
    copies_log2:
        ``None`` (no redundancy), a scalar ``k`` for all, an ``(N,)`` array per neuron, or an
        ``(N, n_slices)`` array per neuron and slice; values in ``[0, 8]`` (copies are powers
        of two so that averaging is a shift).
    """
    w = np.asarray(weights)
    if w.ndim != 2 or w.shape[0] < 1 or w.shape[1] < 1:
        raise ValueError(f"weights must be a non-empty 2-D (inputs, neurons) array, got shape {w.shape}")
    slice_weights(w, fmt)  # range and dtype check
    n = w.shape[1]
    if copies_log2 is None:
        k = np.zeros((n, fmt.n_slices), dtype=np.int64)
    else:
        k = np.asarray(copies_log2)
        if not np.issubdtype(k.dtype, np.integer):
            raise ValueError(f"copies_log2 must be integers (log2 of a power-of-two copy count), got {k.dtype}")
        if k.ndim == 0:
            k = np.full((n, fmt.n_slices), int(k))
        elif k.shape == (n,):
            k = np.repeat(k[:, None], fmt.n_slices, axis=1)
        elif k.shape != (n, fmt.n_slices):
            raise ValueError(
                f"copies_log2 must be a scalar, shape ({n},) or ({n}, {fmt.n_slices}), got {k.shape}"
            )
        k = k.astype(np.int64)
        if k.min() < 0 or k.max() > 8:
            raise ValueError("copies_log2 must be in [0, 8] (1 to 256 copies)")
    neuron, slc, copy = [], [], []
    for j in range(n):
        for c in range(1 << int(k[j].max())):
            for s in range(fmt.n_slices):
                if c < (1 << int(k[j, s])):
                    neuron.append(j)
                    slc.append(s)
                    copy.append(c)
    return MappedLayer(
        fmt=fmt,
        weights=w.astype(np.int64),
        copies_log2=k,
        col_neuron=np.asarray(neuron, dtype=np.int64),
        col_slice=np.asarray(slc, dtype=np.int64),
        col_copy=np.asarray(copy, dtype=np.int64),
    )
