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

__all__ = [
    "LANES",
    "ColumnGroups",
    "column_groups",
    "tile_codes",
    "pack_codes",
    "native_supported",
    "AmxColumns",
    "amx_columns",
    "pack_codes_amx",
    "amx_split",
    "LUT_ROWS",
    "lut_bytes",
    "lut_tables",
]

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
    # copy averaging sums up to 2**max_k copies of y in int32 before its rounding shift
    max_k = int(np.max(mapped.copies_log2)) if mapped.copies_log2.size else 0
    if fmt.adc_bits + fmt.input_bits + tiles_bits + max_k > 31:
        return "adc_bits + input_bits + log2(row tiles) + copies_log2 > 31 (copy sums would overflow int32)"
    return None


def amx_split(fmt) -> int | None:
    """Bits of a code's low part on the AMX path (``code = (hi << split) + lo``), or None.

    Both parts must be int8: ``hi`` signed, ``lo`` in ``[0, 2**split)`` with ``split <= 7``,
    so codes up to 15 bits fit.
    """
    split = max(fmt.code_bits - 8, 0)
    return split if split <= 7 else None


@dataclass(frozen=True)
class AmxColumns:
    """Column order and copy-averaging tables of the kernel's chunked driver, both ISAs
    (named for the AMX path, which introduced them; chip-independent).

    Copy 0 of (neuron ``j``, slice ``s``) is column ``s * N + j`` so that the kernel reads
    16 neurons of one slice as one vector; the other copies follow, each listed in
    ``ex_col`` with the ``s * Npad + j`` it adds into (``ex_dst``).

    Attributes
    ----------
    perm:
        int64 ``(P,)``: the physical column at each new position.
    npad:
        ``N`` rounded up to a multiple of 16.
    k, half:
        int32 ``(n_slices, npad)``: ``copies_log2`` and its rounding constant
        ``(1 << k) >> 1`` (0 in the padding).
    ex_dst, ex_col:
        int32 ``(n_extra,)``.
    """

    perm: np.ndarray
    npad: int
    k: np.ndarray
    half: np.ndarray
    ex_dst: np.ndarray
    ex_col: np.ndarray


def amx_columns(mapped, groups: ColumnGroups) -> AmxColumns:
    """The :class:`AmxColumns` of a mapped layer from its :class:`ColumnGroups`."""
    n, n_slices = mapped.neurons, mapped.fmt.n_slices
    npad = -(-n // LANES) * LANES
    g = np.arange(n * n_slices).reshape(n, n_slices)  # g = j * n_slices + s
    primary = groups.cols[groups.start[g.T.reshape(-1)]]  # order (s, j)
    extra_cols, extra_dst = [], []
    for j in range(n):
        for s in range(n_slices):
            gi = j * n_slices + s
            for c in groups.cols[groups.start[gi] + 1 : groups.start[gi + 1]]:
                extra_cols.append(int(c))
                extra_dst.append(s * npad + j)
    perm = np.concatenate([primary, np.asarray(extra_cols, dtype=np.int64)]).astype(np.int64)
    k = np.zeros((n_slices, npad), dtype=np.int32)
    k[:, :n] = groups.k.reshape(n, n_slices).T
    half = np.where(k > 0, (1 << k) >> 1, 0).astype(np.int32)
    ex_col = np.arange(n * n_slices, n * n_slices + len(extra_cols), dtype=np.int32)
    return AmxColumns(perm, npad, k, half, np.asarray(extra_dst, dtype=np.int32), ex_col)


def pack_codes_amx(mapped, codes: np.ndarray, columns: AmxColumns, split: int) -> tuple[np.ndarray, np.ndarray]:
    """Cell codes in the AMX path's layout (see ``remeco_layer_t`` in kernel.c).

    Per row tile ``t`` with ``kt`` used rows: the ``2 kt`` rows ``[hi; lo]`` (``code = (hi <<
    split) + lo``, both int8), zero padded to ``nkc = ceil(2 kt / 64)`` chunks of 64 rows, as
    int8 ``[PB][nkc][16 row quads][16 columns][4 rows]``; padding columns are 0. Returns
    ``(packed, tile_off)``, ``tile_off`` in bytes.
    """
    fmt = mapped.fmt
    c2 = tile_codes(mapped, codes)[..., columns.perm].astype(np.int64)
    p = mapped.physical_columns
    pb = -(-p // LANES)
    parts, offsets, at = [], [], 0
    for t in range(mapped.row_tiles):
        kt = min(fmt.rows, mapped.fan_in - t * fmt.rows)
        nkc = -(-2 * kt // 64)
        w = np.zeros((nkc * 64, pb * LANES), dtype=np.int64)
        w[:kt, :p] = c2[t, :kt] >> split
        w[kt : 2 * kt, :p] = c2[t, :kt] & ((1 << split) - 1)
        # (nkc*64, PB*16) -> (nkc, 16, 4, PB, 16) -> (PB, nkc, 16 quads, 16 columns, 4 rows)
        part = w.reshape(nkc, 16, 4, pb, LANES).transpose(3, 0, 1, 4, 2)
        part = np.ascontiguousarray(part).astype(np.int8).reshape(-1)
        offsets.append(at)
        at += part.size
        parts.append(part)
    return np.concatenate(parts), np.asarray(offsets, dtype=np.int64)


def pack_codes(mapped, codes: np.ndarray, perm: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cell codes in the fused kernel's VNNI layout (columns reordered by ``perm``, e.g.
    :attr:`AmxColumns.perm`, when given).

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
    if perm is not None:
        c2 = c2[..., perm]
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


#: Rows per group of the kernel's column-sum tables (an 8-bit pattern per bit plane).
LUT_ROWS = 8


def lut_bytes(mapped) -> int:
    """Bytes of a layer's column-sum tables (:func:`lut_tables`)."""
    fmt = mapped.fmt
    pb = -(-mapped.physical_columns // LANES)
    groups = sum(-(-min(fmt.rows, mapped.fan_in - t * fmt.rows) // LUT_ROWS) for t in range(mapped.row_tiles))
    return groups * (1 << LUT_ROWS) * pb * LANES * 4


def lut_tables(mapped, packed: np.ndarray, tile_off: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column-sum tables of codes packed by :func:`pack_codes`, for the kernel's table path.

    Per row tile ``t`` (from ``offsets[t]`` int32 elements) ``[group g][pattern p][PB * 16]``:
    the sum of the codes of rows ``8 g + i`` for every set bit ``i`` of ``p``, per column
    in the packed column order (rows past the tile's last count as code 0). Exact int32
    sums of int16 codes; built by doubling (entry ``p + 2**i`` = entry ``p`` + row ``i``).
    """
    fmt = mapped.fmt
    pb = -(-mapped.physical_columns // LANES)
    width = pb * LANES
    parts, offsets, at = [], [], 0
    for t in range(mapped.row_tiles):
        kt = min(fmt.rows, mapped.fan_in - t * fmt.rows)
        kp = -(-kt // 2)
        w = packed[tile_off[t] : tile_off[t] + pb * kp * LANES * 2].reshape(pb, kp, LANES, 2)
        groups = -(-kt // LUT_ROWS)
        rows = np.zeros((groups * LUT_ROWS, width), dtype=np.int32)
        rows[: 2 * kp] = w.transpose(1, 3, 0, 2).reshape(2 * kp, width)
        rows = rows.reshape(groups, LUT_ROWS, width)
        tab = np.zeros((groups, 1 << LUT_ROWS, width), dtype=np.int32)
        for i in range(LUT_ROWS):
            n = 1 << i
            np.add(tab[:, :n], rows[:, i, None, :], out=tab[:, n : 2 * n])
        offsets.append(at)
        at += tab.size
        parts.append(tab.reshape(-1))
    return np.concatenate(parts), np.asarray(offsets, dtype=np.int64)
