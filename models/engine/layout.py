"""What the fast paths precompute from a mapped layer and a chip instance's codes.

Two pieces of plain data:

- :class:`ColumnGroups` (per mapped layer, chip-independent): for every (neuron, slice),
  the physical columns holding its copies and its ``copies_log2``, so copy averaging
  (emulation step 5) is a sum over an index list instead of a dense selection matmul.
- :func:`pack_codes` (per chip instance and layer): the cell codes of every row tile as
  int16 in the fused kernel's order ``[column block][row pair][16 columns][2 rows]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LANES", "ColumnGroups", "column_groups", "tile_codes", "pack_codes", "native_supported"]

#: Physical columns per vector register of the kernel (16 x int32 in 512 bits).
LANES = 16


@dataclass(frozen=True)
class ColumnGroups:
    """Physical columns of every (neuron, slice) group, ``g = neuron * n_slices + slice``.

    Attributes
    ----------
    start:
        int32 ``(N * n_slices + 1,)``: group ``g`` owns ``cols[start[g]:start[g + 1]]``.
    cols:
        int32 ``(P,)`` physical column indices.
    k:
        int32 ``(N * n_slices,)``: ``copies_log2`` of the group.
    """

    start: np.ndarray
    cols: np.ndarray
    k: np.ndarray


def column_groups(mapped) -> ColumnGroups:
    """The :class:`ColumnGroups` of a :class:`~remeco.models.mapping.MappedLayer`."""
    n_slices = mapped.fmt.n_slices
    group = mapped.col_neuron * n_slices + mapped.col_slice
    order = np.argsort(group, kind="stable")
    counts = np.bincount(group, minlength=mapped.neurons * n_slices)
    start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    k = mapped.copies_log2.reshape(-1).astype(np.int32)
    if not np.array_equal(counts, 1 << k.astype(np.int64)):
        raise ValueError("mapped layer's columns do not match its copies_log2")
    return ColumnGroups(start, order.astype(np.int32), k)


def tile_codes(mapped, codes: np.ndarray) -> np.ndarray:
    """Codes ``(row_tiles, col_tiles, rows, cols)`` -> ``(row_tiles, rows, P)`` (used columns)."""
    fmt = mapped.fmt
    c = np.asarray(codes)
    want = (mapped.row_tiles, mapped.col_tiles, fmt.rows, fmt.cols)
    if c.shape != want:
        raise ValueError(f"codes must have shape {want}, got {c.shape}")
    return c.transpose(0, 2, 1, 3).reshape(mapped.row_tiles, fmt.rows, -1)[..., : mapped.physical_columns]


def native_supported(mapped, adc_shift: int) -> str | None:
    """None if the fused kernel can run this layer exactly, else the reason (one line)."""
    fmt = mapped.fmt
    if fmt.input_bits > 8:
        return f"input_bits {fmt.input_bits} > 8 (the kernel takes uint8 inputs)"
    if fmt.code_bits > 16:
        return f"code_bits {fmt.code_bits} > 16 (the kernel holds codes in int16)"
    if adc_shift > 30:
        return f"adc_shift {adc_shift} > 30"
    # y = sum over tiles and planes of adc << b must fit int32; so must rows * |code|.
    tiles_bits = max(mapped.row_tiles - 1, 0).bit_length()
    if fmt.adc_bits + fmt.input_bits + tiles_bits > 31:
        return "adc_bits + input_bits + log2(row tiles) > 31 (shift-and-add would overflow int32)"
    if fmt.rows * (1 << (fmt.code_bits - 1)) >= 1 << 31:
        return "rows * |code| >= 2**31 (a column sum would overflow int32)"
    return None


def pack_codes(mapped, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cell codes in the fused kernel's layout.

    Returns
    -------
    packed:
        int16, all row tiles one after the other; tile ``t`` is
        ``[PB][ceil(kt / 2)][16][2]`` where ``kt`` is its used rows and ``PB`` the
        column blocks of 16 physical columns (padding rows and columns are 0).
    tile_off:
        int64 ``(row_tiles,)``: where each tile starts in ``packed``.
    """
    fmt = mapped.fmt
    c2 = tile_codes(mapped, codes)
    p = mapped.physical_columns
    pb = -(-p // LANES)
    parts, offsets, at = [], [], 0
    for t in range(mapped.row_tiles):
        kt = min(fmt.rows, mapped.fan_in - t * fmt.rows)
        kp = -(-kt // 2)
        w = np.zeros((2 * kp, pb * LANES), dtype=np.int16)
        w[:kt, :p] = c2[t, :kt]
        # (2kp, PB*16) -> (kp, 2, PB, 16) -> (PB, kp, 16, 2)
        part = np.ascontiguousarray(w.reshape(kp, 2, pb, LANES).transpose(2, 0, 3, 1)).reshape(-1)
        offsets.append(at)
        at += part.size
        parts.append(part)
    return np.concatenate(parts), np.asarray(offsets, dtype=np.int64)
